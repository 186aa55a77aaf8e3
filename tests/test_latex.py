"""The LaTeX document: what it shows, that it compiles, and that it stays O(T)."""

import re
import shutil
import subprocess

import pytest

from rnngen.examples import EXAMPLES
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

pdflatex = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(pdflatex is None, reason="pdflatex is not installed (Debian: texlive-latex-base)")


def test_document_shows_the_derivation(built):
    tex = built(5).latex
    for needed in (
        r"h_{t} &= \tanh(z_{t})",  # forward equations, printed from the graph
        r"\hat{y}_i\,(\delta_{ij} - \hat{y}_j)",  # dense softmax Jacobian
        r"= \hat{y}_j - y_j",  # its collapse with cross-entropy
        r"\diag\bigl(\mathbf{1} - h_{t} \odot h_{t}\bigr)",  # dh_t/dz_t
        r"\frac{\partial z_{t}}{\partial h_{t-1}} &= W",  # dz_t/dh_{t-1}
        r"\delta^{h}_{t} &= W^{\top} \delta^{z}_{t+1} + V^{\top} \delta^{o}_{t}",  # recursive delta form
    ):
        assert needed in tex, needed
    # the sum over T = 5 paths, written out for W and for U as in the slides
    for var in ("W", "U"):
        assert len(re.findall(r"\\frac\{\\partial\^\{\+\} h_\{\d\}\}\{\\partial " + var + "}", tex)) == 5


def test_module_cites_the_document_numbers(built):
    result = built(5)
    for formula_key, number in result.equations.items():
        if formula_key.startswith("final-"):
            assert f"\\tag{{{number}}}" in result.latex
    cited = {int(n) for n in re.findall(r"# \((\d+)\)", result.module)}
    final = {n for k, n in result.equations.items() if k.startswith("final-")}
    assert cited == final and len(final) >= 10


def test_long_expansions_are_abbreviated(built):
    tex = built(20).latex
    assert r"\cdots" in tex and r"\prod_{j=2}^{20}" in tex


@needs_pdflatex
@pytest.mark.parametrize("spec", EXAMPLES + (RNNSpec(T=1),), ids=lambda s: s.name)
def test_document_compiles_with_pdflatex(tmp_path, spec):
    tex = tmp_path / f"{spec.name}.tex"
    tex.write_text(build(spec).latex, encoding="utf-8")
    run = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / f"{spec.name}.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in run.stdout  # nothing runs off the page
