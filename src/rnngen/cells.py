"""The recurrent cells, as registry entries: each says its parameters and its step equations once.

A cell's ``step`` is written against a small set of operations (``ops``), so one definition serves
every reading of the network: the symbolic graph (``unroll``: nodes of matrix expressions), the
exact scalar oracle (``verify``: SymPy matrices of numbers) and the plain reference loop
(``reference``: NumPy arrays). The operations are:

- ``ops.node(base, value)``: the value becomes the step's quantity ``base`` (``z``, ``h``); the graph
  names it, the others return it as it is;
- ``ops.matmul(weight, v)``, ``ops.add(*terms)`` (``None`` terms are left out),
  ``ops.bias(b)`` (a bias repeated for every sequence; ``None`` when the network has none),
  ``ops.act(key, v)`` (the elementwise activation ``key`` of the registry).

A masked network keeps the state on a padded step: ``keep`` is that one rule, ``state + m (new -
state)``, for every cell and every state it carries, written with ``ops.sub(a, b)`` and
``ops.mask(m, v)`` (the mask applied to each sequence's column); the loops that run a cell
(``unroll``, ``reference.run_network``) apply it to the step's new state.

Adding a cell (LSTM, GRU) is adding an entry here: its parameter roles with their shapes, its state
quantity, and its step; the stages downstream read only these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """One parameter of a cell, per layer and direction.

    Attributes:
        name: the role (``input``, ``recurrent``, ``hidden_bias``, ``initial``).
        rows, cols: its shape in column math, in terms of ``"hidden"`` (the layer's size) and
            ``"input"`` (what the layer reads); ``cols`` is 1 for a vector.
        default: the parameter's name in a network of one layer (the user's names replace those
            of the weights).
    """

    name: str
    rows: str
    cols: str
    default: str


@dataclass(frozen=True)
class Cell:
    """A recurrent cell.

    Attributes:
        name: its registry key (``--cell``).
        roles: its parameters, in the order the module lists them.
        state: the quantity carried from step to step (``h``).
        step: ``step(ops, weights, inputs, state, hidden) -> new state``: ``weights`` maps a role to
            its weight (the input weight as one block per input vector), ``inputs`` are the vectors
            the layer reads at this step, ``hidden`` the activation key.
        text: the step in plain text, for help and docstrings.
    """

    name: str
    roles: tuple
    state: str
    step: Callable
    text: str


def _elman_step(ops, weights, inputs, state, hidden):
    terms = [ops.matmul(w, v) for w, v in zip(weights["input"], inputs)]
    terms.append(ops.matmul(weights["recurrent"], state))
    z = ops.node("z", ops.add(*terms, ops.bias(weights.get("hidden_bias"))))
    return ops.node("h", ops.act(hidden, z))


ELMAN = Cell(
    name="elman",
    roles=(
        Role("input", "hidden", "input", "U"),
        Role("recurrent", "hidden", "hidden", "W"),
        Role("hidden_bias", "hidden", "1", "b"),
        Role("initial", "hidden", "1", "h0"),
    ),
    state="h",
    step=_elman_step,
    text="z_t = U x_t + W h_{t-1} + b, h_t = f(z_t)",
)

#: Every cell, by its ``--cell`` name.
CELLS = {cell.name: cell for cell in (ELMAN,)}


def held_last(ops_at, states: dict, masks: dict, T: int):
    """A chain's state at each sequence's last real step, ``ȟ_T``, where ``ȟ_1 = m_1 ∘ h_1`` and ``ȟ_t =
    keep(ȟ_{t-1}, h_t, m_t)``: the state of the latest real step so far, held over padded ones. What a
    masked many-to-one network's loss reads from a backward chain, which holds its initial state over
    post-padding and so differs at step T (a forward chain's state at T is this already).

    ``ops_at(t)`` gives the operations of step ``t`` (the graph names ``ȟ_t`` for that step),
    ``states`` and ``masks`` map each step 1..T to the chain's state and the step's mask.
    """
    held = None
    for t in range(1, T + 1):
        ops = ops_at(t)
        new = ops.mask(masks[t], states[t]) if held is None else keep(ops, held, states[t], masks[t])
        held = ops.node("hlast", new)
    return held


def keep(ops, state, new, m):
    """The state after a step that may be padded: ``state + m ∘ (new - state)``, ``new`` where the
    mask ``m`` (a 1 x B row of 0 and 1, or one sequence's 0 or 1) is 1, ``state`` where it is 0."""
    return ops.add(state, ops.mask(m, ops.sub(new, state)))
