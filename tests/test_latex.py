"""The LaTeX document: what it shows, that it compiles, and that it stays O(T)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rnngen.examples import EXAMPLES, HANDOUTS
from rnngen.pipeline import HANDOUT_SUFFIX, build
from rnngen.spec import RNNSpec

ROOT = Path(__file__).resolve().parents[1]
pdflatex = shutil.which("pdflatex")
# CI installs pdflatex and sets RNNGEN_REQUIRE_PDFLATEX, so there a missing pdflatex fails instead of skipping.
needs_pdflatex = pytest.mark.skipif(
    pdflatex is None and not os.environ.get("RNNGEN_REQUIRE_PDFLATEX"),
    reason="pdflatex is not installed (Debian: texlive-latex-base)",
)


def test_document_shows_the_derivation(built):
    tex = built(5).latex
    for needed in (
        r"h_{t} &= \tanh(z_{t})",  # forward equations, printed from the graph
        r"\hat{y}_i\,(\delta_{ij} - \hat{y}_j)",  # dense softmax Jacobian
        r"= \hat{y}_j - y_j",  # its collapse with cross-entropy
        r"\operatorname{diag}\bigl(\mathbf{1} - h_{t} \odot h_{t}\bigr)",  # dh_t/dz_t
        r"\frac{\partial z_{t}}{\partial h_{t-1}} = W",  # dz_t/dh_{t-1}
        r"\operatorname{diag}(\hat{y}_{t}) - \hat{y}_{t} \hat{y}_{t}^{\top}",  # the same as a matrix
        r"\delta^{h}_{t} &= V^{\top} \delta^{o}_{t} + W^{\top} \delta^{z}_{t+1}",  # the delta form: step t, then t+1
    ):
        assert needed in tex, needed
    # the sum over T = 5 paths, written out for W, U and b as in the slides
    for var in ("W", "U", "b"):
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
    assert r"\sum_{k=2}^{18}" in tex and r"\prod_{j=2}^{20}" in tex


def compile_tex(tmp_path, name: str, text: str):
    tex = tmp_path / f"{name}.tex"
    tex.write_text(text, encoding="utf-8")
    return subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path, capture_output=True, text=True
    )


@needs_pdflatex
@pytest.mark.parametrize("path", sorted((ROOT / "generated").glob("*.tex")), ids=lambda p: p.name)
def test_committed_documents_compile_with_pdflatex(tmp_path, path):
    run = compile_tex(tmp_path, path.stem, path.read_text(encoding="utf-8"))
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / f"{path.stem}.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in run.stdout  # nothing runs off the page


@needs_pdflatex
@pytest.mark.parametrize(
    "spec",
    (
        RNNSpec(T=1),
        RNNSpec(T=8, hidden="sigmoid", output="tanh", loss="squared_error", notation="row"),
        RNNSpec(T=4, hidden="x/(1+abs(x))", output="softmax", loss="binary_cross_entropy", mapping="many-to-one"),
        RNNSpec(T=3, hidden="leaky_relu", slope=0.2, output="sigmoid", loss="squared_error", names="w_i,w_h,w_o"),
        RNNSpec(T=5, masked=True, bidirectional=True, mapping="many-to-one"),
    ),
    ids=lambda s: s.name,
)
def test_other_documents_compile_with_pdflatex(tmp_path, spec):
    tex = tmp_path / f"{spec.name}.tex"
    tex.write_text(build(spec).latex, encoding="utf-8")
    run = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / f"{spec.name}.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in run.stdout  # nothing runs off the page


def test_every_example_has_a_committed_document():
    committed = {p.stem for p in (ROOT / "generated").glob("*.tex")}
    assert committed == {spec.name for spec in EXAMPLES} | {spec.name + HANDOUT_SUFFIX for spec in HANDOUTS}
