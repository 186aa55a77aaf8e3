"""Reads a derivation document's equations and evaluates them with NumPy.

Independent of rnngen's printers and program: it parses the LaTeX text as a
reader would (symbols, juxtaposition for products, odot, transposes,
ones vectors, the few functions the formulas use) and evaluates it for one
sequence in the document's own notation: column vectors (x_t is n_x x 1,
X_{1:T} has the steps side by side) or row vectors (x^t is 1 x n_x,
X^{1:T} has the steps stacked). A construct it does not know is an error,
so a formula cannot silently drop out of the check.

``Reader`` runs the final formulas as a program. ``equation_checker.Checker``
evaluates every other numbered equation (Jacobian fractions, sums and products
with limits, entry-wise formulas, norms) against independent numbers.
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
    r"\bar{H}": "hbar",  # a masked network's new state, before the mask picks it or the old one
    r"\bar{h}": "hbar",
    r"\check{H}": "hlast",  # a masked many-to-one network's state at each sequence's last real step
    r"\check{h}": "hlast",
}
#: Written without a step: the total loss E, and in a formula written entry by entry the
#: vectors of the step at hand (g(o, y), d = \hat{y} - y). Upper-case letters may be matrix names.
_BARE = r"E|[xyzho]|\\hat\{y\}|\\tilde\{z\}"
#: Where an entry-wise formula binds a name for its own use: ``..., \quad d = \hat{y} - y`` at its end.
_WHERE = re.compile(r",\s*\\quad\s+(?P<name>[a-z])\s+=\s+(?P<value>[^=]+)$")
#: The key of an environment that holds the names a where-clause binds (no step letter is a word).
_WHERE_BOUND = "where"
_SYMBOL = re.compile(
    r"(?P<base>\\tilde\{\\(?:delta|Delta)\}|\\(?:delta|Delta)(?!_\{ij\})|\\tilde\{[zZ]\}|\\hat\{[yY]\}|\{[fF]'\}"
    r"|\\bar\{[hH]\}|\\check\{[hH]\}|[XYZHOMxyzhomDE](?![A-Za-z]))"
    r"(?P<sup>\^\{(?!\\top|\+)(?:\\hat\{y\}|\\bar\{h\}|\\check\{h\}|\\mathrm\{[fb]\}|[^{}])*\})?(?P<sub>_\{[^{}]*\}|_[ij](?![A-Za-z]))?"
)


class Letters:
    """How a document spells its families, and which of them the forward pass must define.

    An Elman network's document writes ``z_t, h_t`` and the output's ``o_t``. A gated cell's writes
    its gates with PyTorch's letters, the LSTM's ``i, f, g, o`` and the GRU's ``r, z, n`` (their
    pre-activations ``{a_{i}}_t``, their local Jacobians ``{\\sigma'_{i}}_t`` and ``{f'_{g}}_t``), the
    LSTM's memory cell ``c_t`` (its activation ``\\phi_t``; the output bias is ``c`` without a step)
    and the GRU's ``{a_{hn}}_t``; its output pre-activation is ``s_t``. Keys are the reader's own:
    the output's is ``o`` in both, as the module's ``forward`` names it; a gate's value is ``g`` and
    its letter (``go``), its pre-activation ``z`` and the letter (``zo``), its Jacobian ``j`` and the letter.
    """

    def __init__(self, gated: bool):
        self.gated = gated
        if not gated:
            self.symbol, self.bare = _SYMBOL, _BARE
            self.forward, self.optional, self.cell = FORWARD, OPTIONAL_FORWARD, ("z", "h")
            return
        gate = r"\{[aA]_\{[a-z]+\}\}"  # a gate's pre-activation, {a_{i}}, {A_{hn}} stacked
        self.symbol = re.compile(
            r"(?P<base>\\tilde\{\\(?:delta|Delta)\}|\\(?:delta|Delta)(?!_\{ij\})"
            rf"|\\tilde\{{{gate}\}}|{gate}|\{{\\(?:sigma|Sigma)'_\{{[a-z]+\}}\}}|\{{[fF]'_\{{[a-z]+\}}\}}"
            r"|\\hat\{[yY]\}|\\bar\{[hHcC]\}|\\check\{[hH]\}|\\(?:phi|Phi)(?![A-Za-z])"
            r"|[XYHMSIFGORZNCxyhmsifgorzncDE](?![A-Za-z]))"
            rf"(?P<sup>\^\{{(?!\\top|\+)(?:\\hat\{{y\}}|\\bar\{{[hc]\}}|\\check\{{h\}}|\\mathrm\{{[fb]\}}|{gate}|[^{{}}])*\}})?"
            r"(?P<sub>_\{[^{}]*\}|_[ij](?![A-Za-z]))?"
        )
        self.bare = r"E|[xyhs]|\\hat\{y\}"
        gates = tuple(f"g{k}" for k in "ifgorzn")
        cell = gates + tuple(f"z{k}" for k in "ifgorzn") + ("zhn", "cell", "phi", "h", "hbar", "cbar")
        self.forward, self.optional, self.cell = ("h", "o", "yhat"), cell + ("hlast",), cell

    def key(self, spelled: str, delta: bool = False) -> str:
        """The family a letter (with its accent, without step or tag) stands for; ``delta``: a delta's letter."""
        if not self.gated:
            return (
                _FAMILY.get(spelled, spelled)
                if delta
                else _FAMILY.get(spelled, spelled.lower() if spelled not in "DE" else spelled)
            )
        m = re.fullmatch(r"(\\tilde\{)?\{[aA]_\{([a-z]+)\}\}\}?", spelled)
        if m:  # a gate's pre-activation, or (with the tilde) its part that reads no recurrence
            return ("pre_z" if m.group(1) else "z") + m.group(2)
        m = re.fullmatch(r"\{(?:\\sigma|\\Sigma|f|F)'_\{([a-z]+)\}\}", spelled)
        if m:  # a gate's local Jacobian
            return "j" + m.group(1)
        if spelled in _GATED or spelled in "DE":
            return _GATED.get(spelled, spelled)
        return ("g" if spelled.lower() in "ifgorzn" else "") + spelled.lower()


#: A gated cell's letters that are not a gate's: the output's pre-activation, the memory cell and its activation.
_GATED = {
    **{k: v for k, v in _FAMILY.items() if "{" in k and "'" not in k and "tilde" not in k},
    "s": "o",
    "S": "o",
    "c": "cell",
    "C": "cell",
    r"\phi": "phi",
    r"\Phi": "phi",
    r"\bar{c}": "cbar",
    r"\bar{C}": "cbar",
}


#: A parameter: its letter, its chain's tag (layer, direction) above, its own subscript and its block below.
_PARAM_TAG = r"\^\{\(\d*(?:\\mathrm\{[fb]\})?\)\}"
_PARAM_SUB = r"_\{(?:[A-Za-z0-9,]|\\mathrm\{[fb]\})+\}"
_PARAM_PLAIN = rf"[A-Za-z][0-9]*(?:{_PARAM_TAG})?(?:{_PARAM_SUB})?"
_PARAM_BRACED = rf"\{{[A-Za-z][A-Za-z0-9]*\}}{_PARAM_TAG}(?:{_PARAM_SUB})?"
#: Tried before symbols: constructs that start like one.
_FIRST = [
    # a Jacobian (or gradient) fraction, d a / d b, or the immediate d+ a / d b
    (
        "JAC",
        r"\\frac\{\\partial(?P<plus>\^\{\+\})?\s*(?P<num>(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})+)\}"
        r"\{\\partial\s*(?P<den>(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})+)\}",
    ),
    ("KRON", r"\\delta_\{ij\}"),  # Kronecker delta of the entry indices
]
_TOKENS = [
    ("EMPTY", r"\{\}"),  # an empty group, {\hat{y}^{t}{}}^{\top}
    ("BMAT", r"\\begin\{bmatrix\}"),  # blocks: & side by side, \\ one above the other
    ("AMP", r"&"),
    ("ROW", r"\\\\"),
    ("EMAT", r"\\end\{bmatrix\}"),
    ("LP", r"\\underbrace\{"),  # a term under a brace that names where it came from: the label is no value
    ("LP", r"\\widetilde\{"),  # a truncated gradient: the reader's dE/dW is the module's (truncated) gradient
    ("RP", r"\}_\{\\text\{[^{}]*\}[^{}]*\}"),
    ("SUM", r"\\(?P<op>sum|prod)_\{(?P<var>[a-z])=(?P<lo>[^{}]+)\}\^\{(?P<hi>[^{}]+)\}"),
    # a sum over the entries, \sum_i, or over all but one, \sum_{i \ne j}
    ("SUMI", r"\\sum_(?:(?P<var>[ij])(?![A-Za-z])|\{(?P<skip_var>[ij]) \\ne (?P<skip>[ij])\})"),
    ("FRAC", r"\\frac(?=\{)"),
    ("NORM", r"\\Bigl\\\||\\Bigr\\\||\\\|"),
    ("LE", r"\\le(?![a-z])"),
    ("EXP", r"e\^\{"),  # e^{a}
    ("IVL", r"\["),  # Iverson bracket [a > 0]
    ("IVR", r"\s*>\s*0\]"),
    ("PAIR", r"g_\{\\mathrm\{(sse|bce)\}\}(?=\()"),  # a softmax pair's output gradient g(o, y)
    ("PARAM", _PARAM_BRACED),  # {Wxh}^{(1)}: a name of several letters with its chain's tag, before { opens a group
    ("LP", r"\\left\(|\\[Bb]igl[(\[]|\(|\{"),
    ("RP", r"\\right\)|\\[Bb]igr[)\]]|\)|\}|, 0\)"),
    ("COMMA", r","),
    ("NUM", r"\\tfrac\{(\d+)\}\{(\d+)\}|\d+(?:\.\d+)?"),
    ("HAD", r"\\odot"),
    ("DIV", r"\\oslash|/"),
    ("ADD", r"\+"),
    ("SUB", r"-"),
    ("TR", r"\^\{\\top\}"),
    ("ENTRY", r"_[ij](?![A-Za-z])"),  # an entry of what stands before it: d_j, g(o, y)_j
    ("POW", r"\^(?:\d|\{[^{}\\]+\})"),
    ("ONE", r"\\mathbf\{1\}"),
    (
        "FN",
        r"\\log\\operatorname\{softmax\}|\\operatorname\{(?:softmax|softplus|diag|sech\}\^2)\}?"
        r"|\\operatorname\{lrelu\}'?|\\tanh|\\sigma|\\log|\\max",
    ),
    ("GAMMA", r"\\gamma(?![a-z])"),
    ("ID", r"I(?![A-Za-z_{])"),  # the identity, its size from what it meets
    ("MUL", r"\\cdot(?![a-z])"),
    ("CUSTOM", r"f'?(?=\()"),  # a custom activation f and its derivative f', given to the reader
    ("PARAM", _PARAM_PLAIN),  # W, w_{i}, U^{(2)} (layer 2), U^{(2\mathrm{f})}_{\mathrm{b}} (a block), W_{x}
    ("SKIP", r"\s+|\\,|\\;"),
]


class Identity:
    """The identity matrix ``I``; its size comes from what it meets."""

    T = property(lambda self: self)


class Missing(LookupError):
    """The text reads a value that does not exist (a step past the ends, a target the loss has not)."""


def _dense(v, like):
    """Ones and I as arrays shaped for an operation with ``like``."""
    if isinstance(v, Identity):
        return np.eye(np.shape(like)[0]) if np.ndim(like) == 2 else 1.0
    return _value(v)


class Reader:
    """Runs the final formulas of one document for one sequence.

    Args:
        tex: the whole document.
        row: True for the row notation.
        params: parameter name -> array in the user's shape (vectors 1-D).
        xs: the inputs, (T, n_x); ys: step -> target vector (one-hot for classes).
        custom: ``{"f": f, "f'": f'}`` on arrays, for a custom activation (its legend defines them),
            or ``{"lrelu": ..., "lrelu'": ...}`` for leaky relu.
        blocks: block name (``V_f``) -> ``(parameter, axis, start, stop)``: the part of a stored
            parameter that a block names, for networks whose matrices act on stacked vectors.
        masks: a masked network's mask of the sequence, steps 1..T (0 or 1 each).
    """

    def __init__(
        self, tex: str, row: bool, params: dict, xs, ys: dict, custom=None, blocks=None, T=None, masks=None, gated=False
    ):
        self.letters = Letters(gated)
        # a gated cell's document writes the output bias b_y (c is its memory cell); the module calls it c
        self.aliases = {"b_y": "c"} if gated else {}
        self.custom = custom or {}
        self.blocks = blocks or {}
        self.row = row
        self.T = T or len(xs)  # a one-to-many network reads x_1 only
        self.axis = 0 if row else 1  # the axis along which steps are stacked
        self.params = {name: self._vector(np.asarray(v, float)) if np.ndim(v) == 1 else v for name, v in params.items()}
        self.steps: dict = {}  # (family, t) -> vector
        for t, x in enumerate(xs, 1):
            self.steps["x", t] = self._vector(x)
        for t, y in ys.items():
            self.steps["y", t] = self._vector(y)
        for t, m in enumerate([] if masks is None else masks, 1):  # a mask: 1 on a real step, 0 on a padded one
            self.steps["m", t] = np.full((1, 1), float(m))
        # each chain's initial state is a parameter: (family, step) -> its name
        self.initial = {_initial_step(name, self.T): name for name in params if _initial_step(name, self.T)}
        for key, name in self.initial.items():
            self.steps[key] = self.params[name]
        self.gradients: dict = {}
        self.block_gradients: dict = {}
        self.loss = None
        self.entrywise = False  # True while reading a formula written entry by entry (y_i, o_j)
        self.gamma = None
        self.tex = tex
        self._token_cache: dict = {}

    def _vector(self, v):
        return v.reshape(1, -1) if self.row else v.reshape(-1, 1)

    def run(self) -> None:
        for line in formula_lines(self.tex):
            line, steps = _steps(line.replace("&=", "="))
            # one formula may hold equations that alternate step by step: z_t = ..., \qquad h_t = f(z_t)
            equations = [eq.split(" = ", 1) for eq in line.split(r", \qquad ")]
            for t in steps:
                for lhs, rhs in equations:
                    self._assign(lhs.strip(), self._evaluate(rhs.strip(), {"t": t}), {"t": t})

    # --- assignment -----------------------------------------------------------------------

    def _assign(self, lhs: str, value, env) -> None:
        grad = re.fullmatch(r"\\frac\{\\partial E\}\{\\partial (.+)\}", lhs)
        if grad:
            name = self._param_of(grad.group(1))
            # a block's gradient is a value of its own, which its parameter's gradient then reads
            (self.block_gradients if name in self.blocks else self.gradients)[name] = value
            return
        if lhs == "E":
            self.loss = float(np.asarray(value).reshape(()))
            return
        family, index, _ = self._parse_symbol(lhs)
        if isinstance(index, tuple):  # stacked steps: store each
            lo, hi = index
            if np.shape(value)[self.axis] == 1:  # b 1^T: one vector repeated for every step
                value = np.repeat(value, hi - lo + 1, axis=self.axis)
            for k, part in zip(range(lo, hi + 1), np.split(value, hi - lo + 1, axis=self.axis)):
                self.steps[family, k] = part
        else:
            self.steps[family, self._step(index, env)] = value

    # --- symbols -------------------------------------------------------------------------------

    def _parse_symbol(self, text: str):
        m = self.letters.symbol.fullmatch(text.strip())
        if not m:
            raise ValueError(f"not a symbol: {text!r}")
        return self._symbol(m)

    def _symbol(self, m):
        """``(family, step index, entry index)``; the entry index is ``i``, ``j`` or None."""
        base, sup, sub = m.group("base"), m.group("sup"), m.group("sub")
        sup = sup[2:-1] if sup else None
        braced = bool(sub) and sub.startswith("_{")
        sub = (sub[2:-1] if braced else sub[1:]) if sub else None
        entry = None
        if sub in ("i", "j") and (self.row or not braced):  # y^{t}_{i} (row) or y_i: an entry; h_{j}: step j
            entry, sub = sub, None
        elif sub and sub.endswith((",i", ",j")):  # y_{t,i} (column)
            sub, entry = sub[:-2], sub[-1]
        # a layer and direction tag (2\mathrm{f}) in the superscript: the chain's suffix (2_f)
        tagged = _TAGGED.fullmatch(sup or "")
        head, rest = tagged.group("head"), tagged.group("rest")
        suffix = (tagged.group("layer") or "") + (f"_{tagged.group('dir')}" if tagged.group("dir") else "")
        suffix += f"[{tagged.group('age')}]" if tagged.group("age") else ""  # dz2_f[1]: age 1
        if "delta" in base.lower():  # delta^{z(2)}_{t} (column) or delta^{z(2),t} (row)
            letter, index = head, rest.lstrip(",") or sub
            family = ("pre_d" if "tilde" in base else "d") + self.letters.key(letter, delta=True) + suffix
        else:  # h^{(2)}_{t} (column) or h^{(2),t} (row)
            index = (head or rest.lstrip(",") or None) if self.row else sub
            family = self.letters.key(base) + suffix
        if index is None:
            if entry is None and base != "E" and not self.entrywise:
                raise ValueError(f"a symbol without a step: {m.group(0)!r}")
            # an entry, or a vector in a formula written entry by entry, is at the step at hand
            index = "t" if entry or base != "E" else None
        if index is not None and ":" in index:
            lo, hi = index.split(":")
            return family, (int(lo), int(hi)), entry
        return family, index, entry

    def _whole_symbol(self, text: str):
        """The match of ``text`` as one family's symbol: with a step or a tag, or a letter that stands alone
        (``E``); None for a parameter's letter (``V``, ``b_{y}``)."""
        m = self.letters.symbol.fullmatch(text.strip())
        if m and (m.group("sup") or m.group("sub") or re.fullmatch(self.letters.bare, m.group("base"))):
            return m
        return None

    def _param_of(self, text: str) -> str:
        """The parameter a gradient is taken by: ``W``, ``U2_{f}``, or a chain's initial state ``h^{(1)}_{0}``."""
        m = self._whole_symbol(text)
        if m:
            family, index, _ = self._symbol(m)
            key = (family, self._step(index, {}))
            if key not in self.initial:
                raise ValueError(f"{text!r} is no parameter: no chain starts at it")
            return self.initial[key]
        return self._param(text, self.params.keys() | self.blocks.keys())

    def _param(self, text: str, known) -> str:
        """The parameter a spelling names (``_param_name``), by the module's name (a gated document's b_y: c)."""
        name = _param_name(text, known)
        return self.aliases.get(name, name)

    def _step(self, index: str, env) -> int:
        """A step index (``3``, ``t-1``, ``j+1``, ``T``) as a number, the letters taken from ``env``."""
        terms = re.findall(r"([+-]?)\s*(\d+|[a-zT])\s*", index)
        if (
            not terms
            or re.sub(r"[\s+-]|\d+|[a-zT]", "", index)
            or "".join(a + b for a, b in terms) != index.replace(" ", "")
        ):
            raise ValueError(f"a step index the reader does not know: {index!r}")
        total = 0
        for sign, term in terms:
            if term.isdigit():
                value = int(term)
            elif term == "T":
                value = self.T
            elif env.get(term) is None:
                raise ValueError(f"a step letter {term!r} that nothing defines here")
            else:
                value = env[term]
            total += -value if sign == "-" else value
        return total

    def _lookup(self, family, index, env):
        if isinstance(index, tuple):
            lo, hi = index
            return np.concatenate([self.steps[family, k] for k in range(lo, hi + 1)], axis=self.axis)
        k = self._step(index, env)
        if (family, k) not in self.steps:
            raise Missing(f"the document reads {family} at step {k}, which does not exist")
        return self.steps[family, k]

    def _entries(self, value, entry):
        """A vector as its entries along axis 0 (index i) or axis 1 (index j)."""
        if entry is None:
            return value
        flat = np.asarray(value).reshape(-1)
        return flat.reshape(-1, 1) if entry == "i" else flat.reshape(1, -1)

    # --- expressions -----------------------------------------------------------------------------

    def _evaluate(self, text: str, env):
        saved = getattr(self, "tokens", None), getattr(self, "pos", 0)  # a Jacobian evaluates inside a formula
        self.tokens = self._tokenize(text)
        self.pos = 0
        try:
            value = self._sum(env)
            if self.pos != len(self.tokens):
                raise ValueError(f"unread input at {self.tokens[self.pos :]!r} in {text!r}")
        finally:
            self.tokens, self.pos = saved
        return value

    def _tokenize(self, text: str) -> list:
        if text in self._token_cache:
            return self._token_cache[text]
        tokens, i = [], 0
        while i < len(text):
            for kind, pattern in _FIRST:
                m = _compiled(pattern).match(text, i)
                if m:
                    tokens.append((kind, m))
                    i = m.end()
                    break
            else:
                m = self.letters.symbol.match(text, i)
                if m and (m.group("sup") or m.group("sub") or re.fullmatch(self.letters.bare, m.group("base"))):
                    tokens.append(("SYM", m))
                    i = m.end()
                    continue
                for kind, pattern in _TOKENS:
                    m = _compiled(pattern).match(text, i)
                    if m:
                        if kind not in ("SKIP", "EMPTY"):
                            tokens.append((kind, m))
                        i = m.end()
                        break
                else:
                    raise ValueError(f"unknown LaTeX at {text[i : i + 30]!r}")
        self._token_cache[text] = tokens
        return tokens

    def _peek(self):
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def _take(self, kind):
        if self._peek() != kind:
            raise ValueError(f"expected {kind}, found {self.tokens[self.pos : self.pos + 3]!r}")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def _add(self, a, b, sign: float):
        a, b = _dense(a, b), _dense(b, a)
        return a + b if sign > 0 else a - b

    def _sum(self, env):
        sign = 1.0
        if self._peek() == "SUB":
            self._take("SUB")
            sign = -1.0
        value = self._product(env)
        value = -_dense(value, value) if sign < 0 else value
        while self._peek() in ("ADD", "SUB"):
            op = self._take(self._peek()).group(0)
            value = self._add(value, self._product(env), 1.0 if op == "+" else -1.0)
        return value

    _STARTS = ("LP", "IVL", "EXP", "SYM", "ONE", "FN", "CUSTOM", "PARAM", "NUM", "JAC", "KRON", "FRAC")
    _STARTS += ("NORM", "ID", "GAMMA", "SUM", "SUMI", "MUL", "PAIR", "BMAT")

    def _product(self, env):
        coeff, value, read = 1.0, None, 0  # a number in front (\tfrac{1}{2}) scales the product
        while True:
            read += 1
            kind = self._peek()
            if value is not None and kind in ("HAD", "DIV"):
                op = self._take(kind)
                right = _dense(self._factor(env), value)
                value = _dense(value, right)
                value = value * right if "odot" in op.group(0) else value / right
            elif kind in ("SUM", "SUMI"):  # a sum or product over an index takes the rest of the term
                right = self._indexed(env)
                value = right if value is None else self._times(value, right)
            elif kind == "MUL":
                self._take("MUL")
            elif kind == "NORM" and self._closing_norm():
                break
            elif read == 1 or kind in self._STARTS:
                if kind not in self._STARTS:
                    raise ValueError(f"unexpected {self.tokens[self.pos : self.pos + 3]!r}")
                right = self._factor(env)
                if isinstance(right, float):
                    coeff *= right
                else:
                    value = right if value is None else self._times(value, right)
            else:
                break
        if value is None:
            return coeff
        return value if coeff == 1.0 else coeff * _dense(value, value)

    def _times(self, a, b):
        """Juxtaposition: a matrix product, or entry by entry in a formula written with entries."""
        if isinstance(a, Identity):
            return b
        if isinstance(b, Identity):
            return a
        if self.entrywise:
            return _value(a) * _value(b)
        if isinstance(a, float) or isinstance(b, float):
            return _value(a) * _value(b)
        return _matmul(a, b)

    def _closing_norm(self) -> bool:
        """Whether the norm bar at hand closes one (the count of bars so far in the formula is odd)."""
        return sum(1 for kind, _ in self.tokens[: self.pos] if kind == "NORM") % 2 == 1

    def _indexed(self, env):
        """``\\sum_{k=a}^{b}``, ``\\prod_{j=a}^{b}`` (later steps left), ``\\sum_i``: over the rest of the term."""
        m = self._take(self._peek())
        start = self.pos
        if m.group(0).startswith(r"\sum_") and "=" not in m.group(0):  # over the entries: i is axis 0, j axis 1
            var = m.group("var") or m.group("skip_var")
            value = _dense(self._product(env), 1.0)
            if m.group("skip"):  # all but one: i != j drops the diagonal of the (i, j) terms
                if m.group("skip") == var:
                    raise ValueError(f"a sum that skips its own index: {m.group(0)!r}")
                value = value * (1.0 - self._kronecker())
            return np.sum(value, axis=0 if var == "i" else 1, keepdims=True)
        var, op = m.group("var"), m.group("op")
        lo, hi = self._step(m.group("lo"), env), self._step(m.group("hi"), env)
        values = []
        for k in range(lo, hi + 1) if op == "sum" else range(hi, lo - 1, -1):
            self.pos = start
            values.append(self._product({**env, var: k}))
        if not values:  # an empty sum is 0, an empty product I; step over the term unread
            self._skip_term()
            return 0.0 if op == "sum" else Identity()
        total = values[0]
        for v in values[1:]:
            total = self._add(total, v, 1.0) if op == "sum" else self._times(total, v)
        return total

    def _skip_term(self) -> None:
        depth = 0
        while self.pos < len(self.tokens):
            kind = self._peek()
            closing = kind in ("RP", "IVR", "EMAT") or kind == "NORM" and self._closing_norm()
            if depth == 0 and (kind in ("ADD", "SUB", "LE", "AMP", "ROW") or closing):
                return
            depth += -1 if closing else kind in ("LP", "EXP", "IVL", "NORM", "BMAT")
            self.pos += 1

    def _factor(self, env):
        value = self._atom(env)
        while self._peek() in ("TR", "POW", "ENTRY"):
            m = self._take(self._peek())
            if m.group(0).startswith("_"):  # the entries of a vector: g(o, y)_j
                if np.ndim(value) != 2 or min(np.shape(value)) != 1:
                    raise ValueError(f"the entries {m.group(0)!r} of something that is not a vector")
                value = self._entries(value, m.group(0)[1])
            elif m.group(0) == r"^{\top}":
                value = value.T
            else:
                power = m.group(0)[1:].strip("{}")
                exponent = float(power) if power.isdigit() else self._step(power, env)
                value = _value(value) ** exponent
        return value

    def _atom(self, env):
        kind = self._peek()
        if kind == "LP":
            self._take("LP")
            value = self._sum(env)
            self._take("RP")
            return value
        if kind == "EXP":
            self._take("EXP")
            value = self._sum(env)
            self._take("RP")
            return np.exp(value)
        if kind == "IVL":
            self._take("IVL")
            value = self._sum(env)
            self._take("IVR")
            return (value > 0).astype(float)
        if kind == "BMAT":
            self._take("BMAT")
            rows = [[]]
            while True:
                rows[-1].append(np.asarray(_value(self._sum(env)), float))
                kind = self._peek()
                if kind == "EMAT":
                    self._take("EMAT")
                    return np.block(rows)
                self._take("AMP" if kind == "AMP" else "ROW")
                if kind == "ROW":
                    rows.append([])
        if kind == "NUM":
            m = self._take("NUM")
            return float(m.group(1)) / float(m.group(2)) if m.group(1) else float(m.group(0))
        if kind == "GAMMA":
            self._take("GAMMA")
            if self.gamma is None:
                raise ValueError("the document uses gamma without giving its value")
            return float(self.gamma)
        if kind == "FRAC":
            self._take("FRAC")
            self._take("LP")
            num = self._sum(env)
            self._take("RP")
            self._take("LP")
            den = self._sum(env)
            self._take("RP")
            return _value(num) / _value(den)
        if kind == "NORM":
            self._take("NORM")
            value = self._sum(env)
            self._take("NORM")
            value = _dense(value, np.eye(1))
            return float(np.linalg.norm(np.atleast_2d(value), 2))
        if kind == "ONE":
            self._take("ONE")
            return Ones()
        if kind == "ID":
            self._take("ID")
            return Identity()
        if kind == "KRON":
            self._take("KRON")
            return self._kronecker()
        if kind == "SYM":
            family, index, entry = self._symbol(self._take("SYM"))
            return self._entries(self._lookup(family, index, env), entry)
        if kind == "JAC":
            return self._jacobian(self._take("JAC"), env)
        if kind == "PARAM":
            bound = env.get(_WHERE_BOUND, {})  # a name the formula's where-clause binds comes first
            name = self._param(self._take("PARAM").group(0), self.params.keys() | self.blocks.keys() | bound.keys())
            if name in bound:
                return bound[name]
            if name not in self.params and name in self.blocks:
                param, axis, start, stop = self.blocks[name]
                return np.take(self.params[param], range(start, stop), axis=axis)
            if name not in self.params:
                raise ValueError(f"{name!r} is no parameter, and no where-clause (', \\quad {name} = ...') binds it")
            return self.params[name]
        if kind == "CUSTOM":
            name = self._take("CUSTOM").group(0)
            self._take("LP")
            arg = self._sum(env)
            self._take("RP")
            return self.custom[name](arg)
        if kind == "PAIR":
            loss = self._take("PAIR").group(1)
            self._take("LP")
            o = self._sum(env)
            self._take("COMMA")
            y = self._sum(env)
            self._take("RP")
            return self._pair_gradient(loss, o, y)
        if kind == "FN":
            fn = self._take("FN").group(0)
            if self._peek() == "LP":
                self._take("LP")
                arg = self._sum(env)
                self._take("RP")
            else:  # \log \hat{y}_i: a function of the next factor
                arg = self._factor(env)
            return self._apply(fn, arg)
        raise ValueError(f"unexpected {self.tokens[self.pos : self.pos + 3]!r}")

    def _truncated_delta(self, family: str, step: int):
        """A delta of a truncated derivation (``truncate`` = tau): age a (``dz[a]``) is dE_{t'}/dz_t of the one
        loss term whose paths to z_t cross a recurrent edges, t' = t + a (t - a in a backward chain; so only
        for a stack of one direction or one bidirectional layer, where that is one term); a delta without
        an age sums the ages kept, up to tau - 1."""
        aged = re.fullmatch(r"d(?P<value>.*?)\[(?P<age>\d+)\]", family)
        if aged is None:
            return sum(self._truncated_delta(f"{family}[{a}]", step) for a in range(self.truncate))
        value, age = aged.group("value"), int(aged.group("age"))
        source = _loss_step_of_age(value, step, age, self.T)
        if ("E", source) not in self.base_steps:
            return np.zeros((1, np.size(self.base_steps[value, step])))
        return self.jacobian(("E", source), (value, step), False)

    def _jacobian(self, m, env):
        grad = re.fullmatch(r"\\frac\{\\partial E\}\{\\partial (.+)\}", m.group(0))
        name = _param_name(grad.group(1), self.block_gradients.keys()) if grad else None
        if name in self.block_gradients:  # dE/dV = [dE/dV_f, dE/dV_b]
            return self.block_gradients[name]
        raise ValueError(f"the final formulas hold no Jacobian fractions: {m.group(0)!r}")

    def _kronecker(self):
        raise ValueError("the final formulas hold no Kronecker delta")

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
        if "diag" in fn:  # diag(1) is I, its size from what it meets
            return Identity() if isinstance(a, Ones) else np.diag(np.asarray(a, float).reshape(-1))
        if "lrelu" in fn:
            return self.custom["lrelu'" if fn.endswith("'") else "lrelu"](a)
        return {
            r"\tanh": np.tanh,
            r"\sigma": lambda v: 1 / (1 + np.exp(-v)),
            r"\operatorname{softplus}": lambda v: np.log1p(np.exp(v)),
            r"\operatorname{sech}^2": lambda v: 1 / np.cosh(v) ** 2,
            r"\log": np.log,
            r"\max": lambda v: np.maximum(v, 0.0),
        }[fn](a)


_PATTERNS: dict = {}


def _compiled(pattern: str):
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(pattern)
    return _PATTERNS[pattern]


#: A parameter's spelling: ``{Wxh}``, its chain's tag ``^{(2\mathrm{f})}``, its subscripts ``_{i,\mathrm{b}}``.
_PARAM = re.compile(
    r"\{?(?P<letter>[A-Za-z][A-Za-z0-9]*)\}?(?:\^\{\((?P<layer>\d*)(?:\\mathrm\{(?P<dir>[fb])\})?\)\})?"
    r"(?:_\{(?P<sub>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\})?"
)


def _loss_step_of_age(value: str, step: int, age: int, T: int) -> int:
    """The step t' of the one loss term whose paths reach ``value`` at ``step`` at age ``age``: t' = t + a
    (t - a in a backward chain, which runs from T down); an initial state (step 0, or T + 1 backward) is
    read at its chain's first step and the edge into it does not age, so it counts from there."""
    backward = value.endswith("_b")
    if not 1 <= step <= T:
        step = T if backward else 1
    return step - age if backward else step + age


def _param_name(text: str, known=()) -> str:
    r"""The parameter (or block) a spelling names, by the issue's naming convention, not rnngen's code.

    ``w_{o}`` -> ``w_o``; ``h_{0}`` / ``h^{0}`` -> ``h0``; ``U^{(2)}`` -> ``U2`` (layer 2);
    ``U^{(2\mathrm{f})}_{\mathrm{b}}`` -> ``U2_f_b`` (the block of ``U2_f`` that reads the backward chain);
    ``w^{(1)}_{i}`` -> ``w_i1`` (the user's ``w_i`` in layer 1). A subscript is the user's letter's
    or a block's; of the names it may stand for, the one in ``known`` (else the first).
    """
    text = text.strip()
    if text in ("h_{0}", "h^{0}"):
        return "h0"
    m = _PARAM.fullmatch(text)
    if not m:
        raise ValueError(f"not a parameter: {text!r}")
    suffix = (m.group("layer") or "") + (f"_{m.group('dir')}" if m.group("dir") else "")
    items = [re.sub(r"\\mathrm\{([fb])\}", r"\1", item) for item in m.group("sub").split(",")] if m.group("sub") else []
    names = []
    for k in range(len(items) + 1):  # the first k subscripts are the letter's, the rest the block's
        names.append("_".join([m.group("letter"), *items[:k]]) + suffix + "".join(f"_{p}" for p in items[k:]))
    found = [name for name in dict.fromkeys(names) if name in known]
    if len(found) > 1:
        raise ValueError(f"{text!r} may name {found}")
    return found[0] if found else names[0]


#: A superscript with a chain's tag: ``z(2\mathrm{f})``, ``(1),t``, ``\hat{y},t``, ``t-1``.
_TAGGED = re.compile(
    r"(?P<head>(?:\\hat\{y\}|\\bar\{h\}|\\check\{h\}|[^(,\[])*)(?:\((?P<layer>\d*)(?:\\mathrm\{(?P<dir>[fb])\})?\))?"
    r"(?:\[(?P<age>\d+)\])?(?P<rest>.*)"  # a truncated derivation's age: delta^{z(2)[1]}_{t}
)
#: The module's names of the initial states: ``h0``, ``h0_2``, ``h0_f``, ``h0_2_b``.
_INITIAL = re.compile(r"(?P<state>[hc])0(?:_(?P<layer>\d+))?(?:_(?P<dir>[fb]))?")


def _initial_step(name: str, T: int):
    """``(family, step)`` of the state a parameter sets: ``h0_2`` -> ``("h2", 0)``, ``h0_b`` -> ``("h_b", T + 1)``.

    A backward chain starts after the last step. None for a parameter that is no initial state.
    """
    m = _INITIAL.fullmatch(name)
    if not m:
        return None
    direction = m.group("dir")
    state = {"h": "h", "c": "cell"}[m.group("state")]  # an LSTM's memory cell starts at c0
    key = state + (m.group("layer") or "") + (f"_{direction}" if direction else "")
    return key, T + 1 if direction == "b" else 0


def _base(key: str) -> str:
    """A family's quantity without its chain suffix: ``h2_f`` -> ``h``, ``pre_z1`` -> ``pre_z``."""
    return re.sub(r"\d*(?:_[fb])?(?:\[\d+\])?$", "", key)


def _suffix(key: str) -> str:
    return key[len(_base(key)) :]


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
    lines = []
    for row in re.split(r"\\\\\*?\s*\n", block):
        row = re.sub(r"\\tag\{\d+\}|\\nonumber", "", row).strip()
        if row.startswith("&") and lines:  # a long formula's next row: &\qquad + ...
            lines[-1] += " " + re.sub(r"^&\s*(?:\\qquad)?", "", row).strip()
        elif row:
            lines.append(row)
    return lines


# --- every numbered equation -------------------------------------------------------------------

#: The forward families, in the order a step computes them.
FORWARD = ("z", "h", "o", "yhat")
#: Forward families only some networks have (a masked network's new state before the mask).
OPTIONAL_FORWARD = ("hbar", "hlast")
#: Families that run forward in time whatever chain they read (the state at the latest real step).
HELD_FORWARD = ("hlast",)
#: Finite-difference step of the Jacobians, and how close two sides must be.
EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-8


#: An entry index: y_i, o_j, delta_{ij}, y_{t,i} (column), y^{t}_{i} (row).
_ENTRY = r"_[ij](?![A-Za-z])|_\{ij\}|,[ij]\}|\^\{[^{}]*\}_\{[ij]\}"


class Mismatch(AssertionError):
    """A numbered equation whose sides differ, or that reads a value that does not exist."""


def numbered_equations(tex: str) -> list:
    """``(number, text, final)`` for every ``\\tag``: the rows since the previous tag, in one line.

    A row that starts with ``&`` continues the equation above it; ``\\nonumber`` rows are
    separate equations under the same number. ``final`` marks the last section's formulas.
    """
    out, final_at = [], tex.index(SECTION)
    for env in re.finditer(r"\\begin\{(align|equation)\}(.*?)\\end\{\1\}", tex, re.S):
        rows, pending = re.split(r"\\\\\*?\s*\n", env.group(2).strip()), []
        for row in rows:
            row = re.sub(r"\s+", " ", row).strip()
            if row.startswith("&") and pending:
                pending[-1] += " " + re.sub(r"^&\s*(?:\\qquad)?", "", row).strip()
            else:
                pending.append(row)
            tag = re.search(r"\\tag\{(\d+)\}", row)
            if tag:
                eqs = [re.sub(r"\\tag\{\d+\}|\\nonumber", " ", _without_alignment(e)) for e in pending]
                eqs = [re.sub(r"\s+", " ", e).strip().rstrip(".,").strip() for e in eqs]
                out.append((int(tag.group(1)), eqs, env.start() > final_at))
                pending = []
    return out


#: The steps a generic equation states at its end: ``, \quad t = T-1, \dots, 1``, ``t = 2, 1``, ``t = 3``.
_STEPS = re.compile(r",\s*\\quad t = (?P<first>[^,]+?)(?:, (?P<dots>\\dots, )?(?P<last>[^,]+?))?$")


def _without_alignment(row: str) -> str:
    """A row without its alignment marks ``&``; the column separators of a bmatrix stay."""
    kept = re.sub(r"\\begin\{bmatrix\}.*?\\end\{bmatrix\}", lambda m: m.group(0).replace("&", "\0"), row)
    return kept.replace("&", " ").replace("\0", "&")


def relations(equation: str) -> list:
    """The relations one equation states: ``a = b``, ``\\qquad`` next one, ``\\text{that is,}`` another."""
    parts = re.split(r",?\s*\\qquad\s*(?:\\text\{that is,\}\s*\\quad\s*)?", equation)
    return [p.strip().rstrip(".,").strip() for p in parts if p.strip()]


class Checker(Reader):
    """Evaluates every numbered equation of a document against independent numbers.

    The world: the forward pass is run from the document's own forward and loss equations
    (which are checked against the module's ``forward`` and ``loss``); each Jacobian fraction
    ``d a / d b`` is a central difference of that forward pass (``d+`` with the earlier steps
    held fixed); each delta is ``dE/d(value)`` the same way; ``dE/dp`` of a parameter is the
    module's gradient. Both sides of every relation are evaluated at every step it speaks of
    (``t = 1..T``, ``0 <= k <= t``, each ``p`` the forward form names) and compared (to RTOL, as
    central differences carry about 1e-9); inequalities (the vanishing bound, with the document's
    own gamma) must hold. Adjacent Jacobian fractions must chain (``da/db db/dc``).

    Args:
        tex, row, params, xs, ys, custom: as for ``Reader``.
        module: the generated module, whose ``forward``, ``loss_and_grads`` give the numbers.
        problem: ``(params, xs, targets)`` in the module's form (a batch of one).
        T: the number of steps, where ``xs`` holds fewer (one-to-many: the one input).

    The steps with a loss are those ``ys`` has a target for (all, the last, or d + 1..T with a delay).
    """

    def __init__(
        self,
        tex,
        row,
        params,
        xs,
        ys,
        module,
        problem,
        custom=None,
        blocks=None,
        T=None,
        truncate=None,
        masks=None,
        gated=False,
    ):
        super().__init__(tex, row, params, xs, ys, custom, blocks, T, masks, gated)
        self.truncate = truncate
        self.masks = masks
        self.module, self.raw, self.problem = module, (params, xs, ys), problem
        self.loss_steps = sorted(ys)
        self.base_params = dict(self.params)
        self.caches: dict = {}
        gamma = re.search(r"(?:here, for [^$]*|custom activation )\$\\gamma (?:=|\\approx) ([^$]+)\$", tex)
        self.gamma = self._evaluate(gamma.group(1), {}) if gamma else None

    # --- the world ---------------------------------------------------------------------------

    def _definitions(self, blocks) -> tuple:
        """The forward equations (family -> right side at step t) and the loss equations.

        The last equation of each family defines it (a network's families in the order the
        document gives them: chain by chain, then the output); ``self.used`` keeps the relations
        used, and every other one is checked against the forward pass they define.
        """
        forward, loss, where, used = {}, {}, {}, {}
        for number, eqs, final in blocks:
            if final:
                continue
            for eq in eqs:
                for rel in relations(eq):
                    lhs, _, rhs = rel.partition(" = ")
                    m = self.letters.symbol.fullmatch(lhs.strip())
                    if not m or not rhs:
                        continue
                    family, index, entry = self._symbol(m)
                    forward_family = _base(family) in self.letters.forward + self.letters.optional
                    if forward_family and "delta" not in lhs and (index in ("t", "T") or str(index).isdigit()):
                        # at a generic step t (at the steps it states, if it states them), or at one step
                        stated = _STEPS.search(rhs)
                        steps = None
                        if index != "t":
                            steps = (self.T if index == "T" else int(index),)
                        elif stated:
                            steps = tuple(self._stated(stated))
                            rhs = rhs[: stated.start()]
                        forward.setdefault(family, {})[steps] = rhs  # the last for the same steps defines it
                        where[family], used[family, steps] = number, (number, rel)
                    elif family == "E" and index in (None, "t"):  # E = ..., E_t = ... (no other step)
                        key = "E" if index is None else "E_t"
                        loss[key], where[key], used[key] = rhs, number, (number, rel)
        if "E_t" not in loss and "E" in loss and len(self.loss_steps) == 1:
            # one loss term, written as the loss itself (a many-to-one seed's L): E_T is E
            loss["E_t"], loss["E"], where["E_t"] = loss["E"], "E^{T}" if self.row else "E_{T}", where["E"]
        self.used = set(used.values())
        return forward, loss, where

    def simulate(self, params=None, override=None, frozen_before=0) -> dict:
        """Every step value and loss term, from the document's forward and loss equations.

        ``override``: ``((family, step), value)`` replaces one value; ``frozen_before``: steps
        before it keep their base values (an immediate derivative holds them fixed).
        """
        saved = self.params, self.steps, self.entrywise
        self.params = params or self.base_params
        key, forced = override or (None, None)
        steps = {k: v for k, v in self.base_steps.items() if k[0] in ("x", "y", "m")}
        for start, name in self.initial.items():
            steps[start] = forced if key == start else self.params[name]
        self.steps, self.entrywise = steps, False
        try:
            # chain by chain, each in its own direction (a backward chain from step T down to 1)
            # (a held last-real state runs forward in time over a backward chain's states, after them)
            groups: dict = {}
            for family in self.forward:
                groups.setdefault((_suffix(family), _base(family) in HELD_FORWARD), []).append(family)
            for (suffix, held), families in groups.items():
                ts = range(self.T, 0, -1) if suffix.endswith("_b") and not held else range(1, self.T + 1)
                for t in ts:
                    for family in families:
                        if t < frozen_before:
                            if (family, t) in self.base_steps:  # not an output the network has at T only
                                steps[family, t] = self.base_steps[family, t]
                        elif key == (family, t):
                            steps[family, t] = forced
                        else:
                            rhs = self._definition(family, t)
                            if rhs is not None:  # a value the network has at this step
                                steps[family, t] = self._evaluate(rhs, {"t": t})
            for t in self.loss_steps:
                self.entrywise = True
                steps["E", t] = float(np.sum(self._evaluate(self.loss["E_t"], {"t": t})))
                self.entrywise = False
            steps["E", None] = float(np.sum(self._evaluate(self.loss["E"], {})))
        finally:
            self.params, self.steps, self.entrywise = saved
        return steps

    def _definition(self, family: str, t: int):
        """The right side that defines ``family`` at step t: the one stated for that step, else the
        generic one that holds there; None where the family has no value (an output before a delay)."""
        found = [rhs for steps, rhs in self.forward[family].items() if steps is not None and t in steps]
        found += [rhs for steps, rhs in self.forward[family].items() if steps is None]
        return found[0] if found else None

    def _stated(self, stated) -> list:
        """The steps a ``, \\quad t = ...`` note states, in its order."""
        ends = [self._step(i, {}) for i in (stated.group("first"), stated.group("last")) if i]
        if stated.group("dots"):
            step = 1 if ends[1] >= ends[0] else -1
            ends = list(range(ends[0], ends[1] + step, step))
        return ends

    def build(self, blocks) -> tuple:
        """Run the forward pass from the document: ``(failures of the forward and loss equations, it ran)``."""
        self.forward, self.loss, where = self._definitions(blocks)
        bases = {_base(f) for f in self.forward}
        # a document that writes no output pre-activation writes the prediction as the output layer's value
        # (an identity output layer): its prediction is then held to the module's o as well as to its yhat
        self.direct = direct = "o" not in bases
        missing = [f for f in self.letters.forward if f not in bases and not (f == "o" and direct)]
        missing += [k for k in ("E", "E_t") if k not in self.loss]
        if missing:  # nothing can be checked
            return [(n, f"the document defines no forward or loss equation for {missing}") for n, _, _ in blocks], False
        # the Jacobians belong to one forward pass: one cache per set of definitions
        self.cache = self.caches.setdefault(repr((sorted(self.forward.items()), sorted(self.loss.items()))), {})
        self.base_steps = dict(self.steps)
        try:
            self.base_steps = self.simulate()
        except Exception as e:  # noqa: BLE001 - a forward pass that does not run: nothing can be checked
            return [(n, f"the forward pass does not run: {type(e).__name__}: {e}") for n, _, _ in blocks], False
        self.steps = dict(self.base_steps)
        params, xs, targets = self.problem
        out = self.module.forward(params, xs)
        failures = []
        # the module's h: the top layer's states, its forward and backward chains' side by side
        states = [f for f in self.forward if _base(f) == "h"]
        top = max(re.sub(r"\D", "", _suffix(f)) or "0" for f in states)
        top = sorted(
            (f for f in states if (re.sub(r"\D", "", _suffix(f)) or "0") == top), key=lambda f: f.endswith("_b")
        )
        for family in ("h", "o", "yhat"):
            ts = range(1, self.T + 1) if family == "h" else self.loss_steps
            written = "yhat" if family == "o" and direct else family
            parts = top if family == "h" else [written]
            got = np.array([np.concatenate([self.base_steps[f, t].reshape(-1) for f in parts]) for t in ts])
            if not np.allclose(got, np.asarray(out[family]).reshape(got.shape), rtol=1e-12, atol=1e-14):
                # the module shows the top layer only: a wrong state of any chain below shows there too
                culprits = (
                    {where[f] for f in self.forward if _base(f) in self.letters.cell}
                    if family == "h"
                    else {where[written]}
                )
                failures += [(n, f"{family} from the forward equations differs from the module's") for n in culprits]
        loss, self.grads = self.module.loss_and_grads(params, xs, targets)
        if not np.isclose(self.base_steps["E", None], loss, rtol=1e-12):
            failures.append((where["E"], f"the loss equations give {self.base_steps['E', None]}, the module {loss}"))
        return failures, True

    # --- Jacobians and deltas ----------------------------------------------------------------

    def _value_of(self, text: str, env):
        """What a numerator or denominator names: ``("param", name)``, ``(family, step)``, or ``("E", step)``."""
        text = text.strip()
        m = self._whole_symbol(text)
        if m:
            family, index, entry = self._symbol(m)
            step = None if index is None else self._step(index, env)
            return (family, step), entry
        name = self._param(text, self.base_params.keys() | self.blocks.keys())
        if name not in self.base_params and name in self.blocks:
            raise ValueError(f"a derivative by the block {text!r}: the reader differentiates by whole parameters")
        if name not in self.base_params:
            raise ValueError(f"a derivative by something the reader does not know: {text!r}")
        return ("param", name), None

    def jacobian(self, num, den, plus: bool):
        """``d num / d den`` (rows: num's entries; columns: den's), a central difference of the forward pass."""
        key = (num, den, plus)
        if key in self.cache:
            return self.cache[key]
        if num not in self.base_steps:
            raise Missing(f"the document differentiates {num}, which does not exist")
        if den[0] == "param":
            base = self.base_params[den[1]]
        elif den in self.base_steps:
            base = self.base_steps[den]
        else:
            raise Missing(f"the document differentiates by {den}, which does not exist")
        if plus and den[0] != "param":
            raise ValueError("an immediate derivative by a step value")
        columns = []
        for i in range(base.size):
            sides = []
            for sign in (1.0, -1.0):
                moved = base.copy().reshape(-1)
                moved[i] += sign * EPS
                moved = moved.reshape(base.shape)
                if den[0] == "param":
                    params = {**self.base_params, den[1]: moved}
                    if den[1] == "h0":
                        params["h0"] = moved
                    run = self.simulate(params, frozen_before=num[1] if plus else 0)
                else:
                    run = self.simulate(override=(den, moved))
                sides.append(np.atleast_1d(np.asarray(run[num])).reshape(-1))
            columns.append((sides[0] - sides[1]) / (2 * EPS))
        self.cache[key] = np.stack(columns, axis=1)
        return self.cache[key]

    def _lookup(self, family, index, env):
        if family.startswith("d") and family != "D" and not isinstance(index, tuple):  # a delta: dE/d(value)
            step = self._step(index, env)
            if self.truncate:
                return self._vector(self._truncated_delta(family, step))
            grad = self.jacobian(("E", None), (family[1:], step), False)
            return self._vector(grad)
        if _base(family) == "D":  # a chain's hidden Jacobian, D^{(2)}_t: of the new state h-bar under a mask
            step, chain = self._step(index, env), _suffix(family)
            value = "hbar" + chain if ("hbar" + chain, step) in self.base_steps else "h" + chain
            return self.jacobian((value, step), ("z" + chain, step), False)
        if family == "E":
            key = ("E", None if index is None else self._step(index, env))
            if key not in self.steps:
                raise Missing(f"the document reads the loss term {key[1]}, which does not exist")
            return self.steps[key]
        return super()._lookup(family, index, env)

    def _jacobian(self, m, env):
        (num, num_entry) = self._value_of(m.group("num"), env)
        (den, den_entry) = self._value_of(m.group("den"), env)
        if num == ("E", None) and (den[0] == "param" or den in self.initial):  # a whole gradient: the module's
            name = self.initial[den] if den in self.initial else den[1]
            J = np.asarray(self.grads[name], float).reshape(1, -1)
        else:
            J = self.jacobian(num, den, bool(m.group("plus")))
        if num_entry or den_entry:  # entry indices: axis 0 is i, axis 1 is j
            if num[0] == "E":
                return self._entries(J, den_entry)
            return J if (num_entry, den_entry) == ("i", "j") else J.T
        return J

    def _kronecker(self):
        """``delta_{ij}`` over the output entries (axis 0 is i, axis 1 is j)."""
        return np.eye(self.base_steps["yhat", self.T].size)

    # --- the check ---------------------------------------------------------------------------

    def _ranges(self, rel: str) -> list:
        """The environments a relation holds in: its free step letters t (and 0 <= k <= t)."""
        indices = re.findall(r"[\^_]\{([^{}\\]*)\}", rel) + re.findall(r"\^\{(?:[^{}]|\{[^{}]*\})*,([^{}]*)\}", rel)
        letters = {c for i in indices for c in re.findall(r"[a-zA-Z]", i)}
        bound = set(re.findall(r"\\(?:sum|prod)_\{([a-z])=", rel))
        free = {"t", "k"} & letters - bound
        if re.search(_ENTRY, rel):
            free.add("t")  # entries without a step are at step t
        envs = [{}]
        if "t" in free:
            ts = range(1, self.T + 1)
            stated = _STEPS.search(rel)
            if re.search(r"\\quad t < T\b", rel):
                ts = range(1, self.T)
            elif stated:  # the steps it states: t = T-1, \dots, 1; t = 2, 1; t = 3
                ts = self._stated(stated)
            elif len(self.loss_steps) < self.T and re.search(r"(?<!\\hat\{)(?<![a-z])y(?:_|\^)|E[\^_]\{t\}", rel):
                ts = self.loss_steps  # a target or a loss term: the steps with a loss only
            envs = [{"t": t} for t in ts]
        if "k" in free:
            envs = [{**e, "k": k} for e in envs for k in range(0, e.get("t", self.T) + 1)]  # k = t: no step between
        return envs

    def check_relation(self, rel: str) -> None:
        """Raise Mismatch when the relation fails at some step (or reads a value that does not exist)."""
        envs = self._ranges(rel)
        rel = _STEPS.sub("", re.sub(r",\s*\\quad t < T\b", "", rel))
        self.entrywise = bool(re.search(_ENTRY, rel))
        where = _WHERE.search(rel)
        if where:  # bound at each step before the sides are read
            rel = rel[: where.start()]
        self._chains(rel)
        inequality = r"\le " in rel
        # a =: b names b (g(o, y)_j): the name's own reading must give the same values
        sides = [s.strip() for s in re.split(r"\s\\le\s" if inequality else r"\s=:?\s", rel)]
        if len(sides) < 2:
            raise ValueError(f"not a relation: {rel!r}")
        names = [None]
        if re.search(r"\\partial p\}", rel):  # for each p the forward form names
            names = sorted(
                set(re.findall(r"\\frac\{\\partial h[\^_]\{t\}\}\{\\partial ([^{}]*(?:\{[^{}]*\})*)\}\s*&=", self.tex))
            )
            if not names:
                raise ValueError("the document names no p for its generic dE/dp")
        try:
            for name in names:
                texts = [s.replace(r"\partial p}", rf"\partial {name}}}") if name else s for s in sides]
                for env in envs:
                    if where:
                        env = {**env, _WHERE_BOUND: {where.group("name"): self._evaluate(where.group("value"), env)}}
                    values = [self._evaluate(s, env) for s in texts]
                    for a, b in zip(values, values[1:]):
                        if inequality:
                            a, b = _dense(a, 1.0), _dense(b, 1.0)
                            if not a <= b * (1 + RTOL) + ATOL:
                                raise Mismatch(f"{a} > {b} at {env} in {rel!r}")
                        elif not _close(a, b, self.entrywise):
                            steps = {k: v for k, v in env.items() if k != _WHERE_BOUND}
                            raise Mismatch(f"the sides differ at {steps}{' for ' + name if name else ''} in {rel!r}")
        except Missing as e:
            raise Mismatch(str(e)) from None
        finally:
            self.entrywise = False

    def _chains(self, rel: str) -> None:
        """Adjacent Jacobian fractions chain: ``da/db db/dc``, each denominator the next numerator.

        The values cannot tell ``do_T/dc`` from ``do_{T-1}/dc`` (both I); the chain rule's form can.
        """
        for side in re.split(r"\s(?:=:?|\\le)\s", rel):
            tokens = self._tokenize(side)
            for (kind, a), (next_kind, b) in zip(tokens, tokens[1:]):
                if kind == next_kind == "JAC" and a.group("den").strip() != b.group("num").strip():
                    raise Mismatch(f"the chain rule breaks at {a.group(0)} {b.group(0)}")

    def check(self, tex=None, only=None) -> list:
        """``(number, message)`` for every numbered equation that fails; every equation is read.

        ``tex`` checks another text of the same document (a changed one); ``only`` limits the
        check to the equations with these numbers (the forward pass is always run and compared).
        """
        if tex is not None:
            self.tex = tex
        blocks = numbered_equations(self.tex)
        failures, runs = self.build(blocks)
        if not runs:
            return failures
        for number, eqs, final in blocks:
            if final or only is not None and number not in only:
                continue
            rels = [rel for eq in eqs for rel in relations(eq)]
            if not rels:
                failures.append((number, "nothing in this equation to check"))
            for rel in rels:
                if (number, rel) in self.used:
                    continue  # a definition, checked by the forward pass in build()
                try:
                    self.check_relation(rel)
                except Mismatch as e:
                    failures.append((number, str(e)))
                except Exception as e:  # noqa: BLE001 - an equation the reader cannot evaluate fails
                    failures.append((number, f"cannot evaluate: {type(e).__name__}: {e}"))
        if only is None or any(final and number in only for number, _, final in blocks):
            failures += self._final(blocks)
        return failures

    def _final(self, blocks) -> list:
        """The last section's formulas, run in order by ``Reader``: the module's loss and gradients.

        The step values they compute must be the forward pass's too, also one that no later formula
        reads (the prediction, when the loss and its gradient take the pre-activation).
        """
        numbers = [number for number, _, final in blocks if final]
        params, xs, ys = self.raw
        try:
            reader = Reader(
                self.tex, self.row, params, xs, ys, self.custom, self.blocks, self.T, self.masks, self.letters.gated
            )
            reader.run()
        except Exception as e:  # noqa: BLE001
            return [(n, f"the final formulas do not run: {e}") for n in numbers]
        for key, value in sorted(reader.steps.items(), key=str):
            if key[0] == "o" and self.direct:  # the code's o, which the document writes as the prediction
                key = ("yhat", key[1])
            if _base(key[0]) in self.letters.forward + self.letters.optional and (
                key not in self.base_steps
                or np.size(value) != np.size(self.base_steps[key])
                or not np.allclose(value, self.base_steps[key].reshape(np.shape(value)), rtol=1e-12, atol=1e-14)
            ):
                wrong = f"the final formulas' {key[0]} at step {key[1]} is not the forward pass's"
                return [(n, wrong) for n in numbers]
        ok = np.isclose(reader.loss, self.base_steps["E", None], rtol=1e-12) and set(reader.gradients) == set(
            self.grads
        )
        ok = ok and all(
            np.size(reader.gradients[k]) in (1, np.size(g))  # 1: a truncated gradient no kept path reaches (= 0)
            and np.allclose(_shaped(reader.gradients[k], g), g, rtol=1e-11, atol=1e-14)
            for k, g in self.grads.items()
        )
        return [] if ok else [(n, "the final formulas' loss or gradients differ from the module's") for n in numbers]


def _shaped(value, like):
    """``value`` in the shape of ``like``; a number (the document's 0) as an array of it."""
    if np.size(value) == np.size(like):
        return np.reshape(value, np.shape(like))
    return np.full(np.shape(like), np.asarray(value, float).item())


def _close(a, b, entrywise: bool = False) -> bool:
    """Equal to RTOL; written entry by entry, the free indices must agree too (an i-vector is no j-vector)."""
    a, b = _dense(a, b), _dense(b, a)
    a, b = np.asarray(a, float), np.asarray(b, float)
    if entrywise and a.ndim == b.ndim == 2 and a.shape != b.shape:
        return False
    if a.size != b.size and a.size != 1 and b.size != 1:
        return False
    if a.size == b.size:
        a, b = a.reshape(-1), b.reshape(-1)
    return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def spec_blocks(spec, hidden, n_x: int) -> dict:
    """Block name -> ``(parameter, axis, start, stop)``, by the issue's convention, not rnngen's code."""
    dirs = ("f", "b") if spec.bidirectional else ("",)
    axis = 0 if spec.notation == "row" else 1
    inp, rec, out = spec.names
    # a gated cell's input weights are one per gate, named with its letter (U_i2_f: the input gate's, layer 2)
    gates = [f"_{g}" for g in {"lstm": "ifgo", "gru": "rzn"}.get(spec.cell, "")] or [""]
    blocks = {}

    def cut(param, parts):
        start = 0
        for part, width in parts:
            blocks[f"{param}_{part}"] = (param, axis, start, start + width)
            start += width

    for layer in range(1, spec.layers + 1):
        below = [("x", n_x)] if layer == 1 else [(d or "x", hidden[layer - 2]) for d in dirs]
        for d in dirs:
            suffix = (str(layer) if spec.layers > 1 else "") + (f"_{d}" if d else "")
            if spec.notation == "stacked":
                cut(rec + suffix, [("h", hidden[layer - 1])] + below)
            elif len(below) > 1:
                for gate in gates:
                    cut(inp + gate + suffix, below)
    if spec.bidirectional:
        cut(out, [(d, hidden[-1]) for d in dirs])
    return blocks
