"""The README's figures come from benchmarks/readme_figures.py, and its derive output is today's."""

import importlib.util
import re
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def test_every_marked_block_is_one_the_script_writes_and_every_block_is_marked():
    marked = [m["name"] for m in figures._BLOCK.finditer(README)]
    assert sorted(marked) == sorted(figures.BLOCKS)
    starts, ends = (len(re.findall(rf"(?m)^{mark}", README)) for mark in ("<!-- figures:", "<!-- end figures -->"))
    assert starts == ends == len(marked)  # no block left open, none the script cannot read


def _shape(text: str) -> str:
    """The text with every measured number (errors, seconds) replaced: what must not go stale is the rest."""
    text = re.sub(r"Done in [0-9.]+ s", "Done in _ s", text)
    return re.sub(r"-?\d\.\de[+-]\d\d", "_", text)


def test_the_derive_output_in_the_readme_is_what_derive_prints_today(tmp_path):
    block = next(m["body"] for m in figures._BLOCK.finditer(README) if m["name"] == "derive-output")
    shown = block.removeprefix("```\n").removesuffix("\n```")
    printed = subprocess.run(
        [sys.executable, "-m", "rnngen", "derive", "--T", "5"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert _shape(shown) == _shape(printed.rstrip("\n"))
