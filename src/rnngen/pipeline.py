"""The pipeline itself: spec -> unroll -> derive -> optimize -> lower -> render.

``build`` keeps every stage in its result, so a test or a notebook can look at
the graph, the adjoints, the plain and the optimized program, and the texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rnngen.backprop import Derivation, derive
from rnngen.emit import compile_pdf
from rnngen.figure import svg_file
from rnngen.lower import Lowered, lower
from rnngen.markdown import to_markdown
from rnngen.optimize import optimize
from rnngen.program import Program, from_derivation
from rnngen.render import render_both
from rnngen.spec import RNNSpec


@dataclass(frozen=True)
class Build:
    """Every stage of one run of the pipeline.

    Attributes:
        spec: what was derived.
        derivation: the unrolled graph with every adjoint and gradient.
        plain: the program straight from the derivation, before any pass.
        program: the optimized program the module runs.
        lowered: the program with every storage decision of the module (``lower.lower``).
        module: text of the generated NumPy module.
        latex: text of the generated LaTeX document.
        equations: equation key -> number in the document.
        formulas: the numbered final formulas, each with the statements it covers.
    """

    spec: RNNSpec
    derivation: Derivation
    plain: Program
    program: Program
    lowered: Lowered
    module: str
    latex: str
    equations: dict
    formulas: list

    @property
    def markdown(self) -> str:
        """The document as Markdown whose math renders on GitHub."""
        return to_markdown(self.latex, "github")

    @property
    def svg(self) -> str:
        """The figure of the unrolled network as SVG, which the Markdown shows (``figure.py``)."""
        return svg_file(self.derivation)

    def paths(self, out_dir, latex: bool = True, markdown: bool = False, pdf: bool = False) -> list:
        """The files ``files`` would write into ``out_dir`` (the Markdown's figure beside it)."""
        stem = Path(out_dir) / self.spec.name
        wanted = ((".tex", latex), (".md", markdown), (".svg", markdown), (".pdf", pdf))
        suffixes = [".py"] + [s for s, want in wanted if want]
        return [stem.with_suffix(s) for s in suffixes]

    def files(self, out_dir, latex: bool = True, markdown: bool = False, pdf: bool = False) -> dict:
        """``{path: text or bytes}`` of the files to write into ``out_dir``.

        The PDF is compiled here (it needs pdflatex), before anything is written.
        """
        content = {
            ".py": lambda: self.module,
            ".tex": lambda: self.latex,
            ".md": lambda: self.markdown,
            ".svg": lambda: self.svg,
            ".pdf": lambda: compile_pdf(self.latex, self.spec.name),
        }
        return {path: content[path.suffix]() for path in self.paths(out_dir, latex, markdown, pdf)}


def build(spec: RNNSpec, skip=()) -> Build:
    """Run the whole pipeline for ``spec``; ``skip`` names rewrite and optional lowering passes to leave out."""
    derivation = derive(spec)
    plain = from_derivation(derivation)
    program = optimize(plain, skip=skip)
    lowered = lower(program, skip=skip)
    module, latex, equations, formulas = render_both(derivation, lowered)
    return Build(spec, derivation, plain, program, lowered, module, latex, equations, formulas)
