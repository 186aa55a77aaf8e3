"""The whole activation set through the one engine: every combination is derived and verified.

The cross product is hidden activation x output/loss pair x biases x mapping x notation.
Finite differences and the Taylor test run on all of it at T = 2; the exact scalar
oracle (its cost grows like n_h^T) on hidden x pair x mapping x notation at T = 1 with
the bias settings in turn, and on a sample at T = 3; finite differences again at
T = 12 on a sample.

The default run takes a sample of each sweep that still meets every activation, every
output/loss pair, every bias setting, both mappings and both notations; ``pytest --full``
(what CI runs) takes all of it.
"""

import itertools

import numpy as np
import pytest

from rnngen import verify
from rnngen.activations import HIDDEN, pairs
from rnngen.pipeline import build
from rnngen.spec import MAPPINGS, NOTATIONS, RNNSpec

CUSTOM = "x/(1+abs(x))"
ACTIVATIONS = [*HIDDEN, CUSTOM]
BIASES = [(True, True), (True, False), (False, True), (False, False)]
COMBOS = list(itertools.product(ACTIVATIONS, pairs(), BIASES, MAPPINGS, NOTATIONS))
#: The names seed 000 uses, so that row notation is also checked with swapped roles.
ROW_NAMES = ("W", "U", "V")


def spec_of(T, hidden, pair, biases, mapping, notation) -> RNNSpec:
    return RNNSpec(
        T=T,
        hidden=hidden,
        output=pair[0],
        loss=pair[1],
        hidden_bias=biases[0],
        output_bias=biases[1],
        mapping=mapping,
        notation=notation,
        names=ROW_NAMES if notation == "row" else ("U", "W", "V"),
    )


def _id(combo):
    hidden, (output, loss), biases, mapping, notation = combo
    bias = {(True, True): "bc", (True, False): "b", (False, True): "c", (False, False): "nobias"}[biases]
    return f"{'custom' if hidden == CUSTOM else hidden}-{output}-{loss}-{bias}-{mapping}-{notation}"


def quick(combos) -> list:
    """The combos of a sweep that the default run keeps: each (activation, pair) once, the rest in turn.

    Walks the activation x pair grid; for each cell it takes the combo of the sweep whose bias
    setting, mapping and notation agree best with the next ones in rotation, so the sample meets
    every value of every axis (``test_the_quick_samples_cover_every_axis``).
    """
    keep = []
    for i, (hidden, pair) in enumerate(itertools.product(ACTIVATIONS, pairs())):
        wanted = (BIASES[i % 4], list(MAPPINGS)[(i // 4) % len(MAPPINGS)], list(NOTATIONS)[i % len(NOTATIONS)])
        cell = [c for c in combos if c[:2] == (hidden, pair)]
        keep.append(max(cell, key=lambda c: sum(a == b for a, b in zip(c[2:], wanted))))
    return keep


def sweep(combos, keep=None) -> list:
    """``combos`` as pytest params, all but the quick sample marked ``full``."""
    keep = set(quick(combos) if keep is None else keep)
    return [pytest.param(c, id=_id(c), marks=() if c in keep else pytest.mark.full) for c in combos]


def test_the_cross_product_is_complete():
    assert len(ACTIVATIONS) == 7 and len(pairs()) == 8
    assert len(COMBOS) == 7 * 8 * 4 * len(MAPPINGS) * len(NOTATIONS)
    for i, j in ((0, 2), (1, 2)):  # every bias setting meets every activation and every pair in EXACT
        assert {(c[i], c[j]) for c in EXACT} == {(a, b) for a in {c[i] for c in COMBOS} for b in BIASES}


@pytest.mark.parametrize("combo", sweep(COMBOS))
def test_finite_differences_and_taylor_over_the_cross_product(module_of, combo):
    m = module_of(spec_of(2, *combo))
    params, xs, targets = verify.random_problem(m, (3, 4, 3, 2))
    errors = verify.finite_differences(m, params, xs, targets)
    assert set(errors) == set(m.PARAM_SHAPES)
    assert max(errors.values()) <= verify.FD_TOLERANCE, errors
    assert verify.taylor_test(m, params, xs, targets) == pytest.approx(2.0, abs=0.1)


#: The oracle costs about 0.5 s a run, so it covers hidden x pair x mapping x notation in full
#: with the four bias settings taken in turn (each setting meets every activation and pair).
EXACT = [
    (hidden, pair, BIASES[i % 4], mapping, notation)
    for i, (hidden, pair, mapping, notation) in enumerate(itertools.product(ACTIVATIONS, pairs(), MAPPINGS, NOTATIONS))
]


#: Quick run: two pairs per activation (the diagonals of the activation x pair grid), so every pair is met too.
EXACT_QUICK = [c for i, c in enumerate(quick(EXACT)) if i % 8 in (i // 8, 7 - i // 8)]


@pytest.mark.parametrize("combo", sweep(EXACT, keep=EXACT_QUICK))
def test_exact_oracle_over_the_cross_product(module_of, combo):
    result = verify.exact_oracle(module_of(spec_of(1, *combo)), sizes=(1, 2, 2, 1))
    assert result.loss <= verify.EXACT_TOLERANCE
    assert result.worst <= verify.EXACT_TOLERANCE, result.grads


SAMPLE = COMBOS[::37]


#: The T = 3 oracle costs 1 to 17 s a combo; the quick run keeps two of the cheapest (tanh, custom).
@pytest.mark.parametrize("combo", sweep(SAMPLE, keep=[c for c in SAMPLE if c[0] in ("tanh", CUSTOM)][:2]))
def test_exact_oracle_on_a_sample_at_T3(module_of, combo):
    result = verify.exact_oracle(module_of(spec_of(3, *combo)), sizes=(1, 2, 2, 1))
    assert result.worst <= verify.EXACT_TOLERANCE, result.grads


@pytest.mark.parametrize("combo", SAMPLE, ids=[_id(c) for c in SAMPLE])
def test_finite_differences_on_a_sample_at_T12(module_of, combo):
    """Relative error 1e-6, except for gradients that have vanished below what differences resolve.

    Central differences cannot resolve a gradient much smaller than their rounding
    error, about 1e-16 |E| / 1e-5 per entry: dE/dh0 of a many-to-one sigmoid network
    shrinks like 4^-12 over 12 steps. Those are held to that absolute level instead.
    """
    m = module_of(spec_of(12, *combo))
    params, xs, targets = verify.random_problem(m)
    loss, grads = m.loss_and_grads(params, xs, targets)
    numeric = verify.finite_difference_gradient(m, params, xs, targets)
    floor = 1e-9 * max(1.0, abs(loss))
    for name in params:
        difference = np.linalg.norm(grads[name] - numeric[name])
        assert verify.relative_error(grads[name], numeric[name]) <= verify.FD_TOLERANCE or difference <= floor, name


def test_the_sample_covers_every_activation_and_pair():
    assert {c[0] for c in SAMPLE} == set(ACTIVATIONS)
    assert {c[1] for c in SAMPLE} == set(pairs())


@pytest.mark.parametrize("combos", [COMBOS, EXACT], ids=["cross-product", "exact"])
def test_the_quick_samples_cover_every_axis(combos):
    keep = quick(combos)
    assert {(c[0], c[1]) for c in keep} == set(itertools.product(ACTIVATIONS, pairs()))
    for axis, values in ((2, BIASES), (3, MAPPINGS), (4, NOTATIONS)):
        assert {c[axis] for c in keep} == set(values)
    assert set(keep) <= set(combos) and len(keep) == len(set(keep))


def test_the_quick_exact_sample_meets_every_activation_and_pair():
    assert {c[0] for c in EXACT_QUICK} == set(ACTIVATIONS) and {c[1] for c in EXACT_QUICK} == set(pairs())


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_kinked_activations_are_checked_away_from_the_kink(module_of, hidden):
    m = module_of(RNNSpec(T=4, hidden=hidden))
    params, xs, _ = verify.random_problem(m)
    assert np.abs(verify.preactivations(m.SPEC, params, xs)).min() >= verify.KINK_MARGIN
    assert (verify.preactivations(m.SPEC, params, xs) < 0).any()  # the negative side is exercised


def test_a_wrong_leaky_slope_is_caught(module_of, tmp_path):
    """The check is not blind to the negative side: a module using the wrong slope there fails."""
    text = build(RNNSpec(T=3, hidden="leaky_relu", slope=0.1)).module
    slope = '_leaky_relu_slope(buf["h[1:] rows"], 0.1)'  # f'(z_t) of every step, one call
    assert slope in text
    path = tmp_path / "broken.py"
    path.write_text(text.replace(slope, slope.replace("0.1", "0.2")))
    assert not verify.check_module(verify.load_module(path)).ok
