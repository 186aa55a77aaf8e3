"""benchmarks/numpy_floor.py: the floor makes exactly the calls it lists, on the workload's operands."""

import importlib.util
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import ROOT

from rnngen.api import BPTT
from rnngen.bench.harness import make_problem
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports frameworks.py beside it
_spec = importlib.util.spec_from_file_location("numpy_floor", ROOT / "benchmarks" / "numpy_floor.py")
floor = importlib.util.module_from_spec(_spec)
sys.modules["numpy_floor"] = floor  # its dataclass looks its module up there
_spec.loader.exec_module(floor)

T, B, N_X, N_H, N_Y = 4, 3, 5, 6, 7
#: cell -> the GEMM-only limit's products (input, T recurrent, output, back through V, T - 1
#: recurrent, dE/dh0, dU and dW, dV; the LSTM's dU and dW one per gate), and the shapes of the
#: first step's calls: (gates, B, n_h) for a call over gates, else (B, n_h)
GEMMS_AND_STEP = {
    "lstm": (2 * T + 12, [(4, B, N_H), (4, B, N_H), (3, B, N_H)] + [(B, N_H)] * 5),
    "elman": (2 * T + 6, [(B, N_H)] * 2),
}


@pytest.mark.parametrize("cell", ["lstm", "elman"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_floor_makes_the_calls_it_counts(cell, dtype):
    problem = make_problem(RNNSpec(T=T, cell=cell), B, N_X, N_H, N_Y, dtype=dtype)
    listed = floor.FLOORS[cell]
    calls, gemm = floor.floor_calls(problem)
    # per step the listed calls, the last step back without its recurrent ones, then those over all steps
    counted = T * len(listed.forward_step) + T * len(listed.backward_step) - listed.last_step_skips
    assert len(calls) - sum(gemm) == counted + len(listed.all_steps)
    gemms, step_shapes = GEMMS_AND_STEP[cell]
    assert sum(gemm) == gemms
    for call in calls:
        out = call()
        out = call.args[0] if out is None else out  # np.copyto returns nothing: its destination
        assert out.dtype == dtype and np.isfinite(out).all()
    # a step's calls work on a step's operands
    steps = [c for c, g in zip(calls, gemm) if not g][: len(listed.forward_step)]
    assert [c.keywords["out"].shape for c in steps] == step_shapes


def test_the_elman_floor_is_an_elman_step():
    """Its calls are all a network needs, not fewer: without the biases (whose adds it leaves out)
    and with h0 the floor's start, they give the module's gradients."""
    spec = RNNSpec(T=T, hidden_bias=False, output_bias=False)
    problem = make_problem(spec, B, N_X, N_H, N_Y)
    problem = replace(problem, params={**problem.params, "h0": np.full(N_H, 0.1)})  # the floor's h_0
    calls, gemm = floor.floor_calls(problem)
    elementwise = [c.func for c, g in zip(calls, gemm) if not g]
    assert elementwise[: 2 * T] == [np.add, np.tanh] * T  # forward, step by step
    assert elementwise[2 * T + 6 : 2 * T + 6 + 2 * T - 1] == [np.multiply] + [np.add, np.multiply] * (T - 1)
    for call in calls:
        call()
    *_, dh0, dU, dW, dV, _, _ = (c.keywords["out"] for c in calls)
    _, grads = BPTT(build(spec)).module().loss_and_grads(problem.params, problem.xs, problem.targets)
    for name, ours in {"h0": dh0, "U": dU, "W": dW, "V": dV}.items():
        np.testing.assert_allclose(ours, grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
