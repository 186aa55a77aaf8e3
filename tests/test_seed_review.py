"""The seed documents as a teacher reads them: each sentence says what the mathematics does."""

import re
import shutil
import subprocess

import pytest
from test_latex import compile_tex, needs_pdflatex

from rnngen.pipeline import build
from rnngen.presets import preset_spec

NAMES = ("seed-000", "seed-001", "seed-002", "seed-003", "seed-004")


@pytest.fixture(scope="module")
def handouts():
    return {name: build(preset_spec(name)).handout for name in NAMES}


def _seed_section(tex: str) -> str:
    start = tex.index(r"\section{The seed's own formulas}")
    return tex[start : tex.index(r"\section", start + 1)]


def _legend(tex: str) -> dict:
    """The notation table: symbol -> meaning."""
    table = tex.split(r"\section*{Notation}")[1].split(r"\end{longtable}")[0]
    rows = [line.rstrip(" \\").split(" & ", 1) for line in table.splitlines() if " & " in line]
    return dict(rows)


@pytest.mark.parametrize(
    ("name", "written", "marked"),
    [
        ("seed-000", r"\partial h^{i} / \partial U", r"\partial^{+} h^{i} / \partial U"),
        ("seed-002", r"\partial h_{k} / \partial W", r"\partial^{+} h_{k} / \partial W"),
        ("seed-004", r"\partial O_{j} / \partial w", r"\partial^{+} O_{j} / \partial w"),
    ],
)
def test_a_seeds_unmarked_derivative_in_its_path_sum_is_named_the_immediate_one(handouts, name, written, marked):
    section = _seed_section(handouts[name])
    assert f"${written}$ is the immediate derivative ${marked}$; read as the total one" in section


def test_seed_000_quotes_its_compact_sum_with_the_immediate_derivative_and_one_way_of_limits(handouts):
    section = _seed_section(handouts["seed-000"])
    quote = section.split("Their compact sums, ")[1].split("$ and the same")[0]
    assert quote.endswith(r"\frac{\partial^{+} h^{i}}{\partial U}")
    # a product's lower limit below its upper one, as eq. (vanish-product) writes it
    assert r"\prod_{j=t}^{i+1}" not in section and r"\prod_{j=i+1}^{t} D^{j} U^{\top}" in section
    assert r"$\bar{h}^{t\,T}$ is our row $h^{t}$" in section


def test_the_product_order_is_said_for_the_vanishing_section_only(handouts):
    """Seed 002's column gradients put the earliest step on the left: no sentence claims every product."""
    for tex in handouts.values():
        assert "in every product over steps" not in tex


def test_seed_003_reads_both_its_products_for_vectors(handouts):
    section = _seed_section(handouts["seed-003"])
    assert r"(\hat{y} - y)^{\top} V \operatorname{diag}\bigl(g'(z_{3})\bigr)" in section
    assert r"\frac{\partial L}{\partial V} &= (\hat{y} - y)\, H_{3}^{\top}." in section
    assert "n_y = n_h = 1" not in section


def test_seed_004_says_the_slides_gradient_of_w_o_is_always_too_large(handouts):
    section = _seed_section(handouts["seed-004"])
    assert r"too large by the factor $1 / |O_{3}| > 1$ always" in section
    assert "otherwise" not in section
    assert r"(the slides write $o_{t}$ for $O_{t}$ in their gradients)" in section
    assert r"$x_{it}$ for word $t$ of sentence $i$; here $x_{t}$ holds step $t$ of all three sentences" in section
    # the inline Jacobians do not break inside their parentheses
    assert r"$\partial O_{m} / \partial O_{m-1} = {(1 - O_{m}^{2})}\, w_{h}$" in section


def test_seed_001_names_its_slides_formulas_and_sizes_in_the_documents_letters(handouts):
    section = _seed_section(handouts["seed-001"])
    assert "their formulas (1) to (5)" in section and "its formula (1)" not in section
    assert not re.search(r"(?<![A-Za-z\\])[KM](?![A-Za-z])", section), "K and M are not the document's sizes"
    assert "as a row ($1 \\times n_y$)" in section
    assert "errors mix and compound" in section and "at every step it crosses" not in section


def test_seed_002_quotes_the_prediction_and_one_logarithm(handouts):
    section = _seed_section(handouts["seed-002"])
    assert "G_{3}" not in section
    assert r"(\hat{y}_{3} - y_{3}) \otimes h_{3}" in section
    assert r"\ln" not in section.replace(r"(their $\ln$)", "")


@pytest.mark.parametrize("name", NAMES)
def test_the_total_and_the_immediate_derivative_agree_at_the_first_step(handouts, name):
    assert "the total and the immediate derivative agree at $t = 1$ only" in handouts[name]
    assert "the two agree" not in handouts[name]


def test_a_many_to_one_document_speaks_of_its_one_loss(handouts):
    tex = handouts["seed-003"]
    item = tex.split(r"\begin{enumerate}")[1].split(r"\item")[1]
    assert "from the loss at step $T$" in item and "in $T - k$" in item
    assert "from the loss at step $t$" in handouts["seed-000"]


@pytest.mark.parametrize(
    ("name", "gamma"),
    [("seed-000", r"\sup_x |\tanh'(x)|"), ("seed-003", r"\sup_x |g'(x)|")],
)
def test_gamma_names_the_hidden_activation_as_the_seed_does(handouts, name, gamma):
    tex = handouts[name]
    assert "f'(x)" not in tex
    assert _legend(tex)[r"$\gamma$"].endswith(f"${gamma}$")
    assert rf"$\gamma = {gamma}$" in tex


def test_the_legend_lists_every_delta_of_the_shapes_table(handouts):
    for tex in handouts.values():
        shapes = tex.split(r"\section*{Shapes}")[1].split(r"\end{table}")[0]
        legend = " ".join(_legend(tex))
        for delta in re.findall(r"\\delta\^\{[^$]*?\}(?:_\{[^$]*?\})?(?=\$)", shapes):
            assert delta in legend, delta


def test_the_legend_of_a_many_to_one_seed_lists_its_loss_once_and_its_target_at_the_end(handouts):
    legend = _legend(handouts["seed-003"])
    assert legend["$L$"] == "the loss (one term, at the last step)"
    assert "$L,\\ L$" not in legend
    assert "the target, at the last step only" in legend[r"$x_{t},\ y$"]


def test_the_state_delta_is_a_row_or_the_transposed_jacobian(handouts):
    row = _legend(handouts["seed-000"])[r"$\delta^{h,t}$"]
    assert row == r"$\partial E / \partial h^{t}$, the gradient of the loss with respect to $h^{t}$, a row"
    column = _legend(handouts["seed-002"])[r"$\delta^{h}_{t}$"]
    assert column.startswith(r"$(\partial E / \partial h_{t})^{\top}$")


@pytest.mark.parametrize("name", NAMES)
def test_no_sentence_speaks_of_the_random_seed_or_the_sweep(handouts, name):
    tex = handouts[name].split(r"\begin{document}")[1]
    for words in ("drawn with seed", "sweep", "zeros by default", "numbers are those of"):
        assert words not in tex, words


def test_a_factor_spelled_in_several_words_keeps_a_space_before_the_next(handouts):
    """Seed 001's gradient nabla_z L times h^T: the L does not run into the h."""
    tex = handouts["seed-001"]
    assert r"\mathcal{L} {h" not in tex
    assert r"\nabla_{z^{1,t}} \mathcal{L}\, {h^{0,t}}^{\top}" in tex


def test_a_seeds_section_gives_each_quantity_one_name_and_each_formula_once(handouts):
    seed001 = _seed_section(handouts["seed-001"])
    assert r"\nabla_{z^{1,t}} \mathcal{L} = D^{t}\, \nabla_{h^{1,t}} \mathcal{L}" in seed001
    gradient = r"\nabla_{W^{0}} \mathcal{L} &= \sum_{t=1}^{T} "
    assert seed001.count(gradient) == 2  # (38), and the erratum's with its delta written out, not (38) again
    assert gradient + r"\Bigl(\nabla_{h^{1,t}} \mathcal{L} \odot \bigl(\mathbf{1} - h^{1,t}" in seed001
    seed002 = _seed_section(handouts["seed-002"])
    assert seed002.count(r"\bigl(\hat{y}_{3} - y_{3}\bigr) h_{3}^{\top}") == 1


@needs_pdflatex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed (Debian: poppler-utils)")
def test_the_summary_breaks_only_between_its_groups(tmp_path, handouts):
    """Seed 001's summary broke after its fourth equation and left a page of five; then it stood alone on
    page 10 and left page 9 two-thirds full. Its groups (the deltas, the gradients) each stand whole on a
    page, the first with the heading, where the worked example leaves room for it."""
    tex = handouts["seed-001"]
    assert compile_tex(tmp_path, "doc", tex).returncode == 0
    compile_tex(tmp_path, "doc", tex)
    text = subprocess.run(["pdftotext", "-layout", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True)
    pages = text.stdout.split("\f")
    heading = next(i for i, p in enumerate(pages) if re.search(r"^\d+\s+Summary", p, re.M))
    summary = tex.split(r"\section{Summary}")[1].split(r"\end{align}")[0]
    groups = [re.findall(r"\\tag\*\{\((\d+)\)\}", group) for group in re.split(r"\\\\\n", summary)]
    assert len(groups) == 2, groups  # a page may break between the deltas and the gradients only
    # an equation's number ends its line (a sentence citing it does not)
    after = list(enumerate(pages))[heading:]  # the summary restates numbers given above
    where = [{i for i, p in after for n in group if re.search(rf"\({n}\)$", p, re.M)} for group in groups]
    assert where[0] == {heading} and len(where[1]) == 1, where
    assert re.search(r"\S", pages[heading].split("Summary")[0][:-4]), "the worked example ends above it"


def test_the_appendix_defines_the_stacked_deltas_and_the_functions_it_uses():
    """Seed 004's full document used Delta^z_{1:3} and softplus in its appendix without a word."""
    tex = build(preset_spec("seed-004")).latex
    appendix = tex.split(r"\appendix")[1]
    assert r"$\Delta^{z}_{1:3}$ holds $\delta^{z}_{1}, \dots, \delta^{z}_{3}$ stacked one above the other" in appendix
    assert r"Here $\operatorname{softplus}(x) = \log(1 + e^{x})$." in appendix
    assert r"$D_{1}, \dots, D_{3}$ stacked one above the other" in appendix  # rows, not side by side
    # F'_{1:3} = 1^T - O_{1:3} (.) O_{1:3} takes a row of ones from a matrix: the text says how to read it
    assert r"In a sum, $\mathbf{1}$ stands for ones of the other term's shape." in appendix
