"""Checks of a truncated module (``--truncate τ``, ``RNNSpec.truncate``).

Truncated BPTT is not the gradient of any loss, so central differences, the Taylor test and the
exact oracle have nothing to compare it with (unless τ reaches ``RNNSpec.full_horizon``: then it
is the full gradient and ``verify`` checks it as such). What it is, is a part of the full
gradient (``RNNSpec.truncation_rule``). So the check computes that part a second way, from the
*untruncated* derivation:

- ``restricted_path_sum``: the full network's sum over paths (``backprop.PathExpander``), keeping
  the terms whose chain of Jacobians has at most τ - 1 recurrent factors (one per recurrent edge
  the path crosses; a path to an initial state has one more, the edge into it, which the
  truncation does not count), built with the longer paths pruned as they grow (O(τ T) terms), and
  evaluated in float64 at the module's point, with no code of the aged reverse mode, the passes
  or the printer in between;
- ``check``: the module's float64 ``loss_and_grads`` against it, for the parameters, the inputs
  (``--input-grad``) and an initial state given per sequence (``grads["state"]``), by relative
  error, and the final state against the plain loop.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import sympy as sp

from rnngen import algebra as A
from rnngen.activations import LOSSES
from rnngen.backprop import PathExpander, adjoint_symbol, derive
from rnngen.evaluate import evaluate, run
from rnngen.families import Step
from rnngen.network import size
from rnngen.reference import final_states, input_steps, relative_error, spec_of

#: The restricted sum and the module add the same terms in another order: float64 rounding only.
RESTRICTED_TOLERANCE = 1e-12
#: The restricted sum over paths has O(τ T) terms per weight; past these in all it is not built, and
#: the check fails (``verify``): a truncated module is not reported ok unchecked.
MAX_TERMS = 20000


def truncation(spec: dict) -> int | None:
    """The module's truncation horizon τ when it cuts some path, else None (untruncated, or τ at the
    full horizon: the full gradient)."""
    tau = spec.get("truncate")
    return tau if tau is not None and tau < spec_of(spec).full_horizon else None


def restricted_path_sum(spec, params: dict, xs, targets, state: dict | None = None, max_terms: int = MAX_TERMS) -> dict:
    """The truncated gradient of ``spec`` at the module's point, from the untruncated sum over paths.

    Args:
        spec: a truncated ``RNNSpec``.
        params, xs, targets: as the module takes them (float64; class indices or rows as targets).
        state: an initial state per sequence, name of the learned state -> (B, n), or None.
        max_terms: raise ``backprop.TooManyPaths`` past this many terms in all.

    Returns:
        name -> array in the module's shape: every parameter, ``"x"`` with ``input_grad``, and
        ``"state:<name>"`` per chain when ``state`` is given (the learned states' gradients are then 0).
    """
    tau = spec.truncate
    full = derive(replace(spec, truncate=None))
    graph, net = full.graph, full.graph.network
    env, dims = _point(spec, graph, params, xs, targets, state)
    initial = {p.name: _initial_node(graph, chain, spec.T, base) for chain in net.chains for base, p in chain.initials}
    statements = [(n.symbol, n.expr) for n in graph.nodes + full.adjoints if n.symbol.name not in env]
    env = run(statements, env, dims)
    paths = PathExpander(full, max_edges=tau)
    memo: dict = {}
    left = [max_terms]

    def restricted(expr, max_edges: int, what: str):
        terms = paths.terms(expr, what, left[0], max_edges)
        left[0] -= len(terms)
        return sum(evaluate(t, env, dims, memo) for t in terms) if terms else None

    out = {}
    for name, expr in full.gradients.items():
        # the edge into an initial state, read at its chain's first step, does not age a path
        value = restricted(expr, tau if name in initial else tau - 1, f"dE/d{name}")
        value = np.zeros(np.shape(params[name])) if value is None or state is not None and name in initial else value
        out[name] = np.reshape(value, np.shape(params[name]))
    if spec.input_grad:
        steps = [restricted(expr, tau - 1, f"dE/dx_{t}") for t, expr in zip(spec.input_steps, full.inputs)]
        zero = np.zeros((dims[A.B], dims[size("n_x")]))
        out["x"] = np.stack([zero if v is None else v.T for v in steps]).reshape(np.shape(xs))
    if state is not None:
        for name, node in initial.items():
            value = restricted(adjoint_symbol(node), tau, f"dE/d{node.name}")
            out[f"state:{name}"] = np.zeros(np.shape(state[name])) if value is None else value.T
    return out


def _initial_node(graph, chain, T: int, base: str = "h"):
    """The graph's node of a chain's initial state ``base`` (step 0, or T + 1 for a backward chain)."""
    fam, start = chain.family(base), chain.steps(T)[0]
    return next(n.symbol for n in graph.nodes if isinstance(n.symbol, Step) and n.symbol.family == fam and n.t == start)


def _point(spec, graph, params, xs, targets, state) -> tuple:
    """The values of the graph's parameters, inputs and targets (and given initial states) in column
    math, and the sizes, from the module's arguments."""
    xs = input_steps(spec.as_dict(), np.asarray(xs, dtype=np.float64))
    B, n_x = xs.shape[1], xs.shape[2]
    dims = {A.B: B, size("n_x"): n_x}
    env = {}
    for name, sym in graph.params.items():
        value = np.asarray(params[name], dtype=np.float64)
        if value.ndim == 1:  # a vector as the column (or, in row notation, the row) its symbol is
            value = value.reshape([1 if d == 1 else -1 for d in sym.shape])
        for d, n in zip(sym.shape, value.shape):
            if isinstance(d, sp.Symbol):  # a size (n_h1, n_y): its value read off the array
                dims.setdefault(d, n)
        env[name] = value
    n_y = int(sp.sympify(size("n_y")).subs(dims))
    y = np.asarray(targets)
    if LOSSES[spec.loss].targets == "classes" and y.dtype.kind in "iu":
        y = np.eye(n_y)[y]
    y = y.reshape(len(spec.loss_steps), B, n_y)
    for x, value in zip(graph.inputs["x"], xs):
        env[x.name] = value.T
    for target, value in zip(graph.inputs["y"], y):
        env[target.name] = value.T
    for chain in graph.network.chains:
        for base, p in chain.initials if state is not None else ():
            env[_initial_node(graph, chain, spec.T, base).name] = np.asarray(state[p.name]).T
    return env, dims


def check(module, params, xs, targets, state: dict | None) -> dict:
    """The module's float64 ``loss_and_grads`` against ``restricted_path_sum``: worst relative error
    of the parameters (and inputs) without a given state, of the given state's gradient with one, and
    the final state against the plain loop (name -> figure)."""
    spec = spec_of(module.SPEC)
    _, grads = module.loss_and_grads(params, xs, targets)
    reference = restricted_path_sum(spec, params, xs, targets)
    figures = {"parameters": max(relative_error(grads[k], reference[k]) for k in reference)}
    if state is not None:
        arg = state[module.INITIAL_STATES[0]] if len(module.INITIAL_STATES) == 1 else state
        _, grads, final = module.loss_and_grads(params, xs, targets, state=arg, return_state=True)
        given = grads["state"] if isinstance(grads["state"], dict) else {module.INITIAL_STATES[0]: grads["state"]}
        finals = final if isinstance(final, dict) else {module.INITIAL_STATES[0]: final}
        reference = restricted_path_sum(spec, params, xs, targets, state)
        figures["state"] = max(relative_error(given[k], reference[f"state:{k}"]) for k in module.INITIAL_STATES)
        expected = final_states(module.SPEC, params, xs, state)
        figures["final_state"] = max(relative_error(finals[k], expected[k]) for k in module.INITIAL_STATES)
    return figures


def failures(figures: dict) -> list:
    """One phrase per figure over its limit (nan fails)."""
    what = {
        "parameters": "truncated gradient vs the restricted sum over paths",
        "state": "truncated state gradient vs the restricted sum over paths",
        "final_state": "final state vs plain loop",
    }
    return [
        f"{what[k]} {v:.1e} (limit {RESTRICTED_TOLERANCE:.0e})"
        for k, v in figures.items()
        if not v <= RESTRICTED_TOLERANCE
    ]
