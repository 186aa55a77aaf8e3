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
    parser.addoption(
        "--full",
        action="store_true",
        help="run the whole suite, including the tests marked 'full' (CI runs it; the default run leaves them out)",
    )


def pytest_collection_modifyitems(config, items):
    """Without --full, deselect the tests marked ``full`` (the rest of a sweep whose sample runs by default)."""
    if config.getoption("--full"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("full") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_LEFT_OUT] = len(dropped)


_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, config):
    """Say what the quick run left out and how to run it, so 'deselected' is not a mystery."""
    left_out = config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"quick run: {left_out} more cases of the large sweeps are marked 'full'; python -m pytest --full runs them"
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


@functools.cache
def _spec_module(spec, tmp: str):
    from rnngen.pipeline import build
    from rnngen.verify import load_module

    path = Path(tmp) / f"{spec.name}.py"
    path.write_text(build(spec).module, encoding="utf-8")
    return load_module(path)


@pytest.fixture(scope="session")
def module_of(tmp_path_factory):
    """``module_of(spec)``: the generated module of any spec, imported (cached)."""
    tmp = str(tmp_path_factory.mktemp("spec_modules"))
    return lambda spec: _spec_module(spec, tmp)
