"""The document's content: its final formulas run as written, its three forms, its renderings."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from latex_reader import Reader, spec_blocks
from seed_reading import as_rnngen
from test_latex import compile_tex, needs_pdflatex

import rnngen
from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.cells import CELLS, cell_of
from rnngen.document import Notation, broken, sum_over_steps
from rnngen.examples import EXAMPLES, SEEDS
from rnngen.families import FAMILIES
from rnngen.markdown import MarkdownError, to_markdown
from rnngen.pipeline import build
from rnngen.presets import preset_spec
from rnngen.program import relative
from rnngen.reference import input_steps
from rnngen.sequences import mask_from_lengths
from rnngen.spec import RNNSpec
from rnngen.unroll import n_h, step
from rnngen.verify import random_problem

#: Networks beyond the committed examples whose formulas are read back: other activations,
#: outputs, losses, notations and biases, so each printer rule meets the reader.
MORE = (
    RNNSpec(T=4, hidden="sigmoid", output="tanh", loss="squared_error", notation="row"),
    RNNSpec(T=3, hidden="relu", output="sigmoid", loss="binary_cross_entropy", hidden_bias=False),
    RNNSpec(T=4, hidden="softplus", output="identity", loss="squared_error", mapping="many-to-one", notation="row"),
    RNNSpec(T=2, output="softmax", loss="squared_error", output_bias=False),
    RNNSpec(T=2, output="softmax", loss="binary_cross_entropy", notation="row"),  # log(1 - Y), parenthesized
    RNNSpec(T=2, output="sigmoid", loss="cross_entropy"),
)


def _module(result):
    module = type(rnngen)("m")
    exec(result.module, module.__dict__)
    return module


def legend_functions(spec) -> dict:
    """The functions a document's legend defines that the reader cannot know by name: a custom activation's
    ``f`` and ``f'``, a leaky ReLU's ``lrelu`` and ``lrelu'`` (``max(x, a x)``, as its legend writes it)."""
    if spec.is_custom:
        f, slope = (elementwise(f"{k}:{spec.hidden}").ufunc for k in ("custom", "custom_derivative"))
        return {"f": f, "f'": slope}
    if spec.hidden == "leaky_relu":
        a = spec.slope
        return {"lrelu": lambda v: np.maximum(v, a * v), "lrelu'": lambda v: np.where(v > 0, 1.0, a)}
    return {}


def read_back(result, tex=None, seed=0):
    """The document's final formulas run by the reader, and the module, on one random sequence (a seed
    preset's document read in rnngen's spelling through its reading key, ``seed_reading``)."""
    module = _module(result)
    if result.spec.preset is not None:
        tex = as_rnngen(result.spec.preset, tex or result.latex)
    n_x, n_h, n_y = 3, 4, 3
    params, xs, targets = random_problem(module, sizes=(n_x, n_h, n_y, 1), seed=seed)  # one sequence
    per_step = targets[:, 0] if result.spec.mapping != "many-to-one" else targets[:1].reshape(1, *targets.shape[1:])
    if result.spec.loss_rule.targets == "classes":
        per_step = np.eye(n_y)[per_step.reshape(-1)]
    per_step = per_step.reshape(len(result.spec.loss_steps), n_y)
    custom = legend_functions(result.spec)
    steps = dict(zip(result.spec.loss_steps, per_step))
    blocks = spec_blocks(result.spec, (n_h,) * result.spec.layers, n_x)  # V = [V_f V_b], W = [W_h W_x]
    inputs = input_steps(module.SPEC, xs)[:, 0]  # one-to-many: x_1 only
    row = result.spec.notation == "row"
    mask = None
    if result.spec.masked:  # the sequence padded: two steps fewer are real
        T = result.spec.T
        mask = mask_from_lengths(np.array([max(1, T - 2)]), T, result.spec.padding)
    masks = None if mask is None else mask[:, 0].astype(int).tolist()
    gated = cell_of(result.spec).gated  # a gated document's letters (s_t for the output, c_t, the gates)
    reader = Reader(tex or result.latex, row, params, inputs, steps, custom, blocks, result.spec.T, masks, gated)
    reader.run()
    loss, grads = module.loss_and_grads(params, xs, targets, **({} if mask is None else {"mask": mask}))
    return reader, loss, grads


@pytest.mark.parametrize("spec", EXAMPLES + MORE, ids=lambda s: s.name)
def test_the_documents_final_formulas_compute_what_the_module_computes(spec):
    """Read from the LaTeX text and run: the loss and every gradient match the generated code."""
    reader, loss, grads = read_back(build(spec))
    assert reader.loss == pytest.approx(loss, rel=1e-12)
    assert set(reader.gradients) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(reader.gradients[name].reshape(np.shape(g)), g, rtol=1e-11, atol=1e-14)


def test_reading_back_catches_a_formula_that_drifted():
    result = build(RNNSpec(T=3))
    drifted = result.latex.replace(
        r"\delta^{z}_{t} &= \left(\tilde{\delta}^{h}_{t} + W^{\top} \delta^{z}_{t+1}\right) \odot",
        r"\delta^{z}_{t} &= \left(\tilde{\delta}^{h}_{t} + W \delta^{z}_{t+1}\right) \odot",
    )
    assert drifted != result.latex
    reader, _, grads = read_back(result, drifted)
    assert not np.allclose(reader.gradients["W"], grads["W"], rtol=1e-6)


def test_a_sums_generic_step_comes_from_its_limits_not_from_the_symbol_listed_first():
    """h_0 + dz_1, ..., h_2 + dz_3 is sum_{t=1}^{3} (h_{t-1} + dz_t), whichever symbol comes first (issue 15)."""
    terms = [A.add(step("h", t - 1, n_h), step("dz", t, n_h)) for t in (1, 2, 3)]
    assert A.symbols_in(terms[-1])[0].name == "h_2"  # the symbol the old rule anchored t at
    generic = A.add(relative("h", -1, n_h), relative("dz", 0, n_h))
    assert sum_over_steps(terms) == generic and sum_over_steps(terms[::-1]) == generic
    assert sum_over_steps(terms[:1] + terms[2:]) is None  # not consecutive steps: written in full
    assert sum_over_steps(terms[:2] + [A.add(step("h", 2, n_h), step("dz", 2, n_h))]) is None  # not one template


def test_seed_004_document_keeps_the_factor_the_slides_drop():
    """Seed 004 writes dyhat/dw_o = sigma(1 - sigma) without O_3; the document has dE/dw_o = O_3 (yhat - y)."""
    tex = build(SEEDS["004"]).latex
    assert r"\frac{\partial E}{\partial w_{o}} &= {h^{3}}^{\top} \delta^{o,3}" in tex
    # yhat - y, written so that 1 - yhat is sigma(-o): exact for a confident prediction
    stable = r"\delta^{o,3} &= \left(\mathbf{1}^{\top} - y^{3}\right) \odot \hat{y}^{3} - y^{3} \odot \sigma(-o^{3})"
    assert stable in tex
    assert r"\partial o^{3}_{j} / \partial (w_{o})_{ij} = h^{3}_{i}" in tex  # the factor, said in words too
    reader, _, grads = read_back(build(SEEDS["004"]))
    np.testing.assert_allclose(reader.gradients["w_o"], grads["w_o"], rtol=1e-12)


def test_seed_000_document_keeps_prediction_and_target_apart():
    """Seed 000 swaps y and yhat in places; the document writes E^t = -sum y log yhat and delta = yhat - y."""
    tex = build(SEEDS["000"]).latex
    assert r"E^{t} = -\sum_i y^{t}_{i} \log \hat{y}^{t}_{i}" in tex
    assert r"\Delta^{o,1:5} &= \hat{Y}^{1:5} - Y^{1:5}" in tex


def test_the_three_forms_are_numbered_for_every_parameter():
    result = build(RNNSpec(T=5))
    keys = result.equations
    for name, role in (("U", "input"), ("W", "recurrent"), ("V", "output"), ("b", "hidden_bias"), ("c", "output_bias")):
        assert f"compact-{role}" in keys and f"delta-{name}" in keys
    for role in ("recurrent", "input", "hidden_bias", "initial"):
        assert f"fwd-{role}" in keys
    assert "compact-initial" in keys and "delta-h0" in keys
    # seed 003's nested form: D_5 [d+z_5/dW + W D_4 [ ... + W D_1 [d+z_1/dW + W dh_0/dW]]]]]
    assert r"D_{1} \Bigl[\frac{\partial^{+} z_{1}}{\partial W} + W\, \frac{\partial h_{0}}{\partial W}" in result.latex
    assert result.latex.count(r"\Bigr]\Bigr]\Bigr]\Bigr]\Bigr]") == 2


def test_vanishing_section_states_the_bound_with_this_activations_gamma():
    tanh = build(RNNSpec(T=3)).latex
    sigmoid = build(RNNSpec(T=3, hidden="sigmoid")).latex
    custom = build(RNNSpec(T=3, hidden="x/(1+abs(x))")).latex
    bound = r"\le \bigl(\gamma\, \| W \|\bigr)^{t-k}"
    assert bound in tanh and bound in sigmoid
    assert r"here, for tanh, $\gamma = 1$" in tanh
    assert r"here, for sigmoid, $\gamma = \tfrac{1}{4}$" in sigmoid
    assert r"$\gamma \approx 1$, measured on a fine grid" in custom  # sup |1/(1+|x|)^2| = 1 at 0


def test_document_size_grows_linearly_and_expansions_are_condensed():
    """Past FULL_PATHS_UP_TO every long expansion is condensed, and stays exact: only the step numbers' digits grow."""
    sizes = {T: len(build(RNNSpec(T=T)).latex) for T in (50, 200)}
    assert sizes[50] < sizes[200] < 1.02 * sizes[50]
    tex = build(RNNSpec(T=50)).latex
    assert r"\prod_{j=2}^{50}" in tex and r"\sum_{k=2}^{48}" in tex  # the middle paths, as a sum over k
    assert r"W\, \frac{\partial h_{48}}{\partial W} \Bigr]\Bigr]" in tex  # two levels of the recursion, then dh_48/dW
    displays = re.findall(r"\\begin\{(align|equation)\}(.*?)\\end\{\1\}", tex, re.S)
    assert not [body for _, body in displays if r"\cdots" in body]  # no equation leaves terms to guess


# --- Markdown and notebooks -------------------------------------------------------------------


def _math_blocks(md: str, flavor: str) -> list:
    if flavor == "github":
        return re.findall(r"```math\n(.*?)\n```", md, re.S) + re.findall(r"\$`(.*?)`\$", md)
    displays = re.findall(r"\$\$\n(.*?)\n\$\$", md, re.S)
    rest = re.sub(r"\$\$\n.*?\n\$\$", "", md, flags=re.S)
    return displays + re.findall(r"\$([^$\n]+)\$", rest)


@pytest.mark.parametrize("flavor", ("github", "jupyter"))
def test_markdown_keeps_every_equation_number_and_no_latex_outside_math(flavor):
    result = build(SEEDS["000"])
    md = to_markdown(result.latex, flavor)
    tags = sorted(int(n) for n in re.findall(r"\\tag\{(\d+)\}", md))
    assert tags == sorted(result.equations.values())
    if flavor == "github":
        outside = re.sub(r"\$`.*?`\$", "", re.sub(r"```math\n.*?\n```", "", md, flags=re.S))
    else:
        outside = re.sub(r"\$[^$\n]+\$", "", re.sub(r"\$\$\n.*?\n\$\$", "", md, flags=re.S))
    text = outside.split("-->", 1)[1]  # after the preamble comment
    assert "\\" not in text and "begin{" not in text, "LaTeX leaked into the Markdown text"
    assert md.startswith("<!-- Generated by rnngen ") and "Regenerate with: rnngen derive" in md


def test_markdown_refuses_latex_it_cannot_render():
    tex = build(RNNSpec(T=2)).latex.replace(r"\section{Vanishing", r"\emph{new} \section{Vanishing")
    with pytest.raises(MarkdownError, match="emph"):
        to_markdown(tex)


@needs_pdflatex
def test_markdown_and_notebook_math_is_valid_latex(tmp_path):
    """Every math block of both Markdown flavors, and the notebook's LaTeX, compiles with pdflatex."""
    pieces = []
    for spec in EXAMPLES:
        result = build(spec)
        for flavor in ("github", "jupyter"):
            for block in _math_blocks(to_markdown(result.latex, flavor), flavor):
                display = "\\begin{aligned}" in block or "\\tag" in block
                pieces.append(f"\\[{block}\\]" if display else f"${block}$\n")
    pieces.append(rnngen.derive(T=4)._repr_latex_())
    doc = "\\documentclass{article}\\usepackage{amsmath}\\begin{document}\n" + "\n".join(pieces) + "\n\\end{document}\n"
    run = compile_tex(tmp_path, "math", doc)
    assert run.returncode == 0, run.stdout[-2000:]


def test_derive_from_python_renders_in_a_notebook_and_exposes_sympy():
    d = rnngen.derive(T=4, hidden="sigmoid")
    md = d._repr_markdown_()
    assert md.startswith("<!-- Generated by rnngen ") and "$$\n" in md and "```math" not in md
    latex = d._repr_latex_()
    assert latex.startswith("$$\\begin{aligned}") and latex.endswith("\\end{aligned}$$")
    for name in ("U", "W", "V", "b", "c", "h_{0}"):
        assert f"\\frac{{\\partial E}}{{\\partial {name}}}" in latex
    import sympy as sp

    grad = d.gradients["W"]
    assert isinstance(grad, sp.MatrixExpr) and len(grad.args) == 4  # one term per step
    assert {s.name for s in grad.free_symbols} >= {"dz_1", "h_0", "dz_4", "h_3"}
    numbers = [n for n, _ in d.formulas]
    assert numbers == sorted(numbers) and all(isinstance(eq, sp.Eq) for _, eqs in d.formulas for eq in eqs)
    module = d.module()
    assert module.T == 4 and d.check().ok


def test_alternating_steps_are_one_formula_so_long_documents_stay_short():
    """A custom activation keeps z_t beside h_t: the pair is one formula for all t, in the code's order."""
    sizes = {T: build(RNNSpec(T=T, hidden="x/(1+abs(x))")).latex.count("\n") for T in (50, 200)}
    assert sizes[200] == sizes[50]
    result = build(RNNSpec(T=6, hidden="x/(1+abs(x))", output="identity", loss="squared_error"))
    assert r"\qquad h_{t} = f(z_{t}), \quad t = 1, \dots, 6" in result.latex
    reader, loss, grads = read_back(result)  # the reader runs the paired line step by step, as written
    assert reader.loss == pytest.approx(loss, rel=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(reader.gradients[name].reshape(np.shape(g)), g, rtol=1e-11, atol=1e-14)


# --- a long equation in rows (document.broken) --------------------------------------------------------


def _fits_the_page(tmp_path, equation: str) -> None:
    """``equation`` (align rows), numbered, compiles on the documents' page with nothing running off it."""
    tex = (
        "\\documentclass[11pt]{article}\n\\usepackage{amsmath}\n\\setlength{\\textwidth}{6.5in}\n"
        f"\\begin{{document}}\n\\begin{{align}}\n{equation} \\tag{{123}}\n\\end{{align}}\n\\end{{document}}\n"
    )
    run = compile_tex(tmp_path, "rows", tex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout


def _rows(equation: str) -> tuple:
    rows = equation.split(" \\nonumber \\\\*\n")  # \\*: no page break inside the equation
    # one equation, read back as the document's checker reads it: a next row continues the one above
    joined = " ".join([rows[0].replace(" &= ", " = ", 1)] + [re.sub(r"^&\\qquad ", "", row) for row in rows[1:]])
    return rows, joined


@needs_pdflatex
def test_a_product_too_wide_for_the_page_is_broken_at_its_factors(tmp_path):
    factors = [rf"\sigma(\tilde{{z}}_{{{k}}} + W_{{{k}}} h_{{t-1}} + U_{{{k}}} x_{{t}})" for k in range(1, 9)]
    rhs = r" \odot ".join(factors)
    equation = broken("h_{t}", rhs)
    rows, joined = _rows(equation)
    # a row ends between two factors, not inside one's parentheses, which would fit more on the row
    assert len(rows) > 1 and all(row.startswith(r"&\qquad \odot \sigma(") for row in rows[1:]), equation
    assert joined == f"h_{{t}} = {rhs}"
    _fits_the_page(tmp_path, equation)


@needs_pdflatex
def test_a_factor_too_wide_for_the_page_is_broken_inside_its_parentheses(tmp_path):
    inner = " + ".join(rf"W_{{{k}}} h^{{({k})}}_{{t-1}}" for k in range(1, 30))
    rhs = rf"a_{{t}} \odot \tanh({inner}) + b_{{t}}"
    equation = broken("h_{t}", rhs, r", \quad t = 1, \dots, T")
    rows, joined = _rows(equation)
    assert rows[1].startswith(r"&\qquad \odot \tanh(W_{1}") and all(row.startswith(r"&\qquad + ") for row in rows[2:])
    assert rows[-1].endswith(r") + b_{t}, \quad t = 1, \dots, T")  # the steps end the last row
    assert joined == rf"h_{{t}} = {rhs}, \quad t = 1, \dots, T"
    _fits_the_page(tmp_path, equation)


@needs_pdflatex
def test_a_sum_is_broken_between_its_terms_and_a_second_relation_starts_a_row(tmp_path):
    term = lambda k: rf"\sigma(a_{{{k}}} + W_{{{k}}} h_{{t-1}}) \odot \tanh(b_{{{k}}} + U_{{{k}}} x_{{t}})"  # noqa: E731
    c = " + ".join(term(k) for k in range(1, 5))
    rhs = rf"{c}, \qquad h_{{t}} = o_{{t}} \odot \tanh(c_{{t}})"
    equation = broken("c_{t}", rhs)
    rows, joined = _rows(equation)
    # two terms a row (the sum's signs before the products' operators), then the state's own row
    assert [row.count(r"\sigma(") for row in rows] == [2, 2, 0], equation
    assert rows[1].startswith(r"&\qquad + \sigma(") and rows[1].endswith(",")
    assert rows[2] == r"&\qquad \qquad h_{t} = o_{t} \odot \tanh(c_{t})"
    assert joined == f"c_{{t}} = {rhs}"  # ", \qquad" between the relations, as the checker splits them
    _fits_the_page(tmp_path, equation)


# --- the gate letters -------------------------------------------------------------------------------


def test_the_gate_letters_have_one_home_the_cells():
    """Each cell says its gates (their usual letters, in the order of its weights); the families spell
    exactly those gates' pre-activations, values and local Jacobians, reading them from the cells."""
    usual = {"lstm": "ifgo", "gru": "rzn"}  # the LSTM's input, forget, candidate, output; the GRU's reset, update, new
    assert {name: cell.gates for name, cell in CELLS.items()} == {"elman": "", **usual}
    assert cell_of(RNNSpec(T=3, cell="gru", gru_reset="before")).gates == usual["gru"]
    for pattern in (r"z([a-z])", r"g([a-z])", r"jac_([a-z])"):
        spelled = {m.group(1) for key in FAMILIES if (m := re.fullmatch(pattern, key))}
        assert spelled == set("ifgorzn"), pattern


# --- one name for the hidden activation's Jacobian ------------------------------------------------

_ONE_NAME = (
    RNNSpec(T=5),
    RNNSpec(T=3, hidden="relu", notation="row"),
    RNNSpec(T=3, hidden="x/(1+abs(x))", mapping="many-to-one"),
    preset_spec("seed-003"),
    preset_spec("seed-004"),
)


@pytest.mark.parametrize("spec", _ONE_NAME, ids=lambda s: s.name)
def test_the_hidden_jacobian_has_one_name_in_the_body(spec):
    """The body writes D_t wherever it multiplies by the activation's Jacobian: its entries stand once, in
    its definition; the appendix (the code's) says how its slope arrays hold D_t's diagonals."""
    result = build(spec)
    n = Notation(result.spec)
    tex = result.latex.split(r"\begin{document}")[1]
    body, _, appendix = tex.partition(r"\appendix")
    body = re.sub(r"\\section\{The seed's own formulas\}.*?(?=\\section)", "", body, flags=re.S)  # the seed's g'
    local = body[body.index(r"\section{Local Jacobians}") :]
    local = local[: local.index(r"\section", 10)]
    D, dh, dz = n.D("t"), n.step("dh", "t"), n.step("dz", "t")
    slope, slopes = n.step("fprime", "t"), n.printer.step("fprime", 1, spec.T)
    # the delta recursion multiplies by D_t (rows act from the right in row notation)
    product = rf"{dh}\, {D}" if n.row else rf"{D}\, {dh}"
    assert re.search(re.escape(dz) + r" &= " + re.escape(product) + ",", body), body[body.index("Third form") :][:2000]
    # the activation's derivative, written out, stands only where D_t is defined
    derivative = re.search(r"\\operatorname\{diag\}\\bigl\((.*?)\\bigr\)", local).group(1)
    assert derivative in local and derivative not in body.replace(local, "")
    assert slope not in body and slopes not in body  # the code's arrays are the appendix's
    assert rf"${slope}$ is the diagonal of ${D}$" in appendix and f"${slopes}$ holds those of" in appendix


@needs_pdflatex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed (Debian: poppler-utils)")
@pytest.mark.parametrize("spec", [RNNSpec(T=5), preset_spec("seed-000")], ids=lambda s: s.name)
def test_the_shapes_table_stands_whole_and_page_one_still_fills(tmp_path, spec):
    """The Shapes table never breaks across pages (it split its symbols between pages 1 and 2); where it
    does not fit under the legend it heads page 2, and the text goes on below the legend on page 1
    instead of leaving the bottom third of page 1 empty."""
    run = compile_tex(tmp_path, "doc", build(spec).latex)
    assert run.returncode == 0, run.stdout[-2000:]
    text = subprocess.run(["pdftotext", "-layout", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True)
    pages = text.stdout.split("\f")
    assert len([p for p in pages if re.search(r"shape\s+symbols", p)]) == 1
    assert re.search(r"shape\s+symbols", pages[0]) or "The forward pass" in pages[0], pages[0][-800:]
