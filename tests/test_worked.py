"""The documents' worked example: its numbers against the generated module and independent differences."""

import re
from decimal import Decimal

import numpy as np
import pytest
import sympy
from test_document import _module
from test_latex import compile_tex, needs_pdflatex

from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.presets import preset_spec
from rnngen.spec import RNNSpec
from rnngen.worked import EPS, WorkedExample, example_for, given, latex_context, number, rounded, work

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
    if result.spec.mapping == "many-to-one":  # one target per sequence
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
    assert (w, eta, g) == (value_of(shown["value"]), value_of(shown["eta"]), value_of(shown["gradient"]))
    assert abs(updated - (w - eta * g)) <= half_unit(line.group(4)) * 1.001
    # the loss change it prints is the module's at the updated entry
    worked = work(result.derivation)
    module, params, xs, targets = module_problem(result, worked)
    before = module.loss_and_grads(params, xs, targets)[0]
    params[worked.name].reshape(worked.params[worked.name].shape)[worked.index] = updated
    after = module.loss_and_grads(params, xs, targets)[0]
    assert abs(value_of(shown["change"]) - (after - before)) <= half_unit(shown["change"]) * 1.001
    assert abs(value_of(shown["loss_after"]) - after) <= half_unit(shown["loss_after"]) * 1.001
    # four digits show the change (by a unit of the last or more), or the text says it lies beyond them (and
    # prints the change itself)
    visible = abs(value_of(shown["loss_before"]) - value_of(shown["loss_after"])) >= last_unit(shown["loss_before"])
    assert visible != shown["unseen"]


def last_unit(text: str) -> float:
    """A unit of the last digit of a number printed without an exponent (``3.498``: 0.001)."""
    return 10.0 ** -len(text.partition(".")[2])


@pytest.mark.parametrize(
    "spec",
    [RNNSpec(T=5, cell="lstm"), RNNSpec(T=5, cell="gru"), RNNSpec(T=5, cell="gru", gru_reset="before")],
    ids=lambda s: s.name,
)
def test_a_gated_example_s_step_shows_in_the_printed_loss(builds, spec):
    """A gated cell's recurrent-weight gradients are small (of order 0.01 at best), so a step at the Elman
    documents' learning rate of 0.1 would change the loss beyond its printed digits: the example's learning
    rate is raised (and its draw taken) until the step, and its first-order prediction, move the printed loss
    by a unit of its last digit or more, and the text says why."""
    result = builds(spec)
    shown = latex_context(result.derivation, result.equations)
    unit = last_unit(shown["loss_before"])
    assert value_of(shown["loss_before"]) - value_of(shown["loss_after"]) >= unit
    assert -value_of(shown["estimate"]) >= unit and -value_of(shown["change"]) >= unit
    assert abs(value_of(shown["gradient"])) >= 0.01
    assert "changes only beyond the digits printed" not in result.latex
    if shown["eta"] != "0.1":
        assert rf"The gradients of this network are small, so the step uses $\eta = {shown['eta']}$." in result.latex
    assert f"{shown['value']} - {shown['eta']} \\cdot" in result.latex


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


def test_number_prints_computed_numbers_to_four_significant_digits_and_given_ones_as_they_are():
    computed = (0.123456, -0.00012345, 1e-4, 1.5e-7, 12345.6, 0.1, -0.0, 0.99996, -2.0, 1.0401, 0.574)
    assert [number(v) for v in computed] == [
        "0.1235",
        r"-1.234 \times 10^{-4}",
        r"1.000 \times 10^{-4}",
        r"1.500 \times 10^{-7}",
        r"1.235 \times 10^{4}",
        "0.1000",
        "0",
        "1.000",
        "-2.000",
        "1.040",  # one rule: the zeros a computed number's fourth digit is are printed
        "0.5740",
    ]
    assert [given(v) for v in (0.1, 1e-4, -0.48, 0.4998146, 1.0, 0.0)] == [
        "0.1",
        "10^{-4}",
        "-0.48",
        "0.4998146",
        "1",
        "0",
    ]
    assert rounded(0.123456) == 0.1235


def test_a_preset_supplies_its_sentences_and_numbers(builds):
    """Seed 004's three sentences as one batch (time-major, one-hot words), scalar weights given, its labels;
    the gradient of w_o matches the seed's corrected formula sum_b (yhat_b - y_b) O_3,b computed by hand."""
    result = builds(SEED_004)
    words = {"cat": (1.0, 0.0, 0.0), "mat": (0.0, 1.0, 0.0), "rat": (0.0, 0.0, 1.0)}
    sentences = ("cat mat rat", "rat rat mat", "mat mat cat")  # the seed's table, with its labels
    labels = (1.0, 1.0, 0.0)
    example = example_for(preset_spec("seed-004"))
    assert example.sentences == sentences and example.entry == ("w_o", (0, 0))
    assert example.xs == tuple(tuple(words[s.split()[t]] for s in sentences) for t in range(3))
    assert example.targets == (tuple((y,) for y in labels),)
    w_i = tuple(w for (w,) in example.params["w_i"])
    ((w_h,),), ((w_o,),) = example.params["w_h"], example.params["w_o"]
    numbers = {f"delta-{name}": k for k, name in enumerate(("w_i", "w_h", "h0", "w_o"), 1)}
    shown = latex_context(result.derivation, numbers, example)
    assert shown["entry"] == "w_{o}" and shown["batch"] == 3  # a scalar weight is its own entry
    worked = work(result.derivation, example)
    module, params, xs, targets = module_problem(result, worked)
    assert xs.shape == (3, 3, 3) and targets.shape == (3, 1)
    _, grads = module.loss_and_grads(params, xs, targets)
    assert abs(value_of(shown["gradient"]) - grads["w_o"].ravel()[0]) <= half_unit(shown["gradient"]) * 1.001
    by_hand = 0.0
    for sentence, y in zip(sentences, labels):
        o = 0.0
        for word in sentence.split():  # x_t picks one entry of w_i
            o = np.tanh(w_i[list(words).index(word)] + w_h * o)
        yhat = 1 / (1 + np.exp(-w_o * o))
        by_hand += (yhat - y) * o
    assert abs(value_of(shown["gradient"]) - by_hand) <= half_unit(shown["gradient"]) * 1.001
    tex = render_section(shown, T=3)
    assert "cat mat rat, rat rat mat, mat mat cat" in tex and "3 sequences" in tex
    assert r"\begin{pmatrix} 1 & 0 & 0 \\ 0 & 0 & 1 \\ 0 & 1 & 0 \end{pmatrix}" in tex  # x^1: a row per sentence


def render_section(worked: dict, T: int) -> str:
    from rnngen.emit import render

    return render("worked.tex.jinja", worked=worked, T=T)


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


# --- immediate versus total derivative ---------------------------------------------------------------


def test_the_stated_recursion_is_total_equals_immediate_plus_jacobian_times_total():
    """dh_t/dW = d+h_t/dW + (dh_t/dh_{t-1}) dh_{t-1}/dW, each side by its own independent computation:
    totals by central differences of the whole forward pass, the immediate derivative with h_{t-1} held
    fixed, the Jacobian D_t W."""
    rng = np.random.default_rng(1)
    n_x, n_h, T = 2, 3, 3
    U, W, b = rng.normal(size=(n_h, n_x)), 0.8 * rng.normal(size=(n_h, n_h)), rng.normal(size=n_h)
    xs, h0 = rng.normal(size=(T, n_x)), rng.normal(size=n_h)

    def states(W):
        hs = [h0]
        for x in xs:
            hs.append(np.tanh(W @ hs[-1] + U @ x + b))
        return hs

    eps = 1e-6

    def total(t, i, j):  # dh_t/dW_ij, every path
        up, down = W.copy(), W.copy()
        up[i, j] += eps
        down[i, j] -= eps
        return (states(up)[t] - states(down)[t]) / (2 * eps)

    hs = states(W)
    for t in (2, 3):
        D = np.diag(1 - hs[t] ** 2)
        for i, j in ((0, 1), (2, 0)):
            immediate = D @ (np.eye(n_h)[i] * hs[t - 1][j])  # h_{t-1} held fixed
            assert np.allclose(total(t, i, j), immediate + D @ W @ total(t - 1, i, j), atol=1e-8)
            assert not np.allclose(total(t, i, j), immediate, atol=1e-3)  # the slides' shortcut is not it


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: s.name)
def test_the_one_chain_document_tells_immediate_from_total_beside_the_second_form(builds, spec):
    result = builds(spec)
    tex = result.latex
    second, third = tex.index(r"\section{Second form"), tex.index(r"\section{Third form")
    part = tex[second:third]
    h, h_prev = ("h^{t}", "h^{t-1}") if spec.notation == "row" else ("h_{t}", "h_{t-1}")
    weight = "U" if spec.notation == "row" else "W"  # the recurrent weight's name in each
    assert rf"\frac{{\partial^{{+}} {h}}}{{\partial {weight}}} + \frac{{\partial {h}}}{{\partial {h_prev}}}" in part
    assert f"({result.equations['fwd-recurrent']}) is exactly" in part
    assert f"({result.equations['jac-h']}) times the total derivative" in part


@pytest.mark.parametrize("spec", SPECS[2:6], ids=lambda s: s.name)
def test_the_network_document_says_the_delta_is_a_total_derivative(builds, spec):
    result = builds(spec)
    net = result.derivation.graph.network
    name = next(k for k, p in net.chains[0].params.items() if k.startswith("recurrent"))
    number = result.equations[f"delta-{net.chains[0].params[name].name}"]
    assert re.search(rf"In \({number}\) the factor \$[^$]+\$ is the immediate \(explicit\) derivative", result.latex)
    assert "The delta recursion never forms the" in result.latex


# --- shapes under the factors ---------------------------------------------------------------------------


def _group(text: str, start: int) -> int:
    """The index just past the brace group that opens at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise AssertionError(f"unbalanced braces in {text!r}")


def _underbraced(line: str, sizes: dict) -> list:
    """The shapes under a product's factors, as tuples of numbers at ``sizes``."""
    shapes = []
    for m in re.finditer(r"\\underbrace\{", line):
        end = _group(line, m.end() - 1)
        assert line[end : end + 2] == "_{"
        shape = line[end + 2 : _group(line, end + 1) - 1]
        shapes.append(tuple(sizes[d] if d in sizes else int(d) for d in (d.strip() for d in shape.split(r"\times"))))
    return shapes


def test_the_path_term_shapes_chain_and_contract_to_the_weights_shape(builds):
    """Each factor's columns are the next one's rows, and the three-index end contracts to W's shape."""
    result = builds(SPECS[0])
    line = next(line for line in result.latex.splitlines() if r"\underbrace" in line)
    sizes = {"n_{x}": 2, "n_{h}": 3, "n_{y}": 5}
    shapes = _underbraced(line, sizes)
    assert shapes[0] == (1, 5) and len(shapes) == 4
    for left, right in zip(shapes, shapes[1:]):
        assert left[-1] == right[0]
    module = _module(result)
    shape_w = module.init_params(n_x=2, n_h=3, n_y=5, seed=0)["W"].shape
    assert shapes[-1][1:] == shape_w
    assert r"\to\; n_{h} \times n_{h}" in line


@pytest.mark.parametrize("spec", SPECS[2:6], ids=lambda s: s.name)
def test_the_gradient_term_shapes_multiply_to_the_weights_shape(builds, spec):
    result = builds(spec)
    line = next(line for line in result.latex.splitlines() if r"\sum_{t=1}^{T} \underbrace" in line)
    sizes = {"n_{x}": 2, "n_{h}": 3, "n_{h1}": 3, "n_{h2}": 4, "n_{y}": 5}
    (rows, inner), (inner2, cols) = _underbraced(line, sizes)
    assert inner == inner2 == 1
    params = _module(result).init_params(n_x=2, n_h=3 if spec.layers == 1 else (3, 4), n_y=5, seed=0)
    name = re.search(r"\\partial ([^}]+)\}", line).group(1)
    matching = [k for k, v in params.items() if v.shape == (rows, cols)]
    assert matching, f"no parameter of shape {(rows, cols)} for {name}"


def test_a_preset_plugs_in_through_presets_by_the_specs_preset(monkeypatch):
    """``presets.PRESETS[spec.preset].worked`` is the example a preset's document works (render asks
    ``example_for``); a preset without numbers of its own, and a network without a preset, take the default."""
    from rnngen import worked

    assert example_for(preset_spec("seed-003")) is None and example_for(RNNSpec(T=3)) is None
    assert example_for(preset_spec("seed-004", T=2)) is None  # the seed's sentences have three words
    assert "cat mat rat, rat rat mat, mat mat cat" in build(preset_spec("seed-004")).latex
    example = WorkedExample(xs=((1.0, 0.0),) * 3, targets=((0.0, 1.0),) * 3, entry=("U", (1, 0)), eta=0.25)
    monkeypatch.setattr(worked, "example_for", lambda spec: example)
    tex = build(RNNSpec(T=3)).latex
    assert r"U_{21} \leftarrow U_{21} - \eta" in tex and r"$\eta = 0.25$" in tex


def test_a_draw_that_leaves_floating_point_is_halved_until_every_number_is_finite():
    """exp(x) over 20 steps overflows at the first draw (the document then crashed); the section halves
    the drawn parameters, says so, and its gradient still agrees with central differences."""
    result = build(RNNSpec(T=20, hidden="exp(x)"))
    worked = work(result.derivation)
    assert worked.halvings >= 1 and worked.finite
    assert abs(worked.gradient - worked.difference) <= 1e-6 * max(1.0, abs(worked.gradient))
    assert "then halved" in result.latex
    assert work(build(RNNSpec(T=3)).derivation).halvings == 0


def test_a_bidirectional_example_shows_the_backward_chain_s_first_step_from_x_T(builds):
    """h^b_1 needs h^b_2 .. h^b_T, which the section never shows; h^b_T needs x_T and h^b_{T+1} alone."""
    T = 5
    result = builds(RNNSpec(T=T, bidirectional=True))
    worked = work(result.derivation)
    shown = {str(symbol): np.ravel(value) for symbol, value in worked.forward}
    assert set(shown) == {"z_f_1", "h_f_1", "z_b_5", "h_b_5"}  # no prediction: y_1 reads all of h^b
    module, params, xs, targets = module_problem(result, worked)
    states = module.forward(params, xs)["h"]  # [h^f_t, h^b_t] per step
    n_h = len(shown["h_f_1"])
    assert np.allclose(shown["h_f_1"], states[0, :n_h]) and np.allclose(shown["h_b_5"], states[T - 1, n_h:])
    assert np.allclose(shown["h_b_5"], np.tanh(params["U_b"] @ xs[T - 1] + params["b_b"]))  # h^b_6 = 0
    assert f"step 1 forward in time, step {T} backward" in result.latex


@pytest.mark.parametrize("spec", [s for s in SPECS if s.truncate is None], ids=lambda s: s.name)
def test_the_entry_is_the_largest_gradient_and_the_first_order_check_holds(builds, spec):
    result = builds(spec)
    worked = work(result.derivation)
    shown = latex_context(result.derivation, result.equations)
    module, params, xs, targets = module_problem(result, worked)
    grads = module.loss_and_grads(params, xs, targets)[1]
    assert worked.name == result.derivation.graph.network.recurrent_weight.name
    assert abs(worked.gradient) == pytest.approx(np.abs(grads[worked.name]).max(), rel=1e-9)
    assert "of largest size" in result.latex
    # the updated entry is exactly w - eta g of the printed numbers, so the step is the one printed
    assert Decimal(shown["updated"]) == Decimal(shown["value"]) - Decimal(shown["eta"]) * Decimal(shown["gradient"])
    # to first order the loss falls by eta g^2: within a few per cent at a gradient of this size
    change, estimate = value_of(shown["change"]), value_of(shown["estimate"])
    assert change < 0 and abs(change - estimate) <= 0.05 * abs(estimate)
    # one rounding rule: the loss the same at each mention, computed numbers with their fourth digit
    assert shown["loss"] == shown["loss_before"]
    for key in ("gradient", "loss", "loss_after"):  # four significant digits, never nine
        assert len(shown[key].lstrip("-").replace("0.", "", 1).lstrip("0").replace(".", "")) == 4, key
    if shown["loss"] == shown["loss_after"]:  # the step moves the loss beyond the printed digits: said so
        assert "changes only beyond the digits printed" in result.latex


def test_the_learning_rate_chosen_lowers_the_loss(builds, monkeypatch):
    """The text says a step against the gradient lowers the loss: a rate whose step overshoots and raises it
    is not taken, though the change shows in the printed digits (before, the first that showed was)."""
    import rnngen.worked as worked_module

    monkeypatch.setattr(worked_module, "ETAS", (10.0, 0.1))  # at 10 the loss of this linear network goes 1.19 -> 41.6
    worked = work(builds(RNNSpec(T=3, hidden="identity", output="identity", loss="squared_error")).derivation)
    assert worked.eta == 0.1 and worked.loss_after < worked.loss


def test_given_parameters_that_overflow_raise_no_floating_point_warning(builds):
    """An example with its parameters given runs as a drawn one does, under ``np.errstate(all="ignore")``."""
    import dataclasses
    import warnings

    result = builds(SEED_004)
    example = example_for(preset_spec("seed-004"))
    huge = {name: np.full_like(np.asarray(value, dtype=float), 1e300) for name, value in example.params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        work(result.derivation, dataclasses.replace(example, params=huge))
