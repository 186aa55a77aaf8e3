"""Custom activations written as expressions in x: what is derived, what is refused, and how."""

import subprocess
import sys
import types

import pytest

from rnngen import verify
from rnngen.pipeline import build
from rnngen.spec import RNNSpec


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
