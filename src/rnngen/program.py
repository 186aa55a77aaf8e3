"""The program form: straight-line statements that the rewrite passes transform.

A statement assigns one matrix expression to one target. A target is a whole
value (``E``, ``dU``), one step of a per-step family (``h_3``), or a run of
steps of a family stacked side by side (``h[1:5]``, the matrix
``[h_1 ... h_5]``). Everything a pass or printer needs to know about storage
follows from those names, so a program is just its statements.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen import names
from rnngen.backprop import Derivation
from rnngen.families import (
    Relative,
    Run,
    Spelled,
    Step,
    family,
    recurrences,
    spelling_of,
    step_name,
    step_of,
)

SECTIONS = ("forward", "loss", "backward")


def stacked(key: str, lo: int, hi: int, rows) -> MatrixSymbol:
    """The steps ``lo..hi`` of the family called ``key`` side by side, one symbol."""
    return Run.of(family(key), lo, hi, rows)


def cells(symbol) -> set:
    """The storage cells a symbol names: ``(family, t)`` per step, ``(name, None)`` if whole."""
    if isinstance(symbol, Step):
        return {(symbol.family.key, symbol.t)}
    if isinstance(symbol, Run):
        return {(symbol.family.key, t) for t in range(symbol.lo, symbol.hi + 1)}
    return {(symbol.name, None)}


def family_of(symbol) -> str | None:
    """The code name of the family of a step or a run of steps, else None."""
    return symbol.family.key if isinstance(symbol, (Step, Run)) else None


def relative(key: str, k: int, rows) -> MatrixSymbol:
    """Step ``t + k`` of the family called ``key`` for a generic step t: the placeholder of per-step forms."""
    return Relative.of(family(key), k, rows)


def step_template(expr, t: int):
    """``expr`` with each step symbol ``g_s`` replaced by the placeholder for ``g`` at ``t + (s - t)``."""
    swap = {}
    for sym in A.symbols_in(expr):
        if isinstance(sym, Step):
            swap[sym] = Relative.of(sym.family, sym.t - t, sym.shape[0])
    return expr.xreplace(swap)


def instantiate(template, lo: int, hi: int):
    """Placeholders ``g@k`` -> the stacked steps ``g[lo+k:hi+k]``."""
    swap = {}
    for sym in A.symbols_in(template):
        if isinstance(sym, Relative):
            swap[sym] = Run.of(sym.family, lo + sym.k, hi + sym.k, sym.shape[0])
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
        return step_of(self.target)

    @property
    def is_stacked(self) -> bool:
        """True when the target is several steps side by side."""
        return isinstance(self.target, Run)

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
                key, t = cell
                name = key if t is None else step_name(key, t)
                raise ProgramError(
                    f"{name} has two writers, {_short(first)!r} and {_short(s)!r}; a value is written once"
                )


def find_recurrences(stmts) -> tuple:
    """The recurrences of ``stmts``: the cycles of the family graph that cross time steps
    (``families.recurrences`` of their steps)."""
    return recurrences((*s.step, s.expr) for s in stmts if s.step)


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

    @property
    def recurrences(self) -> tuple:
        """The blocks that run step by step (``find_recurrences``), which the passes read."""
        return find_recurrences(self.stmts)


#: Per-step families the generated ``forward`` returns ("h": the states the output layer reads).
FORWARD_OUTPUTS = ("h", "o", "yhat")


def state_key(chain, base: str = "h") -> str:
    """The code name of a chain's state family (``h``, ``h2``, ``h_f``; the LSTM's ``cell2``)."""
    return chain.family(base).key


def initial_state_adjoint(chain, base: str = "h") -> str:
    """The code name of the adjoint of a chain's state (``dh``, ``dh2``, ``dh_f``, ``dcell``): at the
    initial step, the gradient of an initial state the caller gives per sequence."""
    return chain.family(base, "adjoint").key


class Gradient(Spelled):
    """``dE/d<param>``, named ``d<param>`` in code; its own type, so printers never mistake it for a parameter.
    It carries the parameter's spelling, so the document writes ``dE/dU^{(1)}``, not ``dE/dU1``."""

    @property
    def param(self) -> str:
        return self.name[1:]


def gradient_symbol(param: MatrixSymbol) -> MatrixSymbol:
    return Gradient(names.gradient(param.name), *param.shape, *spelling_of(param).args())


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
        param = graph.network.params[name]
        if param.blocks:  # each block's gradient a value of its own, then the blocks side by side
            parts = [gradient_symbol(param.block(part)) for part in param.parts]
            for part, part_expr in zip(parts, expr.parts):
                stmts.append(Stmt(part, part_expr, "backward", len(stmts)))
            expr = A.Concat(expr.axis, *parts)
        stmts.append(Stmt(gradient_symbol(graph.params[name]), expr, "backward", len(stmts)))
    spec = graph.spec
    if spec.input_grad:
        for x, expr in zip(graph.inputs["x"], derivation.inputs):
            d = Step.of(x.family.adjoint, x.t, x.shape[0])
            stmts.append(Stmt(d, expr, "backward", len(stmts)))
    outputs = {(state_key(c), t) for c in graph.network.top for t in range(1, spec.T + 1)}
    # each chain's initial state stays a stored step (a given state is put there), also where no
    # gradient reads it (truncated, many-to-one): inlined, the learned h0 would not broadcast over B
    outputs |= {(state_key(c, base), c.steps(spec.T)[0]) for c in graph.network.chains for base, _ in c.initials}
    # and each state's last step, the final state the caller may ask for (the LSTM's c_T is read by no one)
    outputs |= {(state_key(c, base), c.steps(spec.T)[1]) for c in graph.network.chains for base, _ in c.initials}
    outputs |= {(f, t) for f in FORWARD_OUTPUTS if f != "h" for t in spec.loss_steps}
    if spec.input_grad:
        outputs |= {("dx", t) for t in spec.input_steps}
    # dE/d(initial state) of every chain, per sequence: the gradient of a state the caller gives
    outputs |= {
        (initial_state_adjoint(c, base), c.steps(spec.T)[0]) for c in graph.network.chains for base, _ in c.initials
    }
    outputs |= {(graph.loss.symbol.name, None)}
    outputs |= {(names.gradient(name), None) for name in graph.params}
    return Program(derivation, tuple(stmts), frozenset(outputs))
