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
