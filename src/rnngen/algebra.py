"""Matrix-expression building blocks shared by every stage.

SymPy supplies MatMul, MatAdd, HadamardProduct, Transpose and OneMatrix. We add
the two operators an RNN needs that SymPy lacks (an elementwise function named
by the activation registry, and a column-wise softmax) and small constructors
that keep expressions in the flat, simplified shape the adjoint rules and
printers expect. Our constructors fold away the identities that reverse mode
produces all the time (``1 o X = X``, ``0 + X = X``, ``1_{a,1} 1_{1,b} = 1_{a,b}``),
so derived expressions stay as short as a careful person would write them.

Data matrices have one column per sequence of the batch; their column count is
the symbol ``B``. A bias ``b`` (``n x 1``) enters as ``b 1^T`` with
``1^T = OneMatrix(1, B)``, and its adjoint comes out as ``d 1`` (a sum over the
batch) from the ordinary MatMul rule, with no special case.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, OneMatrix, Transpose
from sympy.core.symbol import Str
from sympy.matrices.expressions.matexpr import MatrixExpr

#: Columns of a data matrix: the sequences of a batch (or, once stacked, all
#: time steps of all sequences).
B = sp.Symbol("B", integer=True, positive=True)


class Elementwise(MatrixExpr):
    """``f(A)`` applied entry by entry; ``f`` names an entry of the activation registry."""

    def __new__(cls, fn, arg):
        fn = fn if isinstance(fn, Str) else Str(fn)
        return MatrixExpr.__new__(cls, fn, arg)

    @property
    def fn(self) -> str:
        return self.args[0].name

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self):
        return self.args[1].shape


class Softmax(MatrixExpr):
    """Column-wise softmax: each column of the argument becomes a distribution."""

    def __new__(cls, arg):
        return MatrixExpr.__new__(cls, arg)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self):
        return self.args[0].shape


class LogSoftmax(Softmax):
    """Column-wise ``log(softmax(A))``, kept whole so it can be printed stably (log-sum-exp)."""


class Columnwise(MatrixExpr):
    """``f(A, Y, ...)`` computed column by column (one sequence's vectors at a time).

    ``f`` names an entry of the column-function registry (``activations.columnwise``): the stable
    form of an output/loss pair that no entrywise function can write, such as ``log(1 - softmax(o))``.
    The result has the shape of the first operand.
    """

    def __new__(cls, fn, *operands):
        fn = fn if isinstance(fn, Str) else Str(fn)
        return MatrixExpr.__new__(cls, fn, *operands)

    @property
    def fn(self) -> str:
        return self.args[0].name

    @property
    def operands(self) -> tuple:
        return self.args[1:]

    @property
    def shape(self):
        return self.args[1].shape


class Concat(MatrixExpr):
    """Blocks side by side along ``axis`` (1: columns, 0: rows): the gradient of a parameter whose
    blocks the derivation treats as matrices of their own (``dV = [dV^f, dV^b]``)."""

    def __new__(cls, axis, *parts):
        return MatrixExpr.__new__(cls, sp.Integer(axis), *parts)

    @property
    def axis(self) -> int:
        return int(self.args[0])

    @property
    def parts(self) -> tuple:
        return self.args[1:]

    @property
    def shape(self):
        first = self.parts[0].shape
        total = sum((p.shape[self.axis] for p in self.parts), sp.S.Zero)
        return (first[0], total) if self.axis == 1 else (total, first[1])


def ones(rows, cols) -> OneMatrix:
    return OneMatrix(rows, cols)


def is_ones(expr) -> bool:
    return isinstance(expr, OneMatrix)


def is_repeated_row(expr) -> bool:
    """True for ``1 r``: a row ``r`` (a step's mask) repeated down every row of a product."""
    return isinstance(expr, MatMul) and isinstance(expr.args[0], OneMatrix) and expr.args[0].shape[1] == 1


def is_repeated_column(expr) -> bool:
    """True for ``c 1ᵀ``: a column ``c`` (a bias) repeated for every sequence."""
    return isinstance(expr, MatMul) and isinstance(expr.args[-1], OneMatrix) and expr.args[-1].shape[0] == 1


def split_coeff(expr):
    """Return ``(c, M)`` with ``expr == c * M`` and ``c`` a plain number."""
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        if coeff != 1:
            rest = mats[0] if len(mats) == 1 else MatMul(*mats)
            return coeff, rest
    return sp.S.One, expr


def scale(coeff, expr):
    if coeff == 0:
        return None
    if coeff == 1:
        return expr
    inner_coeff, inner = split_coeff(expr)
    coeff = coeff * inner_coeff
    if coeff == 1:
        return inner
    return MatMul(coeff, *(inner.args if isinstance(inner, MatMul) else (inner,)))


def mul(*factors):
    """Matrix product that drops identities and merges ``1_{a,1} 1_{1,b}`` into ``1_{a,b}``.

    A ``None`` factor stands for zero and makes the whole product zero.
    """
    if any(f is None for f in factors):
        return None
    coeff = sp.S.One
    mats = []
    for factor in factors:
        if isinstance(factor, (int, sp.Number)):
            coeff *= factor
            continue
        c, m = split_coeff(factor)
        coeff *= c
        parts = m.args if isinstance(m, MatMul) else (m,)
        for part in parts:
            if isinstance(part, sp.Identity) or part.shape == (1, 1) and is_ones(part):
                continue
            if mats and is_ones(mats[-1]) and is_ones(part) and mats[-1].shape[1] == 1:
                mats[-1] = ones(mats[-1].shape[0], part.shape[1])
                continue
            mats.append(part)
    if not mats:
        raise ValueError("a product needs at least one matrix factor")
    sums = [i for i, m in enumerate(mats) if isinstance(m, MatAdd)]
    if coeff < 0 and len(sums) == 1 and all(split_coeff(t)[0] < 0 for t in mats[sums[0]].args):
        # -(-a - b) = a + b: the stable forms of logs bring such double negations
        coeff = -coeff
        mats[sums[0]] = add(*[neg(t) for t in mats[sums[0]].args])
    body = mats[0] if len(mats) == 1 else MatMul(*mats)
    return scale(coeff, body)


def add(*terms):
    """Sum that skips zero (``None``) terms; ``None`` when every term is zero.

    The terms keep the order they are given in, so printed sums read in the
    order the derivation produced them (SymPy would sort them).
    """
    kept = [t for t in terms if t is not None]
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    flat = []
    for t in kept:
        flat.extend(t.args if isinstance(t, MatAdd) else (t,))
    return MatAdd(*flat, evaluate=False)


def had(*factors):
    """Hadamard product that drops all-ones factors and pulls scalar factors out front."""
    if any(f is None for f in factors):
        return None
    coeff = sp.S.One
    kept = []
    for factor in factors:
        c, m = split_coeff(factor)
        coeff *= c
        if is_ones(m):
            continue
        kept.extend(m.args if isinstance(m, HadamardProduct) else (m,))
    if not kept:
        return scale(coeff, ones(*factors[0].shape))
    body = kept[0] if len(kept) == 1 else HadamardProduct(*kept, evaluate=False)
    return scale(coeff, body)


def neg(expr):
    return scale(-1, expr)


def sub(a, b):
    return add(a, neg(b))


def transpose(expr):
    """``expr^T`` pushed down to the symbols (``(A B)^T = B^T A^T``, ``(A^T)^T = A``)."""
    if isinstance(expr, Transpose):
        return expr.arg
    if isinstance(expr, OneMatrix):
        return ones(expr.shape[1], expr.shape[0])
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        return scale(coeff, mul(*[transpose(m) for m in reversed(mats)]))
    if isinstance(expr, MatAdd):
        return add(*[transpose(t) for t in expr.args])
    return Transpose(expr)


def reciprocal(expr):
    """Entrywise ``1 / A``."""
    return sp.HadamardPower(expr, -1)


def square(expr):
    """Entrywise ``A o A``."""
    return sp.HadamardPower(expr, 2)


def normalize(expr):
    """Rebuild ``expr`` bottom-up with the constructors above (after a substitution left it unsimplified)."""
    if not isinstance(expr, MatrixExpr) or not expr.args:
        return expr
    args = [normalize(a) for a in expr.args]
    if isinstance(expr, MatAdd):
        return add(*args)
    if isinstance(expr, MatMul):
        return mul(*args)
    if isinstance(expr, HadamardProduct):
        return had(*args)
    if isinstance(expr, Transpose):
        return transpose(args[0])
    return expr.func(*args)


def symbols_in(expr) -> list:
    """The MatrixSymbols an expression reads, in first-seen order (deterministic)."""
    seen: dict = {}
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.MatrixSymbol):
            seen.setdefault(node, None)
    return list(seen)
