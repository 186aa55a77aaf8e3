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

from rnngen.bench import layout
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
        state: None, or each chain's initial state per sequence (``h0`` key -> (B, n)): every
            contender starts from it and returns the gradient with respect to it (carried state).
        lengths: None, or each sequence's number of real steps (B,) for a masked network, whose
            padding follows them (post-padded: steps 1..length are real).
    """

    spec: RNNSpec
    sizes: tuple  # (B, n_x, n_h, n_y); n_h an int, or a tuple of one size per layer
    dtype: type
    params: dict
    xs: np.ndarray
    targets: np.ndarray
    y_rows: np.ndarray
    state: dict | None = None
    lengths: np.ndarray | None = None

    @property
    def classes(self) -> bool:
        return np.issubdtype(self.targets.dtype, np.integer)

    @property
    def hidden(self) -> tuple:
        """Each layer's size."""
        return layout.hidden_sizes(self.spec, self.sizes[2])


def make_problem(
    spec: RNNSpec, B: int, n_x: int, n_h, n_y: int, dtype=np.float64, seed: int = 0, carried: bool = False
) -> Problem:
    """Random parameters (weights ~ N(0, 1/fan-in); biases and h0 nonzero, so their gradients are tested too).

    ``n_h`` is one size for every layer or a sequence of one size per layer. The draws
    come in the order of the one-layer problem, weights, hidden biases, ``c``, then the
    initial states, so a one-layer problem is the same as before layers existed. With
    ``carried``, an initial state per sequence is drawn after those (a chunk of a long sequence);
    for a masked network, last, the lengths: from T/2 to T, the first sequence of length T.
    """
    rng = np.random.default_rng(seed)
    shapes = layout.shapes(spec, n_x, n_h, n_y)
    every = [cell for row in layout.cells(spec) for cell in row]
    weights = [k for cell in every for k in cell.of("input") + cell.of("recurrent")] + ["V"]
    drawn = {k: rng.standard_normal(shapes[k]) / math.sqrt(shapes[k][1]) for k in weights}
    initials = [k for cell in every for k in cell.of("initial")]
    small = [k for cell in every for k in cell.of("hidden_bias")] + (["c"] if spec.output_bias else []) + initials
    drawn.update({k: 0.1 * rng.standard_normal(shapes[k]) for k in small})
    params = {k: drawn[k].astype(dtype) for k in shapes}
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
    sizes = n_h if isinstance(n_h, int) else tuple(n_h)
    state = None
    if carried:
        state = {k: (0.5 * rng.standard_normal((B, *shapes[k]))).astype(dtype) for k in initials}
    lengths = None
    if spec.masked:
        lengths = rng.integers(max(1, spec.T // 2), spec.T + 1, B)
        lengths[0] = spec.T
    return Problem(spec, (B, n_x, sizes, n_y), dtype, params, xs, targets, y_rows, state, lengths)


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
    """Column-layout parameters as the module takes them: its names, its notation (``layout.to_module``)."""
    out = {}
    for piece in layout.to_module(spec):
        parts = [params[k] for k in piece.parts]
        value = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        out[piece.name] = value.T.copy() if piece.row else value
    return out


def column_grads(grads: dict, spec: RNNSpec) -> dict:
    """The inverse of ``module_params`` for a module's gradients; other entries (``x``) pass unchanged."""
    pieces = layout.to_module(spec)
    # a new dict: the module's names can be the column layout's others (--names W,U,V)
    out = {k: v for k, v in grads.items() if k not in {piece.name for piece in pieces}}
    for piece in pieces:
        g = grads[piece.name].T if piece.row else grads[piece.name]
        if len(piece.parts) == 1:
            out[piece.parts[0]] = g
        else:  # the stacked notation's [W U]: W is square
            out.update(zip(piece.parts, np.split(g, [g.shape[0]], axis=1)))
    return out


def generated_contender(module, problem: Problem) -> Contender:
    """The generated module; its parameter names and shapes must be the ones ``module_params`` gives.

    Raises:
        BenchError: the module names or shapes its parameters otherwise (a module of another
            spec, or one from before the layer convention).
    """
    params = module_params(problem.params, problem.spec)
    B, n_x, _, n_y = problem.sizes
    if set(module.PARAM_SHAPES) != set(params):
        raise BenchError(
            f"the module's parameters {', '.join(module.PARAM_SHAPES)} are not the benchmark's "
            f"{', '.join(params)} for {problem.spec.name}"
        )
    hidden = problem.hidden
    own = {k: v.shape for k, v in module.init_params(n_x, hidden[0] if len(hidden) == 1 else hidden, n_y).items()}
    ours = {k: v.shape for k, v in params.items()}
    if own != ours:
        raise BenchError(f"the module's parameter shapes {own} are not the benchmark's {ours} for {problem.spec.name}")

    calls = {}
    if problem.state is not None:  # a chunk of a long sequence: the state in, its gradient and the final state out
        initials = [k for row in layout.cells(problem.spec) for cell in row for k in cell.of("initial")]
        names = dict(zip(initials, module.INITIAL_STATES))
        given = {names[k]: v for k, v in problem.state.items()}
        calls = {"state": given if len(given) > 1 else next(iter(given.values())), "return_state": True}
    if problem.lengths is not None:
        calls["lengths"] = problem.lengths

    def run():
        return module.loss_and_grads(params, problem.xs, problem.targets, **calls)

    def result(out):
        E, grads = out[:2]
        grads = dict(grads)
        if "state" in grads:
            dstate = grads.pop("state")
            dstate = dstate if isinstance(dstate, dict) else {module.INITIAL_STATES[0]: dstate}
            column = {name: k for k, name in names.items()}
            grads.update({f"state {column[name]}": g for name, g in dstate.items()})
        return float(E), column_grads(grads, problem.spec)

    return Contender("rnngen", run, result)


def plain_call(module, problem: Problem) -> Contender:
    """``module`` called without a given state or lengths, on every step: the call the others are
    measured against (for a masked network, ``module`` is the network's unmasked module)."""
    params = module_params(problem.params, problem.spec)

    def run():
        return module.loss_and_grads(params, problem.xs, problem.targets)

    return Contender("rnngen, plain call", run)


def loop_contender(name: str, loop, problem: Problem) -> Contender:
    # the loops take targets with the step axis even for many-to-one: (1, B) or (1, B, n_y)
    targets = problem.targets if problem.spec.mapping == "many-to-many" else problem.targets[None]

    def run():
        return loop(problem.params, problem.xs, targets, problem.spec)

    return Contender(name, run, lambda out: (float(out[0]), out[1]))


def gemm_limit(problem: Problem) -> Contender:
    """The GEMMs of BPTT alone, into preallocated outputs: what no NumPy implementation can beat.

    Forward, per layer and direction: one input GEMM over all steps and T recurrent
    GEMMs; then one output GEMM. Backward: one GEMM back through the output weights,
    then per layer (top down) and direction T - 1 recurrent GEMMs, for dE/dh0 the
    product of one vector with W (the sum over the sequences comes first), the two
    weight gradients and, above the first layer (or for dE/dx in the first), the GEMM
    back into the layer's input; last dE/dV. A gated cell's gates stand side by side in each
    GEMM (the LSTM's four, the GRU's three), as one product serves them all.
    """
    spec, p, dtype = problem.spec, problem.params, problem.dtype
    B, n_x, _, n_y = problem.sizes
    T = spec.T
    L = T if spec.mapping == "many-to-many" else 1
    layers = []  # (the layer's input (T * B, n_in), its chains' operands and outputs)
    X = problem.xs.reshape(T * B, n_x)
    for size, row in zip(problem.hidden, layout.cells(spec)):
        chains = []
        for cell in row:
            # a gated cell's gates side by side: one GEMM each way for all of them
            U, W = (np.concatenate([p[k] for k in cell.of(kind)]) for kind in ("input", "recurrent"))
            gates = len(cell.of("input"))
            chain = {
                "U": U,
                "W": W,
                "WT": np.ascontiguousarray(W.T),  # the layout BLAS reads fastest, as the module holds it
                "H": np.ones((T + 1, B, size), dtype) * 0.1,
                "Z": np.empty((T, B, gates * size), dtype),
                "dZ": np.full((T, B, gates * size), 0.01, dtype),
                "step": np.empty((B, gates * size), dtype),
                "back": np.empty((B, size), dtype),
                "dh0": np.empty(size, dtype),
                "dU": np.empty_like(U),
                "dW": np.empty_like(W),
                # the gradient into the layer below, or into the inputs when the module returns it
                "dX": np.empty_like(X) if layers or spec.input_grad else None,
            }
            chains.append(chain)
        layers.append((X, chains))
        # what the next layer (or the output) reads: the states, both directions side by side
        X = chains[0]["H"][1:].reshape(T * B, size) if len(row) == 1 else np.ones((T * B, 2 * size), dtype) * 0.1
    V = p["V"]
    O = np.empty((L * B, n_y), dtype)
    dV = np.empty_like(V)
    H_out = X if L == T else X.reshape(T, B, -1)[T - 1]
    top = layers[-1][1]
    # the output's gradient lands in the top chain's dZ when there is one chain, else beside it
    alone = len(top) == 1 and top[0]["dZ"].shape[-1] == X.shape[-1]  # one chain of one gate
    dTop = top[0]["dZ"].reshape(T * B, -1) if alone else np.empty_like(X)
    dTop_out = dTop if L == T else dTop.reshape(T, B, -1)[T - 1]

    def run():
        for X, chains in layers:
            for c in chains:
                np.matmul(X, c["U"].T, out=c["Z"].reshape(T * B, -1))
                H, WT, step = c["H"], c["WT"], c["step"]  # no lookups in the per-step loop
                for t in range(T):
                    np.matmul(H[t], WT, out=step)
        np.matmul(H_out, V.T, out=O)
        np.matmul(O, V, out=dTop_out)
        for X, chains in reversed(layers):
            for c in chains:
                dZ, W, step = c["dZ"], c["W"], c["back"]
                for t in range(T - 1, 0, -1):
                    np.matmul(dZ[t], W, out=step)
                np.matmul(dZ[0, 0], W, out=c["dh0"])
                Z = dZ.reshape(T * B, -1)
                np.matmul(Z.T, X, out=c["dU"])
                np.matmul(Z.T, c["H"][:-1].reshape(T * B, -1), out=c["dW"])
                if c["dX"] is not None:
                    np.matmul(Z, c["U"], out=c["dX"])
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
