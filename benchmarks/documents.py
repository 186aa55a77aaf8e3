"""Pages and compile time of each seed network's T = 5 document, and document size as T grows.

Run from the repository root: ``python benchmarks/documents.py`` (needs pdflatex).
Compile times are the median of three pdflatex runs of the same document.
"""

import dataclasses
import statistics
import time

from rnngen.emit import compile_pdf
from rnngen.examples import SEEDS
from rnngen.pipeline import build
from rnngen.spec import RNNSpec


def main():
    print(f"{'seed':<6}{'network (T = 5)':<58}{'pages':>6}{'pdflatex s':>12}{'tex KiB':>9}{'md KiB':>8}")
    for seed, spec in SEEDS.items():
        result = build(dataclasses.replace(spec, T=5))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            pdf = compile_pdf(result.latex, result.spec.name)
            times.append(time.perf_counter() - start)
        print(
            f"{seed:<6}{result.spec.name:<58}{pdf.pages:>6}{statistics.median(times):>12.2f}"
            f"{len(result.latex) / 1024:>9.1f}{len(result.markdown) / 1024:>8.1f}"
        )
    print()
    print(f"{'hidden':<14}{'T':>5}{'tex KiB':>9}{'tex lines':>10}{'pages':>6}")
    for hidden in ("tanh", "x/(1+abs(x))"):
        for T in (5, 50, 200):
            result = build(RNNSpec(T=T, hidden=hidden))
            pdf = compile_pdf(result.latex, result.spec.name)
            print(f"{hidden:<14}{T:>5}{len(result.latex) / 1024:>9.1f}{result.latex.count(chr(10)):>10}{pdf.pages:>6}")


if __name__ == "__main__":
    main()
