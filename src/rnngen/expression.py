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

import sympy as sp

#: The variable of a custom activation. Real, so that |x|' = sign(x).
X = sp.Symbol("x", real=True)

#: The one table of the scalar functions: spelling a custom activation may call -> (SymPy function,
#: NumPy spelling). The parser, the scalar printer and the oracle (which evaluates the SymPy
#: functions) all read it. ``sign`` is no spelling a user may write: it only appears in a derivative
#: (``|x|' = sign(x)``), so it is listed apart.
TABLE = {
    "exp": (sp.exp, "np.exp"),
    "log": (sp.log, "np.log"),
    "sqrt": (sp.sqrt, "np.sqrt"),
    "abs": (sp.Abs, "np.abs"),
    "tanh": (sp.tanh, "np.tanh"),
    "sinh": (sp.sinh, "np.sinh"),
    "cosh": (sp.cosh, "np.cosh"),
    "sin": (sp.sin, "np.sin"),
    "cos": (sp.cos, "np.cos"),
    "atan": (sp.atan, "np.arctan"),
    "asinh": (sp.asinh, "np.arcsinh"),
}
DERIVATIVE_ONLY = {"sign": (sp.sign, "np.sign")}
#: Functions a custom activation may call: spelling -> SymPy function.
FUNCTIONS = {name: fn for name, (fn, _) in TABLE.items()}
#: The NumPy spelling of every SymPy function a custom activation or its derivative may hold, by class name.
NUMPY = {fn.__name__: code for fn, code in (*TABLE.values(), *DERIVATIVE_ONLY.values())}

_OPERATORS = {ast.Add: sp.Add, ast.Sub: None, ast.Mult: sp.Mul, ast.Div: None, ast.Pow: sp.Pow}
#: Bounds that keep a mistyped constant from making SymPy compute for ever (2**10**9).
MAX_LENGTH = 200
MAX_CONSTANT = 1e6
MAX_EXPONENT = 16
#: Largest size of a computed constant (``1e6**16``, ``exp(20)``): far inside float64, so that the
#: module's arithmetic on it stays finite, and small enough for SymPy to evaluate at once.
MAX_VALUE = 1e100


class ExpressionError(ValueError):
    """A custom activation that cannot be used; the message says why and what is allowed."""


ALLOWED = f"numbers, x, + - * / **, and the functions {', '.join(FUNCTIONS)}"


def check_length(text: str) -> None:
    """ExpressionError if ``text`` is too long to parse (checked before any parsing: a deep tree
    of a long text exhausts the parser's recursion)."""
    if len(text.strip()) > MAX_LENGTH:
        raise ExpressionError(f"the custom activation is longer than {MAX_LENGTH} characters")


def parse(text: str) -> sp.Expr:
    """The SymPy expression of ``text``, a function of ``X``; ExpressionError if it is not allowed."""
    check_length(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):  # ValueError: a literal past Python's digit limit
        raise ExpressionError(f"cannot parse {text!r} as an expression in x; allowed: {ALLOWED}") from None
    expr = _convert(tree.body, text)
    if X not in expr.free_symbols:
        raise ExpressionError(f"the custom activation {text!r} does not depend on x")
    return expr


def check_constants(expr: sp.Expr, text: str) -> None:
    """ExpressionError unless every constant part of ``expr`` is a real number of at most ``MAX_VALUE``.

    SymPy folds constants across the tree (``1e6**16 * x * 1e6**16`` has ``1e192``, ``exp(2) exp(3)``
    is ``exp(5)``), so the finished expression (and its derivative) is checked, not only what was written.
    """
    for node in sp.preorder_traversal(expr):
        if node.is_number:
            _check_value(node, text)


def _check_value(node: sp.Expr, text: str) -> None:
    try:
        value = complex(node.evalf(17))
    except (TypeError, ValueError, OverflowError):
        value = complex("nan")
    if value.imag != 0:
        _refuse(f"the complex constant {node}", text)
    if not abs(value.real) <= MAX_VALUE:  # also nan: past float64's range
        size = f"{value.real:.3g}" if abs(value.real) < float("inf") else "past float64's range"
        _refuse(f"a constant part larger than {MAX_VALUE:g} ({size})", text)


def _refuse(what: str, text: str):
    raise ExpressionError(f"{what} is not allowed in a custom activation ({text!r}); allowed: {ALLOWED}")


def _convert(node, text):
    expr = _node(node, text)
    if expr.is_number:  # checked as it is built: exp(exp(1e6)) must not reach SymPy's evaluation
        _check_value(expr, text)
    return expr


def _node(node, text):
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _refuse(f"the constant {value!r}", text)
        if not abs(value) <= MAX_CONSTANT:  # also inf and nan; an int of any size compares exactly
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
        if isinstance(node.op, ast.Pow) and right.is_number and not abs(float(right)) <= MAX_EXPONENT:
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
