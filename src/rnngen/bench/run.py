"""One benchmark run: build the contenders, check they agree, time them, print the table."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

from rnngen import install_hint
from rnngen.bench import frameworks, loops
from rnngen.bench.harness import (
    BenchError,
    Contender,
    check_agreement,
    gemm_limit,
    generated_contender,
    loop_contender,
    make_problem,
    plain_call,
    time_interleaved,
)

#: Contenders in table order, by the name ``--skip`` takes.
CONTENDERS = ("rnngen", "plain", "tuned", "tutorial", "torch", "jax", "gemm")
LABELS = {
    "rnngen": "rnngen",
    "plain": "rnngen, plain call",
    "tuned": "hand loop, tuned",
    "tutorial": "hand loop, tutorial",
    "torch": "PyTorch",
    "jax": "JAX",
    "gemm": "GEMM only",
}


@dataclass
class Result:
    """The contenders of one problem after timing, plus what was skipped and why."""

    spec: object
    sizes: tuple
    dtype: type
    contenders: list
    agreement: dict
    skipped: dict

    def seconds(self, name: str) -> float | None:
        label = LABELS[name]
        return next((c.median for c in self.contenders if c.name == label), None)

    def ratio(self, name: str) -> float | None:
        """The contender's time over rnngen's (above 1: rnngen is faster)."""
        other = self.seconds(name)
        return None if other is None else other / self.seconds("rnngen")

    def as_dict(self) -> dict:
        """What ``table`` prints, as plain values (for ``--json``); agreement is None for the reference."""
        base = self.contenders[0].median
        return {
            "name": self.spec.name,
            "T": self.spec.T,
            "sizes": dict(zip(("B", "n_x", "n_h", "n_y"), self.sizes)),
            "dtype": np.dtype(self.dtype).name,
            "samples": len(self.contenders[0].seconds),
            "contenders": [
                {
                    "name": c.name,
                    "median_seconds": c.median,
                    "ratio": c.median / base,
                    "agreement": self.agreement.get(c.name),
                    "compile_seconds": c.compile_seconds,
                }
                for c in self.contenders
            ],
            "skipped": {LABELS[name]: why for name, why in self.skipped.items()},
        }


def contenders_for(module, problem, skip=(), plain=None) -> tuple:
    """``(contenders, skipped)``: the generated module first (the agreement reference), then the others.

    A problem with a state per sequence (a chunk of a long sequence) also times the module's plain
    call (no state given, no final state returned), the cost the carried state is measured against;
    a masked problem, the unmasked module ``plain`` on the same batch. The hand loops and JAX start
    from the learned ``h0`` and read every step, so they sit those problems out.
    """
    spec = problem.spec
    made, skipped = [], {}
    carried = problem.state is not None
    masked = problem.lengths is not None
    for name in CONTENDERS:
        if name in skip:
            skipped[name] = "skipped (--skip)"
            continue
        if name == "rnngen":
            made.append(generated_contender(module, problem))
        elif name == "plain":
            if carried or masked:
                made.append(plain_call(plain or module, problem))
        elif carried and name in ("tuned", "tutorial", "jax"):
            skipped[name] = "starts from the learned h0 only (no state per sequence)"
        elif masked and name in ("tuned", "tutorial", "jax"):
            skipped[name] = "reads every step (no padding)"
        elif name in ("tuned", "tutorial"):
            reason = loops.unsupported(spec)
            if reason:
                skipped[name] = reason
                continue
            loop = loops.tuned_loop if name == "tuned" else loops.tutorial_loop
            made.append(loop_contender(LABELS[name], loop, problem))
        elif name in ("torch", "jax"):
            if not frameworks.available()[name]:
                skipped[name] = f"not installed ({install_hint('bench')})"
                continue
            reason = frameworks.unsupported(name, spec)
            if reason:
                skipped[name] = reason
                continue
            build = frameworks.torch_contender if name == "torch" else frameworks.jax_contender
            made.append(build(problem))
        else:
            made.append(gemm_limit(problem))
    return made, skipped


def bench(
    module, spec, sizes, dtype=np.float64, samples=7, settle=0.2, skip=(), seed=0, carried=False, plain=None
) -> Result:
    """Time ``module`` (a generated module for ``spec``) against the others at ``sizes`` = (B, n_x, n_h, n_y);
    with ``carried``, every contender starts from a state per sequence and returns its gradient; for a
    masked spec, ``plain`` is the unmasked module timed beside it."""
    problem = make_problem(spec, *sizes, dtype=dtype, seed=seed, carried=carried)
    contenders, skipped = contenders_for(module, problem, skip, plain)
    agreement = check_agreement(contenders, dtype)
    time_interleaved(contenders, samples=samples, settle=settle)
    return Result(spec, tuple(sizes), dtype, contenders, agreement, skipped)


# -- what ran ----------------------------------------------------------------------------


def _openblas() -> str:
    """OpenBLAS's version, kernel set and threads, asked of the library NumPy loaded."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(
                {line.split()[-1] for line in f if "openblas" in line.lower() and line.strip().endswith(".so")}
            )
    except OSError:
        paths = []
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (
            ("scipy_openblas", "64_"),
            ("scipy_openblas", ""),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            try:
                core = getattr(lib, f"{prefix}_get_corename{suffix}")
                config = getattr(lib, f"{prefix}_get_config{suffix}")
                threads = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            core.restype = config.restype = ctypes.c_char_p
            return f"OpenBLAS kernels {core().decode()} ({config().decode().strip()}), {threads()} threads"
    return "BLAS kernels unknown (not an OpenBLAS build NumPy reports)"


def kernels() -> list:
    """One line per library: the BLAS kernels NumPy runs, and what the frameworks run on."""
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    lines = [f"NumPy {np.__version__}: {_openblas()}; OPENBLAS_CORETYPE={coretype if coretype else 'unset (detected)'}"]
    have = frameworks.available()
    if have["torch"]:
        import torch

        mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"
        cap = torch.backends.cpu.get_cpu_capability()
        lines.append(f"PyTorch {torch.__version__}: CPU capability {cap}, {mkl}, {torch.get_num_threads()} threads")
    if have["jax"]:
        import jax
        import jaxlib

        lines.append(f"JAX {jax.__version__} (jaxlib {jaxlib.__version__}): XLA on {jax.devices()[0].device_kind}")
    return lines


def _time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def table(result: Result) -> list:
    """Lines: each contender's median and its time as a multiple of rnngen's, then what was skipped."""
    B, n_x, n_h, n_y = result.sizes
    head = (
        f"{result.spec.name}  B={B} n_x={n_x} n_h={n_h} n_y={n_y} T={result.spec.T}  "
        f"{np.dtype(result.dtype).name}, median of {len(result.contenders[0].seconds)}"
    )
    lines = [head, f"  {'':<22}{'median':>12}{'× rnngen':>11}   agreement"]
    base = result.contenders[0].median
    for c in result.contenders:
        agree = (
            "reference"
            if c is result.contenders[0]
            else (f"{result.agreement[c.name]:.1e}" if c.name in result.agreement else "(no gradients)")
        )
        extra = f", compile {c.compile_seconds:.2f} s apart" if c.compile_seconds is not None else ""
        lines.append(f"  {c.name:<22}{_time(c.median):>12}{c.median / base:>10.2f}x   {agree}{extra}")
    for name, why in result.skipped.items():
        lines.append(f"  {LABELS[name]:<22}{'—':>12}{'':>11}   {why}")
    return lines


__all__ = ["BenchError", "Contender", "Result", "bench", "kernels", "table", "CONTENDERS"]
