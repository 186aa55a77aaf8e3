"""Seed 001's other mappings (issue 17, item 4): one-to-many (one input, at the first step) and
delayed many-to-many (losses from step d + 1 on), through every check, against a hand-written
loop, in the module's argument checks and in the document."""

import numpy as np
import pytest

from rnngen import verify
from rnngen.pipeline import build
from rnngen.spec import RNNSpec, SpecError

#: A sample through every check by default; the rest of the sweep with --full.
SAMPLE = [
    RNNSpec(T=4, mapping="one-to-many"),
    RNNSpec(T=4, delay=2),
    RNNSpec(T=3, mapping="one-to-many", layers=2, bidirectional=True, input_grad=True),
    RNNSpec(T=3, delay=1, bidirectional=True, notation="row", output="sigmoid", loss="binary_cross_entropy"),
]
SWEEP = [
    RNNSpec(T=1, mapping="one-to-many"),
    RNNSpec(T=2, delay=1),  # one loss, at the last step: many-to-many with d = T - 1
    RNNSpec(T=3, mapping="one-to-many", notation="stacked", hidden="relu"),
    RNNSpec(T=3, mapping="one-to-many", notation="row", output="identity", loss="squared_error"),
    RNNSpec(T=4, delay=2, layers=2, notation="stacked-row", input_grad=True),
    RNNSpec(T=3, delay=1, layers=3, hidden="sigmoid", hidden_bias=False),
]


def _check(spec):
    report = verify.check_build(build(spec), exact=True)
    assert report.ok, report.failures
    assert report.exact.worst <= verify.EXACT_TOLERANCE
    assert report.forms is not None and report.state  # the two forms and the carried state ran too


@pytest.mark.parametrize("spec", SAMPLE, ids=lambda s: s.name)
def test_every_check_passes(spec):
    _check(spec)


@pytest.mark.full
@pytest.mark.parametrize("spec", SWEEP, ids=lambda s: s.name)
def test_every_check_passes_across_the_sweep(spec):
    _check(spec)


def _hand_loss(params, xs, targets, T, one_input: bool, delay: int) -> float:
    """Softmax cross-entropy of an Elman network written out here: x at step 1 only when
    ``one_input``, losses from step ``delay + 1`` on (targets hold those steps only)."""
    U, W, b, h0, V, c = (params[k] for k in ("U", "W", "b", "h0", "V", "c"))
    h = np.tile(h0, (xs.shape[-2], 1))
    E = 0.0
    for t in range(1, T + 1):
        x_t = xs if one_input else xs[t - 1]
        z = h @ W.T + b + (x_t @ U.T if t == 1 or not one_input else 0.0)
        h = np.tanh(z)
        if t > delay:
            o = h @ V.T + c
            log_p = o - o.max(axis=-1, keepdims=True)
            log_p -= np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
            E -= log_p[np.arange(len(h)), targets[t - delay - 1]].sum()
    return E


@pytest.mark.parametrize("one_input, delay", [(True, 0), (False, 2), (False, 3)])
def test_the_loss_and_its_gradient_are_those_of_a_hand_written_loop(module_of, one_input, delay):
    T = 4
    m = module_of(RNNSpec(T=T, mapping="one-to-many" if one_input else "many-to-many", delay=delay))
    rng = np.random.default_rng(0)
    params = {k: 0.5 * rng.standard_normal(v.shape) for k, v in m.init_params(3, 5, 4).items()}
    xs = rng.standard_normal((2, 3) if one_input else (T, 2, 3))
    targets = rng.integers(0, 4, (T - delay, 2))
    E, grads = m.loss_and_grads(params, xs, targets)
    assert E == pytest.approx(_hand_loss(params, xs, targets, T, one_input, delay), rel=1e-12)
    for name, g in grads.items():  # central differences of the hand loop, not of the module
        numeric = np.zeros_like(g)
        for i in np.ndindex(g.shape):
            up, down = ({**params, name: params[name].copy()} for _ in range(2))
            up[name][i] += 1e-6
            down[name][i] -= 1e-6
            args = (xs, targets, T, one_input, delay)
            numeric[i] = (_hand_loss(up, *args) - _hand_loss(down, *args)) / 2e-6
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    # the outputs exist at the steps with a loss: all of them, or d + 1..T
    assert m.forward(params, xs)["yhat"].shape == (T - delay, 2, 4)


def test_a_delay_s_losses_start_after_it(module_of):
    """The same weights and inputs: the delayed module's loss is the undelayed one's minus the
    first d steps' terms, which is what a loss counted from step d (off by one) would not give."""
    full, delayed = module_of(RNNSpec(T=4)), module_of(RNNSpec(T=4, delay=2))
    params, xs, targets = verify.random_problem(full)
    yhat = full.forward(params, xs)["yhat"]
    terms = -np.log(np.take_along_axis(yhat, targets[..., None], axis=-1))[..., 0].sum(axis=1)
    assert delayed.loss(params, xs, targets[2:]) == pytest.approx(terms[2:].sum(), rel=1e-12)
    assert delayed.loss(params, xs, targets[2:]) != pytest.approx(terms[1:].sum(), rel=1e-6)


@pytest.mark.parametrize(
    "spec, xs_shape, targets_shape, message",
    [
        (RNNSpec(T=3, mapping="one-to-many"), (3, 2, 4), (3, 2), r"expected the one input \(n_x,\) = \(4,\)"),
        (RNNSpec(T=3, delay=1), (3, 2, 4), (3, 2), r"targets \(class indices\) have shape \(3, 2\); expected \(2, 2\)"),
        (RNNSpec(T=3, delay=1), (3, 4), (3,), r"targets \(class indices\) have shape \(3,\); expected \(2,\)"),
    ],
)
def test_wrong_shapes_are_refused_in_one_line(module_of, spec, xs_shape, targets_shape, message):
    m = module_of(spec)
    params = m.init_params(4, 5, 3)
    xs = np.zeros(xs_shape)
    targets = np.zeros(targets_shape, dtype=int)
    with pytest.raises(ValueError, match=message) as caught:
        m.loss_and_grads(params, xs, targets)
    assert "\n" not in str(caught.value)


def test_one_sequence_of_a_one_to_many_network_is_its_input_vector(module_of):
    m = module_of(RNNSpec(T=3, mapping="one-to-many"))
    params, xs, targets = verify.random_problem(m)
    E, grads = m.loss_and_grads(params, xs, targets)
    alone = sum(m.loss(params, xs[i], targets[:, i]) for i in range(xs.shape[0]))
    assert alone == pytest.approx(E, rel=1e-12)
    assert m.forward(params, xs[0])["h"].shape == (3, params["W"].shape[0])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"T": 3, "delay": 3}, "the delay must be a whole number from 0 to T - 1 = 2, got 3"),
        ({"T": 3, "delay": -1}, "the delay must be a whole number from 0 to T - 1 = 2, got -1"),
        ({"T": 3, "delay": True}, "the delay must be a whole number"),
        ({"T": 3, "delay": 1, "mapping": "many-to-one"}, "a delay applies to the many-to-many mapping only"),
        ({"T": 3, "delay": 1, "mapping": "one-to-many"}, "a delay applies to the many-to-many mapping only"),
    ],
)
def test_a_wrong_delay_is_refused(fields, message):
    with pytest.raises(SpecError, match=message):
        RNNSpec(**fields)


def test_names_and_commands_say_the_mapping():
    o2m, delayed = RNNSpec(T=5, mapping="one-to-many"), RNNSpec(T=5, delay=2)
    assert o2m.name == "rnn_tanh_softmax_xent_o2m_t5" and delayed.name == "rnn_tanh_softmax_xent_delay2_t5"
    assert o2m.cli_args() == "--T 5 --mapping one-to-many" and delayed.cli_args() == "--T 5 --delay 2"
    assert list(delayed.loss_steps) == [3, 4, 5] and list(o2m.input_steps) == [1]


def test_their_documents_derive_by_the_delta_recursion_and_say_where_inputs_and_losses_are():
    o2m = build(RNNSpec(T=4, mapping="one-to-many")).latex
    assert r"z_{1} &= U x_{1} + W h_{0} + b" in o2m
    assert r"z_{t} &= W h_{t-1} + b, \quad t = 2, \dots, T" in o2m
    assert r"\frac{\partial E}{\partial U} &= \delta^{z}_{1} x_{1}^{\top}" in o2m
    delayed = build(RNNSpec(T=4, delay=2)).latex
    assert r"E = \sum_{t=3}^{T}" in delayed
    assert r"\frac{\partial E}{\partial V} &= \sum_{t=3}^{T} \delta^{o}_{t} h_{t}^{\top}" in delayed
    # before the first loss, a state's delta has no output term
    assert r"\delta^{h}_{t} &= W^{\top} \delta^{z}_{t+1}, \quad t = 2, \dots, 0" in delayed
