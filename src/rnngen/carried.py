"""The checks of a module's carried state: an initial state given per sequence (``state=``), the
gradient with respect to it (``grads["state"]``) and the final state (``return_state=True``).

- ``finite_differences``: ``grads["state"]`` against central differences of the module's loss
  in each entry of the given state;
- ``taylor_slope``: the slope of the Taylor remainder along a random direction of the state
  (2 for a right gradient, 1 for a wrong one);
- ``broadcast``: the learned initial state given as everyone's state changes nothing (E and the
  weights' gradients), the gradients of the learned states are zero, and the given state's
  gradients summed over the sequences are the learned state's gradient without a ``state``;
- ``final_state``: the final state against the plain loop from the network's description
  (``reference.run_network``), which starts each chain from the given state.

The exact oracle takes a given state too (``verify.exact_oracle(module, state=True)``).
"""

from __future__ import annotations

import numpy as np

from rnngen import verify
from rnngen.activations import elementwise
from rnngen.reference import final_states, hidden_key, input_steps, preactivations, relative_error
from rnngen.verify import FD_TOLERANCE, KINK_MARGIN, TAYLOR_SLOPE_TOLERANCE, _kink_signs

#: Limits of the two checks that compare like with like (the others are ``verify``'s).
BROADCAST_LIMIT = 1e-12
FINAL_LIMIT = 1e-12


def random_state(module, params, xs, seed: int = 2) -> dict:
    """An initial state per sequence for every chain: name -> (B, n), drawn like the parameters;
    for an activation with a kink, drawn again until every pre-activation keeps ``KINK_MARGIN`` from it."""
    B = input_steps(module.SPEC, xs).shape[1]
    kinked = elementwise(hidden_key(module.SPEC)).kink
    mask = getattr(module, "mask", None)  # a masked module's (masks.Masked)
    for attempt in range(seed, seed + 1000):
        rng = np.random.default_rng(attempt)
        state = {name: 0.5 * rng.standard_normal((B, *np.shape(params[name]))) for name in module.INITIAL_STATES}
        if not kinked or np.abs(preactivations(module.SPEC, params, xs, state, mask)).min() >= KINK_MARGIN:
            return state
    raise ValueError("found no initial state whose pre-activations keep away from the kink")


def given(module, state: dict):
    """``state`` as the module takes it: an array for a module of one chain, else the dict."""
    return state[module.INITIAL_STATES[0]] if len(module.INITIAL_STATES) == 1 else state


def as_dict(module, value) -> dict:
    return value if isinstance(value, dict) else {module.INITIAL_STATES[0]: value}


def finite_differences(module, params, xs, targets, state: dict, higher: bool = False) -> float:
    """Relative error of ``grads["state"]`` against central differences (``verify.differences``),
    worst over the chains; with ``higher``, against Ridders' extrapolated differences, which the
    check consults before it calls a gradient wrong."""
    e0, grads = module.loss_and_grads(params, xs, targets, state=given(module, state))
    analytic = as_dict(module, grads["state"])
    rounding = np.finfo(np.float64).eps * abs(e0) if higher else None
    numeric = verify.differences(
        lambda moved: module.loss(params, xs, targets, state=given(module, moved)),
        state,
        list(state),
        rounding=rounding,
    )
    return max(relative_error(analytic[name], numeric[name]) for name in state)


def taylor_slope(module, params, xs, targets, state: dict, seed: int = 3) -> float | None:
    """The Taylor slope along the state (``verify.taylor_slope``): 2 for a right gradient; None when
    the loss does not move with the state above rounding (a saturated network), where the slope
    says nothing and central differences decide alone."""
    e0, grads = module.loss_and_grads(params, xs, targets, state=given(module, state))
    slope, readable = verify.taylor_slope(
        lambda moved: module.loss(params, xs, targets, state=given(module, moved)),
        state,
        as_dict(module, grads["state"]),
        e0,
        _kink_signs(module, lambda moved: (params, xs, moved)),
        np.random.default_rng(seed),
    )
    return slope if readable else None


def broadcast(module, params, xs, targets) -> float:
    """Worst relative difference between the call without a state and the one given the learned
    initial states as every sequence's: E, every weight's gradient, and the learned states'
    gradients against the given ones' sums over the sequences (and zero in the second call)."""
    B = input_steps(module.SPEC, xs).shape[1]
    e0, g0 = module.loss_and_grads(params, xs, targets)
    learned = {name: np.tile(params[name], (B, 1)) for name in module.INITIAL_STATES}
    e1, g1 = module.loss_and_grads(params, xs, targets, state=given(module, learned))
    sums = {name: value.sum(axis=0) for name, value in as_dict(module, g1["state"]).items()}
    errors = [relative_error(e1, e0)]
    errors += [relative_error(g1[k], g0[k]) for k in g0 if k not in module.INITIAL_STATES]
    errors += [relative_error(sums[k], g0[k]) for k in module.INITIAL_STATES]
    errors += [float(np.abs(g1[k]).max()) for k in module.INITIAL_STATES]
    return max(errors)


def final_state(module, params, xs, targets, state: dict) -> float:
    """Relative error of the final state ``return_state`` gives against the plain loop's."""
    _, _, final = module.loss_and_grads(params, xs, targets, state=given(module, state), return_state=True)
    final = as_dict(module, final)
    reference = final_states(module.SPEC, params, xs, state, getattr(module, "mask", None))
    return max(relative_error(final[k], reference[k]) for k in module.INITIAL_STATES)


def check(module, params, xs, targets, seed: int = 2, scale: float = 1.0) -> dict:
    """Every figure of the carried-state checks at a random state (times ``scale``, the factor the
    check's point was taken down by), by name. ``higher_order`` is there when the central
    differences missed: the error against the extrapolated differences."""
    state = {k: scale * v for k, v in random_state(module, params, xs, seed).items()}
    for _ in range(8):
        # An explosive activation (exp(x)) may overflow: a saturated output can even keep the loss
        # finite over infinite states. Take the point down (state, weights, inputs), as _finite does.
        with np.errstate(all="ignore"):
            loss, grads, final = module.loss_and_grads(
                params, xs, targets, state=given(module, state), return_state=True
            )
        per_chain = [*as_dict(module, grads.pop("state")).values(), *as_dict(module, final).values()]
        if all(np.all(np.isfinite(v)) for v in [loss, *grads.values(), *per_chain]):
            break
        state = {k: v / 2 for k, v in state.items()}
        params, xs = {k: v / 2 for k, v in params.items()}, xs / 2
    figures = {
        "finite_differences": finite_differences(module, params, xs, targets, state),
        "taylor_slope": taylor_slope(module, params, xs, targets, state),
        "broadcast": broadcast(module, params, xs, targets),
        "final_state": final_state(module, params, xs, targets, state),
    }
    if not figures["finite_differences"] <= FD_TOLERANCE:
        figures["higher_order"] = finite_differences(module, params, xs, targets, state, higher=True)
    return figures


def failures(figures: dict) -> list:
    """One phrase per carried-state check that failed (nan fails every limit)."""
    out = []
    if not figures["finite_differences"] <= FD_TOLERANCE and not figures.get("higher_order", np.nan) <= FD_TOLERANCE:
        also = f", higher-order difference {figures['higher_order']:.1e}" if "higher_order" in figures else ""
        fd = figures["finite_differences"]
        out.append(f"state gradient vs finite differences {fd:.1e}{also} (limit {FD_TOLERANCE:.0e})")
    if figures["taylor_slope"] is not None and not abs(figures["taylor_slope"] - 2.0) <= TAYLOR_SLOPE_TOLERANCE:
        out.append(f"state gradient's Taylor remainder slope {figures['taylor_slope']:.3f} (2 wanted)")
    if not figures["broadcast"] <= BROADCAST_LIMIT:
        out.append(f"a given state equal to the learned one changes the result by {figures['broadcast']:.1e}")
    if not figures["final_state"] <= FINAL_LIMIT:
        out.append(f"final state vs the plain loop {figures['final_state']:.1e} (limit {FINAL_LIMIT:.0e})")
    return out
