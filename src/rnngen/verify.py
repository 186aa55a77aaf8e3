"""Verification of generated modules, three independent ways.

- ``exact_oracle``: the loss written out in SymPy scalars from the textbook
  definition (no matrix engine involved), differentiated with ``sympy.diff`` and
  evaluated in 40-digit arithmetic.
- ``finite_differences`` and ``taylor_test``: the module's gradient against its
  own loss, by central differences in float64, and by the slope of the Taylor
  remainder (2 for a correct gradient, 1 for a wrong one).
- ``forms_agree``: the derivation's recursive (delta) form against its sum over
  paths, evaluated straight from the symbolic expressions.

Errors are norm-wise relative errors per parameter, ``|g - ref| / |ref|``,
which do not blow up on entries that happen to be near zero.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

from rnngen import algebra as A
from rnngen.activations import LOSSES, OUTPUT_LAYERS, elementwise
from rnngen.backprop import path_expansion
from rnngen.evaluate import evaluate, run
from rnngen.spec import RNNSpec
from rnngen.unroll import SIZES

#: Sizes of the default numeric check: (n_x, n_h, n_y, B).
CHECK_SIZES = (4, 5, 3, 2)
#: Tolerances of the checks.
FD_TOLERANCE = 1e-6
EXACT_TOLERANCE = 1e-12
FORMS_TOLERANCE = 1e-12
#: The sum over paths has T(T+1)/2 terms per weight; it is checked up to this T.
FORMS_MAX_T = 12


class VerificationError(Exception):
    """A module whose gradients fail a check, or that cannot be checked."""


def load_module(path):
    """Import a generated module from its file, under a private name."""
    path = Path(path)
    name = f"_rnngen_checked_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise VerificationError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken file is reported, not raised through
        raise VerificationError(f"{path} cannot be imported: {type(e).__name__}: {e}") from None
    finally:
        sys.modules.pop(name, None)
    for attr in ("T", "SPEC", "PARAM_SHAPES", "loss", "loss_and_grads", "init_params"):
        if not hasattr(module, attr):
            raise VerificationError(f"{path} is not an rnngen module (it has no {attr})")
    return module


#: Smallest distance from 0 a pre-activation may have when the activation has a kink there;
#: finite differences (step 1e-5) must not step across the kink.
KINK_MARGIN = 1e-3


def random_problem(module, sizes=CHECK_SIZES, seed=0, dtype=np.float64):
    """Random parameters (biases and h0 too, so every gradient is exercised), inputs and targets.

    For an activation with a kink at 0 (relu, leaky_relu) the draw is repeated with the
    next seed until every pre-activation lies at least ``KINK_MARGIN`` away from it.
    """
    spec = module.SPEC
    kinked = elementwise(hidden_key(spec)).kink
    for attempt in range(seed, seed + 1000):
        problem = _draw(module, sizes, attempt, dtype)
        if not kinked or np.abs(preactivations(spec, *problem[:2])).min() >= KINK_MARGIN:
            return problem
    raise VerificationError("found no random problem whose pre-activations keep away from the kink")


def _draw(module, sizes, seed, dtype):
    n_x, n_h, n_y, B = sizes
    rng = np.random.default_rng(seed)
    dims = {"n_x": n_x, "n_h": n_h, "n_y": n_y}
    params = {
        name: (0.5 * rng.standard_normal(tuple(dims[d] for d in shape))).astype(dtype)
        for name, shape in module.PARAM_SHAPES.items()
    }
    xs = rng.standard_normal((module.T, B, n_x)).astype(dtype)
    steps = module.T if module.SPEC["mapping"] == "many-to-many" else 1
    kind = LOSSES[module.SPEC["loss"]].targets
    if kind == "classes":
        targets = rng.integers(0, n_y, size=(steps, B))
    elif kind == "probabilities":
        targets = rng.uniform(0.05, 0.95, size=(steps, B, n_y)).astype(dtype)
    else:
        targets = rng.standard_normal((steps, B, n_y)).astype(dtype)
    return params, xs, targets[0] if module.SPEC["mapping"] == "many-to-one" else targets


def hidden_key(spec: dict) -> str:
    """The hidden activation's rule key, from a module's ``SPEC``."""
    return RNNSpec(**{**spec, "T": 1}).hidden_key


def _weights(spec: dict, params: dict) -> tuple:
    """(input, recurrent, output) weights as column-notation matrices, biases (zeros if absent), h0."""
    names = spec["names"]
    mats = [np.asarray(params[n], np.float64) for n in names]
    if spec["notation"] == "row":
        mats = [m.T for m in mats]
    n_h, n_y = mats[1].shape[0], mats[2].shape[0]
    b = np.asarray(params["b"], np.float64) if spec["hidden_bias"] else np.zeros(n_h)
    c = np.asarray(params["c"], np.float64) if spec["output_bias"] else np.zeros(n_y)
    return (*mats, b, c, np.asarray(params["h0"], np.float64))


def preactivations(spec: dict, params: dict, xs) -> np.ndarray:
    """Every ``z_t`` of every sequence, by a plain loop (independent of the generated code)."""
    Wx, Wh, _, b, _, h0 = _weights(spec, params)
    f = elementwise(hidden_key(spec)).ufunc
    h = np.broadcast_to(h0, (xs.shape[1], h0.size))
    zs = []
    for x in np.asarray(xs, np.float64):
        z = x @ Wx.T + h @ Wh.T + b
        zs.append(z)
        h = f(z)
    return np.array(zs)


def relative_error(value, reference) -> float:
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    scale = np.linalg.norm(reference)
    diff = np.linalg.norm(value - reference)
    return float(diff / scale) if scale > 0 else float(diff)


def finite_difference_gradient(module, params, xs, targets, eps=1e-5) -> dict:
    """Every gradient by central differences of the module's loss, entry by entry.

    The step 1e-5 is near the cube root of float64's epsilon, which balances
    the O(eps^2) truncation error against the O(|E| / eps) rounding error; a
    smaller step loses digits to rounding when E is large (long unrolls).
    """
    numeric = {}
    for name, value in params.items():
        numeric[name] = np.zeros_like(value, dtype=np.float64)
        for index in np.ndindex(value.shape):
            shifted = {k: v.copy() for k, v in params.items()}
            shifted[name][index] = value[index] + eps
            up = module.loss(shifted, xs, targets)
            shifted[name][index] = value[index] - eps
            down = module.loss(shifted, xs, targets)
            numeric[name][index] = (up - down) / (2 * eps)
    return numeric


def finite_differences(module, params, xs, targets, eps=1e-5) -> dict:
    """Relative error of each gradient against central differences of the module's loss."""
    _, grads = module.loss_and_grads(params, xs, targets)
    numeric = finite_difference_gradient(module, params, xs, targets, eps)
    return {name: relative_error(grads[name], numeric[name]) for name in params}


def taylor_test(module, params, xs, targets, seed=1, largest=1e-3, directions=3) -> float:
    """Slope of log |E(p + e v) - E(p) - e <g, v>| against log e: 2 when the gradient is right.

    The steps are ``largest`` halved four times. Along a direction where the loss
    is nearly flat the second-order remainder sinks to rounding level and the
    slope says nothing, so ``directions`` random directions are tried and the one
    whose remainder stays largest is used. For an activation with a kink the
    largest step is halved until no pre-activation changes sign along the way,
    since across a kink the remainder is first order even for a correct gradient.
    """
    rng = np.random.default_rng(seed)
    e0, grads = module.loss_and_grads(params, xs, targets)
    best = None
    for _ in range(directions):
        direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        steps = _steps_within_kinks(module, params, xs, direction, largest)
        slope_dot = sum(float(np.sum(grads[k] * direction[k])) for k in params)
        remainders = []
        for e in steps:
            moved = {k: params[k] + e * direction[k] for k in params}
            remainders.append(abs(module.loss(moved, xs, targets) - e0 - e * slope_dot))
        if best is None or remainders[-1] > best[1][-1]:
            best = (steps, remainders)
    steps, remainders = best
    return float(np.polyfit(np.log(steps), np.log(remainders), 1)[0])


def _steps_within_kinks(module, params, xs, direction, largest) -> list:
    if elementwise(hidden_key(module.SPEC)).kink:
        signs = np.sign(preactivations(module.SPEC, params, xs))
        while np.any(
            np.sign(preactivations(module.SPEC, {k: params[k] + largest * direction[k] for k in params}, xs)) != signs
        ):
            largest /= 2
    return [largest / 2**i for i in range(5)]


# --- the exact scalar oracle --------------------------------------------------------------


@dataclass
class OracleResult:
    """Relative errors of the module against the exact oracle."""

    loss: float
    grads: dict = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return _worst([self.loss, *self.grads.values()])


def _scalar_loss(module, params_sym, xs, targets):
    """E written out entry by entry from the textbook definition, in the module's notation.

    Column notation: ``h_t = f(U x_t + W h_{t-1} + b)``; row notation:
    ``h^t = f(x^t U + h^{t-1} W + b)`` with the row-notation matrices as given.
    """
    spec = module.SPEC
    f = elementwise(hidden_key(spec)).scalar
    output = OUTPUT_LAYERS[spec["output"]].scalar
    step_loss = LOSSES[spec["loss"]].scalar
    row = spec["notation"] == "row"
    Wx, Wh, Wo = (params_sym[n] for n in spec["names"])
    n_y = Wo.shape[1] if row else Wo.shape[0]
    vector = (lambda m: m.T) if row else (lambda m: m)  # biases are stored as columns
    b = vector(params_sym["b"]) if spec["hidden_bias"] else None
    c = vector(params_sym["c"]) if spec["output_bias"] else None
    T, B, _ = xs.shape
    last_only = spec["mapping"] == "many-to-one"
    total = sp.Integer(0)
    for seq in range(B):
        h = vector(params_sym["h0"])
        for t in range(T):
            x = sp.Matrix(xs[t, seq].tolist())
            z = x.T * Wx + h * Wh if row else Wx * x + Wh * h
            h = (z + b if b is not None else z).applyfunc(f)
            if last_only and t != T - 1:
                continue
            o = h * Wo if row else Wo * h
            o = o + c if c is not None else o
            target = targets[seq] if last_only else targets[t, seq]
            if np.ndim(target) == 0:  # a class index
                y = [1 if i == target else 0 for i in range(n_y)]
            else:
                y = [sp.Rational(float(v)) for v in target]
            total += step_loss(output(list(o)), y)
    return total


#: The exact oracle's cost grows like n_h^T (the scalar loss is a tree, not a
#: graph), so it runs on tiny sizes and refuses long unrolls.
EXACT_MAX_T = 8


def oracle_sizes(T: int) -> tuple:
    """(n_x, n_h, n_y, B) for the oracle: a batch of two up to T = 3, one tiny sequence beyond."""
    return (2, 3, 2, 2) if T <= 3 else (2, 2, 2, 1)


_MPMATH = {
    sp.tanh: "tanh",
    sp.exp: "exp",
    sp.log: "log",
    sp.Abs: "fabs",
    sp.sign: "sign",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.atan: "atan",
    sp.asinh: "asinh",
}


def _evaluate_exactly(expr, env: dict, memo: dict):
    """Value of a scalar SymPy expression in mpmath, each distinct subexpression once."""
    if expr in memo:
        return memo[expr]
    if expr.is_Symbol:
        value = env[expr]
    elif expr.is_Rational:
        value = mpmath.mpf(expr.p) / expr.q
    elif expr.is_Float:
        value = mpmath.mpf(expr)
    elif expr.is_Add:
        value = mpmath.fsum(_evaluate_exactly(a, env, memo) for a in expr.args)
    elif expr.is_Mul:
        value = mpmath.fprod(_evaluate_exactly(a, env, memo) for a in expr.args)
    elif expr.is_Pow:
        value = _evaluate_exactly(expr.base, env, memo) ** _evaluate_exactly(expr.exp, env, memo)
    elif expr.func in _MPMATH:
        value = getattr(mpmath, _MPMATH[expr.func])(_evaluate_exactly(expr.args[0], env, memo))
    else:
        raise VerificationError(f"the exact oracle cannot evaluate {expr.func}")
    memo[expr] = value
    return value


def exact_oracle(module, sizes=None, seed=0, digits=40) -> OracleResult:
    """Compare the module's loss and gradients with ``sympy.diff`` of the scalar loss.

    Inputs and parameters are the float64 values the module sees, taken as
    exact rationals, so the only rounding on the oracle's side is its
    ``digits``-digit evaluation.
    """
    if module.T > EXACT_MAX_T:
        raise VerificationError(f"the exact oracle runs up to T = {EXACT_MAX_T} (its cost grows exponentially in T)")
    sizes = sizes or oracle_sizes(module.T)
    params, xs, targets = random_problem(module, sizes, seed)
    dims = {"n_x": sizes[0], "n_h": sizes[1], "n_y": sizes[2]}
    symbols, params_sym = [], {}
    for name, shape in module.PARAM_SHAPES.items():
        shape = tuple(dims[d] for d in shape)
        rows, cols = shape if len(shape) == 2 else (shape[0], 1)
        m = sp.Matrix(rows, cols, lambda i, j, name=name: sp.Symbol(f"{name}_{i}_{j}", real=True))
        params_sym[name] = m
        symbols.extend(m)
    exact_x = np.vectorize(lambda v: sp.Rational(float(v)), otypes=[object])(xs)
    loss_expr = _scalar_loss(module, params_sym, exact_x, targets)
    derivatives = [sp.diff(loss_expr, s) for s in symbols]
    values = [sp.Rational(float(v)) for name in module.PARAM_SHAPES for v in np.ravel(params[name])]
    with mpmath.workdps(digits):
        env = {s: mpmath.mpf(v.p) / v.q for s, v in zip(symbols, values)}
        memo: dict = {}
        exact = [float(_evaluate_exactly(e, env, memo)) for e in [loss_expr, *derivatives]]
    loss, grads = module.loss_and_grads(params, xs, targets)
    result = OracleResult(loss=relative_error(loss, exact[0]))
    offset = 1
    for name, value in grads.items():
        n = value.size
        result.grads[name] = relative_error(value, np.reshape(exact[offset : offset + n], value.shape))
        offset += n
    return result


# --- the two derivation forms ---------------------------------------------------------------


def forms_agree(build, sizes=(3, 4, 2, 2), seed=0) -> dict:
    """Relative difference, per parameter, between the recursive form and the sum over paths.

    Both are evaluated straight from the derivation's symbolic expressions, whose loss is the
    plain one (``log`` of a softmax, ``-y / ŷ``): an explosive activation such as ``exp(x)``
    can drive a probability to 0 at the usual point. The weights and inputs are then halved
    until every value is finite; the two forms are an identity, so any point tells.
    """
    derivation = build.derivation
    graph = derivation.graph
    n_x, n_h, n_y, B = sizes
    dims = {SIZES["n_x"]: n_x, SIZES["n_h"]: n_h, SIZES["n_y"]: n_y, A.B: B}
    for scale in (1.0, 0.5, 0.25, 0.125):
        env = _forms_point(graph, dims, np.random.default_rng(seed), scale)
        with np.errstate(all="ignore"):
            env = run([(n.symbol, n.expr) for n in graph.nodes + derivation.adjoints], env, dims)
        if all(np.all(np.isfinite(v)) for v in env.values()):
            break
    out = {}
    with np.errstate(all="ignore"):  # values that stayed infinite show as nan in the report
        for name, expr in derivation.gradients.items():
            recursive = evaluate(expr, env, dims)
            paths = sum(evaluate(term, env, dims) for term in path_expansion(derivation, name))
            out[name] = relative_error(paths, recursive)
    return out


def _forms_point(graph, dims, rng, scale) -> dict:
    """Random weights (0.5 scale N(0, 1)), inputs (scale N(0, 1)) and one-hot targets."""
    env = {}
    for name, p in graph.params.items():
        shape = (int(p.shape[0].subs(dims)), int(sp.sympify(p.shape[1]).subs(dims)))
        env[name] = 0.5 * scale * rng.standard_normal(shape)
    n_x, n_y, B = (dims[SIZES["n_x"]], dims[SIZES["n_y"]], dims[A.B])
    for x in graph.inputs["x"]:
        env[x.name] = scale * rng.standard_normal((n_x, B))
    for y in graph.inputs["y"]:
        env[y.name] = np.eye(n_y)[:, rng.integers(0, n_y, B)]
    return env


def _worst(errors) -> float:
    """The largest error, or nan when any is nan (``max`` would skip a nan that is not first)."""
    errors = list(errors)
    return float("nan") if any(np.isnan(e) for e in errors) else max(errors)


@dataclass
class Report:
    """What ``check_module`` found."""

    T: int
    fd: dict
    taylor: float
    exact: OracleResult | None = None
    forms: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list:
        """One phrase per check that failed, with its figure and limit (nan fails every limit)."""
        out = []
        fd, forms = _worst(self.fd.values()), self.forms and _worst(self.forms.values())
        if not fd <= FD_TOLERANCE:
            out.append(f"finite differences {fd:.1e} (limit {FD_TOLERANCE:.0e})")
        if not abs(self.taylor - 2.0) <= 0.1:
            out.append(f"Taylor remainder slope {self.taylor:.3f} (2 wanted)")
        if self.exact is not None and not self.exact.worst <= EXACT_TOLERANCE:
            out.append(f"exact oracle {self.exact.worst:.1e} (limit {EXACT_TOLERANCE:.0e})")
        if self.forms is not None and not forms <= FORMS_TOLERANCE:
            out.append(f"paths vs recursion {forms:.1e} (limit {FORMS_TOLERANCE:.0e})")
        return out


def check_build(build, exact: bool = False) -> Report:
    """Check a module before it is written: import its text from a temporary file and run ``check_module``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{build.spec.name}.py"
        path.write_text(build.module, encoding="utf-8")
        return check_module(load_module(path), exact=exact, build=build)


def check_module(module, exact: bool = False, build=None, sizes=CHECK_SIZES, seed=0) -> Report:
    """Finite differences and the Taylor test at ``sizes``; the exact oracle too if asked.

    Given the ``build`` the module came from (and T <= FORMS_MAX_T), also
    checks that its recursive form and its sum over paths agree.
    """
    params, xs, targets = random_problem(module, sizes, seed)
    with np.errstate(all="ignore"):  # a module that overflows (exp(x) over 20 steps) shows it as nan
        fd = finite_differences(module, params, xs, targets)
        slope = taylor_test(module, params, xs, targets)
    oracle = exact_oracle(module, seed=seed) if exact else None
    forms = forms_agree(build) if build is not None and module.T <= FORMS_MAX_T else None
    return Report(module.T, fd, slope, oracle, forms)
