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
    dr = r"\$\\delta\^\{r\}_\{t\} = (.*?)\$"
    found = re.search(rf"here {dr}, in the other form {dr}", two)
    assert found, two
    return found.group(1), found.group(2)


def test_the_gru_forms_differ_in_the_reset_gates_delta_too():
    """Issue 19, review item 8: the two forms differ in the reset gate's delta (so in W_r, U_r, b_r), not in
    W_n only, and the paper is cited. Each document's "other form" is the other document's own delta."""
    after, before = _handout(cell="gru"), _handout(cell="gru", gru_reset="before")
    here_after, other_after = _reset_deltas(after)
    here_before, other_before = _reset_deltas(before)
    # the after form's delta reads the candidate's recurrent part; its forward equation says what that is
    zhn = re.search(r"\{a_\{hn\}\}_\{t\} &= (.*?) \\tag|\{a_\{hn\}\}_\{t\} &= (.*?) \\nonumber", after)
    definition = rf"\left({zhn.group(1) or zhn.group(2)}\right)"
    assert other_after == here_before and other_before == here_after.replace("{a_{hn}}_{t}", definition)
    assert here_after != here_before
    for tex in (after, before):
        two = " ".join(_section(tex, "The two forms of the GRU").split())
        # the paper, by what it did and when: no names of people in a document
        assert "the paper that introduced the GRU" in two and "2014" in two and "et al." not in two
        assert "$U_{r}$, $W_{r}$, $b_{r}$" in two
    assert "$b_{hn}$ has no counterpart" in " ".join(_section(after, "The two forms of the GRU").split())


@pytest.mark.parametrize(
    "cell, hidden, slope, gamma",
    [
        ("lstm", "tanh", r"\mathbf{1} - h_{t} \odot h_{t}", r"\sup_x |\tanh'(x)| = 1"),
        ("gru", "sigmoid", r"h_{t} \odot \left(\mathbf{1} - h_{t}\right)", r"\sup_x |\sigma'(x)| = 0.25"),
    ],
)
def test_the_gates_are_compared_with_a_plain_rnn_the_text_defines(cell, hidden, slope, gamma):
    """Review item 19: "An Elman cell", W and D_t were undefined where the gated documents compare with it;
    the paragraph now writes the plain RNN's step, its D_t with its entries, and gamma's value."""
    text = " ".join(_handout(cell=cell, hidden=hidden).split())
    assert "Elman" not in text
    step = (r"\tanh" if hidden == "tanh" else r"\sigma") + r"(U x_{t} + W h_{t-1} + b)"
    assert f"A plain RNN with the same activation, $h_{{t}} = {step}$, has no such path" in text
    assert rf"$D_{{t}} = \operatorname{{diag}}\bigl({slope}\bigr)$" in text
    assert rf"$\gamma = {gamma}$" in text


@pytest.mark.parametrize("spec", [dict(layers=2), dict(layers=2, bidirectional=True)], ids=["l2", "l2-bi"])
def test_a_layered_document_speaks_of_no_lecture(spec):
    """Review item 17: "the lecture's layer notation" and its gradient formula came mid-argument in a document
    no lecture goes with; the text says the two arrows and the input weights' gradient in its own words."""
    text = " ".join(_handout(**spec).split())
    assert "lecture" not in text
    assert r"\nabla" not in text
    assert "one for each arrow out of the state of layer $l$ at step $t$" in text


def _numbers(tex: str) -> list:
    return [int(n) for n in re.findall(r"\\tag\*?\{\(?(\d+)\)?\}", tex)]


@pytest.mark.parametrize("spec", [dict(layers=2), dict(bidirectional=True), dict(cell="lstm"), dict(cell="gru")])
def test_the_summary_restates_the_delta_recursion_too(spec):
    """Review item 23: the summaries listed only the parameters' gradients; like the seed documents' they
    restate the delta recursion, every numbered equation from the output's delta to the last gradient."""
    tex = _handout(**spec)
    summary = _section(tex + r"\section", "Summary")
    body = tex[: tex.index(r"\section{Summary}")]
    deltas = body[body.index(r"\section{The delta recursion") :]
    deltas = deltas[: deltas.index(r"\frac{\partial E}{\partial")]  # the recursion, before the gradients
    deltas = deltas[deltas.index(r"\delta^") :]  # from the output's delta (its closed form derived before it)
    first, last = min(_numbers(deltas)), max(_numbers(body[: body.index(r"\section", body.index("collects"))]))
    assert _numbers(summary) == list(range(first, last + 1))
    if spec.get("bidirectional"):
        assert "the backward chain's deltas run forward in time" in " ".join(summary.split())


@pytest.mark.parametrize(
    "spec, reads",
    [
        (dict(cell="lstm"), "the hidden layer"),
        (dict(cell="gru"), "the hidden layer"),
        (dict(bidirectional=True), "the hidden layer's two chains"),
        (dict(layers=2, cell="lstm"), "the top layer"),
    ],
)
def test_a_one_layer_network_has_no_layer_above_or_top_layer(spec, reads):
    """Review item 27: one-layer documents said "the layer above" and "the top layer"."""
    text = " ".join(_handout(**spec).split())
    assert f"The output layer reads {reads}" in text
    if spec.get("layers", 1) == 1:
        assert "top layer" not in text and "layer above" not in text
    if spec.get("cell"):
        state = "the layer above (above the top layer" if spec.get("layers", 1) > 1 else "the output layer read"
        assert f"$h_{{t}}$ & the state, which the next step and {state}" in text


def _legend_symbols(tex: str) -> str:
    start = tex.index(r"\section*{Notation}")
    return "\n".join(line.split(" & ")[0] for line in tex[start : tex.index(r"\end{longtable}", start)].splitlines())


@pytest.mark.parametrize(
    "spec", [dict(layers=2), dict(bidirectional=True, notation="row"), dict(cell="lstm"), dict(cell="gru")]
)
def test_the_legend_lists_the_division_the_stacked_inputs_and_every_kind_of_delta(spec):
    """Review item 18: the legends left out the entrywise division of the output's delta, the inputs side by
    side that the shapes table lists, and every delta but the state's; each is a legend row now."""
    tex = _handout(**spec)
    legend = _legend_symbols(tex)
    row = spec.get("notation") == "row"
    # softmax with cross-entropy: the recursion starts from the output delta's closed form, with no division
    assert (r"\oslash" in tex[tex.index(r"\section{") :]) == (r"$\oslash$" in legend)
    assert (r"$X^{1:T}$" if row else r"$X_{1:T}$") in legend
    for delta in ("o" if not spec.get("cell") else "s",):
        assert (rf"\delta^{{{delta},t}}" if row else rf"\delta^{{{delta}}}_{{t}}") in legend
    if not spec.get("cell"):
        assert r"\delta^{z(" in legend
    assert "the gradient of the loss at a value" not in tex


def test_the_legend_says_what_each_initial_state_and_bias_is():
    """Review items 11, 28 and 38: c_0 was "initial state (zeros by default) of the hidden layer", like h_0;
    a bias was a "hidden bias of the hidden layer"."""
    legend = _handout(cell="lstm")
    assert r"$c_{0}$ & initial memory cell of the hidden layer, $n_{h}$" in legend
    assert r"$h_{0}$ & initial state of the hidden layer, $n_{h}$" in legend
    assert r"$b_{f}$ & bias of the forget gate of the hidden layer, $n_{h}$" in legend
    assert r"$b^{(2)}$ & bias of layer 2, $n_{h2}$" in _handout(layers=2)
    assert "by default" not in legend and "hidden bias" not in legend


@pytest.mark.parametrize(
    "spec",
    [dict(cell="gru"), dict(cell="gru", gru_reset="before"), dict(cell="lstm"), dict(bidirectional=True)],
    ids=["gru", "gru-before", "lstm", "bi"],
)
def test_the_network_documents_name_no_library(spec):
    """Review item 28: "PyTorch's order", the GRU's title "as PyTorch", "as PyTorch concatenates them"."""
    tex = _handout(**spec)
    assert "PyTorch" not in tex and "cuDNN" not in tex
    if spec.get("cell") or spec.get("bidirectional"):
        assert "most libraries" in " ".join(tex.split())


def _last_break(group: str) -> str:
    """The line break before a displayed group's last line."""
    return re.findall(r"\\\\\*?", group)[-1]


@pytest.mark.parametrize("spec", [dict(cell="lstm"), dict(layers=2)], ids=["lstm", "l2"])
def test_the_last_equation_of_the_summary_and_the_appendix_never_stands_alone_on_a_page(spec):
    """Review item 30: the LSTM's full document ended with one equation alone on its last page; the long
    groups that end a document (the summary, the appendix) forbid a break before their last line."""
    tex = build(RNNSpec(T=5, **spec)).latex
    summary = tex[tex.index(r"\section{Summary}") : tex.index(r"\end{keepgroups}")]
    summary = summary[summary.rindex(r"\begin{align}") :]  # its last group (of gradients side by side: the right one)
    appendix = tex[tex.index(r"\appendix") :]
    for group in (summary[: summary.index(r"\end{align}")], appendix[: appendix.index(r"\end{align}")]):
        assert group.count(r"\tag") > 2 and _last_break(group) == r"\\*"


def test_the_appendix_says_a_gated_cells_primed_symbols_hold_more_than_a_slope():
    """Review item 31: "A primed symbol holds an activation's slope" was false for the LSTM's, which hold
    the slope times the path's other factors (the forget gate's: the previous memory cells too)."""
    tex = " ".join(build(RNNSpec(T=5, cell="lstm")).latex.split())
    appendix = tex[tex.index(r"\appendix") :]
    assert r"{\Sigma'_{f}}_{1:5} &= C_{0:4} \odot F_{1:5}" in appendix  # a factor besides the slope
    assert (
        "A primed symbol holds the entrywise factor by which a delta reaches a value of the step: the "
        "activation's slope times the other entrywise factors of that path" in appendix
    )


def test_the_shapes_tables_rule_ends_with_its_widest_row():
    """Review item 33: the two-layer handout's rule under "shape & symbols" ran far past the columns (a
    fixed-width column of 0.75 of the line); the column is as wide as its rows where they fit, and wraps
    only where a row is wider than that."""
    from rnngen.network_document import _shapes_columns

    tex = _handout(layers=2)
    assert "\\section*{Shapes}\n\\begin{tabular}[t]{ll}" in tex
    long_row = ("$n_{h} \\times 1$", ", ".join([r"$\delta^{{a_{hn}}(2\mathrm{f})}_{t}$"] * 40))
    assert _shapes_columns([long_row]) == r"lp{0.75\linewidth}"


def test_the_grus_letter_z_is_the_update_gate_only():
    """Review item 10: z was the update gate, every gate's pre-activation (z_r, z_z, z_n) and the candidate's
    recurrent part (z_hn); the pre-activations are a with the gate's letter below now, in every printer."""
    tex = _handout(cell="gru")
    body = tex[tex.index(r"\begin{document}") :]
    assert not re.search(r"z_\{(?:r|z|n|hn)", body)
    for pre in ("r", "z", "n", "hn"):
        assert rf"{{a_{{{pre}}}}}_{{t}}" in body
    assert "their pre-activations: $a$ with the gate's letter below" in body
    assert r"\delta^{z}_{t}" in body and r"\delta^{{a_{z}}}_{t}" in body  # the gate's delta, its pre-activation's
