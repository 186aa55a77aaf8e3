import functools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def pytest_addoption(parser):
    parser.addoption(
        "--update",
        action="store_true",
        help="rewrite the committed files under generated/ instead of failing when they are stale",
    )


@pytest.fixture
def update(request):
    return request.config.getoption("--update")


@functools.cache
def _built(T: int):
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    return build(RNNSpec(T=T))


@functools.cache
def _module(T: int, tmp: str):
    from rnngen.verify import load_module

    path = Path(tmp) / f"rnn_t{T}.py"
    path.write_text(_built(T).module, encoding="utf-8")
    return load_module(path)


@pytest.fixture(scope="session")
def built():
    """``built(T)``: the pipeline's result for the default spec at T (cached)."""
    return _built


@pytest.fixture(scope="session")
def module(tmp_path_factory):
    """``module(T)``: the generated module for the default spec at T, imported (cached)."""
    tmp = str(tmp_path_factory.mktemp("modules"))
    return lambda T: _module(T, tmp)
