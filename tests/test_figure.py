"""The figure of the unrolled network: drawn from the graph, spelled as TikZ and SVG, shown by the Markdown."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from test_latex import compile_tex, needs_pdflatex

from rnngen.backprop import derive
from rnngen.emit import OutputError, compile_pdf, is_generated
from rnngen.figure import GAP, figure, svg_file
from rnngen.markdown import MarkdownError, to_markdown
from rnngen.pipeline import build
from rnngen.spec import RNNSpec


def _fig(**kw):
    return figure(derive(RNNSpec(**kw)))


def _steps(fig, kind):
    return sorted(n.t for n in fig.nodes if n.kind == kind)


def _edges(fig, kind, chain=None):
    return [e for e in fig.edges if e.kind == kind and (chain is None or e.chain == chain)]


def _t(key: str):
    """The step of a node key (``s::3`` -> 3), or the key's last part (``gap``, ``h``)."""
    last = key.rsplit(":", 1)[1]
    return int(last) if last.isdigit() else last


def test_one_chain_has_every_step_and_the_paths_of_the_first_form():
    T = 5
    result = build(RNNSpec(T=T))
    fig = figure(result.derivation)
    assert (
        _steps(fig, "input") == _steps(fig, "state") == _steps(fig, "output") == _steps(fig, "loss") == [1, 2, 3, 4, 5]
    )
    assert [n.label for n in fig.nodes if n.kind == "initial"] == ["h_{0}"]
    recurrent = _edges(fig, "recurrent")
    assert len(recurrent) == T and all(e.end[0] > e.start[0] for e in recurrent)  # left to right
    assert {e.label for e in recurrent} == {"W"} and {e.label for e in _edges(fig, "input")} == {"U"}
    assert {e.label for e in _edges(fig, "output")} == {"V"}
    # the highlighted arrows where W is used are the terms of the document's sum over paths of dE_T/dW
    terms = {int(k) for k in re.findall(r"\\frac\{\\partial\^\{\+\} h_\{(\d+)\}\}\{\\partial W\}", result.latex)}
    used = {_t(e.dst) for e in recurrent if e.highlighted}
    assert used == terms == set(range(1, T + 1))
    others = {(e.src, e.dst) for e in fig.edges if e.highlighted and e.kind != "recurrent"}
    assert others == {(f"s::{T}", f"y:{T}"), (f"y:{T}", f"E:{T}")}  # from h_T to E_T, nothing else


@pytest.mark.parametrize(
    "kw, inputs, losses",
    [
        (dict(mapping="many-to-one"), [1, 2, 3, 4, 5], [5]),
        (dict(mapping="one-to-many"), [1], [1, 2, 3, 4, 5]),
        (dict(delay=2), [1, 2, 3, 4, 5], [3, 4, 5]),
    ],
    ids=["many-to-one", "one-to-many", "delay"],
)
def test_inputs_and_losses_only_where_the_mapping_has_them(kw, inputs, losses):
    fig = _fig(T=5, **kw)
    assert _steps(fig, "input") == inputs
    assert _steps(fig, "output") == _steps(fig, "loss") == losses
    assert _steps(fig, "state") == [1, 2, 3, 4, 5]
    assert sum(e.highlighted for e in _edges(fig, "recurrent")) == 5


@pytest.mark.parametrize("tau", [1, 2, 3])
def test_truncation_keeps_the_paths_the_truncated_gradient_keeps(tau):
    T = 5
    fig = _fig(T=T, truncate=tau)
    # spec.truncation_rule: the gradient of E_T reaches the chain at steps T - tau + 1 .. T only
    assert sorted(_t(e.dst) for e in _edges(fig, "recurrent") if e.highlighted) == list(range(T - tau + 1, T + 1))
    assert f"at most {tau - 1} recurrent" in fig.caption


@pytest.mark.parametrize("tau, drawn", [(17, ["19", "20"]), (18, [GAP, "19", "20"]), (19, ["2", GAP, "19", "20"])])
def test_truncation_across_the_ellipsis_counts_the_steps_it_leaves_out(tau, drawn):
    # W is used at every step; the arrow into the ellipsis is its use at step 3, out of it the use at step 19;
    # the truncated gradient of E_20 keeps the uses at steps 21 - tau .. 20
    fig = _fig(T=20, truncate=tau)
    used = sorted(str(_t(e.dst)) for e in _edges(fig, "recurrent") if e.highlighted)
    assert used == sorted(drawn)


def test_the_caption_writes_the_states_in_the_document_s_notation():
    assert (
        "through the states $h^{(1\\mathrm{f}),t}$" in _fig(T=3, layers=2, bidirectional=True, notation="row").caption
    )
    assert "through the states $h_{t}$" in _fig(T=3).caption


def test_two_layers_stand_one_above_the_other():
    fig = _fig(T=5, layers=2)
    states = [n for n in fig.nodes if n.kind == "state"]
    assert len(states) == 10
    low = {n.t: n for n in states if n.key.startswith("s:1:")}
    high = {n.t: n for n in states if n.key.startswith("s:2:")}
    assert all(high[t].y > low[t].y and high[t].x == low[t].x for t in low)
    between = _edges(fig, "input", (2, ""))
    assert sorted(_t(e.src) for e in between) == [1, 2, 3, 4, 5] and all(e.src.startswith("s:1:") for e in between)
    assert {e.label for e in between if e.label} == {"U^{(2)}"}
    assert [n.label for n in fig.nodes if n.kind == "initial"] == ["h^{(1)}_{0}", "h^{(2)}_{0}"]
    # W^(1) reaches E_T through layer 2 too: its states' arrows up and along layer 2 are on the paths
    assert all(e.highlighted for e in between) and all(e.highlighted for e in _edges(fig, "recurrent", (1, "")))


def test_a_backward_chain_runs_right_to_left_from_its_own_initial_state():
    T = 5
    fig = _fig(T=T, bidirectional=True)
    backward = _edges(fig, "recurrent", (1, "b"))
    assert len(backward) == T and all(e.end[0] < e.start[0] for e in backward)
    assert sorted((_t(e.src), _t(e.dst)) for e in backward if not e.src.startswith("i:")) == [
        (t + 1, t) for t in range(1, T)
    ]
    start = fig.node("i:_b:h")
    assert start.label == r"h^{(\mathrm{b})}_{6}" and start.x > max(n.x for n in fig.nodes if n.kind == "state")
    assert fig.node("i:_f:h").x < min(n.x for n in fig.nodes if n.kind == "state")
    outputs = _edges(fig, "output")
    assert len(outputs) == 2 * T and {e.label for e in outputs if e.label} == {r"V^{(\mathrm{f})}", r"V^{(\mathrm{b})}"}
    assert not any(e.highlighted for e in backward)  # the paths of dE_T/dW^(f) never cross the backward chain


def test_a_gated_cell_is_one_box_per_step_and_the_lstm_memory_cell_has_its_own_path():
    T = 5
    lstm = _fig(T=T, cell="lstm")
    states = [n for n in lstm.nodes if n.kind == "state"]
    assert len(states) == T and {n.note for n in states} == {r"i\,f\,g\,o"}
    assert sorted(n.label for n in lstm.nodes if n.kind == "initial") == ["c_{0}", "h_{0}"]
    carry = _edges(lstm, "carry")
    assert sorted(_t(e.dst) for e in carry) == [1, 2, 3, 4, 5]
    # W_* is used at every step, so dE_T/dW_* also runs along the memory cell from step 1 on (not from c_0)
    assert sorted(_t(e.dst) for e in carry if e.highlighted) == [2, 3, 4, 5]
    assert {e.label for e in _edges(lstm, "recurrent")} == {"W_{*}"}
    gru = _fig(T=T, cell="gru")
    assert {n.note for n in gru.nodes if n.kind == "state"} == {r"r\,z\,n"}
    assert not _edges(gru, "carry") and len(_edges(gru, "recurrent")) == T


def test_long_unrolls_show_the_first_and_last_two_steps_around_an_ellipsis():
    T = 20
    fig = _fig(T=T)
    assert fig.steps == (1, 2, GAP, T - 1, T)
    assert _steps(fig, "state") == _steps(fig, "input") == _steps(fig, "loss") == [1, 2, T - 1, T]
    pairs = sorted((str(_t(e.src)), str(_t(e.dst))) for e in _edges(fig, "recurrent"))
    assert pairs == sorted([("h", "1"), ("1", "2"), ("2", GAP), (GAP, str(T - 1)), (str(T - 1), str(T))])
    assert all(e.highlighted for e in _edges(fig, "recurrent"))
    assert fig.width <= 16.5  # the text width of the documents
    assert "steps 3 to 18 are left out" in fig.caption


@pytest.mark.parametrize(
    "kw", [dict(T=5, layers=2, bidirectional=True), dict(T=8, cell="lstm", layers=2, bidirectional=True)]
)
def test_the_widest_figures_fit_the_text_width(kw):
    assert _fig(**kw).width <= 15.5  # the documents' text is 16.5 cm wide


def test_the_svg_parses_is_deterministic_and_is_recognised_as_rnngen_s(tmp_path):
    derivation = derive(RNNSpec(T=5, layers=2, bidirectional=True, cell="lstm"))
    text = svg_file(derivation)
    assert text == svg_file(derive(RNNSpec(T=5, layers=2, bidirectional=True, cell="lstm")))
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    labels = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "h(1f)1" in labels and "y\u03025" in labels and "E5" in labels  # h^{(1f)}_1 as spans, no LaTeX left
    assert not any("\\" in label for label in labels)
    path = tmp_path / "f.svg"
    path.write_text(text)
    assert is_generated(path)


def test_the_figure_is_the_same_whatever_the_hash_seed():
    code = (
        "from rnngen.pipeline import build; from rnngen.spec import RNNSpec; "
        "print(build(RNNSpec(T=8, cell='lstm', layers=2, bidirectional=True)).svg)"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout)
    assert len(outputs) == 1


def test_derive_with_markdown_writes_the_svg_the_markdown_shows(tmp_path):
    result = build(RNNSpec(T=3))
    files = result.files(tmp_path, markdown=True)
    assert [p.name for p in files] == [f"rnn_tanh_softmax_xent_t3{s}" for s in (".py", ".tex", ".md", ".svg")]
    md = files[tmp_path / "rnn_tanh_softmax_xent_t3.md"]
    assert "![Figure 1: the unrolled network](rnn_tanh_softmax_xent_t3.svg)" in md
    assert re.search(r"\*Figure 1\.\* The network unrolled for \$`T = 3`\$ steps", md)
    assert "tikzpicture" not in md and "tikzpicture" in result.latex
    assert [p.name for p in result.paths(tmp_path)] == ["rnn_tanh_softmax_xent_t3.py", "rnn_tanh_softmax_xent_t3.tex"]


def test_a_notebook_shows_the_figure_from_a_data_address():
    import base64

    import rnngen

    d = rnngen.derive(T=3, check=False)
    address = re.search(
        r"!\[Figure 1: the unrolled network\]\(data:image/svg\+xml;base64,([^)]+)\)", d._repr_markdown_()
    )
    assert base64.b64decode(address.group(1)).decode("utf-8") == d.build.svg


def test_markdown_refuses_a_figure_it_cannot_show():
    tex = build(RNNSpec(T=2)).latex
    with pytest.raises(MarkdownError, match="figure"):
        to_markdown(re.sub(r"% Markdown: \S+\n", "", tex))


@needs_pdflatex
@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=3),
        RNNSpec(T=20),
        RNNSpec(T=5, layers=2, bidirectional=True),
        RNNSpec(T=5, cell="lstm"),
        RNNSpec(T=5, cell="gru", bidirectional=True),
    ],
    ids=lambda s: s.name,
)
def test_the_documents_with_their_figure_compile_without_a_box_warning(tmp_path, spec):
    tex = build(spec).latex
    assert tex.count(r"\begin{tikzpicture}") == 1
    run = compile_tex(tmp_path, spec.name, tex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull" not in run.stdout and "Underfull" not in run.stdout


def test_a_missing_tikz_names_its_package(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "pdflatex"  # a pdflatex without TikZ, as pdflatex reports it
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '! LaTeX Error: File \\140tikz.sty\\047 not found.\\n'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(
        OutputError, match=r"tikz\.sty' not found\. \(on Debian or Ubuntu: apt-get install texlive-pictures\)$"
    ):
        compile_pdf(build(RNNSpec(T=2)).latex, "doc")


def test_a_foreign_svg_is_not_clobbered_and_nothing_is_written(tmp_path):
    import rnngen

    foreign = tmp_path / "rnn_tanh_softmax_xent_t2.svg"
    foreign.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(OutputError, match="was not generated by rnngen"):
        rnngen.derive(T=2, out=tmp_path, markdown=True, check=False)
    assert [p.name for p in tmp_path.iterdir()] == [foreign.name]
    assert foreign.read_text() == "<svg xmlns='http://www.w3.org/2000/svg'/>"


def test_the_caption_counts_paths_per_use_and_names_the_sum_over_paths_only_where_the_document_derives_it():
    one = _fig(T=5).caption  # the three-forms document derives the sum over paths: one term per use
    assert "the sum over paths of" in one and "(one term per step)" in one
    two = _fig(T=5, layers=2).caption  # a use at step k reaches E_5 along 5 - k + 1 routes through layer 2
    assert "sum over paths" not in two and "one term per step" not in two
    assert "every route up into layer 2 and along it to $E_{5}$" in two and "(several paths per use)" in two
    assert "through the states $h^{(1)}_{t}$ and $h^{(2)}_{t}$" in two
    gru = _fig(T=5, cell="gru").caption
    assert "sum over paths" not in gru and "(one path per use)" in gru


def test_the_lstm_memory_cell_arrows_carry_their_label_and_the_caption_names_them():
    T = 5
    lstm = _fig(T=T, cell="lstm")
    between = [e for e in _edges(lstm, "carry") if not e.src.startswith("i:")]
    assert sorted((e.label, _t(e.src)) for e in between) == [(f"c_{{{t}}}", t) for t in range(1, T)]
    assert "through the states $h_{t}$ and the memory cells $c_{t}$" in lstm.caption
    bi = _fig(T=T, cell="lstm", bidirectional=True)  # several chains: labelled at each chain's first step only
    labelled = sorted((e.chain, _t(e.src)) for e in _edges(bi, "carry") if e.label)
    assert labelled == [((1, "b"), T), ((1, "f"), 1)]


def _enters(edge, node, margin=0.1):
    """Whether the straight arrow ``edge`` comes within ``margin`` of ``node``'s frame."""
    (x0, y0), (x1, y1) = edge.start, edge.end
    for i in range(1, 200):
        x, y = x0 + (x1 - x0) * i / 200, y0 + (y1 - y0) * i / 200
        if abs(x - node.x) < node.w / 2 + margin and abs(y - node.y) < node.h / 2 + margin:
            return True
    return False


@pytest.mark.parametrize("kw", [dict(T=5, bidirectional=True), dict(T=5, cell="gru", bidirectional=True)])
def test_a_bidirectional_layer_s_arrows_cross_the_other_chain_square_and_pass_no_box(kw):
    fig = _fig(**kw)
    rows = {n.y for n in fig.nodes if n.kind == "state"}
    for e in fig.edges:
        if e.control is None:  # no arrow runs through a box or grazes one
            assert not [n.key for n in fig.nodes if n.key not in (e.src, e.dst) and _enters(e, n)], e
        crossed = [y for y in rows if min(e.start[1], e.end[1]) < y < max(e.start[1], e.end[1])]
        if crossed:  # one that reaches past the other chain's row (x_t into h^b_t, h^f_t to y_t) goes straight up
            assert e.start[0] == e.end[0], e
    # the highlighted path leaves h^f_T straight up to y_T, through the backward chain's row
    up = next(e for e in fig.edges if e.src == "s:_f:5" and e.dst == "y:5")
    assert up.highlighted and up.start[0] == up.end[0] == fig.node("y:5").x


def test_a_bidirectional_layer_labels_its_inputs_and_outputs_at_every_step():
    T = 5
    fig = _fig(T=T, bidirectional=True)
    labels = {(e.kind, e.label, _t(e.dst)) for e in fig.edges if e.kind in ("input", "output") and e.label}
    for t in range(1, T + 1):
        assert {("input", r"U^{(\mathrm{f})}", t), ("input", r"U^{(\mathrm{b})}", t)} <= labels
        assert {("output", r"V^{(\mathrm{f})}", t), ("output", r"V^{(\mathrm{b})}", t)} <= labels
    # no label sits on an arrow up a column: each is off every straight arrow it is not the label of
    for e in fig.edges:
        if e.label:
            for other in fig.edges:
                if other is not e and other.control is None and abs(other.start[0] - other.end[0]) < 1e-6:
                    low, high = sorted((other.start[1], other.end[1]))
                    assert not (abs(e.at[0] - other.start[0]) < 0.15 and low < e.at[1] < high), (e, other)


def _points(edge, n=200):
    """Points along ``edge`` as drawn: its straight segment, or its quadratic Bézier curve."""
    (x0, y0), (x1, y1) = edge.start, edge.end
    cx, cy = edge.control if edge.control is not None else ((x0 + x1) / 2, (y0 + y1) / 2)
    for i in range(1, n):
        s = i / n
        yield (
            (1 - s) ** 2 * x0 + 2 * s * (1 - s) * cx + s * s * x1,
            (1 - s) ** 2 * y0 + 2 * s * (1 - s) * cy + s * s * y1,
        )


@pytest.mark.parametrize(
    "kw",
    [
        dict(T=5),
        dict(T=5, cell="gru"),
        dict(T=5, cell="lstm"),
        dict(T=20),
        dict(T=5, layers=2),
        dict(T=7, masked=True, mapping="many-to-one"),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_no_arrow_of_a_bidirectional_figure_crosses_a_box(kw):
    """Every arrow as drawn (a bent one along its curve) stays off every node but its own two."""
    fig = _fig(bidirectional=True, **kw)
    for e in fig.edges:
        for node in fig.nodes:
            if node.key not in (e.src, e.dst):
                inside = [p for p in _points(e) if abs(p[0] - node.x) < node.w / 2 and abs(p[1] - node.y) < node.h / 2]
                assert not inside, (e.src, e.dst, node.key)
