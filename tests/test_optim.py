"""rnngen.optim: each update against its published formula written out by hand, convergence on a
convex problem, in-place updates, dtypes, clipping, and the errors."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnngen.optim import SGD, Adagrad, Adam, Momentum, clip_by_global_norm, clip_by_value

ROOT = Path(__file__).resolve().parents[1]


def _problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    return params, grads


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def test_import_loads_numpy_and_the_standard_library_only():
    code = (
        "import sys; before = set(sys.modules); import rnngen.optim, rnngen.sequences, rnngen.datasets; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'numpy', 'rnngen'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sgd_two_steps():
    params, grads = _problem()
    start = _copy(params)
    opt = SGD(lr=0.1)
    for g in grads[:2]:
        opt.step(params, g)
    for k in params:
        np.testing.assert_allclose(params[k], start[k] - 0.1 * grads[0][k] - 0.1 * grads[1][k], rtol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps(nesterov):
    params, grads = _problem()
    start = _copy(params)
    lr, mu = 0.1, 0.8
    opt = Momentum(lr=lr, momentum=mu, nesterov=nesterov)
    for g in grads[:2]:
        opt.step(params, g)
    for k in params:
        g1, g2 = grads[0][k], grads[1][k]
        v1, v2 = g1, mu * g1 + g2
        if nesterov:
            expected = start[k] - lr * (g1 + mu * v1) - lr * (g2 + mu * v2)
        else:
            expected = start[k] - lr * v1 - lr * v2
        np.testing.assert_allclose(params[k], expected, rtol=1e-14)


def test_adagrad_matches_the_character_level_loop():
    params, grads = _problem()
    mine = _copy(params)
    opt = Adagrad(lr=0.1)
    # the reference loop, as the classic character-level RNN script writes it
    mem = {k: np.zeros_like(v) for k, v in params.items()}
    for g in grads:
        opt.step(mine, g)
        for param, dparam, m in zip(params.values(), g.values(), mem.values()):
            m += dparam * dparam
            param += -0.1 * dparam / np.sqrt(m + 1e-8)
    for k in params:
        np.testing.assert_allclose(mine[k], params[k], rtol=1e-14)


def test_adam_two_steps_entry_by_entry():
    params, grads = _problem()
    start = _copy(params)
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    opt = Adam(lr=lr, betas=(b1, b2), eps=eps)
    for g in grads[:2]:
        opt.step(params, g)
    for k in params:
        for i in np.ndindex(start[k].shape):  # Algorithm 1 of the paper, in Python floats
            p, m, v = float(start[k][i]), 0.0, 0.0
            for t, g in enumerate(grads[:2], start=1):
                gi = float(g[k][i])
                m = b1 * m + (1 - b1) * gi
                v = b2 * v + (1 - b2) * gi * gi
                p -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
            assert params[k][i] == pytest.approx(p, rel=1e-13)


def test_adam_first_step_moves_each_entry_by_about_lr():
    params, grads = _problem()
    start = _copy(params)
    Adam(lr=0.01).step(params, grads[0])
    for k in params:
        np.testing.assert_allclose(start[k] - params[k], 0.01 * np.sign(grads[0][k]), rtol=1e-6)


@pytest.mark.parametrize(
    "opt",
    [SGD(0.1), Momentum(0.05), Momentum(0.05, nesterov=True), Adagrad(0.5), Adam(0.05)],
    ids=["sgd", "momentum", "nesterov", "adagrad", "adam"],
)
def test_converges_on_a_convex_quadratic(opt):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((6, 6))
    A = q @ q.T / 6 + np.eye(6)  # eigenvalues in about [1, 4]
    target = rng.standard_normal(6)
    params = {"p": np.zeros(6)}
    for _ in range(2000):
        opt.step(params, {"p": A @ (params["p"] - target)})
    assert np.linalg.norm(params["p"] - target) < 1e-4


@pytest.mark.parametrize("make", [SGD, Momentum, Adagrad, Adam])
def test_updates_the_callers_arrays_in_place(make):
    params, grads = _problem()
    arrays = dict(params)
    view = params["W"][0]  # a reference a caller might hold
    before = view.copy()
    make().step(params, grads[0])
    assert all(params[k] is arrays[k] for k in params)
    assert not np.array_equal(view, before)


@pytest.mark.parametrize("make", [SGD, Momentum, Adagrad, Adam])
def test_float32_stays_float32(make):
    params, grads = _problem(dtype=np.float32)
    opt = make()
    for g in grads:  # float64 gradients into float32 parameters
        opt.step(params, g)
    assert all(v.dtype == np.float32 for v in params.values())
    assert all(s.dtype == np.float32 for state in opt._state.values() for s in state)


def test_extra_entries_of_grads_are_not_read():
    params, grads = _problem()
    expected = _copy(params)
    SGD(0.1).step(expected, grads[0])
    g = {**grads[0], "x": np.ones((5, 2, 4)), "state": {"h0_1": np.ones((2, 3))}}
    SGD(0.1).step(params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])


def test_a_parameter_left_out_of_params_is_frozen():
    params, grads = _problem()
    frozen = params["b"].copy()
    SGD(0.1).step({"W": params["W"]}, grads[0])
    np.testing.assert_array_equal(params["b"], frozen)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, g: g.pop("b"), "grads has no entry 'b'"),
        (lambda p, g: g.update(b=np.ones(4)), r"grads\['b'\] has shape \(4,\); params\['b'\] has \(3,\)"),
        (lambda p, g: g.update(b=[1.0, 2.0, 3.0]), r"grads\['b'\] must be a NumPy array"),
        (lambda p, g: p.update(b=np.zeros(3, dtype=int)), r"params\['b'\] must be a NumPy array of floats"),
    ],
    ids=["missing", "shape", "list", "int-params"],
)
def test_a_bad_step_says_what_and_changes_nothing(change, message):
    params, grads = _problem()
    g = dict(grads[0])
    change(params, g)
    before = _copy(params)
    opt = Adam()
    with pytest.raises(ValueError, match=message):
        opt.step(params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt._state == {}


def test_state_made_for_other_shapes_is_refused():
    opt = Adam()
    opt.step({"W": np.zeros((2, 2))}, {"W": np.ones((2, 2))})
    with pytest.raises(ValueError, match="use a new optimizer"):
        opt.step({"W": np.zeros((3, 2))}, {"W": np.ones((3, 2))})


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SGD(lr=0), "lr must be a finite number > 0, got 0"),
        (lambda: SGD(lr=-1.0), "lr must be a finite number > 0"),
        (lambda: SGD(lr="0.1"), "lr must be a finite number > 0"),
        (lambda: Momentum(momentum=1.0), "momentum must be a number >= 0 and < 1"),
        (lambda: Momentum(nesterov=1), "nesterov must be True or False"),
        (lambda: Adagrad(eps=0.0), "eps must be a finite number > 0"),
        (lambda: Adam(betas=(0.9,)), "betas must be a pair"),
        (lambda: Adam(betas=(0.9, 1.0)), r"betas\[1\] must be a number >= 0 and < 1"),
        (lambda: Adam(lr=math.nan), "lr must be a finite number > 0"),
    ],
)
def test_bad_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _joint_norm(grads):
    return np.linalg.norm(np.concatenate([g.ravel() for k, g in grads.items() if k not in ("x", "state")]))


def test_clip_by_global_norm_above_scales_to_max_norm():
    _, grads = _problem()
    g = {**grads[0], "x": np.full((2, 3), 100.0)}
    arrays, before, x_before = dict(g), _copy(grads[0]), g["x"].copy()
    norm_before = _joint_norm(g)
    returned = clip_by_global_norm(g, 0.5)
    assert returned == pytest.approx(norm_before, rel=1e-14)
    assert _joint_norm(g) == pytest.approx(0.5, rel=1e-14)
    for k in before:  # in place, and the direction kept
        assert g[k] is arrays[k]
        np.testing.assert_allclose(g[k], before[k] * 0.5 / norm_before, rtol=1e-14)
    np.testing.assert_array_equal(g["x"], x_before)  # not a parameter's gradient: not counted, not clipped


def test_clip_by_global_norm_below_changes_nothing():
    _, grads = _problem()
    g = grads[0]
    before = _copy(g)
    norm = _joint_norm(g)
    assert clip_by_global_norm(g, norm * 1.01) == pytest.approx(norm, rel=1e-14)
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_clip_by_global_norm_float32_does_not_overflow():
    g = {"W": np.full(4, 1e20, dtype=np.float32)}
    assert clip_by_global_norm(g, 1.0) == pytest.approx(2e20, rel=1e-6)
    assert g["W"].dtype == np.float32
    np.testing.assert_allclose(g["W"], 0.5, rtol=1e-6)


def test_clip_by_global_norm_refuses_a_nonfinite_norm():
    g = {"W": np.array([1.0, np.inf]), "b": np.array([3.0])}
    with pytest.raises(ValueError, match="norm is inf"):
        clip_by_global_norm(g, 1.0)
    np.testing.assert_array_equal(g["b"], [3.0])


def test_clip_by_value_in_place():
    _, grads = _problem()
    g = {**grads[0], "state": np.full(3, 9.0)}
    arrays, before = dict(g), _copy(grads[0])
    clip_by_value(g, 0.5)
    for k in before:
        assert g[k] is arrays[k]
        np.testing.assert_array_equal(g[k], np.minimum(np.maximum(before[k], -0.5), 0.5))
    np.testing.assert_array_equal(g["state"], 9.0)


@pytest.mark.parametrize("clip", [clip_by_value, clip_by_global_norm])
def test_clipping_bad_input(clip):
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        clip({"W": np.ones(2)}, 0)
    with pytest.raises(ValueError, match=r"grads\['W'\] must be a NumPy array of floats"):
        clip({"W": [1.0, 2.0]}, 1.0)


def test_trains_a_generated_module_from_its_grads_as_returned():
    path = ROOT / "generated" / "rnn_tanh_softmax_xent_t5.py"
    spec = importlib.util.spec_from_file_location("_optim_m", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((5, 8, 3))
    targets = (xs[:, :, 0] > 0).astype(int)  # the sign of the first input, step by step
    params = m.init_params(n_x=3, n_h=8, n_y=2, seed=0)
    opt = Adam(lr=0.05)
    first = m.loss(params, xs, targets)
    for _ in range(100):
        _, grads = m.loss_and_grads(params, xs, targets)
        clip_by_global_norm(grads, 5.0)
        opt.step(params, grads)
    assert m.loss(params, xs, targets) < 0.1 * first
