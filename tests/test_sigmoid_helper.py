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
def test_the_sigmoid_is_accurate_relative_to_itself_in_both_tails_and_never_overflows(dtype):
    """A sigmoid output's loss reads log(sigma) and log(1 - sigma): the helper must be accurate relative to
    sigma itself wherever sigma is a normal number, in both dtypes, not only to an ulp of 1 (which
    (1 + tanh(a/2)) / 2 is, while it returns 0 for sigma(-20) in float32)."""
    a = np.concatenate([np.linspace(-200.0, 200.0, 400_001), [-1e30, -1e4, -89.0, 1e4, 1e30]]).astype(dtype)
    with np.errstate(over="ignore"):  # e^(1e30) is inf even in long double: the reference is then 0
        exact = 1.0 / (1.0 + np.exp(-a.astype(np.longdouble)))
    with np.errstate(over="raise", invalid="raise"):  # no overflow, no invalid value, at any argument
        got = _helper()(a)
    assert got.dtype == dtype
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(got.astype(np.longdouble) - exact)) <= eps
    normal = exact >= np.finfo(dtype).tiny
    assert np.max(np.abs(got[normal] / exact[normal] - 1)) <= 16 * eps


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
