"""The program form: straight-line statements that the rewrite passes transform.

A statement assigns one matrix expression to one target. A target is a whole
value (``E``, ``dU``), one step of a per-step family (``h_3``), or a run of
steps of a family stacked side by side (``h[1:5]``, the matrix
``[h_1 ... h_5]``). Everything a pass or printer needs to know about storage
follows from those names, so a program is just its statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen import names
from rnngen.backprop import Derivation
from rnngen.unroll import parse_step, step_name

SECTIONS = ("forward", "loss", "backward")
_STACKED = re.compile(r"^(?P<family>\w+)\[(?P<lo>\d+):(?P<hi>\d+)\]$")


def stacked(family: str, lo: int, hi: int, rows) -> MatrixSymbol:
    """The steps ``lo..hi`` of ``family`` side by side, one symbol."""
    return MatrixSymbol(f"{family}[{lo}:{hi}]", rows, A.B)


def parse_stacked(name: str):
    m = _STACKED.match(name)
    return (m["family"], int(m["lo"]), int(m["hi"])) if m else None


def cells(symbol) -> set:
    """The storage cells a symbol names: ``(family, t)`` per step, ``(name, None)`` if whole."""
    step = parse_step(symbol.name)
    if step:
        return {step}
    run = parse_stacked(symbol.name)
    if run:
        family, lo, hi = run
        return {(family, t) for t in range(lo, hi + 1)}
    return {(symbol.name, None)}


def family_of(symbol) -> str | None:
    step = parse_step(symbol.name) or parse_stacked(symbol.name)
    return step[0] if step else None


def relative(family: str, k: int, rows) -> MatrixSymbol:
    """Step ``t + k`` of ``family`` for a generic step t: the placeholder of per-step forms."""
    return MatrixSymbol(f"{family}@{k}", rows, A.B)


def parse_relative(name: str):
    """``"h@-1" -> ("h", -1)``; None when the name is not a placeholder."""
    family, sep, k = name.partition("@")
    return (family, int(k)) if sep else None


def step_template(expr, t: int):
    """``expr`` with each step symbol ``g_s`` replaced by the placeholder for ``g`` at ``t + (s - t)``."""
    swap = {}
    for sym in A.symbols_in(expr):
        step = parse_step(sym.name)
        if step:
            swap[sym] = relative(step[0], step[1] - t, sym.shape[0])
    return expr.xreplace(swap)


def instantiate(template, lo: int, hi: int):
    """Placeholders ``g@k`` -> the stacked steps ``g[lo+k:hi+k]``."""
    swap = {}
    for sym in A.symbols_in(template):
        rel = parse_relative(sym.name)
        if rel:
            family, k = rel
            swap[sym] = stacked(family, lo + k, hi + k, sym.shape[0])
    return template.xreplace(swap)


@dataclass(frozen=True)
class Stmt:
    """``target := expr``.

    Attributes:
        target: the symbol written.
        expr: its value, over earlier targets, parameters and inputs.
        section: which part of the module computes it (``SECTIONS``).
        order: position in the plain derivation; the scheduler keeps it where it can.
    """

    target: MatrixSymbol
    expr: object
    section: str
    order: float

    @property
    def reads(self) -> set:
        return set().union(*(cells(s) for s in A.symbols_in(self.expr)))

    @property
    def writes(self) -> set:
        return cells(self.target)

    @property
    def step(self):
        """``(family, t)`` when the target is one step, else None."""
        return parse_step(self.target.name)

    @property
    def is_stacked(self) -> bool:
        """True when the target is several steps side by side."""
        return parse_stacked(self.target.name) is not None

    def with_(self, **changes) -> Stmt:
        return replace(self, **changes)


class ProgramError(ValueError):
    """A program that breaks a rule of the form, such as a value with two writers."""


def _short(stmt: Stmt, width: int = 60) -> str:
    text = f"{stmt.target.name} := {stmt.expr}"
    return text if len(text) <= width else text[: width - 3] + "..."


def check_one_writer(stmts) -> None:
    """Raise ProgramError when two statements write the same cell (step or whole value).

    A pass that gives two different values one name (two recurrences' derivative factors
    both called ``fprime_t``) would otherwise let the later silently replace the earlier.
    """
    writer: dict = {}
    for s in stmts:
        for cell in s.writes:
            first = writer.setdefault(cell, s)
            if first is not s:
                family, t = cell
                name = family if t is None else step_name(family, t)
                raise ProgramError(
                    f"{name} has two writers, {_short(first)!r} and {_short(s)!r}; a value is written once"
                )


@dataclass(frozen=True)
class Program:
    """Statements in a valid order, plus the cells the module must return.

    No two statements write the same cell: the constructor refuses a second writer.

    Attributes:
        derivation: where the statements came from.
        stmts: the statements.
        outputs: cells that must be computed (forward results, loss, gradients).
    """

    derivation: Derivation
    stmts: tuple
    outputs: frozenset

    def __post_init__(self):
        check_one_writer(self.stmts)

    def with_stmts(self, stmts) -> Program:
        return replace(self, stmts=tuple(stmts))

    def section(self, name: str) -> list:
        return [s for s in self.stmts if s.section == name]


#: Per-step families the generated ``forward`` returns.
FORWARD_OUTPUTS = ("h", "o", "yhat")


class Gradient(MatrixSymbol):
    """``dE/d<param>``, named ``d<param>`` in code; its own type, so printers never mistake it for a parameter."""

    @property
    def param(self) -> str:
        return self.name[1:]


def gradient_symbol(param: MatrixSymbol) -> MatrixSymbol:
    return Gradient(names.gradient(param.name), *param.shape)


def from_derivation(derivation: Derivation) -> Program:
    """The plain program: every node and adjoint of the derivation, one statement each."""
    graph = derivation.graph
    stmts = []
    for node in graph.nodes:
        section = "loss" if node is graph.loss else "forward"
        stmts.append(Stmt(node.symbol, node.expr, section, len(stmts)))
    for node in derivation.adjoints:
        stmts.append(Stmt(node.symbol, node.expr, "backward", len(stmts)))
    for name, expr in derivation.gradients.items():
        stmts.append(Stmt(gradient_symbol(graph.params[name]), expr, "backward", len(stmts)))
    spec = graph.spec
    outputs = {("h", t) for t in range(1, spec.T + 1)}
    outputs |= {(f, t) for f in FORWARD_OUTPUTS if f != "h" for t in spec.loss_steps}
    outputs |= {(graph.loss.symbol.name, None)}
    outputs |= {(names.gradient(name), None) for name in graph.params}
    return Program(derivation, tuple(stmts), frozenset(outputs))
