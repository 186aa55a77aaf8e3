"""The check runs every path a module has, tells an ill-conditioned difference quotient from a wrong
gradient, and runs where it is told (sizes, seed, dtypes), reporting its progress and its figures."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from rnngen import variants, verify
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

PATHS = {
    f"{d} {p}"
    for d in ("float64", "float32")
    for p in ("loss()", "forward()", "one-hot targets", "single sequences", "token ids")
}
PATHS |= {"float32 loss_and_grads"}

# Each tamper makes one path of the module wrong and leaves the float64 batched loss_and_grads
# (what finite differences and the Taylor test verify) as it was.
GRADS_RETURN = "    grads = {"
LOSS_RETURN = "    return (E, final) if return_state else E\n"
FORWARD_SINGLE = "    if single:\n        out = {k:"


def _wrong_dW_when(condition):
    return GRADS_RETURN, f"    if {condition}:\n        dW = dW * 1.01\n" + GRADS_RETURN


TAMPERS = {
    "float32": (
        _wrong_dW_when("x.dtype == np.float32"),
        {"float32 loss_and_grads", "float32 one-hot targets", "float32 single sequences"},
    ),
    "single sequence": (_wrong_dW_when("single"), {"float64 single sequences", "float32 single sequences"}),
    "one-hot targets": (
        _wrong_dW_when('y.dtype.kind == "f"'),
        {"float64 one-hot targets", "float32 one-hot targets"},
    ),
    "loss()": (
        (LOSS_RETURN, "    E = E * 1.01 if x.dtype == np.float32 else E\n" + LOSS_RETURN),
        {"float32 loss()"},
    ),
    "forward()": (
        (FORWARD_SINGLE, '    out["h"] = out["h"] * 1.01\n' + FORWARD_SINGLE),
        {"float64 forward()", "float32 forward()", "float64 single sequences", "float32 single sequences"},
    ),
}


def _load_text(text, tmp_path, name="tampered"):
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return verify.load_module(path)


def test_every_path_is_run_and_agrees_for_a_generated_module(module):
    report = verify.check_module(module(3))
    assert set(report.paths) == PATHS
    assert report.ok, report.failures
    for name, path in report.paths.items():
        assert path.errors and set(path.errors) == set(path.limits), name
        # the limits are rounding-sized: eps of the path's dtype times a modest condition number
        eps = np.finfo(name.split()[0]).eps
        assert all(eps < limit < 1e5 * eps for limit in path.limits.values()), (name, path.limits)


@pytest.mark.parametrize("tamper", TAMPERS, ids=str)
def test_each_path_catches_a_module_wrong_on_that_path_only(built, tmp_path, tamper):
    (old, new), failing = TAMPERS[tamper]
    text = built(3).module
    assert text.count(old) == 1
    report = verify.check_module(_load_text(text.replace(old, new), tmp_path))
    assert not report.ok
    assert {name for name, path in report.paths.items() if path.failures} == failing
    # finite differences and the Taylor test cannot see it: they run the float64 batched path
    assert max(report.fd.values()) <= verify.FD_TOLERANCE and report.taylor == pytest.approx(2.0, abs=0.1)
    assert all("disagrees with float64 loss_and_grads" in f for f in report.failures), report.failures
    assert any(f.startswith(sorted(failing)[0]) for f in report.failures)


#: Activations whose difference quotients are ill-conditioned at the check's point: 1/x has a
#: pole a few thousandths from a pre-activation, x**16 overflows at the usual scale and leaves
#: dE/dW and dE/dh0 far below |E|. The text is the derivative's line in the module, and a wrong one.
ILL_CONDITIONED = {
    "1/x": ("return -1 / x**2", "return -1.01 / x**2"),
    "x**16": ("return 16 * x**15", "return 15 * x**15"),
}
#: The draw where each is so (the draw follows the order of PARAM_SHAPES: U, W, b, h0, V, c).
ILL_SEED = {"1/x": 0, "x**16": 5}


@pytest.mark.parametrize("hidden", ILL_CONDITIONED)
def test_ill_conditioned_activations_are_accepted_and_said_to_be(hidden):
    report = verify.check_build(build(RNNSpec(T=5, hidden=hidden)), seed=ILL_SEED[hidden])
    assert report.ok, report.failures
    assert report.ill_conditioned
    (note,) = [n for n in report.notes if "difference quotient ill-conditioned" in n]
    assert "agrees with the higher-order (extrapolated) difference" in note
    # x**16 overflows at the drawn point: the check runs at a smaller scale and says so
    assert (report.scale < 1) == (hidden == "x**16")
    assert any("the loss overflows at full scale" in n for n in report.notes) == (hidden == "x**16")
    for name in report.ill_conditioned:
        assert report.fd[name] > verify.FD_TOLERANCE >= report.extrapolated[name]


def test_a_figure_rounding_alone_could_move_by_percents_is_undecided_never_passed():
    """1/x at T = 5: float32 rounding alone may move its gradients by 1e-1, so a float32 path that
    errs by 5 % would pass its limit: such figures are said to be undecided, not checked."""
    report = verify.check_build(build(RNNSpec(T=5, hidden="1/x")))
    undecided = {name: path.undecided for name, path in report.paths.items() if path.undecided}
    assert undecided and all(name.startswith("float32") for name in undecided)
    for name, quantities in undecided.items():
        assert all(report.paths[name].limits[q] > variants.DECISIVE_LIMIT for q in quantities)
    (note,) = [n for n in report.notes if "undecided" in n]
    assert all(name in note for name in undecided)
    assert report.as_dict()["paths"]["float32 loss_and_grads"]["undecided"] == undecided["float32 loss_and_grads"]
    calm = verify.check_build(build(RNNSpec(T=5)))  # tanh: every figure decided, no such note
    assert not any(path.undecided for path in calm.paths.values())
    assert not any("undecided" in n for n in calm.notes)


SEED_003_NETWORK = dict(output="identity", loss="squared_error", mapping="many-to-one", hidden_bias=False)


@pytest.mark.parametrize("preset", [True, False], ids=["preset", "plain"])
def test_a_gradient_below_float32s_range_is_undecided_not_failed_at_T_200(preset):
    """Seed 003's network at T = 200: dE/dh0 is a product of 200 Jacobians, far below float32's smallest
    subnormal, so float32 holds it as 0, which is right; the other gradients stay checked in float32."""
    from rnngen.presets import preset_spec

    spec = preset_spec("seed-003", 200) if preset else RNNSpec(T=200, **SEED_003_NETWORK, output_bias=False)
    report = verify.check_build(build(spec))
    assert report.ok, report.failures
    for name in ("float32 loss_and_grads", "float32 single sequences"):
        path = report.paths[name]
        assert path.undecided == ["h0"] and path.errors["h0"] == 1.0, name  # float32's value is 0
        assert all(e <= path.limits[q] <= variants.DECISIVE_LIMIT for q, e in path.errors.items() if q != "h0")
    h0 = _float64_h0_gradient(spec)  # at the module's own initial parameters and random inputs
    assert 0 < np.abs(h0).max() < np.finfo(np.float32).smallest_subnormal  # so float32's nearest value is 0


def _float64_h0_gradient(spec):
    from rnngen.api import BPTT

    module = BPTT(build(spec)).module()
    n_x, n_h, n_y, B = verify.CHECK_SIZES
    params = module.init_params(n_x=n_x, n_h=n_h, n_y=n_y, seed=0)
    rng = np.random.default_rng(0)
    _, grads = module.loss_and_grads(params, rng.standard_normal((spec.T, B, n_x)), rng.standard_normal((B, n_y)))
    return grads["h0"]


def test_a_wrong_figure_below_float32s_range_still_fails():
    """The underflow part bounds the error absolutely (256 smallest normals per entry): a float32 figure far
    off a reference that float32 cannot hold still fails; only one within that bound passes."""
    reference = np.full(4, 3e-77)
    wrong, zero = np.full(4, 1e-20), np.zeros(4)
    assert verify.relative_error(wrong, reference) > variants.limit("float32", 1.0, reference)
    assert verify.relative_error(zero, reference) <= variants.limit("float32", 1.0, reference)


def test_the_rounding_limit_adds_what_underflow_takes_and_nothing_in_the_normal_range():
    """The limit's underflow part: a value float32 holds as 0 (or as a subnormal) is within it; a figure in
    float32's normal range keeps the relative limit, so a 1 % error there still fails."""
    eps32 = float(np.finfo(np.float32).eps)
    normal = variants.limit("float32", 1.0, np.full(4, 1e-20))
    assert normal == pytest.approx(variants.ROUNDING_FACTOR * eps32, rel=1e-5) and normal < 1e-2
    assert variants.limit("float32", 1.0, np.full(4, 1e-77)) > 1.0  # held as 0: relative error 1
    assert variants.limit("float32", 1.0, np.full(4, 1e-77)) > variants.DECISIVE_LIMIT  # so undecided
    near = np.full(4, 1e-40)  # a subnormal: float32 keeps about 5 of its 24 bits
    held = near.astype(np.float32).astype(np.float64)
    assert 0 < np.abs(held - near).max() and verify.relative_error(held, near) <= variants.limit("float32", 1, near)
    assert variants.limit("float64", 1.0, np.full(4, 1e-77)) == pytest.approx(
        variants.ROUNDING_FACTOR * float(np.finfo(np.float64).eps), rel=1e-12
    )


@pytest.mark.parametrize("hidden", ILL_CONDITIONED)
def test_a_wrong_derivative_of_an_ill_conditioned_activation_is_still_refused(tmp_path, hidden):
    old, new = ILL_CONDITIONED[hidden]
    text = build(RNNSpec(T=5, hidden=hidden)).module
    assert text.count(old) == 1
    report = verify.check_module(_load_text(text.replace(old, new), tmp_path))
    assert not report.ok
    assert any("wrong gradient of" in f and "higher-order difference" in f for f in report.failures), report.failures
    assert not report.ill_conditioned


def test_the_higher_order_difference_matches_the_exact_gradient_where_the_plain_one_misses():
    """Independent of the module: 1/(z - p) with a pole 5e-3 away, whose exact derivative is known."""
    pole = 0.005

    class Pole:
        PARAM_SHAPES = {"a": ("n",)}

        @staticmethod
        def loss(params, xs, targets):
            return float(np.sum(1.0 / (params["a"] + pole)))

    params = {"a": np.array([0.0, 0.3])}
    exact = -1.0 / (params["a"] + pole) ** 2
    plain = verify.finite_difference_gradient(Pole, params, None, None)["a"]
    again = verify.extrapolated_gradient(Pole, params, None, None, ["a"])["a"]
    assert verify.relative_error(plain, exact) > 1e-6  # the case this test is for
    assert verify.relative_error(again, exact) < 1e-9


def test_the_taylor_test_moves_its_steps_into_the_second_order_range(tmp_path):
    m = _load_text(build(RNNSpec(T=5, hidden="1/x")).module, tmp_path, "inverse")
    params, xs, targets = verify.random_problem(m)
    assert verify.taylor_test(m, params, xs, targets) == pytest.approx(2.0, abs=0.1)
    wrong = _load_text(build(RNNSpec(T=5, hidden="1/x")).module.replace(*ILL_CONDITIONED["1/x"]), tmp_path)
    assert verify.taylor_test(wrong, params, xs, targets) == pytest.approx(1.0, abs=0.2)


def test_a_point_that_overflows_is_scaled_down_until_finite(tmp_path):
    m = _load_text(build(RNNSpec(T=5, hidden="x**16")).module, tmp_path, "power")
    drawn = verify._draw(m, verify.CHECK_SIZES, 0, np.float64)
    with np.errstate(all="ignore"):
        assert not np.isfinite(m.loss(*drawn))  # the case this test is for
    params, xs, targets = verify.random_problem(m)
    loss, grads = m.loss_and_grads(params, xs, targets)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    scale = xs.flat[0] / drawn[1].flat[0]
    assert scale in (0.5, 0.25, 0.125, 0.0625)
    np.testing.assert_array_equal(params["W"], drawn[0]["W"] * scale)


def _recording(m, seen):
    """The module with its calls' input shapes and dtypes recorded."""

    def wrap(f):
        def call(params, xs, *rest, **kwargs):
            seen.add((np.shape(xs), np.asarray(xs).dtype.name))
            return f(params, xs, *rest, **kwargs)

        return call

    names = ("T", "SPEC", "PARAM_SHAPES", "INITIAL_STATES", "init_params")
    return types.SimpleNamespace(
        **{n: getattr(m, n) for n in names}, **{f: wrap(getattr(m, f)) for f in ("loss", "loss_and_grads", "forward")}
    )


def test_the_check_runs_at_the_sizes_seed_and_dtypes_it_is_given(module):
    seen = set()
    report = verify.check_module(_recording(module(3), seen), sizes=(2, 3, 4, 5), seed=7, dtypes=("float32",))
    assert report.ok, report.failures
    assert {(3, 5, 2), (3, 2)} <= {shape for shape, _ in seen}  # the batch and its single sequences
    assert {shape for shape, _ in seen} <= {(3, 5, 2), (3, 2)}
    assert {dtype for _, dtype in seen} == {"float64", "float32"}  # float64: the verified reference
    assert {name.split()[0] for name in report.paths} == {"float32"}
    assert report.sizes == (2, 3, 4, 5) and report.seed == 7 and report.dtypes == ("float32",)
    other = verify.check_module(module(3), seed=8)
    assert other.fd != verify.check_module(module(3), seed=7).fd  # the seed moves the point


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sizes=(4, 0, 3, 2)), "sizes must be four whole numbers"),
        (dict(sizes=(4, 5, 3)), "sizes must be four whole numbers"),
        (dict(dtypes=("float16",)), "dtypes must be some of float64, float32, got float16"),
        (dict(dtypes=()), "dtypes must be some of"),
    ],
)
def test_bad_check_arguments_are_refused(module, kwargs, message):
    with pytest.raises(ValueError, match=message):
        verify.check_module(module(1), **kwargs)


def test_progress_names_every_stage_and_each_parameter_of_the_oracle(module, built):
    lines = []
    verify.check_module(module(1), exact=True, build=built(1), progress=lines.append)
    assert lines[0] == "finite differences"
    assert {"Taylor test", "paths in float64", "paths in float32", "paths vs recursion"} <= set(lines)
    oracle = [line for line in lines if line.startswith("exact oracle: ") and "of 6" in line]
    assert oracle == [f"exact oracle: {n} ({i} of 6)" for i, n in enumerate(["U", "W", "b", "h0", "V", "c"], 1)]


def test_as_dict_is_json_ready_with_every_figure(module):
    report = verify.check_module(module(2), exact=True, sizes=(3, 4, 2, 1), seed=3)
    d = report.as_dict()
    json.dumps(d, allow_nan=False)
    assert d["ok"] is True and d["failures"] == [] and d["T"] == 2
    assert d["sizes"] == {"n_x": 3, "n_h": 4, "n_y": 2, "B": 1} and d["seed"] == 3
    assert d["dtypes"] == ["float64", "float32"]
    assert d["finite_differences"]["errors"] == report.fd and d["taylor_slope"] == report.taylor
    assert d["exact_oracle"]["errors"] == report.exact.grads
    assert set(d["paths"]) == set(report.paths)
    nan = verify.Report(T=2, fd={"U": float("nan")}, taylor=float("inf")).as_dict()
    assert nan["finite_differences"]["errors"]["U"] is None and nan["taylor_slope"] is None
    assert nan["ok"] is False and len(nan["failures"]) == 2
    json.dumps(nan, allow_nan=False)


def _rnngen(*args):
    return subprocess.run([sys.executable, "-m", "rnngen.cli", *args], capture_output=True, text=True)


def test_cli_check_runs_where_it_is_told_and_shows_the_oracle_moving(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(build(RNNSpec(T=1)).module, encoding="utf-8")
    args = ("--n-h", "3", "--batch", "1", "--dtype", "float32", "--seed", "2", "--exact", "-v")
    result = _rnngen("check", str(path), *args)
    assert result.returncode == 0, result.stderr
    assert "(n_x, n_h, n_y, B) = (4, 3, 3, 1), T = 1, seed 2:" in result.stdout
    assert "float32 single sequences" in result.stdout and "float64 loss()" not in result.stdout
    assert any(line.startswith("rnngen: exact oracle: U (1 of 6) ...") for line in result.stderr.splitlines())
    bad = _rnngen("check", str(path), "--dtype", "float16")
    assert bad.returncode != 0 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1
    assert "Invalid value for '--dtype'" in bad.stderr


@pytest.mark.parametrize(
    "spec",
    [RNNSpec(T=2, hidden=h) for h in ("tanh", "sigmoid", "relu", "leaky_relu", "identity", "softplus", "x/(1+abs(x))")]
    + [
        RNNSpec(T=2, output=o, loss=loss)
        for o, loss in (("sigmoid", "binary_cross_entropy"), ("tanh", "squared_error"))
    ]
    + [
        RNNSpec(T=3, hidden="asinh(x)", mapping="many-to-one", notation="row", names=("W", "U", "V"), hidden_bias=False)
    ],
    ids=str,
)
def test_the_oracles_derivatives_are_those_of_sympy_diff(tmp_path, spec):
    """The oracle's reverse sweep over its program of scalar definitions against sympy.diff of the
    whole scalar loss written out as one expression, and against mpmath's numerical derivative of
    the program at 60 digits."""
    import mpmath
    import sympy as sp

    m = _load_text(build(spec).module, tmp_path, "oracle")
    params, xs, targets = verify.random_problem(m, (2, 2, 2, 1))
    shapes = {"n_x": 2, "n_h": 2, "n_y": 2}
    symbols = {
        name: sp.Matrix(
            *(tuple(shapes[d] for d in dims) + (1,))[:2], lambda i, j, n=name: sp.Symbol(f"{n}{i}{j}", real=True)
        )
        for name, dims in m.PARAM_SHAPES.items()
    }
    exact_x = np.vectorize(lambda v: sp.Rational(float(v)), otypes=[object])(xs)
    program, definitions = verify._scalar_loss(m, symbols, exact_x, targets)
    assert definitions  # the case this test is for: the loss reads the named steps
    loss = verify._inline(program, definitions)
    # leaky_relu's slope is a Float: writing the loss out and sympy.diff form products of Floats,
    # which SymPy rounds to 15 digits (4e-14 off here); the oracle keeps the constants as given,
    # like mpmath below
    floats = bool(loss.atoms(sp.Float))
    with mpmath.workdps(60):
        env = {s: mpmath.mpf(float(v)) for n in symbols for s, v in zip(symbols[n], np.ravel(params[n]))}
        steps, memo = dict(env), {}
        value = verify._value_exactly(program, definitions, steps, memo)
        whole = verify._evaluate_exactly(loss, env, {})
        assert abs(value - whole) <= (1e-13 if floats else mpmath.mpf(10) ** -50) * abs(whole)
        adjoint = verify._gradient_exactly(program, definitions, steps, memo)
        for s in env:
            ours = adjoint.get(s, mpmath.mpf(0))  # a symbol whose every path is zero (a dead relu) has none
            theirs = verify._evaluate_exactly(sp.diff(loss, s), env, {})
            at = lambda v, s=s: verify._value_exactly(program, definitions, {**env, s: v}, {})  # noqa: E731
            numeric = mpmath.diff(at, env[s])
            assert abs(ours - numeric) <= mpmath.mpf(10) ** -35 * max(1, abs(numeric)), s
            assert abs(ours - theirs) <= (1e-13 if floats else mpmath.mpf(10) ** -35) * max(1, abs(theirs)), s
