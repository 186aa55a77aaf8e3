"""Wall time and output size of ``rnngen derive`` as T grows (a benchmark, not a test).

Run from anywhere after installing rnngen:

    python benchmarks/derive_scaling.py            # T = 5, 20, 50, 100
    python benchmarks/derive_scaling.py 5 200      # other unroll lengths

For each T it times the whole command (start-up, derivation, verification,
writing) as a user runs it, median of 3 runs, then times each pipeline stage
in-process and reports the generated sizes and the check's worst error.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command_seconds(T: int, out: Path, runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rnngen.cli", "derive", "--T", str(T), "--out", str(out), "--force"],
            check=True,
            capture_output=True,
        )
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def stages(T: int, out: Path) -> dict:
    from rnngen.backprop import reverse_mode
    from rnngen.optimize import optimize
    from rnngen.program import from_derivation
    from rnngen.render import render_both
    from rnngen.spec import RNNSpec
    from rnngen.unroll import unroll
    from rnngen.verify import check_module, load_module

    times = {}
    t0 = time.perf_counter()
    graph = unroll(RNNSpec(T=T))
    derivation = reverse_mode(graph)
    times["derive"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = optimize(from_derivation(derivation))
    times["optimize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module, latex, _, _ = render_both(derivation, program)
    times["render"] = time.perf_counter() - t0
    path = out / f"bench_t{T}.py"
    path.write_text(module)
    t0 = time.perf_counter()
    report = check_module(load_module(path))
    times["verify"] = time.perf_counter() - t0
    times["module lines"] = module.count("\n")
    times["tex lines"] = latex.count("\n")
    times["worst FD error"] = max(report.fd.values())
    times["Taylor slope"] = report.taylor
    return times


def main(Ts) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        header = (
            "T",
            "command s",
            "derive s",
            "optimize s",
            "render s",
            "verify s",
            "module lines",
            "tex lines",
            "worst FD err",
            "Taylor",
        )
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for T in Ts:
            wall = command_seconds(T, out)
            s = stages(T, out)
            print(
                f"{T} | {wall:.2f} | {s['derive']:.3f} | {s['optimize']:.3f} | {s['render']:.3f} | "
                f"{s['verify']:.3f} | {s['module lines']} | {s['tex lines']} | {s['worst FD error']:.1e} | "
                f"{s['Taylor slope']:.3f}"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [5, 20, 50, 100])
