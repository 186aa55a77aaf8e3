"""Every output/loss pair, and the sigmoid, against high-precision references, in ulps of the result.

The module is built through the pipeline for a network whose output pre-activation is the bias
alone (identity hidden layer, zero weights, h0 = 0, so o = c): its loss is E(o, y) and its
gradient with respect to c is dE/do. The references are computed with mpmath at 1000 digits from
the textbook definitions, not from any form the code uses. The error is measured in ulps of the
exact result in the module's dtype (the spacing of floats at that value, the smallest subnormal
below the normal range), so a result that underflows is compared with 0 or the nearest subnormal.
"""

import functools
import types

import mpmath
import numpy as np
import pytest

from rnngen.activations import elementwise, pairs
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

#: Digits of the references: e^-2000 beside 1 still counts (870 digits would do).
DIGITS = 1000

#: The bound: "a few ulp". A loss sums three entries, each a few roundings from exact; the worst
#: measured over these cases is 3.8 ulp (the tanh squared-error gradient in float64).
ULPS = 6


def _module(output, loss) -> types.ModuleType:
    spec = RNNSpec(T=1, hidden="identity", output=output, loss=loss, mapping="many-to-one")
    module = types.ModuleType(spec.name)
    exec(compile(build(spec).module, spec.name, "exec"), module.__dict__)
    return module


@functools.cache
def _modules():
    return {pair: _module(*pair) for pair in pairs()}


def _mp_output(output, o):
    o = [mpmath.mpf(v) for v in o]
    if output == "softmax":
        top = max(o)
        exps = [mpmath.exp(v - top) for v in o]
        return [e / mpmath.fsum(exps) for e in exps]
    if output == "sigmoid":
        return [1 / (1 + mpmath.exp(-v)) for v in o]
    if output == "tanh":
        return [mpmath.tanh(v) for v in o]
    return o


def _mp_loss(output, loss, o, y):
    """E(o, y) from the textbook definitions (mpmath's exponent range holds every probability here)."""
    p = _mp_output(output, o)
    y = [mpmath.mpf(v) for v in y]
    if loss == "cross_entropy":
        return -mpmath.fsum(yi * mpmath.log(pi) for pi, yi in zip(p, y) if yi)
    if loss == "binary_cross_entropy":
        return -mpmath.fsum(
            (yi * mpmath.log(pi) if yi else 0) + ((1 - yi) * mpmath.log(1 - pi) if yi != 1 else 0)
            for pi, yi in zip(p, y)
        )
    return mpmath.fsum((pi - yi) ** 2 for pi, yi in zip(p, y)) / 2


def _mp_grad(output, loss, o, y):
    """dE/do by mpmath's own numerical differentiation of the loss."""
    return [
        mpmath.diff(lambda v, i=i: _mp_loss(output, loss, [*o[:i], v, *o[i + 1 :]], y), mpmath.mpf(o[i]))
        for i in range(len(o))
    ]


def _ulps(got, exact, dtype) -> float:
    """|got - exact| in units of the spacing of ``dtype`` at ``exact``."""
    info = np.finfo(dtype)
    size = abs(exact)
    spacing = float(np.spacing(dtype(size))) if size >= info.tiny else float(info.smallest_subnormal)
    if size > info.max:
        return 0.0 if np.isinf(got) else float("inf")
    return float(abs(mpmath.mpf(float(got)) - exact) / spacing)


def _cases(output, loss):
    """(o, y): confident correct and confident wrong at growing logits, a moderate case, a mixed one."""
    out = []
    for big in (0.5, 4.0, 20.0, 40.0, 100.0, 300.0, 1000.0):
        o = (big, 0.0, -big) if output != "sigmoid" else (big, -big, big / 2)
        if loss == "cross_entropy":
            out += [(o, (1.0, 0.0, 0.0)), (o, (0.0, 0.0, 1.0))]  # the leading class, the last one
        elif output == "identity":
            out += [(o, (big + 0.25, -1.5, 3.0))]
        elif output == "tanh":
            out += [(o, (1.0, 0.0, -1.0)), (o, (-1.0, 0.0, 1.0))]
        else:  # outputs in (0, 1), targets 0 or 1: right, then wrong, entry by entry
            right = tuple(float(p > 0.5) for p in (float(v) for v in _mp_output(output, o)))
            out += [(o, right), (o, tuple(1.0 - r for r in right))]
    return out


def _measure(pair, what, dtype):
    with mpmath.workdps(DIGITS):
        return _measure_exactly(pair, what, dtype)


def _measure_exactly(pair, what, dtype):
    """The worst error over the cases, in ulps, and where it is: ``(error, (o, y, got, exact))``."""
    output, loss = pair
    module = _modules()[pair]
    worst = (0.0, None)
    for o, y in _cases(output, loss):
        params = {
            "U": np.zeros((2, 2), dtype),
            "W": np.zeros((2, 2), dtype),
            "V": np.zeros((3, 2), dtype),
            "b": np.zeros(2, dtype),
            "c": np.array(o, dtype),
            "h0": np.zeros(2, dtype),
        }
        xs = np.zeros((1, 2), dtype)
        o_held = [float(v) for v in params["c"]]  # the logits as the dtype holds them
        exact = [_mp_loss(output, loss, o_held, y)] if what == "loss" else _mp_grad(output, loss, o_held, y)
        forms = [np.array(y, dtype)]
        if loss == "cross_entropy":  # a class index too, which the softmax module keeps as an index
            forms.append(np.array(y.index(1.0)))
        for targets in forms:
            with np.errstate(over="raise", invalid="raise", divide="raise"):  # no inf, no 0 * inf, no log 0
                E, grads = module.loss_and_grads(params, xs, targets)
            got = [E] if what == "loss" else list(grads["c"])
            for g, e in zip(got, exact):
                err = _ulps(g, e, dtype)
                if err > worst[0]:
                    worst = (err, (o, y, targets.dtype.kind, float(g), float(e)))
    return worst


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("what", ["loss", "grad"])
@pytest.mark.parametrize("pair", pairs(), ids=lambda p: "-".join(p))
def test_every_output_loss_pair_is_accurate_to_a_few_ulp(pair, what, dtype):
    err, where = _measure(pair, what, dtype)
    assert err <= ULPS, f"{err:.3g} ulp at (o, y, targets kind, got, exact) = {where}"


def test_the_sigmoid_helper_is_accurate_in_both_tails_and_both_dtypes():
    rule = elementwise("sigmoid")
    space = {"np": np}
    exec(dict(rule.helpers)["_sigmoid"], space)
    a = np.concatenate([np.linspace(-760.0, 760.0, 3041), [-88.5, -87.9, -103.9, -1e300, 1e300]])
    for dtype in (np.float64, np.float32):
        x = np.clip(a, -3e38, 3e38).astype(dtype) if dtype is np.float32 else a
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            got = space["_sigmoid"](x)
            inplace = x.copy()
            space["_sigmoid"](inplace, out=inplace)
        assert got.dtype == dtype and np.array_equal(got, inplace)
        worst = max(_ulps(g, 1 / (1 + mpmath.exp(-mpmath.mpf(float(v)))), dtype) for g, v in zip(got, x))
        assert worst <= 3, worst  # measured: 2.1 ulp


def test_a_saturated_many_to_one_sigmoid_network_gets_its_tiny_gradient_right():
    """At the last step one hidden unit sits at z = -299.25: dE/dU_00 is about sigma(-299.25) = 1e-130.

    Capping e^-a at e^88 made that unit 6e-39 and the gradient 1e89 times too large. The reference
    is the same network written out in mpmath and differentiated by mpmath at 400 digits.
    """
    spec = RNNSpec(T=2, hidden="sigmoid", output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one")
    module = types.ModuleType(spec.name)
    exec(compile(build(spec).module, spec.name, "exec"), module.__dict__)
    params = {
        "U": np.array([[-300.0], [1.0]]),
        "W": np.array([[1.0, 0.5], [-0.5, 1.0]]),
        "V": np.array([[1.5, -2.0]]),
        "b": np.array([0.0, 0.0]),
        "c": np.array([0.25]),
        "h0": np.array([0.0, 0.0]),
    }
    xs = np.array([[0.0], [1.0]])  # z_1 = 0, z_2 = (-299.25, 1.25)
    target = np.array([1.0])

    def exact_loss(u00):
        sig = lambda v: 1 / (1 + mpmath.exp(-v))  # noqa: E731
        U = [u00, mpmath.mpf(1)]
        W, V, c = params["W"], params["V"], params["c"]
        h = [mpmath.mpf(0), mpmath.mpf(0)]
        for x in xs[:, 0]:
            h = [sig(U[i] * x + sum(W[i][j] * h[j] for j in range(2))) for i in range(2)]
        return -mpmath.log(sig(sum(V[0][j] * h[j] for j in range(2)) + c[0]))  # the target is 1

    with mpmath.workdps(400):
        exact = mpmath.diff(exact_loss, mpmath.mpf(-300))
    _, grads = module.loss_and_grads(params, xs, target)
    assert 1e-140 < abs(float(exact)) < 1e-120  # tiny, and a float64 holds it
    assert _ulps(grads["U"][0, 0], exact, np.float64) <= ULPS, (grads["U"][0, 0], float(exact))


def test_every_pair_has_a_closed_form_output_gradient_that_list_can_print():
    from rnngen.activations import FUSED

    assert set(FUSED) == set(pairs())  # no pair goes through the general Jacobian and 1 - ŷ
    assert FUSED[("sigmoid", "cross_entropy")].formula() == "-(y ∘ σ(-o))"
    assert FUSED[("softmax", "cross_entropy")].formula() == "ŷ - y"
