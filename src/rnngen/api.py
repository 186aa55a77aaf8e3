"""The Python entry point: ``rnngen.derive(T=5, ...)`` and ``rnngen.load(path)`` for scripts and notebooks.

``derive`` takes the options of ``rnngen derive`` as keywords of the same
names and meaning (a test holds the two together). The object it returns
keeps every stage of the pipeline, exposes the gradients as SymPy matrix
expressions, and renders itself in Jupyter: the whole derivation as
Markdown, or the final formulas as LaTeX.
"""

from __future__ import annotations

import base64
import inspect
import os
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import sympy as sp

from rnngen.emit import check_targets, is_generated, pdflatex, write_all
from rnngen.figure import svg_name
from rnngen.markdown import to_markdown
from rnngen.pipeline import Build, build
from rnngen.presets import preset_spec
from rnngen.spec import RNNSpec, SpecError
from rnngen.verify import EXACT_MAX_T, Report, VerificationError, check_build, load_module


class CheckFailed(VerificationError):
    """The derived module failed its gradient check; ``report`` says which checks and by how much."""

    def __init__(self, report: Report, name: str):
        super().__init__(f"{name} fails its gradient check: {'; '.join(report.failures)}")
        self.report = report
        self.name = name


class BPTT:
    """The derivation of one network: its texts, its formulas, its module.

    Attributes:
        spec: the network.
        build: every stage of the pipeline (graph, adjoints, programs, texts).
    """

    def __init__(self, result: Build):
        self.spec = result.spec
        self.build = result
        #: The check ``derive`` ran (None when it ran none).
        self.report: Report | None = None
        #: ``{path: text or bytes}`` of what the last ``save`` wrote.
        self.written: dict = {}

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

    def check(self, exact: bool = False, progress: Callable[[str], None] | None = None, **where) -> Report:
        """Finite differences, the Taylor test, every path of the module and the agreement of the forms
        (and the exact oracle), as ``rnngen check`` runs them.

        ``progress``, when given, is called with a line as each check starts. ``where`` takes what
        ``verify.check_build`` does: ``sizes`` (n_x, n_h, n_y, B), ``seed``, ``dtypes``.
        """
        return check_build(self.build, exact=exact, progress=progress, **where)

    def save(self, out_dir="generated", latex=True, markdown=False, pdf=False, force=False, handout=False) -> list:
        """Write the module and the documents asked for (with ``handout``, each with its handout beside it)
        into ``out_dir``, all or nothing; return the paths."""
        files = self.build.files(out_dir, latex=latex, markdown=markdown, pdf=pdf, handout=handout)
        write_all(files, force)
        self.written = files
        return list(files)

    def _repr_markdown_(self) -> str:
        # no SVG file beside a notebook: the figure goes in as a data address
        svg = base64.b64encode(self.build.svg.encode("utf-8")).decode("ascii")
        images = {svg_name(self.spec): f"data:image/svg+xml;base64,{svg}"}
        return to_markdown(self.build.latex, "jupyter", images)

    def _repr_latex_(self) -> str:
        rows = [
            rf"{f.latex} && ({self.build.equations[f.key]})"
            for f in self.build.formulas
            if f.stmts[0].section == "backward"
        ]
        return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def derive(
    T: int | None = None,
    *,
    hidden: str = "tanh",
    slope: float | None = None,
    output: str = "softmax",
    loss: str = "cross_entropy",
    mapping: str = "many-to-many",
    notation: str = "column",
    names: str | Sequence[str] = "U,W,V",
    hidden_bias: bool = True,
    output_bias: bool = True,
    cell: str = "elman",
    gru_reset: str | None = None,
    layers: int = 1,
    bidirectional: bool = False,
    input_grad: bool = False,
    delay: int = 0,
    truncate: int | None = None,
    masked: bool = False,
    padding: str = "post",
    preset: str | None = None,
    out: str | os.PathLike | None = None,
    check: bool = True,
    exact: bool = False,
    latex: bool = True,
    markdown: bool = False,
    pdf: bool = False,
    handout: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BPTT:
    """Derive BPTT for an RNN unrolled for ``T`` steps; verify it, and write it when ``out`` is given.

    Every option of ``rnngen derive`` is a keyword here, with the same name and meaning.

    Args:
        T: the unroll length, 1 to 1000 (with a preset, None: the seed's).
        hidden: hidden activation, a name of ``rnngen list`` or an expression in ``x`` such as ``"x/(1+abs(x))"``.
        slope: the negative-side slope of ``leaky_relu`` (None: its default).
        output: output layer (softmax, sigmoid, identity).
        loss: the loss, which the output must be able to feed.
        mapping: ``"many-to-many"`` (a loss at every step), ``"many-to-one"`` (at the last) or
            ``"one-to-many"`` (one input, at the first step; a loss at every step).
        notation: ``"column"`` or ``"row"`` vectors, or ``"stacked"`` / ``"stacked-row"`` (one matrix on
            ``[h_{t-1}; x_t]``, seed 002).
        names: the input, recurrent and output matrix names, ``"U,W,V"`` or a sequence of three.
        hidden_bias, output_bias: whether the layers have the biases b and c.
        cell: the recurrent cell of every layer: ``"elman"``, ``"lstm"`` or ``"gru"`` (their gates
            sigmoid, ``hidden`` their candidate's activation and the LSTM's cell output's).
        gru_reset: the GRU's form, ``"after"`` (PyTorch's: ``r_t ∘ (W_n h_{t-1} + b_hn)``, the default
            for the GRU) or ``"before"`` (``W_n (r_t ∘ h_{t-1})``); None for the other cells.
        layers: the number of stacked layers (parameters ``U1, W1, b1, h0_1, ...`` from 2 on).
        bidirectional: a backward chain beside the forward one in every layer (suffixes ``_f``, ``_b``).
        input_grad: also return dE/dx as ``grads["x"]``.
        delay: with many-to-many, the losses start at step ``delay + 1`` (delayed many-to-many).
        truncate: truncated BPTT with horizon τ (``RNNSpec.truncate``): what it keeps is
            ``RNNSpec.truncation_rule`` (``spec.truncation_rule``): the rule in recurrent edges, per direction.
        masked: the module takes a mask or lengths of real steps (``--mask``).
        padding: where ``lengths`` put the padded steps of a masked module, ``"post"`` or ``"pre"``.
        preset: a seed preset (``presets.PRESETS``: ``"seed-000"`` ... ``"seed-004"``): the seed's network,
            its document in the seed's own notation. It fixes every option above but ``T``; a keyword
            given with it that differs from its default is refused (SpecError).
        out: a directory to write the module (and documents) into; None writes nothing.
        check: verify the module's gradients (finite differences, Taylor test, the two forms).
        exact: also compare with the exact SymPy scalar oracle (T <= 8, slower).
        latex, markdown, pdf: which documents to write into ``out`` besides the module.
        handout: also write the documents as a handout for students, named ``<name>_handout.tex`` (``.md``,
            ``.pdf``) so that they never replace the full ones: without the appendix of the formulas the
            code runs and without a word on the code; the equations keep the full document's numbers.
        force: overwrite files in ``out`` that rnngen did not write.
        progress: called with one line per stage (deriving, checking, writing), e.g. ``print``.

    Returns:
        A ``BPTT`` object (its ``report`` holds the check); in a notebook it displays the derivation.

    Raises:
        SpecError: a choice that is not allowed (the message lists what is).
        CheckFailed: the module fails its gradient check (nothing is written).
        OutputError: a file in ``out`` that cannot or must not be written (nothing is written).
        ValueError: ``markdown``, ``pdf``, ``handout`` or ``force`` without ``out``, ``pdf`` without ``latex``, or
            ``handout`` without a document.
    """
    choices = dict(
        hidden=hidden,
        slope=slope,
        output=output,
        loss=loss,
        mapping=mapping,
        notation=notation,
        names=names,
        hidden_bias=hidden_bias,
        output_bias=output_bias,
        cell=cell,
        gru_reset=gru_reset,
        layers=layers,
        bidirectional=bidirectional,
        input_grad=input_grad,
        delay=delay,
        truncate=truncate,
        masked=masked,
        padding=padding,
    )
    if preset is not None:
        given = [k for k, v in choices.items() if not _is_default(k, v)]
        spec = preset_spec(preset, T, given)  # in this API's spelling: mapping=
    elif T is None:
        raise SpecError("give T, the unroll length (1 to 1000), or a preset (which has its seed's T)")
    else:
        spec = RNNSpec(T=T, **choices)
    where = dict(check=check, exact=exact, latex=latex, markdown=markdown, pdf=pdf, handout=handout, force=force)
    return derive_spec(spec, out=out, progress=progress, **where)


def derive_spec(
    spec: RNNSpec,
    *,
    out: str | os.PathLike | None = None,
    check: bool = True,
    exact: bool = False,
    latex: bool = True,
    markdown: bool = False,
    pdf: bool = False,
    handout: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BPTT:
    """``derive`` for a network already made into a spec (the command line makes its own, since only it knows
    which options were given on it); the other arguments are ``derive``'s.
    """
    say = progress or (lambda _: None)
    if check and exact and spec.T > EXACT_MAX_T:
        raise SpecError(f"the exact oracle runs up to T = {EXACT_MAX_T} (entry by entry, 40 digits), got T = {spec.T}")
    if out is None and (markdown or pdf or handout or force):
        raise ValueError("markdown, pdf, handout and force choose what derive writes into out; give out as well")
    if pdf and not latex:
        raise ValueError("pdf compiles the LaTeX document; it needs latex=True")
    if handout and not (latex or markdown):
        raise ValueError("handout writes a handout beside each document; it needs latex=True or markdown=True")
    if out is not None and pdf:
        pdflatex()  # fail fast, before deriving, when it is missing
    say(f"deriving {spec.name} (T = {spec.T})")
    result = BPTT(build(spec))
    if out is not None:
        check_targets(result.build.paths(out, latex, markdown, pdf, handout), force)  # fail fast, write nothing
    if check:
        say("checking the gradients" + (" (and the exact oracle)" if exact else ""))
        result.report = result.check(exact, progress)
        if not result.report.ok:
            raise CheckFailed(result.report, spec.name)
    if out is not None:
        say(f"writing into {out}" + (" (compiling the PDF)" if pdf else ""))
        result.save(out, latex=latex, markdown=markdown, pdf=pdf, force=force, handout=handout)
    return result


def _is_default(keyword: str, value) -> bool:
    """True when ``value`` is ``derive``'s default for ``keyword`` (names as text or as a sequence)."""
    default = inspect.signature(derive).parameters[keyword].default
    if keyword == "names" and not isinstance(value, str):
        return tuple(value) == tuple(default.split(","))
    return value == default and type(value) is type(default)


def load(path: str | os.PathLike) -> types.ModuleType:
    """Import a module that rnngen generated, from any path; its name is the file's stem.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a module rnngen generated.
        VerificationError: it cannot be imported (a file edited by hand into broken Python).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    if path.suffix != ".py" or not is_generated(path):
        raise ValueError(f"{path} is not a module generated by rnngen (its first line is not rnngen's preamble)")
    return load_module(path, name=path.stem)
