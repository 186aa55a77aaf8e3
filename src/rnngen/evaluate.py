"""Numeric evaluation of matrix expressions, straight from their definition.

Used to check derivations and rewrite passes without going through the code
printer: values are NumPy arrays in the math's own layout (column vectors, one
column per sequence), and every operator is evaluated the obvious way.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix

from rnngen import algebra as A
from rnngen.activations import columnwise, elementwise
from rnngen.families import Run, step_name
from rnngen.network import Block


def _softmax(a):
    e = np.exp(a - a.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _stacked_value(sym, env: dict):
    """``f[lo:hi]`` is the steps' values side by side."""
    return np.hstack([env[step_name(sym.family.key, t)] for t in range(sym.lo, sym.hi + 1)])


def size_of(d, dims: dict) -> int:
    """The value of a dimension ``d`` (a size symbol, a number, or a sum of sizes) given ``dims`` (by symbol).

    A size symbol or a number is read directly: SymPy's ``subs`` costs milliseconds, and every term
    with a vector of ones asks for its sizes.
    """
    if d in dims:
        return int(dims[d])
    d = sp.sympify(d)
    return int(d) if d.is_Integer else int(d.subs(dims))


def evaluate(expr, env: dict, dims: dict, memo: dict | None = None):
    """Value of ``expr`` given symbol values ``env`` (by name) and sizes ``dims`` (by symbol).

    A time-stacked symbol ``f[lo:hi]`` that ``env`` lacks is built from the steps' values.
    ``memo``, if given, keeps the value of every subexpression, for many expressions that share
    parts and are evaluated at the same ``env`` (the terms of a sum over paths).
    """

    def size(d):
        return size_of(d, dims)

    def ones(shape, rows=None):
        r, c = (size(d) for d in shape)
        return np.ones((rows if rows is not None else r, c))

    def add(values):
        # B counts the columns of one step, or of many stacked steps: a term
        # with the columns of one step (b 1^T) is repeated across the others.
        width = max(v.shape[1] for v in values)
        return sum(v if v.shape[1] == width else np.tile(v, (1, width // v.shape[1])) for v in values)

    def ev(e):
        if memo is None:
            return value(e)
        if e not in memo:
            memo[e] = value(e)
        return memo[e]

    def value(e):
        if isinstance(e, Block) and e.name not in env:  # a block of a parameter: a slice of its value
            start = size(e.offset)
            cut = [slice(None), slice(None)]
            cut[e.axis] = slice(start, start + size(e.width))
            return env[e.param][tuple(cut)]
        if isinstance(e, MatrixSymbol):
            return env[e.name] if e.name in env else _stacked_value(e, env)
        if isinstance(e, A.Concat):
            return np.concatenate([ev(p) for p in e.parts], axis=e.axis)
        if isinstance(e, OneMatrix):
            return ones(e.shape)
        if isinstance(e, ZeroMatrix):
            return np.zeros(tuple(size(d) for d in e.shape))
        if isinstance(e, sp.Identity):
            return np.eye(size(e.shape[0]))
        if isinstance(e, MatAdd):
            return add([ev(a) for a in e.args])
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            out = ev(mats[0])
            for m in mats[1:]:
                out = out @ (ones(m.shape, rows=out.shape[1]) if isinstance(m, OneMatrix) else ev(m))
            return float(coeff) * out
        if isinstance(e, HadamardProduct):
            out = ev(e.args[0])
            for m in e.args[1:]:
                out = out * ev(m)
            return out
        if isinstance(e, HadamardPower):
            return ev(e.base) ** float(e.exp)
        if isinstance(e, Transpose):
            return ev(e.arg).T
        if isinstance(e, A.Elementwise):
            return elementwise(e.fn).ufunc(ev(e.arg))
        if isinstance(e, A.Columnwise):  # the registry's function reads rows: one sequence per row
            return columnwise(e.fn).ufunc(*[ev(a).T for a in e.operands]).T
        if isinstance(e, A.LogSoftmax):
            a = ev(e.arg)
            s = a - a.max(axis=0, keepdims=True)
            return s - np.log(np.exp(s).sum(axis=0, keepdims=True))
        if isinstance(e, A.Softmax):
            return _softmax(ev(e.arg))
        raise TypeError(f"cannot evaluate {type(e).__name__}: {e}")

    return ev(expr)


def run(statements, env: dict, dims: dict) -> dict:
    """Evaluate ``(symbol, expr)`` statements in order, adding each value to a copy of ``env``.

    A value assigned to stacked steps ``f[lo:hi]`` is also split into its steps.
    """
    env = dict(env)
    for symbol, expr in statements:
        value = evaluate(expr, env, dims)
        env[symbol.name] = value
        if isinstance(symbol, Run):
            for t, part in zip(range(symbol.lo, symbol.hi + 1), np.split(value, symbol.hi - symbol.lo + 1, axis=1)):
                env[step_name(symbol.family.key, t)] = part
    return env
