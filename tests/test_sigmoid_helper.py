"""The NumPy helper that spells the sigmoid in every module: its error and its passes over the array.

The reference is ``1 / (1 + e^-a)`` in long double, a computation independent of the helper's.
"""

import numpy as np
import pytest

from rnngen.activations import elementwise


def _helper():
    ((name, source),) = elementwise("sigmoid").helpers
    namespace = {"np": np}
    exec(source, namespace)  # the module's text, as the generated module runs it
    return namespace[name]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_sigmoid_is_within_an_ulp_of_one_everywhere_and_never_overflows(dtype):
    """Absolute error: an ulp of 1 in float32 ((1 + tanh(a/2)) / 2); float64 keeps 1 / (1 + e^-a), to an ulp
    of sigma itself wherever it is a normal number."""
    a = np.concatenate([np.linspace(-200.0, 200.0, 400_001), [-1e30, -1e4, -89.0, 1e4, 1e30]]).astype(dtype)
    with np.errstate(over="ignore"):  # e^(1e30) is inf even in long double: the reference is then 0
        exact = 1.0 / (1.0 + np.exp(-a.astype(np.longdouble)))
    with np.errstate(over="raise", invalid="raise"):  # no overflow, no invalid value, at any argument
        got = _helper()(a)
    assert got.dtype == dtype
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(got.astype(np.longdouble) - exact)) <= eps
    middle = np.abs(a) <= (4 if dtype == np.float32 else 200)  # float32: where gates mostly live
    assert np.max(np.abs(got[middle] / exact[middle] - 1)) <= 16 * eps


def test_the_sigmoid_applies_in_place_to_a_strided_view():
    """A gated block's sigmoid gates are a strided view of the block: written in place, nothing else touched."""
    block = np.random.default_rng(0).standard_normal((4, 3, 2, 5))
    before = block.copy()
    view = block[1:4, 1]
    assert _helper()(view, out=view) is view
    assert np.allclose(view, 1.0 / (1.0 + np.exp(-before[1:4, 1])), rtol=1e-15, atol=0)
    untouched = np.ones(block.shape, bool)
    untouched[1:4, 1] = False
    assert np.array_equal(block[untouched], before[untouched])


class _Counting(np.ndarray):
    """An array that records each ufunc call on it: ``(ufunc name, method)``."""

    calls: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _Counting.calls.append((ufunc.__name__, method))
        plain = [x.view(np.ndarray) if isinstance(x, _Counting) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, _Counting) else x for x in kwargs["out"])
        getattr(ufunc, method)(*plain, **kwargs)
        return kwargs["out"][0].view(_Counting) if "out" in kwargs else NotImplemented


def test_the_float32_sigmoid_is_one_transcendental_call_and_no_reduction():
    """Per step of a gated cell, the gates' sigmoid runs on a small block, where each pass costs: in float32,
    four elementwise passes, one of them transcendental, and no reduction (no test of the whole array
    for an argument that would overflow, which ``1 / (1 + e^-a)`` needs)."""
    a = np.random.default_rng(1).standard_normal((3, 2, 5)).astype(np.float32).view(_Counting)
    _Counting.calls = []
    _helper()(a, out=a)
    transcendental = {"exp", "expm1", "tanh", "log", "log1p", "logaddexp"}
    assert all(method == "__call__" for _, method in _Counting.calls), _Counting.calls
    assert sum(name in transcendental for name, _ in _Counting.calls) == 1
    assert len(_Counting.calls) <= 4
