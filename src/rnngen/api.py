"""The Python entry point: ``rnngen.derive(T=5, ...)`` for scripts and notebooks.

The object it returns keeps every stage of the pipeline, exposes the
gradients as SymPy matrix expressions, and renders itself in Jupyter: the
whole derivation as Markdown, or the final formulas as LaTeX.
"""

from __future__ import annotations

import types

import sympy as sp

from rnngen.emit import write_all
from rnngen.markdown import to_markdown
from rnngen.pipeline import Build, build
from rnngen.spec import RNNSpec
from rnngen.verify import Report, check_build


class BPTT:
    """The derivation of one network: its texts, its formulas, its module.

    Attributes:
        spec: the network.
        build: every stage of the pipeline (graph, adjoints, programs, texts).
    """

    def __init__(self, result: Build):
        self.spec = result.spec
        self.build = result

    def __repr__(self) -> str:
        return f"<BPTT {self.spec.name}: gradients of {', '.join(self.gradients)}>"

    @property
    def gradients(self) -> dict:
        """Parameter name -> dE/dp as the reverse sweep derived it (a SymPy matrix expression).

        The symbols are per-step values and their adjoints: ``dz_3`` is delta^z_3, ``x_3`` the input.
        """
        return dict(self.build.derivation.gradients)

    @property
    def adjoints(self) -> list:
        """Every equation of the reverse sweep, ``Eq(delta, expression)``, in the order it runs."""
        return [sp.Eq(node.symbol, node.expr, evaluate=False) for node in self.build.derivation.adjoints]

    @property
    def formulas(self) -> list:
        """``(number, [Eq(target, expression), ...])`` for each numbered final formula, as the module runs them."""
        return [
            (self.build.equations[f.key], [sp.Eq(s.target, s.expr, evaluate=False) for s in f.stmts])
            for f in self.build.formulas
            if f.key in self.build.equations  # h_0 repeated for the batch is not a numbered formula
        ]

    @property
    def latex(self) -> str:
        """The LaTeX document."""
        return self.build.latex

    @property
    def markdown(self) -> str:
        """The document as Markdown for GitHub."""
        return self.build.markdown

    @property
    def module_source(self) -> str:
        """The generated NumPy module's text."""
        return self.build.module

    def module(self) -> types.ModuleType:
        """The generated module, imported from memory (nothing is written)."""
        module = types.ModuleType(self.spec.name)
        exec(compile(self.build.module, f"<rnngen {self.spec.name}>", "exec"), module.__dict__)
        return module

    def check(self, exact: bool = False) -> Report:
        """Finite differences, the Taylor test and the agreement of the forms (and the exact oracle)."""
        return check_build(self.build, exact=exact)

    def save(self, out_dir="generated", latex=True, markdown=False, pdf=False, force=False) -> list:
        """Write the module (and the documents asked for) into ``out_dir``, all or nothing; return the paths."""
        files = self.build.files(out_dir, latex=latex, markdown=markdown, pdf=pdf)
        write_all(files, force)
        return list(files)

    def _repr_markdown_(self) -> str:
        return to_markdown(self.build.latex, "jupyter")

    def _repr_latex_(self) -> str:
        rows = [
            rf"{f.latex} && ({self.build.equations[f.key]})"
            for f in self.build.formulas
            if f.stmts[0].section == "backward"
        ]
        return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def derive(T: int, **choices) -> BPTT:
    """Derive BPTT for an RNN unrolled for ``T`` steps.

    Args:
        T: the unroll length.
        **choices: the rest of ``RNNSpec``: ``hidden``, ``output``, ``loss``, ``mapping``,
            ``notation``, ``names``, ``hidden_bias``, ``output_bias``, ``slope``.

    Returns:
        A ``BPTT`` object; in a notebook it displays the derivation.

    Raises:
        SpecError: a choice that is not allowed (the message lists what is).
    """
    return BPTT(build(RNNSpec(T=T, **choices)))
