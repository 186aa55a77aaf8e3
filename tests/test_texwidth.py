"""The measure the documents break long equations by (``texwidth.width``), against what pdfLaTeX sets."""

import re

from test_latex import compile_tex, needs_pdflatex

from rnngen.pipeline import build
from rnngen.spec import RNNSpec
from rnngen.texwidth import width

#: Documents whose rows hold what the measure must know: gates' letters in braces, chains' tags in
#: scripts, parentheses that grow with what they hold, labelled braces, fractions, sums with limits,
#: block matrices, rows in both notations.
DOCUMENTS = (
    RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True, notation="row", mapping="many-to-one"),
    RNNSpec(T=3, cell="gru", bidirectional=True, mapping="many-to-one"),
    RNNSpec(T=5),
)


def _rows(tex: str) -> set:
    """Every row of every align of ``tex``, as the align sets it: its left side, then its right one
    (which the align starts with an empty atom, ``{}= ...``, ``{}\\qquad + ...``)."""
    rows = set()
    for body in re.findall(r"\\begin\{align\}(.*?)\\end\{align\}", tex, re.S):
        for row in re.split(r"\\\\\*?\s*\n", body):
            row = re.sub(r"\\tag\{\d+\}|\\tag\*\{[^{}]*\}|\\nonumber", "", row).strip()
            outside = re.sub(r"\\begin\{bmatrix\}.*?\\end\{bmatrix\}", "", row)  # a matrix's & is its own
            if row and outside.count("&") == 1:  # (a row of two aligned relations is two columns apart)
                rows.add(re.sub(r"(^|\s)&", r"\1{}", row, count=1))
    return rows


@needs_pdflatex
def test_the_measure_is_what_pdflatex_sets(tmp_path):
    rows = sorted(set().union(*(_rows(build(spec).latex) for spec in DOCUMENTS)))
    body = "\n".join(rf"\sbox0{{$\displaystyle {row}$}}\typeout{{width {i} \the\wd0}}" for i, row in enumerate(rows))
    run = compile_tex(tmp_path, "widths", "\\documentclass[11pt]{article}\n\\usepackage{amsmath}\n"
                      f"\\begin{{document}}\n{body}\n\\end{{document}}\n")  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    set_ = {int(i): float(w) for i, w in re.findall(r"^width (\d+) ([\d.]+)pt$", run.stdout, re.M)}
    assert len(set_) == len(rows) > 500
    # never narrower by more than 3pt (the room a row keeps for its number is 30pt), at most 3% wider
    off = [(width(row) - set_[i], set_[i], row) for i, row in enumerate(rows)]
    assert all(-3 <= d <= 0.03 * w + 3 for d, w, _ in off), [o for o in off if not -3 <= o[0] <= 0.03 * o[1] + 3][:3]
