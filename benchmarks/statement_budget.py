"""Where a generated module's time goes: each statement's share of ``loss_and_grads``.

Run from the repository root with the shared venv:

    python benchmarks/statement_budget.py large                  # the default module at the large workload
    python benchmarks/statement_budget.py medium --dtype float32
    python benchmarks/statement_budget.py large --module /tmp/copy.py   # a hand-edited copy of a module

The module (generated with ``rnngen derive --T <workload's T>`` unless ``--module``
names a file) is loaded twice: as it is, and with every simple statement of
``loss_and_grads``, ``_forward`` and the helpers they call wrapped in a clock
(``perf_counter`` before and after; about 0.1 µs each, nothing at large). The
unrolled steps' statements differ only in their step index, so they are added up
under one line with ``k`` for the index (``dz_[k] *= fprime[k]``, 99 times). The
table lists the top-level statements (they add up to the instrumented call), their
kind (BLAS: a product or a sum through one; else an elementwise pass or Python),
and below it each helper's own statements, which are part of the line that called
it. The untouched module and the GEMM-only limit of the benchmark suite are timed
beside it, interleaved, so the instrumentation's cost shows.

Each figure is a minimum over the rounds (for a statement: each unrolled copy's
minimum, then added up): on a shared machine another process's burst only ever
adds time, so the minimum is the least-disturbed estimate and two modules' budgets
can be compared line by line. Set OPENBLAS_NUM_THREADS=1 to take the GEMMs' thread
team (and its waits on a busy core) out of the figures.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from frameworks import DTYPES, WORKLOADS  # benchmarks/frameworks.py, next to this script

from rnngen.bench.harness import gemm_limit, generated_contender, make_problem
from rnngen.bench.run import kernels
from rnngen.spec import RNNSpec

#: The functions whose statements are timed: the call and its forward pass (their statements, without
#: the line that calls the forward pass, add up to the call), and the helpers they call.
TOP = ("loss_and_grads", "_forward")
HELPERS = ("_softmax", "_dot_log_softmax", "_minus_targets", "_log_p", "_column_sums", "_prepare", "_targets")
#: What marks a statement as BLAS work: a product, or a sum computed as a product with ones.
BLAS = re.compile(r"np\.(matmul|dot)\(|@|_column_sums\(")


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Clock(ast.NodeTransformer):
    """Wraps each simple statement in ``_c0 = _clock()`` ... ``_acc[key] += _clock() - _c0``.

    Compound statements (if, for, with) are not timed as a whole: their bodies are.
    A return's value is computed and timed before the return.
    """

    def __init__(self, function: str):
        self.function = function
        self.keys = []  # the key of each timed statement, by its index in _acc

    def _key(self, node) -> str:
        text = ast.unparse(node).splitlines()[0]
        if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Call):
            text = f"if {text}:"  # an if's test
        return re.sub(r"(\w_|fprime)\[\d+\]", r"\1[k]", text)  # unrolled steps' views (h_, dz_) share one line

    def _timed(self, node, body) -> list:
        i = len(self.keys)
        self.keys.append((self.function, self._key(node)))
        start = ast.parse("_c0 = _clock()").body
        stop = ast.parse(f"_acc[{i}] += _clock() - _c0").body
        return [*start, *body, *stop]

    def _body(self, statements) -> list:
        out = []
        for s in statements:
            if isinstance(s, ast.Return) and s.value is not None:
                value = ast.Assign(targets=[ast.Name("_r", ast.Store())], value=s.value, lineno=s.lineno)
                out += self._timed(s, [value]) + [ast.Return(ast.Name("_r", ast.Load()))]
            elif isinstance(s, ast.If):  # its test is timed (a reduction: a.max() < 64), then its bodies
                test = ast.Assign(targets=[ast.Name("_test", ast.Store())], value=s.test, lineno=s.lineno)
                out += self._timed(ast.Expr(s.test), [test])
                s.test = ast.Name("_test", ast.Load())
                s.body, s.orelse = self._body(s.body), self._body(s.orelse)
                out.append(s)
            elif isinstance(s, (ast.For, ast.While, ast.With, ast.Try)):
                s.body = self._body(s.body)
                if isinstance(s, (ast.For, ast.While)):
                    s.orelse = self._body(s.orelse)
                out.append(s)
            elif isinstance(s, ast.Return) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)):
                out.append(s)  # a bare return, a docstring
            else:
                out += self._timed(s, [s])
        return out

    def visit_FunctionDef(self, node):
        node.body = self._body(node.body)
        return node


def instrument(module, source: str, functions) -> tuple:
    """Replace ``functions`` of ``module`` (its text: ``source``) by timed copies; returns ``(accumulators, keys)``."""
    defs = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    keys = []
    for name in functions:
        if name not in defs:
            continue
        tree = ast.Module(body=[defs[name]], type_ignores=[])
        clock = _Clock(name)
        tree = clock.visit(tree)
        # each function's indices start at 0: shift them into one shared list
        offset = len(keys)
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "_acc":
                node.slice = ast.Constant(node.slice.value + offset)
        keys += clock.keys
        code = compile(ast.fix_missing_locations(tree), module.__file__, "exec")
        exec(code, module.__dict__)
    acc = [0.0] * len(keys)
    module.__dict__.update(_acc=acc, _clock=time.perf_counter)
    return acc, keys


def time_calls(run, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("--dtype", choices=list(DTYPES), default="float64")
    parser.add_argument("--module", type=Path, help="a module file to time (default: generate the default module)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds of plain, timed and GEMM-only calls")
    parser.add_argument("--calls", type=int, default=1, help="calls per round")
    args = parser.parse_args()
    B, n_x, n_h, n_y, T = WORKLOADS[args.workload]

    with tempfile.TemporaryDirectory(prefix="statement-budget-") as out:
        path = args.module
        if path is None:
            cmd = [sys.executable, "-m", "rnngen.cli", "derive", "--T", str(T), "--no-check", "--no-latex"]
            subprocess.run([*cmd, "--out", out], check=True, capture_output=True)
            (path,) = Path(out).glob("*.py")
        plain, timed = load(path, "budget_plain"), load(path, "budget_timed")
        source = path.read_text()
    acc, keys = instrument(timed, source, TOP + HELPERS)

    problem = make_problem(RNNSpec(T=T), B, n_x, n_h, n_y, dtype=DTYPES[args.dtype])
    runs = {
        "plain": generated_contender(plain, problem).run,
        "timed": generated_contender(timed, problem).run,
        "GEMM only": gemm_limit(problem).run,
    }
    for run in runs.values():
        run()
    calls = args.calls
    seconds = defaultdict(list)
    rounds = []  # each round's seconds per call, per timed statement
    for _ in range(args.rounds):
        for name, run in runs.items():
            acc[:] = [0.0] * len(keys)
            time.sleep(0.2)
            seconds[name].append(time_calls(run, calls))
            if name == "timed":
                rounds.append([a / calls for a in acc])
    # each statement's least-disturbed time: its minimum over the rounds (another process's burst
    # only ever adds), then the unrolled steps' minima added up under their shared line
    per_call = dict.fromkeys(keys, 0.0)
    for key, samples in zip(keys, zip(*rounds)):
        per_call[key] += min(samples)
    count = defaultdict(int)
    for key in keys:
        count[key] += 1
    median = {name: min(s) for name, s in seconds.items()}

    print("\n".join(kernels()))
    print(f"{args.workload} (B, n_x, n_h, n_y, T) = {(B, n_x, n_h, n_y, T)} {args.dtype}; {path.name}")
    print(f"{args.rounds} interleaved rounds of {calls} calls; the fastest round per call:")
    for name, s in median.items():
        print(f"  {name:<10} {s * 1e3:9.3f} ms  ({s / median['plain']:.3f}x plain)")
    flat = {k: t for k, t in per_call.items() if k[0] in TOP and "_forward(" not in k[1]}
    top = sum(flat.values())
    kinds = defaultdict(float)
    print()
    print("| function | statement | count | ms per call | % of timed | kind |")
    print("|---|---|---|---|---|---|")
    for fn in TOP + HELPERS:
        rows = [(k, t) for k, t in per_call.items() if k[0] == fn]
        for (f, text), t in sorted(rows, key=lambda r: -r[1]):
            kind = "BLAS" if BLAS.search(text) else "other"
            if (f, text) in flat:
                kinds[kind] += t
            if t < 1e-6 and fn not in TOP:
                continue
            cell = text.replace("|", "\\|")
            print(f"| {f} | `{cell}` | {count[(f, text)]} | {t * 1e3:.3f} | {100 * t / top:.1f} | {kind} |")
    print()
    print(
        f"the call's statements (forward pass inlined, each statement's minimum): {top * 1e3:.3f} ms per call "
        f"(timed call {median['timed'] * 1e3:.3f} ms)"
    )
    for kind, t in kinds.items():
        print(f"  {kind:<6} {t * 1e3:9.3f} ms  {100 * t / top:5.1f} %")
    print(
        f"  GEMM-only limit {median['GEMM only'] * 1e3:.3f} ms: plain / GEMM-only = "
        f"{median['plain'] / median['GEMM only']:.3f}"
    )


if __name__ == "__main__":
    main()
