"""Custom activations written as expressions in x: what is derived, what is refused, and how."""

import subprocess
import sys
import types

import pytest

from rnngen import expression, verify
from rnngen.pipeline import build
from rnngen.spec import RNNSpec, SpecError


def rnngen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnngen.cli", *args], cwd=cwd, capture_output=True, text=True)


def _module(spec: RNNSpec) -> types.ModuleType:
    module = types.ModuleType(spec.name)
    exec(compile(build(spec).module, spec.name, "exec"), module.__dict__)
    return module


# --- a derivative that is a number, not an expression in x ------------------------------------------

CONSTANT_SLOPES = ["x", "2*x", "-x", "x+1", "0.5*x"]


@pytest.mark.parametrize("text", CONSTANT_SLOPES)
def test_a_constant_derivative_gives_a_module_whose_gradients_match_finite_differences(text):
    module = _module(RNNSpec(T=3, hidden=text))
    params, xs, targets = verify.random_problem(module)
    errors = verify.finite_differences(module, params, xs, targets)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("text, factor", [("2*x", 2.0), ("-x", -1.0), ("x+1", 1.0), ("0.5*x", 0.5)])
def test_a_constant_derivative_scales_the_backward_step_in_the_document(text, factor):
    # the per-step formula is f' times the whole sum: -(a + b), never -a + b
    latex = build(RNNSpec(T=3, hidden=text)).latex
    sweep = [line for line in latex.splitlines() if line.startswith(r"\delta^{z}_{t} &=") and "W^{\\top}" in line]
    assert sweep, "no backward step in the document"
    shown = {2.0: r"2 \left(", -1.0: r"-\left(", 0.5: r"0.5 \left(", 1.0: r"\tilde{\delta}^{h}_{t} + W"}[factor]
    assert shown in sweep[-1], sweep[-1]


@pytest.mark.parametrize("text", ["2*x", "x+1"])
def test_a_constant_derivative_is_derived_checked_and_written_by_the_cli(tmp_path, text):
    result = rnngen("derive", "--T", "3", "--hidden", text, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "ok: worst finite-difference error" in result.stdout
    latex = rnngen("latex", "--T", "3", "--hidden", text)
    assert latex.returncode == 0 and "Traceback" not in latex.stderr, latex.stderr


def test_a_constant_derivative_passes_the_check_of_the_python_api():
    import rnngen as api

    report = api.derive(T=3, hidden="0.5*x").check()
    assert max(report.fd.values()) < 1e-6, report


# --- refused expressions: one line each, from the spec and from the command line ----------------------

REFUSED = [
    ("x" + "+x" * 50_000, "longer than 200 characters"),  # was a RecursionError: parsed before the limit
    ("x*" + "9" * 5000, "longer than 200 characters"),  # past Python's digit limit
    ("x*(1000000**16)**16", "a constant part larger than 1e+100"),  # was an OverflowError
    ("((1000000**16)**16)**16*x", "a constant part larger than 1e+100"),  # 10**24576: past the digit limit
    ("1e6**16*x*1e6**16*1e6**16*1e6**16", "a constant part larger than 1e+100"),  # folded to 1e384: inf
    ("exp(200)*exp(200)*x", "a constant part larger than 1e+100"),  # SymPy folds it to exp(400)
    ("exp(1e6)*x", "a constant part larger than 1e+100"),
    ("sqrt(-1)*x", "the complex constant I"),
    ("log(x)", "'log(x)' or its derivative is not finite at x = -20"),
    ("exp(x**16)", "is not finite at x = -20"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=[t[:24] for t, _ in REFUSED])
def test_a_refused_expression_is_one_spec_error(text, message):
    with pytest.raises(SpecError) as info:
        RNNSpec(T=3, hidden=text)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", REFUSED[::2] + REFUSED[7:8], ids=lambda v: str(v)[:24])
def test_a_refused_expression_is_one_line_on_the_command_line_and_writes_nothing(tmp_path, text, message):
    result = rnngen("derive", "--T", "3", "--hidden", text, "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line: no warnings
    assert result.stderr.startswith("rnngen: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_computed_constant_within_range_is_kept():
    spec = RNNSpec(T=3, hidden="x*exp(2)")
    module = _module(spec)
    params, xs, targets = verify.random_problem(module)
    assert max(verify.finite_differences(module, params, xs, targets).values()) < 1e-6


# --- names with stray spaces, and the loss an output fits -----------------------------------------------


@pytest.mark.parametrize("text, name", [("relu ", "relu"), (" leaky_relu", "leaky_relu"), ("tanh\t", "tanh")])
def test_a_named_activation_with_spaces_around_it_is_that_activation(text, name):
    spec = RNNSpec(T=3, hidden=text)
    assert spec.hidden == name and not spec.is_custom and spec == RNNSpec(T=3, hidden=name)


def test_the_identity_output_with_the_default_loss_names_the_loss_it_fits(tmp_path):
    result = rnngen("derive", "--T", "3", "--output", "identity", "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1
    assert "the identity output fits --loss squared_error" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_activation_that_overflows_in_the_check_prints_no_numpy_warnings(tmp_path):
    # exp(x) is a valid activation, but 20 steps of random weights overflow it: the check meets
    # inf and nan at the drawn point (no warning may reach the terminal), then checks at a
    # smaller one and says so
    result = rnngen("derive", "--T", "20", "--hidden", "exp(x)", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == ""
    assert "the loss overflows at full scale" in result.stdout


@pytest.mark.parametrize("name", sorted(expression.TABLE))
def test_every_function_of_the_one_table_parses_prints_and_evaluates_alike(name):
    # the parser, the scalar printer and SymPy's evaluation read one table: a function missing from
    # one of them, or spelled differently, fails here
    import numpy as np

    from rnngen.activations import elementwise

    text = f"{name}(x * x / 3 + x / 7 + 2)"  # positive (log, sqrt), not known to be by SymPy (abs)
    rule = elementwise(f"custom:{text}")
    source = dict(rule.helpers)["_custom"]
    namespace = {"np": np}
    exec(source, namespace)
    a = np.linspace(-1, 1, 7)
    exact = np.array([float(expression.parse(text).subs(expression.X, v)) for v in a])
    np.testing.assert_allclose(namespace["_custom"](a), exact, rtol=1e-14)
    assert expression.NUMPY[expression.FUNCTIONS[name].__name__] + "(" in source
