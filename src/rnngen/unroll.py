"""The computational graph of the network unrolled for T steps: one generic loop.

Every value is a named SymPy MatrixSymbol of symbolic size, defined by one matrix expression over
parameters, inputs and earlier nodes. ``unroll`` walks the network's chains (``network.network``:
layer by layer, each direction, each step in the chain's own order) and asks the chain's cell for
its step equations (``cells``); then the output layer reads the top layer's states. Nothing here
knows the Elman equations. Per-step values are ``Step`` symbols of typed families (``families``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen.cells import held_last, keep
from rnngen.families import FAMILIES, Family, Step, adjoint_name, step_name  # noqa: F401 (re-exported)
from rnngen.network import Network, n_h, n_x, n_y, network

if TYPE_CHECKING:  # spec reads the family table (names.py), so it cannot be imported here
    from rnngen.spec import RNNSpec

SIZES = {"n_x": n_x, "n_h": n_h, "n_y": n_y}
X, Y, M = Family("x"), Family("y"), Family("m")


def step(family: str, t: int, rows) -> MatrixSymbol:
    """Step ``t`` of the family whose code name is ``family`` (a family of a one-layer network)."""
    return Step.of(FAMILIES[family], t, rows)


@dataclass(frozen=True)
class Node:
    """One named value of the graph: ``symbol := expr``; ``family`` is the code name of its family."""

    symbol: MatrixSymbol
    expr: sp.MatrixExpr
    family: str | None = None
    t: int | None = None


@dataclass
class Graph:
    """The unrolled network: parameters, inputs and nodes in evaluation order.

    Attributes:
        spec: the spec it was built from.
        network: the network the spec describes.
        params: parameter name -> symbol, in the order the API lists them.
        inputs: family -> per-step symbols (``x`` and ``y``, steps 1..T).
        nodes: every node, in an order where definitions precede uses.
        loss: the node of the total loss ``E``.
        weights: step -> the 1 x B row each sequence's loss term at that step is weighted by (the
            step's mask, in a masked network), for the steps whose terms are weighted.
    """

    spec: RNNSpec
    network: Network
    params: dict[str, MatrixSymbol]
    inputs: dict[str, list[MatrixSymbol]]
    nodes: list[Node] = field(default_factory=list)
    weights: dict = field(default_factory=dict)

    @property
    def loss(self) -> Node:
        return self.nodes[-1]

    def weighted(self, t: int, delta):
        """``delta`` (the output's delta at step ``t``) times that step's loss weight, ``delta ∘ (1 m_t)``, where
        the step's loss term is weighted (a masked network); else ``delta`` itself."""
        if t not in self.weights:
            return delta
        return A.had(delta, A.mul(A.ones(delta.shape[0], 1), self.weights[t]))

    def add(self, node: Node) -> MatrixSymbol:
        self.nodes.append(node)
        return node.symbol


class _GraphOps:
    """The operations a cell's step is written in (``cells``), building nodes of the graph."""

    matmul = staticmethod(A.mul)
    add = staticmethod(A.add)

    def __init__(self, graph: Graph, chain, t: int, rename: dict | None = None):
        self.graph, self.chain, self.t = graph, chain, t
        self.rename = rename or {}

    def node(self, base: str, value):
        fam = self.chain.family(self.rename.get(base, base))
        return self.graph.add(Node(Step.of(fam, self.t, value.shape[0]), value, fam.key, self.t))

    @staticmethod
    def bias(b):
        return None if b is None else A.mul(b, A.ones(1, A.B))

    @staticmethod
    def act(key: str, value):
        return A.Elementwise(key, value)

    sub = staticmethod(A.sub)
    had = staticmethod(A.had)

    @staticmethod
    def complement(value):
        return A.sub(A.ones(*value.shape), value)

    @staticmethod
    def mask(m, value):
        """``(1 m) ∘ value``: the 1 x B mask repeated down the rows of ``value``."""
        return A.had(A.mul(A.ones(value.shape[0], 1), m), value)


def chain_weights(chain) -> dict:
    """Role -> the chain's weight in column math; an input weight as one block per vector read."""
    weights = {}
    for role, p in chain.params.items():
        if role.startswith("input"):  # input, input_i: U x_t, or one block per vector read
            weights[role] = [p.math(part) for part in chain.input_parts]
        else:
            weights[role] = p.math(chain.recurrent_part if role == "recurrent" else None)  # seed 002's W_h
    return weights


def candidate(base: str) -> str:
    """The family of a cell's new state before the mask picks it or the old one (``hbar`` for ``h``)."""
    return base + "bar"


def output_terms(net: Network, states: list) -> list:
    """``V h_t`` for the top layer's states at one step; ``V^f h^f_t``, ``V^b h^b_t`` for a bidirectional one."""
    V = net.output
    return [A.mul(V.math(part), h) for part, h in zip(V.parts or (None,), states)]


def unroll(spec: RNNSpec) -> Graph:
    """Build the graph of ``spec`` for its T steps. Cost and size are O(T L)."""
    net = network(spec)
    T = spec.T
    xs = {t: Step.of(X, t, n_x) for t in spec.input_steps}
    ys = [Step.of(Y, t, n_y) for t in spec.loss_steps]
    inputs = {"x": list(xs.values()), "y": ys}
    ms = {t: Step.of(M, t, 1) for t in range(1, T + 1)} if spec.masked else {}
    if ms:
        inputs["m"] = list(ms.values())
    graph = Graph(spec, net, {name: p.symbol() for name, p in net.params.items()}, inputs)
    cell = net.cell
    rename = {base: candidate(base) for base in cell.states} if ms else {}
    states = {}  # chain -> step -> state symbol (the state the layers above read)
    for chain in net.chains:
        w = chain_weights(chain)
        fams = {base: chain.family(base) for base in cell.states}
        start = chain.steps(T)[0]
        state = {}
        for base, p in chain.initials:
            node = Node(Step.of(fams[base], start, chain.size), _GraphOps.bias(p.math()), fams[base].key, start)
            state[base] = graph.add(node)
        seq = {start: state[cell.state]}
        for t in range(T, 0, -1) if chain.reverse else range(1, T + 1):
            # one-to-many: the first layer reads x_1 at step 1 only
            inputs = ([xs[t]] if t in xs else []) if chain.reads == "x" else [states[k][t] for k in chain.reads]
            new = cell.step(_GraphOps(graph, chain, t, rename), w, inputs, state, spec.hidden_key)
            if ms:  # a padded step keeps the states; the reverse sweep derives the rest
                kept = {b: keep(_GraphOps, state[b], v, ms[t]) for b, v in new.items()}
                new = {b: graph.add(Node(Step.of(fams[b], t, chain.size), v, fams[b].key, t)) for b, v in kept.items()}
            state = new
            seq[t] = new[cell.state]
        states[chain.key] = seq
    read = {c.key: states[c.key] for c in net.top}
    for c in net.top if spec.reads_last_real else ():
        if c.reverse:  # the loss reads each sequence's last real step, which a backward chain does not hold
            last = held_last(lambda t, c=c: _GraphOps(graph, c, t), states[c.key], ms, T)
            read[c.key] = {T: last}
    bias = _GraphOps.bias(net.output_bias.math() if net.output_bias else None)
    losses = []
    for t in spec.loss_steps:
        o_expr = A.add(*output_terms(net, [read[c.key][t] for c in net.top]), bias)
        o = graph.add(Node(Step.of(Family("o"), t, n_y), o_expr, "o", t))
        yhat = graph.add(Node(Step.of(Family("yhat"), t, n_y), spec.output_layer.activation(o), "yhat", t))
        if spec.masked_losses:
            graph.weights[t] = ms[t]
        losses.append(spec.loss_rule.expr(yhat, ys[len(losses)], graph.weights.get(t)))
    graph.add(Node(MatrixSymbol("E", 1, 1), A.add(*losses)))
    return graph


def parameters(spec: RNNSpec) -> tuple:
    """``(params, weights)``: name -> symbol in the API's order, and role -> the weight in column math
    of the first chain and the output layer (the roles of a network of one layer)."""
    net = network(spec)
    chain = net.chains[0]
    weights = {role: p.math() for role, p in chain.params.items()}
    weights["output"] = net.output.math()
    if net.output_bias is not None:
        weights["output_bias"] = net.output_bias.math()
    return {name: p.symbol() for name, p in net.params.items()}, weights
