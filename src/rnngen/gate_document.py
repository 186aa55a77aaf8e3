"""The section of a gated cell's document that teaches the gates: the context of its part of
``network.tex.jinja``.

For the first chain of the network (the others are alike), in the document's notation: each gate's
local Jacobian (a diagonal matrix: an activation acts entry by entry), the Jacobians of the step's
products, and the Jacobian of the carried state by the one before it split into its paths. The
LSTM's memory cell has two paths into ``c_{t-1}``: directly, through the forget gate
(``diag(f_t)``), and through ``h_{t-1}`` and the gates that read it; the GRU's state has the
update gate's ``diag(z_t)`` beside the paths through the candidate and the update gate. The
document's text says why the direct path eases vanishing gradients, and how the GRU's two forms
differ. Jacobians are written in column math in either notation (rows: the entries of the value,
columns: those of what it is differentiated by), as the one-layer document writes them.

A masked network's step keeps a state over a padded step, so its states are not these functions
of the previous ones on every step: its document has the local Jacobians of the new values only.
"""

from __future__ import annotations

from sympy import HadamardProduct, MatAdd, MatrixSymbol

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.cells import GATE, GATE_NAMES, gate_pre, gate_value
from rnngen.document import Notation, aligned
from rnngen.families import ParamName, Run, Step, holds_slopes
from rnngen.printing.math import latex
from rnngen.program import relative, step_template
from rnngen.unroll import candidate


class _Step:
    """The symbols of the first chain's step at a generic t, in the document's notation."""

    def __init__(self, n: Notation, derivation):
        self.n = n
        self.net = derivation.graph.network
        self.chain = self.net.chains[0]
        self.masked = derivation.spec.masked
        self.hidden = derivation.spec.hidden_key
        self.adjoints = derivation.adjoints

    def sym(self, base: str, k: int = 0):
        """The value ``base`` of the chain at step t + k (a new state before the mask in a masked network)."""
        return relative(self.chain.family(base).key, k, self.chain.size)

    def new(self, state: str):
        """The base of the step's new value of a state (``cellbar`` in a masked network, else ``cell``)."""
        return candidate(state) if self.masked else state

    def tex(self, expr) -> str:
        return self.n.latex(expr)

    def s(self, base: str, k: int = 0) -> str:
        return self.tex(self.sym(base, k))

    def d(self, num: str, den: str) -> str:
        """``d num / d den`` of two values' LaTeX."""
        return self.n.partial(num, den)

    def diag(self, expr) -> str:
        return rf"\operatorname{{diag}}({self.tex(expr)})"

    def weight(self, role: str) -> str:
        """A weight as the Jacobian of a pre-activation by what it multiplies: column math (``{W_f}^T`` in rows)."""
        return latex(self.chain.params[role].math())

    def local(self, gate: str) -> str:
        """``d g_t / d {z_g}_t = diag(act'(z))`` of the gate ``gate``, the derivative written as the module has it."""
        act = self.hidden if gate in "gn" else GATE
        value, pre = self.sym(gate_value(gate)), self.sym(gate_pre(gate))
        return aligned(
            f"{self.d(self.tex(value), self.tex(pre))} = {self.diag(elementwise(act).derivative(pre, value))}"
        )

    def through(self, num: str, gate: str) -> str:
        """``d num / d g_t  d g_t / d {z_g}_t  W_g``: a path from ``num`` through the gate into ``h_{t-1}``."""
        g = self.s(gate_value(gate))
        return f"{self.d(num, g)} {self.d(g, self.s('z' + gate))} {self.weight('recurrent_' + gate)}"


def _lstm(st: _Step) -> dict:
    c, c_prev, h_prev = st.s(st.new("cell")), st.s("cell", -1), st.s("h", -1)
    h = st.s(st.new("h"))
    phi_prime = elementwise(st.hidden).derivative(st.sym(st.new("cell")), st.sym("cact"))
    products = [
        aligned(f"{st.d(c, st.s('gf'))} = {st.diag(st.sym('cell', -1))}"),
        aligned(f"{st.d(c, st.s('gi'))} = {st.diag(st.sym('gg'))}"),
        aligned(f"{st.d(c, st.s('gg'))} = {st.diag(st.sym('gi'))}"),
        aligned(f"{st.d(h, st.s('go'))} = {st.diag(st.sym('cact'))}"),
        aligned(f"{st.d(h, c)} = {st.diag(A.had(st.sym('go'), phi_prime))}"),
    ]
    paths = []
    if not st.masked:
        paths = [
            aligned(f"{st.d(c, h_prev)} = " + " + ".join(st.through(c, g) for g in "fig")),
            aligned(f"{st.d(c, c_prev)} = {st.diag(st.sym('gf'))} + {st.d(c, h_prev)} {st.d(h_prev, c_prev)}"),
        ]
    delta = lambda base, k: st.n.step(st.chain.family(base, "adjoint").key, f"t{k:+d}" if k else "t")  # noqa: E731
    return dict(
        locals=[st.local(g) for g in st.net.cell.gates],
        products=products,
        paths=paths,
        c=c,
        c_prev=c_prev,
        h_prev=h_prev,
        f=st.s("gf"),
        f_next=st.s("gf", 1),
        direct=st.diag(st.sym("gf")),
        direct_delta=rf"{delta('cell', 1)} \odot {st.s('gf', 1)}",
        dc=delta("cell", 0),
        dh=delta("h", 0),
        # the forget gates the direct path multiplies a delta by, from step t back to step k
        forget_gates=rf"{st.s('gf')} \odot {st.s('gf', -1)} \odot \dots \odot "
        + st.n.step(st.chain.family("gf").key, "k+1"),
        df=delta("gf", 0),
    )


def _gru(st: _Step, after: bool) -> dict:
    h, h_prev, n_t, z_t, r_t = st.s(st.new("h")), st.s("h", -1), st.s("gn"), st.s("gz"), st.s("gr")
    zn = st.s("zn")
    products = [
        aligned(f"{st.d(h, n_t)} = {st.diag(A.sub(A.ones(*st.sym('gz').shape), st.sym('gz')))}"),
        aligned(f"{st.d(h, z_t)} = {st.diag(A.sub(st.sym('h', -1), st.sym('gn')))}"),
    ]
    reset = f"{st.d(r_t, st.s('zr'))} {st.weight('recurrent_r')}"
    W_n = st.weight("recurrent_n")
    if after:
        into_n = rf"{st.d(n_t, zn)} \left({st.diag(st.sym('gr'))} {W_n} + {st.diag(st.sym('zhn'))} {reset}\right)"
    else:
        into_n = rf"{st.d(n_t, zn)} {W_n} \left({st.diag(st.sym('gr'))} + {st.diag(st.sym('h', -1))} {reset}\right)"
    paths = []
    if not st.masked:
        paths = [
            aligned(f"{st.d(n_t, h_prev)} = {into_n}"),
            aligned(
                f"{st.d(h, h_prev)} = {st.diag(st.sym('gz'))} + {st.d(h, n_t)} {st.d(n_t, h_prev)} + "
                f"{st.through(h, 'z')}"
            ),
        ]
    W = st.chain.params["recurrent_n"]
    product = A.mul(W.math(), st.sym("h", -1))
    tag = (st.chain.tag_layer, st.chain.direction)
    b_hn = ParamName("b_hn", *tag).latex()
    delta = lambda base: st.n.step(st.chain.family(base, "adjoint").key, "t")  # noqa: E731
    # the reset gate's delta, as the derivation has it, and as the other form would have it
    dr_key = st.chain.family("gr", "adjoint").key
    dzn = relative(st.chain.family("zn", "adjoint").key, 0, st.chain.size)
    before_form = A.had(A.mul(A.transpose(W.math()), dzn), st.sym("h", -1))
    nodes = [v for v in st.adjoints if v.family == dr_key]  # none where truncation splits it by ages
    if nodes:
        node = nodes[len(nodes) // 2]  # a step away from both ends
        dr_here = step_template(node.expr, node.t)
    else:
        dr_here = A.had(dzn, st.sym("zhn")) if after else before_form
    dr_other = before_form if after else rf"{st.tex(dzn)} \odot \left({st.tex(product)} + {b_hn}\right)"
    return dict(
        locals=[st.local(g) for g in st.net.cell.gates],
        products=products,
        paths=paths,
        h=h,
        h_prev=h_prev,
        z=z_t,
        z_next=st.s("gz", 1),
        direct=st.diag(st.sym("gz")),
        direct_delta=rf"{st.n.step(st.chain.family('h', 'adjoint').key, 't+1')} \odot {st.s('gz', 1)}",
        # the reset gate after the product (and its bias) and before it, on the state
        reset_after=rf"{r_t} \odot \left({st.tex(product)} + {b_hn}\right)",
        reset_before=st.tex(A.mul(W.math(), A.had(st.sym("gr"), st.sym("h", -1)))),
        W_n=st.tex(W.symbol()),
        r=r_t,
        W_n_key="delta-" + W.name,
        dzn=delta("zn"),
        dzhn=delta("zhn") if after else "",
        r_h=st.tex(A.had(st.sym("gr"), st.sym("h", -1))),
        b_hn=b_hn,
        dr=delta("gr"),
        dr_here=st.tex(dr_here),
        dr_other=dr_other if isinstance(dr_other, str) else st.tex(dr_other),
        reset_params=", ".join(
            f"${st.tex(st.chain.params[role].symbol())}$"
            for role in ("input_r", "recurrent_r", "hidden_bias_r")
            if role in st.chain.params
        ),
    )


def _plain(st: _Step) -> dict:
    """The plain RNN the gates are compared with, with the cell's hidden activation: its step, ``D_t``'s
    entries and the activation's largest slope ``gamma`` (column math, as the section's Jacobians)."""
    rule = elementwise(st.hidden)
    x, h, h_prev = st.n.step("x", "t"), st.n.step("h", "t"), st.n.step("h", "t-1")
    pre = f"U {x} + W {h_prev} + b"
    slope = rule.derivative(MatrixSymbol(rf"\left({pre}\right)", st.chain.size, 1), relative("h", 0, st.chain.size))
    gamma = f"{rule.gamma:g}" if rule.gamma is not None and not rule.gamma_estimated else None
    return dict(
        step=f"{h} = {rule.latex.format(pre)}",
        slope=rf"\operatorname{{diag}}\bigl({st.tex(slope)}\bigr)",
        sup=rf"\sup_x |{rule.latex.format('x')}'|".replace("(x)'", "'(x)"),
        gamma=gamma,
    )


def _factor_of(stmt):
    """``(slopes, delta)`` where a delta's formula takes the entrywise factor of a primed family: the step of
    the primed symbol and the delta it multiplies, in a term ``delta ⊙ slopes`` of ``stmt``; None elsewhere."""
    terms = stmt.expr.args if isinstance(stmt.expr, MatAdd) else (stmt.expr,)
    for term in terms:
        if isinstance(term, HadamardProduct) and len(term.args) == 2:
            slopes = [a for a in term.args if isinstance(a, Step) and holds_slopes(a)]
            deltas = [a for a in term.args if isinstance(a, Step) and a.family.is_adjoint]
            if slopes and deltas:
                return slopes[0], deltas[0]
    return None


def appendix_terms(n: Notation, formulas: list) -> list:
    """Sentences that name what the appendix's formulas write and the legend does not: the steps of a value
    side by side (``I_{1:5}``, the input gates, which a reader would take for an identity matrix) and of a delta
    (``\\Delta``), each primed symbol, said as the diagonal of the Jacobian it holds (``\\sigma'_o``: of ``h_t`` by
    ``{a_o}_t``), as the Elman documents say their ``f'_t`` is ``D_t``'s, and the tilde of what is computed for
    all steps at once."""
    runs: dict = {}  # family -> (lo, hi), in the order the formulas write them
    primed: dict = {}  # primed family -> (the value its delta comes from, the value it reaches)
    tilde: dict = {}  # a part computed for all steps at once: family -> its first symbol
    deltas: dict = {}
    for f in formulas:
        for st in f.stmts:
            for sym in (st.target, *A.symbols_in(st.expr)):
                if not isinstance(sym, (Run, Step)):
                    continue
                fam = sym.family
                if fam.kind in ("pre", "pre_adjoint"):
                    tilde.setdefault(fam, sym)
                elif isinstance(sym, Run) and fam.is_adjoint:
                    deltas.setdefault(fam, (sym.lo, sym.hi))
                elif isinstance(sym, Run) and fam.base != "x" and not holds_slopes(sym):  # the legend has X
                    runs.setdefault(fam, (sym.lo, sym.hi))
            found = _factor_of(st) if isinstance(st.target, Step) else None
            if found and found[0].family not in primed:
                primed[found[0].family] = (found[1].family.value, st.target.family.value)

    def held(fam, lo, hi) -> str:
        return f"${n.printer.step(fam.key, lo, hi)}$ holds ${n.step(fam.key, lo)}, \\dots, {n.step(fam.key, hi)}$"

    side = "one above the other, a row per step" if n.row else "side by side, a column per step"
    sentences = []
    if runs:
        first = next((fam for fam in runs if fam.base == "gi"), next(iter(runs)))  # I first: it is no identity
        delta = next(iter(deltas), None)
        others = [n.printer.step(fam.key, *runs[fam]) for fam in runs if fam != first]
        note = " (the input gates, not an identity matrix)" if first.base == "gi" else ""
        sentences.append(
            f"A capital letter with a range of steps below holds its small letter's values at those steps {side}: "
            f"{held(first, *runs[first])}{note}"
            + (", and so do $" + "$, $".join(others) + "$" if others else "")
            + (f"; a capital delta holds the deltas alike, {held(delta, *deltas[delta])}" if delta else "")
            + "."
        )
    if primed:
        chain = next(iter(primed)).tag_latex  # one chain's, the others' alike with their tags
        each = [
            f"${n.step(fam.key, 't')}$, the diagonal of "
            f"$\\partial {n.step(num.key, 't')} / \\partial {n.step(den.key, 't')}$"
            for fam, (num, den) in primed.items()
            if fam.tag_latex == chain
        ]
        several = " (each chain's with its tag)" if len(each) < len(primed) else ""
        sentences.append(
            "A primed symbol holds the entrywise factor by which a delta reaches a value of the step: the "
            "activation's slope times the other entrywise factors of that path, so that the sweep multiplies once "
            "per step (its capital, the steps "
            + ("stacked" if n.row else "side by side")
            + f"){several}: "
            + "; ".join(each)
            + "."
        )
    if tilde:
        sentences.append(
            "A tilde marks the part of a value or a delta that does not go through the previous step, computed "
            "for all steps at once before the steps run ("
            + ", ".join(f"${n.latex(sym)}$" for sym in list(tilde.values())[:2])
            + ")."
        )
    return sentences


def gate_context(derivation, where: str, formulas: list = ()) -> dict | None:
    """What ``network.tex.jinja`` says of a gated cell's gates, for its first chain (``where``: which it is,
    "" in a network of one chain), and the sentences that name the symbols of the appendix's ``formulas``;
    None for an Elman cell."""
    net = derivation.graph.network
    if not net.cell.gated:
        return None
    st = _Step(Notation(derivation.spec), derivation)
    lstm = "cell" in net.cell.states
    context = _lstm(st) if lstm else _gru(st, after=net.cell.name == "gru")
    names = [GATE_NAMES[k] for k in net.cell.gates]
    return dict(
        **context,
        lstm=lstm,
        after=net.cell.name == "gru",
        where=where if len(net.chains) > 1 else "",
        masked=st.masked,
        D=st.n.D("t"),  # an Elman cell's hidden Jacobian, as its document writes it, for the comparison
        plain=_plain(st),
        gates=", ".join(names[:-1]) + " and " + names[-1],
        appendix=appendix_terms(st.n, list(formulas)),
    )
