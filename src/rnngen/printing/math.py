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

import re
from dataclasses import dataclass

from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix
from sympy.printing.printer import Printer

from rnngen import algebra as A
from rnngen.activations import columnwise, elementwise
from rnngen.families import (
    DEFAULT_LEXICON,
    Lexicon,
    ParamName,
    age_latex,
    family,
    relative_of,
    run_of,
    spelling_of,
    step_of,
    tag_latex,
)
from rnngen.printing import PrintError
from rnngen.program import Gradient

ADD, MUL, ATOM = 1, 2, 3
#: The loss's symbol in the graph (``unroll``), which the LaTeX writes with the lexicon's letter.
LOSS = "E"


#: A math accent at the start of a symbol's spelling (``\hat{y}``, ``\check{h}``).
_ACCENT = re.compile(r"\\(?:wide)?(?:hat|tilde|bar|check|breve|acute|grave|ddot|dot|vec|mathring)\{")


@dataclass(frozen=True)
class Style:
    """The spelling of each construct."""

    name: str  # what the style is called, for error messages
    transpose: str
    hadamard: str
    divide: str
    ones: str
    ones_row: str
    softmax: str
    log_softmax: str
    gradient: str
    times: str


LATEX = Style(
    name="LaTeX",
    transpose="^{{\\top}}",
    hadamard=" \\odot ",
    divide=" \\oslash ",
    ones="\\mathbf{1}",
    ones_row="\\mathbf{1}^{\\top}",
    softmax="\\operatorname{{softmax}}({})",
    log_softmax="\\log\\operatorname{{softmax}}({})",
    gradient="\\frac{{\\partial {loss}}}{{\\partial {}}}",
    times=" ",
)
TEXT = Style(
    name="text",
    transpose="ᵀ",
    hadamard=" ∘ ",
    divide=" ⊘ ",
    ones="1",
    ones_row="1ᵀ",
    softmax="softmax({})",
    log_softmax="log_softmax({})",
    gradient="dE/d{}",
    times=" ",
)


def _offset(k: int) -> str:
    return "t" if k == 0 else f"t{k:+d}"


def param_latex(name: str, row: bool = False) -> str:
    """LaTeX of a parameter known by its code name in a network of one layer: ``w_i`` -> ``w_{i}``,
    ``h0`` -> ``h_{0}`` (``h^{0}`` in row notation). A network's own symbols carry their spelling."""
    return MathPrinter(LATEX, row).written(ParamName.plain(name))


def is_vector(expr) -> bool:
    """One column per sequence, or one column: what row notation writes as a row."""
    return expr.shape[1] == A.B or expr.shape[1] == 1


class MathPrinter(Printer):
    """Prints matrix expressions for people, in LaTeX (default) or plain text.

    In row notation (``row=True``) every vector is written as a row: a
    vector-shaped expression ``e`` of the column math is printed as ``e^T``
    (``W^T x_t`` as ``x^t W``), and a vector symbol standing alone in a
    matrix-shaped expression as the transpose of its row (``X^T Delta^Z``).
    """

    printmethod = "_rnngen_math"

    def __init__(
        self,
        style: Style = LATEX,
        row: bool = False,
        spelled: dict | None = None,
        gated: bool = False,
        lexicon: Lexicon = DEFAULT_LEXICON,
    ):
        super().__init__()
        self.style = style
        self.row = row
        self.lexicon = lexicon  # how the LaTeX spells each symbol (a seed's own letters); text keeps rnngen's
        self.gated = gated  # a gated cell's network: its gates' letters come first (families.GATED_LETTERS)
        self.spelled = spelled or {}  # symbol -> its text, printed as it is (a derivative for a delta)

    def emptyPrinter(self, expr):
        raise PrintError(f"no {self.style.name} rule for {type(expr).__name__}: {expr}")

    def doprint(self, expr) -> str:
        self._stacked_context = any(run_of(s) for s in A.symbols_in(expr))
        if self.row and is_vector(expr):
            return self._r(expr)[0]
        return self._p(expr)[0]

    def _elementwise(self, fn, arg_prec):
        rule = elementwise(fn)
        form = rule.latex if self.style is LATEX else rule.text
        if self.style is LATEX and self.lexicon.function(fn):  # the seed's own name for it (seed 003's g)
            form = self.lexicon.function(fn)
        # A function applied by juxtaposition (\log x) takes one atom: \log (1 - y), not \log 1 - y.
        by_juxtaposition = re.search(r"\\[A-Za-z]+ \{\}", form)
        return form.format(self._wrap(arg_prec, ATOM) if by_juxtaposition else arg_prec[0])

    def _transposed(self, code_prec):
        code = self._wrap(code_prec, ATOM)
        if self.style is LATEX and "^" in code:
            # x^{t} transposed is {x^{t}}^{\top}, not a double superscript; after an accent
            # (\hat{y}^{t}, \check{h}^{t}) amsmath unwraps a one-atom group, and an empty group {} prevents that.
            code = "{" + code + ("{}" if _ACCENT.match(code) else "") + "}"
        return f"{code}{self.style.transpose.format()}", ATOM

    def _p(self, e):
        if self.row:
            if isinstance(e, MatrixSymbol):
                return self._transposed((self._symbol(e), ATOM)) if is_vector(e) else (self._symbol(e), ATOM)
            if isinstance(e, Transpose):
                return self._r(e.arg)
            if is_vector(e) and not isinstance(e, OneMatrix):
                return self._transposed(self._r(e))
        if isinstance(e, MatrixSymbol):
            return self._symbol(e), ATOM
        if isinstance(e, Transpose):
            return self._transposed(self._p(e.arg))
        return self._structure(e, self._p)

    def _r(self, e):
        """``e^T`` in row notation: products reversed, vectors as rows, matrices transposed."""
        if isinstance(e, MatrixSymbol):
            return (self._symbol(e), ATOM) if is_vector(e) else self._transposed((self._symbol(e), ATOM))
        if isinstance(e, Transpose):
            return self._p(e.arg)
        if isinstance(e, OneMatrix):
            return self._p(A.ones(e.shape[1], e.shape[0]))
        if isinstance(e, MatMul):
            coeff, factors = e.as_coeff_matrices()
            return self._mul(coeff, list(reversed(factors)), self._r)
        if isinstance(e, A.Concat):  # transposed, blocks one above the other stand side by side
            return self._structure(A.Concat(1 - e.axis, *e.parts), self._r)
        return self._structure(e, self._r)

    def _structure(self, e, sub):
        """Operators whose layout does not depend on the notation; ``sub`` prints the operands."""
        st = self.style
        if isinstance(e, MatAdd):
            return self._add(e.args, sub)
        if isinstance(e, MatMul):
            coeff, factors = e.as_coeff_matrices()
            return self._mul(coeff, list(factors), sub)
        if isinstance(e, HadamardProduct):
            numer = [f for f in e.args if not (isinstance(f, HadamardPower) and f.exp == -1)]
            denom = [f.base for f in e.args if f not in numer]
            code = st.hadamard.join(self._wrap(sub(f), ATOM) for f in numer)
            for d in denom:
                code += st.divide + self._wrap(sub(d), ATOM)
            return code, MUL
        if isinstance(e, HadamardPower) and e.exp == 2:
            base = self._wrap(sub(e.base), ATOM)
            return f"{base}{st.hadamard}{base}", MUL
        if isinstance(e, HadamardPower) and e.exp == -1:
            return f"{st.ones}{st.divide}{self._wrap(sub(e.base), ATOM)}", MUL
        if isinstance(e, ZeroMatrix):  # a truncated gradient no kept path reaches
            return "0", ATOM
        if isinstance(e, OneMatrix):
            rows, cols = e.shape
            if rows == 1 or (rows == A.B and cols not in (1, A.B)):  # a row, or one per sequence (row notation)
                return st.ones_row, ATOM
            if cols == 1 or cols == A.B:
                return st.ones, ATOM
            return st.ones + st.ones_row, ATOM
        if isinstance(e, A.Elementwise):
            return self._elementwise(e.fn, sub(e.arg)), ATOM
        if isinstance(e, A.Concat):  # blocks side by side (or one above the other)
            parts = [sub(p)[0] for p in e.parts]
            if self.style is LATEX:
                sep = " & " if e.axis == 1 else r" \\ "
                return r"\begin{bmatrix} " + sep.join(parts) + r" \end{bmatrix}", ATOM
            return "[" + (", " if e.axis == 1 else "; ").join(parts) + "]", ATOM
        if isinstance(e, A.Columnwise):
            rule = columnwise(e.fn)
            form = rule.latex if self.style is LATEX else rule.text
            return form.format(*[sub(a)[0] for a in e.operands]), ATOM
        if isinstance(e, A.LogSoftmax):
            return st.log_softmax.format(sub(e.arg)[0]), ATOM
        if isinstance(e, A.Softmax):
            return st.softmax.format(sub(e.arg)[0]), ATOM
        return self.emptyPrinter(e)

    def _wrap(self, code_prec, at_least):
        code, prec = code_prec
        if prec >= at_least:
            return code
        return f"\\left({code}\\right)" if self.style is LATEX else f"({code})"

    def step(self, key: str, t, stacked_to=None, age=None) -> str:
        """One step (``t`` a number or a letter such as ``"t-1"``), or the steps ``t..stacked_to``; ``age``
        (a number or a letter, LaTeX only) in place of an aged family's own."""
        fam = family(key)
        if self.style is TEXT:
            if stacked_to is not None:
                return f"{fam.text_spelling(True, self.gated)}[{t}..{stacked_to}]"
            t, letter = str(t), fam.text_spelling(False, self.gated)
            return f"{letter}_{{{t}}}" if len(t) > 1 and not t.isdigit() else f"{letter}_{t}"
        index = f"{t}:{stacked_to}" if stacked_to is not None else str(t)
        lex = self.lexicon
        tag = fam.tag_latex if age is None else tag_latex(fam.layer, fam.direction) + age_latex(age)
        tag = lex.tag(fam) + tag
        above = lex.superscript(self.row)
        own = {"adjoint": lex.adjoint, "pre_adjoint": lex.pre_adjoint}.get(fam.kind)
        if own and age is None and fam.age is None:  # a seed's own spelling of a gradient (seed 001's nabla)
            return own.format(self.step(fam.value.key, t, stacked_to))
        if not lex.indexed(fam):  # the one of its kind: a many-to-one seed's yhat, with no step
            letter = lex.latex_letter(fam.value if fam.delta else fam, False, self.gated)
            return f"{fam.delta}^{{{letter}{tag}}}" if fam.delta else f"{letter}^{{{tag}}}" if tag else letter
        if fam.delta:
            delta = fam.stacked_delta if stacked_to is not None else fam.delta
            letter = lex.latex_letter(fam.value, False, self.gated)
            if above:
                return f"{delta}^{{{letter}{tag},{index}}}"
            return f"{delta}^{{{letter}{tag}}}_{{{index}}}"
        letter = lex.latex_letter(fam, stacked_to is not None, self.gated)
        if above:
            return f"{letter}^{{{tag}{',' if tag else ''}{index}}}"
        return f"{letter}^{{{tag}}}_{{{index}}}" if tag else f"{letter}_{{{index}}}"

    def _symbol(self, sym) -> str:
        if sym in self.spelled:
            return self.spelled[sym]
        st = self.style
        step, run = step_of(sym), run_of(sym)
        if step:
            return self.step(*step)
        if run:
            fam, lo, hi = run
            return self.step(fam, lo, hi)
        rel = relative_of(sym)
        if rel:  # a step relative to t, from a per-step form
            fam, k = rel
            return self.step(fam, _offset(k))
        if isinstance(sym, Gradient):
            return st.gradient.format(self.written(sym.spelling), loss=self.lexicon.loss)
        if st is LATEX and sym.name == LOSS and sym.shape == (1, 1):
            return self.lexicon.loss
        return self.written(spelling_of(sym))

    def written(self, name: ParamName) -> str:
        """A parameter as mathematics writes it; an initial state as the first step of its chain's state."""
        if name.initial:
            return self.step(name.state.key, name.start)
        if self.style is TEXT:
            return name.text
        if self.gated:
            name = name.in_gated()
        return self.lexicon.param(name) or name.latex()

    def _add(self, terms, sub):
        parts = []
        for i, term in enumerate(terms):
            coeff, body = A.split_coeff(term)
            body = A.scale(abs(coeff), body)
            code = self._wrap(sub(body), MUL if coeff < 0 else ADD)
            if i == 0:
                parts.append(f"-{code}" if coeff < 0 else code)
            else:
                parts.append(f" - {code}" if coeff < 0 else f" + {code}")
        return "".join(parts), ADD

    def _between(self, factor, code: str) -> str:
        """What follows a factor in a product: a thin space in LaTeX after a symbol spelled in several words (seed
        001's gradient ``\\nabla_{z} \\mathcal{L}``), so that the next factor does not run into its last letter."""
        if self.style is LATEX and isinstance(factor, MatrixSymbol) and " " in code:
            return r"\, "
        return self.style.times

    def _mul(self, coeff, factors, sub):
        shown = [f for f in factors if not (isinstance(f, OneMatrix) and A.B in f.shape and not self._stacked_context)]
        if not shown:
            shown = factors
        # a factor beside another or a number is wrapped: 2 (a + b), not 2 a + b
        at_least = MUL + 1 if len(shown) > 1 or coeff != 1 else ADD
        codes = [self._wrap(sub(f), at_least) for f in shown]
        code = codes[0]
        for f, left, right in zip(shown, codes, codes[1:], strict=False):
            code += self._between(f, left) + right
        if coeff == -1:
            return f"-{code}", MUL
        if coeff != 1:
            return f"{_number(coeff, self.style)}{self.style.times}{code}", MUL
        return code, MUL if len(shown) > 1 else ATOM


def _number(coeff, style) -> str:
    if style is LATEX and coeff.is_Rational and coeff.q != 1:
        return rf"\tfrac{{{coeff.p}}}{{{coeff.q}}}"
    if coeff.is_Float:  # as the user wrote it (0.5), not SymPy's 15 digits (0.500000000000000)
        return repr(float(coeff))
    return str(coeff)


def latex(expr, row: bool = False, gated: bool = False, lexicon: Lexicon = DEFAULT_LEXICON) -> str:
    """LaTeX of ``expr`` in column or row notation, in a gated cell's network's letters if ``gated``, spelled
    by ``lexicon``."""
    return MathPrinter(LATEX, row, gated=gated, lexicon=lexicon).doprint(expr)


def text(expr, row: bool = False, gated: bool = False) -> str:
    """The same in plain text."""
    return MathPrinter(TEXT, row, gated=gated).doprint(expr)
