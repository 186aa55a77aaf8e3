"""Reverse-mode chain rule over the unrolled graph, at the matrix level.

Each node ``v := f(a, b, ...)`` hands its adjoint ``dv`` (the gradient of E
with respect to v) to its operands through a local rule from ``ADJOINT_RULES``
(``Z = A B``: ``dA += dZ B^T``, ``dB += A^T dZ``; ``H = f(Z)``:
``dZ = dH o f'(Z)``; ...). Nodes are visited once, in reverse order, and every
adjoint is named, so the derivation is O(T) in time and size: this is the
recursive (delta) form of BPTT.

``path_expansion`` substitutes the named adjoints back and distributes the
products, which yields the classic sum over paths (T(T+1)/2 chains of
Jacobians for U and W). It is O(T^2) and serves exposition and cross-checks.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.families import Step, step_of
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
    """Derive every adjoint of ``graph`` by one reverse sweep."""
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
    gradients = {}
    for name, param in graph.network.params.items():
        if param.blocks:  # the blocks' gradients side by side, in the parameter's shape
            parts = [A.add(*contributions.get(param.block(part), [])) for part in param.parts]
            gradients[name] = A.Concat(param.block(param.parts[0]).axis, *parts)
        else:
            gradients[name] = A.add(*contributions.get(graph.params[name], []))
    inputs = [A.add(*contributions.get(x, [])) for x in graph.inputs["x"]]
    return Derivation(graph, adjoints, gradients, inputs)


def derive(spec) -> Derivation:
    """Unroll ``spec`` and derive every adjoint."""
    return reverse_mode(unroll(spec))


# --- the sum over paths ---------------------------------------------------------


#: Adjoint families a path starts from: the gradient at the output layer,
#: delta^o_t = dE_t/do_t, is where the path of loss term E_t enters the network.
PATH_SOURCES = ("do",)


def path_expansion(derivation: Derivation, param: str) -> list:
    """dE/d``param`` as its list of path terms.

    A term is one chain of local Jacobians from the output gradient
    ``delta^o_t`` of one loss term E_t back to one use of the parameter; the
    elementwise derivatives (``1 - h o h``) stay whole inside it.
    """
    defined = {n.symbol: n.expr for n in derivation.adjoints if n.family not in PATH_SOURCES}
    memo: dict = {}

    def expand(expr):
        if expr in memo:
            return memo[expr]
        if isinstance(expr, MatrixSymbol):
            result = expand(defined[expr]) if expr in defined else [expr]
        elif isinstance(expr, MatAdd):
            result = [t for arg in expr.args for t in expand(arg)]
        elif isinstance(expr, MatMul):
            coeff, factors = expr.as_coeff_matrices()
            combos = [[]]
            for f in factors:
                combos = [c + [t] for c in combos for t in expand(f)]
            result = [A.scale(coeff, A.mul(*c)) for c in combos]
        elif isinstance(expr, HadamardProduct):
            # Only the adjoint factor (the one holding a delta) is a sum of paths.
            combos = [[]]
            for f in expr.args:
                combos = [c + [t] for c in combos for t in (expand(f) if _has_adjoint(f, defined) else [f])]
            result = [A.had(*c) for c in combos]
        elif isinstance(expr, Transpose):
            result = [A.transpose(t) for t in expand(expr.arg)]
        else:
            result = [expr]
        memo[expr] = result
        return result

    return expand(derivation.gradients[param])


def _has_adjoint(expr, defined) -> bool:
    return any(s in defined for s in A.symbols_in(expr))


def path_source(term) -> int:
    """The step t of the loss term E_t whose output gradient a path term starts from."""
    steps = [step_of(s) for s in A.symbols_in(term)]
    return next(t for family, t in filter(None, steps) if family in PATH_SOURCES)
