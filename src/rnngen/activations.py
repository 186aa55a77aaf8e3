"""Registries of the elementwise functions, the output layers, the losses and their fused pairs.

Every rule about an activation lives in its registry entry: its SymPy scalar
form (for the exact oracle), its derivative as a matrix expression (in terms of
the activation's own output where that is how the code computes it), and its
NumPy, LaTeX and plain-text spellings. Adding an activation means adding an
entry, not an ``if``.

An ``algebra.Elementwise`` node names its function by a key. Most keys are
registry names (``tanh``); a key with a colon carries a parameter and is
resolved by ``elementwise``: ``leaky_relu:0.01`` (the slope) and
``custom:x/(1+abs(x))`` (a custom activation, parsed safely by ``expression``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from rnngen import algebra as A
from rnngen import expression


@dataclass(frozen=True)
class ElementwiseRule:
    """An entrywise function ``f`` and what every stage needs to know about it.

    (The matrix node that applies it is ``algebra.Elementwise``.)

    Attributes:
        name: the key ``algebra.Elementwise`` nodes use.
        scalar: ``f`` as a SymPy function of one scalar (used by the exact oracle).
        numpy: format string printing ``f`` applied to NumPy code ``{}``.
        ufunc: ``f`` on NumPy arrays, for evaluating expressions directly.
        latex: LaTeX of ``f`` applied to ``{}``.
        text: plain text of ``f`` applied to ``{}``.
        derivative: ``(arg, out) -> f'(arg)`` as a matrix expression; ``out`` is
            the symbol holding ``f(arg)`` when the graph stores it, else None.
            None for functions that are never differentiated (the derivatives).
        definition: LaTeX of ``f(x)`` for the document's legend ("" when ``latex`` says it all).
        description: one line for ``rnngen list``.
        helpers: ``(name, source)`` of the module-level functions the NumPy code calls.
        takes_out: the helper in ``numpy`` takes ``out=`` as its last argument, so the recurrence
            can apply it in place (NumPy ufuncs always do; other helpers return a new array).
        kink: True when ``f`` has a kink at 0, where finite differences must not step.
        gamma: ``sup |f'|``, the factor of the vanishing-gradient bound (None: not a hidden activation).
        gamma_estimated: True when ``gamma`` was measured on a grid, not known exactly (custom ones).
    """

    name: str
    scalar: Callable[[sp.Expr], sp.Expr]
    numpy: str
    ufunc: Callable
    latex: str
    text: str
    derivative: Callable | None
    definition: str = ""
    description: str = ""
    helpers: tuple = ()
    takes_out: bool = False
    kink: bool = False
    gamma: float | None = None
    gamma_estimated: bool = False

    @property
    def is_identity(self) -> bool:
        """True for ``f(x) = x``: the code hands its argument on as it is (the same array)."""
        return self.numpy == "{}"


def _fn(key, arg):
    return A.Elementwise(key, arg)


def _stored(key, arg, out):
    """``f(arg)``: the stored output when there is one, else a fresh application."""
    return out if out is not None else _fn(key, arg)


_SIGMOID_HELPER = (
    "_sigmoid",
    "def _sigmoid(a, out=None):\n"
    "    # 1 / (1 + e^-a), to an ulp, 7x faster than exp(-logaddexp(0, -a)). Below a = -88, where e^-a\n"
    "    # would overflow float32, e^-a is capped and those entries are then set to e^a: there\n"
    "    # 1 + e^a rounds to 1, so e^a is sigma(a) to an ulp (the cap alone gave 6e-39 for 1e-87).\n"
    "    tail = a < -88.0 if a.min() < -88.0 else None\n"
    "    low = None if tail is None else np.exp(a[tail])  # before out, which may be a, is written\n"
    "    out = np.negative(a, out=out)\n"
    "    if tail is not None:\n"
    "        np.minimum(out, 88.0, out=out)\n"
    "    np.exp(out, out=out)\n"
    "    out += 1.0\n"
    "    out = np.divide(1.0, out, out=out)\n"
    "    if tail is not None:\n"
    "        out[tail] = low\n"
    "    return out\n",
)
_LEAKY_HELPERS = (
    (
        "_leaky_relu",
        "def _leaky_relu(a, slope, out=None):\n"
        "    # max(a, slope a) is leaky relu for a slope between 0 and 1, which the spec checks\n"
        "    return np.maximum(a, slope * a, out=out)\n",
    ),
    (
        "_leaky_relu_slope",
        "def _leaky_relu_slope(h, slope):\n"
        "    # f'(z) from the output: h > 0 exactly where z > 0, since the slope is positive\n"
        "    return np.where(h > 0, 1.0, slope).astype(h.dtype, copy=False)\n",
    ),
)

_FIXED = (
    ElementwiseRule(
        name="tanh",
        scalar=sp.tanh,
        numpy="np.tanh({})",
        ufunc=np.tanh,
        latex=r"\tanh({})",
        text="tanh({})",
        # tanh' = 1 - tanh^2: computed from the stored output, no second tanh.
        derivative=lambda arg, out: A.sub(A.ones(*arg.shape), A.square(_stored("tanh", arg, out))),
        description="hyperbolic tangent; f' = 1 - f^2",
        gamma=1.0,
    ),
    ElementwiseRule(
        name="sigmoid",
        scalar=lambda v: 1 / (1 + sp.exp(-v)),
        numpy="_sigmoid({})",
        ufunc=lambda a: np.exp(-np.logaddexp(0.0, -a)),
        latex=r"\sigma({})",
        text="σ({})",
        derivative=lambda arg, out: A.had(
            _stored("sigmoid", arg, out), A.sub(A.ones(*arg.shape), _stored("sigmoid", arg, out))
        ),
        definition=r"\sigma(x) = 1 / (1 + e^{-x})",
        description="logistic sigmoid 1/(1+e^-x); f' = f (1 - f)",
        helpers=(_SIGMOID_HELPER,),
        takes_out=True,
        gamma=0.25,
    ),
    ElementwiseRule(
        name="relu",
        scalar=lambda v: (v + sp.Abs(v)) / 2,
        numpy="np.maximum({}, 0.0)",
        ufunc=lambda a: np.maximum(a, 0.0),
        latex=r"\max({}, 0)",
        text="relu({})",
        derivative=lambda arg, out: _fn("step", _stored("relu", arg, out)),
        description="max(x, 0); f' = [f > 0] (checked away from the kink at 0)",
        kink=True,
        gamma=1.0,
    ),
    ElementwiseRule(
        name="identity",
        scalar=lambda v: v,
        numpy="{}",
        ufunc=lambda a: a,
        latex="{}",
        text="{}",
        derivative=lambda arg, out: A.ones(*arg.shape),
        description="x (a linear layer); f' = 1",
        gamma=1.0,
    ),
    ElementwiseRule(
        name="softplus",
        scalar=lambda v: sp.log(1 + sp.exp(v)),
        numpy="np.logaddexp(0.0, {})",
        ufunc=lambda a: np.logaddexp(0.0, a),
        latex=r"\operatorname{{softplus}}({})",
        text="softplus({})",
        # softplus' = sigma(z) = 1 - e^{-h}, from the stored output h.
        derivative=lambda arg, out: _fn("softplus_slope", _stored("softplus", arg, out)),
        definition=r"\operatorname{softplus}(x) = \log(1 + e^{x})",
        description="log(1 + e^x); f' = 1 - e^-f (the sigmoid)",
        gamma=1.0,
    ),
    # Used inside derivations and stable rewrites, not chosen by users.
    ElementwiseRule(
        name="log",
        scalar=sp.log,
        numpy="np.log({})",
        ufunc=np.log,
        latex=r"\log {}",
        text="log({})",
        derivative=lambda arg, out: A.reciprocal(arg),
    ),
    ElementwiseRule(
        name="step",
        scalar=lambda v: (1 + sp.sign(v)) / 2,
        numpy="({} > 0)",
        ufunc=lambda a: (a > 0).astype(float),
        latex=r"[{} > 0]",
        text="[{} > 0]",
        derivative=None,
    ),
    ElementwiseRule(
        name="tanh_slope",
        scalar=lambda v: 1 - sp.tanh(v) ** 2,
        numpy="_tanh_slope({})",
        ufunc=lambda a: 4.0 * np.exp(-2.0 * np.abs(a)) / (1.0 + np.exp(-2.0 * np.abs(a))) ** 2,
        latex=r"\operatorname{{sech}}^2({})",
        text="sech²({})",
        derivative=None,
        helpers=(
            (
                "_tanh_slope",
                "def _tanh_slope(o):\n"
                "    # 1 - tanh(o)^2 = 4 e / (1 + e)^2 with e = exp(-2|o|): no 1 - t^2 that rounds to 0, no overflow\n"
                "    e = np.exp(-2.0 * np.abs(o))\n"
                "    return 4.0 * e / (1.0 + e) ** 2\n",
            ),
        ),
    ),
    ElementwiseRule(
        name="softplus_slope",
        scalar=lambda v: 1 - sp.exp(-v),
        numpy="_softplus_slope({})",
        ufunc=lambda a: -np.expm1(-a),
        latex=r"\left(\mathbf{{1}} - e^{{-{}}}\right)",
        text="(1 - exp(-{}))",
        derivative=None,
        helpers=(
            (
                "_softplus_slope",
                "def _softplus_slope(h):\n"
                "    # softplus'(z) = sigmoid(z) = 1 - e^-h for h = softplus(z); expm1 keeps tiny h exact\n"
                "    return -np.expm1(-h)\n",
            ),
        ),
    ),
)
ELEMENTWISE: dict[str, ElementwiseRule] = {e.name: e for e in _FIXED}

#: Hidden activations a user may choose by name (a custom expression in x is the other way).
HIDDEN = ("tanh", "sigmoid", "relu", "leaky_relu", "identity", "softplus")
DEFAULT_SLOPE = 0.01


def _leaky_relu(slope: float) -> ElementwiseRule:
    return ElementwiseRule(
        name=f"leaky_relu:{slope!r}",
        scalar=lambda v: (1 + slope) / 2 * v + (1 - slope) / 2 * sp.Abs(v),
        numpy=f"_leaky_relu({{}}, {slope!r})",
        ufunc=lambda a: np.where(a > 0, a, slope * a),
        latex=r"\operatorname{{lrelu}}({})",
        text="lrelu({})",
        derivative=lambda arg, out: _fn(f"leaky_slope:{slope!r}", _stored(f"leaky_relu:{slope!r}", arg, out)),
        definition=rf"\operatorname{{lrelu}}(x) = \max(x, {slope!r}\,x)",
        description=f"max(x, a x) with slope a = {slope!r} (--slope)",
        helpers=_LEAKY_HELPERS[:1],
        takes_out=True,
        kink=True,
        gamma=1.0,  # max(1, slope), and the slope is below 1
    )


def _leaky_slope(slope: float) -> ElementwiseRule:
    return ElementwiseRule(
        name=f"leaky_slope:{slope!r}",
        scalar=lambda v: (1 + slope) / 2 + (1 - slope) / 2 * sp.sign(v),
        numpy=f"_leaky_relu_slope({{}}, {slope!r})",
        ufunc=lambda a: np.where(a > 0, 1.0, slope),
        # written on the output, where it is applied: a + (1 - a) [h > 0], since h > 0 exactly where z > 0
        # (lrelu'(h) would read as the derivative taken at h)
        latex=rf"\left({slope!r} + {round(1 - slope, 12)!r}\,[{{}} > 0]\right)",
        text=f"({slope!r} + {round(1 - slope, 12)!r} [{{}} > 0])",
        derivative=None,
        helpers=_LEAKY_HELPERS[1:],
    )


def _custom(text: str, derivative: bool) -> ElementwiseRule:
    from rnngen.printing.numpy import scalar_code  # the printer imports this module

    f = expression.parse(text)
    expr = sp.diff(f, expression.X) if derivative else f
    expression.check_constants(expr, text)
    unknown = {type(a).__name__ for a in sp.preorder_traversal(expr) if isinstance(a, sp.Function)}
    unknown -= set(expression.NUMPY)  # every function of the one table, and sign
    if unknown or expr.has(sp.Derivative, sp.Subs, sp.nan, sp.zoo):
        raise expression.ExpressionError(
            f"the custom activation {text!r} has no usable symbolic derivative (got {expr})"
        )
    key = f"custom_derivative:{text}" if derivative else f"custom:{text}"
    helper = "_custom_derivative" if derivative else "_custom"
    what = "f'" if derivative else "f"
    source = f"def {helper}(x):\n    # {what}(x) = {sp.sstr(expr)}\n    return {scalar_code(expr)}\n"
    numeric = sp.lambdify(expression.X, expr, modules="numpy")  # prints SymPy's own tree, not user text

    def ufunc(a):
        return numeric(a) + 0 * a  # + 0 * a: a constant derivative still has the array's shape

    return ElementwiseRule(
        name=key,
        scalar=lambda v: expr.subs(expression.X, v),
        numpy=f"{helper}({{}})",
        ufunc=ufunc,
        latex=f"{what}({{}})",
        text=f"{what}({{}})",
        derivative=None if derivative else _custom_slope(text, sp.diff(f, expression.X)),
        definition=f"{what}(x) = {sp.latex(simplest(expr) if derivative else expr)}",
        description=f"custom: {text}",
        helpers=((helper, source),),
        gamma=None if derivative else _estimated_sup_slope(text, ufunc),
        gamma_estimated=True,
    )


def simplest(expr: sp.Expr) -> sp.Expr:
    """The shortest form SymPy finds of a custom activation's derivative, for the document's legend:
    ``1/(|x| + 1)^2`` where differentiating gives ``-x sign(x)/(|x| + 1)^2 + 1/(|x| + 1)``.

    Only the page shows it; the module computes the derivative as differentiated, whose numerics the
    checks have measured. A form with cases (Piecewise) or no shorter is not taken.
    """
    x = expression.X
    folded = expr.replace(  # x sign(x) = |x| for real x, which simplify leaves alone
        lambda e: isinstance(e, sp.Mul) and e.has(sp.sign), lambda e: e.subs(x * sp.sign(x), sp.Abs(x))
    )
    shortest = min((sp.simplify(folded), folded), key=sp.count_ops)
    return shortest if sp.count_ops(shortest) < sp.count_ops(expr) and not shortest.has(sp.Piecewise) else expr


def _custom_slope(text: str, slope: sp.Expr) -> Callable:
    """The ``derivative`` of a custom activation: ``f'(arg)`` as a matrix expression.

    A constant slope (``2*x``, ``x+1``) is a number times the all-ones matrix, which the
    algebra folds into a scale factor as it does ``f' = 1`` for the identity; only a slope
    that depends on ``x`` needs the ``_custom_derivative`` helper.
    """
    if slope.is_number:
        factor = slope if slope.is_Number else slope.evalf(17)  # exp(2) as the float it is
        return lambda arg, out: A.scale(factor, A.ones(*arg.shape))
    return lambda arg, out: _fn(f"custom_derivative:{text}", arg)


#: Where a custom activation is sampled: its domain check and its measured ``sup |f'|``. The
#: points are shifted off the round numbers by an irrational fraction of the step, so that an
#: isolated pole (``1/x`` at 0) is not a sample: a pre-activation lands on it with probability 0,
#: and such an activation is ill-conditioned there, not undefined (the check says which).
_GRID = (-20.0, 20.0, 400_001)
_GRID_SHIFT = 1e-4 * (5**0.5 - 1) / 2


def _estimated_sup_slope(text: str, f: Callable) -> float:
    """``max |f'|`` of a custom activation on a fine grid over [-20, 20] (a measurement, not a proof),
    its points both shifted and round (an isolated pole's infinite slope left out).

    Raises:
        expression.ExpressionError: ``f`` or ``f'`` is not finite somewhere on the grid
            (``log(x)`` for x <= 0, ``exp(x**16)`` past 1.6): a pre-activation can take any real
            value, so the module would compute nan or inf on a whole interval.
    """
    grid = np.linspace(*_GRID) + _GRID_SHIFT
    with np.errstate(all="ignore"):  # the refusal below says it in one line, without NumPy's warnings
        values = f(grid)
        slopes = np.abs(elementwise(f"custom_derivative:{text}").ufunc(grid))
    bad = ~(np.isfinite(values) & np.isfinite(slopes))
    if bad.any():
        raise expression.ExpressionError(
            f"the custom activation {text!r} or its derivative is not finite at x = {grid[bad][0]:.4g}; "
            f"it must be finite for every real x but isolated points (checked on [{_GRID[0]:g}, {_GRID[1]:g}])"
        )
    with np.errstate(all="ignore"):  # the round points too, where a kink's slope is largest (0 for x/(1+|x|))
        round_slopes = np.abs(elementwise(f"custom_derivative:{text}").ufunc(grid - _GRID_SHIFT))
    return float(max(slopes.max(), round_slopes[np.isfinite(round_slopes)].max(initial=0.0)))


@functools.cache
def elementwise(key: str) -> ElementwiseRule:
    """The rule an ``algebra.Elementwise`` node names by ``key`` (see the module docstring)."""
    if key in ELEMENTWISE:
        return ELEMENTWISE[key]
    kind, _, arg = key.partition(":")
    if kind == "leaky_relu":
        return _leaky_relu(float(arg))
    if kind == "leaky_slope":
        return _leaky_slope(float(arg))
    if kind in ("custom", "custom_derivative"):
        return _custom(arg, kind == "custom_derivative")
    raise KeyError(f"no elementwise rule {key!r}")


# --- functions of a whole column: the stable forms of an output/loss pair ------------------------


@dataclass(frozen=True)
class ColumnRule:
    """A function of whole columns (``algebra.Columnwise``): one sequence's vectors at a time.

    Attributes:
        name: the key ``algebra.Columnwise`` nodes use.
        helpers: ``(name, source)`` of the module-level NumPy functions, the one called first (the
            others are what it calls); it takes rows (one sequence per row) and is also what
            evaluates the node outside the module, so the form has one home.
        latex: LaTeX with ``{}`` for each operand.
        text: plain text with ``{}`` for each operand.
    """

    name: str
    helpers: tuple
    latex: str
    text: str

    @property
    def numpy(self) -> str:
        """Format string of the call, ``{}`` for each operand's rows."""
        count = self.latex.count("{}")
        return f"{self.helpers[0][0]}({', '.join(['{}'] * count)})"

    @functools.cached_property
    def ufunc(self) -> Callable:
        space = {"np": np}
        for _, source in self.helpers:
            exec(source, space)  # our own source, fixed text
        return space[self.helpers[0][0]]


LEAD_SPLIT = (
    "_lead_split",
    "def _lead_split(a):\n"
    '    """(s, e, rest, lead) per row: a shifted by its largest entry, exp of that with 0 at the\n'
    "    largest, the sum of the others' exps, and the largest entry's index. The one home of the\n"
    "    split every stable softmax form here takes: 1 - p of the largest entry is rest / (1 + rest).\n"
    '    """\n'
    "    lead = a.argmax(axis=-1)[..., None]\n"
    "    s = a - np.take_along_axis(a, lead, axis=-1)\n"
    "    e = np.exp(s)\n"
    "    np.put_along_axis(e, lead, 0.0, axis=-1)\n"
    "    return s, e, e.sum(axis=-1, keepdims=True), lead\n",
)
_LOG1M_SOFTMAX = (
    "_log1m_softmax",
    "def _log1m_softmax(a):\n"
    '    """log(1 - softmax(a)) per row, with no 1 - p that rounds to 0 and no log 0.\n'
    "\n"
    "    1 - p_j is the softmax mass of the others. Off a row's largest entry p_j <= 1/2, so\n"
    "    log1p(-p_j) is exact; at the largest it is the log-sum-exp of the others minus that of the\n"
    "    row, each shifted by its own maximum: a lead of 1000 gives -1000, not log 0 = -inf.\n"
    '    """\n'
    "    s, e, rest, lead = _lead_split(a)\n"
    "    out = np.log1p(-e / (1.0 + rest))\n"
    "    np.put_along_axis(s, lead, -np.inf, axis=-1)\n"
    "    top = s.max(axis=-1, keepdims=True)  # the second largest, shifted\n"
    "    others = top + np.log(np.exp(s - top).sum(axis=-1, keepdims=True))\n"
    "    np.put_along_axis(out, lead, others - np.log1p(rest), axis=-1)\n"
    "    return out\n",
)
_SOFTMAX_BCE_GRADIENT = (
    "_softmax_bce_gradient",
    "def _softmax_bce_gradient(a, y):\n"
    '    """dE/da of E = -sum_j [y_j log p_j + (1 - y_j) log(1 - p_j)], p = softmax(a), per row.\n'
    "\n"
    "    g = d - p (S - r) - d_m q, with m the row's largest entry, d = p - y, r_j = d_j / (1 - p_j)\n"
    "    off m and 0 at m, S the row's sum of r, q the softmax of the row without m (0 at m).\n"
    "    1 - p_j is a plain subtraction only off m, where p_j <= 1/2; at m it comes from the others'\n"
    "    exps, so no digits are lost however far the largest entry leads.\n"
    '    """\n'
    "    d, p, _, lead = _softmax_residual(a, y)\n"
    "    d_lead = np.take_along_axis(d, lead, axis=-1)  # p_m - y_m\n"
    "    r = d / (1.0 - p + (p > 0.5))  # 1 - p_j >= 1/2 off m; the divisor at m is not used\n"
    "    np.put_along_axis(r, lead, 0.0, axis=-1)\n"
    "    s = a - np.take_along_axis(a, lead, axis=-1)\n"
    "    np.put_along_axis(s, lead, -np.inf, axis=-1)\n"
    "    q = np.exp(s - s.max(axis=-1, keepdims=True))\n"
    "    q /= q.sum(axis=-1, keepdims=True)\n"
    "    return d - p * (r.sum(axis=-1, keepdims=True) - r) - d_lead * q\n",
)

_TANH_MINUS = (
    "_tanh_minus",
    "def _tanh_minus(o, y):\n"
    '    """tanh(o) - y, with no digits lost where tanh(o) rounds to +-1.\n'
    "\n"
    "    Past |o| = 0.55 (|tanh| > 1/2), tanh(o) = s (1 - 2 sigma(-2|o|)), s = sign(o), so\n"
    "    tanh(o) - y = s ((1 - s y) - 2 sigma(-2|o|)): 1 - s y is exact for a target near s.\n"
    '    """\n'
    "    y = y.reshape(o.shape)\n"
    "    s = np.sign(o)\n"
    "    e = np.exp(-2.0 * np.abs(o))\n"
    "    far = s * ((1.0 - s * y) - 2.0 * e / (1.0 + e))\n"
    "    return np.where(np.abs(o) > 0.55, far, np.tanh(o) - y)\n",
)
_SOFTMAX_SPLIT = (
    "_softmax_split",
    "def _softmax_split(a):\n"
    '    """(p, c, lead): softmax(a) per row, 1 - p at each row\'s largest entry (from the others\'\n'
    '    exps, not by subtraction), and that entry\'s index."""\n'
    "    _, e, rest, lead = _lead_split(a)\n"
    "    np.put_along_axis(e, lead, 1.0, axis=-1)\n"
    "    return e / (1.0 + rest), rest / (1.0 + rest), lead\n",
)
_SOFTMAX_RESIDUAL = (
    "_softmax_residual",
    "def _softmax_residual(a, y):\n"
    '    """(d, p, c, lead): d = softmax(a) - y per row, at the largest entry (1 - y) - (1 - p), exact\n'
    '    for a confident class, with _softmax_split\'s p, c and lead."""\n'
    "    p, c, lead = _softmax_split(a)\n"
    "    y = y.reshape(a.shape)\n"
    "    d = p - y\n"
    "    np.put_along_axis(d, lead, (1.0 - np.take_along_axis(y, lead, axis=-1)) - c, axis=-1)\n"
    "    return d, p, c, lead\n",
)
_SOFTMAX_MINUS = (
    "_softmax_minus",
    "def _softmax_minus(a, y):\n"
    '    """softmax(a) - y per row, the confident class\'s digits kept (_softmax_residual)."""\n'
    "    return _softmax_residual(a, y)[0]\n",
)
_SOFTMAX_SSE_GRADIENT = (
    "_softmax_sse_gradient",
    "def _softmax_sse_gradient(a, y):\n"
    '    """dE/da of E = 1/2 |softmax(a) - y|^2 per row: p_j (d_j - sum_i p_i d_i), d = p - y.\n'
    "\n"
    "    Written p_j (d_j (1 - p_j) - sum_{i != j} p_i d_i), with the terms i != m (m the row's\n"
    "    largest entry) summed on their own, so a confident row loses no digits to cancellation.\n"
    '    """\n'
    "    d, p, c, lead = _softmax_residual(a, y)\n"
    "    d_lead = np.take_along_axis(d, lead, axis=-1)\n"
    "    pd = p * d\n"
    "    p_lead = np.take_along_axis(p, lead, axis=-1)\n"
    "    np.put_along_axis(pd, lead, 0.0, axis=-1)\n"
    "    others = pd.sum(axis=-1, keepdims=True)  # sum of p_i d_i over i != m\n"
    "    g = p * (d * (1.0 - p) - ((p_lead * d_lead + others) - pd))\n"
    "    np.put_along_axis(g, lead, p_lead * (d_lead * c - others), axis=-1)\n"
    "    return g\n",
)

COLUMNWISE: dict[str, ColumnRule] = {
    c.name: c
    for c in (
        ColumnRule(
            name="log1m_softmax",
            helpers=(_LOG1M_SOFTMAX, LEAD_SPLIT),
            latex=r"\log\bigl(\mathbf{{1}} - \operatorname{{softmax}}({})\bigr)",
            text="log(1 - softmax({}))",
        ),
        ColumnRule(
            name="tanh_minus",
            helpers=(_TANH_MINUS,),
            latex=r"\left(\tanh({}) - {}\right)",
            text="(tanh({}) - {})",
        ),
        ColumnRule(
            name="softmax_minus",
            helpers=(_SOFTMAX_MINUS, _SOFTMAX_RESIDUAL, _SOFTMAX_SPLIT, LEAD_SPLIT),
            latex=r"\left(\operatorname{{softmax}}({}) - {}\right)",
            text="(softmax({}) - {})",
        ),
        ColumnRule(
            name="softmax_sse_gradient",
            helpers=(_SOFTMAX_SSE_GRADIENT, _SOFTMAX_RESIDUAL, _SOFTMAX_SPLIT, LEAD_SPLIT),
            latex=r"g_{{\mathrm{{sse}}}}({}, {})",
            text="g_sse({}, {})",
        ),
        ColumnRule(
            name="softmax_bce_gradient",
            helpers=(_SOFTMAX_BCE_GRADIENT, _SOFTMAX_RESIDUAL, _SOFTMAX_SPLIT, LEAD_SPLIT),
            latex=r"g_{{\mathrm{{bce}}}}({}, {})",
            text="g_bce({}, {})",
        ),
    )
}


def columnwise(key: str) -> ColumnRule:
    """The rule an ``algebra.Columnwise`` node names by ``key``."""
    return COLUMNWISE[key]


# --- output layers, losses and the pairs with a closed-form gradient ------------------------


@dataclass(frozen=True)
class OutputLayer:
    """The function from the output pre-activation ``o_t`` to the prediction ``yhat_t``.

    Attributes:
        name: registry key.
        activation: ``o -> yhat`` as a matrix expression.
        scalar: ``[o_i] -> [yhat_i]`` on SymPy scalars, for the exact oracle.
        probabilities: True when every entry of ``yhat`` lies in (0, 1) (a loss with a log needs it).
        jacobian: LaTeX of one entry of the Jacobian, ``d yhat_i / d o_j``.
        jacobian_matrix: LaTeX of the whole Jacobian, with ``{yhat}`` for the step's prediction
            and ``{outer}`` for its outer product with itself.
        log: ``o -> log(yhat)`` in a form that cannot overflow or take log 0 (None: keep ``log``).
        log1m: ``o -> log(1 - yhat)`` likewise.
        description: one line for ``rnngen list``.
        residual: ``(yhat, y, o) -> yhat - y`` in a form that keeps its digits where ``yhat``
            rounds to its bound (a confident prediction); None when the subtraction is exact enough.
    """

    name: str
    activation: Callable
    scalar: Callable
    probabilities: bool
    jacobian: str
    jacobian_matrix: str
    log: Callable | None
    log1m: Callable | None
    description: str
    residual: Callable | None = None


def _elementwise_scalar(key):
    return lambda o: [elementwise(key).scalar(v) for v in o]


def _softmax_scalar(o):
    exps = [sp.exp(v) for v in o]
    total = sum(exps)
    return [e / total for e in exps]


def _sigmoid_of_minus(o):
    """``1 - sigma(o)`` as ``sigma(-o)``: exact where the subtraction would round to 0."""
    return _fn("sigmoid", A.neg(o))


def _sigmoid_minus(yhat, y, o):
    """``sigma(o) - y`` as ``(1 - y) sigma(o) - y sigma(-o)``: exact for targets 0 and 1."""
    return A.sub(A.had(A.sub(A.ones(*y.shape), y), yhat), A.had(y, _sigmoid_of_minus(o)))


def _softplus(expr):
    return _fn("softplus", expr)


OUTPUT_LAYERS: dict[str, OutputLayer] = {
    o.name: o
    for o in (
        OutputLayer(
            name="softmax",
            activation=A.Softmax,
            scalar=_softmax_scalar,
            probabilities=True,
            jacobian=r"\hat{y}_i\,(\delta_{ij} - \hat{y}_j)",
            jacobian_matrix=r"\operatorname{{diag}}({yhat}) - {outer}",
            log=A.LogSoftmax,
            log1m=lambda o: A.Columnwise("log1m_softmax", o),
            description="exp(o_i) / sum_j exp(o_j), one distribution per step; dense Jacobian",
            residual=lambda yhat, y, o: A.Columnwise("softmax_minus", o, y),
        ),
        OutputLayer(
            name="sigmoid",
            activation=lambda o: _fn("sigmoid", o),
            scalar=_elementwise_scalar("sigmoid"),
            probabilities=True,
            jacobian=r"\delta_{ij}\,\hat{y}_i (1 - \hat{y}_i)",
            # log sigma(o) = -softplus(-o), log(1 - sigma(o)) = -softplus(o)
            jacobian_matrix=r"\operatorname{{diag}}\bigl({yhat} \odot (\mathbf{{1}} - {yhat})\bigr)",
            log=lambda o: A.neg(_softplus(A.neg(o))),
            log1m=lambda o: A.neg(_softplus(o)),
            description="1/(1+e^-o) per entry (independent binary outputs); diagonal Jacobian",
            residual=lambda yhat, y, o: _sigmoid_minus(yhat, y, o),
        ),
        OutputLayer(
            name="tanh",
            activation=lambda o: _fn("tanh", o),
            scalar=_elementwise_scalar("tanh"),
            probabilities=False,
            jacobian=r"\delta_{ij}\,(1 - \hat{y}_i^2)",
            jacobian_matrix=r"\operatorname{{diag}}(\mathbf{{1}} - {yhat} \odot {yhat})",
            log=None,
            log1m=None,
            description="tanh(o) per entry, values in (-1, 1); diagonal Jacobian",
            residual=lambda yhat, y, o: A.Columnwise("tanh_minus", o, y),
        ),
        OutputLayer(
            name="identity",
            activation=lambda o: _fn("identity", o),
            scalar=_elementwise_scalar("identity"),
            probabilities=False,
            jacobian=r"\delta_{ij}",
            jacobian_matrix="I",
            log=None,
            log1m=None,
            description="o itself (regression); identity Jacobian",
        ),
    )
}


@dataclass(frozen=True)
class Loss:
    """The loss at one step, ``E_t = loss(yhat_t, y_t)``.

    Attributes:
        name: registry key.
        short: abbreviation used in module names.
        expr: ``(yhat, y, weights=None) -> E_t`` as a 1 x 1 matrix expression (summed over the batch;
            with ``weights``, a 1 x B row such as a step's mask, each sequence's term times its weight).
        scalar: ``([yhat_i], [y_i]) -> E_t`` on SymPy scalars, from the textbook definition.
        needs_probabilities: True when the output must lie in (0, 1) (the loss takes logs).
        targets: what the module accepts as targets: ``classes`` (indices or one-hot rows),
            ``probabilities`` (floats in [0, 1]) or ``values`` (any floats).
        latex: LaTeX of ``E_t`` with ``{yhat_i}`` and ``{y_i}`` for the entries of the step's vectors.
        text: ``E_t`` in plain text.
        gradient: LaTeX of ``d E_t / d yhat_i`` with ``{yhat}`` and ``{y}`` for the entries.
        description: one line for ``rnngen list``.
    """

    name: str
    short: str
    expr: Callable
    scalar: Callable
    needs_probabilities: bool
    targets: str
    latex: str
    text: str
    gradient: str
    description: str


def _ones_row(n):
    return A.ones(1, n)


def _total(n, body, weights=None):
    """``1^T body 1``: the sum of every entry, over the outputs and the sequences; with ``weights``
    (a 1 x B row, a step's mask), ``1^T body weights^T``: each sequence's column counted by its weight."""
    return A.mul(_ones_row(n), body, A.ones(A.B, 1) if weights is None else A.transpose(weights))


def _cross_entropy(yhat, y, weights=None):
    return A.neg(_total(yhat.shape[0], A.had(y, _fn("log", yhat)), weights))


def _binary_cross_entropy(yhat, y, weights=None):
    one = A.ones(*yhat.shape)
    both = A.add(A.had(y, _fn("log", yhat)), A.had(A.sub(one, y), _fn("log", A.sub(one, yhat))))
    return A.neg(_total(yhat.shape[0], both, weights))


def _squared_error(yhat, y, weights=None):
    return A.scale(sp.Rational(1, 2), _total(yhat.shape[0], A.square(A.sub(yhat, y)), weights))


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss(
            name="cross_entropy",
            short="xent",
            expr=_cross_entropy,
            scalar=lambda yhat, y: -sum(yi * sp.log(pi) for pi, yi in zip(yhat, y)),
            needs_probabilities=True,
            targets="classes",
            latex=r"-\sum_i {y_i} \log {yhat_i}",
            text="-y_tᵀ log ŷ_t",
            gradient=r"-{y} / {yhat}",
            description="-sum_i y_i log yhat_i; targets as class indices or one-hot rows",
        ),
        Loss(
            name="binary_cross_entropy",
            short="bce",
            expr=_binary_cross_entropy,
            scalar=lambda yhat, y: -sum(yi * sp.log(pi) + (1 - yi) * sp.log(1 - pi) for pi, yi in zip(yhat, y)),
            needs_probabilities=True,
            targets="probabilities",
            latex=r"-\sum_i \bigl[{y_i} \log {yhat_i} + (1 - {y_i}) \log(1 - {yhat_i})\bigr]",
            text="-y_tᵀ log ŷ_t - (1 - y_t)ᵀ log(1 - ŷ_t)",
            gradient=r"-\frac{{{y}}}{{{yhat}}} + \frac{{1 - {y}}}{{1 - {yhat}}}",
            description="-sum_i [y_i log yhat_i + (1 - y_i) log(1 - yhat_i)]; targets in [0, 1]",
        ),
        Loss(
            name="squared_error",
            short="sse",
            expr=_squared_error,
            scalar=lambda yhat, y: sum((pi - yi) ** 2 for pi, yi in zip(yhat, y)) / 2,
            needs_probabilities=False,
            targets="values",
            latex=r"\tfrac{{1}}{{2}} \sum_i ({y_i} - {yhat_i})^2",
            text="1/2 ||y_t - ŷ_t||²",
            gradient=r"{yhat} - {y}",
            description="1/2 sum_i (y_i - yhat_i)^2; targets are real values",
        ),
    )
}


@dataclass(frozen=True)
class FusedGradient:
    """A closed form of ``dE_t/do_t`` for one output layer and loss.

    Attributes:
        grad: ``(yhat, y, o) -> dE_t/do_t``, in a form that keeps a tiny gradient's digits (for a
            sigmoid output ``1 - yhat`` is ``sigma(-o)``, not a subtraction that rounds to 0).
        assumes: what the closed form relies on ("" when nothing), said in the document.
        derivation: LaTeX (inside an align) deriving it entry by entry from the general chain
            rule, with ``{yhat}``, ``{y}`` for the entries of the step's vectors.
        normalized_targets: True when the targets must sum to one (the module checks it).
        written: ``(yhat, y) -> dE_t/do_t`` as a teacher writes it in the delta recursion, where the pair
            simplifies to the prediction less the target (the canonical pairs, whose ``derivation`` ends
            there); None where it does not, and the recursion keeps the chain rule's general form.
    """

    grad: Callable
    assumes: str
    derivation: str
    normalized_targets: bool = False
    written: Callable | None = None

    def formula(self) -> str:
        """``dE/do`` in plain text, e.g. ``-y ∘ σ(-o)``, for ``rnngen list`` (printed from ``grad``)."""
        from rnngen.printing.math import text  # the printer imports this module

        yhat, y, o = (sp.MatrixSymbol(name, 3, A.B) for name in ("ŷ", "y", "o"))
        return text(self.grad(yhat, y, o))


FUSED: dict[tuple[str, str], FusedGradient] = {
    ("softmax", "cross_entropy"): FusedGradient(
        grad=lambda yhat, y, o: A.sub(yhat, y),
        assumes="every target sums to one (a one-hot vector or a distribution)",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= \sum_i \Bigl(-\frac{{{y}_i}}{{{yhat}_i}}\Bigr)"
            r"\, {yhat}_i (\delta_{{ij}} - {yhat}_j)"
            r" = -{y}_j + {yhat}_j \sum_i {y}_i = {yhat}_j - {y}_j"
        ),
        normalized_targets=True,
        written=A.sub,
    ),
    ("softmax", "binary_cross_entropy"): FusedGradient(
        grad=lambda yhat, y, o: A.Columnwise("softmax_bce_gradient", o, y),
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= \sum_i \Bigl(-\frac{{{y}_i}}{{{yhat}_i}}"
            r" + \frac{{1 - {y}_i}}{{1 - {yhat}_i}}\Bigr) {yhat}_i (\delta_{{ij}} - {yhat}_j)"
            r" = d_j - {yhat}_j \sum_{{i \ne j}} \frac{{d_i}}{{1 - {yhat}_i}}"
            r" =: g_{{\mathrm{{bce}}}}(o, {y})_j, \quad d = {yhat} - {y}"
        ),
    ),
    ("sigmoid", "binary_cross_entropy"): FusedGradient(
        grad=_sigmoid_minus,
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= \Bigl(-\frac{{{y}_j}}{{{yhat}_j}}"
            r" + \frac{{1 - {y}_j}}{{1 - {yhat}_j}}\Bigr) {yhat}_j (1 - {yhat}_j)"
            r" = {yhat}_j - {y}_j = (1 - {y}_j)\, {yhat}_j - {y}_j\, \sigma(-o_j)"
        ),
        written=A.sub,
    ),
    ("sigmoid", "cross_entropy"): FusedGradient(
        grad=lambda yhat, y, o: A.neg(A.had(y, _sigmoid_of_minus(o))),
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= -\frac{{{y}_j}}{{{yhat}_j}}\, {yhat}_j (1 - {yhat}_j)"
            r" = -{y}_j (1 - {yhat}_j) = -{y}_j\, \sigma(-o_j)"
        ),
    ),
    ("softmax", "squared_error"): FusedGradient(
        grad=lambda yhat, y, o: A.Columnwise("softmax_sse_gradient", o, y),
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= \sum_i ({yhat}_i - {y}_i)\, {yhat}_i (\delta_{{ij}} - {yhat}_j)"
            r" = {yhat}_j \Bigl(d_j (1 - {yhat}_j) - \sum_{{i \ne j}} {yhat}_i d_i\Bigr)"
            r" =: g_{{\mathrm{{sse}}}}(o, {y})_j, \quad d = {yhat} - {y}"
        ),
    ),
    ("sigmoid", "squared_error"): FusedGradient(
        grad=lambda yhat, y, o: A.had(_sigmoid_minus(yhat, y, o), yhat, _sigmoid_of_minus(o)),
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= ({yhat}_j - {y}_j)\, {yhat}_j (1 - {yhat}_j)"
            r" = \bigl((1 - {y}_j)\, {yhat}_j - {y}_j\, \sigma(-o_j)\bigr)\, {yhat}_j\, \sigma(-o_j)"
        ),
    ),
    ("tanh", "squared_error"): FusedGradient(
        grad=lambda yhat, y, o: A.had(A.Columnwise("tanh_minus", o, y), _fn("tanh_slope", o)),
        assumes="",
        derivation=(
            r"\frac{{\partial {E}}}{{\partial o_j}} &= ({yhat}_j - {y}_j) (1 - {yhat}_j^2)"
            r" = (\tanh o_j - {y}_j) \operatorname{{sech}}^2 o_j"
        ),
    ),
    ("identity", "squared_error"): FusedGradient(
        grad=lambda yhat, y, o: A.sub(yhat, y),
        assumes="",
        derivation=r"\frac{{\partial {E}}}{{\partial o_j}} &= ({yhat}_j - {y}_j) \cdot 1 = {yhat}_j - {y}_j",
        written=A.sub,
    ),
}


def pairs() -> list:
    """Every ``(output, loss)`` that can be derived, in registry order."""
    return [
        (o, loss)
        for o, layer in OUTPUT_LAYERS.items()
        for loss, rule in LOSSES.items()
        if layer.probabilities or not rule.needs_probabilities
    ]
