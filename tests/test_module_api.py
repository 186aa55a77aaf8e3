"""The generated module as a user meets it: API, shapes, dtypes, errors, and an independent reference."""

import warnings

import numpy as np
import pytest
import reference_bptt

from rnngen.spec import RNNSpec

SIZES = dict(n_x=4, n_h=6, n_y=3)


def _problem(m, B=3, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: 0.4 * rng.standard_normal(v.shape) for k, v in m.init_params(**SIZES).items()}
    xs = rng.standard_normal((m.T, B, SIZES["n_x"]))
    targets = rng.integers(0, SIZES["n_y"], (m.T, B))
    return params, xs, targets


@pytest.mark.parametrize("T", [1, 5, 20])
def test_matches_a_hand_written_bptt_loop(module, T):
    m = module(T)
    params, xs, targets = _problem(m)
    E, grads = m.loss_and_grads(params, xs, targets)
    E_ref, grads_ref = reference_bptt.loss_and_grads(params, xs, targets)
    assert E == pytest.approx(E_ref, rel=1e-12)
    for k in grads_ref:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_batch_is_the_sum_of_single_sequences(module):
    m = module(5)
    params, xs, targets = _problem(m, B=3)
    E, grads = m.loss_and_grads(params, xs, targets)
    singles = [m.loss_and_grads(params, xs[:, i], targets[:, i]) for i in range(3)]
    assert E == pytest.approx(sum(s[0] for s in singles), rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], sum(s[1][k] for s in singles), rtol=1e-12, atol=1e-12)


def test_class_indices_and_one_hot_targets_agree(module):
    m = module(5)
    params, xs, targets = _problem(m)
    one_hot = np.eye(SIZES["n_y"])[targets]
    E1, g1 = m.loss_and_grads(params, xs, targets)
    E2, g2 = m.loss_and_grads(params, xs, one_hot)
    # E reads the targets' probabilities for indices and a row-wise dot product for rows
    assert E1 == pytest.approx(E2, rel=1e-14)
    for k in g1:  # ŷ - y is exact either way
        np.testing.assert_array_equal(g1[k], g2[k])


def _log_softmax(o):
    """An independent log-softmax in float64: log-sum-exp with the row maximum taken out."""
    o = o.astype(np.float64)
    m = o.max(axis=-1, keepdims=True)
    return o - m - np.log(np.exp(o - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype, scale", [(np.float64, 400.0), (np.float32, 150.0)])
def test_loss_stays_exact_when_target_probabilities_underflow(module, dtype, scale):
    """Logits far apart: the targets' probabilities underflow, the loss must not become inf."""
    m = module(5)
    params, xs, targets = _problem(m)
    params = {k: (scale * v if k == "V" else v).astype(dtype) for k, v in params.items()}
    xs = xs.astype(dtype)
    o = m.forward(params, xs)["o"]
    logp = _log_softmax(o)
    assert np.take_along_axis(np.exp(logp), targets[..., None], -1).min() < 1e-30  # the case this test is for
    expected = -np.take_along_axis(logp, targets[..., None], -1).sum()
    one_hot = np.eye(SIZES["n_y"], dtype=dtype)[targets]
    for y in (targets, one_hot):
        E = m.loss(params, xs, y)
        assert np.isfinite(E) and E == pytest.approx(expected, rel=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shift", [0.0, 100.0, -60.0, -1000.0])
def test_softmax_is_exact_whether_or_not_it_needs_the_shift_by_the_row_maximum(module, dtype, shift):
    """Ordinary logits take exp(o) / sum directly; logits that would overflow (> 64), and rows whose
    exponentials sum below 1 or underflow, need the shift. Either way: no warning, the same softmax."""
    m = module(5)
    params, xs, _ = _problem(m)
    params = {k: (v + shift if k == "c" else v).astype(dtype) for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.forward(params, xs.astype(dtype))
    expected = np.exp(_log_softmax(out["o"]))
    np.testing.assert_allclose(out["yhat"], expected, rtol=1e-13 if dtype == np.float64 else 1e-5)


def test_soft_targets_give_the_cross_entropy_of_the_distribution(module):
    m = module(5)
    params, xs, _ = _problem(m)
    y = np.random.default_rng(3).dirichlet(np.ones(SIZES["n_y"]), size=(m.T, 3))
    expected = -(y * _log_softmax(m.forward(params, xs)["o"])).sum()
    E, grads = m.loss_and_grads(params, xs, y)
    assert E == pytest.approx(expected, rel=1e-13)
    # dE/dc is the sum over steps and sequences of ŷ - y
    np.testing.assert_allclose(grads["c"], (m.forward(params, xs)["yhat"] - y).sum(axis=(0, 1)), atol=1e-13)


def test_float32_is_computed_in_float32_and_close_to_float64(module):
    m = module(5)
    params, xs, targets = _problem(m)
    E64, g64 = m.loss_and_grads(params, xs, targets)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    E32, g32 = m.loss_and_grads(p32, xs.astype(np.float32), targets)
    assert np.asarray(E32).dtype == np.float32
    assert all(g.dtype == np.float32 for g in g32.values())
    assert all(v.dtype == np.float32 for v in m.forward(p32, xs.astype(np.float32)).values())
    assert E32 == pytest.approx(E64, rel=1e-5)
    for k in g64:
        assert np.linalg.norm(g32[k] - g64[k]) <= 1e-4 * np.linalg.norm(g64[k]), k


def test_forward_shapes_and_loss_agree(module):
    m = module(5)
    params, xs, targets = _problem(m, B=2)
    out = m.forward(params, xs)
    assert out["h"].shape == (5, 2, 6) and out["o"].shape == (5, 2, 3) and out["yhat"].shape == (5, 2, 3)
    np.testing.assert_allclose(out["yhat"].sum(axis=-1), 1.0, rtol=1e-12)
    picked = np.take_along_axis(out["yhat"], targets[..., None], axis=-1)
    assert m.loss(params, xs, targets) == pytest.approx(-np.log(picked).sum(), rel=1e-12)
    single = m.forward(params, xs[:, 0])
    assert single["h"].shape == (5, 6)
    np.testing.assert_allclose(single["h"], out["h"][:, 0])


def test_init_params_is_reproducible_and_shaped(module):
    m = module(5)
    a, b = m.init_params(**SIZES, seed=3), m.init_params(**SIZES, seed=3)
    assert {k: v.shape for k, v in a.items()} == {
        "U": (6, 4),
        "W": (6, 6),
        "V": (3, 6),
        "b": (6,),
        "c": (3,),
        "h0": (6,),
    }
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert m.init_params(**SIZES, dtype=np.float32)["W"].dtype == np.float32


def test_module_describes_its_spec(module):
    m = module(5)
    assert m.T == 5 and m.HIDDEN == "tanh" and m.OUTPUT == "softmax" and m.LOSS == "cross_entropy"
    assert m.SPEC == RNNSpec(T=5).as_dict()


BAD = [
    (
        lambda p, x, y: (p, x[:4], y),
        r"xs has shape \(4, 3, 4\); expected \(T, n_x\) = \(5, 4\) or \(T, B, n_x\) = \(5, B, 4\)",
    ),
    (lambda p, x, y: (p, x[..., :3], y), r"xs has shape \(5, 3, 3\); expected"),
    (lambda p, x, y: (p, x > 0, y), r"xs has dtype bool; expected float32 or float64 rows, or integer token ids"),
    (lambda p, x, y: ({k: v for k, v in p.items() if k != "W"}, x, y), r"params is missing W"),
    (lambda p, x, y: ({**p, "W": p["W"][:, :5]}, x, y), r"params\['W'\] has shape \(6, 5\); expected \(n_h, n_h\)"),
    (lambda p, x, y: ({**p, "b": p["b"][None]}, x, y), r"params\['b'\] has shape \(1, 6\); expected \(n_h\)"),
    (lambda p, x, y: (p, x[:, :0], y[:, :0]), r"xs has shape \(5, 0, 4\): no sequences \(B = 0\)"),
    (lambda p, x, y: (p, x, y[:, :2]), r"targets \(class indices\) have shape \(5, 2\); expected \(5, 3\)"),
    (lambda p, x, y: (p, x, y + 3), r"targets \(class indices\) must lie in 0..2"),
    (lambda p, x, y: (p, x, y - 3), r"targets \(class indices\) must lie in 0..2"),
    (lambda p, x, y: (p, x, np.ones((5, 3, 3))), r"targets \(one-hot\) must sum to 1"),
    (
        lambda p, x, y: (p, x, np.ones((5, 3, 2)) / 2),
        r"targets \(one-hot\) have shape \(5, 3, 2\); expected \(5, 3, 3\)",
    ),
    (lambda p, x, y: (p, x, y.astype(str)), r"targets have dtype <U\d+; expected integer class indices"),
]


@pytest.mark.parametrize("mutate, message", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_name_what_is_wrong(module, mutate, message):
    m = module(5)
    params, xs, targets = mutate(*_problem(m))
    with pytest.raises(ValueError, match=message):
        m.loss_and_grads(params, xs, targets)
