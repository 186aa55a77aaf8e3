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
    _assert_formatted_and_clean(built(T).module, tmp_path)


def _assert_formatted_and_clean(text: str, tmp_path) -> None:
    path = tmp_path / "m.py"
    path.write_text(text)
    fmt = subprocess.run(
        [ruff, "format", "--check", "--diff", "--line-length", "120", str(path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout
    lint = subprocess.run(
        [ruff, "check", "--select", "E,F,W", "--line-length", "120", str(path)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout


#: Networks whose long lines (every parameter passed, every gradient returned, blocks) must be laid out
#: as the formatter lays them out: as long as such networks get.
NETWORKS = {
    "2-layer": dict(T=5, layers=2),
    "bidirectional": dict(T=5, bidirectional=True),
    "stacked": dict(T=5, notation="stacked", hidden_bias=False, output_bias=False),
    "3-layer-bi-stacked-row-dx": dict(T=5, layers=3, bidirectional=True, notation="stacked-row", input_grad=True),
    "8-layer-bi-m2o-dx": dict(T=2, layers=8, bidirectional=True, input_grad=True, mapping="many-to-one"),
    "2-layer-T1": dict(T=1, layers=2),
    "3-layer-bi-stacked-no-c": dict(T=5, layers=3, bidirectional=True, notation="stacked", output_bias=False),
}


@needs_ruff
@pytest.mark.parametrize("key", NETWORKS)
def test_generated_module_of_a_network_is_formatted_and_lint_clean(tmp_path, key):
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    _assert_formatted_and_clean(build(RNNSpec(**NETWORKS[key])).module, tmp_path)
