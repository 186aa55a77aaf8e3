"""The computational graph of the network unrolled for T steps.

Every value is a named SymPy MatrixSymbol of symbolic size, defined by one
matrix expression over parameters, inputs and earlier nodes. Per-step values
are named ``<family>_<t>`` (``h_3``, ``yhat_2``); the ``Family`` table says how
each family is written in code, text and LaTeX, so every printer spells a
quantity the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp
from sympy import MatrixSymbol, Transpose

from rnngen import algebra as A

if TYPE_CHECKING:  # spec reads the family table (names.py), so it cannot be imported here
    from rnngen.spec import RNNSpec

n_x, n_h, n_y = sp.symbols("n_x n_h n_y", integer=True, positive=True)
SIZES = {"n_x": n_x, "n_h": n_h, "n_y": n_y}


@dataclass(frozen=True)
class Family:
    """How a per-step quantity (and its time-stacked form) is written; the printers add the step.

    Attributes:
        latex: LaTeX letter of one step (``h``, ``\\hat{y}``).
        stacked_latex: LaTeX letter of steps side by side (``H``).
        text: plain-text letter of one step.
        stacked_text: plain-text letter of the stacked steps.
        delta: for an adjoint family, the LaTeX delta it is written with (``\\delta``), else "".
        stacked_delta: the same for stacked steps (``\\Delta``).
        jacobian: the family that holds this family's local Jacobian, the elementwise derivative
            of the activation that reads it (``fprime`` for ``z``, as ``h = f(z)``); its adjoint
            has the same, so every recurrence's derivative factor is a value of its own.
    """

    latex: str
    stacked_latex: str
    text: str
    stacked_text: str
    delta: str = ""
    stacked_delta: str = ""
    jacobian: str = ""


_BASE = {  # input, target, pre-activation, hidden state, output pre-activation, prediction
    "x": Family("x", "X", "x", "X"),
    "y": Family("y", "Y", "y", "Y"),
    "z": Family("z", "Z", "z", "Z", jacobian="fprime"),
    "h": Family("h", "H", "h", "H"),
    "o": Family("o", "O", "o", "O", jacobian="gprime"),
    "yhat": Family(r"\hat{y}", r"\hat{Y}", "ŷ", "Ŷ"),
}


def adjoint_name(name: str) -> str:
    """The name of the adjoint dE/dv of a value or family named ``v``: ``dv`` (one rule, here)."""
    return "d" + name


FAMILIES: dict[str, Family] = dict(_BASE)
# The adjoint of family f is delta^f (Delta^f when stacked), and the part of a step that
# hoist_non_recurrent splits off (U x_t + b, V^T delta^o_t) is pre_f, a tilde: one rule for all.
for _name, _fam in _BASE.items():
    FAMILIES[adjoint_name(_name)] = Family(
        _fam.latex, _fam.latex, "δ" + _fam.text, "Δ" + _fam.text, r"\delta", r"\Delta", jacobian=_fam.jacobian
    )
    FAMILIES["pre_" + _name] = Family(
        rf"\tilde{{{_fam.latex}}}",
        rf"\tilde{{{_fam.stacked_latex}}}",
        _fam.text + "\u0303",
        _fam.stacked_text + "\u0303",
    )
    FAMILIES["pre_d" + _name] = Family(
        _fam.latex, _fam.latex, "δ̃" + _fam.text, "Δ̃" + _fam.text, r"\tilde{\delta}", r"\tilde{\Delta}"
    )
# The local Jacobians f'(z_t) and g'(o_t) that hoist_local_jacobians computes for all steps before the
# backward sweep: one family per activation, so two recurrences never write the same value.
FAMILIES["fprime"] = Family("{f'}", "{F'}", "f′", "F′")
FAMILIES["gprime"] = Family("{g'}", "{G'}", "g′", "G′")


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


#: Shape of each weight in column notation (rows, columns).
_WEIGHT_SHAPES = {"input": (n_h, n_x), "recurrent": (n_h, n_h), "output": (n_y, n_h)}


def parameters(spec: RNNSpec) -> tuple:
    """``(params, weights)``: name -> symbol in the API's order, and role -> the weight in column math.

    In row notation a weight is stored transposed (``x^t W`` multiplies by
    ``W`` with ``n_x`` rows), so the column math reads it as ``W^T``; the
    derivation then yields the gradient of ``W`` itself, in ``W``'s shape.
    """
    params, weights = {}, {}
    for role, name in spec.role_names.items():
        if role in _WEIGHT_SHAPES:
            rows, cols = _WEIGHT_SHAPES[role]
            if spec.notation == "row":
                params[name] = MatrixSymbol(name, cols, rows)
                weights[role] = Transpose(params[name])
            else:
                params[name] = weights[role] = MatrixSymbol(name, rows, cols)
        else:
            size = n_y if role == "output_bias" else n_h
            params[name] = weights[role] = MatrixSymbol(name, size, 1)
    return params, weights


def unroll(spec: RNNSpec) -> Graph:
    """Build the graph of ``spec`` for its T steps. Cost and size are O(T)."""
    params, w = parameters(spec)
    T = spec.T
    xs = [step("x", t, n_x) for t in range(1, T + 1)]
    ys = [step("y", t, n_y) for t in spec.loss_steps]
    graph = Graph(spec, params, {"x": xs, "y": ys})
    broadcast = A.ones(1, A.B)  # repeats a column vector for every sequence of the batch

    def bias(role):
        return A.mul(w[role], broadcast) if role in w else None

    h = graph.add(Node(step("h", 0, n_h), A.mul(w["initial"], broadcast), "h", 0))
    losses = []
    for t in range(1, T + 1):
        z_expr = A.add(A.mul(w["input"], xs[t - 1]), A.mul(w["recurrent"], h), bias("hidden_bias"))
        z = graph.add(Node(step("z", t, n_h), z_expr, "z", t))
        h = graph.add(Node(step("h", t, n_h), A.Elementwise(spec.hidden_key, z), "h", t))
        if t not in spec.loss_steps:
            continue
        o = graph.add(Node(step("o", t, n_y), A.add(A.mul(w["output"], h), bias("output_bias")), "o", t))
        yhat = graph.add(Node(step("yhat", t, n_y), spec.output_layer.activation(o), "yhat", t))
        losses.append(spec.loss_rule.expr(yhat, ys[len(losses)]))
    graph.add(Node(MatrixSymbol("E", 1, 1), A.add(*losses)))
    return graph
