"""Reads the final formulas of a derivation document and runs them with NumPy.

Independent of rnngen's printers and program: it parses the LaTeX text as a
reader would (symbols, juxtaposition for products, odot, transposes,
ones vectors, the few functions the formulas use) and evaluates it for one
sequence in the document's own notation: column vectors (x_t is n_x x 1,
X_{1:T} has the steps side by side) or row vectors (x^t is 1 x n_x,
X^{1:T} has the steps stacked). A construct it does not know is an error,
so a formula cannot silently drop out of the check.
"""

from __future__ import annotations

import re

import numpy as np

SECTION = r"\section{The formulas the code runs}"


class Ones:
    """The vector of ones, ``1`` (a column) or ``1^T`` (a row); its size comes from what it multiplies."""

    def __init__(self, row: bool = False, matrix: bool = False):
        self.row, self.matrix = row, matrix

    @property
    def T(self):
        return Ones(not self.row, self.matrix)


def _value(v):
    """Ones in a sum or an entrywise product: the number 1, broadcast by NumPy."""
    return 1.0 if isinstance(v, Ones) else v


def _matmul(a, b):
    if isinstance(a, Ones) and isinstance(b, Ones):
        return Ones(matrix=True) if not a.row and b.row else None
    if isinstance(b, Ones):  # A 1 and A 1 1^T sum each row; b 1^T repeats b (NumPy broadcasts it)
        return a.sum(axis=1, keepdims=True) if b.matrix or not b.row else a
    if isinstance(a, Ones):  # 1^T A and 1 1^T A sum each column; 1 b repeats b
        return b.sum(axis=0, keepdims=True) if a.matrix or a.row else b
    return a @ b


#: Families written with an accent; the others are their letter in lower case.
_FAMILY = {
    r"\tilde{Z}": "pre_z",
    r"\tilde{z}": "pre_z",
    r"\hat{Y}": "yhat",
    r"\hat{y}": "yhat",
    "{F'}": "fprime",
    "{f'}": "fprime",
}
_SYMBOL = re.compile(
    r"(?P<base>\\tilde\{\\(?:delta|Delta)\}|\\(?:delta|Delta)|\\tilde\{[zZ]\}|\\hat\{[yY]\}|\{[fF]'\}|[XYZHOxyzho])"
    r"(?P<sup>\^\{(?!\\top)(?:\\hat\{y\}|[^{}])*\})?(?P<sub>_\{[^{}]*\})?"
)
_TOKENS = [
    ("EXP", r"e\^\{"),  # e^{a}
    ("IVL", r"\["),  # Iverson bracket [a > 0]
    ("IVR", r"\s*>\s*0\]"),
    ("PAIR", r"g_\{\\mathrm\{(sse|bce)\}\}(?=\()"),  # a softmax pair's output gradient g(o, y)
    ("LP", r"\\left\(|\\bigl\(|\(|\{"),
    ("RP", r"\\right\)|\\bigr\)|\)|\}|, 0\)"),
    ("COMMA", r","),
    ("NUM", r"\\tfrac\{(\d+)\}\{(\d+)\}|\d+(?:\.\d+)?"),
    ("HAD", r"\\odot"),
    ("DIV", r"\\oslash"),
    ("ADD", r"\+"),
    ("SUB", r"-"),
    ("TR", r"\^\{\\top\}"),
    ("ONE", r"\\mathbf\{1\}"),
    (
        "FN",
        r"\\log\\operatorname\{softmax\}|\\operatorname\{(?:softmax|softplus|sech\}\^2)\}?|\\tanh|\\sigma|\\log|\\max",
    ),
    ("CUSTOM", r"f'?(?=\()"),  # a custom activation f and its derivative f', given to the reader
    ("PARAM", r"[A-Za-z](?:_\{[a-z0-9]+\})?"),
    ("SKIP", r"\s+|\\,"),
]


class Reader:
    """Runs the final formulas of one document for one sequence.

    Args:
        tex: the whole document.
        row: True for the row notation.
        params: parameter name -> array in the user's shape (vectors 1-D).
        xs: the inputs, (T, n_x); ys: step -> target vector (one-hot for classes).
        custom: ``{"f": f, "f'": f'}`` on arrays, for a custom activation (its legend defines them).
    """

    def __init__(self, tex: str, row: bool, params: dict, xs, ys: dict, custom=None):
        self.custom = custom or {}
        self.row = row
        self.axis = 0 if row else 1  # the axis along which steps are stacked
        self.params = {name: self._vector(np.asarray(v, float)) if np.ndim(v) == 1 else v for name, v in params.items()}
        self.steps: dict = {}  # (family, t) -> vector
        for t, x in enumerate(xs, 1):
            self.steps["x", t] = self._vector(x)
        for t, y in ys.items():
            self.steps["y", t] = self._vector(y)
        self.steps["h", 0] = self.params["h0"]
        self.gradients: dict = {}
        self.loss = None
        self.lines = formula_lines(tex)

    def _vector(self, v):
        return v.reshape(1, -1) if self.row else v.reshape(-1, 1)

    def run(self) -> None:
        for line in self.lines:
            line, steps = _steps(line.replace("&=", "="))
            # one formula may hold equations that alternate step by step: z_t = ..., \qquad h_t = f(z_t)
            equations = [eq.split(" = ", 1) for eq in line.split(r", \qquad ")]
            for t in steps:
                for lhs, rhs in equations:
                    self._assign(lhs.strip(), self._evaluate(rhs.strip(), t), t)

    # --- assignment -----------------------------------------------------------------------

    def _assign(self, lhs: str, value, t) -> None:
        grad = re.fullmatch(r"\\frac\{\\partial E\}\{\\partial (.+)\}", lhs)
        if grad:
            name = grad.group(1).replace("{", "").replace("}", "").replace("^", "_")
            self.gradients["h0" if name == "h_0" else name] = value
            return
        if lhs == "E":
            self.loss = float(np.asarray(value).reshape(()))
            return
        family, index = self._parse_symbol(lhs)
        if isinstance(index, tuple):  # stacked steps: store each
            lo, hi = index
            for k, part in zip(range(lo, hi + 1), np.split(value, hi - lo + 1, axis=self.axis)):
                self.steps[family, k] = part
        else:
            self.steps[family, _step(index, t)] = value

    # --- symbols -------------------------------------------------------------------------------

    def _parse_symbol(self, text: str):
        m = _SYMBOL.fullmatch(text.strip())
        if not m:
            raise ValueError(f"not a symbol: {text!r}")
        return self._symbol(m)

    def _symbol(self, m):
        base, sup, sub = m.group("base"), m.group("sup"), m.group("sub")
        sup = sup[2:-1] if sup else None
        sub = sub[2:-1] if sub else None
        if "delta" in base.lower():  # delta^{z}_{t} (column) or delta^{z,t} (row)
            letter, _, index = (sup or "").partition(",")
            index = index or sub
            family = "pre_dh" if "tilde" in base else "d" + ("yhat" if letter == r"\hat{y}" else letter)
        else:
            index = sup if self.row else sub
            family = _FAMILY.get(base, base.lower())
        if index is None:
            raise ValueError(f"a symbol without a step: {m.group(0)!r}")
        if ":" in index:
            lo, hi = index.split(":")
            return family, (int(lo), int(hi))
        return family, index

    def _lookup(self, family, index, t):
        if isinstance(index, tuple):
            lo, hi = index
            return np.concatenate([self.steps[family, k] for k in range(lo, hi + 1)], axis=self.axis)
        return self.steps[family, _step(index, t)]

    # --- expressions -----------------------------------------------------------------------------

    def _evaluate(self, text: str, t):
        self.tokens = self._tokenize(text)
        self.pos = 0
        value = self._sum(t)
        if self.pos != len(self.tokens):
            raise ValueError(f"unread input at {self.tokens[self.pos :]!r} in {text!r}")
        return value

    def _tokenize(self, text: str) -> list:
        tokens, i = [], 0
        while i < len(text):
            m = _SYMBOL.match(text, i)
            if m and (m.group("sup") or m.group("sub")):
                tokens.append(("SYM", m))
                i = m.end()
                continue
            for kind, pattern in _TOKENS:
                m = re.compile(pattern).match(text, i)
                if m:
                    if kind != "SKIP":
                        tokens.append((kind, m))
                    i = m.end()
                    break
            else:
                raise ValueError(f"unknown LaTeX at {text[i : i + 30]!r}")
        return tokens

    def _peek(self):
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def _take(self, kind):
        if self._peek() != kind:
            raise ValueError(f"expected {kind}, found {self.tokens[self.pos : self.pos + 3]!r}")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def _sum(self, t):
        sign = 1.0
        if self._peek() == "SUB":
            self._take("SUB")
            sign = -1.0
        value = self._product(t)
        value = -_value(value) if sign < 0 else value
        while self._peek() in ("ADD", "SUB"):
            op = self._take(self._peek()).group(0)
            right = _value(self._product(t))
            value = _value(value) + right if op == "+" else _value(value) - right
        return value

    def _product(self, t):
        coeff, value = 1.0, None  # a number in front (\tfrac{1}{2}) scales the product
        while True:
            if value is not None and self._peek() in ("HAD", "DIV"):
                op = self._take(self._peek())
                right = _value(self._factor(t))
                value = _value(value) * right if "odot" in op.group(0) else _value(value) / right
            elif value is None or self._peek() in (
                "LP",
                "IVL",
                "EXP",
                "SYM",
                "ONE",
                "FN",
                "PAIR",
                "CUSTOM",
                "PARAM",
                "NUM",
            ):
                right = self._factor(t)
                if isinstance(right, float):
                    coeff *= right
                else:
                    value = right if value is None else _matmul(value, right)
            else:
                break
        if value is None:
            return coeff
        return value if coeff == 1.0 else coeff * _value(value)

    def _factor(self, t):
        value = self._atom(t)
        while self._peek() == "TR":
            self._take("TR")
            value = value.T
        return value

    def _atom(self, t):
        kind = self._peek()
        if kind == "LP":
            self._take("LP")
            value = self._sum(t)
            self._take("RP")
            return value
        if kind == "EXP":
            self._take("EXP")
            value = self._sum(t)
            self._take("RP")
            return np.exp(value)
        if kind == "IVL":
            self._take("IVL")
            value = self._sum(t)
            self._take("IVR")
            return (value > 0).astype(float)
        if kind == "NUM":
            m = self._take("NUM")
            return float(m.group(1)) / float(m.group(2)) if m.group(1) else float(m.group(0))
        if kind == "ONE":
            self._take("ONE")
            return Ones()
        if kind == "SYM":
            family, index = self._symbol(self._take("SYM"))
            return self._lookup(family, index, t)
        if kind == "PARAM":
            name = self._take("PARAM").group(0).replace("{", "").replace("}", "")
            return self.params[name]
        if kind == "CUSTOM":
            name = self._take("CUSTOM").group(0)
            self._take("LP")
            arg = self._sum(t)
            self._take("RP")
            return self.custom[name](arg)
        if kind == "PAIR":
            loss = self._take("PAIR").group(1)
            self._take("LP")
            o = self._sum(t)
            self._take("COMMA")
            y = self._sum(t)
            self._take("RP")
            return self._pair_gradient(loss, o, y)
        if kind == "FN":
            fn = self._take("FN").group(0)
            self._take("LP")
            arg = self._sum(t)
            self._take("RP")
            return self._apply(fn, arg)
        raise ValueError(f"unexpected {self.tokens[self.pos : self.pos + 3]!r}")

    def _pair_gradient(self, loss: str, o, y):
        """dE/do of softmax with a squared error or binary cross-entropy, by the plain chain rule."""
        axis = 1 if self.row else 0
        p = self._apply(r"\operatorname{softmax}", o)
        dp = p - y if loss == "sse" else -y / p + (1 - y) / (1 - p)
        return p * (dp - (p * dp).sum(axis=axis, keepdims=True))

    def _apply(self, fn: str, a):
        axis = 1 if self.row else 0  # softmax runs over the entries of one step
        if "softmax" in fn:
            s = a - a.max(axis=axis, keepdims=True)
            log = s - np.log(np.exp(s).sum(axis=axis, keepdims=True))
            return log if fn.startswith(r"\log") else np.exp(log)
        return {
            r"\tanh": np.tanh,
            r"\sigma": lambda v: 1 / (1 + np.exp(-v)),
            r"\operatorname{softplus}": lambda v: np.log1p(np.exp(v)),
            r"\operatorname{sech}^2": lambda v: 1 / np.cosh(v) ** 2,
            r"\log": np.log,
            r"\max": lambda v: np.maximum(v, 0.0),
        }[fn](a)


def _step(index: str, t) -> int:
    if index.isdigit():
        return int(index)
    m = re.fullmatch(r"t([+-]\d+)?", index)
    if not m:
        raise ValueError(f"a step index the reader does not know: {index!r}")
    return t + int(m.group(1) or 0)


def _steps(rhs: str):
    """``expr, \\quad t = 4, \\dots, 1`` -> (expr, [4, 3, 2, 1]); a formula without steps runs once."""
    m = re.search(r",\s*\\quad t = (\d+), (?:\\dots, )?(\d+)$", rhs)
    if not m:
        return rhs, [None]
    lo, hi = int(m.group(1)), int(m.group(2))
    return rhs[: m.start()], list(range(lo, hi + 1) if lo <= hi else range(lo, hi - 1, -1))


def formula_lines(tex: str) -> list:
    """The numbered lines of the last section, without their tags."""
    body = tex.split(SECTION, 1)[1]
    block = body.split(r"\begin{align}", 1)[1].split(r"\end{align}", 1)[0]
    lines = [re.sub(r"\\tag\{\d+\}", "", row).strip() for row in re.split(r"\\\\\s*\n", block)]
    return [line for line in lines if line]
