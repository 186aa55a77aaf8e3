"""The network computed by plain loops from its description, independent of the generated code.

One generic loop (``run_network``) walks the chains of ``network(spec)`` (layer by layer, each direction,
each step in the chain's own order) and asks the chain's cell for its step equations (``cells``),
as ``unroll`` does for the symbolic graph. It runs on whatever the ``ops`` object computes with:
NumPy arrays here (``plain_forward``, ``preactivations``), SymPy matrices of exact numbers in the
exact oracle (``verify``). Values are in column math: one column per sequence, a row-notation
weight is its stored array transposed, a blocked parameter's block is a slice of it.

Errors are norm-wise relative errors, ``|g - ref| / |ref|``, which do not blow up on entries
that happen to be near zero.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import sympy as sp

from rnngen.activations import LOSSES, OUTPUT_LAYERS, elementwise
from rnngen.cells import held_last, keep
from rnngen.evaluate import evaluate
from rnngen.network import Network, network, size
from rnngen.spec import RNNSpec
from rnngen.unroll import chain_weights


def spec_of(spec: dict) -> RNNSpec:
    """The spec a module's ``SPEC`` describes."""
    return RNNSpec(**spec)


def input_steps(spec: dict, xs) -> np.ndarray:
    """The inputs a module's ``xs`` holds as steps, (steps, B, n_x): ``xs`` itself, or the one input of
    a one-to-many network as its one step."""
    xs = np.asarray(xs)
    return xs[None] if spec["mapping"] == "one-to-many" else xs


def sequence(spec: dict, xs, i: int):
    """The inputs of sequence ``i`` alone, as the module takes one sequence."""
    return xs[i] if spec["mapping"] == "one-to-many" else xs[:, i]


def hidden_key(spec: dict) -> str:
    """The hidden activation's rule key, from a module's ``SPEC``."""
    return spec_of(spec).hidden_key


def network_of(spec: dict) -> Network:
    """The network a module's ``SPEC`` describes."""
    return network(spec_of(spec))


class Ops:
    """The operations a cell's step is written in (``cells``), on values: NumPy arrays or SymPy matrices.

    ``act`` computes an activation by ``apply(key, value)`` and keeps every argument it was
    given in ``arguments`` (the pre-activations, which the kink check reads).
    """

    matmul = staticmethod(operator.matmul)
    sub = staticmethod(operator.sub)

    @staticmethod
    def mask(m, value):  # a (1, B) row broadcast down the columns, or one sequence's 0 or 1
        return m * value

    def __init__(self, apply):
        self.apply = apply
        self.arguments = []

    @staticmethod
    def node(base, value):
        return value

    @staticmethod
    def add(*terms):
        return functools.reduce(operator.add, [t for t in terms if t is not None])

    @staticmethod
    def bias(b):  # a column: NumPy broadcasts it over the sequences; the oracle runs one at a time
        return b

    @staticmethod
    def had(a, b):
        return a.multiply_elementwise(b) if isinstance(a, sp.MatrixBase) else a * b

    @staticmethod
    def complement(value):
        return value.applyfunc(lambda v: 1 - v) if isinstance(value, sp.MatrixBase) else 1 - value

    def act(self, key, value):
        self.arguments.append(value)
        return self.apply(key, value)


def _numpy_act(key, value):
    return elementwise(key).ufunc(value)


def run_network(net: Network, spec: RNNSpec, ops: Ops, env: dict, dims: dict, xs: list, masks=None) -> tuple:
    """Every chain's states and the outputs ``o_t`` at the spec's loss steps, by the cells' own step equations.

    Args:
        net: the network.
        spec: the spec it is the network of (its T, hidden activation, loss steps).
        ops: what the values compute with.
        env: parameter name -> its stored value (vectors as columns).
        dims: size symbol -> its value (block offsets and widths are in terms of them).
        xs: the input columns ``x_1 ..``, as many as steps read one (T, or 1 for one-to-many).
        masks: None, or each step's mask (a row of 0 and 1 per sequence, or one sequence's 0 or 1),
            steps 1..T: a padded step keeps the state (``cells.keep``), and a masked many-to-one
            output reads each sequence's last real step (``RNNSpec.reads_last_real``).

    Returns:
        ``(states, outputs)``: chain key -> step -> the cell's states by name (``h``; the LSTM's
        ``h`` and ``cell``), from the initial states at step 0 (or T + 1 for a backward chain), and
        step -> ``o_t``.
    """

    T, hidden = spec.T, spec.hidden_key
    last_real = spec.reads_last_real and masks is not None

    def value(expr):
        return evaluate(expr, env, dims)

    states = {}
    cell = net.cell
    for chain in net.chains:
        weights = {
            role: [value(w) for w in ws] if isinstance(ws, list) else value(ws)
            for role, ws in chain_weights(chain).items()
        }
        start = chain.steps(T)[0]
        state = {base: value(p.math()) for base, p in chain.initials}
        seq = {start: state}
        for t in range(T, 0, -1) if chain.reverse else range(1, T + 1):
            inputs = (
                ([xs[t - 1]] if t <= len(xs) else [])
                if chain.reads == "x"
                else [states[k][t][cell.state] for k in chain.reads]
            )
            new = cell.step(ops, weights, inputs, state, hidden)
            if masks is not None:
                new = {base: keep(ops, state[base], v, masks[t - 1]) for base, v in new.items()}
            state = seq[t] = new
        states[chain.key] = seq
    read = {chain.key: {t: s[cell.state] for t, s in states[chain.key].items()} for chain in net.top}
    for chain in net.top if last_real else ():
        if chain.reverse:  # the loss reads each sequence's last real step (as ``unroll``)
            read[chain.key] = {T: held_last(lambda t: ops, read[chain.key], dict(enumerate(masks, 1)), T)}
    V, c = net.output, net.output_bias
    blocks = [value(V.math(part)) for part in V.parts or (None,)]
    bias = ops.bias(value(c.math())) if c is not None else None
    outputs = {
        t: ops.add(*(ops.matmul(w, read[chain.key][t]) for w, chain in zip(blocks, net.top)), bias)
        for t in spec.loss_steps
    }
    return states, outputs


def sizes_of(net: Network, env: dict, n_x: int) -> dict:
    """Size symbol -> value, read off the parameters' arrays (``n_x`` from the inputs)."""
    dims = {size("n_x"): n_x}
    for p in net.params.values():
        for d, n in zip(p.stored_shape, env[p.name].shape):
            if isinstance(d, sp.Symbol):
                dims[d] = n
    return dims


def _numpy_run(spec: dict, params: dict, xs, state: dict | None = None, mask=None) -> tuple:
    """``run_network`` on float64 NumPy arrays for the whole batch; returns ``(net, ops, states, outputs)``.
    ``state``, if given, holds each chain's initial state per sequence (name -> (B, n)) in place of
    the learned one; ``mask``, if given, is the (T, B) mask of real steps."""
    net = network_of(spec)
    env = {k: np.asarray(v, np.float64) for k, v in params.items()}
    env = {k: v[:, None] if v.ndim == 1 else v for k, v in env.items()}  # vectors as columns
    env.update({k: np.asarray(v, np.float64).T for k, v in (state or {}).items()})  # a column per sequence
    xs = input_steps(spec, xs).astype(np.float64)
    ops = Ops(_numpy_act)
    full = spec_of(spec)
    columns = list(np.swapaxes(xs, 1, 2))  # x_t as (n_x, B)
    dims = sizes_of(net, env, xs.shape[-1])
    masks = None if mask is None else list(np.asarray(mask, np.float64)[:, None, :])  # m_t as (1, B)
    states, outputs = run_network(net, full, ops, env, dims, columns, masks)
    return net, ops, states, outputs


def preactivations(spec: dict, params: dict, xs, state: dict | None = None, mask=None) -> np.ndarray:
    """Every value an activation reads (each ``z_t`` of every chain and sequence), flattened, by the
    plain loop (with ``mask``, a padded step's too, from the state it keeps)."""
    ops = _numpy_run(spec, params, xs, state, mask)[1]
    return np.concatenate([np.ravel(a) for a in ops.arguments])


def final_states(spec: dict, params: dict, xs, state: dict | None = None, mask=None) -> dict:
    """Each chain's states after its last step (a backward chain's at step 1), as (B, n), keyed by
    their initial states' names (``h0``, ``c0``), by the plain loop (from ``state`` if given; with ``mask``, the state
    held since each sequence's last real step)."""
    net, _, states, _ = _numpy_run(spec, params, xs, state, mask)
    return {p.name: states[c.key][c.steps(spec["T"])[1]][base].T for c in net.chains for base, p in c.initials}


def relative_error(value, reference) -> float:
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    scale = np.linalg.norm(reference)
    diff = np.linalg.norm(value - reference)
    return float(diff / scale) if scale > 0 else float(diff)


def plain_forward(spec: dict, params: dict, xs, mask=None) -> dict:
    """h, o and yhat by the plain float64 loop, from the network's description (the cells' step
    equations, the activation's ufunc, the output layer's scalar form), independent of the generated
    code. ``h`` is the top layer's states, its directions side by side (forward first); ``mask``, if
    given, is the (T, B) mask of real steps."""
    net, _, states, outputs = _numpy_run(spec, params, xs, mask=mask)
    T = spec["T"]
    hs = np.stack([np.concatenate([states[c.key][t][net.cell.state] for c in net.top]).T for t in range(1, T + 1)])
    os = np.stack([o.T for o in outputs.values()])
    output = _textbook("output", spec["output"], os.shape[-1])
    yhat = np.stack(np.broadcast_arrays(*output(list(np.moveaxis(os, -1, 0)))), axis=-1)
    if spec["mapping"] == "many-to-one":
        os, yhat = os[0], yhat[0]
    return {"h": hs, "o": os, "yhat": yhat}


def loss_of_outputs(spec: dict, yhat, targets, mask=None) -> float:
    """E from the outputs ``forward()`` returns, by the loss's textbook scalar form; with the (T, B)
    ``mask`` of a masked module, each step's terms counted on real steps only (many-to-one: its one
    loss counts for every sequence)."""
    yhat = np.asarray(yhat, np.float64)
    targets = np.asarray(targets)
    if targets.dtype.kind in "iu":
        targets = np.eye(yhat.shape[-1])[targets]
    n = yhat.shape[-1]
    step_loss = _textbook("loss", spec["loss"], n)
    rows = yhat.reshape(-1, n).T, np.asarray(targets, np.float64).reshape(-1, n).T
    terms = np.broadcast_to(step_loss(list(rows[0]), list(rows[1])), rows[0].shape[1:])
    if mask is not None and spec_of(spec).masked_losses:
        first = spec_of(spec).loss_steps[0]
        terms = terms * np.asarray(mask)[first - 1 :].reshape(-1)
    return float(np.sum(terms))


@functools.cache
def _textbook(kind: str, name: str, n: int):
    """The registry's textbook scalar form of an output layer or a loss over ``n`` entries, as a
    NumPy function of the entries' arrays (one entry per argument, every row at once)."""
    a, b = sp.symbols(f"a0:{n}"), sp.symbols(f"b0:{n}")
    if kind == "output":
        return sp.lambdify([a], list(OUTPUT_LAYERS[name].scalar(list(a))), "numpy")
    return sp.lambdify([a, b], LOSSES[name].scalar(list(a), list(b)), "numpy")
