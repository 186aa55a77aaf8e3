"""The table of shapes every derivation document gives after its notation.

One rule for every network: a symbol's shape is read off the derivation's own SymPy symbol (a
step of the graph, a parameter as the column math uses it, an adjoint), for one sequence (the
batch size ``B`` is 1), and transposed in row notation, where vectors are rows and the matrices
act from the right. Nothing here knows a cell, a layer or a direction: a layer's sizes
(``n_{h1}``), a bidirectional output layer's ``2 n_h`` and seed 002's ``n_h + n_x`` come with the
symbols.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

import sympy as sp

from rnngen import algebra as A
from rnngen.families import AGE, family
from rnngen.texwidth import TEXT, width

if TYPE_CHECKING:  # document.py builds its context from this module
    from rnngen.document import Notation


def size(d) -> str:
    """One dimension in LaTeX: ``n_{h1}``, ``2 n_{h}``, ``(n_{h} + n_{x})``."""
    return f"({sp.latex(d)})" if isinstance(d, sp.Add) else sp.latex(d)


def dims(n: Notation, expr) -> tuple:
    """The shape of ``expr`` (column math, one column per sequence) as the document writes it."""
    rows, cols = (1 if d == A.B else d for d in expr.shape)
    return (cols, rows) if n.row else (rows, cols)


def written(shape: tuple) -> str:
    return r" \times ".join(size(d) for d in shape)


def _first_steps(nodes) -> dict:
    """Family key -> the symbol of its first step in ``nodes``."""
    first: dict = {}
    for node in nodes:
        if node.family is not None and node.t is not None:
            first.setdefault(node.family, node.symbol)
    return first


def _delta(n: Notation, key: str) -> str:
    """``δh_t``, or ``δh^{[q]}_t`` for each age of a truncated derivation's adjoint (the text's spelling)."""
    f = family(key)
    return n.step(key, "t") if f.age is None else n.aged_step(replace(f, age=None).key, AGE, "t")


def _deltas(n: Notation, derivation) -> list:
    """``(symbol, shape)`` of every delta, in the order of their values in the forward pass."""
    from rnngen.document import forward_families  # document.py imports this module

    graph = derivation.graph
    order = [*graph.inputs, *forward_families(graph)]
    adjoints = _first_steps(derivation.adjoints)  # in the sweep's order: list them as their values are
    ranked = sorted(
        adjoints, key=lambda k: order.index(family(k).value.key) if family(k).value.key in order else len(order)
    )
    return [(_delta(n, key), dims(n, adjoints[key])) for key in ranked]


def other_deltas(n: Notation, derivation) -> list:
    """``(delta, value)`` symbols of every delta but the state's (``δh_t``, which the legend defines), each once,
    in the order the table of shapes lists them."""
    from rnngen.document import forward_families  # document.py imports this module

    graph = derivation.graph
    order = [*graph.inputs, *forward_families(graph)]
    keys = sorted(
        _first_steps(derivation.adjoints),
        key=lambda k: order.index(family(k).value.key) if family(k).value.key in order else len(order),
    )
    pairs = {_delta(n, k): n.step(family(k).value.key, "t") for k in keys if family(k).value.key != "h"}
    return list(pairs.items())


def shape_rows(n: Notation, derivation, jacobians: tuple = ()) -> list:
    """``(shape, symbols)`` rows of the table: values, parameters, deltas, then ``jacobians``.

    Symbols of one kind with one shape share a row, in the order the document meets them.
    ``jacobians`` are ``(symbol, shape)`` of Jacobians the document names (``D_t``): a Jacobian is
    written as a matrix of entries ``d a_i / d b_j`` in either notation, so the caller gives its shape.
    """
    from rnngen.document import forward_families  # document.py imports this module

    graph = derivation.graph
    net = graph.network
    steps = _first_steps(graph.nodes)
    forward = forward_families(graph)
    values = [(n.step(key, "t"), dims(n, symbols[0])) for key, symbols in graph.inputs.items()]
    values += [(n.step(key, "t"), dims(n, steps[key])) for key in forward if key in steps]
    params = []
    for name, symbol in graph.params.items():
        column_math = net.params[name].math() if name in net.params else symbol  # W, or W^T stored
        params.append((n.latex(symbol), dims(n, column_math)))
    deltas = _deltas(n, derivation)
    stacked = graph.inputs["x"][0]
    values.append((n.printer.step("x", 1, "T"), dims(n, sp.MatrixSymbol("X", stacked.shape[0], sp.Symbol("T")))))
    rows = []
    for kind in (values, params, deltas, list(jacobians)):
        grouped: dict = {}
        for symbol, shape in kind:
            if symbol not in grouped.setdefault(shape, []):  # the ages of one delta: once
                grouped[shape].append(symbol)
        # one formula per symbol: a long row wraps between them
        rows += [(f"${written(shape)}$", ", ".join(f"${x}$" for x in symbols)) for shape, symbols in grouped.items()]
    return rows


def three_index_sentence(n: Notation, derivation) -> str:
    """One sentence on ``dh_t/dW`` (the second form writes it): its three indices and the contraction."""
    graph = derivation.graph
    name = graph.network.recurrent_weight.name
    weight = n.latex(graph.params[name])
    h = _first_steps(graph.nodes)["h"]
    (size_h,) = (d for d in dims(n, h) if d != 1)
    shape_w = dims(n, graph.network.params[name].math())
    entry = n.entry_of("h", "t")
    W_jk = f"({weight})_{{jk}}" if "_" in weight else f"{weight}_{{jk}}"
    dh = n.step("h", "t")
    count = r" \cdot ".join(size(d) for d in (size_h, *shape_w))
    return (
        rf"The Jacobian $\partial {dh} / \partial {weight}$ of the second form has three indices: it holds the"
        rf" ${count}$ numbers"
        rf" $\partial {entry} / \partial {W_jk}$, and the product"
        rf" $(\partial {n.E} / \partial {dh})\, (\partial {dh} / \partial {weight})$ sums over $i$, the index of"
        rf" ${dh}$, which leaves ${written(shape_w)}$, the shape of ${weight}$."
    )


def _under(factor: str, shape) -> str:
    """``factor`` with its shape set under it (seed 001's habit)."""
    return rf"\underbrace{{{factor}}}_{{{written(shape)}}}"


def path_factor_shapes(n: Notation, derivation) -> str:
    """One term of the recurrent weight's sum over paths (the compact form's), the shape of each factor under it.

    A Jacobian ``da/db`` is (entries of a) x (entries of b) in either notation; the last factor,
    ``d+h_k/dW``, has three indices, and the product sums over the index of ``h_k``.
    """
    graph = derivation.graph
    name = graph.network.recurrent_weight.name
    weight = n.latex(graph.params[name])
    steps = _first_steps(graph.nodes)
    (n_h,) = (d for d in steps["h"].shape if d != A.B)
    (n_y,) = (d for d in steps["yhat"].shape if d != A.B)
    shape_w = dims(n, graph.network.params[name].math())
    t = "T" if derivation.spec.mapping == "many-to-one" else "t"
    h, E = (lambda j: n.step("h", j)), n.loss(t)  # noqa: E731
    factors = [
        _under(n.partial(E, n.step("yhat", t)), (1, n_y)),
        _under(n.partial(n.step("yhat", t), h(t)), (n_y, n_h)),
        _under(rf"\prod_{{j=k+1}}^{{{t}}} {n.partial(h('j'), h('j-1'))}", (n_h, n_h)),
        _under(n.partial("^{+} " + h("k"), weight), (n_h, *shape_w)),
    ]
    return r"\, ".join(factors) + rf" \;\to\; {written(shape_w)}"


def gradient_factor_shapes(n: Notation, derivation) -> tuple | None:
    """``(name, line)``: the first recurrent weight's gradient as a sum over steps of one product, the shape
    of each factor under it (``delta_t`` n_h x 1 times ``h_{t-1}^T`` 1 x n_h); None where its term is no
    single product repeated step by step (a stacked matrix's blocks, a truncated or masked sum)."""
    from rnngen.document import sum_over_steps  # document.py imports this module
    from rnngen.program import gradient_symbol

    graph = derivation.graph
    name = graph.network.recurrent_weight.name
    if graph.network.params[name].blocks:
        return None
    expr = derivation.gradients[name]
    terms = list(expr.args) if isinstance(expr, sp.MatAdd) else [expr]
    term = sum_over_steps(terms) if len(terms) == derivation.spec.T else None
    if not isinstance(term, sp.MatMul) or term.as_coeff_matrices()[0] != 1:
        return None
    factors = r"\, ".join(_under(n.latex(f), dims(n, f)) for f in term.args)
    target = n.latex(gradient_symbol(graph.params[name]))
    return name, rf"{target} = \sum_{{t=1}}^{{T}} {factors}"


#: The text width in points (6.5in), the space between two tables side by side (\\qquad at 11pt), and the
#: space around a table's two columns (\\tabcolsep on each side of each), in points.
TEXT_WIDTH = 6.5 * 72.27
_QQUAD = 2 * 10.95
_COLUMN_SPACE = 4 * 6.0
#: The headings' width: no column is narrower than its heading ("shape", "symbols").
_HEADING = 35.0


def cell_width(cell: str) -> float:
    """How wide a cell of the table of shapes sets: its formulas (``$...$``) and the comma and space between."""
    return sum(width(m, TEXT) + 4.0 for m in re.findall(r"\$([^$]*)\$", cell))


def side_by_side(rows: list) -> list:
    """The table of shapes as the tables it is set in: two side by side (the first half of the rows on the
    left), which halves its height so that it can stand whole under the legend, when both fit the text
    width; else one."""
    if len(rows) < 6:
        return [rows]
    half = (len(rows) + 1) // 2
    parts = [rows[:half], rows[half:]]
    need = _QQUAD + sum(
        max(_HEADING, *(cell_width(a) for a, _ in part))
        + max(_HEADING, *(cell_width(b) for _, b in part))
        + _COLUMN_SPACE
        for part in parts
    )
    # The widths are estimates (texwidth): a GRU's row-notation deltas, \delta^{{a_{r}},t}, set 5 % wider than
    # estimated and ran 20 pt over at 465 of 470 pt; so the halves go side by side below 93 % of the width.
    return parts if need <= 0.93 * TEXT_WIDTH else [rows]
