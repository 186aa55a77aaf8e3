"""LaTeX and plain-text printers for the derivation's matrix expressions.

One printer, two styles: the LaTeX the document shows and the plain text the
command line prints share every rule (which ``1`` factors are dropped, how a
delta or a stacked matrix is named), so the two never disagree. The
exposition is for one sequence (B = 1): broadcasting a bias over the batch
(``b 1^T``) and summing over it (``d 1``) are not shown, except in
time-stacked formulas, where the ``1`` sums over the steps and is the point.

Like the NumPy printer it dispatches itself on ``(text, precedence)`` pairs,
so parentheses appear exactly where the math needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.printing.printer import Printer

from rnngen import algebra as A
from rnngen.activations import ELEMENTWISE
from rnngen.printing import PrintError
from rnngen.program import parse_relative, parse_stacked
from rnngen.unroll import FAMILIES, parse_step

ADD, MUL, ATOM = 1, 2, 3


@dataclass(frozen=True)
class Style:
    """The spelling of each construct."""

    step: str  # attribute of Family for one step
    stacked: str  # attribute of Family for stacked steps
    transpose: str
    hadamard: str
    divide: str
    ones: str
    ones_row: str
    softmax: str
    log_softmax: str
    gradient: str
    params: dict
    times: str


LATEX = Style(
    step="latex",
    stacked="stacked_latex",
    transpose="^{{\\top}}",
    hadamard=" \\odot ",
    divide=" \\oslash ",
    ones="\\mathbf{1}",
    ones_row="\\mathbf{1}^{\\top}",
    softmax="\\operatorname{{softmax}}({})",
    log_softmax="\\log\\operatorname{{softmax}}({})",
    gradient="\\frac{{\\partial E}}{{\\partial {}}}",
    params={"h0": "h_{0}"},
    times=" ",
)
TEXT = Style(
    step="text",
    stacked="stacked_text",
    transpose="ᵀ",
    hadamard=" ∘ ",
    divide=" ⊘ ",
    ones="1",
    ones_row="1ᵀ",
    softmax="softmax({})",
    log_softmax="log_softmax({})",
    gradient="dE/d{}",
    params={"h0": "h_0"},
    times=" ",
)


def _offset(k: int) -> str:
    return "t" if k == 0 else f"t{k:+d}"


class MathPrinter(Printer):
    """Prints matrix expressions for people, in LaTeX (default) or plain text."""

    printmethod = "_rnngen_math"

    def __init__(self, style: Style = LATEX):
        super().__init__()
        self.style = style

    def emptyPrinter(self, expr):
        raise PrintError(f"no {self.style.step} rule for {type(expr).__name__}: {expr}")

    def doprint(self, expr) -> str:
        self._stacked_context = any(parse_stacked(s.name) for s in A.symbols_in(expr))
        return self._p(expr)[0]

    def _elementwise(self, fn, arg):
        if self.style is LATEX:
            return ELEMENTWISE[fn].latex.format(arg)
        return f"{fn}({arg})"

    def _p(self, e):
        st = self.style
        if isinstance(e, MatrixSymbol):
            return self._symbol(e), ATOM
        if isinstance(e, Transpose):
            inner = self._p(e.arg)
            return f"{self._wrap(inner, ATOM)}{st.transpose.format()}", ATOM
        if isinstance(e, MatAdd):
            return self._add(e.args)
        if isinstance(e, MatMul):
            return self._mul(e)
        if isinstance(e, HadamardProduct):
            numer = [f for f in e.args if not (isinstance(f, HadamardPower) and f.exp == -1)]
            denom = [f.base for f in e.args if f not in numer]
            code = st.hadamard.join(self._wrap(self._p(f), ATOM) for f in numer)
            for d in denom:
                code += st.divide + self._wrap(self._p(d), ATOM)
            return code, MUL
        if isinstance(e, HadamardPower) and e.exp == 2:
            base = self._wrap(self._p(e.base), ATOM)
            return f"{base}{st.hadamard}{base}", MUL
        if isinstance(e, HadamardPower) and e.exp == -1:
            return f"{st.ones}{st.divide}{self._wrap(self._p(e.base), ATOM)}", MUL
        if isinstance(e, OneMatrix):
            rows, cols = e.shape
            if rows == 1:
                return st.ones_row, ATOM
            if cols == 1 or cols == A.B:
                return st.ones, ATOM
            return st.ones + st.ones_row, ATOM
        if isinstance(e, A.Elementwise):
            return self._elementwise(e.fn, self._p(e.arg)[0]), ATOM
        if isinstance(e, A.LogSoftmax):
            return st.log_softmax.format(self._p(e.arg)[0]), ATOM
        if isinstance(e, A.Softmax):
            return st.softmax.format(self._p(e.arg)[0]), ATOM
        return self.emptyPrinter(e)

    def _wrap(self, code_prec, at_least):
        code, prec = code_prec
        if prec >= at_least:
            return code
        return f"\\left({code}\\right)" if self.style is LATEX else f"({code})"

    def _symbol(self, sym) -> str:
        st = self.style
        step, run = parse_step(sym.name), parse_stacked(sym.name)
        if step:
            return getattr(FAMILIES[step[0]], st.step).format(t=step[1])
        if run:
            fam, lo, hi = run
            return getattr(FAMILIES[fam], st.stacked).format(lo=lo, hi=hi)
        rel = parse_relative(sym.name)
        if rel:  # a step relative to t, from a per-step form
            fam, k = rel
            sub = _offset(k)
            if st is TEXT and k != 0:
                sub = "{" + sub + "}"  # h_{t-1}, not h_t-1
            return getattr(FAMILIES[fam], st.step).format(t=sub)
        name = sym.name
        if name.startswith("d") and name[1:] in ("U", "W", "V", "b", "c", "h0"):
            inner = st.params.get(name[1:], name[1:])
            return st.gradient.format(inner)
        return st.params.get(name, name)

    def _add(self, terms):
        parts = []
        for i, term in enumerate(terms):
            coeff, body = A.split_coeff(term)
            body = A.scale(abs(coeff), body)
            code = self._wrap(self._p(body), MUL if coeff < 0 else ADD)
            if i == 0:
                parts.append(f"-{code}" if coeff < 0 else code)
            else:
                parts.append(f" - {code}" if coeff < 0 else f" + {code}")
        return "".join(parts), ADD

    def _mul(self, e):
        coeff, factors = e.as_coeff_matrices()
        shown = [f for f in factors if not (isinstance(f, OneMatrix) and A.B in f.shape and not self._stacked_context)]
        if not shown:
            shown = factors
        code = self.style.times.join(self._wrap(self._p(f), MUL + 1 if len(shown) > 1 else ADD) for f in shown)
        if coeff == -1:
            return f"-{code}", MUL
        if coeff != 1:
            return f"{coeff}{self.style.times}{code}", MUL
        return code, MUL if len(shown) > 1 else ATOM


def latex(expr) -> str:
    return MathPrinter(LATEX).doprint(expr)


def text(expr) -> str:
    return MathPrinter(TEXT).doprint(expr)
