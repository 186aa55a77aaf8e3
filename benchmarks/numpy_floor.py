"""The least a NumPy RNN can take: its GEMMs plus the fewest elementwise calls a step needs.

Where a generated module misses the issues' targets against PyTorch (the LSTM against ``nn.LSTM``
at medium float32 and 3x at char-rnn float32, the Elman network against ``nn.RNN`` at large), this
says whether any NumPy module could meet them. For one cell (``--cell lstm``, the default, or
``--cell elman``) it times, paired and interleaved with the harness of ``frameworks.py``:

- ``rnngen``: the generated module (the agreement reference);
- ``PyTorch``: ``nn.LSTM`` (``nn.RNN``) + ``nn.Linear`` + the summed loss, ``backward()`` (when
  torch is installed);
- ``GEMM only``: the harness's GEMM-only limit;
- ``NumPy floor``: those GEMMs with, in each step, the fewest NumPy calls the step's elementwise
  work needs (the cell's ``forward_step``, ``backward_step``), plus the calls made once over all
  steps (``all_steps``), each at the workload's sizes, as one flat list of prepared calls;
- ``floor's calls only``: the same list without its GEMMs.

The floor computes nothing useful (the LSTM's gates are never squashed into sigmoids, the loss is
left out), it only makes the calls, on operands of the right shapes: the call floor of the
module's layout (gates one behind another, a step's deltas side by side for the GEMM), since NumPy
runs each elementwise operation as a call of its own, none of these can be merged into a GEMM
(``np.matmul`` and ``np.dot`` overwrite their ``out=``, they cannot add into it), and whatever an
exact module needs beyond them (the loss, the softmax's shift by the row maximum, the biases' adds,
argument checks) is left out. It is a bound up to its own overhead only: its calls run from a loop
over prepared calls (about 0.2 µs a call more than an unrolled module pays) and its per-step
products are ``np.matmul`` where the module's are ``np.dot`` (cheaper a call at one row), so where
the module times below the floor, the floor is no bound. Then it prints, per row, the sentence the
issue note quotes.

    python benchmarks/numpy_floor.py                    # LSTM, medium and char-rnn, float64 and float32
    python benchmarks/numpy_floor.py large --dtype float32 --samples 9
    python benchmarks/numpy_floor.py --cell elman large medium
    OPENBLAS_NUM_THREADS=1 python benchmarks/numpy_floor.py   # both libraries on one thread

With ``OPENBLAS_NUM_THREADS`` set, PyTorch runs on as many threads as NumPy's BLAS: on a machine
where another process holds a core, two threads wait for each other and the figures say nothing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from frameworks import DTYPES, WORKLOADS

from rnngen.api import BPTT
from rnngen.bench import frameworks
from rnngen.bench.harness import (
    Contender,
    check_agreement,
    gemm_limit,
    generated_contender,
    make_problem,
    time_interleaved,
)
from rnngen.bench.run import kernels
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

#: Each step's elementwise calls forward, in the module's layout: the gates one behind another,
#: (4, T, B, n) in the order g, i, f, o, each gate's step contiguous (side by side, a pass over one
#: gate is strided: 6x the time at medium float32, ARCHITECTURE.md). The sigmoid is one tanh of all
#: four gates at once (σ(a) = (1 + tanh(a/2)) / 2, the halving taken into the weights) and one call
#: for the affine part: fewer than any exact spelling.
LSTM_FORWARD_STEP = (
    "z_t += W h_{t-1} (the recurrent GEMM's output, side by side, into the gates)",
    "tanh of the four gates, one call",
    "the sigmoid's affine part for i, f, o, one call",
    "c_t = f_t ∘ c_{t-1}",
    "i_t ∘ g_t",
    "c_t += i_t ∘ g_t",
    "φ_t = tanh(c_t)",
    "h_t = o_t ∘ φ_t",
)
#: Each step's elementwise calls back, with the local Jacobians made beforehand (``LSTM_ALL_STEPS``);
#: the last step has no recurrent term, so 3 of these (the first, third and fourth) are left out there.
LSTM_BACKWARD_STEP = (
    "δh_t += Wᵀ δz_{t+1} (the recurrent GEMM's output)",
    "δc_t = δh_t ∘ ∂h_t/∂c_t",
    "δc_{t+1} ∘ f_{t+1}",
    "δc_t += δc_{t+1} ∘ f_{t+1}",
    "δz_o = δh_t ∘ ∂h_t/∂z_o",
    "δz_g, δz_i, δz_f = δc_t ∘ their local Jacobians, one call",
    "the step's δz side by side for the recurrent GEMM, one copy",
)
#: The calls made once over all steps: the output's delta (the loss itself is left out) and the
#: local Jacobians, each a pass over (T, B, ·); the biases' gradients (sums over the rows).
LSTM_ALL_STEPS = (
    "exp of the output's pre-activations",
    "the softmax's row sums (a product with ones)",
    "the softmax's division by them",
    "δs = ŷ - y",
    "1 - σ of i, f, o, one call",
    "σ′ of i, f, o = σ (1 - σ), one call",
    "g ∘ g",
    "tanh′ of g = 1 - g ∘ g",
    "∂c/∂z_g = tanh′ ∘ i",
    "∂c/∂z_i = σ′_i ∘ g",
    "∂c/∂z_f = σ′_f ∘ c_{t-1}",
    "∂h/∂z_o = σ′_o ∘ φ",
    "φ ∘ φ",
    "1 - φ ∘ φ",
    "∂h/∂c = o ∘ (1 - φ ∘ φ)",
    "dE/db of the gates (a product with ones)",
    "dE/dc (a product with ones)",
)


def _output_delta(Hrows, V, O, Y, sums, ones_y, out) -> list:
    """The calls over all steps from the top states to the states' delta, as either cell makes them:
    the output product, the softmax's delta in four calls (no shift by the row maximum), the product
    back through V into ``out``."""
    return [
        (True, partial(np.matmul, Hrows, V.T, out=O)),
        (False, partial(np.exp, O, out=O)),
        (False, partial(np.dot, O, ones_y, out=sums)),
        (False, partial(np.divide, O, sums[:, None], out=O)),
        (False, partial(np.subtract, O, Y, out=O)),
        (True, partial(np.matmul, O, V, out=out)),
    ]


def _lstm_calls(problem) -> list:
    """The one-layer LSTM's floor as ``(is_gemm, call)``; the weight gradients one GEMM per gate
    (the gates are one behind another, as in the module)."""
    p, dtype = problem.params, problem.dtype
    B, n_x, n, n_y = problem.sizes
    T = problem.spec.T
    gates = ("g", "i", "f", "o")
    UT = np.stack([p[f"U_{k}"].T for k in gates])  # (4, n_x, n)
    W = np.concatenate([p[f"W_{k}"] for k in gates])  # (4n, n): δz side by side times W
    WT = np.ascontiguousarray(W.T)  # (n, 4n): h times WT, the gates side by side
    V = p["V"]
    X = problem.xs.reshape(T * B, n_x)
    Z = np.empty((4, T, B, n), dtype)
    H, C = np.full((T + 1, B, n), 0.1, dtype), np.full((T + 1, B, n), 0.1, dtype)
    Phi = np.empty((T, B, n), dtype)
    step, back, tmp = np.empty((B, 4 * n), dtype), np.empty((B, n), dtype), np.empty((B, n), dtype)
    by_gate = step.reshape(B, 4, n).transpose(1, 0, 2)  # the side-by-side scratch, gate by gate
    O, Y = np.empty((T * B, n_y), dtype), problem.y_rows.reshape(T * B, n_y)
    sums, ones_y, ones_rows = np.empty(T * B, dtype), np.ones(n_y, dtype), np.ones(T * B, dtype)
    J, Jc = np.empty((4, T, B, n), dtype), np.empty((T, B, n), dtype)
    dH, dZ = np.empty((T, B, n), dtype), np.empty((4, T, B, n), dtype)
    dC, dC_next = np.empty((B, n), dtype), np.empty((B, n), dtype)
    dU, dW, dV = np.empty((4, n, n_x), dtype), np.empty((4, n, n), dtype), np.empty_like(V)
    db, dc, dh0 = np.empty((4, n), dtype), np.empty(n_y, dtype), np.empty(n, dtype)
    g, i, f, o = range(4)
    ifo, gif = slice(1, 4), slice(0, 3)

    calls = [(True, partial(np.matmul, X, UT, out=Z.reshape(4, T * B, n)))]
    for t in range(T):
        z = Z[:, t]
        calls += [
            (True, partial(np.matmul, H[t], WT, out=step)),
            (False, partial(np.add, z, by_gate, out=z)),
            (False, partial(np.tanh, z, out=z)),
            (False, partial(np.multiply, z[ifo], 0.5, out=z[ifo])),
            (False, partial(np.multiply, z[f], C[t], out=C[t + 1])),
            (False, partial(np.multiply, z[i], z[g], out=tmp)),
            (False, partial(np.add, C[t + 1], tmp, out=C[t + 1])),
            (False, partial(np.tanh, C[t + 1], out=Phi[t])),
            (False, partial(np.multiply, z[o], Phi[t], out=H[t + 1])),
        ]
    Hrows = H[1:].reshape(T * B, n)
    calls += _output_delta(Hrows, V, O, Y, sums, ones_y, out=dH.reshape(T * B, n))
    calls += [
        (False, partial(np.subtract, 1.0, Z[ifo], out=J[ifo])),
        (False, partial(np.multiply, J[ifo], Z[ifo], out=J[ifo])),
        (False, partial(np.multiply, Z[g], Z[g], out=J[g])),
        (False, partial(np.subtract, 1.0, J[g], out=J[g])),
        (False, partial(np.multiply, J[g], Z[i], out=J[g])),
        (False, partial(np.multiply, J[i], Z[g], out=J[i])),
        (False, partial(np.multiply, J[f], C[:-1], out=J[f])),
        (False, partial(np.multiply, J[o], Phi, out=J[o])),
        (False, partial(np.multiply, Phi, Phi, out=Jc)),
        (False, partial(np.subtract, 1.0, Jc, out=Jc)),
        (False, partial(np.multiply, Jc, Z[o], out=Jc)),
    ]
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        if not last:
            calls += [
                (True, partial(np.matmul, step, W, out=back)),
                (False, partial(np.add, dH[t], back, out=dH[t])),
            ]
        calls.append((False, partial(np.multiply, dH[t], Jc[t], out=dC)))
        if not last:
            calls += [
                (False, partial(np.multiply, dC_next, Z[f, t + 1], out=tmp)),
                (False, partial(np.add, dC, tmp, out=dC)),
            ]
        calls += [
            (False, partial(np.multiply, dH[t], J[o, t], out=dZ[o, t])),
            (False, partial(np.multiply, J[gif, t], dC, out=dZ[gif, t])),
            (False, partial(np.copyto, by_gate, dZ[:, t])),
        ]
        dC, dC_next = dC_next, dC
    dZrows = dZ.reshape(4, T * B, n)
    calls += [
        (True, partial(np.matmul, step[0], W, out=dh0)),
        # per gate, as the module: np.matmul of the transposed stack leaves BLAS (2-5x the time)
        *((True, partial(np.dot, dZrows[k].T, X, out=dU[k])) for k in range(4)),
        *((True, partial(np.dot, dZrows[k].T, H[:-1].reshape(T * B, n), out=dW[k])) for k in range(4)),
        (True, partial(np.matmul, O.T, Hrows, out=dV)),
        (False, partial(np.matmul, ones_rows, dZrows, out=db)),
        (False, partial(np.dot, ones_rows, O, out=dc)),
    ]
    return calls


#: Each step's elementwise calls forward: the recurrent GEMM writes a scratch (it cannot add into
#: the input projection), one add, the activation in place. No NumPy call does two of these.
ELMAN_FORWARD_STEP = (
    "z_t += W h_{t-1} (the recurrent GEMM's output, from its scratch, into the input projection)",
    "h_t = tanh(z_t), in place",
)
#: Each step's elementwise calls back, with tanh′ = 1 - h² made once beforehand (``ELMAN_ALL_STEPS``);
#: the last step has no recurrent term, so the first of these is left out there.
ELMAN_BACKWARD_STEP = (
    "δh_t += Wᵀ δz_{t+1} (the recurrent GEMM's output, from its scratch, into the output's delta)",
    "δz_t = δh_t ∘ (1 - h_t²), in place",
)
#: The calls made once over all steps: the output's delta (the loss itself, the softmax's shift by
#: the row maximum and the biases' adds are left out), the hoisted tanh′ as two passes over
#: (T, B, n) (NumPy has no call for 1 - h²), and the sums over rows.
ELMAN_ALL_STEPS = (
    "exp of the output's pre-activations",
    "the softmax's row sums (a product with ones)",
    "the softmax's division by them",
    "δo = ŷ - y",
    "h ∘ h",
    "tanh′ = 1 - h ∘ h",
    "δz_1 summed over the sequences, for dE/dh0 (a product with ones)",
    "dE/db (a product with ones)",
    "dE/dc (a product with ones)",
)


def _elman_calls(problem) -> list:
    """The one-layer Elman network's floor as ``(is_gemm, call)``, in the module's layout: the
    input projection and the states in one (T + 1, B, n) buffer, each step made in place."""
    p, dtype = problem.params, problem.dtype
    B, n_x, n, n_y = problem.sizes
    T = problem.spec.T
    U, W, V = p["U"], p["W"], p["V"]
    WT = np.ascontiguousarray(W.T)  # the layout BLAS reads fastest, as the module holds it
    X = problem.xs.reshape(T * B, n_x)
    H = np.full((T + 1, B, n), 0.1, dtype)
    Hrows, step = H[1:].reshape(T * B, n), np.empty((B, n), dtype)
    O, Y = np.empty((T * B, n_y), dtype), problem.y_rows.reshape(T * B, n_y)
    sums, ones_y, ones_rows, ones_B = (
        np.empty(T * B, dtype),
        np.ones(n_y, dtype),
        np.ones(T * B, dtype),
        np.ones(B, dtype),
    )
    J, dZ = np.empty((T, B, n), dtype), np.empty((T, B, n), dtype)
    dZrows = dZ.reshape(T * B, n)
    dz0, dh0 = np.empty(n, dtype), np.empty(n, dtype)
    dU, dW, dV = np.empty_like(U), np.empty_like(W), np.empty_like(V)
    db, dc = np.empty(n, dtype), np.empty(n_y, dtype)

    calls = [(True, partial(np.matmul, X, U.T, out=Hrows))]
    for t in range(T):
        calls += [
            (True, partial(np.matmul, H[t], WT, out=step)),
            (False, partial(np.add, H[t + 1], step, out=H[t + 1])),
            (False, partial(np.tanh, H[t + 1], out=H[t + 1])),
        ]
    calls += _output_delta(Hrows, V, O, Y, sums, ones_y, out=dZrows)
    calls += [
        (False, partial(np.multiply, H[1:], H[1:], out=J)),
        (False, partial(np.subtract, 1.0, J, out=J)),
    ]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            calls += [
                (True, partial(np.matmul, dZ[t + 1], W, out=step)),
                (False, partial(np.add, dZ[t], step, out=dZ[t])),
            ]
        calls.append((False, partial(np.multiply, dZ[t], J[t], out=dZ[t])))
    calls += [
        (False, partial(np.dot, ones_B, dZ[0], out=dz0)),
        (True, partial(np.matmul, dz0, W, out=dh0)),
        (True, partial(np.matmul, dZrows.T, X, out=dU)),
        (True, partial(np.matmul, dZrows.T, H[:-1].reshape(T * B, n), out=dW)),
        (True, partial(np.matmul, O.T, Hrows, out=dV)),
        (False, partial(np.dot, ones_rows, dZrows, out=db)),
        (False, partial(np.dot, ones_rows, O, out=dc)),
    ]
    return calls


@dataclass(frozen=True)
class Floor:
    """A cell's floor: its lists of the fewest calls, what builds them, what PyTorch runs.

    Attributes:
        forward_step, backward_step: each step's elementwise calls, one line each.
        all_steps: the calls made once over all steps.
        last_step_skips: how many of ``backward_step`` the last step leaves out (no recurrent term).
        calls: the problem -> ``[(is_gemm, prepared call)]`` in the order they run.
        name: the cell's name in the printed rows.
        torch: the PyTorch module it is timed against.
    """

    forward_step: tuple
    backward_step: tuple
    all_steps: tuple
    last_step_skips: int
    calls: Callable
    name: str
    torch: str


#: The cells with a floor, by ``RNNSpec.cell``.
FLOORS = {
    "lstm": Floor(LSTM_FORWARD_STEP, LSTM_BACKWARD_STEP, LSTM_ALL_STEPS, 3, _lstm_calls, "LSTM", "nn.LSTM"),
    "elman": Floor(ELMAN_FORWARD_STEP, ELMAN_BACKWARD_STEP, ELMAN_ALL_STEPS, 1, _elman_calls, "Elman", "nn.RNN"),
}


def floor_calls(problem) -> tuple:
    """``(calls, gemm)``: the floor's calls in the order they run, each a prepared ``partial``, and
    for each whether it is a GEMM. One layer of a cell of ``FLOORS``; the GEMMs are the GEMM-only
    limit's."""
    calls = FLOORS[problem.spec.cell].calls(problem)
    return [c for _, c in calls], [is_gemm for is_gemm, _ in calls]


def floor_contenders(problem) -> list:
    """The floor (GEMMs and calls, in order) and its calls alone, as contenders without results."""
    calls, gemm = floor_calls(problem)
    elementwise = [c for c, is_gemm in zip(calls, gemm) if not is_gemm]

    def run(seq):
        for call in seq:
            call()

    return [Contender("NumPy floor", partial(run, calls)), Contender("floor's calls only", partial(run, elementwise))]


def sentence(cell: str, name: str, dtype: str, by: dict) -> str:
    """What the row says about the targets, in figures."""
    floor = FLOORS[cell]
    steps = len(floor.forward_step) + len(floor.backward_step)
    calls = f"the {steps} calls a step needs at least and {len(floor.all_steps)} over all steps"
    alone = by["floor's calls only"]
    head = (
        f"{floor.name} {name} {dtype}: rnngen {_ms(by['rnngen'])}; "
        f"the GEMMs alone take {_ms(by['GEMM only'])}, {calls} {_ms(alone)}, both together {_ms(by['NumPy floor'])}"
    )
    torch, them = by.get("PyTorch"), floor.torch
    if torch is None:
        return head + f" ({them} not installed)."
    need = 3 if name in ("small", "char-rnn") else 1
    goal = torch / need
    if need == 1:  # the plain question: does the floor beat PyTorch, and by how much
        lead = 1 - by["NumPy floor"] / torch
        if lead < 0:
            return (
                f"{head}; {them} {_ms(torch)}: the floor is {-lead:.0%} slower than {them}, so NumPy's GEMMs "
                "(plus the calls no NumPy module can avoid) are the wall."
            )
        over = by["rnngen"] / by["NumPy floor"]
        module = (
            f"rnngen is {over - 1:.0%} above the floor"
            if over > 1
            else f"rnngen is below the floor ({over:.2f}x): the floor's own overhead shows, it is no bound here"
        )
        return (
            f"{head}; {them} {_ms(torch)}: the floor is {lead:.0%} faster than {them}, "
            f"so a module could win by up to that; {module}."
        )
    within = (
        "so no module in this layout can meet it, unless the floor's own overhead is the difference"
        if by["NumPy floor"] > goal
        else "so a NumPy module could meet it"
    )
    return f"{head}; {them} {_ms(torch)}, and {need}x faster than {them} means {_ms(goal)} at most: {within}."


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (default: medium, char-rnn)")
    parser.add_argument("--cell", choices=tuple(FLOORS), default="lstm")
    parser.add_argument("--dtype", choices=[*DTYPES, "both"], default="both")
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--settle", type=float, default=0.25)
    args = parser.parse_args()
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    names = args.workloads or ["medium", "char-rnn"]
    dtypes = list(DTYPES) if args.dtype == "both" else [args.dtype]

    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    if threads and frameworks.available()["torch"]:
        import torch

        torch.set_num_threads(int(threads))
    print("\n".join(kernels()))
    floor = FLOORS[args.cell]
    print(
        f"A step's calls at least: {len(floor.forward_step)} forward, {len(floor.backward_step)} back; "
        f"over all steps {len(floor.all_steps)}."
    )
    sentences = []
    for name in names:
        B, n_x, n_h, n_y, T = WORKLOADS[name]
        spec = RNNSpec(T=T, cell=args.cell)
        module = BPTT(build(spec)).module()
        for dtype in dtypes:
            problem = make_problem(spec, B, n_x, n_h, n_y, dtype=DTYPES[dtype])
            contenders = [generated_contender(module, problem)]
            if frameworks.available()["torch"]:
                contenders.append(frameworks.torch_contender(problem))
            contenders += [gemm_limit(problem), *floor_contenders(problem)]
            agreement = check_agreement(contenders, DTYPES[dtype])
            time_interleaved(contenders, samples=args.samples, settle=args.settle)
            by = {c.name: c.median for c in contenders}
            print(
                f"\n[{floor.name} {name}] B={B} n_x={n_x} n_h={n_h} n_y={n_y} T={T} {dtype}, median of {args.samples}"
            )
            for c in contenders:
                agree = f"agrees to {agreement[c.name]:.1e}" if c.name in agreement else ""
                print(f"  {c.name:<20}{_ms(c.median):>12}{c.median / by['rnngen']:>8.2f}x  {agree}")
            sentences.append(sentence(args.cell, name, dtype, by))
    print()
    print("\n".join(sentences))


if __name__ == "__main__":
    main()
