"""Problems, contenders, the agreement check and interleaved timing.

A ``Problem`` is one network at one size and dtype with random parameters in
column layout. A ``Contender`` is something that computes the loss and every
gradient of it (the generated module, a hand-written loop, a framework), or,
for the machine's limit, only the GEMMs they all share.

Timing is interleaved: sample i runs every contender once, in an order that
rotates, so a drift of the machine (another process, the clock) lands on all
of them alike; the figure is the median of the samples. Before each sample
the machine settles for ``settle`` seconds: BLAS and OpenMP worker threads
spin for a while after a call, and on two cores that spinning would slow
whichever library runs next.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from rnngen.spec import RNNSpec

#: The agreement a contender must reach with the generated module before anything is timed:
#: relative to the largest entry of each gradient (and to |E|).
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


class BenchError(Exception):
    """A benchmark that cannot run or whose contenders disagree; the message says which."""


@dataclass
class Problem:
    """One network, one size, one dtype: parameters (column layout), inputs and targets.

    Attributes:
        targets: what a generated module takes (class indices for class targets, else rows).
        y_rows: the same targets as rows (L, B, n_y), L = T or 1.
    """

    spec: RNNSpec
    sizes: tuple  # (B, n_x, n_h, n_y)
    dtype: type
    params: dict
    xs: np.ndarray
    targets: np.ndarray
    y_rows: np.ndarray

    @property
    def classes(self) -> bool:
        return np.issubdtype(self.targets.dtype, np.integer)


def make_problem(spec: RNNSpec, B: int, n_x: int, n_h: int, n_y: int, dtype=np.float64, seed: int = 0) -> Problem:
    """Random parameters (weights ~ N(0, 1/fan-in); biases and h0 nonzero, so their gradients are tested too)."""
    rng = np.random.default_rng(seed)
    shapes = {"U": (n_h, n_x), "W": (n_h, n_h), "V": (n_y, n_h)}
    params = {k: rng.standard_normal(s) / math.sqrt(s[1]) for k, s in shapes.items()}
    if spec.hidden_bias:
        params["b"] = 0.1 * rng.standard_normal(n_h)
    if spec.output_bias:
        params["c"] = 0.1 * rng.standard_normal(n_y)
    params["h0"] = 0.1 * rng.standard_normal(n_h)
    params = {k: v.astype(dtype) for k, v in params.items()}
    xs = rng.standard_normal((spec.T, B, n_x)).astype(dtype)
    L = spec.T if spec.mapping == "many-to-many" else 1
    kind = spec.loss_rule.targets
    if kind == "classes":
        targets = rng.integers(0, n_y, (L, B))
        y_rows = np.zeros((L, B, n_y), dtype)
        np.put_along_axis(y_rows, targets[..., None], 1.0, axis=-1)
    else:
        y_rows = rng.uniform(size=(L, B, n_y)) if kind == "probabilities" else rng.standard_normal((L, B, n_y))
        y_rows = y_rows.astype(dtype)
        targets = y_rows
    if spec.mapping == "many-to-one":
        targets = targets[0]
    return Problem(spec, (B, n_x, n_h, n_y), dtype, params, xs, targets, y_rows)


@dataclass
class Contender:
    """Something to time.

    Attributes:
        name: as the table prints it.
        run: forward and every gradient; what it returns goes to ``result``.
        result: ``run``'s value -> ``(E, grads)`` in column layout; None for the GEMM-only limit.
        compile_seconds: one-off compilation before the first run (JAX), reported apart.
    """

    name: str
    run: object
    result: object = None
    compile_seconds: float | None = None
    seconds: list = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# -- contenders -----------------------------------------------------------------------


def module_params(params: dict, spec: RNNSpec) -> dict:
    """Column-layout parameters under the module's names and notation (row notation transposes)."""
    names = dict(zip(("U", "W", "V"), spec.names))
    flip = spec.notation == "row"
    return {names.get(k, k): (v.T.copy() if flip and v.ndim == 2 else v) for k, v in params.items()}


def column_grads(grads: dict, spec: RNNSpec) -> dict:
    """The inverse of ``module_params`` for a module's gradients."""
    canonical = dict(zip(spec.names, ("U", "W", "V")))
    flip = spec.notation == "row"
    return {canonical.get(k, k): (v.T if flip and v.ndim == 2 else v) for k, v in grads.items()}


def generated_contender(module, problem: Problem) -> Contender:
    params = module_params(problem.params, problem.spec)

    def run():
        return module.loss_and_grads(params, problem.xs, problem.targets)

    def result(out):
        E, grads = out
        return float(E), column_grads(grads, problem.spec)

    return Contender("rnngen", run, result)


def loop_contender(name: str, loop, problem: Problem) -> Contender:
    # the loops take targets with the step axis even for many-to-one: (1, B) or (1, B, n_y)
    targets = problem.targets if problem.spec.mapping == "many-to-many" else problem.targets[None]

    def run():
        return loop(problem.params, problem.xs, targets, problem.spec)

    return Contender(name, run, lambda out: (float(out[0]), out[1]))


def gemm_limit(problem: Problem) -> Contender:
    """The GEMMs of BPTT alone, into preallocated outputs: what no NumPy implementation can beat.

    Forward: one input GEMM over all steps, T recurrent GEMMs, one output GEMM;
    backward: one GEMM back through the output weights, T - 1 recurrent GEMMs, the three
    weight gradients, and for dE/dh0 the product of one vector with W (the sum over the
    sequences comes first).
    """
    B, n_x, n_h, n_y = problem.sizes
    T = problem.spec.T
    L = T if problem.spec.mapping == "many-to-many" else 1
    p, dtype = problem.params, problem.dtype
    U, W, V = p["U"], p["W"], p["V"]
    X = problem.xs.reshape(T * B, n_x)
    H = np.ones((T + 1, B, n_h), dtype) * 0.1
    Z = np.empty((T, B, n_h), dtype)
    O = np.empty((L * B, n_y), dtype)
    dZ = np.full((T, B, n_h), 0.01, dtype)
    step = np.empty((B, n_h), dtype)
    dh0 = np.empty(n_h, dtype)
    dU, dW, dV = np.empty_like(U), np.empty_like(W), np.empty_like(V)
    H_out = H[1:].reshape(T * B, n_h) if L == T else H[T]
    WT = np.ascontiguousarray(W.T)  # the layout BLAS reads fastest, as the module holds it
    dZ_out = dZ.reshape(T * B, n_h) if L == T else dZ[T - 1]

    def run():
        np.matmul(X, U.T, out=Z.reshape(T * B, n_h))
        for t in range(T):
            np.matmul(H[t], WT, out=step)
        np.matmul(H_out, V.T, out=O)
        np.matmul(O, V, out=dZ_out)
        for t in range(T - 1, 0, -1):
            np.matmul(dZ[t], W, out=step)
        np.matmul(dZ[0, 0], W, out=dh0)
        np.matmul(dZ.reshape(T * B, n_h).T, X, out=dU)
        np.matmul(dZ.reshape(T * B, n_h).T, H[:-1].reshape(T * B, n_h), out=dW)
        np.matmul(O.T, H_out, out=dV)

    return Contender("GEMM only", run)


# -- agreement and timing ---------------------------------------------------------------


def disagreement(reference: tuple, other: tuple) -> tuple:
    """``(worst relative difference, what)`` between two ``(E, grads)``; relative to the reference's largest entry."""
    E_ref, g_ref = reference
    E, g = other
    worst = (abs(E - E_ref) / max(abs(E_ref), 1e-300), "E")
    for k, ref in g_ref.items():
        if k not in g:
            return math.inf, f"d{k} (missing)"
        scale = max(float(np.max(np.abs(ref))), 1e-300)
        diff = float(np.max(np.abs(np.asarray(g[k], dtype=np.float64) - ref))) / scale
        worst = max(worst, (diff, f"d{k}"))
    return worst


def check_agreement(contenders: list, dtype) -> dict:
    """Run each contender once; every one must match the first within ``TOLERANCE``. Returns name -> difference."""
    results = {c.name: c.result(c.run()) for c in contenders if c.result}
    reference_name = contenders[0].name
    reference = results[reference_name]
    tol = TOLERANCE[dtype]
    report = {}
    for name, res in results.items():
        if name == reference_name:
            continue
        diff, what = disagreement(reference, res)
        if not diff <= tol:
            raise BenchError(
                f"{name} disagrees with {reference_name}: {what} differs by {diff:.1e} relative (allowed {tol:g})"
            )
        report[name] = diff
    return report


def time_interleaved(contenders: list, samples: int = 7, settle: float = 0.2, min_sample: float = 0.05) -> None:
    """Fill each contender's ``seconds`` with ``samples`` per-call times, interleaved, one settle pause before each."""
    reps = {}
    for c in contenders:
        c.run()  # warm: caches, lazy initialisation
        start = time.perf_counter()
        c.run()
        once = time.perf_counter() - start
        reps[c.name] = max(1, math.ceil(min_sample / max(once, 1e-7)))
        c.seconds = []
    n = len(contenders)
    for i in range(samples):
        for c in contenders[i % n :] + contenders[: i % n]:
            time.sleep(settle)
            k = reps[c.name]
            start = time.perf_counter()
            for _ in range(k):
                c.run()
            c.seconds.append((time.perf_counter() - start) / k)
