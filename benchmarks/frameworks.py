"""The generated module against hand-written NumPy loops, PyTorch, JAX and the GEMM-only limit.

Run from the repository root, with the optional frameworks installed for the
full table (each is left out, and said so, when missing):

    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu   # the CPU build
    pip install jax jaxlib
    python benchmarks/frameworks.py            # every network at its workloads, float64 and float32
    python benchmarks/frameworks.py small      # one workload (of every network that runs it)
    python benchmarks/frameworks.py --network 2-layer --network bidirectional   # just those

Every contender computes forward plus all gradients of the same problem and
must agree with the generated module (float64: 1e-9 relative) before it is
timed; samples are interleaved with a rest before each (``--settle``). The
end is a Markdown table of ratios (the README's) and the issue's targets,
each marked met or missed.
"""

import argparse
import dataclasses

import numpy as np

from rnngen.api import BPTT
from rnngen.bench.run import bench, kernels, table
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

#: (B, n_x, n_h, n_y, T): tanh hidden, softmax output, cross-entropy, many-to-many, biases.
WORKLOADS = {
    "small": (1, 8, 16, 8, 5),
    "medium": (32, 64, 128, 64, 50),
    "large": (64, 256, 512, 256, 100),
    "char-rnn": (1, 65, 100, 65, 25),
}
DTYPES = {"float64": np.float64, "float32": np.float32}
#: The networks of the suite: name -> (RNNSpec fields besides T, its workloads, what PyTorch runs).
#: Every layer of a stacked network has the workload's n_h, as nn.RNN(num_layers=2) requires.
NETWORKS = {
    "1-layer": ({}, tuple(WORKLOADS), "PyTorch"),
    "2-layer": ({"layers": 2}, ("medium", "large"), "nn.RNN(num_layers=2)"),
    "bidirectional": ({"bidirectional": True}, ("medium", "large"), "nn.RNN(bidirectional=True)"),
    "carried state": ({}, ("medium",), "nn.RNN with h_0 per sequence"),
    "masked": ({"masked": True}, ("medium",), "nn.RNN on pack_padded_sequence"),
    "LSTM": ({"cell": "lstm"}, tuple(WORKLOADS), "nn.LSTM"),
    "GRU": ({"cell": "gru"}, tuple(WORKLOADS), "nn.GRU"),
}
#: The networks whose every workload has the targets of the one-layer network against PyTorch
#: (faster everywhere, at least 3x on small and char-rnn: the gated-cells issue).
ONE_CELL = {"1-layer", "LSTM", "GRU"}
#: The networks whose every contender starts from a state per sequence (a chunk of a long sequence),
#: timed beside the module's plain call.
CARRIED = {"carried state"}
#: How much slower than its plain call a module may be with a state per sequence, or than the
#: unmasked module a masked one may be (the training issue).
CARRIED_LIMIT = 1.10


def _label(network: str, workload: str) -> str:
    """A row's name: the workload alone for the one-layer network (the README's rows), else both."""
    return workload if network == "1-layer" else f"{network} {workload}"


def targets(results: dict) -> list:
    """``(met, sentence)`` for each target of the performance issues."""
    out = []
    for (network, name, dtype), r in results.items():
        where = f"{_label(network, name)} {dtype}"
        for other in ("torch", "jax"):
            ratio = r.ratio(other)
            if ratio is not None:
                them = NETWORKS[network][2] if other == "torch" else "JAX"
                out.append((ratio > 1, f"{where}: faster than {them} ({ratio:.2f}x)"))
        if r.ratio("plain") is not None:
            over, plain = 1 / r.ratio("plain"), "the unmasked module" if network == "masked" else "the plain call"
            out.append((over <= CARRIED_LIMIT, f"{where}: within {CARRIED_LIMIT:.2f}x of {plain} ({over:.2f}x)"))
        if network not in ONE_CELL:
            continue
        if name in ("small", "char-rnn") and r.ratio("torch") is not None:
            them = NETWORKS[network][2]
            out.append((r.ratio("torch") >= 3, f"{where}: at least 3x faster than {them} ({r.ratio('torch'):.2f}x)"))
        if network != "1-layer":
            continue
        if name == "large":
            over = 1 / r.ratio("gemm")
            out.append((over <= 1.15, f"{where}: within 1.15x of the GEMM-only time ({over:.2f}x)"))
        if name == "small":
            tuned = r.ratio("tuned")
            out.append((tuned >= 1, f"{where}: at most as slow as the tuned hand loop ({tuned:.2f}x)"))
    return out


def markdown(results: dict) -> list:
    """The ratio table: each contender's median as a multiple of rnngen's (above 1: rnngen is faster)."""
    head = "| workload | dtype | rnngen | tuned loop | tutorial loop | PyTorch | JAX (compile) | GEMM only |"
    lines = [head, "|" + "---|" * 8]
    for (network, name, dtype), r in results.items():
        cells = []
        for other in ("tuned", "tutorial", "torch", "jax", "gemm"):
            ratio = r.ratio(other)
            cell = "—" if ratio is None else f"{ratio:.2f}x"
            if other == "jax" and ratio is not None:
                jax = next(c for c in r.contenders if c.name == "JAX")
                cell += f" ({jax.compile_seconds:.2f} s)"
            cells.append(cell)
        lines.append(f"| {_label(network, name)} | {dtype} | {_ms(r.seconds('rnngen'))} | " + " | ".join(cells) + " |")
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument(
        "--network",
        action="append",
        choices=list(NETWORKS),
        help="time only this network (repeatable; default: all, each at its workloads)",
    )
    parser.add_argument("--dtype", choices=[*DTYPES, "both"], default="both")
    # 15, not the minimum of 7: on a shared 2-core machine a burst of other work can move a
    # median of 7 by 10-15 % (measured: large float32 from 110 to 129 ms between two runs)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--settle", type=float, default=0.25)
    args = parser.parse_args()
    dtypes = list(DTYPES) if args.dtype == "both" else [args.dtype]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    runs = [
        (network, name)
        for network in args.network or NETWORKS
        for name in NETWORKS[network][1]
        if not args.workloads or name in args.workloads
    ]
    if not runs:
        parser.error(f"--network {' '.join(args.network)} runs at {', '.join(NETWORKS[args.network[0]][1])} only")

    print("\n".join(kernels()))
    results = {}
    for network, name in runs:
        B, n_x, n_h, n_y, T = WORKLOADS[name]
        spec = RNNSpec(T=T, **NETWORKS[network][0])
        module = BPTT(build(spec)).module()
        plain = BPTT(build(dataclasses.replace(spec, masked=False))).module() if spec.masked else None
        for dtype in dtypes:
            sizes, carried = (B, n_x, n_h, n_y), network in CARRIED
            r = bench(module, spec, sizes, DTYPES[dtype], args.samples, args.settle, carried=carried, plain=plain)
            results[network, name, dtype] = r
            print()
            print(f"[{_label(network, name)}]", "\n".join(table(r)), sep=" ", flush=True)
    print()
    print("\n".join(markdown(results)))
    print()
    for met, sentence in targets(results):
        print(f"{'met   ' if met else 'MISSED'}  {sentence}")


if __name__ == "__main__":
    main()
