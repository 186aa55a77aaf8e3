"""The pages of the committed handouts and their full documents, as pdfLaTeX sets them: tables whole, pages
full before a summary that runs on, no stub of a last page, no page naming the program that made it."""

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rnngen.pipeline import build
from rnngen.spec import RNNSpec

ROOT = Path(__file__).resolve().parents[1]
HANDOUTS = sorted((ROOT / "generated").glob("*_handout.tex"))

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdflatex") and shutil.which("pdftotext")), reason="needs pdflatex and pdftotext"
)


#: The full documents of the handouts (the handout with the appendix of the code's formulas).
FULL = [tex.with_name(tex.name.replace("_handout", "")) for tex in HANDOUTS]

#: The text area of a page, in PDF points from the top (the templates' geometry: the text starts 1 in - 0.5 in
#: + 37 pt below the top of the page and is 9 in high).
TOP, HEIGHT = 36 + 37 * 72 / 72.27, 9 * 72


def _render(tex: Path, tmp: Path) -> tuple:
    """The text of each page of ``tex`` (pdftotext, one string a page) and how full each page is: the foot of its
    lowest line of text (the page number aside) below the top of the text area, as a share of its height."""
    (tmp / tex.name).write_text(tex.read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", tex.name], cwd=tmp, capture_output=True, check=True)
    pdf = tex.stem + ".pdf"
    text = subprocess.run(["pdftotext", "-layout", pdf, "-"], cwd=tmp, capture_output=True, text=True).stdout
    boxes = subprocess.run(["pdftotext", "-bbox-layout", pdf, "-"], cwd=tmp, capture_output=True, text=True).stdout
    fills = []
    for page in re.findall(r"<page.*?</page>", boxes, re.S):
        feet = [
            float(foot)
            for foot, words in re.findall(r'<line [^>]*yMax="([\d.]+)">(.*?)</line>', page, re.S)
            if not (float(foot) > TOP + HEIGHT and re.fullmatch(r"\s*<word [^>]*>\d+</word>\s*", words))
        ]
        fills.append((max(feet, default=TOP) - TOP) / HEIGHT)
    return text.split("\f")[:-1], fills


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """Document name -> (the text of each page, how full each page is), for the handouts and their full documents."""
    return {tex.stem: _render(tex, tmp_path_factory.mktemp(tex.stem)) for tex in (*HANDOUTS, *FULL)}


@pytest.fixture(scope="module")
def pages(rendered) -> dict:
    """Handout name -> the text of each of its pages."""
    return {tex.stem: rendered[tex.stem][0] for tex in HANDOUTS}


def _page_of(pages: list, pattern: str) -> list:
    return [i for i, page in enumerate(pages) if re.search(pattern, page)]


def test_the_table_of_shapes_stands_whole_on_one_page(pages):
    for name, doc in pages.items():
        # a table broken across pages repeats its header (two halves side by side share a line)
        heads = _page_of(doc, r"(?m)^\s*shape\s+symbols(\s+shape\s+symbols)?\s*$")
        assert len(heads) == 1, (name, heads)
        assert _page_of(doc, r"A delta has the shape of its value") == heads, name  # the line under the table


def _summary_pages(doc: list) -> range:
    """The pages the summary stands on: from its heading's to the end, or to the appendix's heading."""
    start = _page_of(doc, r"(?m)^\s*\d+\s+Summary\s*$")[0]
    appendix = _page_of(doc, r"(?m)^\s*A\s+The formulas the code runs\s*$")
    if not appendix:
        return range(start, len(doc))
    stop = appendix[0] + (not doc[appendix[0]].lstrip().startswith("A "))  # its page, unless it heads it
    return range(start, stop)


def _short_pages(doc: list, fills: list, least: float) -> list:
    """``(page, fill)`` of each page less than ``least`` full that a page of the summary follows."""
    summary = _summary_pages(doc)
    before = [summary.start - 1] if doc[summary.start].lstrip()[:1].isdigit() else []  # its heading heads a page
    return [(p + 1, round(fills[p], 2)) for p in [*before, *summary[:-1]] if fills[p] < least]


def test_no_page_before_a_summary_group_is_short(rendered):
    """A summary breaks only between its groups (the output's deltas, each delta of a chain, each block of
    gradients), and there as late as the page allows: the page before a page of the summary is 80 % full or
    more, measured on the PDF. Before, the whole summary went to the next page when it did not fit (seed 001's
    page 9, 68 %), and the LSTM's two columns of gradients were one block that left page 8 at 68 %."""
    for name, (doc, fills) in rendered.items():
        assert not _short_pages(doc, fills, 0.8), (name, _short_pages(doc, fills, 0.8))


def test_the_last_page_is_not_a_stub(rendered):
    """Every document's last page is a fifth full or more (the appendix keeps its last formulas together):
    before, the two-layer network's full document ended on a page of two lines, seed 003's on one of 16 %."""
    for name, (_, fills) in rendered.items():
        assert fills[-1] >= 0.2, (name, round(fills[-1], 2))


def _sweep() -> list:
    """Every cell (the GRU in both forms) with 1-2 layers, in one direction or both, column or row vectors,
    many-to-many or many-to-one, at T = 3 (64 documents; in the full run only)."""
    cells = ({}, {"cell": "lstm"}, {"cell": "gru"}, {"cell": "gru", "gru_reset": "before"})
    kinds = itertools.product(cells, (1, 2), (False, True), ("column", "row"), ("many-to-many", "many-to-one"))
    return [
        RNNSpec(T=3, layers=layers, bidirectional=bi, notation=notation, mapping=mapping, **cell)
        for cell, layers, bi, notation, mapping in kinds
    ]


@pytest.mark.full
@pytest.mark.parametrize("spec", _sweep(), ids=lambda s: s.name)
def test_the_summary_and_the_last_page_across_the_sweep(spec, tmp_path):
    """The two rules above on every full document of the sweep, the page before a summary group at two thirds
    or more (a long summary's groups are up to a third of a page): before, a 2-layer LSTM's page before its
    summary was 44 % full, a GRU's 64 %, and fourteen documents ended on a page of 8-18 %."""
    tex = tmp_path / "doc.tex"
    tex.write_text(build(spec).latex, encoding="utf-8")
    doc, fills = _render(tex, tmp_path)
    assert not _short_pages(doc, fills, 2 / 3), _short_pages(doc, fills, 2 / 3)
    assert fills[-1] >= 0.2, round(fills[-1], 2)


def test_no_page_credits_the_program(pages):
    """What made the document is said where a reader does not look: the preamble comment, the Markdown header
    comment and the PDF Creator tag; no page names the program (before, the last line did)."""
    for name, doc in pages.items():
        assert not any("rnngen" in page for page in doc), name
        tex = (ROOT / "generated" / (name + ".tex")).read_text(encoding="utf-8")
        assert tex.startswith("% Generated by rnngen ") and "/Creator (rnngen " in tex, name
        md = (ROOT / "generated" / (name + ".md")).read_text(encoding="utf-8")
        header, body = md.split("-->", 1)
        assert header.startswith("<!-- Generated by rnngen ") and "rnngen" not in body, name


def _legend_rows(tex: str) -> list:
    """The words of each legend row's meaning outside its math, as pdftotext writes them."""
    legend = tex.split(r"\section*{Notation}", 1)[1].split(r"\end{longtable}", 1)[0]
    body = legend.split(r"\begin{longtable}", 1)[1].split("\n", 1)[1]
    rows = [r for r in re.split(r"\\\\\*?\s*\n", body) if "&" in r]
    meanings = [re.sub(r"\$[^$]*\$|\\[a-z]+\{[^{}]*\}|\([^()]*\)", " ", r.split("&", 1)[1]) for r in rows]
    return [[w for w in re.findall(r"[a-z]{3,}", m)][:3] for m in meanings]


def test_no_legend_row_stands_alone_on_a_page(pages):
    """A legend that breaks across pages keeps its first two rows together and its last two: no row is left
    alone at the foot of one page or the head of the next (the GRU's last row once stood alone on page 2)."""
    for tex in HANDOUTS:
        doc = pages[tex.stem]
        rows = _legend_rows(tex.read_text(encoding="utf-8"))
        for a, b in ((rows[0], rows[1]), (rows[-2], rows[-1])):
            where = [_page_of(doc, r"[^\n]{0,60}?".join(words)) for words in (a, b) if words]
            assert len(where) == 2 and where[0][:1] == where[1][:1], (tex.stem, a, b, where)
