"""The pipeline itself: spec -> unroll -> derive -> optimize -> lower -> render.

``build`` keeps every stage in its result, so a test or a notebook can look at
the graph, the adjoints, the plain and the optimized program, and the texts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from rnngen.backprop import Derivation, derive
from rnngen.emit import compile_pdf
from rnngen.figure import svg_file, svg_name
from rnngen.lower import Lowered, lower
from rnngen.markdown import to_markdown
from rnngen.optimize import optimize
from rnngen.program import Program, from_derivation
from rnngen.render import render_both
from rnngen.spec import RNNSpec

#: What a handout's file names add to the network's name (``rnn_tanh_softmax_xent_t5_handout.tex``).
HANDOUT_SUFFIX = "_handout"


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
        render_handout: renders ``handout``, on its first use (most builds never show it).

    The products read from these (``handout``, ``markdown``, ``svg``) are made on first use and kept.
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
    render_handout: Callable[[], str] = field(repr=False, compare=False)

    @cached_property
    def handout(self) -> str:
        """The LaTeX document without its appendix (the formulas the code runs) and without a word on the
        code; its equations keep the document's numbers."""
        return self.render_handout()

    @cached_property
    def markdown(self) -> str:
        """The document as Markdown whose math renders on GitHub."""
        return to_markdown(self.latex, "github")

    @cached_property
    def svg(self) -> str:
        """The figure of the unrolled network as SVG, which the Markdown shows (``figure.py``)."""
        return svg_file(self.derivation)

    def paths(self, out_dir, latex: bool = True, markdown: bool = False, pdf: bool = False, handout=False) -> list:
        """The files ``files`` would write into ``out_dir`` (the Markdown's figure beside it).

        The handout's documents are named ``<name>_handout.tex`` (``.md``, ``.pdf``): a different name from
        the full document's, so that writing one never replaces the other. The handout comes with the full
        document, whose appendix holds the equations the module's comments cite.
        """
        out = Path(out_dir)
        stems = [self.spec.name] + ([self.spec.name + HANDOUT_SUFFIX] if handout else [])
        kinds = [s for s, want in ((".tex", latex), (".md", markdown), (".pdf", pdf)) if want]
        # the figure is the network's: one file, which the document and the handout both show
        figure = [out / svg_name(self.spec)] if markdown else []
        return [out / f"{self.spec.name}.py", *(out / (stem + s) for stem in stems for s in kinds), *figure]

    def files(self, out_dir, latex: bool = True, markdown: bool = False, pdf: bool = False, handout=False) -> dict:
        """``{path: text or bytes}`` of the files to write into ``out_dir``; ``handout``: the handout too.

        The PDF is compiled here (it needs pdflatex), before anything is written.
        """

        def content(path: Path):
            if path.suffix in (".py", ".svg"):
                return self.module if path.suffix == ".py" else self.svg
            handout = path.stem.endswith(HANDOUT_SUFFIX)
            if path.suffix == ".md":
                return to_markdown(self.handout, "github") if handout else self.markdown
            tex = self.handout if handout else self.latex
            return tex if path.suffix == ".tex" else compile_pdf(tex, path.stem)

        return {path: content(path) for path in self.paths(out_dir, latex, markdown, pdf, handout)}


def build(spec: RNNSpec, skip=()) -> Build:
    """Run the whole pipeline for ``spec``; ``skip`` names rewrite and optional lowering passes to leave out."""
    derivation = derive(spec)
    plain = from_derivation(derivation)
    program = optimize(plain, skip=skip)
    lowered = lower(program, skip=skip)
    module, latex, equations, formulas, handout = render_both(derivation, lowered)
    return Build(spec, derivation, plain, program, lowered, module, latex, equations, formulas, handout)
