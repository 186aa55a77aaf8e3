"""Derivation time and generated size for every hidden activation, at T = 5 and T = 50.

Run from the repository root: ``python benchmarks/activation_set.py``. Each row is
the median of three in-process runs of the pipeline (derive, optimize, render)
plus the verification that ``rnngen derive`` does before writing.
"""

import statistics
import time

from rnngen.activations import HIDDEN
from rnngen.pipeline import build
from rnngen.spec import RNNSpec
from rnngen.verify import check_build

ACTIVATIONS = [*HIDDEN, "x/(1+abs(x))"]


def measure(spec: RNNSpec):
    times, report = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = build(spec)
        report = check_build(result)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result.module.count("\n"), result.latex.count("\n"), max(report.fd.values())


def main():
    print(f"{'hidden':<16}{'T':>4}{'derive+check s':>16}{'module lines':>14}{'tex lines':>11}{'worst FD':>10}")
    for hidden in ACTIVATIONS:
        for T in (5, 50):
            seconds, lines, tex, fd = measure(RNNSpec(T=T, hidden=hidden))
            print(f"{hidden:<16}{T:>4}{seconds:>16.3f}{lines:>14}{tex:>11}{fd:>10.1e}")


if __name__ == "__main__":
    main()
