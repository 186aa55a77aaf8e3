"""benchmarks/numpy_floor.py: the floor makes exactly the calls it lists, on the workload's operands."""

import importlib.util
import sys

import numpy as np
import pytest
from conftest import ROOT

from rnngen.bench.harness import make_problem
from rnngen.spec import RNNSpec

sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports frameworks.py beside it
_spec = importlib.util.spec_from_file_location("numpy_floor", ROOT / "benchmarks" / "numpy_floor.py")
floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(floor)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_floor_makes_the_calls_it_counts(dtype):
    T, B, n_x, n_h, n_y = 4, 3, 5, 6, 7
    problem = make_problem(RNNSpec(T=T, cell="lstm"), B, n_x, n_h, n_y, dtype=dtype)
    calls, gemm = floor.floor_calls(problem)
    # per step the listed calls, the last step back without its 3 recurrent ones, then those over all steps
    listed = T * len(floor.FORWARD_STEP) + T * len(floor.BACKWARD_STEP) - 3 + len(floor.ALL_STEPS)
    assert len(calls) - sum(gemm) == listed
    # the GEMM-only limit's products: input, T recurrent, output, back through V, T - 1 recurrent,
    # dE/dh0, dU and dW (one per gate), dV
    assert sum(gemm) == 2 * T + 12
    for call in calls:
        out = call()
        out = call.args[0] if out is None else out  # np.copyto returns nothing: its destination
        assert out.dtype == dtype and np.isfinite(out).all()
    # a step's calls work on a step's operands: (gates, B, n_h) for a call over gates, else (B, n_h)
    steps = [c for c, g in zip(calls, gemm) if not g][: len(floor.FORWARD_STEP)]
    assert [c.keywords["out"].shape for c in steps] == [(4, B, n_h), (4, B, n_h), (3, B, n_h)] + [(B, n_h)] * 5
