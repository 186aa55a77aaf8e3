"""Every math block of the Markdown documents renders with a real renderer: KaTeX, from npm.

``npm ci`` at the repository's root installs the KaTeX that package.json pins; without node or
KaTeX these tests skip, unless RNNGEN_REQUIRE_KATEX is set (CI sets it), and then they fail.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

ROOT = Path(__file__).resolve().parents[1]
node = shutil.which("node")
has_katex = (ROOT / "node_modules" / "katex" / "package.json").is_file()
needs_katex = pytest.mark.skipif(
    (node is None or not has_katex) and not os.environ.get("RNNGEN_REQUIRE_KATEX"),
    reason="node or KaTeX is missing (npm ci at the repository's root installs KaTeX)",
)

#: Display and inline math of each flavor (markdown.py): ```math blocks and $`...`$ on GitHub,
#: $$ blocks and $...$ in notebooks.
_MATH = {
    "github": (re.compile(r"^```math\n(.*?)\n```$", re.S | re.M), re.compile(r"\$`(.+?)`\$")),
    "jupyter": (re.compile(r"^\$\$\n(.*?)\n\$\$$", re.S | re.M), re.compile(r"(?<![$\\])\$([^$\n]+?)\$(?!\$)")),
}


def math_blocks(markdown: str, flavor: str) -> list:
    """``(tex, display)`` of every math block of a Markdown document of ``flavor``."""
    display, inline = _MATH[flavor]
    blocks = [(m, True) for m in display.findall(markdown)]
    prose = display.sub("", markdown)
    return blocks + [(m, False) for m in inline.findall(prose)]


def katex_errors(blocks: list) -> list:
    """``(tex, KaTeX's message)`` of every block KaTeX refuses."""
    if node is None:
        pytest.fail("node is missing, and RNNGEN_REQUIRE_KATEX asks for KaTeX")
    run = subprocess.run(
        [node, str(ROOT / "tests" / "katex_render.js")],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [(tex, error) for (tex, _), error in zip(blocks, json.loads(run.stdout)) if error]


def test_math_blocks_are_found():
    """The extraction the KaTeX test relies on finds every block of either flavor (no vacuous pass)."""
    tex = build(RNNSpec(T=2)).latex
    for flavor in ("github", "jupyter"):
        md = to_markdown(tex, flavor)
        blocks = math_blocks(md, flavor)
        lines = md.splitlines()
        displays = lines.count("```math") if flavor == "github" else lines.count("$$") // 2  # $$ opens and closes
        assert sum(1 for _, display in blocks if display) == displays > 0
        assert any(not display for _, display in blocks)


@needs_katex
@pytest.mark.parametrize("path", sorted((ROOT / "generated").glob("*.md")), ids=lambda p: p.name)
def test_committed_markdown_renders(path):
    blocks = math_blocks(path.read_text(), "github")
    assert blocks
    errors = katex_errors(blocks)
    assert not errors, "\n\n".join(f"{tex}\n  -> {error}" for tex, error in errors[:5])


#: Documents not committed that reach templates' other branches: one step, a leaky ReLU, a custom
#: activation, a many-to-one row notation with scalar weights.
_IN_MEMORY = [
    dict(T=1),
    dict(T=2, hidden="leaky_relu"),
    dict(T=2, hidden="x/(1+abs(x))"),
    dict(
        T=3,
        mapping="many-to-one",
        notation="row",
        names="w_i,w_h,w_o",
        output="sigmoid",
        loss="binary_cross_entropy",
    ),
]


@needs_katex
@pytest.mark.parametrize("flavor", ["github", "jupyter"])
@pytest.mark.parametrize("choices", _IN_MEMORY, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_markdown_renders(choices, flavor):
    md = to_markdown(build(RNNSpec(**choices)).latex, flavor)
    blocks = math_blocks(md, flavor)
    assert blocks
    errors = katex_errors(blocks)
    assert not errors, "\n\n".join(f"{tex}\n  -> {error}" for tex, error in errors[:5])


# markdown.py's one-row displays: every alignment point goes, a matrix's column separators stay.
_DOC = r"""%% test
\documentclass{article}
\title{T}
\author{A}
\begin{document}
\maketitle
\begin{align}
%s
\end{align}
\end{document}
"""

#: One-row displays with an alignment point of each kind, and a matrix whose column separators must stay.
_ROWS = [
    (r"a &= b \tag{1}", "a = b"),
    (r"w &\leftarrow w - \eta g \tag{1}", r"w \leftarrow w - \eta g"),
    (r"\delta_t &\approx \epsilon \tag{1}", r"\delta_t \approx \epsilon"),
    (r"x &+ y &= z \tag{1}", "x + y = z"),
    (r"&& a = b \tag{1}", "a = b"),
    (r"A &= \begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix} \tag{1}", r"A = \begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
    (r"\text{a \& b} &= c \tag{1}", r"\text{a \& b} = c"),
]


def _display(row: str) -> str:
    md = to_markdown((_DOC % row).replace("%%", "%", 1))
    (block,) = [tex for tex, display in math_blocks(md, "github") if display]
    return block


@pytest.mark.parametrize("row, expected", _ROWS)
def test_one_row_display_drops_every_alignment_point(row, expected):
    assert _display(row) == expected + r" \tag{1}"


@needs_katex
def test_one_row_displays_render():
    blocks = [(_display(row), True) for row, _ in _ROWS]
    errors = katex_errors(blocks)
    assert not errors, errors
