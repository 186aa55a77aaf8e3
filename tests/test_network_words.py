"""The words of the network documents (two layers, bidirectional, LSTM, GRU), as a teacher reads them.

Each test reads the handout's text and checks one thing the teacher's review found missing or wrong.
"""

import re

import pytest

from rnngen.pipeline import build
from rnngen.spec import RNNSpec


def _handout(**spec) -> str:
    return build(RNNSpec(T=5, **spec)).handout


def _section(tex: str, title: str) -> str:
    """The text of the section ``title``, up to the next section."""
    start = tex.index(rf"\section{{{title}}}")
    rest = tex[start + 1 :]
    return tex[start : start + 1 + rest.index(r"\section")]


def _reset_deltas(tex: str) -> tuple:
    """``(here, other)``: the reset gate's delta as this document has it and as it says the other form has it."""
    two = " ".join(_section(tex, "The two forms of the GRU").split())
    found = re.search(r"here \$(\\delta\^\{r\}_\{t\}) = (.*?)\$, in the other form \$\\delta\^\{r\}_\{t\} = (.*?)\$", two)
    assert found, two
    return found.group(2), found.group(3)


def test_the_gru_forms_differ_in_the_reset_gates_delta_too():
    """Issue 19, review item 8: the two forms differ in the reset gate's delta (so in W_r, U_r, b_r), not in
    W_n only, and the paper is named. Each document's "other form" is the other document's own delta."""
    after, before = _handout(cell="gru"), _handout(cell="gru", gru_reset="before")
    here_after, other_after = _reset_deltas(after)
    here_before, other_before = _reset_deltas(before)
    # the after form's delta reads the candidate's recurrent part; its forward equation says what that is
    zhn = re.search(r"\{z_\{hn\}\}_\{t\} &= (.*?) \\tag|\{z_\{hn\}\}_\{t\} &= (.*?) \\nonumber", after)
    definition = rf"\left({zhn.group(1) or zhn.group(2)}\right)"
    assert other_after == here_before and other_before == here_after.replace("{z_{hn}}_{t}", definition)
    assert here_after != here_before
    for tex in (after, before):
        two = " ".join(_section(tex, "The two forms of the GRU").split())
        assert "Cho et al., 2014" in two and "the paper's final version" not in two
        assert "$U_{r}$, $W_{r}$, $b_{r}$" in two
    assert "$b_{hn}$ has no counterpart" in " ".join(_section(after, "The two forms of the GRU").split())
