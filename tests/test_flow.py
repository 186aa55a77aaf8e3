"""rnngen flow's numbers against a forward loop written here, differentiated by central differences."""

import numpy as np
import pytest

from rnngen import flow as F
from rnngen.pipeline import build
from rnngen.spec import RNNSpec


def _softmax_xent(o, y):
    s = o - o.max()
    return -(y * (s - np.log(np.exp(s).sum()))).sum()


def _rest(w, xs, ys, k, h):
    """h_T and the loss terms that depend on h_k = h (tanh, softmax, cross-entropy, column notation)."""
    U, W, V, b, c = (w[n] for n in ("U", "W", "V", "b", "c"))
    loss = _softmax_xent(V @ h + c, ys[k]) if k >= 1 else 0.0
    for t in range(k + 1, len(xs) + 1):
        h = np.tanh(U @ xs[t - 1] + W @ h + b)
        loss += _softmax_xent(V @ h + c, ys[t])
    return h, loss


@pytest.mark.parametrize("scale", [0.5, 2.5])
def test_flow_matches_central_differences_of_a_plain_loop(scale):
    T, sizes = 6, (3, 4, 3)
    result = build(RNNSpec(T=T))
    weights = F.random_weights(result, sizes, seed=2, scale=scale)
    flow = F.measure(result, weights, sizes, seed=2)
    # the data measure() draws (x_t, then y_t, from default_rng(seed + 1)); the loss check below confirms it
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 1)) for _ in range(T)]
    ys = {t: np.eye(3)[:, [rng.integers(3)]] for t in range(1, T + 1)}
    h = weights["h0"]
    states = [h]
    for x in xs:
        h = np.tanh(weights["U"] @ x + weights["W"] @ h + weights["b"])
        states.append(h)
    assert flow.loss == pytest.approx(_rest(weights, xs, ys, 0, states[0])[1], rel=1e-12)
    eps = 1e-6
    for k in range(T + 1):
        jac = np.zeros((4, 4))
        grad = np.zeros(4)
        for i in range(4):
            step = np.zeros((4, 1))
            step[i] = eps
            hp, lp = _rest(weights, xs, ys, k, states[k] + step)
            hm, lm = _rest(weights, xs, ys, k, states[k] - step)
            jac[:, i] = ((hp - hm) / (2 * eps))[:, 0]
            grad[i] = (lp - lm) / (2 * eps)
        assert flow.jacobian[k] == pytest.approx(np.linalg.norm(jac, 2), rel=1e-6), k
        assert flow.gradient[k] == pytest.approx(np.linalg.norm(grad), rel=1e-6), k
    assert flow.norm == pytest.approx(scale)
    assert flow.bound == pytest.approx([scale ** (T - k) for k in range(T + 1)])


def test_weights_of_the_wrong_shape_are_refused():
    result = build(RNNSpec(T=2))
    weights = F.random_weights(result, (3, 4, 3), seed=0, scale=1.0)
    weights["V"] = weights["V"][:2]
    with pytest.raises(F.FlowError, match="V has shape"):
        F.check_weights(result, weights, (3, 4, 3))
    del weights["V"]
    with pytest.raises(F.FlowError, match="lack V"):
        F.check_weights(result, weights, (3, 4, 3))


# -- gated cells: the direct path and every path ------------------------------------------------

GATED = [
    RNNSpec(T=5, cell="lstm", mapping="many-to-one"),
    RNNSpec(T=5, cell="gru", mapping="many-to-one"),
    RNNSpec(T=5, cell="gru", gru_reset="before", mapping="many-to-one"),
]
#: Also a loss term at every step, and one input only (one-to-many: x_1 alone, which the step must read so).
CARRIED_BACK = GATED + [RNNSpec(T=5, cell="lstm"), RNNSpec(T=5, cell="gru", mapping="one-to-many")]


@pytest.mark.parametrize("spec", CARRIED_BACK, ids=lambda s: s.name)
def test_the_step_jacobians_carry_the_reverse_sweeps_delta_back(spec):
    """Two independent computations: central differences of the cell's step, multiplied out from T down,
    with each step's own loss term V^T δo_k added where it has one, give the reverse sweep's δh_k."""
    sizes = (3, 4, 3)
    result = build(spec)
    weights = F.random_weights(result, sizes, seed=1, scale=1.5)
    values, dims = F._values(result, weights, sizes, seed=1)
    jacobians = F.step_jacobians(result, values, dims)
    states = result.derivation.graph.network.cell.states
    delta = np.zeros((4 * len(states), 1))  # d E / d s_k, s_k = (h_k, c_k) taken as the inputs of the rest
    for k in range(spec.T, -1, -1):
        if k < spec.T:
            delta = jacobians[k].T @ delta
        if k in spec.loss_steps:
            delta[:4] += weights["V"].T @ values[f"do_{k}"]
        want = values[f"dh_{k}"]  # norm-wise: central differences are ~1e-10 off on every entry, small ones too
        assert np.linalg.norm(delta[:4] - want) <= 1e-7 * np.linalg.norm(want), k


@pytest.mark.parametrize("spec", GATED, ids=lambda s: s.name)
def test_without_recurrent_weights_the_carried_state_moves_by_the_direct_path_alone(spec):
    """With every W_· zero no path crosses a weight: the carried state's Jacobian product is the gate's
    product exactly (the LSTM's prod diag(f_j), the GRU's prod diag(z_j)); with weights it differs."""
    sizes = (3, 4, 3)
    result = build(spec)
    weights = F.random_weights(result, sizes, seed=0, scale=0.0)
    flow = F.measure_gated(result, weights, sizes)
    carried = flow.state_jacobian or flow.jacobian
    assert carried == pytest.approx(flow.direct, rel=1e-8)
    assert flow.direct[0] < flow.direct[-1] == 1.0  # sigmoid gates below 1 shrink the product
    with_weights = F.measure_gated(result, F.random_weights(result, sizes, seed=0, scale=2.0), sizes)
    assert (with_weights.state_jacobian or with_weights.jacobian)[0] != pytest.approx(with_weights.direct[0], rel=1e-3)
