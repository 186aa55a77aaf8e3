"""The documents' worked example: its numbers against the generated module and independent differences."""

import re

import numpy as np
import pytest
import sympy
from test_document import _module
from test_latex import compile_tex, needs_pdflatex

from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.spec import RNNSpec
from rnngen.worked import EPS, WorkedExample, latex_context, number, rounded, work

#: One chain (both notations), two layers, both directions, the gated cells, a many-to-one row-notation
#: network of scalar weights (seed 004's shape) and a truncated one.
SPECS = (
    RNNSpec(T=3),
    RNNSpec(T=3, notation="row", names=("W", "U", "V")),
    RNNSpec(T=5, layers=2),
    RNNSpec(T=5, bidirectional=True),
    RNNSpec(T=5, cell="lstm"),
    RNNSpec(T=5, cell="gru"),
    RNNSpec(T=5, truncate=2),
)
SEED_004 = RNNSpec(
    T=3,
    output="sigmoid",
    loss="binary_cross_entropy",
    mapping="many-to-one",
    notation="row",
    names=("w_i", "w_h", "w_o"),
    hidden_bias=False,
    output_bias=False,
)


@pytest.fixture(scope="module")
def builds():
    cache = {}

    def get(spec):
        if spec not in cache:
            cache[spec] = build(spec)
        return cache[spec]

    return get


def value_of(text: str) -> float:
    """The number ``worked.number`` printed: ``-0.1234``, ``1.5 \\times 10^{-7}``, ``10^{-4}``."""
    m = re.fullmatch(r"(-?)(?:([\d.]+) \\times )?10\^\{(-?\d+)\}", text)
    if m:
        sign, mantissa, power = m.groups()
        return float(f"{sign}{mantissa or 1}e{power}")
    return float(text)


def half_unit(text: str) -> float:
    """Half a unit in the last digit ``text`` prints."""
    m = re.fullmatch(r"-?(?:([\d.]+) \\times )?10\^\{(-?\d+)\}", text)
    if m:
        mantissa, power = m.groups()
        decimals = len(mantissa.partition(".")[2]) if mantissa else 0
        return 0.5 * 10.0 ** (int(power) - decimals)
    return 0.5 * 10.0 ** -len(text.partition(".")[2])


def module_problem(result, worked):
    """The worked example as the generated module's arguments: params, one sequence, targets."""
    module = _module(result)
    vectors = {name for name, p in result.derivation.graph.network.params.items() if p.is_vector}
    params = {name: value.ravel() if name in vectors else value for name, value in worked.params.items()}
    xs = np.array(worked.example.xs)
    targets = np.array(worked.example.targets)
    if result.spec.mapping == "many-to-one":
        targets = targets[0]
    if result.spec.loss_rule.targets == "classes":
        targets = targets.argmax(axis=-1)
    return module, params, xs, targets


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_printed_gradient_is_the_modules_to_the_printed_digits(builds, spec):
    result = builds(spec)
    worked = work(result.derivation)
    shown = latex_context(result.derivation, result.equations)
    module, params, xs, targets = module_problem(result, worked)
    loss, grads = module.loss_and_grads(params, xs, targets)
    expected = grads[worked.name].reshape(worked.params[worked.name].shape)[worked.index]
    assert abs(value_of(shown["gradient"]) - expected) <= half_unit(shown["gradient"]) * 1.001
    assert abs(value_of(shown["loss"]) - loss) <= half_unit(shown["loss"]) * 1.001


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_printed_central_difference_is_the_modules_loss_differenced(builds, spec):
    result = builds(spec)
    worked = work(result.derivation)
    shown = latex_context(result.derivation, result.equations)
    module, params, xs, targets = module_problem(result, worked)

    def loss(shift):
        moved = {name: value.copy() for name, value in params.items()}
        flat = moved[worked.name].reshape(worked.params[worked.name].shape)
        flat[worked.index] += shift
        return module.loss_and_grads(moved, xs, targets)[0]

    difference = (loss(EPS) - loss(-EPS)) / (2 * EPS)
    assert abs(value_of(shown["difference"]) - difference) <= half_unit(shown["difference"]) * 1.001
    if spec.truncate is None:  # the full gradient: the two printed numbers agree
        assert shown["difference"] == shown["gradient"]
    else:  # the truncated gradient drops paths that central differences follow
        assert shown["difference"] != shown["gradient"]


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: s.name)
def test_update_line_is_w_minus_eta_g(builds, spec):
    result = builds(spec)
    shown = latex_context(result.derivation, result.equations)
    entry = re.escape(shown["entry"])
    line = re.search(
        rf"{entry} \\leftarrow .*? = (\S+) - (\S+) \\cdot \(?([^ )]+)\)? = (\S+), \\nonumber", result.latex
    )
    assert line, "the update line is missing"
    w, eta, g, updated = (value_of(v) for v in line.groups())
    assert (w, eta, g) == (value_of(shown["value"]), 0.1, value_of(shown["gradient"]))
    assert abs(updated - (w - eta * g)) <= half_unit(line.group(4)) * 1.001
    # the loss change it prints is the module's at the updated entry
    worked = work(result.derivation)
    module, params, xs, targets = module_problem(result, worked)
    before = module.loss_and_grads(params, xs, targets)[0]
    params[worked.name].reshape(worked.params[worked.name].shape)[worked.index] = updated
    after = module.loss_and_grads(params, xs, targets)[0]
    assert abs(value_of(shown["change"]) - (after - before)) <= half_unit(shown["change"]) * 1.001
    assert abs(value_of(shown["loss_after"]) - after) <= half_unit(shown["loss_after"]) * 1.001
    assert shown["loss_before"] != shown["loss_after"]  # printed to the digits that show the change


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_section_is_in_the_document_and_its_markdown(builds, spec):
    result = builds(spec)
    shown = latex_context(result.derivation, result.equations)
    assert result.latex.count(r"\section{A worked example}") == 1
    for flavor in ("github", "jupyter"):
        md = to_markdown(result.latex, flavor)
        assert re.search(r"^## \d+ A worked example$", md, re.M)
        assert f"= {shown['gradient']}," in md


def test_regeneration_is_byte_stable_and_no_printed_digit_sits_on_a_rounding_edge(builds):
    for spec in SPECS:
        result = builds(spec)
        assert build(spec).latex == result.latex
        worked = work(result.derivation)
        values = [worked.gradient, worked.difference, worked.loss, worked.loss_after - worked.loss]
        values += [float(v) for _, value in worked.forward for v in np.ravel(value)]
        for v in values:  # a last digit that a change in the 12th digit would flip is a platform's to choose
            assert number(v) == number(v * (1 + 1e-12)) == number(v * (1 - 1e-12)), v


def test_number_prints_short_decimals():
    assert [number(v) for v in (0.123456, -0.00012345, 1e-4, 1.5e-7, 12345.6, 0.1, -0.0, 0.99996, -2.0)] == [
        "0.1235",
        r"-1.234 \times 10^{-4}",
        "10^{-4}",
        r"1.5 \times 10^{-7}",
        r"1.235 \times 10^{4}",
        "0.1",
        "0",
        "1",
        "-2",
    ]
    assert rounded(0.123456) == 0.1235


def test_a_preset_supplies_its_sentences_and_numbers(builds):
    """Seed 004's shape: three one-hot words, scalar weights given, its target; the words are printed."""
    result = builds(SEED_004)
    example = WorkedExample(
        xs=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        targets=((1.0,),),
        params={"w_i": ((0.5,), (-0.3,), (0.8,)), "w_h": ((0.7,),), "h0": (0.0,), "w_o": ((-1.2,),)},
        sizes=(3, 1, 1),
        words=("cat", "mat", "rat"),
        entry=("w_o", (0, 0)),
    )
    shown = latex_context(result.derivation, {"delta-w_o": 9}, example)
    worked = work(result.derivation, example)
    assert shown["entry"] == "(w_{o})_{11}"
    module, params, xs, targets = module_problem(result, worked)
    _, grads = module.loss_and_grads(params, xs, targets)
    assert abs(value_of(shown["gradient"]) - grads["w_o"].ravel()[0]) <= half_unit(shown["gradient"]) * 1.001
    # seed 004's own correction: dE/dw_o = (yhat - y) O_3, computed here by hand
    o = 0.0
    for w_i in (0.5, -0.3, 0.8):  # x_t picks one entry of w_i
        o = np.tanh(w_i + 0.7 * o)
    yhat = 1 / (1 + np.exp(1.2 * o))
    assert abs(value_of(shown["gradient"]) - (yhat - 1.0) * o) <= half_unit(shown["gradient"]) * 1.001
    assert any(r"\text{cat}" in row for row in shown["inputs"])


def test_an_example_that_does_not_fit_is_refused_in_one_line(builds):
    result = builds(RNNSpec(T=3))
    with pytest.raises(
        ValueError, match=r"^the worked example has 2 inputs and 3 targets; this network reads 3 and 3$"
    ):
        work(result.derivation, WorkedExample(xs=((1.0, 0.0),) * 2, targets=((1.0, 0.0),) * 3))
    with pytest.raises(ValueError, match="not an entry"):
        work(result.derivation, WorkedExample(xs=((1.0, 0.0),) * 3, targets=((1.0, 0.0),) * 3, entry=("W", (2, 0))))


@needs_pdflatex
@pytest.mark.parametrize("spec", SPECS[:1] + SPECS[2:6], ids=lambda s: s.name)
def test_documents_with_the_section_compile_without_box_warnings(tmp_path, builds, spec):
    run = compile_tex(tmp_path, spec.name, builds(spec).latex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout


def test_the_example_reads_sizes_without_substitution(builds, monkeypatch):
    """``evaluate`` reads a size symbol from the sizes given: SymPy's ``subs`` took milliseconds a term,
    11 s for the worked example at T = 200 (0.6 s without)."""
    derivation = builds(RNNSpec(T=3)).derivation

    def refuse(*args, **kwargs):
        raise AssertionError("subs called for a size")

    monkeypatch.setattr(sympy.Basic, "subs", refuse)
    assert work(derivation).gradient != 0
