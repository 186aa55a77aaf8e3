"""The computational graph of the network unrolled for T steps.

Every value is a named SymPy MatrixSymbol of symbolic size, defined by one
matrix expression over parameters, inputs and earlier nodes. Per-step values
are named ``<family>_<t>`` (``h_3``, ``yhat_2``); the ``Family`` table says how
each family is written in code, text and LaTeX, so every printer spells a
quantity the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen.spec import RNNSpec

n_x, n_h, n_y = sp.symbols("n_x n_h n_y", integer=True, positive=True)
SIZES = {"n_x": n_x, "n_h": n_h, "n_y": n_y}


@dataclass(frozen=True)
class Family:
    """How a per-step quantity (and its time-stacked form) is written.

    Attributes:
        latex: LaTeX of one step, with ``{t}`` for the step.
        stacked_latex: LaTeX of the steps ``{lo}..{hi}`` side by side.
        text: plain-text name of one step (``{t}`` for the step).
        stacked_text: plain-text name of the stacked steps.
    """

    latex: str
    stacked_latex: str
    text: str
    stacked_text: str


def _family(core: str, stacked: str, text: str, stacked_text: str) -> Family:
    """A family whose step ``t`` is ``core`` with subscript ``t``."""
    return Family(core + "_{{{t}}}", stacked + "_{{{lo}:{hi}}}", text + "_{t}", stacked_text + "[{lo}..{hi}]")


_BASE = {  # input, target, pre-activation, hidden state, output pre-activation, prediction
    "x": _family("x", "X", "x", "X"),
    "y": _family("y", "Y", "y", "Y"),
    "z": _family("z", "Z", "z", "Z"),
    "h": _family("h", "H", "h", "H"),
    "o": _family("o", "O", "o", "O"),
    "yhat": _family(r"\hat{{y}}", r"\hat{{Y}}", "ŷ", "Ŷ"),
}
FAMILIES: dict[str, Family] = dict(_BASE)
# The adjoint of family f is delta^f (Delta^f when stacked): one rule for all.
for _name, _fam in _BASE.items():
    _core = _fam.latex[: -len("_{{{t}}}")]
    _text = _fam.text[: -len("_{t}")]
    FAMILIES["d" + _name] = _family(
        r"\delta^{{" + _core + "}}",
        r"\Delta^{{" + _core + "}}",
        "δ" + _text,
        "Δ" + _text,
    )
# The parts that hoist_non_recurrent splits off: U x_t + b, and V^T delta^o_t.
FAMILIES["pre_z"] = _family(r"\tilde{{z}}", r"\tilde{{Z}}", "z̃", "Z̃")
FAMILIES["pre_dh"] = _family(r"\tilde{{\delta}}^{{h}}", r"\tilde{{\Delta}}^{{h}}", "δ̃h", "Δ̃h")


def step_name(family: str, t: int) -> str:
    return f"{family}_{t}"


def parse_step(name: str):
    """``"yhat_3" -> ("yhat", 3)``; None when the name is not a per-step name."""
    family, _, t = name.rpartition("_")
    if family in FAMILIES and t.isdigit():
        return family, int(t)
    return None


@dataclass(frozen=True)
class Node:
    """One named value of the graph: ``symbol := expr``."""

    symbol: MatrixSymbol
    expr: sp.MatrixExpr
    family: str | None = None
    t: int | None = None


@dataclass
class Graph:
    """The unrolled network: parameters, inputs and nodes in evaluation order.

    Attributes:
        spec: the spec it was built from.
        params: parameter name -> symbol, in the order the API lists them.
        inputs: family -> per-step symbols (``x`` and ``y``, steps 1..T).
        nodes: every node, in an order where definitions precede uses.
        loss: the node of the total loss ``E``.
    """

    spec: RNNSpec
    params: dict[str, MatrixSymbol]
    inputs: dict[str, list[MatrixSymbol]]
    nodes: list[Node] = field(default_factory=list)

    @property
    def loss(self) -> Node:
        return self.nodes[-1]

    def add(self, node: Node) -> MatrixSymbol:
        self.nodes.append(node)
        return node.symbol


def step(family: str, t: int, rows) -> MatrixSymbol:
    return MatrixSymbol(step_name(family, t), rows, A.B)


def unroll(spec: RNNSpec) -> Graph:
    """Build the graph of ``spec`` for its T steps. Cost and size are O(T)."""
    params = {
        "U": MatrixSymbol("U", n_h, n_x),
        "W": MatrixSymbol("W", n_h, n_h),
        "V": MatrixSymbol("V", n_y, n_h),
        "b": MatrixSymbol("b", n_h, 1),
        "c": MatrixSymbol("c", n_y, 1),
        "h0": MatrixSymbol("h0", n_h, 1),
    }
    U, W, V, b, c, h0 = params.values()
    T = spec.T
    xs = [step("x", t, n_x) for t in range(1, T + 1)]
    ys = [step("y", t, n_y) for t in range(1, T + 1)]
    graph = Graph(spec, params, {"x": xs, "y": ys})
    out = spec.output_loss
    broadcast = A.ones(1, A.B)  # repeats a column vector for every sequence of the batch

    h = graph.add(Node(step("h", 0, n_h), A.mul(h0, broadcast), "h", 0))
    losses = []
    for t in range(1, T + 1):
        z_expr = A.add(A.mul(U, xs[t - 1]), A.mul(W, h), A.mul(b, broadcast))
        z = graph.add(Node(step("z", t, n_h), z_expr, "z", t))
        h = graph.add(Node(step("h", t, n_h), A.Elementwise(spec.hidden, z), "h", t))
        o = graph.add(Node(step("o", t, n_y), A.add(A.mul(V, h), A.mul(c, broadcast)), "o", t))
        yhat = graph.add(Node(step("yhat", t, n_y), out.activation(o), "yhat", t))
        losses.append(out.loss_expr(yhat, ys[t - 1]))
    graph.add(Node(MatrixSymbol("E", 1, 1), A.add(*losses)))
    return graph
