"""The generated module's argument checks at their edges: every integer dtype of class indices,
zero sizes, and arrays that forward() hands out without aliasing each other."""

import itertools

import numpy as np
import pytest

from rnngen.spec import RNNSpec

INTEGER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
#: the same integers in the other byte order (an array read from a file written elsewhere)
INTEGER_DTYPES += [np.dtype(d).newbyteorder() for d in (np.int16, np.int64, np.uint32)]


def _problem(m, n_y, B=2, seed=0):
    params = m.init_params(n_x=3, n_h=4, n_y=n_y, seed=seed)
    params = {k: v + 0.1 for k, v in params.items()}  # nonzero biases and h0
    xs = np.random.default_rng(seed).standard_normal((m.T, B, 3))
    return params, xs


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=lambda d: np.dtype(d).str)
# softmax: indices stay flat indices; sigmoid: one-hot rows are gathered from them
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_class_indices_of_every_integer_dtype_give_the_int64_result(module_of, output, dtype):
    m = module_of(RNNSpec(T=3, output=output))
    params, xs = _problem(m, n_y=5)
    targets = np.random.default_rng(1).integers(0, 5, (3, 2))
    E, grads = m.loss_and_grads(params, xs, targets)
    E_d, grads_d = m.loss_and_grads(params, xs, targets.astype(dtype))
    assert E_d == E
    for k in grads:
        np.testing.assert_array_equal(grads_d[k], grads[k], err_msg=k)
    assert m.loss(params, xs, targets.astype(dtype)) == m.loss(params, xs, targets)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=lambda d: np.dtype(d).str)
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_out_of_range_class_indices_are_refused_before_any_cast(module_of, output, dtype):
    """int8 with n_y = 300: -1 seen as unsigned is 255 < 300, which passed and wrapped to the last class."""
    m = module_of(RNNSpec(T=3, output=output))
    for n_y in (5, 300):
        params, xs = _problem(m, n_y=n_y)
        targets = np.zeros((3, 2), dtype)
        bad = [-1, np.iinfo(dtype).min] if np.dtype(dtype).kind == "i" else []
        bad += [v for v in (n_y, np.iinfo(dtype).max) if n_y <= v <= np.iinfo(dtype).max]
        for value in bad:
            targets[1, 1] = value
            # the range and where it comes from, and the values given (the others are 0)
            message = rf"^targets \(class indices\) must lie in 0..{n_y - 1} \(n_y from params\['V'\]\), got "
            message += rf"{min(value, 0)}\.\.{max(value, 0)}$"
            for call in (m.loss, m.loss_and_grads):
                with pytest.raises(ValueError, match=message):
                    call(params, xs, targets)
        targets[1, 1] = min(n_y - 1, np.iinfo(dtype).max)  # the largest valid index passes
        assert np.isfinite(m.loss(params, xs, targets))


def test_boolean_targets_are_refused(module_of):
    for spec in (RNNSpec(T=3), RNNSpec(T=3, loss="squared_error", output="identity")):
        m = module_of(spec)
        params, xs = _problem(m, n_y=2)
        for targets in (np.zeros((3, 2), bool), np.zeros((3, 2, 2), bool)):
            with pytest.raises(ValueError, match=r"targets have dtype bool; expected"):
                m.loss_and_grads(params, xs, targets)


@pytest.mark.parametrize("size", ["n_x", "n_h", "n_y"])
def test_zero_sizes_are_refused_naming_the_argument(module, size):
    m = module(3)
    sizes = {"n_x": 3, "n_h": 4, "n_y": 2, size: 0}
    with pytest.raises(ValueError, match=rf"^{size} must be a whole number of at least 1, got 0$"):
        m.init_params(**sizes)
    params = {name: np.zeros(tuple(sizes[d] for d in dims)) for name, dims in m.PARAM_SHAPES.items()}
    xs = np.zeros((3, 2, sizes["n_x"]))
    targets = np.zeros((3, 2), np.int64)
    first = next(k for k, dims in m.PARAM_SHAPES.items() if size in dims)
    message = rf"params\['{first}'\] has shape \(.*\): {size} = 0; every size must be at least 1"
    for call in (m.loss, m.loss_and_grads):
        with pytest.raises(ValueError, match=message):
            call(params, xs, targets)
    with pytest.raises(ValueError, match=message):
        m.forward(params, xs)


@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=3),
        RNNSpec(T=3, output="identity", loss="squared_error"),
        RNNSpec(T=3, output="identity", loss="squared_error", mapping="many-to-one"),
        RNNSpec(T=3, output="tanh", loss="squared_error"),
    ],
    ids=str,
)
def test_forward_returns_arrays_that_do_not_alias_each_other(module_of, spec):
    m = module_of(spec)
    params, xs = _problem(m, n_y=2)
    for x in (xs, xs[:, 0]):  # batched and single sequence
        out = m.forward(params, x)
        for a, b in itertools.combinations(out, 2):
            assert not np.shares_memory(out[a], out[b]), (a, b)
        expected = {k: v.copy() for k, v in out.items()}
        out["o"][...] = 7.0  # a caller who changes one output changes no other
        np.testing.assert_array_equal(out["yhat"], expected["yhat"])
        np.testing.assert_array_equal(out["h"], expected["h"])


def test_remembered_checks_still_refuse_what_they_would_refuse(module):
    """A call whose shapes and dtypes (of xs and of every parameter) passed before skips the checks,
    so everything they read must be in what is remembered: after good calls, each bad argument
    that differs from them in one way is still refused, and good calls of other shapes agree."""
    m = module(3)
    params, xs = _problem(m, n_y=2, B=3)
    targets = np.random.default_rng(2).integers(0, 2, (3, 3))
    E, grads = m.loss_and_grads(params, xs, targets)
    E1, _ = m.loss_and_grads(params, xs[:, :1], targets[:, :1])
    single, _ = m.loss_and_grads(params, xs[:, 0], targets[:, 0])  # remembered apart from (T, 1, n_x)
    assert single == E1
    np.testing.assert_array_equal(m.loss_and_grads(params, xs, targets)[1]["W"], grads["W"])
    bad = [
        ((params, xs[:2], targets[:2]), r"xs has shape \(2, 3, 3\); expected"),
        ((params, xs[..., :2], targets), r"xs has shape \(3, 3, 2\); expected"),
        ((params, xs[:, 0, :2], targets[:, 0]), r"xs has shape \(3, 2\); expected"),
        ((params, xs[:, :0], targets[:, :0]), r"no sequences \(B = 0\)"),
        ((params, xs.astype(np.float16), targets), r"xs has dtype float16"),
        (({**params, "b": params["b"][:3]}, xs, targets), r"params\['b'\] has shape \(3,\)"),
        (({**params, "W": params["W"].astype(int)}, xs, targets), r"params\['W'\] has dtype int64"),
        ((list(params.values()), xs, targets), r"params must be a dict"),
        (({k: v for k, v in params.items() if k != "h0"}, xs, targets), r"params is missing h0"),
        ((params, xs, targets[:, :2]), r"targets \(class indices\) have shape \(3, 2\); expected \(3, 3\)"),
    ]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            m.loss_and_grads(*args)


def test_a_stacked_module_refuses_an_xs_without_steps_in_one_line(module_of):
    """No parameter of the stacked notation has n_x whole (it is W's width less n_h): read off xs,
    an xs of no axes raised KeyError 'n_x' from inside the check of the blocks [W_h, W_x]."""
    m = module_of(RNNSpec(T=3, notation="stacked"))
    params, xs = _problem(m, n_y=2)
    for bad in (np.float64(1.0), xs[0, 0]):
        with pytest.raises(ValueError, match=r"xs has shape \((\d+,)?\); expected \(T, n_x\) = \(3, \d+\) or"):
            m.loss_and_grads(params, bad, np.zeros((3, 2), np.int64))
