"""Gradient flow through time: how ||dh_T/dh_k|| and ||dE/dh_k|| behave against the bound.

For one sequence and given (or random) weights, ``measure`` evaluates, for
k = 0..T,

- ``||dh_T/dh_k||``: the spectral norm of the product of the step Jacobians
  ``D_j W`` for j = k+1..T (the document's vanishing-gradient product);
- the bound ``(gamma ||W||)^(T-k)`` of the document, gamma = sup |f'|;
- ``||dE/dh_k||``: the total gradient of the loss at the hidden state,
  delta^h_k of the reverse sweep.

Values come from the derivation's own expressions (the plain program before
optimization, evaluated entry by entry), in column math; the row notation's
Jacobians are the same matrices.

A gated cell (``measure_gated``) carries a state along a path no weight crosses
(``cells.Cell.carry``: the LSTM's ``c_t = f_t ∘ c_{t-1} + ...``, the GRU's
``h_t = ... + z_t ∘ h_{t-1}``). Its flow has two paths: the whole step Jacobian
of the states, whose product gives ``||dh_T/dh_k||`` (and ``||dc_T/dc_k||``),
and that direct path alone, ``||prod_j diag(gate_j)||``, which no ``||W||``
shrinks. The step Jacobians are central differences of the cell's own step
(``cells``), which tests compare with the derivation's reverse sweep.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
import sympy as sp

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.cells import gate_value
from rnngen.emit import png_metadata
from rnngen.evaluate import evaluate, run
from rnngen.pipeline import Build
from rnngen.reference import Ops
from rnngen.unroll import SIZES, chain_weights, parameters, step, step_name


class FlowError(ValueError):
    """Weights that do not fit the network (wrong names or shapes)."""


@dataclass(frozen=True)
class Flow:
    """The measured gradient flow of one sequence.

    Attributes:
        ks: the steps k = 0..T.
        jacobian: ||dh_T/dh_k||_2 for each k (1 at k = T).
        bound: (gamma ||W||_2)^(T-k) for each k.
        gradient: ||dE/dh_k||_2 for each k.
        gamma: sup |f'| of the hidden activation.
        norm: ||W||_2 of the recurrent weights.
        loss: the loss of the sequence.
    """

    ks: list
    jacobian: list
    bound: list
    gradient: list
    gamma: float
    norm: float
    loss: float


def _shape(param, sizes: tuple) -> tuple:
    """The numeric shape of a parameter symbol at ``sizes = (n_x, n_h, n_y)``."""
    dims = dict(zip(SIZES.values(), sizes))
    return tuple(int(sp.sympify(d).subs(dims)) for d in param.shape)


def random_weights(result: Build, sizes: tuple, seed: int, scale: float) -> dict:
    """Parameters drawn like ``init_params``, with the recurrent weights scaled by ``scale``.

    ``scale`` multiplies a recurrent matrix whose spectral norm is 1 (a random orthogonal
    matrix), so ``||W|| = scale`` exactly and the bound is easy to read (a gated cell: each
    gate's ``W_·``).
    """
    rng = np.random.default_rng(seed)
    recurrent = {p.name for p in result.derivation.graph.network.params.values() if p.role == "recurrent"}
    values = {}
    for name, p in result.derivation.graph.params.items():
        rows, cols = _shape(p, sizes)
        if name in recurrent:  # W, or every gate's W_·
            q, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
            values[name] = scale * q
        elif cols == 1:
            values[name] = 0.1 * rng.standard_normal((rows, 1))
        else:
            fan_in = rows if result.spec.row else cols
            values[name] = rng.standard_normal((rows, cols)) / np.sqrt(fan_in)
    return values


def load_weights(path) -> dict:
    """The arrays of an ``.npz`` archive (``numpy.savez(path, **params)``), or a ``FlowError`` that says so."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return dict(data)
    except (ValueError, EOFError, zipfile.BadZipFile):
        pass  # text, a pickle, an empty or damaged file: NumPy's message (about pickles) would mislead
    raise FlowError("not an .npz archive of the parameters; save them with numpy.savez(path, **params)")


def check_weights(result: Build, weights: dict, sizes: tuple) -> dict:
    """Given weights as the module's arrays (vectors 1-D) -> the math's shapes, or a ``FlowError``."""
    params = result.derivation.graph.params
    missing = [n for n in params if n not in weights]
    if missing:
        raise FlowError(f"the weights lack {', '.join(missing)}; they need {', '.join(params)}")
    out = {}
    for name, p in params.items():
        shape = _shape(p, sizes)
        value = np.asarray(weights[name], dtype=np.float64)
        value = value.reshape(-1, 1) if value.ndim == 1 else value
        if value.shape != shape:
            raise FlowError(f"{name} has shape {value.shape}, but this network needs {shape}")
        out[name] = value
    return out


def sizes_of(result: Build, weights: dict) -> tuple:
    """``(n_x, n_h, n_y)`` read from given weights."""
    found = {}
    for name, p in result.derivation.graph.params.items():
        value = np.asarray(weights.get(name, np.zeros(0)))
        value = value.reshape(-1, 1) if value.ndim == 1 else value
        for d, n in zip(p.shape, value.shape):
            found.setdefault(d, n)
    missing = [str(d) for d in SIZES.values() if d not in found]
    if missing:
        raise FlowError(f"cannot read {', '.join(missing)} from the weights")
    return tuple(found[d] for d in SIZES.values())


def measure(result: Build, weights: dict, sizes: tuple, seed: int = 0) -> Flow:
    """The flow for one random input sequence and random targets under ``weights`` (math shapes)."""
    spec = result.spec
    n_h = sizes[1]
    values, dims = _values(result, weights, sizes, seed)
    _, math_weights = parameters(spec)
    J = evaluate(math_weights["recurrent"], weights, dims)
    rule = elementwise(spec.hidden_key)
    product = np.eye(n_h)
    jacobian, gradient = [], []
    for k in range(spec.T, -1, -1):  # dh_T/dh_k = (dh_T/dh_{k+1}) D_{k+1} J
        if k < spec.T:
            z, h = (step(family, k + 1, SIZES["n_h"]) for family in ("z", "h"))
            slope = evaluate(rule.derivative(z, h), values, dims)[:, 0]
            product = product @ (slope[:, None] * J)
        jacobian.append(float(np.linalg.norm(product, 2)))
        gradient.append(float(np.linalg.norm(values[step_name("dh", k)])))
    norm = float(np.linalg.norm(J, 2))
    ks = list(range(spec.T + 1))
    return Flow(
        ks=ks,
        jacobian=jacobian[::-1],
        bound=[(rule.gamma * norm) ** (spec.T - k) for k in ks],
        gradient=gradient[::-1],
        gamma=rule.gamma,
        norm=norm,
        loss=float(values["E"][0, 0]),
    )


@dataclass(frozen=True)
class GatedFlow:
    """The measured gradient flow of one sequence through a gated cell.

    Attributes:
        ks: the steps k = 0..T.
        jacobian: ||dh_T/dh_k||_2 (every path, through the whole step) for each k.
        state_jacobian: for a cell whose carried state is not h (the LSTM's c), ||dc_T/dc_k||_2; else None.
        direct: ||prod_{j=k+1..T} diag(gate_j)||_2, the carried state's path that crosses no weight.
        gradient: ||dE/dh_k||_2 (the reverse sweep's delta) for each k.
        state_gradient: the carried state's delta ||dE/dc_k||_2 (LSTM), else None.
        state, gate: the carried state and the gate that carries it (``cells.Cell.carry``).
        loss: the loss of the sequence.
    """

    ks: list
    jacobian: list
    state_jacobian: list | None
    direct: list
    gradient: list
    state_gradient: list | None
    state: str
    gate: str
    loss: float


#: Central-difference step of the gated cells' step Jacobians.
EPS = 1e-6


def _values(result: Build, weights: dict, sizes: tuple, seed: int) -> tuple:
    """``(values, dims)``: every value of the plain program for one random sequence and its targets."""
    spec = result.spec
    n_x, n_h, n_y = sizes
    dims = {**dict(zip(SIZES.values(), sizes)), A.B: 1}
    rng = np.random.default_rng(seed + 1)
    env = dict(weights)
    for t in range(1, spec.T + 1):
        env[step_name("x", t)] = rng.standard_normal((n_x, 1))
    for t in spec.loss_steps:
        env[step_name("y", t)] = _target(spec, rng, n_y)
    return run([(s.target, s.expr) for s in result.plain.stmts], env, dims), dims


def step_jacobians(result: Build, values: dict, dims: dict) -> list:
    """``J_t = d s_t / d s_{t-1}`` for t = 1..T, ``s`` the cell's states stacked (``h``; ``h`` over ``c``),
    by central differences of the cell's own step at the sequence's values."""
    spec, net = result.spec, result.derivation.graph.network
    chain, cell = net.chains[0], net.cell
    weights = {
        role: [evaluate(w, values, dims) for w in ws] if isinstance(ws, list) else evaluate(ws, values, dims)
        for role, ws in chain_weights(chain).items()
    }
    ops = Ops(lambda key, v: elementwise(key).ufunc(v))

    def step(t, s):
        state = dict(zip(cell.states, np.split(s, len(cell.states))))
        inputs = [values[step_name("x", t)]] if t in spec.input_steps else []  # one-to-many: x_1 alone
        new = cell.step(ops, weights, inputs, state, spec.hidden_key)
        return np.vstack([new[base] for base in cell.states])

    out = []
    for t in range(1, spec.T + 1):
        s = np.vstack([values[step_name(chain.family(base).key, t - 1)] for base in cell.states])
        columns = []
        for j in range(len(s)):
            e = np.zeros_like(s)
            e[j] = EPS
            columns.append((step(t, s + e) - step(t, s - e))[:, 0] / (2 * EPS))
        out.append(np.stack(columns, axis=1))
    return out


def measure_gated(result: Build, weights: dict, sizes: tuple, seed: int = 0) -> GatedFlow:
    """The flow of a gated cell for one random input sequence and random targets under ``weights``."""
    spec, net = result.spec, result.derivation.graph.network
    chain, cell = net.chains[0], net.cell
    carried, gate = cell.carry
    values, dims = _values(result, weights, sizes, seed)
    n = sizes[1]
    at = {base: slice(i * n, (i + 1) * n) for i, base in enumerate(cell.states)}
    jacobians = step_jacobians(result, values, dims)
    product, direct = np.eye(n * len(cell.states)), np.ones(n)
    rows = []
    for k in range(spec.T, -1, -1):  # ds_T/ds_k = (ds_T/ds_{k+1}) J_{k+1}
        if k < spec.T:
            product = product @ jacobians[k]
            direct = direct * values[step_name(chain.family(gate_value(gate)).key, k + 1)][:, 0]
        delta = {base: values[step_name(chain.family(base, "adjoint").key, k)] for base in cell.states}
        rows.append(
            (
                np.linalg.norm(product[at["h"], at["h"]], 2),
                np.linalg.norm(product[at[carried], at[carried]], 2),
                float(np.abs(direct).max()),
                np.linalg.norm(delta["h"]),
                np.linalg.norm(delta[carried]),
            )
        )
    h, c, d, g, gc = (list(map(float, column))[::-1] for column in zip(*rows))
    other = carried != "h"
    return GatedFlow(
        ks=list(range(spec.T + 1)),
        jacobian=h,
        state_jacobian=c if other else None,
        direct=d,
        gradient=g,
        state_gradient=gc if other else None,
        state=carried,
        gate=gate,
        loss=float(values["E"][0, 0]),
    )


def gated_table(flow: GatedFlow) -> list:
    """The flow of a gated cell as lines of text."""
    c, g = flow.state[0], flow.gate
    lines = [
        f"the direct path carries {c} over each step through diag({g}_t) alone, no weight in the way; "
        f"loss = {flow.loss:.6g}",
        f"  {'k':>4}  {'||dh_T/dh_k||':>14}"
        + (f"  {f'||d{c}_T/d{c}_k||':>14}" if flow.state_jacobian else "")
        + f"  {f'direct prod {g}':>14}  {'||dE/dh_k||':>12}"
        + (f"  {f'||dE/d{c}_k||':>12}" if flow.state_gradient else ""),
    ]
    for i, k in enumerate(flow.ks):
        line = f"  {k:>4}  {flow.jacobian[i]:14.4e}"
        line += f"  {flow.state_jacobian[i]:14.4e}" if flow.state_jacobian else ""
        line += f"  {flow.direct[i]:14.4e}  {flow.gradient[i]:12.4e}"
        line += f"  {flow.state_gradient[i]:12.4e}" if flow.state_gradient else ""
        lines.append(line)
    return lines


def _target(spec, rng, n_y):
    kind = spec.loss_rule.targets
    if kind == "classes":
        return np.eye(n_y)[:, [rng.integers(n_y)]]
    if kind == "probabilities":
        return rng.uniform(size=(n_y, 1))
    return rng.standard_normal((n_y, 1))


def table(flow: Flow, recurrent: str) -> list:
    """The flow as lines of text."""
    lines = [
        f"gamma = sup|f'| = {flow.gamma:.4g}, ||{recurrent}||_2 = {flow.norm:.4g}, "
        f"gamma ||{recurrent}|| = {flow.gamma * flow.norm:.4g}, loss = {flow.loss:.6g}",
        f"  {'k':>4}  {'||dh_T/dh_k||':>14}  {'bound':>11}  {'||dE/dh_k||':>12}",
    ]
    for k, j, b, g in zip(flow.ks, flow.jacobian, flow.bound, flow.gradient):
        lines.append(f"  {k:>4}  {j:14.4e}  {b:11.4e}  {g:12.4e}")
    return lines


def _curves(flow) -> list:
    """``(values, style, label)`` of each curve of a flow's plot."""
    h = [(flow.jacobian, "o-", r"$\|\partial h_T / \partial h_k\|$")]
    if isinstance(flow, Flow):
        return h + [
            (flow.bound, "--", r"bound $(\gamma \|W\|)^{T-k}$"),
            (flow.gradient, "s-", r"$\|\partial E / \partial h_k\|$"),
        ]
    c, g = flow.state[0], flow.gate
    if flow.state_jacobian:
        h.append((flow.state_jacobian, "^-", rf"$\|\partial {c}_T / \partial {c}_k\|$"))
    h.append((flow.direct, "--", rf"direct path $\|\prod_{{j>k}} \mathrm{{diag}}({g}_j)\|$"))
    return h + [(flow.gradient, "s-", r"$\|\partial E / \partial h_k\|$")]


def plot(flow, title: str) -> bytes:
    """A log-scale PNG of the curves against k (needs matplotlib): a ``Flow`` or a ``GatedFlow``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for values, style, label in _curves(flow):
        ax.semilogy(flow.ks, values, style, label=label)
    ax.set_xlabel("k")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata=png_metadata())  # no matplotlib version: same bytes
    plt.close(fig)
    return buffer.getvalue()
