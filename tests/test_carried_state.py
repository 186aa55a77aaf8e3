"""A state carried over between calls (issue 17, item 1): ``state=`` per sequence, ``grads["state"]``
and ``return_state=True``, checked by the exact oracle, central differences, the Taylor test, the
plain loop, and chunks of a long sequence against one module unrolled over all of it."""

import re

import numpy as np
import pytest

from rnngen import carried, verify
from rnngen.reference import final_states
from rnngen.spec import RNNSpec

STRUCTURES = [
    RNNSpec(T=3),
    RNNSpec(T=1),
    RNNSpec(T=3, layers=2),
    RNNSpec(T=3, bidirectional=True),
    RNNSpec(T=2, layers=3, bidirectional=True, hidden="relu"),
    RNNSpec(T=3, notation="row", names=("W", "U", "V"), hidden_bias=False, output_bias=False),
    RNNSpec(T=3, notation="stacked"),
    RNNSpec(T=3, notation="stacked-row", layers=2),
    RNNSpec(T=3, mapping="many-to-one", output="identity", loss="squared_error"),
    RNNSpec(T=3, hidden="sigmoid", output="sigmoid", loss="binary_cross_entropy", input_grad=True),
    # where one Taylor direction read 1.83, the states overflowed under a finite loss, the loss stood still
    RNNSpec(T=2, hidden="x/(1+abs(x))"),
    RNNSpec(T=3, hidden="exp(x)", output="tanh", loss="squared_error"),
    RNNSpec(T=2, hidden="x**16", output="sigmoid", loss="squared_error"),
]


@pytest.mark.parametrize("spec", STRUCTURES, ids=lambda s: s.name)
def test_every_carried_state_check_passes(module_of, spec):
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m)
    figures = carried.check(m, params, xs, targets)
    assert carried.failures(figures) == [], figures


@pytest.mark.parametrize("spec", STRUCTURES[:5], ids=lambda s: s.name)
def test_the_exact_oracle_checks_the_state_gradient(module_of, spec):
    m = module_of(spec)
    result = verify.exact_oracle(m, state=True)
    state_keys = [k for k in result.grads if k.startswith("state:")]
    assert sorted(state_keys) == sorted(f"state:{n}" for n in m.INITIAL_STATES)
    assert result.worst <= verify.EXACT_TOLERANCE, result.grads


def _broken(spec, old: str, new: str, tmp_path):
    """The module of ``spec`` with a piece of its text changed everywhere: a bug the checks must catch."""
    from rnngen.pipeline import build

    text = build(spec).module
    assert old in text
    path = tmp_path / f"{spec.name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return verify.load_module(path)


def test_the_checks_catch_a_wrong_state_gradient_and_a_wrong_final_state(tmp_path):
    # the state's gradient taken a step late (dE/dz_1 for dE/dh_0)
    late = _broken(RNNSpec(T=3), "[dh[0]]", "[dz_[0]]", tmp_path)
    params, xs, targets = verify.random_problem(late)
    figures = carried.check(late, params, xs, targets)
    assert figures["finite_differences"] > 1e-2 and figures["taylor_slope"] < 1.5
    # the state after step T - 1 handed back as the final one
    early = _broken(RNNSpec(T=4), "[h[4]]", "[h[3]]", tmp_path)
    params, xs, targets = verify.random_problem(early)
    assert carried.check(early, params, xs, targets)["final_state"] > 1e-2


def test_a_state_the_module_ignores_is_caught(tmp_path):
    spec = RNNSpec(T=3, layers=2)
    m = _broken(spec, "arrays = _given_state(state, x, arrays, single)", "pass", tmp_path)
    params, xs, targets = verify.random_problem(m)
    figures = carried.check(m, params, xs, targets)
    assert figures["final_state"] > 1e-2


@pytest.mark.parametrize(
    "fields", [{}, {"layers": 2}, {"hidden": "relu", "notation": "row"}], ids=["1-layer", "2-layer", "relu-row"]
)
def test_chunks_with_the_state_carried_over_are_the_whole_sequence(module_of, fields):
    """A sequence of 8 steps as two chunks of 4 through the T = 4 module, the final state of the
    first the initial state of the second, against the T = 8 module over the whole sequence."""
    short, whole = module_of(RNNSpec(T=4, **fields)), module_of(RNNSpec(T=8, **fields))
    params, xs, targets = verify.random_problem(whole)
    E1, _, s1 = short.loss_and_grads(params, xs[:4], targets[:4], return_state=True)
    E2, _, s2 = short.loss_and_grads(params, xs[4:], targets[4:], state=s1, return_state=True)
    E, _, s = whole.loss_and_grads(params, xs, targets, return_state=True)
    assert E1 + E2 == pytest.approx(E, rel=1e-13)
    for a, b in zip(carried.as_dict(short, s2).values(), carried.as_dict(whole, s).values()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # the first chunk's state gradient is not the second's business: the second chunk's is
    # dE2/ds1, which central differences through the short module confirm
    _, g2 = short.loss_and_grads(params, xs[4:], targets[4:], state=s1)
    state = carried.as_dict(short, s1)
    assert carried.finite_differences(short, params, xs[4:], targets[4:], state) < 1e-6
    assert set(carried.as_dict(short, g2["state"])) == set(short.INITIAL_STATES)


@pytest.mark.parametrize("spec", [RNNSpec(T=3), RNNSpec(T=3, bidirectional=True)], ids=lambda s: s.name)
def test_one_sequence_takes_and_gives_states_without_the_batch_axis(module_of, spec):
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m)
    state = carried.random_state(m, params, xs)
    E, g, final = m.loss_and_grads(params, xs, targets, state=carried.given(m, state), return_state=True)
    for i in range(xs.shape[1]):
        one = {k: v[i] for k, v in state.items()}
        y = targets[:, i] if targets.ndim == 2 else targets[i]
        E_i, g_i, final_i = m.loss_and_grads(params, xs[:, i], y, state=carried.given(m, one), return_state=True)
        for k, v in carried.as_dict(m, g_i["state"]).items():
            assert v.shape == one[k].shape
            np.testing.assert_allclose(v, carried.as_dict(m, g["state"])[k][i], rtol=1e-12, atol=1e-14)
        for k, v in carried.as_dict(m, final_i).items():
            np.testing.assert_allclose(v, carried.as_dict(m, final)[k][i], rtol=1e-12, atol=1e-14)


def test_forward_and_loss_return_the_same_final_state(module_of):
    m = module_of(RNNSpec(T=3, layers=2))
    params, xs, targets = verify.random_problem(m)
    state = carried.random_state(m, params, xs)
    _, _, final = m.loss_and_grads(params, xs, targets, state=state, return_state=True)
    E, final_loss = m.loss(params, xs, targets, state=state, return_state=True)
    out, final_forward = m.forward(params, xs, state=state, return_state=True)
    assert E == m.loss_and_grads(params, xs, targets, state=state)[0]
    for k in m.INITIAL_STATES:
        np.testing.assert_array_equal(final_loss[k], final[k])
        np.testing.assert_array_equal(final_forward[k], final[k])
    np.testing.assert_array_equal(out["h"][-1], final["h0_2"])  # the top layer's last state


def test_without_a_state_the_final_state_starts_from_the_learned_one(module_of):
    for m in (module_of(RNNSpec(T=3)), module_of(RNNSpec(T=3, bidirectional=True))):
        params, xs, targets = verify.random_problem(m)
        _, _, final = m.loss_and_grads(params, xs, targets, return_state=True)
        reference = final_states(m.SPEC, params, xs)
        if len(m.INITIAL_STATES) == 1:  # an array, as a state of one chain is given
            final = {"h0": final}
        assert set(final) == set(m.INITIAL_STATES)
        for k, v in final.items():
            np.testing.assert_allclose(v, reference[k], rtol=1e-13, atol=1e-15)


def test_a_float32_call_keeps_float32_with_a_float64_state(module_of):
    m = module_of(RNNSpec(T=3))
    params, xs, targets = verify.random_problem(m)
    state = carried.random_state(m, params, xs)["h0"]
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    E, g, final = m.loss_and_grads(p32, xs.astype(np.float32), targets, state=state, return_state=True)
    assert g["state"].dtype == np.float32 and final.dtype == np.float32
    E64, g64 = m.loss_and_grads(params, xs, targets, state=state)
    np.testing.assert_allclose(g["state"], g64["state"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "spec, state, message",
    [
        (RNNSpec(T=3), np.zeros((3, 5)), r"state\['h0'\] has shape \(3, 5\) and dtype float64; expected \(2, 5\)"),
        (RNNSpec(T=3), np.zeros(5), r"expected \(2, 5\), \(B, n\): one state per sequence"),
        (RNNSpec(T=3), {"h": np.zeros((2, 5))}, r"state has keys h; expected h0"),
        (RNNSpec(T=3), np.array([["a"] * 5] * 2), r"dtype <U1"),
        (RNNSpec(T=3, layers=2), np.zeros((2, 5)), r"state must be a dict with keys h0_1, h0_2"),
        (RNNSpec(T=3, layers=2), {"h0_1": np.zeros((2, 5))}, r"state has keys h0_1; expected h0_1, h0_2"),
    ],
)
def test_a_wrong_state_is_refused_in_one_line(module_of, spec, state, message):
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m)
    with pytest.raises(ValueError, match=message) as caught:
        m.loss_and_grads(params, xs, targets, state=state)
    assert "\n" not in str(caught.value)
    assert re.search(message, str(pytest.raises(ValueError, m.forward, params, xs, state=state).value))
