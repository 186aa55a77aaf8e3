"""Paired A/B timing of the default generated module at two revisions of rnngen.

Run from the repository root (git and the shared venv on the path):

    python benchmarks/compare_modules.py --old 43f0a8e                  # a revision against this working tree
    python benchmarks/compare_modules.py --old 43f0a8e --new main small # two revisions, one workload
    python benchmarks/compare_modules.py --old main --new-tree ../other # against another checkout's tree
    python benchmarks/compare_modules.py --old main --cell lstm medium  # a gated cell's module
    OPENBLAS_NUM_THREADS=1 python benchmarks/compare_modules.py --old main --clock cpu   # on a busy machine

Each side generates its module (tanh, softmax, cross-entropy, many-to-many, T
of the workload; the Elman cell, or the ``--cell`` given) with its own rnngen: a git revision in a temporary worktree
that is removed afterwards, a tree as it is on disk. Both modules are then
loaded into this process, must agree (the benchmark harness's tolerance:
1e-9 relative in float64, 1e-4 in float32) and are timed on the README's
workloads with class-index targets. Each round times the two once, in a random
order, after a settle pause; the figure per pair is the median over the
rounds of new/old with its interquartile range (a slow drift of the machine
cancels in each round's ratio; a burst of other work does not, and widens the
range). Problems and orders come from fixed seeds. An interquartile range wider
than the effect sought means the machine was too busy to resolve it: time the
changed code alone, or run more rounds (--rounds) or longer samples (--sample).

On a machine that other jobs keep busy, wall time measures the scheduler as much as
the module (a two-thread BLAS waits for a core at every product: medium float32
took 10x its quiet time at a load of 4). ``--clock cpu`` times the process's CPU
time instead; with ``OPENBLAS_NUM_THREADS=1`` that is the work of the one thread
the module runs on, which other jobs slow far less (an interquartile range of
0.986-1.033 at medium float32 where wall time gave 0.84-1.05, at the same load).
It compares two modules' work, not what a user waits: quote wall time from a quiet
machine for that.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from frameworks import DTYPES, WORKLOADS  # benchmarks/frameworks.py, next to this script

from rnngen.bench.harness import BenchError, check_agreement, generated_contender, make_problem
from rnngen.bench.run import kernels
from rnngen.cells import CELLS
from rnngen.spec import RNNSpec

ROOT = Path(__file__).resolve().parents[1]
#: What a sample is timed with: the wall clock, or the CPU time of the process (all its threads).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


@contextmanager
def checkout(rev: str):
    """A temporary worktree at ``rev`` (detached), removed on exit."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(tempfile.mkdtemp(prefix=f"compare-{commit[:8]}-")) / "tree"
    git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path, commit[:10]
    finally:
        git("worktree", "remove", "--force", str(path))
        path.parent.rmdir()


def describe(tree: Path) -> str:
    """The tree, its commit and whether it has uncommitted changes (untracked files count)."""
    head = git("-C", str(tree), "rev-parse", "--short=10", "HEAD")
    dirty = git("-C", str(tree), "status", "--porcelain")
    return f"tree {tree} at {head}" + (" with uncommitted changes" if dirty else "")


def generate(tree: Path, T: int, out: Path, cell: str = "elman"):
    """The default module of ``cell`` at ``T`` from ``tree``'s own rnngen, written to ``out`` and loaded under a
    fresh name."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "rnngen.cli", "derive", "--T", str(T), "--no-check", "--no-latex", "--out", str(out)]
    if cell != "elman":  # a revision from before the gated cells knows no --cell, and needs none
        cmd += ["--cell", cell]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"rnngen derive --T {T} failed in {tree}: {done.stderr.strip().splitlines()[-1:]}")
    (path,) = out.glob("*.py")
    spec = importlib.util.spec_from_file_location(f"{out.parent.name}_{out.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_pair(old, new, rounds: int, settle: float, rng, min_sample: float = 0.05, clock=time.perf_counter) -> tuple:
    """``(old seconds, new seconds)`` per call, one entry per round, the order of each round drawn from ``rng``.

    Not the harness's ``time_interleaved``: that rotates a fixed order, and here the
    two sides of each round are what is compared. Both sides repeat a call the same
    number of times per sample, enough for ``min_sample`` seconds of ``clock``.
    """
    once = []
    for c in (old, new):
        c.run()  # warm: buffers, caches
        start = clock()
        c.run()
        once.append(clock() - start)
    k = max(1, math.ceil(min_sample / max(min(once), 1e-7)))
    pair, seconds = (old, new), ([], [])
    for _ in range(rounds):
        for i in rng.permutation(2):
            time.sleep(settle)
            start = clock()
            for _ in range(k):
                pair[i].run()
            seconds[i].append((clock() - start) / k)
    return seconds


def _time(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--old", required=True, metavar="REV", help="the git revision to compare against")
    new = parser.add_mutually_exclusive_group()
    new.add_argument("--new", metavar="REV", help="a git revision (default: this working tree)")
    new.add_argument("--new-tree", type=Path, metavar="DIR", help="a checkout's tree as it is on disk")
    parser.add_argument("--dtype", choices=[*DTYPES, "both"], default="both")
    parser.add_argument("--cell", choices=list(CELLS), default="elman", help="the cell of both modules")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), default="wall", help="wall time, or the process's CPU time (a busy machine)"
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--settle", type=float, default=0.2, help="seconds of rest before each sample")
    parser.add_argument("--sample", type=float, default=0.05, help="seconds of calls per sample, at least")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    tree = (args.new_tree or ROOT).resolve()
    if args.new is None and not (tree / "src" / "rnngen").is_dir():
        parser.error(f"--new-tree {tree} has no src/rnngen; give a checkout of rnngen")
    workloads = args.workloads or list(WORKLOADS)
    dtypes = list(DTYPES) if args.dtype == "both" else [args.dtype]

    print("\n".join(kernels()))
    with ExitStack() as stack:
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-modules-")))
        old_tree, old_name = stack.enter_context(checkout(args.old))
        if args.new is None:
            new_name = describe(tree)
        else:
            tree, new_name = stack.enter_context(checkout(args.new))
        print(f"old: {args.old} = {old_name}; new: {new_name}")
        print(f"{args.rounds} rounds, each in random order (seed {args.seed}); samples of {args.sample} s or more")
        print(f"after {args.settle} s of rest each; {args.clock} time; the {args.cell} cell")
        modules = {}
        for T in sorted({WORKLOADS[w][-1] for w in workloads}):
            modules[T] = tuple(
                generate(t, T, out / side / f"t{T}", args.cell) for side, t in (("old", old_tree), ("new", tree))
            )

    rng = np.random.default_rng(args.seed)
    print()
    print("| workload | dtype | old | new | new/old | IQR | agreement |")
    print("|---|---|---|---|---|---|---|")
    for name in workloads:
        B, n_x, n_h, n_y, T = WORKLOADS[name]
        for dtype in dtypes:
            problem = make_problem(RNNSpec(T=T, cell=args.cell), B, n_x, n_h, n_y, dtype=DTYPES[dtype], seed=args.seed)
            pair = [generated_contender(m, problem) for m in modules[T]]
            pair[0].name, pair[1].name = "old", "new"
            agreement = check_agreement(pair, DTYPES[dtype])["new"]
            old_s, new_s = time_pair(
                *pair, rounds=args.rounds, settle=args.settle, rng=rng, min_sample=args.sample, clock=CLOCKS[args.clock]
            )
            q1, ratio, q3 = statistics.quantiles([n / o for n, o in zip(new_s, old_s)], n=4)
            print(
                f"| {name} | {dtype} | {_time(statistics.median(old_s))} | {_time(statistics.median(new_s))} "
                f"| {ratio:.3f} | {q1:.3f}-{q3:.3f} | {agreement:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"compare_modules: {e}")
