"""Cost linear in T, measured by size (never by wall clock): a linear fit leaves no residual."""

import numpy as np
import pytest

TS = (10, 20, 40, 80)


def _linear_fit_residual(ts, sizes):
    coeffs = np.polyfit(ts, sizes, 1)
    residual = np.max(np.abs(np.polyval(coeffs, ts) - sizes)) / max(sizes)
    return coeffs[0], residual


@pytest.mark.parametrize(
    "measure",
    [
        lambda b: len(b.module.splitlines()),
        lambda b: len(b.latex),
        lambda b: len(b.derivation.adjoints) + len(b.derivation.graph.nodes),
        lambda b: sum(len(str(s.expr)) for s in b.program.stmts),
    ],
    ids=["module lines", "document characters", "graph nodes", "program size"],
)
def test_outputs_grow_linearly_in_T(built, measure):
    sizes = [measure(built(T)) for T in TS]
    slope, residual = _linear_fit_residual(TS, sizes)
    assert residual < 0.02, sizes  # a T^2 term would leave a large residual over 10..80
    assert slope >= 0


def test_module_adds_six_lines_per_step(built):
    # three in-place lines forward (matmul, add, tanh for h_t) and three backward (matmul, add,
    # product with f' for dz_t): nothing else depends on T
    lines = [len(built(T).module.splitlines()) for T in (10, 11, 12)]
    assert lines[2] - lines[1] == lines[1] - lines[0] == 6


def _python_calls(T: int) -> int:
    """Function calls made by the whole pipeline: deterministic, unlike wall time."""
    import cProfile
    import gc
    import pstats

    from sympy.core.cache import clear_cache

    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    clear_cache()
    gc.collect()  # no collection inside: its finalizers' calls would count, at moments that vary by run
    gc.disable()
    profile = cProfile.Profile()
    try:
        profile.enable()
        build(RNNSpec(T=T))
        profile.disable()
    finally:
        gc.enable()
    return pstats.Stats(profile).total_calls


def test_pipeline_work_grows_linearly_in_T():
    _python_calls(5)  # warm up: imports and template compilation are not per-T work
    ts = (20, 40, 80)
    calls = [_python_calls(T) for T in ts]
    _, residual = _linear_fit_residual(ts, calls)
    assert residual < 0.03, calls
    assert calls[2] / calls[1] < 2.2, calls  # a quadratic pass would give close to 4
