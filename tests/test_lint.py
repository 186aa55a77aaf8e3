"""ruff keeps the code and the generated modules formatted and clean."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ruff = shutil.which("ruff")
needs_ruff = pytest.mark.skipif(ruff is None, reason="ruff is not installed (pip install -e '.[test]')")


@needs_ruff
def test_source_passes_ruff():
    for args in (["check", "src", "tests", "benchmarks"], ["format", "--check", "src", "tests", "benchmarks"]):
        run = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


@needs_ruff
@pytest.mark.parametrize("T", [1, 5, 20])
def test_generated_module_is_formatted_and_lint_clean(built, tmp_path, T):
    path = tmp_path / "m.py"
    path.write_text(built(T).module)
    fmt = subprocess.run(
        [ruff, "format", "--check", "--diff", "--line-length", "120", str(path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout
    lint = subprocess.run(
        [ruff, "check", "--select", "E,F,W", "--line-length", "120", str(path)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
