"""Every figure the README quotes, measured by one command; ``--write`` puts them into README.md.

Run from the repository root after installing rnngen:

    python benchmarks/readme_figures.py            # print the blocks
    python benchmarks/readme_figures.py --write    # and rewrite them in README.md

The README marks each block it takes from here with ``<!-- figures: NAME -->`` and
``<!-- end figures -->``; ``--write`` replaces what stands between (nothing else), so a
figure in a marked block is always from the last run of this script. The timing
figures are wall times of the ``rnngen derive`` command as a user runs it (start-up
included, the "Done in" line it prints), median of three runs; the same run gives the
derive output shown, the cost table's T = 5 row and the activation table's tanh row, so
the README never gives two times for one thing. The figures of the framework
comparison come from ``python benchmarks/frameworks.py`` (it needs PyTorch and JAX).
"""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RUNS = 3


@functools.cache
def derive_run(T: int, hidden: str = "tanh") -> tuple:
    """``(seconds, stdout)`` of the median of RUNS runs of ``rnngen derive --T T --hidden hidden``."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(RUNS):
            out = subprocess.run(
                [sys.executable, "-m", "rnngen", "derive", "--T", str(T), "--hidden", hidden],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            seconds = float(re.search(r"Done in ([0-9.]+) s", out)[1])
            runs.append((seconds, out))
    runs.sort(key=lambda r: r[0])
    return runs[len(runs) // 2]


def derive_output() -> str:
    seconds, out = derive_run(5, "tanh")
    return "```\n" + out.rstrip("\n") + "\n```"


def cost() -> str:
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    rows = ["| T | `rnngen derive` | module lines | document lines |", "| --- | --- | --- | --- |"]
    for T in (5, 20, 50, 100, 200):
        seconds, _ = derive_run(T, "tanh")
        result = build(RNNSpec(T=T))
        rows.append(f"| {T} | {seconds:.2f} s | {result.module.count(chr(10))} | {result.latex.count(chr(10))} |")
    return "\n".join(rows)


def activations() -> str:
    from rnngen.activations import HIDDEN
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    rows = ["| hidden | T = 5 | lines | T = 50 | lines |", "| --- | --- | --- | --- | --- |"]
    for hidden in [*HIDDEN, "x/(1+abs(x))"]:
        cells = []
        for T in (5, 50):
            seconds, _ = derive_run(T, hidden)
            cells += [f"{seconds:.2f} s", str(build(RNNSpec(T=T, hidden=hidden)).module.count("\n"))]
        name = hidden if hidden in HIDDEN else f"`{hidden}`"
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def documents() -> str:
    from rnngen.emit import compile_pdf
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    rows = ["| T | .tex | .md | pages |", "| --- | --- | --- | --- |"]
    for T in (5, 50, 200):
        result = build(RNNSpec(T=T))
        pages = compile_pdf(result.latex, result.spec.name).pages
        rows.append(f"| {T} | {len(result.latex) / 1024:.1f} KiB | {len(result.markdown) / 1024:.1f} KiB | {pages} |")
    return "\n".join(rows)


def verification() -> str:
    """The worst figure of each check over the networks the README names."""
    from rnngen import verify
    from rnngen.activations import HIDDEN, pairs
    from rnngen.pipeline import build
    from rnngen.spec import MAPPINGS, NOTATIONS, RNNSpec

    def module(spec):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{spec.name}.py"
            path.write_text(build(spec).module, encoding="utf-8")
            return verify.load_module(path)

    rows = ["| check | networks | worst | limit |", "| --- | --- | --- | --- |"]
    exact = max(verify.exact_oracle(module(RNNSpec(T=T))).worst for T in (1, 2, 3, 5))
    rows.append(f"| exact oracle | default network, T = 1, 2, 3, 5 | {exact:.1e} | {verify.EXACT_TOLERANCE:.0e} |")
    for Ts in ((1, 5, 20), (200,)):
        reports = [verify.check_build(build(RNNSpec(T=T))) for T in Ts]
        fd = max(max(r.fd.values()) for r in reports)
        label = ", ".join(map(str, Ts))
        rows.append(f"| finite differences | default network, T = {label} | {fd:.1e} | {verify.FD_TOLERANCE:.0e} |")
    slopes = [r.taylor for r in reports]
    forms = max(max(verify.forms_agree(build(RNNSpec(T=T))).values()) for T in (1, 3, 5, 12))
    rows.append(
        f"| paths vs recursion | default network, T = 1, 3, 5, 12 | {forms:.1e} | {verify.FORMS_TOLERANCE:.0e} |"
    )
    rows.append(f"| Taylor remainder slope | default network, T = 200 | {min(slopes):.3f} | 2 ± 0.1 |")
    worst, where = 0.0, ""
    activations = [*HIDDEN, "x/(1+abs(x))"]
    biases = ((True, True), (True, False), (False, True), (False, False))
    for hidden, (output, loss), (b, c), mapping, notation in itertools.product(
        activations, pairs(), biases, MAPPINGS, NOTATIONS
    ):
        spec = RNNSpec(
            T=2,
            hidden=hidden,
            output=output,
            loss=loss,
            hidden_bias=b,
            output_bias=c,
            mapping=mapping,
            notation=notation,
        )
        m = module(spec)
        params, xs, targets = verify.random_problem(m, (3, 4, 3, 2))
        error = max(verify.finite_differences(m, params, xs, targets).values())
        if error > worst:
            worst, where = error, spec.name
    count = len(activations) * len(pairs()) * len(biases) * len(MAPPINGS) * len(NOTATIONS)
    rows.append(
        f"| finite differences | the {count} networks of the activation set, T = 2 (worst: `{where}`) "
        f"| {worst:.1e} | {verify.FD_TOLERANCE:.0e} |"
    )
    return "\n".join(rows)


BLOCKS = {
    "derive-output": derive_output,
    "cost": cost,
    "activations": activations,
    "documents": documents,
    "verification": verification,
}
_BLOCK = re.compile(r"(<!-- figures: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- end figures -->)", re.S)


def main(argv) -> None:
    write = "--write" in argv
    names = [a for a in argv if not a.startswith("--")] or list(BLOCKS)
    unknown = sorted(set(names) - set(BLOCKS))
    if unknown:
        sys.exit(f"unknown block {', '.join(unknown)}; choose from {', '.join(BLOCKS)}")
    text = README.read_text(encoding="utf-8")
    marked = {m["name"] for m in _BLOCK.finditer(text)}
    figures = {}
    for name in names:
        figures[name] = BLOCKS[name]()
        print(f"<!-- figures: {name} -->\n{figures[name]}\n<!-- end figures -->\n", flush=True)
    if write:
        missing = sorted(set(figures) - marked)
        if missing:
            sys.exit(f"README.md has no marked block for {', '.join(missing)}")
        text = _BLOCK.sub(lambda m: m[1] + figures.get(m["name"], m["body"]) + m[4], text)
        README.write_text(text, encoding="utf-8")
        print(f"rewrote {len(figures)} blocks of {README}")


if __name__ == "__main__":
    main(sys.argv[1:])
