"""Optimizers and gradient clipping for training a generated module, in NumPy only.

A training loop feeds a generated module's gradients straight in::

    opt = Adam(lr=1e-2)
    for xs, targets in batches:
        E, grads = m.loss_and_grads(params, xs, targets)
        clip_by_global_norm(grads, 5.0)
        opt.step(params, grads)  # params' arrays change in place

The rules every function here follows:

- ``params`` names the arrays to train. ``step`` updates each of them in place (the same array
  objects, so every reference a caller holds sees the new values), and each needs a gradient of
  its shape in ``grads``. Entries of ``grads`` that are not in ``params`` are not read: the
  module's ``grads["x"]`` and ``grads["state"]`` (gradients of the inputs and of a given initial
  state, which no update uses) pass through as they are, and leaving a key out of ``params``
  freezes that parameter.
- Clipping works in place too, on every entry of ``grads`` except ``"x"`` and ``"state"``
  (``NOT_PARAMETERS``), so that the norm is the norm of the parameters' gradient.
- Every check runs before anything changes: a refused call leaves params, grads and the
  optimizer's state as they were.
- An optimizer keeps its state per key, made on the key's first step in the dtype of the
  parameter, so float32 parameters stay float32 throughout.

This module imports NumPy only (not SymPy, nor the rest of rnngen), so a training script that
loads a generated module pays for nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping

import numpy as np

#: The entries of a generated module's ``grads`` that are not gradients of parameters: the
#: gradient of the inputs (``--input-grad``) and of a given initial state (``state=``).
NOT_PARAMETERS = frozenset({"x", "state"})


def _real(value: object) -> float:
    """``value`` as a float, or nan if it is not a real number (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    return float(value)


def _positive(name: str, value: object) -> float:
    """A finite number > 0, else a one-line ValueError."""
    v = _real(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _fraction(name: str, value: object) -> float:
    """A number in [0, 1) (a decay rate), else a one-line ValueError."""
    v = _real(value)
    if not 0 <= v < 1:
        raise ValueError(f"{name} must be a number >= 0 and < 1, got {value!r}")
    return v


def _check(params: Mapping[str, np.ndarray], grads: Mapping[str, object]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The ``(key, param, grad)`` triples of a step, every one checked before any update."""
    if not isinstance(params, Mapping) or not isinstance(grads, Mapping):
        raise ValueError(
            f"params and grads must be dicts of arrays, got {type(params).__name__} and {type(grads).__name__}"
        )
    triples = []
    for key, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise ValueError(f"params[{key!r}] must be a NumPy array of floats (updated in place), got {_what(p)}")
        if not p.flags.writeable:
            raise ValueError(f"params[{key!r}] is read-only; the update writes into it")
        if key not in grads:
            raise ValueError(f"grads has no entry {key!r}; every key of params needs its gradient")
        g = grads[key]
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
            raise ValueError(f"grads[{key!r}] must be a NumPy array of real numbers, got {_what(g)}")
        if g.shape != p.shape:
            raise ValueError(f"grads[{key!r}] has shape {g.shape}; params[{key!r}] has {p.shape}")
        triples.append((key, p, g))
    return triples


def _what(value: object) -> str:
    return f"an array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


class Optimizer:
    """What every optimizer shares: the learning rate, the checks and the state per key.

    Attributes:
        lr: the learning rate; a schedule may assign a new one between steps.
    """

    def __init__(self, lr: float) -> None:
        self.lr = _positive("lr", lr)
        self._state: dict[str, tuple[np.ndarray, ...]] = {}

    def step(self, params: MutableMapping[str, np.ndarray], grads: Mapping[str, object]) -> None:
        """Update every array of ``params`` in place from its gradient in ``grads``.

        Args:
            params: the arrays to train, by name (a generated module's params, or some of them).
            grads: a gradient of the same shape for each key of ``params``; other entries
                (``"x"``, ``"state"``, frozen parameters) are not read.

        Raises:
            ValueError: a key of params without a gradient, a shape that differs, a parameter
                that is not a writeable float array, or a state made for another shape; nothing
                is updated then.
        """
        triples = _check(params, grads)
        states = []
        for key, p, _ in triples:
            state = self._state.get(key)
            if state is None:
                state = tuple(np.zeros_like(p) for _ in range(self._slots))
            elif state and (state[0].shape != p.shape or state[0].dtype != p.dtype):
                raise ValueError(
                    f"params[{key!r}] is {p.shape} {p.dtype} but this optimizer's state for it is "
                    f"{state[0].shape} {state[0].dtype}; use a new optimizer for new parameters"
                )
            states.append(state)
        for (key, p, g), state in zip(triples, states):
            self._state[key] = state
            self._update(key, p, g, *state)

    #: how many arrays of state the optimizer keeps per parameter
    _slots = 0

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: ``p -= lr * g``.

    Args:
        lr: learning rate (default 0.01, the usual default).
    """

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _update(self, key, p, g):
        p -= self.lr * g


class Momentum(Optimizer):
    """Gradient descent with momentum: ``v = momentum * v + g``, ``p -= lr * v``.

    The velocity ``v`` starts at zero and sums gradients, not steps, so a new learning rate
    takes effect at once. With ``nesterov=True`` the step looks ahead:
    ``p -= lr * (g + momentum * v)``.

    Args:
        lr: learning rate (default 0.01).
        momentum: the decay of the velocity, in [0, 1) (default 0.9).
        nesterov: use Nesterov's look-ahead step (default False).
    """

    _slots = 1

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = _fraction("momentum", momentum)
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = nesterov

    def _update(self, key, p, g, v):
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= self.lr * (g + self.momentum * v)
        else:
            p -= self.lr * v


class Adagrad(Optimizer):
    """Adagrad as the classic character-level RNN loop writes it.

    ``memory += g * g``, ``p -= lr * g / sqrt(memory + eps)``: each entry's step shrinks with the
    sum of its squared gradients. ``eps`` sits inside the square root, as in that loop (some
    libraries add it after the root instead, with eps = 1e-10; the two differ only while
    ``memory`` is tiny).

    Args:
        lr: learning rate (default 0.01; the character-level loop uses 0.1).
        eps: added to the memory under the root, > 0 (default 1e-8).
    """

    _slots = 1

    def __init__(self, lr: float = 0.01, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.eps = _positive("eps", eps)

    def _update(self, key, p, g, memory):
        memory += g * g
        p -= self.lr * g / np.sqrt(memory + self.eps)


class Adam(Optimizer):
    """Adam with bias correction, as its paper's Algorithm 1 writes it.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g²``, and with ``t`` the number of steps
    this key has taken, ``p -= lr * m̂ / (sqrt(v̂) + eps)`` where ``m̂ = m / (1 - b1^t)`` and
    ``v̂ = v / (1 - b2^t)``. The first step moves every entry with a gradient well above eps by
    almost exactly ``lr``.

    Args:
        lr: learning rate (default 0.001).
        betas: the decays ``(b1, b2)`` of the two moments, each in [0, 1) (default (0.9, 0.999)).
        eps: added to the root of the second moment, > 0 (default 1e-8).
    """

    _slots = 2

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), each >= 0 and < 1, got {betas!r}")
        self.betas = (_fraction("betas[0]", betas[0]), _fraction("betas[1]", betas[1]))
        self.eps = _positive("eps", eps)
        self._t: dict[str, int] = {}

    def _update(self, key, p, g, m, v):
        b1, b2 = self.betas
        t = self._t[key] = self._t.get(key, 0) + 1
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = np.sqrt(v / (1.0 - b2**t))
        denom += self.eps
        p -= (self.lr / (1.0 - b1**t)) * m / denom


def _clipped(grads: MutableMapping[str, object]) -> list[tuple[str, np.ndarray]]:
    """The entries clipping works on, checked: every one but ``NOT_PARAMETERS``."""
    if not isinstance(grads, Mapping):
        raise ValueError(f"grads must be a dict of arrays, got {type(grads).__name__}")
    entries = []
    for key, g in grads.items():
        if key in NOT_PARAMETERS:
            continue
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise ValueError(f"grads[{key!r}] must be a NumPy array of floats (clipped in place), got {_what(g)}")
        if not g.flags.writeable:
            raise ValueError(f"grads[{key!r}] is read-only; clipping writes into it")
        entries.append((key, g))
    return entries


def clip_by_value(grads: MutableMapping[str, np.ndarray], limit: float) -> None:
    """Clip every entry of every gradient to ``[-limit, limit]``, in place.

    Args:
        grads: gradients by name; ``grads["x"]`` and ``grads["state"]`` are left alone.
        limit: the bound, > 0.
    """
    limit = _positive("limit", limit)
    for _, g in _clipped(grads):
        np.clip(g, -limit, limit, out=g)


def clip_by_global_norm(grads: MutableMapping[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together, in place, so that their joint norm is at most ``max_norm``.

    The norm is the 2-norm of every gradient entry as one vector. Above ``max_norm`` every
    gradient is multiplied by ``max_norm / norm``, which keeps the direction of the step; at or
    below it nothing changes.

    Args:
        grads: gradients by name; ``grads["x"]`` and ``grads["state"]`` are left alone.
        max_norm: the largest joint norm allowed, > 0.

    Returns:
        The norm before clipping (a float), for logging.

    Raises:
        ValueError: the norm is inf or nan (scaling cannot repair an overflowed gradient; it
            would turn every entry into nan). Nothing is changed then.
    """
    max_norm = _positive("max_norm", max_norm)
    entries = _clipped(grads)
    # squared in float64: squares of float32 entries above ~1e19 would overflow
    norm = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for _, g in entries))
    if not math.isfinite(norm):
        raise ValueError(f"the gradients' norm is {norm}; training has diverged (lower lr, or clip by value first)")
    if norm > max_norm:
        scale = max_norm / norm
        for _, g in entries:
            g *= scale
    return norm
