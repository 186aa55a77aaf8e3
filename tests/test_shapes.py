"""The documents' table of shapes against the arrays the generated module holds for each symbol."""

import re

import numpy as np
import pytest
from test_document import _module

from rnngen.document import Notation
from rnngen.examples import EXAMPLES
from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

N_X, N_H, N_Y = 3, 5, 4  # distinct, so that a swapped size shows
LAYER_SIZES = (5, 6)  # a two-layer network's n_{h1}, n_{h2}

SAMPLE = [
    spec
    for spec in EXAMPLES
    if spec.name
    in (
        "rnn_tanh_softmax_xent_t5",  # Elman, column notation (the three-form document)
        "rnn_tanh_softmax_xent_row_WUV_nobias_t5",  # row notation, the user's names
        "rnn_l2_tanh_softmax_xent_t5",  # two layers
        "rnn_bi_tanh_softmax_xent_t5",  # bidirectional: V is n_y x 2 n_h
        "rnn_tanh_softmax_xent_stacked_nobias_t3",  # seed 002's W on [h_{t-1}; x_t]
        "lstm_tanh_softmax_xent_t5",
        "gru_tanh_softmax_xent_t5",
        "rnn_tanh_softmax_xent_trunc2_t5",
        "rnn_tanh_identity_sse_m2o_nobias_masked_t7",
    )
] + [RNNSpec(T=3, cell="lstm", notation="row"), RNNSpec(T=3, layers=2, notation="row")]


def shape_table(tex: str) -> dict:
    """Symbol (LaTeX) -> shape (LaTeX), read from the document's Shapes table."""
    section = re.search(r"\\section\*\{Shapes\}\n(.*?)\\end\{table\}", tex, re.S)
    assert section, "the document has no Shapes table"
    bodies = re.findall(r"\\begin\{tabular\}\S*\n(.*?)\\end\{tabular\}", section.group(1), re.S)
    assert bodies, "the document has no Shapes table"
    table = {}
    for body in bodies:  # one table, or its two halves side by side
        rows = [r.strip() for r in body.split("\\\\") if r.strip()]
        assert rows[0] == "shape & symbols" and rows[1].startswith(r"\hline")
        rows[1] = rows[1].removeprefix(r"\hline").strip()
        for row in rows[1:]:
            shape, symbols = (cell.strip().strip("$") for cell in row.split("&"))
            for symbol in symbols.split("$, $"):
                assert symbol not in table, f"{symbol} is listed twice"
                table[symbol] = shape
    return table


def evaluate(shape: str, sizes: dict) -> tuple:
    """``n_{h} \\times (n_{h} + n_{x})`` -> (5, 8) for the sizes given."""
    out = []
    for dim in shape.split(r" \times "):
        expr = re.sub(r"n_\{(\w+)\}", lambda m: str(sizes[m.group(1)]), dim)
        expr = re.sub(r"(\d)\s+(\d)", r"\1*\2", expr)  # 2 n_{h}
        assert re.fullmatch(r"[\d+*() ]+", expr), f"unexpected dimension {dim!r}"
        out.append(eval(expr))
    return tuple(out)


def as_written(array_shape: tuple, row: bool) -> tuple:
    """The module's array of a vector is 1-D: a column n x 1, or a row 1 x n in row notation."""
    if len(array_shape) == 1:
        return (1, array_shape[0]) if row else (array_shape[0], 1)
    return array_shape


@pytest.mark.parametrize("spec", SAMPLE, ids=lambda s: s.name)
def test_each_shape_in_the_table_is_the_shape_of_the_modules_array(spec):
    result = build(spec)
    module = _module(result)
    n = Notation(spec)
    layered = spec.layers > 1
    params = module.init_params(n_x=N_X, n_h=LAYER_SIZES if layered else N_H, n_y=N_Y)
    xs = np.random.default_rng(0).standard_normal((spec.T, 2, N_X))
    out = module.forward(params, xs)
    sizes = {"x": N_X, "h": N_H, "y": N_Y, "h1": LAYER_SIZES[0], "h2": LAYER_SIZES[1]}
    table = shape_table(result.latex)
    for name, array in params.items():
        symbol = n.latex(result.derivation.graph.params[name])
        assert symbol in table, f"{name} ({symbol}) is not in the table"
        assert evaluate(table[symbol], sizes) == as_written(array.shape, n.row), name
    # one step of each value the module returns, and of the input it reads (T x B x size)
    top = n.step("h" + result.derivation.graph.network.top[0].suffix, "t")
    # the module's o: the output's pre-activation, or the prediction itself (an identity output layer)
    steps = {n.step("x", "t"): xs, n.step(n.output_value, "t"): out["o"], n.step("yhat", "t"): out["yhat"]}
    if not spec.bidirectional:  # the module's h is both directions' states side by side
        steps[top] = out["h"]
    for symbol, array in steps.items():
        assert evaluate(table[symbol], sizes) == as_written(array.shape[-1:], n.row), symbol
    stacked = n.printer.step("x", 1, "T")
    X = evaluate(table[stacked].replace("T", "n_{T}"), {**sizes, "T": spec.T})
    assert X == ((spec.T, N_X) if n.row else (N_X, spec.T))


def test_the_table_renders_in_markdown_with_its_own_header():
    markdown = to_markdown(build(SAMPLE[0]).latex)
    assert "| shape | symbols |" in markdown
    assert "| symbol | meaning |" in markdown  # the legend keeps its header


def test_the_three_index_jacobian_is_said_where_the_document_writes_it():
    one_chain, network = build(SAMPLE[0]).latex, build(SAMPLE[2]).latex
    assert r"\partial h_{t} / \partial W" in one_chain  # the second form writes dh_t/dW ...
    sentence = re.search(r"has three indices: it holds the \$(.*?)\$ numbers", one_chain)
    assert sentence and evaluate(sentence.group(1).replace(r" \cdot ", r" \times "), {"h": N_H}) == (N_H,) * 3
    assert "three indices" not in network  # ... the network document never does


def test_a_truncated_documents_aged_deltas_are_one_entry_each_as_its_text_writes_them():
    spec = next(s for s in SAMPLE if s.truncate)
    tex = build(spec).latex
    table = shape_table(tex)
    aged = [symbol for symbol in table if "[" in symbol]
    assert aged == [r"\delta^{z[q]}_{t}", r"\delta^{h[q]}_{t}"]  # not one row per age [0], [1]
    assert all(table[symbol] == r"n_{h} \times 1" for symbol in aged)
    assert r"\delta^{h[q]}_{t}" in tex.split(r"\section*{Shapes}")[0]  # the legend's spelling


def test_a_table_of_shapes_in_two_halves_is_one_table_in_markdown():
    """LaTeX sets a long table of shapes in two halves side by side; Markdown has no pages and keeps one table
    (one heading row) with every row of both halves, in order."""
    result = build(RNNSpec(T=5))
    assert result.latex.count(r"\begin{tabular}[t]{ll}") == 2  # two halves in the LaTeX
    md = result.markdown
    section = md[md.index("## Shapes") : md.index("## 1 ")]
    assert section.count("| shape | symbols |") == 1
    rows = [line for line in section.splitlines() if line.startswith("| $")]
    halves = re.findall(r"\\begin\{tabular\}\[t\]\{ll\}\n(.*?)\\end\{tabular\}", result.latex, re.S)
    assert len(rows) == sum(len([r for r in half.split("\\\\")[1:] if r.strip()]) for half in halves)
    assert section.index("X_{1:T}") < section.index(r"\delta")  # the left half's rows first
