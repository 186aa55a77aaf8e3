"""Verification of generated modules, three independent ways, and every path a module has.

- ``exact_oracle``: the loss written out in SymPy scalars from the network's
  description, each chain by its cell's own step equations (``reference.run_network``;
  no matrix engine involved), differentiated by the scalar chain rule in one reverse
  sweep with SymPy's derivative of each elementary function, and evaluated in
  40-digit arithmetic.
- ``finite_differences`` and ``taylor_test``: the module's gradient against its
  own loss, by central differences in float64, and by the slope of the Taylor
  remainder (2 for a correct gradient, 1 for a wrong one). A gradient that misses
  the central differences is compared with ``extrapolated_gradient`` (Ridders'
  higher-order differences) before it is called wrong: an ill-conditioned
  difference quotient (``1/x`` near its pole) is not a wrong gradient.
- ``forms_agree``: the derivation's recursive (delta) form against its sum over
  paths, evaluated straight from the symbolic expressions.

The inputs are differentiated like the parameters when the module returns their
gradient (``grads["x"]``, ``--input-grad``).
- ``variants.check_paths``: float32, single sequences, one-hot targets, ``loss()``
  and ``forward()`` against the float64 batched result the checks above verify, and token ids
  against the one-hot inputs they stand for.
- ``carried.check``: an initial state given per sequence (``state=``): its gradient by
  central differences and the Taylor test, the final state against the plain loop.
- ``truncated.check``: a truncated module (``--truncate τ`` below the full horizon) has no loss
  whose gradient it is, so it replaces the finite differences, the Taylor test, the oracle and the
  state's differences: its gradients against the full network's sum over paths restricted to the
  paths the truncation keeps.

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
from rnngen import masks
from rnngen.activations import LOSSES, OUTPUT_LAYERS, elementwise
from rnngen.backprop import TooManyPaths, path_terms
from rnngen.evaluate import evaluate, run
from rnngen.jsonable import plain
from rnngen.network import size
from rnngen.reference import (
    Ops,
    hidden_key,
    input_steps,
    network_of,
    preactivations,
    relative_error,
    run_network,
    sizes_of,
    spec_of,
)
from rnngen.truncated import RESTRICTED_TOLERANCE, truncation
from rnngen.truncated import check as check_truncated
from rnngen.truncated import failures as truncated_failures
from rnngen.variants import DTYPES, check_paths

#: Sizes of the default numeric check: (n_x, n_h, n_y, B); ``n_h`` is every layer's size (or, given
#: as a sequence, one size per layer, as ``init_params`` takes it).
CHECK_SIZES = (4, 5, 3, 2)
#: Tolerances of the checks.
FD_TOLERANCE = 1e-6
EXACT_TOLERANCE = 1e-12
FORMS_TOLERANCE = 1e-12
#: A padded step's input and target must change nothing but rounding (``masks.padded_steps``).
PADDED_LIMIT = 1e-13
#: The sum over paths has T(T+1)/2 terms per weight of one layer, about T times more per layer
#: above; it is checked up to this T, and up to this many terms in all (about 10 s here: a
#: 3-layer bidirectional network up to T = 5, 2 layers up to T = 8).
FORMS_MAX_T = 12
FORMS_MAX_TERMS = 5000


class VerificationError(Exception):
    """A module whose gradients fail a check, or that cannot be checked."""


def load_module(path, name: str | None = None):
    """Import a generated module from its file, under ``name`` (a private one by default).

    The module is in ``sys.modules`` while it runs, as for any import; afterwards
    ``sys.modules`` is left as it was, so loading never replaces the caller's modules.
    """
    path = Path(path)
    name = name or f"_rnngen_checked_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise VerificationError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken file is reported, not raised through
        raise VerificationError(f"{path} cannot be imported: {type(e).__name__}: {e}") from None
    finally:
        if before is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = before
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
    return _random_point(module, sizes, seed, dtype)[:3]


def _random_point(module, sizes, seed, dtype=np.float64):
    """``random_problem`` and the scale ``_finite`` applied to its weights and inputs."""
    spec = module.SPEC
    kinked = elementwise(hidden_key(spec)).kink
    mask = getattr(module, "mask", None)  # a masked module's (masks.Masked)
    for attempt in range(seed, seed + 1000):
        point = _finite(module, *_draw(module, sizes, attempt, dtype))
        if not kinked or np.abs(preactivations(spec, *point[:2], mask=mask)).min() >= KINK_MARGIN:
            return point
    raise VerificationError("found no random problem whose pre-activations keep away from the kink")


def _finite(module, params, xs, targets, halvings=4):
    """The point with weights and inputs halved until the loss and every gradient are finite, and the scale.

    An explosive activation (``x**16``, ``exp(x)``) overflows at the usual scale, and a check at
    an overflowing point says nothing; a correct gradient is correct at any point. A module that
    is still not finite at 1/16 of the scale fails the checks with its nans.
    """
    scale = 1.0
    for _ in range(halvings):
        with np.errstate(all="ignore"):
            loss, grads = module.loss_and_grads(params, xs, targets)
        if np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values()):
            break
        params, xs, scale = {k: v / 2 for k, v in params.items()}, xs / 2, scale / 2
    return params, xs, targets, scale


def size_values(sizes, layers: int) -> dict:
    """Size name -> value, as ``PARAM_SHAPES`` names them, for check sizes ``(n_x, n_h, n_y, B)``.

    ``n_h`` is an int (every layer's size) or a sequence of one size per layer; a network of one
    layer calls its size ``n_h``, one of L layers ``n_h1 .. n_hL``.
    """
    n_x, n_h, n_y, _ = sizes
    hidden = tuple(n_h) if np.ndim(n_h) else (n_h,) * layers
    return {"n_x": n_x, "n_y": n_y, "n_h": hidden[0], **{f"n_h{layer}": n for layer, n in enumerate(hidden, 1)}}


def shape_of(dims: tuple, values: dict) -> tuple:
    """The array shape of a ``PARAM_SHAPES`` entry: a compound dim ``"n_h + n_x"`` (blocks side by
    side) is the sum of its sizes."""
    return tuple(sum(values[name.strip()] for name in d.split("+")) for d in dims)


def _layers(module) -> int:
    return module.SPEC.get("layers", 1)


def _draw(module, sizes, seed, dtype):
    B = sizes[3]
    rng = np.random.default_rng(seed)
    values = size_values(sizes, _layers(module))
    n_x, n_y = values["n_x"], values["n_y"]
    params = {
        name: (0.5 * rng.standard_normal(shape_of(dims, values))).astype(dtype)
        for name, dims in module.PARAM_SHAPES.items()
    }
    spec = spec_of(module.SPEC)
    xs = rng.standard_normal((len(spec.input_steps), B, n_x)).astype(dtype)
    xs = xs[0] if spec.mapping == "one-to-many" else xs  # the module takes the one input as (B, n_x)
    steps = len(spec.loss_steps)
    kind = LOSSES[module.SPEC["loss"]].targets
    if kind == "classes":
        targets = rng.integers(0, n_y, size=(steps, B))
    elif kind == "probabilities":
        targets = rng.uniform(0.05, 0.95, size=(steps, B, n_y)).astype(dtype)
    else:
        targets = rng.standard_normal((steps, B, n_y)).astype(dtype)
    return params, xs, targets[0] if module.SPEC["mapping"] == "many-to-one" else targets


def variables(module, params, xs) -> dict:
    """What the check differentiates the loss in: the parameters, and the inputs (``"x"``) when the
    module returns their gradient (``--input-grad``)."""
    return {**params, "x": xs} if getattr(module, "SPEC", {}).get("input_grad") else dict(params)


def _loss_at(module, point: dict, xs, targets) -> float:
    """The module's loss at ``point`` (``variables``: the parameters, maybe the inputs)."""
    return module.loss({k: v for k, v in point.items() if k != "x"}, point.get("x", xs), targets)


def finite_difference_gradient(module, params, xs, targets, eps=1e-5) -> dict:
    """Every gradient by central differences of the module's loss, entry by entry (the inputs' too,
    when the module returns their gradient).

    The step 1e-5 is near the cube root of float64's epsilon, which balances
    the O(eps^2) truncation error against the O(|E| / eps) rounding error; a
    smaller step loses digits to rounding when E is large (long unrolls).
    """
    point = variables(module, params, xs)
    return differences(lambda moved: _loss_at(module, moved, xs, targets), point, list(point), eps=eps)


def finite_differences(module, params, xs, targets, eps=1e-5) -> dict:
    """Relative error of each gradient against central differences of the module's loss."""
    _, grads = module.loss_and_grads(params, xs, targets)
    numeric = finite_difference_gradient(module, params, xs, targets, eps)
    return {name: relative_error(grads[name], numeric[name]) for name in numeric}


def extrapolated_gradient(module, params, xs, targets, names) -> dict:
    """The gradients named, entry by entry, by Ridders' extrapolation of central differences
    (``differences`` with ``higher``): the higher-order difference the check consults before it
    calls a gradient wrong."""
    point = variables(module, params, xs)
    rounding = np.finfo(np.float64).eps * abs(module.loss(params, xs, targets))
    return differences(lambda moved: _loss_at(module, moved, xs, targets), point, names, rounding=rounding)


def differences(loss_at, point: dict, names, eps=1e-5, rounding=None, starts=(1e-2, 1e-3, 1e-4, 1e-5)) -> dict:
    """``d loss_at / d point[name]`` for each of ``names``, entry by entry: central differences at
    ``eps``, or, given the loss's ``rounding``, Ridders' extrapolation.

    A central difference at one step errs by its truncation (large when the loss bends fast,
    as ``1/x`` near its pole does) or by rounding (large against a gradient much smaller than
    ``|E|``). Ridders' method takes differences at steps shrinking by 1.4, extrapolates them to
    step 0 (Neville's tableau: each column one order higher) and estimates its own error. Runs
    from each of ``starts`` (a large first step may cross a pole) keep the value whose estimate
    is smallest.
    """
    out = {}
    for name in names:
        value = point[name]
        out[name] = np.zeros_like(value, dtype=np.float64)
        for index in np.ndindex(value.shape):
            shifted = {k: v.copy() for k, v in point.items()}

            def at(e, shifted=shifted, index=index, v=value[index], name=name):
                shifted[name][index] = v + e
                return loss_at(shifted)

            if rounding is None:
                out[name][index] = (at(eps) - at(-eps)) / (2 * eps)
            else:
                out[name][index] = min((_ridders(at, h, rounding) for h in starts), key=lambda r: r[1])[0]
    return out


def _ridders(f, h, rounding=0.0, shrink=1.4, levels=10) -> tuple:
    """``(df/de at 0, its error estimate)`` by Ridders' method (Numerical Recipes' dfridr): the
    extrapolation with the smallest estimate, stopping once higher orders only add rounding.

    Two extrapolations can agree by chance far below rounding; ``rounding / h`` (the rounding
    error of a central difference at step h, ``rounding`` being eps |f|) bounds each estimate
    from below, so that a run from a larger step, with less rounding, is preferred.
    """
    table = [[(f(h) - f(-h)) / (2 * h)]]
    best, error = table[0][0], float("inf")
    for i in range(1, levels):
        h /= shrink
        row = [(f(h) - f(-h)) / (2 * h)]
        factor = shrink**2
        for j in range(1, i + 1):
            row.append((row[j - 1] * factor - table[i - 1][j - 1]) / (factor - 1))
            factor *= shrink**2
            estimate = max(abs(row[j] - row[j - 1]), abs(row[j] - table[i - 1][j - 1]), rounding / h)
            if estimate <= error:
                best, error = row[j], estimate
        table.append(row)
        if abs(row[i] - table[i - 1][i - 1]) >= 2 * error:
            break
    return best, error


def taylor_test(module, params, xs, targets, seed=1, largest=1e-3, directions=3) -> float:
    """Slope of log |E(p + e v) - E(p) - e <g, v>| against log e: 2 when the gradient is right.

    The parameters move, and the inputs too when the module returns their gradient; the
    steps are chosen by ``taylor_slope``.
    """
    e0, grads = module.loss_and_grads(params, xs, targets)
    point = variables(module, params, xs)
    slope, _ = taylor_slope(
        lambda moved: _loss_at(module, moved, xs, targets),
        point,
        grads,
        e0,
        _kink_signs(module, lambda moved: ({k: v for k, v in moved.items() if k != "x"}, moved.get("x", xs), None)),
        np.random.default_rng(seed),
        largest,
        directions,
    )
    return slope


def taylor_slope(loss_at, point: dict, grads: dict, e0: float, signs_at, rng, largest=1e-3, directions=3) -> tuple:
    """``(slope, readable)``: the slope of log |E(p + e v) - E(p) - e <g, v>| against log e at ``point``
    (name -> array; ``grads`` holds the gradient of each), 2 when the gradient is right; ``readable``
    is False when even the largest step's remainder sits at rounding level (the loss does not move
    along the point above it, and the slope says nothing).

    The steps are ``largest`` halved four times. Along a direction where the loss is nearly flat
    the second-order remainder sinks to rounding level, so ``directions`` random directions are
    tried and the one whose remainder stays largest is used. ``signs_at`` (None: no kink) gives
    the signs of the pre-activations at a moved point: the largest step is halved until none
    changes sign along the way, since across a kink the remainder is first order even for a
    correct gradient.

    The remainder is second order only once the step is small against the distance to the
    nearest trouble (a pole of ``1/x`` a few thousandths away): while the slope is not 2, the
    steps move down tenfold, as long as the remainder stays far above rounding. A wrong gradient
    leaves a first-order term that only dominates more at smaller steps, so moving down cannot
    make it pass.
    """
    floor = TAYLOR_ROUNDING * np.finfo(np.float64).eps * max(1.0, abs(e0))

    def moved(direction, e):
        return {k: point[k] + e * direction[k] for k in point}

    def remainders(direction, steps):
        slope_dot = sum(float(np.sum(grads[k] * direction[k])) for k in point)
        return [abs(loss_at(moved(direction, e)) - e0 - e * slope_dot) for e in steps]

    best = None
    for _ in range(directions):
        direction = {k: rng.standard_normal(v.shape) for k, v in point.items()}
        reach = largest
        if signs_at is not None:
            start = signs_at(point)
            for _ in range(60):
                if np.array_equal(signs_at(moved(direction, reach)), start):
                    break
                reach /= 2
        steps = [reach / 2**i for i in range(5)]
        rest = remainders(direction, steps)
        if best is None or rest[-1] > best[2][-1]:
            best = (direction, steps, rest)
    direction, steps, rest = best
    readable = bool(rest[0] > floor)
    slope = _slope(steps, rest)
    for _ in range(TAYLOR_SHRINKS):
        # well inside the tolerance, or the next steps would read rounding
        if abs(slope - 2.0) <= TAYLOR_SLOPE_TOLERANCE / 4 or not rest[-1] / 100 > floor:
            break
        steps = [e / 10 for e in steps]
        rest = remainders(direction, steps)
        slope = _slope(steps, rest)
    return slope, readable


def _kink_signs(module, split):
    """The signs of every pre-activation at a moved point, for an activation with a kink, else None.
    ``split(point)`` gives the point's ``(params, xs, state)``."""
    if not elementwise(hidden_key(module.SPEC)).kink:
        return None
    mask = getattr(module, "mask", None)  # a masked module's (masks.Masked)
    return lambda point: np.sign(preactivations(module.SPEC, *split(point), mask))


#: How far the slope may be from 2; how many tenfold moves down the steps may make; how far above
#: float64 rounding of E (in units of eps |E|) the smallest remainder must stay to be read.
TAYLOR_SLOPE_TOLERANCE = 0.1
TAYLOR_SHRINKS = 4
TAYLOR_ROUNDING = 1e4


def _slope(steps, remainders) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero or nan remainder gives a nan slope
        return float(np.polyfit(np.log(steps), np.log(remainders), 1)[0])


# --- the exact scalar oracle --------------------------------------------------------------


@dataclass
class OracleResult:
    """Relative errors of the module against the exact oracle."""

    loss: float
    grads: dict = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return _worst([self.loss, *self.grads.values()])


class _NamedOps(Ops):
    """The oracle's operations: each quantity a cell names (``z``, ``h``) becomes one symbol per entry,
    defined by its scalar expression in ``definitions`` (in order, each reading only earlier ones).

    The scalar loss is then a straight-line program, as the graph is: SymPy applies ``tanh`` to a
    short sum of symbols, never to a whole tree of earlier steps (whose assumptions it would walk
    again at every step: 46 s to write the loss of a 3-layer bidirectional network at T = 2).
    """

    def __init__(self, definitions: dict):
        super().__init__(lambda key, value: value.applyfunc(elementwise(key).scalar))
        self.definitions = definitions

    def node(self, base, value):
        first = len(self.definitions)
        names = [sp.Symbol(f"{base}#{first + i}", real=True) for i in range(len(value))]
        self.definitions.update(zip(names, value))
        return sp.Matrix(value.rows, value.cols, names)


def _scalar_loss(module, params_sym, xs, targets, state_sym: dict | None = None, mask=None) -> tuple:
    """E written out entry by entry from the network's description, one sequence at a time.

    Each chain runs its cell's own step equations (``reference.run_network``) on SymPy matrices: column
    math, a row-notation weight is its stored matrix transposed, a blocked parameter's block is a
    slice of it; then the output layer and the loss in their textbook scalar forms.
    ``params_sym`` holds each parameter as a SymPy matrix of its stored shape, vectors as columns;
    ``state_sym``, if given, each chain's initial state per sequence (name -> (B, n) array of symbols)
    in place of the learned one; ``mask``, if given, the (T, B) mask of real steps: a padded step
    keeps the state (``cells.keep`` with the step's 0 or 1) and its loss term is left out
    (many-to-one's one term counts for every sequence).

    Returns:
        ``(E, definitions)``: E in terms of the parameters, the inputs and the symbols that
        ``definitions`` defines (``_NamedOps``); ``_inline`` writes it out as one expression.
    """
    spec = module.SPEC
    xs = input_steps(spec, xs)
    _, B, n_x = xs.shape
    full = spec_of(spec)
    net = network_of(spec)
    output = OUTPUT_LAYERS[spec["output"]].scalar
    step_loss = LOSSES[spec["loss"]].scalar
    dims = sizes_of(net, params_sym, n_x)
    ops = _NamedOps({})
    last_only = spec["mapping"] == "many-to-one"
    total = sp.Integer(0)
    for seq in range(B):
        columns = [sp.Matrix(xs[t, seq].tolist()) for t in range(len(xs))]
        env = {**params_sym, **{k: sp.Matrix(v[seq].tolist()) for k, v in (state_sym or {}).items()}}
        steps = None if mask is None else [int(m) for m in mask[:, seq]]
        _, outputs = run_network(net, full, ops, env, dims, columns, steps)
        for t, o in outputs.items():
            if steps is not None and full.masked_losses and not steps[t - 1]:
                continue  # a padded step's loss term
            target = targets[seq] if last_only else targets[t - full.loss_steps[0], seq]
            if np.ndim(target) == 0:  # a class index
                y = [1 if i == target else 0 for i in range(o.rows)]
            else:
                y = [sp.Rational(float(v)) for v in target]
            total += step_loss(output(list(o)), y)
    return total, ops.definitions


def _inline(expr, definitions: dict):
    """``expr`` with every defined symbol replaced by its definition (for small cases: it is a tree)."""
    for name, value in reversed(definitions.items()):
        expr = expr.xreplace({name: value})
    return expr


def _value_exactly(loss, definitions: dict, env: dict, memo: dict):
    """The loss's value in mpmath; ``env`` receives the defined symbols' values, in order."""
    for name, expr in definitions.items():
        env[name] = _evaluate_exactly(expr, env, memo)
    return _evaluate_exactly(loss, env, memo)


#: The exact oracle is for tiny sizes and refuses long unrolls. (Its cost is linear in T since
#: the scalar loss became a straight-line program, 1.8 s at T = 32 with n_h = 2; the limit stays
#: as the API states it.)
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


def _gradient_exactly(loss, definitions: dict, env: dict, memo: dict) -> dict:
    """d loss / d s for every symbol s the loss reads, in mpmath, by one reverse sweep.

    The expression graph (each distinct subexpression once, a defined symbol leading to its
    definition) is walked once from the loss down, each edge's local derivative evaluated
    exactly (an elementary function's from SymPy's own rule, ``fdiff``): the cost is the size of
    the graph, whatever the number of parameters. ``env`` must hold the defined symbols' values
    (``_value_exactly``); ``memo`` holds values.
    """
    zero = mpmath.mpf(0)
    adjoint = {loss: mpmath.mpf(1)}
    for expr in reversed(_topological(loss, definitions)):
        a = adjoint.get(expr, zero)
        if not a:
            continue
        for child, partial in _partials(expr, definitions, env, memo):
            adjoint[child] = adjoint.get(child, zero) + a * partial
    return adjoint


def _children(expr, definitions: dict) -> tuple:
    if expr in definitions:
        return (definitions[expr],)
    return () if expr.is_Symbol or expr.is_Number else expr.args


def _topological(root, definitions: dict) -> list:
    """Every node of the graph under ``root``, each after the nodes it reads (no recursion: the
    definitions can chain deeper than Python's stack)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        expr, done = stack.pop()
        if done:
            order.append(expr)
        elif expr not in seen:
            seen.add(expr)
            stack.append((expr, True))
            stack.extend((c, False) for c in _children(expr, definitions) if c not in seen)
    return order


def _partials(expr, definitions: dict, env: dict, memo: dict) -> list:
    """``(operand, d expr / d operand)`` for each operand that may depend on a symbol."""
    if expr in definitions:
        return [(definitions[expr], mpmath.mpf(1))]
    if expr.is_Symbol or expr.is_Number:
        return []
    if expr.is_Add:
        return [(a, mpmath.mpf(1)) for a in expr.args if not a.is_Number]
    if expr.is_Mul:  # the product rule: each factor's partial is the product of the others
        values = [_evaluate_exactly(a, env, memo) for a in expr.args]
        return [
            (a, mpmath.fprod(v for j, v in enumerate(values) if j != i))
            for i, a in enumerate(expr.args)
            if not a.is_Number
        ]
    if expr.is_Pow:
        base, exp = expr.args
        b, e = _evaluate_exactly(base, env, memo), _evaluate_exactly(exp, env, memo)
        out = [] if base.is_Number else [(base, e * b ** (e - 1))]
        return out if exp.is_Number else [*out, (exp, b**e * mpmath.log(b))]
    if expr.func in _MPMATH and len(expr.args) == 1:
        return [(expr.args[0], _evaluate_exactly(expr.fdiff(1), env, memo))]
    raise VerificationError(f"the exact oracle cannot differentiate {expr.func}")


def exact_oracle(module, sizes=None, seed=0, digits=40, progress=None, state: bool = False) -> OracleResult:
    """Compare the module's loss and gradients with the exact derivatives of the scalar loss.

    Inputs and parameters are symbols, evaluated at the float64 values the module sees taken
    as exact rationals, so the only rounding on the oracle's side is its
    ``digits``-digit evaluation. The loss is a straight-line program of scalar
    definitions (``_scalar_loss``), and every derivative comes from one reverse sweep
    over it (``_gradient_exactly``): the chain rule once per edge, where ``sympy.diff``
    re-walks the whole expression for every parameter entry at every node.
    ``progress``, if given, is called with a short line before each parameter. With ``state``,
    each sequence starts from an initial state of its own (``carried.random_state``), symbols too,
    and the module's ``grads["state"]`` is checked as the inputs' are.
    """
    if module.T > EXACT_MAX_T:
        raise VerificationError(f"the exact oracle runs up to T = {EXACT_MAX_T}, got T = {module.T}")
    say = progress or (lambda _: None)
    sizes = sizes or oracle_sizes(module.T)
    params, xs, targets = random_problem(module, sizes, seed)
    values = size_values(sizes, _layers(module))
    params_sym = {}
    for name, dims in module.PARAM_SHAPES.items():
        shape = shape_of(dims, values)
        rows, cols = shape if len(shape) == 2 else (shape[0], 1)
        params_sym[name] = sp.Matrix(rows, cols, lambda i, j, name=name: sp.Symbol(f"{name}_{i}_{j}", real=True))
    # the inputs are symbols too, so that the input gradient (grads["x"]) is checked like the others
    params_sym["x"] = np.vectorize(lambda i: sp.Symbol(f"x[{i}]", real=True), otypes=[object])(np.arange(xs.size))
    x_sym = params_sym["x"].reshape(xs.shape)
    given, state_sym, kwargs = {}, None, {}
    if state:
        from rnngen import carried  # it reads this module's tolerances

        given = {f"state:{k}": v for k, v in carried.random_state(module, params, xs, seed + 2).items()}
        for key, value in given.items():
            params_sym[key] = np.vectorize(lambda i, key=key: sp.Symbol(f"{key}[{i}]", real=True), otypes=[object])(
                np.arange(value.size)
            )
        state_sym = {key[len("state:") :]: params_sym[key].reshape(given[key].shape) for key in given}
        kwargs = {"state": carried.given(module, {k[len("state:") :]: v for k, v in given.items()})}
    mask = None
    if module.SPEC.get("masked"):  # some padded steps, as the check's (masks.random_mask)
        mask = kwargs["mask"] = masks.random_mask(module.SPEC, input_steps(module.SPEC, xs).shape[1], seed + 5)
    say("exact oracle: the scalar loss")
    weights = {k: v for k, v in params_sym.items() if k in module.PARAM_SHAPES}
    loss_expr, definitions = _scalar_loss(module, weights, x_sym, targets, state_sym, mask)
    loss, grads = module.loss_and_grads(params, xs, targets, **kwargs)
    if state:  # the given state's gradient, checked entry by entry as a parameter's
        per_chain = carried.as_dict(module, grads.pop("state"))
        grads.update({f"state:{k}": v for k, v in per_chain.items()})
    with mpmath.workdps(digits):
        env = {
            s: mpmath.mpf(v.p) / v.q
            for name, value in {**params, "x": xs, **given}.items()
            for s, v in zip(params_sym[name], (sp.Rational(float(v)) for v in np.ravel(value)))
        }
        memo: dict = {}
        exact_loss = _value_exactly(loss_expr, definitions, env, memo)
        result = OracleResult(loss=relative_error(loss, float(exact_loss)))
        say("exact oracle: the gradients")
        adjoint = _gradient_exactly(loss_expr, definitions, env, memo)
        for k, (name, value) in enumerate(grads.items()):
            say(f"exact oracle: {name} ({k + 1} of {len(grads)})")
            exact = [float(adjoint.get(s, 0)) for s in params_sym[name]]
            result.grads[name] = relative_error(value, np.reshape(exact, value.shape))
    return result


# --- the two derivation forms ---------------------------------------------------------------


def forms_agree(build, sizes=(3, 4, 2, 2), seed=0, max_terms: int | None = None) -> dict:
    """Relative difference, per parameter (and for the inputs, ``"x"``, when the module returns
    their gradient), between the recursive form and the sum over paths.

    Both are evaluated straight from the derivation's symbolic expressions, whose loss is the
    plain one (``log`` of a softmax, ``-y / ŷ``): an explosive activation such as ``exp(x)``
    can drive a probability to 0 at the usual point. The weights and inputs are then halved
    until every value is finite; the two forms are an identity, so any point tells.

    Raises:
        TooManyPaths: the sums over paths have more than ``max_terms`` terms in all
            (``FORMS_MAX_TERMS`` by default).
    """
    max_terms = FORMS_MAX_TERMS if max_terms is None else max_terms
    derivation = build.derivation
    graph = derivation.graph
    values = size_values(sizes, build.spec.layers)
    dims = {size(name): n for name, n in values.items()} | {A.B: sizes[3]}
    for scale in (1.0, 0.5, 0.25, 0.125):
        env = _forms_point(graph, dims, np.random.default_rng(seed), scale)
        with np.errstate(all="ignore"):
            env = run([(n.symbol, n.expr) for n in graph.nodes + derivation.adjoints], env, dims)
        if all(np.all(np.isfinite(v)) for v in env.values()):
            break
    gradients = {name: [(f"dE/d{name}", expr)] for name, expr in derivation.gradients.items()}
    if build.spec.input_grad:
        gradients["x"] = [(f"dE/dx_{t}", expr) for t, expr in enumerate(derivation.inputs, 1)]
    out = {}
    memo: dict = {}  # the paths share their tails
    left = max_terms
    with np.errstate(all="ignore"):  # values that stayed infinite show as nan in the report
        for name, parts in gradients.items():
            recursive, paths = [], []
            for what, expr in parts:
                try:
                    terms = path_terms(derivation, expr, what, left)
                except TooManyPaths:
                    raise TooManyPaths(f"the sums over paths have more than {max_terms} terms in all") from None
                left -= len(terms)
                recursive.append(evaluate(expr, env, dims))
                paths.append(sum(evaluate(term, env, dims, memo) for term in terms))
            out[name] = relative_error(np.stack(paths), np.stack(recursive))
    return out


def _forms_point(graph, dims, rng, scale) -> dict:
    """Random weights (0.5 scale N(0, 1)), inputs (scale N(0, 1)), one-hot targets and a mask of 0 and 1."""
    env = {}
    for name, p in graph.params.items():
        shape = (int(p.shape[0].subs(dims)), int(sp.sympify(p.shape[1]).subs(dims)))
        env[name] = 0.5 * scale * rng.standard_normal(shape)
    n_x, n_y, B = (dims[size("n_x")], dims[size("n_y")], dims[A.B])
    for x in graph.inputs["x"]:
        env[x.name] = scale * rng.standard_normal((n_x, B))
    for y in graph.inputs["y"]:
        env[y.name] = np.eye(n_y)[:, rng.integers(0, n_y, B)]
    for m in graph.inputs.get("m", ()):  # a masked network: steps padded at random
        env[m.name] = rng.integers(0, 2, (1, B)).astype(np.float64)
    return env


def _worst(errors) -> float:
    """The largest error, or nan when any is nan (``max`` would skip a nan that is not first)."""
    errors = list(errors)
    return float("nan") if any(np.isnan(e) for e in errors) else max(errors)


@dataclass
class Report:
    """What ``check_module`` found.

    Attributes:
        T: the module's unroll length.
        fd: relative error of each float64 gradient against central differences.
        taylor: slope of the Taylor remainder (2 for a correct gradient).
        exact: the exact oracle's errors, if it ran.
        forms: recursive form against sum over paths, per parameter, if the build was given.
        extrapolated: for each gradient that missed the central differences, its relative
            error against the higher-order (extrapolated) difference.
        paths: every other path of the module (float32, single sequences, one-hot targets,
            ``loss()``, ``forward()``, token ids) against the float64 batched result, by name.
        sizes, seed, dtypes: where the check ran: (n_x, n_h, n_y, B), the draw, the paths' dtypes.
        scale: the factor on the drawn weights and inputs (below 1 where the loss overflowed).
        forms_skipped: why the two forms were not compared although the build was given ("" if they were).
        state: the carried-state checks' figures (``carried.check``): an initial state given per sequence.
        horizon: the truncation horizon τ of a truncated module whose checks were ``truncated.check``
            (no finite differences, Taylor test or oracle: ``fd`` is empty, ``taylor`` nan), else None.
        truncated: ``truncated.check``'s figures, for such a module.
        truncated_skipped: why they are missing ("" if they are not).
        padded: for a masked module (every check ran with a mask of some padded steps), the largest
            change a padded step's input and target make to E, a gradient or the final state; else None.
        seed: for a seed preset's build, equation number -> relative error of each of the seed's own
            formulas (``seed_notes.deviations``) against the module; else empty.
    """

    T: int
    fd: dict
    taylor: float
    exact: OracleResult | None = None
    forms: dict | None = None
    extrapolated: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    sizes: tuple = CHECK_SIZES
    seed: int = 0
    dtypes: tuple = DTYPES
    scale: float = 1.0
    forms_skipped: str = ""
    state: dict = field(default_factory=dict)
    horizon: int | None = None
    truncated: dict = field(default_factory=dict)
    truncated_skipped: str = ""
    padded: float | None = None
    seed_formulas: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def ill_conditioned(self) -> list:
        """Gradients that missed the central differences but agree with the higher-order difference."""
        return [
            n for n, e in self.fd.items() if not e <= FD_TOLERANCE and self.extrapolated.get(n, np.nan) <= FD_TOLERANCE
        ]

    @property
    def notes(self) -> list:
        """What the figures alone do not say: a point scaled down, a gradient that passed on a second look."""
        out = []
        if self.horizon is not None:
            checked = "; checked against the full sum over paths restricted to the kept paths" if self.truncated else ""
            out.append(
                f"truncated BPTT (tau = {self.horizon}) is the gradient of no loss: no finite differences, Taylor "
                f"test or exact oracle{checked}"
            )
        if self.forms_skipped:
            out.append(f"paths vs recursion not compared: {self.forms_skipped}")
        if self.scale != 1.0:
            out.append(
                f"checked at {self.scale:g} times the drawn weights and inputs: the loss overflows at full scale"
            )
        names = self.ill_conditioned
        if names:
            fd = _worst(self.fd[n] for n in names)
            again = _worst(self.extrapolated[n] for n in names)
            out.append(
                f"difference quotient ill-conditioned for {', '.join(names)} (finite differences {fd:.1e}): "
                f"agrees with the higher-order (extrapolated) difference to {again:.1e}"
            )
        undecided = {name: path for name, path in self.paths.items() if path.undecided}
        if undecided:
            worst = max(path.limits[q] for path in undecided.values() for q in path.undecided)
            which = "; ".join(f"{name} {', '.join(path.undecided)}" for name, path in undecided.items())
            out.append(
                f"too ill-conditioned at this point, or too small for the dtype, to be checked (rounding and "
                f"underflow alone allow up to {worst:.0e}), "
                f"so undecided: {which}; another --seed may decide an ill-conditioned one"
            )
        return out

    @property
    def failures(self) -> list:
        """One phrase per check that failed, with its figure and limit (nan fails every limit)."""
        out = []
        wrong = [n for n, e in self.fd.items() if not e <= FD_TOLERANCE and n not in self.ill_conditioned]
        if wrong:
            fd = _worst(self.fd[n] for n in wrong)
            again = [self.extrapolated[n] for n in wrong if n in self.extrapolated]
            also = f", higher-order difference {_worst(again):.1e}" if again else ""
            out.append(
                f"finite differences {fd:.1e}{also} (limit {FD_TOLERANCE:.0e}): wrong gradient of {', '.join(wrong)}"
            )
        if self.horizon is None and not abs(self.taylor - 2.0) <= TAYLOR_SLOPE_TOLERANCE:
            out.append(f"Taylor remainder slope {self.taylor:.3f} (2 wanted)")
        if self.truncated:
            out += truncated_failures(self.truncated)
        if self.truncated_skipped:  # a truncated module has no other check of its gradient
            out.append(f"the truncated gradient is not checked: {self.truncated_skipped}")
        if self.exact is not None and not self.exact.worst <= EXACT_TOLERANCE:
            out.append(f"exact oracle {self.exact.worst:.1e} (limit {EXACT_TOLERANCE:.0e})")
        if self.forms is not None and not _worst(self.forms.values()) <= FORMS_TOLERANCE:
            out.append(f"paths vs recursion {_worst(self.forms.values()):.1e} (limit {FORMS_TOLERANCE:.0e})")
        if self.state:
            from rnngen import carried  # it reads this module's tolerances

            out += carried.failures(self.state)
        if self.padded is not None and not self.padded <= PADDED_LIMIT:
            out.append(f"a padded step's input or target changes the result by {self.padded:.1e}")
        wrong = {n: e for n, e in self.seed_formulas.items() if not e <= FORMS_TOLERANCE}
        if wrong:
            numbers = ", ".join(f"({n})" for n in wrong)
            out.append(f"the seed's formulas {numbers} disagree with the module by {_worst(wrong.values()):.1e}")
        for name, path in self.paths.items():
            if path.failures:
                figures = ", ".join(f"{q} {e:.1e} (limit {limit:.1e})" for q, e, limit in path.failures)
                out.append(f"{name} disagrees with float64 loss_and_grads: {figures}")
        return out

    def as_dict(self) -> dict:
        """Every figure, the verdict and the failures, JSON-ready (plain floats; nan and inf as None)."""
        n_x, n_h, n_y, B = self.sizes
        return plain(
            {
                "ok": self.ok,
                "T": self.T,
                "sizes": {"n_x": n_x, "n_h": n_h, "n_y": n_y, "B": B},
                "seed": self.seed,
                "dtypes": list(self.dtypes),
                "scale": self.scale,
                "finite_differences": {"errors": self.fd, "limit": FD_TOLERANCE},
                "higher_order_differences": self.extrapolated,
                "taylor_slope": self.taylor,
                "exact_oracle": None
                if self.exact is None
                else {"loss": self.exact.loss, "errors": self.exact.grads, "limit": EXACT_TOLERANCE},
                "paths_vs_recursion": None if self.forms is None else {"errors": self.forms, "limit": FORMS_TOLERANCE},
                "paths": {
                    name: {"errors": p.errors, "limits": p.limits, "undecided": p.undecided}
                    for name, p in self.paths.items()
                },
                "carried_state": self.state,
                "truncated": None
                if self.horizon is None
                else {"tau": self.horizon, "errors": self.truncated, "limit": RESTRICTED_TOLERANCE},
                "padded_steps": self.padded,
                "seed_formulas": {"errors": self.seed_formulas, "limit": FORMS_TOLERANCE}
                if self.seed_formulas
                else None,
                "notes": self.notes,
                "failures": self.failures,
            }
        )


def check_build(build, exact: bool = False, sizes=CHECK_SIZES, seed: int = 0, dtypes=DTYPES, progress=None) -> Report:
    """Check a module before it is written: import its text from a temporary file and run ``check_module``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{build.spec.name}.py"
        path.write_text(build.module, encoding="utf-8")
        module = load_module(path)
    return check_module(module, exact, build, sizes, seed, dtypes, progress)


def _check_sizes(sizes, layers: int) -> None:
    def whole(n):
        return isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1

    hidden = sizes[1] if len(sizes) == 4 else None
    per_layer = isinstance(hidden, (tuple, list)) and len(hidden) == layers and all(map(whole, hidden))
    if len(sizes) != 4 or not all(whole(n) or (i == 1 and per_layer) for i, n in enumerate(sizes)):
        raise ValueError(
            f"sizes must be four whole numbers (n_x, n_h, n_y, B), each at least 1 (n_h may be one per layer, "
            f"{layers} here), got {sizes}"
        )


def check_module(
    module, exact: bool = False, build=None, sizes=CHECK_SIZES, seed: int = 0, dtypes=DTYPES, progress=None
) -> Report:
    """Every check of a module's gradients, at ``sizes`` = (n_x, n_h, n_y, B) drawn from ``seed``.

    Finite differences and the Taylor test verify the float64 batched ``loss_and_grads``; a
    gradient that misses the central differences is compared with the higher-order
    (extrapolated) difference before it is called wrong. Every other path of the module, in
    each of ``dtypes``, is compared with that verified result. The exact oracle runs if
    ``exact``; given the ``build`` the module came from (and T <= FORMS_MAX_T), the
    derivation's recursive form and its sum over paths are compared too, unless the sum has
    more than ``FORMS_MAX_TERMS`` terms (the report's notes say so).

    Args:
        progress: None, or a callable given one short line at the start of each stage that
            may take more than a moment (the CLI prints them to stderr).
    """
    _check_sizes(sizes, _layers(module))
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise ValueError(f"dtypes must be some of {', '.join(DTYPES)}, got {', '.join(map(str, dtypes)) or 'none'}")
    say = progress or (lambda _: None)
    horizon = truncation(module.SPEC)
    if horizon is not None:
        return _check_truncated(module, horizon, build, sizes, seed, dtypes, say)
    plain = module
    if module.SPEC.get("masked"):  # every check below runs with some padded steps
        module = masks.Masked(module, masks.random_mask(module.SPEC, sizes[3], seed + 5))
    with np.errstate(all="ignore"):  # a nan or inf shows in the figures; no warning reaches the terminal
        say("finite differences")
        params, xs, targets, scale = _random_point(module, tuple(sizes), seed)
        fd = finite_differences(module, params, xs, targets)
        doubtful = [n for n, e in fd.items() if not e <= FD_TOLERANCE]
        extrapolated = {}
        if doubtful:
            say(f"higher-order differences for {', '.join(doubtful)}")
            _, grads = module.loss_and_grads(params, xs, targets)
            again = extrapolated_gradient(module, params, xs, targets, doubtful)
            extrapolated = {n: relative_error(grads[n], again[n]) for n in doubtful}
        say("Taylor test")
        slope = taylor_test(module, params, xs, targets)
        paths = check_paths(module, params, xs, targets, tuple(dtypes), say)
        state = {}
        if hasattr(module, "INITIAL_STATES"):  # a module written before states could be given has none
            from rnngen import carried  # it reads this module's tolerances

            say("carried state")
            state = carried.check(module, params, xs, targets, seed + 2, scale)
        padded = None
        if module is not plain:
            say("padded steps")
            padded = masks.padded_steps(module, params, xs, targets)
        module = plain  # the oracle draws its own mask, for its own sizes
        oracle = exact_oracle(module, seed=seed, progress=say) if exact else None
    forms, skipped = _forms(build, module.T, say)
    report = Report(
        module.T, fd, slope, oracle, forms, extrapolated, paths, tuple(sizes), seed, tuple(dtypes), scale, state=state
    )
    report.forms_skipped = skipped
    report.padded = padded
    if build is not None and build.spec.preset is not None:
        from rnngen.seed_notes import deviations  # a preset's own formulas, as its document prints them

        say("the seed's formulas")
        report.seed_formulas = deviations(build.spec, module, build.equations, seed)
    return report


def _forms(build, T: int, say) -> tuple:
    """``(figures, why skipped)`` of the derivation's two forms (``forms_agree``), given the ``build`` and
    T <= FORMS_MAX_T; ``(None, "")`` otherwise."""
    if build is None or T > FORMS_MAX_T:
        return None, ""
    say("paths vs recursion")
    try:
        return forms_agree(build), ""
    except TooManyPaths as e:
        return None, str(e)


def _check_truncated(module, horizon: int, build, sizes, seed: int, dtypes, say) -> Report:
    """``check_module`` for a truncated module: ``truncated.check`` in place of the finite differences,
    the Taylor test, the exact oracle and the state's differences (there is no loss to differentiate);
    every path of the module and the derivation's two forms as for any module."""
    from rnngen import carried  # it reads this module's tolerances

    with np.errstate(all="ignore"):
        params, xs, targets, scale = _random_point(module, tuple(sizes), seed)
        say("truncated gradient vs the restricted sum over paths")
        state = {k: scale * v for k, v in carried.random_state(module, params, xs, seed + 2).items()}
        figures, skipped = {}, ""
        try:
            figures = check_truncated(module, params, xs, targets, state)
        except TooManyPaths as e:
            skipped = str(e)
        paths = check_paths(module, params, xs, targets, tuple(dtypes), say)
    forms, forms_skipped = _forms(build, module.T, say)
    report = Report(module.T, {}, float("nan"), None, forms, {}, paths, tuple(sizes), seed, tuple(dtypes), scale)
    report.horizon, report.truncated, report.truncated_skipped = horizon, figures, skipped
    report.forms_skipped = forms_skipped
    return report
