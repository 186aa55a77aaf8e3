"""The derivation document's context: every equation the LaTeX template lays out.

The document derives the gradients three ways, as the lectures do, and says
how each form leads to the next:

1. the sum over paths (every chain of Jacobians from a loss term to a use of
   the parameter, then the compact double sum);
2. the recursive form, forward in time (dh_t/dW = D_t [d+z_t/dW + W dh_{t-1}/dW],
   unrolled down to h_0);
3. the delta recursion, backward in time, which is what the code runs; its
   equations are the derivation's own adjoints, printed from the graph.

Then the vanishing/exploding-gradient bound, a summary of the final formulas
(restated under their numbers), and an appendix with the formulas the module
runs, which it cites by number; the handout (``--handout``) leaves the appendix
out. Everything is written in the spec's notation (column
or row vectors, the user's matrix names). The equations of form 3 and the
final formulas are printed from SymPy expressions; forms 1 and 2 are the
chain rule's structure, written in Jacobian fractions.
"""

from __future__ import annotations

import re
from dataclasses import replace

import sympy as sp
from sympy import MatAdd

from rnngen import algebra as A
from rnngen.activations import ELEMENTWISE, elementwise
from rnngen.backprop import Derivation, adjoint_symbol
from rnngen.cells import cell_of, gate_pre
from rnngen.families import AGE, ParamName, family, holds_slopes, step_name, step_of
from rnngen.presets import lexicon_of
from rnngen.printing.math import LATEX, MathPrinter, latex, text
from rnngen.program import gradient_symbol, relative, step_template
from rnngen.seed_notes import seed_notes
from rnngen.shapes import other_deltas, path_factor_shapes, shape_rows, side_by_side, three_index_sentence
from rnngen.spec import truncation_rule
from rnngen.texwidth import EM, width
from rnngen.unroll import n_h, n_y, parameters

#: Up to this T the document writes every path term and every level of the
#: unrolled recursion in full, like the slides; beyond it, the first and last
#: path terms with the middle ones as one sum over k, and two levels of the
#: recursion ending in dh_{T-2}/dp: exact (the tests evaluate them), and O(T) in size.
FULL_PATHS_UP_TO = 6


def direct_output(spec) -> bool:
    """True where the prediction is the output layer's linear value itself (an identity output layer): the
    documents then write it as the lectures do, ``yhat = V h_T``, with no pre-activation ``o`` beside it."""
    return spec.output_layer.name == "identity"


def as_written(derivation: Derivation) -> Derivation:
    """The derivation as the documents write it: an identity output's value is the prediction
    (``_prediction_as_value``), and a canonical pair's output delta is the prediction less the target
    (``_closed_output_delta``)."""
    derivation = _closed_output_delta(_prediction_as_value(derivation))
    return replace(derivation, adjoints=[replace(node, expr=factored(node.expr)) for node in derivation.adjoints])


def factored(expr):
    """``expr`` with the entrywise factors that terms of a sum share taken out, as a teacher writes a delta:
    ``-a ∘ n + a ∘ h`` -> ``a ∘ (h - n)``, ``a - a ∘ (1 m)`` -> ``a ∘ (1 - 1 m)`` (a term with no other
    factor leaves a one); the terms with a positive sign first inside, and through entrywise products and
    sums. The same values: every equation printed from it still holds."""
    if isinstance(expr, sp.HadamardProduct):
        return A.had(*[factored(f) for f in expr.args])
    if not isinstance(expr, MatAdd):
        return expr
    terms = []  # (coefficient, entrywise factors)
    for term in expr.args:
        coeff, body = A.split_coeff(term)
        terms.append((coeff, list(body.args) if isinstance(body, sp.HadamardProduct) else [body]))
    while True:
        counts: dict = {}
        for _, factors in terms:
            for f in dict.fromkeys(factors):
                counts[f] = counts.get(f, 0) + 1
        shared = max(counts, key=counts.get, default=None)  # the factor most terms share, the first one so
        if shared is None or counts[shared] < 2:
            break
        group = [(c, fs) for c, fs in terms if shared in fs]
        rest = []
        for c, fs in sorted(group, key=lambda term: bool(sp.sympify(term[0]).is_negative)):
            others = list(fs)
            others.remove(shared)
            rest.append(A.scale(c, A.had(*others) if others else A.ones(*shared.shape)))
        first = terms.index(group[0])
        terms = [t for t in terms if t not in group]
        terms.insert(first, (1, [shared, factored(A.add(*rest))]))
    return A.add(*[A.scale(c, A.had(*fs)) for c, fs in terms])


def _closed_output_delta(derivation: Derivation) -> Derivation:
    """The output delta as the local Jacobians derive it, where the output layer and the loss simplify to the
    prediction less the target (``FusedGradient.written``: softmax with cross-entropy, sigmoid with binary
    cross-entropy, identity with squared error): ``delta^o_t := yhat_t - y_t``, times a masked step's loss
    weight (``Graph.weighted``), as the module's lowering has it (``optimize.fuse_output_gradient``);
    ``delta^yhat_t``, which only it read, goes. Other pairs keep the chain rule's general form. The same
    values, so every equation still holds.
    """
    fused = derivation.spec.fused
    if fused is None or fused.written is None:
        return derivation
    graph = derivation.graph
    targets = {y.name: y for y in graph.inputs.get("y", ())}
    deltas = {node.symbol for node in derivation.adjoints}
    closed, gone = {}, set()
    for node in graph.nodes:
        o = getattr(node.expr, "arg", None)
        if o is None or not (node.family and family(node.family).base == "yhat" and adjoint_symbol(o) in deltas):
            continue  # no output pre-activation apart from the prediction (an identity output)
        closed[adjoint_symbol(o)] = graph.weighted(node.t, fused.written(node.symbol, targets[step_name("y", node.t)]))
        gone.add(adjoint_symbol(node.symbol))
    adjoints = [replace(node, expr=closed.get(node.symbol, node.expr)) for node in derivation.adjoints]
    read = set().union(*(A.symbols_in(node.expr) for node in adjoints if node.symbol not in gone))
    read |= set().union(*(A.symbols_in(expr) for expr in derivation.gradients.values()))
    if gone & read:  # the prediction's delta is read elsewhere too: it stays
        gone -= read
    return replace(derivation, adjoints=[node for node in adjoints if node.symbol not in gone])


def _prediction_as_value(derivation: Derivation) -> Derivation:
    """The derivation as the documents write it for an identity output layer.

    There the graph's ``o_t := V h_t`` and ``yhat_t := o_t`` are one value, written ``yhat_t := V h_t``, and
    the adjoint ``delta^o_t := delta^yhat_t`` goes; every other node, adjoint and gradient reads ``yhat_t``
    and ``delta^yhat_t`` where it read ``o_t`` and ``delta^o_t`` (``delta^h_T = V^T delta^yhat``). The same
    equations, so every one the document prints from it still holds; the module keeps its ``o``, and so do
    the formulas the code runs (the appendix).
    """
    if not direct_output(derivation.spec):
        return derivation
    graph = derivation.graph
    values, deltas = {}, {}  # o_t -> yhat_t, delta^o_t -> delta^yhat_t
    for node in graph.nodes:
        expr = node.expr
        if isinstance(expr, A.Elementwise) and elementwise(expr.fn).is_identity and node.family:
            if family(node.family).base == "yhat":
                values[expr.arg] = node.symbol
                deltas[adjoint_symbol(expr.arg)] = adjoint_symbol(node.symbol)
    same = {**values, **deltas}
    nodes = [  # o_t's definition is yhat_t's, and yhat_t := o_t goes
        replace(node, symbol=values[node.symbol], family=step_of(values[node.symbol])[0])
        if node.symbol in values
        else replace(node, expr=node.expr.xreplace(same))
        for node in graph.nodes
        if node.symbol not in values.values()
    ]
    adjoints = [
        replace(node, expr=node.expr.xreplace(same)) for node in derivation.adjoints if node.symbol not in deltas
    ]
    return replace(
        derivation,
        graph=replace(graph, nodes=nodes),
        adjoints=adjoints,
        gradients={name: expr.xreplace(same) for name, expr in derivation.gradients.items()},
        inputs=[expr.xreplace(same) for expr in derivation.inputs] if derivation.inputs else derivation.inputs,
    )


#: The families of the forward pass, in the order the network computes them.
def forward_families(graph) -> list:
    """The code names of the forward quantities, in the order the graph first computes them at a step
    (``z, h, o, yhat``; chain by chain for several layers or directions)."""
    keys = []
    for node in graph.nodes:
        if node.family and node.t is not None and 1 <= node.t <= graph.spec.T and node.family not in keys:
            keys.append(node.family)
    return keys


#: Parameters that the hidden state depends on (the others act on the output only).
HIDDEN_ROLES = ("recurrent", "input", "hidden_bias", "initial")
#: Parameters that every step uses, so that the loss reaches them along T paths per loss term.
WEIGHT_ROLES = ("recurrent", "input", "hidden_bias")
#: The order in which the document treats the parameters.
DOCUMENT_ORDER = ("output", "output_bias") + HIDDEN_ROLES


def aligned(equation: str) -> str:
    """``a = b`` -> ``a &= b``, for align environments."""
    return equation.replace(" = ", " &= ", 1)


#: The width of the documents' text (6.5in at 11pt), and the room a row keeps beside it for its equation
#: number ("(999)" and the half em amsmath keeps before it), in points.
LINE = 469.75
NUMBER = width("(999)") + 0.5 * EM
#: Where a row may end: before a sum's sign or a product's operator that stands between spaces, and
#: before the next relation of a formula that states two (``z_t = ..., \\qquad h_t = ...``).
_BREAK = r"(?<= )(?:[+-]|\\odot|\\oslash|\\cdot|\\times)(?= )|(?<=, )\\qquad(?= )"
#: What opens and closes a group: a brace, a ``\left``/``\right`` pair (a row can split neither), a
#: parenthesis or bracket, sized or not (a row can end inside one).
_GROUPS = re.compile(
    rf"(?P<left>\\left\s*(?:\\[A-Za-z]+|\\.|.))|(?P<right>\\right\s*(?:\\[A-Za-z]+|\\.|.))"
    rf"|(?P<open>\\[bB]igg?l\s*(?:\\[A-Za-z]+|\\.|.)|[(\[])|(?P<close>\\[bB]igg?r\s*(?:\\[A-Za-z]+|\\.|.)|[)\]])"
    rf"|\\[{{}}]|(?P<brace>\{{)|(?P<unbrace>\}})|(?P<op>{_BREAK})"
)


def _breaks(tex: str) -> dict:
    """Position -> level of every place where ``tex`` may go on in a next row: before the next relation
    (level -1), a sign of a sum (level 0) or an operator of a product (level 1), 2 more for each
    parenthesis it stands in (``\\tanh(a + b)``); never inside a brace or a ``\\left ... \\right`` pair."""
    breaks, stack = {}, []
    for m in _GROUPS.finditer(tex):
        kind = m.lastgroup
        if kind in ("left", "open", "brace"):
            stack.append(kind)
        elif kind in ("right", "close", "unbrace"):
            if stack:
                stack.pop()
        elif kind == "op" and all(g == "open" for g in stack):
            op = m.group(0)
            breaks[m.start()] = -1 if op == r"\qquad" else 2 * len(stack) + (op not in "+-")
    return breaks


def broken(lhs: str, rhs: str, note: str = "", column: float = 0.0) -> str:
    """``lhs &= rhs`` and ``note`` in rows no wider than the line beside the equation number.

    A row ends where the most of the right side fits, at the outermost place it can (``_breaks``): a
    sum is broken between its terms, a term too wide for a row between its factors, a factor too wide
    inside its parentheses. A next row starts where the right side does, a quad further, with the sign
    or the operator it continues with (``&\\qquad + ...``, ``&\\qquad \\odot ...``); the note (the
    steps) ends the last row.

    Args:
        lhs, rhs: the equation's sides, in LaTeX.
        note: what follows the right side (``, \\quad t = 1, \\dots, T``).
        column: the width of the widest left side of the align it stands in, where every right side starts.
    """
    room = LINE - NUMBER - max(width(lhs), column)
    if width("{}= " + rhs + note) <= room:
        return aligned(f"{lhs} = {rhs}") + note
    breaks = _breaks(rhs)
    ends = sorted(breaks) + [len(rhs)]
    rows, start = [], 0
    while start < len(rhs):
        lead = "{}= " if start == 0 else r"{}\qquad "
        fits = []
        for end in (e for e in ends if e > start):
            text = rhs[start:end].rstrip() + (note if end == len(rhs) else "")
            if width(lead + text) > room:
                break
            fits.append(end)
        if fits and fits[-1] == len(rhs):
            end = len(rhs)
        elif fits:  # the outermost place that fits, the latest of those
            end = min(fits, key=lambda e: (breaks[e], -e))
        else:  # not even the next piece fits: it stands alone
            end = next(e for e in ends if e > start)
        rows.append(rhs[start:end].rstrip())
        start = end
    lines = [aligned(f"{lhs} = {rows[0]}")] + [rf"&\qquad {row}" for row in rows[1:]]
    return " \\nonumber \\\\*\n".join(lines) + note  # \\*: no page break inside one equation


class Numbering:
    """Equation numbers handed out in document order; the template calls ``tag(key)``."""

    def __init__(self):
        self.numbers: dict = {}

    def tag(self, key: str) -> str:
        if key in self.numbers:
            raise ValueError(f"equation {key!r} is numbered twice")
        self.numbers[key] = len(self.numbers) + 1
        return rf"\tag{{{self.numbers[key]}}}"

    def again(self, key: str) -> str:
        """The number of an equation shown above, beside its restatement (the summary): ``\tag*{(24)}``,
        which looks like its tag but numbers nothing new (the restatement is that equation, checked there)."""
        return rf"\tag*{{({self.numbers[key]})}}"


class Notation:
    """The spellings of one spec's notation (column or row vectors, its matrix names)."""

    def __init__(self, spec):
        self.spec = spec
        self.row = spec.row
        self.gated = cell_of(spec).gated  # its gates keep their letters (families.GATED_LETTERS)
        self.lexicon = lexicon_of(spec)  # how the LaTeX spells each symbol: rnngen's own, or a seed's
        self.above = self.lexicon.superscript(self.row)  # the step above the letter (E^t) or below (E_t)
        #: The loss's letter (E, or a seed's L).
        self.E = self.lexicon.loss
        self.printer = MathPrinter(LATEX, self.row, gated=self.gated, lexicon=self.lexicon)
        #: The value the output weights make: the pre-activation ``o``, or the prediction itself (``as_written``).
        self.direct = direct_output(spec)
        self.output_value = "yhat" if self.direct else "o"
        self.names = {role: self.printer.written(ParamName.plain(name)) for role, name in spec.role_names.items()}
        _, weights = parameters(spec)
        # Jacobians are matrices of entries d a_i / d b_j in either notation: column math.
        # (the Elman cell's: a gated cell's weights are per gate, and its document writes no dh_t/dh_{t-1})
        self.recurrent_jacobian = self.latex(weights["recurrent"]) if "recurrent" in weights else None
        self.output_jacobian = self.latex(weights["output"])

    def latex(self, expr) -> str:
        return latex(expr, self.row, self.gated, self.lexicon)

    def text(self, expr) -> str:
        """The plain-text spelling of ``expr`` (the module's docstring and comments, the command line)."""
        return text(expr, self.row, self.gated)

    def _t(self, t):
        """The step as written: where steps stand above the letter the last step ``T`` is its number, since a
        superscript T (``E^T``, ``h^T``) reads as a transpose, which is how the row notation writes transposes."""
        return self.spec.T if self.above and t == "T" else t

    def step(self, family: str, t) -> str:
        """LaTeX of one step of a family, ``t`` a number or a letter."""
        return self.printer.step(family, self._t(t))

    def aged_step(self, family: str, age, t) -> str:
        """LaTeX of one step of an adjoint family at an age given as a number or a letter (``"a-1"``)."""
        return self.printer.step(family, t, age=age)

    def spelled(self, expr, symbol, text: str) -> str:
        """LaTeX of ``expr`` with ``text`` (LaTeX already) where the symbol ``symbol`` would be printed."""
        return MathPrinter(LATEX, self.row, {symbol: text}, self.gated, self.lexicon).doprint(expr)

    def ending(self, symbol, expr) -> tuple:
        """LaTeX of a delta recursion's equation ``symbol = expr`` at one step, ``(lhs, rhs)``: where it reads the
        last step, its steps from its own on (from T where it stands later, a backward chain's delta after the
        last step) are written from ``T`` (``delta^h_T``, ``delta^c_{T-1} = delta^c_T ∘ f_T``), as the text
        that speaks of T writes them; the other steps keep their numbers, and so does a notation with the
        step above the letter (``_t``: ``h^T`` reads as a transpose)."""
        T, t = self.spec.T, symbol.t
        steps = [sym for sym in A.symbols_in(expr) if step_of(sym)] + [symbol]
        if t < 1 or max(sym.t for sym in steps) < T:
            return self.latex(symbol), self.latex(expr)
        lo = min(t, T)
        spelled = {
            sym: self.step(sym.family.key, "T" if sym.t == T else f"T{sym.t - T:+d}") for sym in steps if sym.t >= lo
        }
        printer = MathPrinter(LATEX, self.row, spelled, self.gated, self.lexicon)
        return printer.doprint(symbol), printer.doprint(expr)

    def indexed(self, letter: str, t) -> str:
        """``E_t`` (column) or ``E^t`` (row notation)."""
        return f"{letter}^{{{self._t(t)}}}" if self.above else f"{letter}_{{{t}}}"

    def entry(self, letter: str, t, i: str = "i") -> str:
        """Entry i of a step's vector: ``y_{t,i}`` (column) or ``y^{t}_{i}`` (row notation)."""
        return f"{letter}^{{{self._t(t)}}}_{{{i}}}" if self.above else f"{letter}_{{{t},{i}}}"

    def entry_of(self, base: str, t, i: str = "i") -> str:
        """Entry i of a step of a base quantity, in the lexicon's letters (seed 001's ``h^{0,t}_{i}``)."""
        fam = family(base)
        tag = self.lexicon.tag(fam)
        letter = self.lexicon.latex_letter(fam)
        if not self.lexicon.indexed(fam):  # the one of its kind (seed 003's yhat): its entry i alone
            return f"{letter}^{{{tag}}}_{{{i}}}" if tag else f"{letter}_{{{i}}}"
        if tag and self.above:
            return f"{letter}^{{{tag},{t}}}_{{{i}}}"
        return self.entry(letter + (f"^{{{tag}}}" if tag else ""), t, i)

    def letter(self, base: str) -> str:
        """The LaTeX letter of a base quantity of a network of one layer (``\\hat{y}``, a seed's ``y``), with
        its fixed index if the lexicon gives one (seed 001's ``h^{2}``), for an entry such as ``\\hat{y}_i``."""
        fam = family(base)
        tag = self.lexicon.tag(fam)
        return self.lexicon.latex_letter(fam, False, self.gated) + (f"^{{{tag}}}" if tag else "")

    def entry_at(self, base: str, i: str) -> str:
        """Entry ``i`` of a base quantity at a generic step, where the step goes without saying: ``\\hat{y}_i``;
        a letter with a fixed index (seed 001's ``h^{2}``) writes the step too, ``h^{2,t}_{i}``, since
        ``h^{2}_i`` reads as a square."""
        if self.lexicon.tag(family(base)):
            return self.entry_of(base, "t", i)
        return f"{self.letter(base)}_{i}"

    def respell(self, entry: str) -> str:
        """An output layer's or a loss's entry formula (``activations.py`` writes it in rnngen's letters:
        ``\\hat{y}_i``, ``o_j``, ``y_j``) in the lexicon's letters."""
        bases = {r"\hat{y}": "yhat", "y": "y", "o": "o"}

        def one(m) -> str:
            base, i = bases[m.group(1)], m.group(2)
            return self.entry_at(base, i.strip("{}")) if i else self.letter(base)

        return re.sub(r"(\\hat\{y\}|(?<![\\A-Za-z])[yo](?=_))(?:_(\{[^{}]*\}|\w))?", one, entry)

    def loss(self, t) -> str:
        """The loss's term at step ``t`` in the lexicon's letter: ``E_t``, ``E^t``, seed 002's ``E_t``; the
        loss itself where the lexicon writes the last step's one term without its step (seed 003's ``L``)."""
        return self.E if not self.lexicon.indexed(family("yhat")) else self.indexed(self.E, t)

    def partial(self, num: str, den: str) -> str:
        space = "" if num.startswith("^") else " "  # \partial^{+} h_k
        return rf"\frac{{\partial{space}{num}}}{{\partial {den}}}"

    def D(self, t, tag: str = "") -> str:
        """``D_t = dh_t/dz_t``, the diagonal Jacobian of the hidden activation; ``tag``: a chain's, as its
        state carries it (``(2)``, ``(1\\mathrm{f})``): ``D^{(2)}_t``, ``D^{(2),t}`` in row notation."""
        if not tag:
            return self.indexed("D", t)
        return f"D^{{{tag},{self._t(t)}}}" if self.above else f"D^{{{tag}}}_{{{t}}}"


# --- form 1: the sum over paths -----------------------------------------------------


def _jacobian_chain(n: Notation, t: int, k, var: str) -> str:
    """``dE_t/dyhat_t dyhat_t/dh_t dh_t/dh_{t-1} ... d+h_k/dvar`` in fraction notation (``k`` may be a letter)."""
    h = lambda j: n.step("h", j)  # noqa: E731
    parts = [n.partial(n.loss(t), n.step("yhat", t)), n.partial(n.step("yhat", t), h(t))]
    if isinstance(k, str) or t - k > 3 and t > FULL_PATHS_UP_TO:
        first = f"{k}+1" if isinstance(k, str) else k + 1
        parts.append(rf"\Bigl(\prod_{{j={first}}}^{{{t}}} {n.partial(h('j'), h('j-1'))}\Bigr)")
    else:
        parts += [n.partial(h(j), h(j - 1)) for j in range(t, k, -1)]
    parts.append(n.partial("^{+} " + h(k), var))
    return " ".join(parts)


def path_terms(n: Notation, var: str) -> list:
    """The T path terms of dE_T/dvar, newest first; for large T the middle ones as one sum over k."""
    T = n.spec.T
    if T <= FULL_PATHS_UP_TO:
        return [_jacobian_chain(n, T, k, var) for k in range(T, 0, -1)]
    middle = rf"\sum_{{k=2}}^{{{T - 2}}} {_jacobian_chain(n, T, 'k', var)}"
    return [_jacobian_chain(n, T, T, var), _jacobian_chain(n, T, T - 1, var), middle, _jacobian_chain(n, T, 1, var)]


def path_cost(spec) -> tuple:
    """``(paths, products, order)`` of the sum over paths of one weight, computed path by path.

    The path from the loss term at step t to the weight's use at step k is a product of t - k + 3
    Jacobians (the loss's, the output layer's, t - k state-to-state ones and the immediate one), so
    t - k + 2 matrix products; summed over 1 <= k <= t <= T that is T(T+1)(T+5)/6, O(T^3), and over
    k alone for a loss at the last step only, T(T+3)/2, O(T^2).
    """
    T = spec.T
    if spec.mapping == "many-to-one":
        return T, T * (T + 3) // 2, 2
    return T * (T + 1) // 2, T * (T + 1) * (T + 5) // 6, 3


def _loss_terms(n: Notation) -> tuple:
    """``(sum, t)``: the sum over loss terms and the step letter (many-to-one: no sum, t = T)."""
    if n.spec.mapping == "many-to-one":
        return "", "T"
    return r"\sum_{t=1}^{T} ", "t"


def _to_output(n: Notation, t) -> str:
    """The chain from the loss (term) to the value the output weights make (the prediction, when that is it)."""
    to_yhat = n.partial(n.loss(t), n.step("yhat", t))
    return to_yhat if n.direct else f"{to_yhat} {n.partial(n.step('yhat', t), n.step('o', t))}"


def _to_hidden(n: Notation, t) -> str:
    return f"{n.partial(n.loss(t), n.step('yhat', t))} {n.partial(n.step('yhat', t), n.step('h', t))}"


def compact_paths(n: Notation) -> dict:
    """Role -> dE/dp as the sum over every path, written with products of Jacobians."""
    total, t = _loss_terms(n)
    h = lambda j: n.step("h", j)  # noqa: E731
    lines = {}
    for role in DOCUMENT_ORDER:
        if role not in n.names:
            continue
        var = n.names[role]
        lhs = n.partial(n.E, var)
        if role in ("output", "output_bias"):
            rhs = f"{total}{_to_output(n, t)} {n.partial(n.step(n.output_value, t), var)}"
        elif role == "initial":
            rhs = rf"{total}{_to_hidden(n, t)} \prod_{{j=1}}^{{{t}}} {n.partial(h('j'), h('j-1'))}"
        else:
            product = rf"\Bigl(\prod_{{j=k+1}}^{{{t}}} {n.partial(h('j'), h('j-1'))}\Bigr)"
            rhs = rf"{total}\sum_{{k=1}}^{{{t}}} {_to_hidden(n, t)} {product} {n.partial('^{+} ' + h('k'), var)}"
        lines[role] = f"{lhs} &= {rhs}"
    return lines


# --- form 2: the recursive form, forward in time --------------------------------------


def _entry_name(name: str) -> str:
    """``W_{ij}``, or ``(w_{h})_{ij}`` for a name that has its own subscript."""
    return f"({name})_{{ij}}" if "_" in name else f"{name}_{{ij}}"


def immediate_entry(n: Notation, role: str) -> str:
    """What the immediate derivative of a pre-activation by a weight holds, entry by entry.

    ``dz_{t,i}/dW_{ij} = h_{t-1,j}`` for the recurrent weights, ``x_{t,j}`` for the input
    weights, and ``do_{t,i}/dV_{ij} = h_{t,j}`` for the output weights (``dyhat_{t,i}`` where the prediction
    is the output layer's value, ``as_written``).
    """
    last = "T" if n.spec.mapping == "many-to-one" else "t"  # the one output of a many-to-one network
    output = (n.output_value, "h", last)  # the value the output weights make: o, or the prediction itself
    pre, source, t = {"recurrent": ("z", "h", "t-1"), "input": ("z", "x", "t"), "output": output}[role]
    name = _entry_name(n.names[role])
    i, j = ("j", "i") if n.row else ("i", "j")  # row notation: z^t_j = sum_i source^t_i W_ij
    at = last if role == "output" else "t"
    return rf"\partial {n.entry_of(pre, at, i)} / \partial {name} = {n.entry_of(source, t, j)}"


def forward_recursions(n: Notation) -> dict:
    """Role -> the recursion of dh_t/dp from dh_{t-1}/dp, with its start at h_0."""
    h = lambda t: n.step("h", t)  # noqa: E731
    J = n.recurrent_jacobian
    lines = {}
    for role in HIDDEN_ROLES:
        if role not in n.names:
            continue
        var = n.names[role]
        lhs, prev = n.partial(h("t"), var), n.partial(h("t-1"), var)
        start = n.partial(h(0), var)
        if role == "initial":
            lines[role] = rf"{lhs} &= {n.D('t')}\, {J}\, {prev}, \qquad {start} = I"
        else:
            immediate = "I" if role == "hidden_bias" else n.partial("^{+} " + n.step("z", "t"), var)
            lines[role] = rf"{lhs} &= {n.D('t')} \Bigl[{immediate} + {J}\, {prev}\Bigr], \qquad {start} = 0"
    return lines


def unrolled_recursion(n: Notation, role: str) -> list:
    """dh_T/dp with the recursion substituted down to h_0 (seed 003's nested form), as align lines.

    For large T, the first two levels, down to dh_{T-2}/dp (the template says that it unrolls
    the same way): what is written stays exact.
    """
    T = n.spec.T
    var = n.names[role]
    J = n.recurrent_jacobian
    ts = list(range(T, 0, -1)) if T <= FULL_PATHS_UP_TO else [T, T - 1]
    levels = []
    for t in ts:
        inner = n.partial("^{+} " + n.step("z", t), var)
        tail = n.partial(n.step("h", t - 1), var) if t == ts[-1] else ""
        levels.append(rf"{n.D(t)} \Bigl[{inner} + {J}\, {tail}")
    closing = r"\Bigr]" * len(ts)
    lines, per_line = [], 2
    for i in range(0, len(levels), per_line):
        body = " ".join(levels[i : i + per_line])
        lead = f"{n.partial(n.step('h', T), var)} &= " if i == 0 else r"&\qquad "
        lines.append(lead + body)
    lines[-1] += " " + closing
    return lines


def immediate_and_total(n: Notation, derivation: Derivation) -> dict | None:
    """The symbols of the paragraph on the immediate and the total derivative, for the first chain's
    (first) recurrent weight: the weight, its pre-activation, the state, the previous state and the
    pre-activation's delta at a generic step; None for a stacked matrix (its factor is the stacked vector).
    """
    chain = derivation.graph.network.chains[0]
    p = derivation.graph.network.recurrent_weight
    if chain.recurrent_part is not None:
        return None
    pre, state = chain.family(gate_pre(p.gate)).key, chain.family("h").key
    before = "t+1" if chain.reverse else "t-1"  # the step a backward chain's state comes from
    return dict(
        name=p.name,
        weight=n.latex(p.symbol()),
        z=n.step(pre, "t"),
        h=n.step(state, "t"),
        h_prev=n.step(state, before),
        dz=n.step(chain.family(gate_pre(p.gate), "adjoint").key, "t"),
    )


def forward_gradient(n: Notation) -> str:
    """dE/dp from the forward sensitivities dh_t/dp."""
    total, t = _loss_terms(n)
    h_t = n.step("h", t)
    to_h = f"{_to_output(n, t)} {n.partial(n.step(n.output_value, t), h_t)}"
    return rf"\frac{{\partial {n.E}}}{{\partial p}} &= {total}{to_h}\, {n.partial(h_t, 'p')}"


# --- form 3: the delta recursion (the derivation's own adjoints) ------------------------


def _node(nodes, family: str, t: int):
    return next(n for n in nodes if n.family == family and n.t == t)


def generic(n: Notation, nodes, family: str, t: int, show=None) -> str:
    """The derivation's own equation for ``family`` at step ``t``, written for a generic step t.

    ``show`` prints an expression (the notation's LaTeX unless given).
    """
    show = show or n.latex
    node = _node(nodes, family, t)
    lhs = relative(family, 0, node.symbol.shape[0])
    return f"{show(lhs)} = {show(step_template(node.expr, t))}"


def _at(n: Notation, nodes, family: str, t: int) -> str:
    """The derivation's own equation for ``family`` at step ``t``, as it stands."""
    node = _node(nodes, family, t)
    return f"{n.latex(node.symbol)} = {n.latex(node.expr)}"


def _at_end(n: Notation, nodes, family: str, t: int) -> str:
    """The delta recursion's equation for ``family`` at step ``t``, its steps from the last on written from
    ``T``, as the recursion's text speaks of them (``Notation.ending``)."""
    node = _node(nodes, family, t)
    return " = ".join(n.ending(node.symbol, node.expr))


def _lowest_step(term) -> int | None:
    steps = [step_of(s) for s in A.symbols_in(term)]
    return min((step[1] for step in steps if step), default=None)


def sum_over_steps(terms, first: int = 1):
    """The term ``g(t)`` of a sum ``sum_{t=first}^{first+len-1} g(t)`` that ``terms`` spell out, or None.

    The generic step of each term is fixed by the sum's limits, not by any one symbol in it:
    the terms must be one template shifted step by step (compared at their lowest steps), and
    the term with the lowest steps is ``g(first)``. So ``h_0 dz_1 + ... + h_{T-1} dz_T`` is
    ``sum_{t=1}^{T} h_{t-1} dz_t`` whichever symbol comes first, and a term can neither be
    dropped at one end nor read past the other.
    """
    lows = [_lowest_step(term) for term in terms]
    if None in lows:
        return None
    shift = min(lows) - first
    ts = sorted(low - shift for low in lows)
    templates = {step_template(term, low - shift) for term, low in zip(terms, lows)}
    if len(templates) != 1 or ts != list(range(first, first + len(terms))):
        return None
    return templates.pop()


def _gradient_sums(n: Notation, derivation: Derivation) -> dict:
    """Name -> ``dE/dp = sum_t (one term)``, from the derivation's own gradient."""
    T = n.spec.T
    sums = {}
    for name, expr in derivation.gradients.items():
        target = n.latex(gradient_symbol(derivation.graph.params[name]))
        terms = expr.args if isinstance(expr, MatAdd) else (expr,)
        term = sum_over_steps(terms) if T > 1 and len(terms) == T else None
        if term is not None:  # one term per step t = 1..T: written once, for a generic step
            sums[name] = rf"{target} = \sum_{{t=1}}^{{T}} {n.latex(term)}"
        else:
            sums[name] = f"{target} = {n.latex(expr)}"
    return {k: aligned(v) for k, v in sums.items()}


def _pairs_too_wide(form: dict) -> bool:
    """True when the delta block's rows, two equations each (``a &= b, \\qquad c &= d``), are too wide
    beside the equation number: an align sets each of its four columns as wide as its widest entry, so
    the output's pair (seed 001's longer nabla spelling) then takes two rows."""
    out = [eq for eq in (form["dyhat"], form["do"]) if eq]
    rows = [(out[0], out[1] if len(out) > 1 else None), (form["dh"] or form["dh_last"], form["dh_last"])]
    rows.append((form["dz"], form["dh0"]))
    columns = [[], [], [], []]
    for first, second in rows:
        for i, part in enumerate(first.split("&", 1) + (second.split("&", 1) if second else [])):
            columns[i].append(width(part) + (width(r", \qquad") if i == 1 else 0))
    return sum(max(c) for c in columns) + 10 > LINE - NUMBER  # amsmath's least space between pairs: 10pt


def _through_D(n: Notation, adjoints, T: int) -> str:
    """``delta^z_t = D_t delta^h_t`` (``delta^h D`` in row notation): the chain rule through the hidden
    activation, written with the Jacobian's one name (``D_t``, defined with its entries among the local
    Jacobians) where the derivation multiplies by its diagonal entry by entry; the derivation's own
    equation where it does not (an identity activation)."""
    node, dh = _node(adjoints, "dz", T), _node(adjoints, "dh", T).symbol
    factors = node.expr.args if isinstance(node.expr, sp.HadamardProduct) else ()
    if len(factors) != 2 or dh not in factors:
        return generic(n, adjoints, "dz", T)
    rest = next(f for f in factors if f != dh)
    if set(A.symbols_in(rest)) & {a.symbol for a in adjoints}:  # a factor that is no activation's derivative
        return generic(n, adjoints, "dz", T)
    lhs = n.latex(relative("dz", 0, node.symbol.shape[0]))
    D, delta = n.D("t"), n.step("dh", "t")
    return f"{lhs} = {delta}\\, {D}" if n.row else f"{lhs} = {D}\\, {delta}"


def recursive_form(derivation: Derivation) -> dict:
    """The adjoint equations of the reverse sweep: at a generic step, and at the ends."""
    spec = derivation.spec
    n = Notation(spec)
    T = spec.T
    adj = derivation.adjoints
    out_step = generic if spec.mapping == "many-to-many" else _at_end
    form = {
        # the prediction's own delta starts the sweep, or, where the pair simplifies, the output delta's closed form
        "dyhat": out_step(n, adj, "dyhat", T) if any(a.family == "dyhat" for a in adj) else None,
        "do": None if n.direct else out_step(n, adj, "do", T),
        "dh": generic(n, adj, "dh", T - 1) if T > 1 else None,  # an inner step
        "dh_last": _at_end(n, adj, "dh", T),
        "dz": _through_D(n, adj, T),
        "dh0": _at(n, adj, "dh", 0),
    }
    form = {k: aligned(v) if isinstance(v, str) else v for k, v in form.items()}
    form["split_out"] = _pairs_too_wide(form)
    # One alignment point a row: the first equation of a row aligns at its "=", the one beside it
    # follows after a \qquad (a second "&=" would open a new column and push it far to the right).
    plain = lambda eq: eq.replace(" &= ", " = ", 1)  # noqa: E731
    if form["do"] is None or form["dyhat"] is None:
        out = form["do"] or form["dyhat"]
    elif form["split_out"]:  # the output's pair on two rows, one equation (\\*: no page break inside it)
        out = form["dyhat"] + ", \\nonumber \\\\*\n" + form["do"]
    else:
        out = rf"{form['dyhat']}, \qquad {plain(form['do'])}"
    inner = form["dh"] is not None
    form["rows"] = [
        ("rec-out", out),
        ("rec-h", rf"{form['dh']}, \quad t < T, \qquad {plain(form['dh_last'])}" if inner else form["dh_last"]),
        ("rec-z", rf"{form['dz']}, \qquad {plain(form['dh0'])}"),
    ]
    form["gradients"] = _gradient_sums(n, derivation)
    return form


# --- vanishing and exploding gradients ----------------------------------------------------


def _number(value: float) -> str:
    """``1``, ``\\tfrac{1}{4}``, or a decimal for a measured value."""
    exact = sp.nsimplify(value, rational=True)
    if exact.is_Integer:
        return str(exact)
    if exact.is_Rational and exact.q <= 16:
        return rf"\tfrac{{{exact.p}}}{{{exact.q}}}"
    return f"{value:.4g}"


def gamma_sup(n: Notation) -> str:
    """``\\sup_x |\\tanh'(x)|``: gamma with the hidden activation named (the seed's name where it has one)."""
    hidden = n.lexicon.function(n.spec.hidden_key) or elementwise(n.spec.hidden_key).latex
    f = hidden.format("x")
    head = f.removesuffix("(x)")
    # a prime only on a function's plain name (tanh', g'); lrelu'(x) would read as the slope at an output
    slope = head + "'(x)" if re.fullmatch(r"\\?[A-Za-z]+", head) else rf"\tfrac{{d}}{{dx}} {f}"
    return rf"\sup_x |{slope}|"


def gamma_sentence(spec) -> str:
    """What ``gamma = sup |f'|`` is for this network's hidden activation."""
    rule = elementwise(spec.hidden_key)
    value = _number(rule.gamma)
    if rule.gamma_estimated:
        return rf"for this custom activation $\gamma \approx {value}$, measured on a fine grid over $[-20, 20]$"
    return rf"here, for {spec.hidden.replace('_', ' ')}, $\gamma = {value}$"


# --- the legend and the whole context --------------------------------------------------------


def loss_row(n: Notation) -> tuple:
    """The legend's row of the loss and its terms (many-to-one: one term, at the last step)."""
    if n.spec.mapping == "many-to-one":
        if n.E == n.loss(n.spec.T):  # one letter for the loss and its one term: list it once
            return (f"${n.E}$", "the loss (one term, at the last step)")
        return (f"${n.E},\\ {n.loss(n.spec.T)}$", "the loss, which is its one term, at the last step")
    return (f"${n.E},\\ {n.loss('t')}$", "the loss, and its term at step $t$")


def output_row(n: Notation, pre: str = "output pre-activation") -> tuple:
    """The legend's row of the output layer's values: ``o_t, yhat_t`` (``pre``: what ``o_t`` is called); the
    prediction alone where it is the layer's value itself (``as_written``)."""
    yhat = n.step("yhat", "t")
    if n.direct:
        return (f"${yhat}$", "prediction, the output layer's value (its activation is the identity)")
    return (f"${n.step('o', 't')},\\ {yhat}$", f"{pre} and prediction")


def other_deltas_row(n: Notation, derivation: Derivation) -> tuple:
    """The legend's row of the deltas but the state's: ``δz_t, δo_t`` -- the same for ``z_t, o_t``."""
    deltas, values = zip(*other_deltas(n, derivation), strict=True)
    return ("$" + ",\\ ".join(deltas) + "$", "the same for " + ", ".join(f"${v}$" for v in values))


def _legend(n: Notation, derivation: Derivation) -> list:
    """``(symbol, meaning)`` rows of the notation table, for this spec."""
    spec = n.spec
    params = derivation.graph.params
    roles = spec.role_names
    shape = {name: " \\times ".join(str(d) for d in p.shape) for name, p in params.items()}
    what = {
        "input": "input weights",
        "recurrent": "recurrent weights",
        "output": "output weights",
        "hidden_bias": "hidden bias",
        "output_bias": "output bias",
    }
    vec = "row" if n.row else "column"
    sizes = f"{vec}s of sizes $n_{{x}}$, $n_{{y}}$"  # the sizes the shapes and the worked example write
    rows = [
        (
            (f"${n.step('x', 't')},\\ {n.step('y', 't')}$", f"input and target at step $t$ ({sizes})")
            if spec.mapping != "many-to-one"
            else (
                f"${n.step('x', 't')},\\ {n.step('y', spec.T)}$",
                f"input at step $t$ and the target, at the last step only ({sizes})",
            )
        ),
        (f"${n.step('z', 't')},\\ {n.step('h', 't')}$", "pre-activation and hidden state, of size $n_{h}$"),
        (f"${n.step('h', 0)}$", "the initial state, a parameter (zero in the worked example)"),
        output_row(n),
        loss_row(n),
    ]
    for role, name in roles.items():
        if role in what:
            rows.append((f"${n.names[role]}$", f"{what[role]}, ${shape[name]}$"))
    rows += [
        (
            f"${n.step('dh', 't')}$",
            (
                f"$\\partial {n.E} / \\partial {n.step('h', 't')}$, the gradient of the loss with respect to "
                f"${n.step('h', 't')}$, a row"
            )
            if n.row
            else (
                f"$(\\partial {n.E} / \\partial {n.step('h', 't')})^{{\\top}}$, the gradient of the loss with "
                f"respect to ${n.step('h', 't')}$, a column"
            ),
        ),
        other_deltas_row(n, derivation),
        (f"${n.D('t')}$", f"$\\partial {n.step('h', 't')} / \\partial {n.step('z', 't')}$, a diagonal matrix"),
        (r"$\partial^{+}$", "the immediate derivative: the earlier states held fixed"),
        ("$p$", "any one parameter, in a formula that holds for each"),
        (r"$\operatorname{diag}(v)$", "the diagonal matrix with the entries of $v$ on its diagonal"),
        (r"$I,\ \delta_{ij}$", "the identity matrix, and its entries (1 where $i = j$, else 0)"),
        (r"$\gamma$", f"the largest slope of the hidden activation, ${gamma_sup(n)}$"),
        ("$\\odot,\\ \\oslash$", "entrywise product and quotient"),
        ("$\\mathbf{1}$", "a vector of ones; a product with it sums entries"),
    ]
    stacked = n.printer.step("x", 1, "T")
    side = "stacked one above the other" if n.row else "side by side"
    rows.append((f"${stacked}$", f"the steps $1, \\dots, T$ {side}"))
    hidden = elementwise(spec.hidden_key)
    named = n.lexicon.function(spec.hidden_key)
    if named:  # the seed's own name for the activation, and which function it is
        rows.append(
            (f"${named.format('x')} = {hidden.latex.format('x')}$", "the hidden activation, as the seed names it")
        )
    elif hidden.definition:
        rows.append((f"${hidden.definition}$", "the hidden activation"))
    if spec.is_custom:
        rows.append((f"${elementwise(f'custom_derivative:{spec.hidden}').definition}$", "its derivative"))
    if spec.output in ELEMENTWISE and spec.output != spec.hidden and ELEMENTWISE[spec.output].definition:
        rows.append((f"${ELEMENTWISE[spec.output].definition}$", "the output activation"))
    return rows


def latex_context(derivation: Derivation, formulas: list, numbering: Numbering, common: dict) -> dict:
    """Everything ``derivation.tex.jinja`` lays out; ``formulas`` are the final formulas to number."""
    spec = derivation.spec
    n = Notation(spec)
    graph = derivation.graph
    t = "t"
    h_t = relative("h", 0, n_h)
    derivative = elementwise(spec.hidden_key).derivative(relative("z", 0, n_h), h_t)
    loss = spec.loss_rule
    fused = spec.fused
    last = spec.T
    yhat_t = n.step("yhat", "t")
    yhat = relative("yhat", 0, n_y)
    outer = n.latex(A.mul(yhat, A.transpose(yhat)))  # the printer writes it in the notation
    recursive = recursive_form(derivation)
    return dict(
        **common,
        row=n.row,
        many_to_one=spec.mapping == "many-to-one",
        direct=n.direct,
        output_value=n.output_value,
        legend=_legend(n, derivation),
        shape_tables=side_by_side(
            shape_rows(n, derivation, jacobians=((n.D("t"), (_node(graph.nodes, "h", 1).symbol.shape[0],) * 2),))
        ),
        three_index=three_index_sentence(n, derivation),
        # a quantity the lexicon writes without its step (the one of its kind) at its own step: o = V H_3
        forward=[
            aligned((generic if n.lexicon.indexed(family(f)) else _at)(n, graph.nodes, f, spec.T))
            for f in forward_families(graph)
        ],
        E_t=n.loss(t),
        E_T=n.loss(last),
        loss_latex=loss.latex.format(yhat_i=n.entry_of("yhat", t), y_i=n.entry_of("y", t)),
        step=n.step,
        partial=n.partial,
        D=n.D,
        hidden_derivative=_unwrapped(n.latex(derivative)),  # it stands inside diag(...) and (...) \odot v
        recurrent_jacobian=n.recurrent_jacobian,
        output_jacobian_o=n.output_jacobian,
        names=n.names,
        hidden_by_output=h_t in A.symbols_in(derivative),
        output_jacobian=n.respell(spec.output_layer.jacobian),
        output_jacobian_matrix=spec.output_layer.jacobian_matrix.format(yhat=yhat_t, outer=outer),
        loss_gradient=n.respell(loss.gradient.format(yhat=r"\hat{y}_i", y="y_i")),
        fused_derivation=(n.respell(fused.derivation.format(yhat=r"\hat{y}", y="y", E=n.loss(t))) if fused else None),
        entry_at=n.entry_at,
        E=n.E,
        fused_assumes=fused.assumes if fused else "",
        general_dyhat=_at(n, derivation.adjoints, "dyhat", last) if not fused else None,
        general_do=_at(n, derivation.adjoints, "do", last) if not fused else None,
        expansions=[(role, path_terms(n, n.names[role])) for role in WEIGHT_ROLES if role in n.names],
        compact=compact_paths(n),
        path_cost=path_cost(spec),
        path_shapes=path_factor_shapes(n, derivation),
        full_paths=spec.T <= FULL_PATHS_UP_TO,
        immediate=[immediate_entry(n, role) for role in ("recurrent", "input")],
        output_entry=immediate_entry(n, "output"),
        recursions=forward_recursions(n),
        unrolled=[(role, unrolled_recursion(n, role)) for role in ("recurrent", "input")],
        unrolled_reach=(
            f"down to ${n.step('h', 0)}$"
            if spec.T <= FULL_PATHS_UP_TO
            else rf"(the first two levels; $\partial {n.step('h', spec.T - 2)} / \partial p$ unrolls the same way,"
            f" down to ${n.step('h', 0)}$)"
        ),
        forward_gradient=forward_gradient(n),
        immediate_total=immediate_and_total(n, derivation),
        recursive=recursive,
        closed_output=closed_output(n, derivation),
        summary_intro=(
            "The gradient of every parameter collects its deltas over time, and the deltas run backward"
            " from the loss (equation numbers as above"
        ),
        summary=[*recursive["rows"], *((f"delta-{name}", line) for name, line in recursive["gradients"].items())],
        gamma=gamma_sentence(spec),
        gamma_sup=gamma_sup(n),
        formulas=[f for f in formulas if not f.trivial],
        slopes=_slopes(n, formulas),
        appendix_terms=appendix_terms(n, [f for f in formulas if not f.trivial]),
        seed=seed_context(spec),
    )


def closed_output(n: Notation, derivation: Derivation) -> bool:
    """True where the delta recursion starts from the output delta's closed form (``_closed_output_delta``):
    no delta of the prediction apart from the output pre-activation's."""
    return not n.direct and not any(node.family == "dyhat" for node in derivation.adjoints)


def _unwrapped(tex: str) -> str:
    """``tex`` without the parentheses the printer put around all of it (a leaky ReLU's slope)."""
    if not (tex.startswith(r"\left(") and tex.endswith(r"\right)")):
        return tex
    inner = tex[len(r"\left(") : -len(r"\right)")]
    depth = 0
    for m in re.finditer(r"\\left\(|\\right\)", inner):  # the outer pair must enclose the whole
        depth += 1 if m.group(0) == r"\left(" else -1
        if depth < 0:
            return tex
    return inner


def keeps_slopes(formulas: list) -> bool:
    """True when the code's formulas keep an activation's slopes as arrays of their own (``F'``)."""
    return any(holds_slopes(s) for f in formulas for st in f.stmts for s in (st.target, *A.symbols_in(st.expr)))


def _slopes(n: Notation, formulas: list) -> dict | None:
    """How the code's arrays of activation slopes (``f'_t``, ``F'_{1:T}``) relate to ``D_t``, where its
    formulas keep them; None where they do not (an identity activation)."""
    if not keeps_slopes(formulas):
        return None
    T = n.spec.T
    return {"step": n.step("fprime", "t"), "stacked": n.printer.step("fprime", 1, T), "last": n.D(T)}


def code_output(n: Notation) -> str:
    """For the appendix of a document written with ``as_written``: the module keeps an identity output layer's
    value apart from the prediction, and the formulas the code runs write it so."""
    at = n.spec.T if n.spec.mapping == "many-to-one" else "t"
    o, do, yhat, dyhat = (n.step(key, at) for key in ("o", "do", "yhat", "dyhat"))
    return (
        f"The code keeps the output layer's value apart from the prediction, as ${o}$, and its delta as ${do}$:"
        f" with the identity output they are ${yhat}$ and ${dyhat}$."
    )


def appendix_terms(n: Notation, formulas: list) -> list:
    """Sentences that define what the code's formulas use and the legend does not: a stacked delta
    (``\\Delta^{z}_{1:T}``) and a function such as softplus that the loss's stable form calls."""
    T = n.spec.T
    code = " ".join(f.latex for f in formulas)
    side = "stacked one above the other" if n.row else "side by side"
    out = []
    for key in ("dz", "dh", "do", "dyhat"):
        stacked = n.printer.step(key, 1, T)
        if stacked in code and n.step(key, 1) != n.step(key, T):  # not a many-to-one output's one delta
            out.append(f"${stacked}$ holds ${n.step(key, 1)}, \\dots, {n.step(key, T)}$ {side}.")
    if n.direct:
        out.append(code_output(n))
    if re.search(r"\\mathbf\{1\}(?:\^\{\\top\})? [-+] ", code):  # the code's 1 - H_{1:T} broadcasts
        out.append(r"In a sum, $\mathbf{1}$ stands for ones of the other term's shape.")
    for rule in ELEMENTWISE.values():
        head = rule.latex.format("").removesuffix("()")
        defined = rule.name in (n.spec.hidden, n.spec.output)  # the legend defines the network's activations
        if rule.definition and not defined and head.startswith("\\operatorname") and head + "(" in code:
            out.append(f"Here ${rule.definition}$.")
    return out


def _sides(equation: str) -> tuple:
    """``(lhs, relation, rhs)`` of a seed's equation, split at its first ``=`` or ``\\leftarrow``."""
    m = re.search(r" (=|\\leftarrow) ", equation)
    return (equation[: m.start()], m.group(1), equation[m.end() :]) if m else ("", "", equation)


def _rows(equations: list) -> list:
    """Equations of one align in rows that fit beside their numbers (``broken``), every right side
    starting where the widest left side ends."""
    sides = [_sides(e) for e in equations]
    column = max(width(lhs) for lhs, _, _ in sides)
    rows = []
    for lhs, rel, rhs in sides:
        if rel == "=":
            rows.append(broken(lhs, rhs, column=column))
        else:  # an update rule aligns at its arrow; a formula of no relation stands alone
            rows.append(f"{lhs} &{rel} {rhs}" if rel else rhs)
    return rows


def seed_context(spec) -> dict | None:
    """A seed preset's last section (``seed_notes``), its equations laid out in rows; None without a preset."""
    notes = seed_notes(spec)
    if notes is None:
        return None
    return dict(
        intro=notes["intro"],
        assembled=_rows([f.latex for f in notes["assembled"]]),
        errata=[dict(wrong=e.wrong, correct=_rows([e.correct.latex])[0], cost=e.cost) for e in notes["errata"]],
    )


# --- truncated BPTT -------------------------------------------------------------------------------


def truncation_context(n: Notation, derivation: Derivation) -> dict | None:
    """What the document's section on truncated BPTT shows, or None for an untruncated spec.

    ``restricted``: where every path from E_t to step k crosses exactly t - k recurrent edges (a stack
    of one direction, a loss at every step, no block matrix), the recurrent weight's truncated gradient
    as the full derivatives of the loss terms restricted to k >= t - tau + 1, written with the ages
    a = t - k, a numbered equation the document's checker evaluates; else None (the text says it in
    words).
    """
    spec = derivation.spec
    tau = spec.truncate
    if tau is None:
        return None
    chains = derivation.graph.network.chains
    chain = chains[0]
    # every chain's recurrent weights: the Elman cell's W, a gated cell's one per gate (W_i, ..., W_o)
    recurrent = [(c, p) for c in chains for p in c.weights("recurrent")]
    weight = derivation.graph.network.recurrent_weight
    dz = chain.family(gate_pre(weight.gate), "adjoint")  # z, or z_i
    restricted = None
    expr = derivation.gradients[weight.name]
    template = sum_over_steps(list(expr.args) if isinstance(expr, MatAdd) else [expr])
    gradient = n.latex(gradient_symbol(derivation.graph.params[weight.name]))
    truncated = rf"\widetilde{{{gradient}}}"
    simple = not spec.bidirectional and not spec.stacked and spec.mapping == "many-to-many" and not spec.delay
    simple = simple and len(recurrent) == len(chains)  # one recurrent weight per chain: the Elman cell
    if simple and template is not None:
        # the gradient's own term at step t (delta_t h_{t-1}^T, its transpose in row notation), its delta
        # spelled as the loss term's derivative
        fraction = n.partial(n.loss(f"t+{AGE}"), n.step(dz.value.key, "t"))
        derivative = fraction if n.row else rf"\left({fraction}\right)^{{\top}}"
        term = n.spelled(template, relative(dz.key, 0, chain.size), derivative)
        restricted = aligned(f"{truncated} = \\sum_{{{AGE}=0}}^{{{tau - 1}}} \\sum_{{t=1}}^{{T-{AGE}}} {term}")
    directions = "both" if spec.bidirectional else "forward"
    return dict(
        tau=tau,
        full=spec.full_horizon,
        rule=truncation_rule(tau, directions, spec.layers, latex=n.loss("t")),
        restricted=restricted,
        gradient=gradient,
        truncated_gradient=truncated,
        delta=n.step(dz.key, "t"),
        age=AGE,
        aged=n.aged_step(dz.key, AGE, "t"),
        aged_before=n.aged_step(dz.key, f"{AGE}-1", "t+1"),
        recurrent=[n.latex(p.math(c.recurrent_part)) for c, p in recurrent],
    )
