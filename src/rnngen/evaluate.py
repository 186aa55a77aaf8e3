"""Numeric evaluation of matrix expressions, straight from their definition.

Used to check derivations and rewrite passes without going through the code
printer: values are NumPy arrays in the math's own layout (column vectors, one
column per sequence), and every operator is evaluated the obvious way.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from rnngen import algebra as A


def _softmax(a):
    e = np.exp(a - a.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


_ELEMENTWISE = {"tanh": np.tanh, "log": np.log}


def evaluate(expr, env: dict, dims: dict):
    """Value of ``expr`` given symbol values ``env`` (by name) and sizes ``dims`` (by symbol)."""

    def size(d):
        return int(sp.sympify(d).subs(dims))

    def ev(e):
        if isinstance(e, MatrixSymbol):
            return env[e.name]
        if isinstance(e, OneMatrix):
            return np.ones((size(e.shape[0]), size(e.shape[1])))
        if isinstance(e, sp.Identity):
            return np.eye(size(e.shape[0]))
        if isinstance(e, MatAdd):
            return sum(ev(a) for a in e.args)
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            out = ev(mats[0])
            for m in mats[1:]:
                out = out @ ev(m)
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
            return _ELEMENTWISE[e.fn](ev(e.arg))
        if isinstance(e, A.LogSoftmax):
            a = ev(e.arg)
            s = a - a.max(axis=0, keepdims=True)
            return s - np.log(np.exp(s).sum(axis=0, keepdims=True))
        if isinstance(e, A.Softmax):
            return _softmax(ev(e.arg))
        raise TypeError(f"cannot evaluate {type(e).__name__}: {e}")

    return ev(expr)


def run(statements, env: dict, dims: dict) -> dict:
    """Evaluate ``(symbol, expr)`` statements in order, adding each value to a copy of ``env``."""
    env = dict(env)
    for symbol, expr in statements:
        env[symbol.name] = evaluate(expr, env, dims)
    return env
