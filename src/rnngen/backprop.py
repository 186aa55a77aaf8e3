"""Reverse-mode chain rule over the unrolled graph, at the matrix level.

Each node ``v := f(a, b, ...)`` hands its adjoint ``dv`` (the gradient of E
with respect to v) to its operands through a local rule from ``ADJOINT_RULES``
(``Z = A B``: ``dA += dZ B^T``, ``dB += A^T dZ``; ``H = f(Z)``:
``dZ = dH o f'(Z)``; ...). Nodes are visited once, in reverse order, and every
adjoint is named, so the derivation is O(T) in time and size: this is the
recursive (delta) form of BPTT.

With a truncation horizon τ (``spec.truncate``, seed 002's fixed horizon; ``RNNSpec.truncation_rule``
says what it keeps) the sweep is the same with an *age* on each adjoint of a recurrence: the number
of recurrent edges (a step of a chain to its next step) its paths crossed since their loss term. A
contribution that crosses one (``h_{t-1}`` read by ``z_t``) is one older, and one older than τ - 1 is
dropped; the edge into an initial state does not age it (the state is read at its chain's first
step). Each age is a family of its own (δz^{[a]}_t); it reads age a - 1 at the next step of its
chain and, in a stack, age a of the layer above at the same step (going down a layer crosses no
recurrent edge), never its own age at another step, so no age is a recurrence. A node's plain
adjoint δz_t, the sum of its ages, is what the parameters and the inputs read: their gradients keep
their untruncated form.

``path_expansion`` substitutes the named adjoints back and distributes the
products, which yields the classic sum over paths (T(T+1)/2 chains of
Jacobians for U and W). It is O(T^2) and serves exposition and cross-checks.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.families import Step, recurrences, step_of
from rnngen.unroll import Graph, Node, adjoint_name, unroll


def adjoint_symbol(symbol: MatrixSymbol) -> MatrixSymbol:
    """``dv`` of a value ``v``: a step of the adjoint family for a step, a whole value otherwise."""
    if isinstance(symbol, Step):
        return Step.of(symbol.family.adjoint, symbol.t, symbol.shape[0])
    return MatrixSymbol(adjoint_name(symbol.name), *symbol.shape)


# --- local adjoint rules: (expr, upstream, out) -> [(operand, contribution)] ---
# ``out`` is the symbol that stores ``expr`` when expr is a whole node, so that
# derivatives can be written in terms of the node's output (tanh' = 1 - h o h).


def _rule_add(expr, g, out):
    return [(term, g) for term in expr.args]


def _rule_mul(expr, g, out):
    coeff, factors = expr.as_coeff_matrices()
    g = A.scale(coeff, g)
    pairs = []
    for i, factor in enumerate(factors):
        if isinstance(factor, (OneMatrix, sp.Identity)):
            continue  # constants have no adjoint
        left = [A.transpose(f) for f in reversed(factors[:i])]
        right = [A.transpose(f) for f in reversed(factors[i + 1 :])]
        pairs.append((factor, A.mul(*left, g, *right)))
    return pairs


def _rule_hadamard(expr, g, out):
    factors = expr.args
    return [(f, A.had(g, *factors[:i], *factors[i + 1 :])) for i, f in enumerate(factors)]


def _rule_power(expr, g, out):
    # A o A (the squared error): d A = 2 A o g.
    if expr.exp != 2:
        raise TypeError(f"no adjoint rule for the entrywise power {expr.exp}")
    return [(expr.base, A.scale(2, A.had(expr.base, g)))]


def _rule_transpose(expr, g, out):
    return [(expr.arg, A.transpose(g))]


def _rule_elementwise(expr, g, out):
    derivative = elementwise(expr.fn).derivative(expr.arg, out)
    return [(expr.arg, A.had(g, derivative))]


def _rule_softmax(expr, g, out):
    # J = diag(s) - s s^T per column, so J^T g = s o (g - 1 1^T (s o g)).
    s = out if out is not None else expr
    n = s.shape[0]
    return [(expr.arg, A.had(s, A.sub(g, A.mul(A.ones(n, n), A.had(s, g)))))]


ADJOINT_RULES = {
    MatAdd: _rule_add,
    MatMul: _rule_mul,
    HadamardProduct: _rule_hadamard,
    HadamardPower: _rule_power,
    Transpose: _rule_transpose,
    A.Elementwise: _rule_elementwise,
    A.Softmax: _rule_softmax,
}


def backprop(expr, upstream, accumulate, out=None) -> None:
    """Send ``upstream`` (the adjoint of ``expr``) down to the symbols ``expr`` reads.

    ``accumulate(symbol, contribution)`` receives one term per use of a symbol.
    """
    if isinstance(expr, MatrixSymbol):
        accumulate(expr, upstream)
        return
    if isinstance(expr, (OneMatrix, sp.Identity)):
        return
    rule = ADJOINT_RULES.get(type(expr))
    if rule is None:
        raise TypeError(f"no adjoint rule for {type(expr).__name__}: {expr}")
    for operand, contribution in rule(expr, upstream, out):
        backprop(operand, contribution, accumulate)


@dataclass
class Derivation:
    """The derivation of one spec: its graph, every adjoint, every gradient.

    Attributes:
        graph: the unrolled forward graph.
        adjoints: ``d<node> := expr`` in the order they are computed (reverse).
        gradients: parameter name -> expression of dE/dparam, a sum over steps.
        inputs: dE/dx_t of each step t = 1..T.
    """

    graph: Graph
    adjoints: list[Node]
    gradients: dict[str, sp.MatrixExpr]
    inputs: list = None  # dE/dx_t per step, for the input gradient

    @property
    def spec(self):
        return self.graph.spec


def reverse_mode(graph: Graph) -> Derivation:
    """Derive every adjoint of ``graph`` by one reverse sweep (``truncated_reverse_mode`` when the spec
    truncates)."""
    if graph.spec.truncate is not None:
        return truncated_reverse_mode(graph, graph.spec.truncate)
    contributions: dict[MatrixSymbol, list] = defaultdict(list)

    def accumulate(symbol, term):
        contributions[symbol].append(term)

    loss = graph.loss
    backprop(loss.expr, sp.Identity(1), accumulate)
    adjoints = []
    for node in reversed(graph.nodes[:-1]):
        total = A.add(*contributions.pop(node.symbol, []))
        if total is None:
            continue  # E does not depend on this node
        d = adjoint_symbol(node.symbol)
        adjoints.append(Node(d, total, d.family.key if isinstance(d, Step) else None, node.t))
        backprop(node.expr, d, accumulate, out=node.symbol)
    return Derivation(graph, adjoints, *_gradients(graph, contributions))


def _recurrent_families(graph: Graph) -> set:
    """The families of the forward graph's recurrences (a chain's ``z`` and ``h``): the ones whose adjoints age."""
    found = recurrences((n.family, n.t, n.expr) for n in graph.nodes if isinstance(n.symbol, Step))
    return {key for r in found for key in r.families}


def truncated_reverse_mode(graph: Graph, tau: int) -> Derivation:
    """The reverse sweep of truncated BPTT with horizon ``tau`` (what it keeps: ``RNNSpec.truncation_rule``).

    An adjoint of a recurrence carries its age, the recurrent edges its paths crossed, as the family
    ``δv^{[a]}`` (``Family.age``); a contribution that crosses an edge (the operand is a step of another
    step than the node's) is one older, unless the operand is an initial state (read at its chain's
    first step), and one older than ``tau - 1`` is dropped. Every age's adjoint hands on to the nodes
    it reads only; the plain adjoint, the sum of the ages, hands on to the parameters and the inputs,
    so a gradient is one sum over steps as in the untruncated derivation. Cost and size O(tau T L).
    """
    T = graph.spec.T
    aged = _recurrent_families(graph)
    nodes = {n.symbol for n in graph.nodes}
    by_age: dict = defaultdict(lambda: defaultdict(list))  # node -> age -> terms
    contributions: dict = defaultdict(list)  # a parameter's or an input's symbol -> terms

    def to_nodes(reader, age):
        def accumulate(symbol, term):
            if symbol not in nodes:
                return  # the parameters and inputs read the plain adjoint
            # a recurrent edge (the operand at another step) ages a path, except the edge into an
            # initial state (step 0, or T + 1 backward): that state is read at its chain's first step
            older = age + (reader.t is not None and symbol.t != reader.t and 1 <= symbol.t <= T)
            if older <= tau - 1:
                by_age[symbol][older].append(term)

        return accumulate

    def to_leaves(symbol, term):
        if symbol not in nodes:
            contributions[symbol].append(term)

    backprop(graph.loss.expr, sp.Identity(1), to_nodes(graph.loss, 0))
    adjoints = []
    for node in reversed(graph.nodes[:-1]):
        terms = by_age.pop(node.symbol, {})
        ages = sorted(terms)
        plain = adjoint_symbol(node.symbol)
        if not ages and node.family in aged and not 1 <= node.t <= T:
            # an initial state no kept path reaches (many-to-one, t > tau): its gradient is 0, and still an output
            adjoints.append(Node(plain, ZeroMatrix(*plain.shape), plain.family.key, node.t))
            backprop(node.expr, plain, to_leaves, out=node.symbol)
            continue
        if not ages:
            continue  # E does not depend on this node, or only through paths the truncation cuts
        if node.family not in aged:  # the output side: only age 0 reaches it
            adjoints.append(Node(plain, A.add(*terms[0]), plain.family.key, node.t))
            backprop(node.expr, plain, to_nodes(node, 0), out=node.symbol)
            backprop(node.expr, plain, to_leaves, out=node.symbol)
            continue
        fam = plain.family
        for age in ages:
            d = Step.of(fam.aged(age), node.t, plain.shape[0])
            adjoints.append(Node(d, A.add(*terms[age]), d.family.key, node.t))
            backprop(node.expr, d, to_nodes(node, age), out=node.symbol)
        if any(s not in nodes for s in A.symbols_in(node.expr)):  # it reads a parameter or an input
            total = A.add(*(Step.of(fam.aged(age), node.t, plain.shape[0]) for age in ages))
            adjoints.append(Node(plain, total, fam.key, node.t))
            backprop(node.expr, plain, to_leaves, out=node.symbol)
    return Derivation(graph, adjoints, *_gradients(graph, contributions))


def _gradients(graph: Graph, contributions: dict) -> tuple:
    """Every parameter's gradient and each step's dE/dx_t, from the terms their uses received."""
    gradients = {}
    for name, param in graph.network.params.items():
        if param.blocks:  # the blocks' gradients side by side, in the parameter's shape
            parts = [A.add(*contributions.get(param.block(part), [])) for part in param.parts]
            gradients[name] = A.Concat(param.block(param.parts[0]).axis, *parts)
        else:
            gradients[name] = A.add(*contributions.get(graph.params[name], []))
    # an input the truncation leaves no path to (many-to-one, x_t for t <= T - tau): dE/dx_t = 0
    inputs = [A.add(*contributions.get(x, [])) or ZeroMatrix(*x.shape) for x in graph.inputs["x"]]
    return gradients, inputs


def derive(spec) -> Derivation:
    """Unroll ``spec`` and derive every adjoint."""
    return reverse_mode(unroll(spec))


# --- the sum over paths ---------------------------------------------------------


#: Adjoint families a path starts from: the gradient at the output layer,
#: delta^o_t = dE_t/do_t, is where the path of loss term E_t enters the network.
PATH_SOURCES = ("do",)


class TooManyPaths(Exception):
    """The sum over paths has more terms than the limit it was expanded with."""


def path_expansion(derivation: Derivation, param: str, limit: int | None = None) -> list:
    """dE/d``param`` as its list of path terms (``path_terms`` of its gradient).

    A term is one chain of local Jacobians from the output gradient
    ``delta^o_t`` of one loss term E_t back to one use of the parameter; the
    elementwise derivatives (``1 - h o h``) stay whole inside it. A path through
    several chains (down the layers, across directions) is one term. For a
    parameter in blocks (``V = [V^f, V^b]``) a term is the block's path in its
    place, the other blocks zero, so the terms still sum to the gradient.

    The number of terms grows like T^2 for one layer and by about a factor T per
    layer more; with ``limit``, ``TooManyPaths`` is raised as soon as a part of
    the sum has more terms than that, before the rest is built.
    """
    return path_terms(derivation, derivation.gradients[param], f"dE/d{param}", limit)


def path_terms(
    derivation: Derivation,
    gradient,
    what: str = "the gradient",
    limit: int | None = None,
    max_edges: int | None = None,
) -> list:
    """``gradient`` (an expression over the derivation's adjoints: a parameter's gradient, an
    input's ``dE/dx_t``) as its list of path terms; see ``path_expansion``. With ``max_edges``, only
    the paths that cross at most that many recurrent edges (``PathExpander``)."""
    return PathExpander(derivation, max_edges).terms(gradient, what, limit)


class PathExpander:
    """Expands expressions over a derivation's adjoints into path terms, remembering every part.

    With ``max_edges``, only the paths that cross at most that many recurrent edges are built: a
    partial path with more is dropped as soon as it has them, since a longer path only gains
    factors. A path crosses an edge where it goes from an adjoint to one of another step in its
    definition (``δh_{t-1}`` reads ``δz_t``; the LSTM's ``δc_{t-1}`` reads ``δc_t ∘ f_t``, the GRU's
    ``δh_{t-1}`` reads ``δh_t ∘ z_t``, neither through a recurrent weight): for the Elman cell, one
    factor of a recurrent weight per edge. Every adjoint is then expanded once, in
    the order of the sweep (so the recursion stays shallow at any T), and holds O(max_edges) terms:
    O(max_edges T) terms per weight in all, rather than O(T^2).
    """

    def __init__(self, derivation: Derivation, max_edges: int | None = None):
        self.defined = {n.symbol: n.expr for n in derivation.adjoints if n.family not in PATH_SOURCES}
        self.max_edges = max_edges
        self.memo: dict = {}
        self.limit: int | None = None
        self.what = "the gradient"
        if max_edges is not None:
            for node in derivation.adjoints:
                self._expand(node.symbol)

    def terms(self, gradient, what: str = "the gradient", limit: int | None = None, max_edges: int | None = None):
        """``gradient``'s path terms (those with at most ``max_edges`` recurrent edges, if given);
        ``TooManyPaths`` as soon as a part of it has more than ``limit`` terms."""
        self.limit, self.what = limit, what
        return [t for t, n in self._expand(gradient) if max_edges is None or n <= max_edges]

    def _definition(self, adjoint) -> list:
        """The terms of an adjoint's definition, each with the recurrent edges it crosses: 1 where it
        reads an adjoint of another step (counted only with ``max_edges``)."""
        definition = self.defined[adjoint]
        terms = definition.args if isinstance(definition, MatAdd) else (definition,)
        if self.max_edges is None or not isinstance(adjoint, Step):
            return [(term, 0) for term in terms]
        return [(term, int(any(_other_step(s, adjoint.t) for s in A.symbols_in(term)))) for term in terms]

    def _kept(self, combos: list) -> list:
        return [c for c in combos if self.max_edges is None or c[1] <= self.max_edges]

    def _expand(self, expr) -> list:
        """``expr`` as a list of (path term, the recurrent edges it crosses)."""
        if expr in self.memo:
            return self.memo[expr]
        expand = self._expand
        if isinstance(expr, MatrixSymbol):
            if expr in self.defined:
                result = self._kept([(t, n + m) for term, m in self._definition(expr) for t, n in expand(term)])
            else:
                result = [(expr, 0)]
        elif isinstance(expr, MatAdd):
            result = [t for arg in expr.args for t in expand(arg)]
        elif isinstance(expr, MatMul):
            coeff, factors = expr.as_coeff_matrices()
            combos = [([], 0)]
            for f in factors:
                combos = self._kept([(c + [t], n + m) for c, n in combos for t, m in expand(f)])
            result = [(A.scale(coeff, A.mul(*c)), n) for c, n in combos]
        elif isinstance(expr, HadamardProduct):
            # Only the adjoint factor (the one holding a delta) is a sum of paths.
            combos = [([], 0)]
            for f in expr.args:
                parts = expand(f) if _has_adjoint(f, self.defined) else [(f, 0)]
                combos = self._kept([(c + [t], n + m) for c, n in combos for t, m in parts])
            result = [(A.had(*c), n) for c, n in combos]
        elif isinstance(expr, Transpose):
            result = [(A.transpose(t), n) for t, n in expand(expr.arg)]
        elif isinstance(expr, A.Concat):
            # a blocked parameter's gradient: each path of each block, in its place, the others zero
            parts = expr.parts
            result = [
                (A.Concat(expr.axis, *(term if j == i else ZeroMatrix(*p.shape) for j, p in enumerate(parts))), n)
                for i, part in enumerate(parts)
                for term, n in expand(part)
            ]
        else:
            result = [(expr, 0)]
        if self.limit is not None and len(result) > self.limit:
            raise TooManyPaths(f"the sum over paths of {self.what} has more than {self.limit} terms")
        self.memo[expr] = result
        return result


def _other_step(symbol, t: int) -> bool:
    """True for a step of an adjoint family at another step than ``t``."""
    return isinstance(symbol, Step) and symbol.family.is_adjoint and symbol.t != t


def _has_adjoint(expr, defined) -> bool:
    return any(s in defined for s in A.symbols_in(expr))


def path_source(term) -> int:
    """The step t of the loss term E_t whose output gradient a path term starts from."""
    steps = [step_of(s) for s in A.symbols_in(term)]
    return next(t for family, t in filter(None, steps) if family in PATH_SOURCES)
