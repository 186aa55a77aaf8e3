"""write_all: all files or none, even when the run is ended by a signal in the middle of it."""

import os
import signal
import threading

import pytest

from rnngen import emit


def _interrupt_at_first_rename(monkeypatch):
    """os.replace that sends this process SIGINT right after its first rename."""
    real, calls = os.replace, []

    def replace(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(emit.os, "replace", replace)
    return calls


@pytest.fixture
def sigint_as_ctrl_c():
    """SIGINT handled as Ctrl-C in a terminal delivers it, whatever the runner inherited: a job that a
    non-interactive shell starts in the background has SIGINT ignored, and Python keeps it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_between_two_renames_is_held_until_every_file_is_in_place(tmp_path, monkeypatch, sigint_as_ctrl_c):
    a, b = tmp_path / "m.py", tmp_path / "m.tex"
    marker = emit.MARKERS[0]  # a file rnngen wrote, which write_all may replace
    emit.write_all({a: f"{marker} old\n", b: f"{marker} old\n"})
    calls = _interrupt_at_first_rename(monkeypatch)
    # another thread is running, as NumPy's BLAS threads are: the signal may reach it, not the writer
    done = threading.Event()
    other = threading.Thread(target=done.wait, daemon=True)
    other.start()
    try:
        with pytest.raises(KeyboardInterrupt):  # delivered once the block that held it ends
            emit.write_all({a: f"{marker} new\n", b: f"{marker} new\n"})
    finally:
        done.set()
        other.join()
    assert len(calls) == 2  # the second rename ran although the signal came after the first
    assert a.read_text().endswith("new\n") and b.read_text().endswith("new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py", "m.tex"]  # no temporary file left


def test_signals_are_held_inside_the_block_and_delivered_after_it():
    seen = []
    before = signal.signal(signal.SIGTERM, lambda *_: seen.append("term"))
    try:
        with emit._signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == ["term"]
    finally:
        signal.signal(signal.SIGTERM, before)
