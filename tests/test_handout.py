"""A page that reads like a textbook: the handout without the code, and the layout of every document."""

import re

import pytest
from latex_reader import SECTION
from test_cli import assert_one_line_error, rnngen

import rnngen as api
from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

#: One document of each template and of the branches these tests reach: the three forms, a gated
#: cell, truncation (whose text speaks of a chunked call), two bidirectional layers, many-to-one rows.
SPECS = [
    dict(T=5),
    dict(T=1),
    dict(
        T=3, mapping="many-to-one", notation="row", names="w_i,w_h,w_o", output="sigmoid", loss="binary_cross_entropy"
    ),
    dict(T=3, cell="lstm"),
    dict(T=4, truncate=2),
    dict(T=3, layers=2, bidirectional=True),
]
_IDS = [",".join(f"{k}={v}" for k, v in c.items()) for c in SPECS]

#: Words that speak of the code, its tests or a command: none of them in a handout's text.
_CODE_WORDS = re.compile(
    r"\bmodule\b|\bcode\b|\btests?\b|rnngen flow|\\texttt|\bgrads\b|return\\_state|reverse sweep produced"
)


def _body(tex: str) -> str:
    """The document's text a reader sees: from the title on (the preamble's comments say how it was made)."""
    return tex.split(r"\begin{document}", 1)[1]


@pytest.fixture(scope="module", params=SPECS, ids=_IDS)
def built(request):
    return build(RNNSpec(**request.param))


def test_the_appendix_is_last_and_the_handout_leaves_it_out(built):
    body = _body(built.latex)
    assert body.index(r"\appendix") < body.index(SECTION)
    appendix = body[body.index(r"\appendix") :]
    assert re.findall(r"\\section\*?\{[^}]*\}", appendix) == [SECTION]  # the code's section, and only it, after
    assert r"\section{Summary}" in body[: body.index(r"\appendix")]
    handout = _body(built.handout)
    assert r"\appendix" not in handout and SECTION not in handout
    assert r"\section{Summary}" in handout
    assert "--handout" in built.handout.split(r"\documentclass")[0]  # its preamble regenerates the handout


def test_the_handout_says_nothing_of_the_code(built):
    words = _CODE_WORDS.findall(_body(built.handout))
    assert not words, words
    assert _CODE_WORDS.search(_body(built.latex))  # the same search finds the appendix's words


def test_the_handout_keeps_the_documents_equation_numbers(built):
    full = {int(n): line for line in built.latex.splitlines() for n in re.findall(r"\\tag\{(\d+)\}", line)}
    kept = {int(n): line for line in built.handout.splitlines() for n in re.findall(r"\\tag\{(\d+)\}", line)}
    assert kept and all(full[n] == line for n, line in kept.items())
    assert set(full) - set(kept) == {built.equations[f.key] for f in built.formulas if f.key in built.equations}


def test_the_summary_restates_the_gradients_under_their_numbers(built):
    before, summary = _body(built.handout).split(r"\section{Summary}")
    body = summary.split(r"\begin{align}")[1].split(r"\end{align}")[0]
    rows = [r.strip() for r in re.split(r"\\\\\*?\s*\n", body)]
    assert len(rows) >= len(built.derivation.gradients)
    assert sum(r"\tag*{(" in row for row in rows) >= len(built.derivation.gradients)
    for row in rows:
        # the same equation, under the same number, stated above (there numbered, here only shown)
        stated = re.sub(r"\\tag\*\{\((\d+)\)\}", r"\\tag{\1}", row)
        assert stated in before, row


def test_a_page_breaks_between_equations_never_inside_one(built):
    """Every row that continues an equation on the next (``\\nonumber``) forbids a page break after it."""
    assert r"\allowdisplaybreaks[1]" in built.latex
    inside = re.findall(r"\\nonumber\s*\\\\(?!\*)", built.latex)
    assert not inside, inside
    assert r"\nonumber \\*" in built.latex


def test_no_row_of_a_display_has_two_alignment_points(built):
    """A second ``&=`` on a row opens a new column pair: its left side then stands far from its ``=``."""
    for env in re.finditer(r"\\begin\{(align|equation)\}(.*?)\\end\{\1\}", built.latex, re.S):
        for row in re.split(r"\\\\\*?\s*\n", env.group(2)):
            row = re.sub(r"\\begin\{([bp]matrix)\}.*?\\end\{\1\}", "", row, flags=re.S)  # a matrix's & is its own
            assert len(re.findall(r"(?<!\\)&", row)) <= 1, row


def test_markdown_letters_the_appendix():
    md = to_markdown(build(RNNSpec(T=2)).latex)
    headings = re.findall(r"^## (.*)$", md, re.M)
    assert re.fullmatch(r"\d+ Summary", headings[-2]) and headings[-1] == "A The formulas the code runs"


def test_derive_writes_the_handout_beside_the_full_document(tmp_path):
    """The handout comes with the full document: the module's comments cite the appendix's equations."""
    api.derive(T=2, out=tmp_path, markdown=True, handout=True, check=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    stem = "rnn_tanh_softmax_xent_t2"
    documents = [f"{stem}_handout.md", f"{stem}_handout.tex", f"{stem}.md", f"{stem}.tex"]
    assert names == sorted([f"{stem}.py", f"{stem}.svg", *documents])  # one figure, which both Markdowns show
    assert r"\appendix" in (tmp_path / f"{stem}.tex").read_text()
    assert r"\appendix" not in (tmp_path / f"{stem}_handout.tex").read_text()
    assert "The formulas the code runs" not in (tmp_path / f"{stem}_handout.md").read_text()


def test_handout_without_a_document_is_refused_and_writes_nothing(tmp_path):
    result = rnngen("derive", "--T", "2", "--handout", "--no-latex", cwd=tmp_path)
    assert_one_line_error(result, "--handout", "--no-latex")
    assert not (tmp_path / "generated").exists()
    with pytest.raises(ValueError, match="handout"):
        api.derive(T=2, handout=True)  # nowhere to write it


@pytest.mark.parametrize("T", [1, 3, 5, 8])
@pytest.mark.parametrize("mapping", ["many-to-many", "many-to-one"])
def test_the_cost_of_the_paths_is_counted_right(T, mapping):
    """The sentence's counts, against the paths enumerated one by one, each a product of the Jacobians the
    document writes for it (t - k + 3 of them: t - k + 2 products)."""
    tex = build(RNNSpec(T=T, mapping=mapping)).latex
    pairs = [(t, k) for t in range(1, T + 1) for k in range(1, t + 1) if mapping == "many-to-many" or t == T]
    products = sum(t - k + 2 for t, k in pairs)
    stated = re.search(
        r"paths per weight \((\d+) at .*?matrix products \((\d+) at \$T = (\d+)\$\), \$O\(T\^(\d)\)\$", tex, re.S
    )
    assert stated and (int(stated.group(1)), int(stated.group(2)), int(stated.group(3))) == (len(pairs), products, T)
    assert stated.group(4) == ("2" if mapping == "many-to-one" else "3")
    # many-to-one has one loss term, at T: no step t to count from
    assert f"multiplies ${'T' if mapping == 'many-to-one' else 't'} - k + 3$ Jacobians" in tex
    # the terms the document writes for the loss at step T: one per k, with T - k + 3 Jacobians each
    block = tex.split(r"\frac{\partial E_{" + str(T) + r"}}{\partial W}", 1)[1].split(r"\end{align}", 1)[0]
    terms = [row for row in re.split(r"\\\\\*?\s*\n", block) if row.strip()]
    if T <= 6:
        assert [row.count(r"\frac") for row in terms] == [T - k + 3 for k in range(T, 0, -1)]


def test_row_notation_writes_the_last_step_as_its_number():
    """In row notation a superscript T is a transpose: the last step is written ``E^{3}``, not ``E^{T}``;
    only the limits of sums and products keep the letter."""
    spec = RNNSpec(
        T=3, mapping="many-to-one", notation="row", names="w_i,w_h,w_o", output="sigmoid", loss="binary_cross_entropy"
    )
    tex = build(spec).latex
    limits = len(re.findall(r"\\(?:sum|prod)_\{[^{}]*\}\^\{T\}", tex))
    assert tex.count("^{T}") == limits
    assert r"\frac{\partial E^{3}}{\partial \hat{y}^{3}}" in tex


@pytest.mark.parametrize("text", ["x/(1+abs(x))", "x/sqrt(1+x**2)", "x*tanh(x)", "x**3 - x", "log(1+exp(x))"])
def test_a_custom_activations_derivative_is_shown_simplified_and_equal(text):
    import numpy as np
    import sympy as sp

    from rnngen import expression
    from rnngen.activations import elementwise, simplest

    f = expression.parse(text)
    shown = simplest(sp.diff(f, expression.X))
    xs = np.linspace(-3.0, 3.0, 601) + 1e-3  # off 0, where |x| has its kink
    h = 1e-6
    value = sp.lambdify(expression.X, f, "numpy")
    central = (value(xs + h) - value(xs - h)) / (2 * h)
    np.testing.assert_allclose(sp.lambdify(expression.X, shown, "numpy")(xs) + 0 * xs, central, rtol=1e-7, atol=1e-8)
    assert sp.count_ops(shown) <= sp.count_ops(sp.diff(f, expression.X))
    assert elementwise(f"custom_derivative:{text}").definition == f"f'(x) = {sp.latex(shown)}"
    if text == "x/(1+abs(x))":
        assert shown == 1 / (sp.Abs(expression.X) + 1) ** 2


def test_a_leaky_relus_derivative_on_the_output_reads_as_what_it_computes():
    """Applied to h_t, the slope is written a + (1 - a)[h_t > 0], not lrelu'(h_t) (the derivative at h_t)."""
    tex = build(RNNSpec(T=2, hidden="leaky_relu", slope=0.2)).latex
    assert "lrelu}'" not in tex
    assert (
        r"D_{t} = \frac{\partial h_{t}}{\partial z_{t}} = \operatorname{diag}\bigl(0.2 + 0.8\,[h_{t} > 0]\bigr)" in tex
    )


#: Symbols a document's body may use beyond its network's values, each with the legend row that defines it.
_SYMBOLS = {
    r"\partial^{+}": r"$\partial^{+}$",
    r"\gamma": r"$\gamma$",
    r"\operatorname{diag}": r"$\operatorname{diag}(v)$",
    r"\delta_{ij}": r"$I,\ \delta_{ij}$",
    r"\frac{\partial E}{\partial p}": "$p$",
}


def test_every_symbol_the_body_uses_is_in_the_legend(built):
    legend, body = _body(built.handout).split(r"\section*{Shapes}")[0], _body(built.handout)
    body = body.split(r"\section{The forward pass}", 1)[1]
    assert re.search(r"^\$(\w),\\ \1[_^]\{(?:t|\d+)\}\$ & the loss", legend, re.M)  # the loss and its terms
    for symbol, row in _SYMBOLS.items():
        if symbol in body:
            assert f"\n{row} & " in legend, symbol


@pytest.mark.parametrize("preset", ["seed-000", "seed-001", "seed-002", "seed-003", "seed-004"])
def test_a_seed_presets_handout_says_nothing_of_the_code(preset):
    from rnngen.presets import preset_spec

    built = build(preset_spec(preset, None, []))
    body = _body(built.handout)
    assert r"\appendix" not in body and r"\section{Summary}" in body
    assert not _CODE_WORDS.findall(body), _CODE_WORDS.findall(body)
    kept = re.findall(r"\\tag\{(\d+)\}", built.handout)
    assert kept and all(rf"\tag{{{n}}}" in built.latex for n in kept)


def test_a_build_renders_the_handout_only_when_asked_and_draws_the_figure_once(monkeypatch):
    """The handout is one more rendering of the document's template, which most runs never show; the figure
    is drawn once however often the Markdown, the files and a notebook read it."""
    from rnngen import pipeline, render
    from rnngen.spec import RNNSpec

    rendered, drawn = [], []
    real_render, real_svg = render.render, pipeline.svg_file
    monkeypatch.setattr(render, "render", lambda template, **c: rendered.append(template) or real_render(template, **c))
    monkeypatch.setattr(pipeline, "svg_file", lambda d: drawn.append(d) or real_svg(d))
    built = pipeline.build(RNNSpec(T=2))
    assert sorted(rendered) == ["derivation.tex.jinja", "module.py.jinja"]  # the document and the module
    assert built.handout == built.handout and rendered.count("derivation.tex.jinja") == 2
    assert r"\appendix" in built.latex and r"\appendix" not in built.handout
    assert built.svg is built.svg and len(drawn) == 1
