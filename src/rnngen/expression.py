"""Safe parsing of a custom activation written as an expression in ``x``.

The text is parsed by Python's ``ast`` module (which only parses, never runs
anything) and the tree is walked node by node: numbers, the variable ``x``,
``+ - * / **`` and calls of the functions in ``FUNCTIONS`` become SymPy
objects; every other construct is refused with a message naming it. User text
never reaches ``eval``, ``sympify`` or ``parse_expr`` (the last two evaluate
Python).
"""

from __future__ import annotations

import ast
import math

import sympy as sp

#: The variable of a custom activation. Real, so that |x|' = sign(x).
X = sp.Symbol("x", real=True)

#: Functions a custom activation may call: spelling -> SymPy function.
FUNCTIONS = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "sin": sp.sin,
    "cos": sp.cos,
    "atan": sp.atan,
    "asinh": sp.asinh,
}

_OPERATORS = {ast.Add: sp.Add, ast.Sub: None, ast.Mult: sp.Mul, ast.Div: None, ast.Pow: sp.Pow}
#: Bounds that keep a mistyped constant from making SymPy compute for ever (2**10**9).
MAX_LENGTH = 200
MAX_CONSTANT = 1e6
MAX_EXPONENT = 16


class ExpressionError(ValueError):
    """A custom activation that cannot be used; the message says why and what is allowed."""


ALLOWED = f"numbers, x, + - * / **, and the functions {', '.join(FUNCTIONS)}"


def parse(text: str) -> sp.Expr:
    """The SymPy expression of ``text``, a function of ``X``; ExpressionError if it is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the custom activation is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ExpressionError(f"cannot parse {text!r} as an expression in x; allowed: {ALLOWED}") from None
    expr = _convert(tree.body, text)
    if X not in expr.free_symbols:
        raise ExpressionError(f"the custom activation {text!r} does not depend on x")
    return expr


def _refuse(what: str, text: str):
    raise ExpressionError(f"{what} is not allowed in a custom activation ({text!r}); allowed: {ALLOWED}")


def _convert(node, text):
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _refuse(f"the constant {value!r}", text)
        if abs(value) > MAX_CONSTANT:
            _refuse(f"a constant larger than {MAX_CONSTANT:g}", text)
        return sp.Integer(value) if isinstance(value, int) else sp.Float(repr(value))
    if isinstance(node, ast.Name):
        if node.id != "x":
            _refuse(f"the name {node.id!r} (the variable is x)", text)
        return X
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _convert(node.operand, text)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _convert(node.left, text), _convert(node.right, text)
        if isinstance(node.op, ast.Pow) and right.is_number and abs(float(right)) > MAX_EXPONENT:
            _refuse(f"an exponent larger than {MAX_EXPONENT}", text)
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Div):
            if right.is_zero:
                _refuse("division by zero", text)
            return left / right
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        _refuse("'^' (write powers as **)", text)
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            _refuse("a call of " + (repr(name) if name else "anything but a listed function"), text)
        if len(node.args) != 1 or node.keywords:
            _refuse(f"{name} with other than one argument", text)
        return FUNCTIONS[name](_convert(node.args[0], text))
    if isinstance(node, ast.Attribute):
        _refuse("attribute access", text)
    _refuse(f"the construct {type(node).__name__}", text)
