"""The derivation document of a network with several chains (layers, directions) or seed 002's
stacked matrix: the context of ``network.tex.jinja``.

The one-layer document (``document.py``) derives every gradient three ways; for these networks the
document gives the forward pass of each chain, the delta recursion as the reverse sweep produced it
(at a generic step and at its ends), every gradient as a sum over steps, and the formulas the
module runs. Every equation comes from the derivation itself, printed in the reader's notation.
"""

from __future__ import annotations

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.backprop import Derivation
from rnngen.document import Notation, Numbering, _gradient_sums, aligned, forward_families, generic
from rnngen.program import state_key

_ROLES = {
    "input": "input weights",
    "recurrent": "recurrent weights",
    "stacked": "the weights on the stacked vector",
    "hidden_bias": "hidden bias",
    "initial": "initial state (zeros by default)",
    "output": "output weights",
    "output_bias": "output bias",
}


def _where(chain) -> str:
    layer = f"layer {chain.layer}" if chain.tag_layer else "the hidden layer"
    return layer + {"": "", "f": ", forward chain", "b": ", backward chain"}[chain.direction]


def _legend(n: Notation, derivation: Derivation) -> list:
    net = derivation.graph.network
    rows = [(f"${n.step('x', 't')},\\ {n.step('y', 't')}$", "input and target at step $t$")]
    for chain in net.chains:
        z, h = (n.step(base + chain.suffix, "t") for base in ("z", "h"))
        rows.append((f"${z},\\ {h}$", f"pre-activation and state of {_where(chain)}"))
    rows.append((f"${n.step('o', 't')},\\ {n.step('yhat', 't')}$", "output pre-activation and prediction"))
    for name, p in net.params.items():
        shape = " \\times ".join(str(d) for d in p.symbol().shape if d != 1)
        where = f" of {_where(net.chain(p.chain))}" if p.chain else ""
        blocks = ""
        if p.blocks:
            parts = ", ".join(f"${n.latex(p.block(part))}$" for part in p.parts)
            blocks = f"; its blocks {parts}"
        rows.append((f"${n.latex(derivation.graph.params[name])}$", f"{_ROLES[p.role]}{where}, ${shape}${blocks}"))
    rows.append(
        (f"${n.step('dh', 't')}$", f"$\\partial E / \\partial {n.step('h', 't')}$, the gradient of the loss at a value")
    )
    rows.append(("$\\odot$", "entrywise product"))
    rows.append(("$\\mathbf{1}$", "a vector of ones; a product with it sums entries"))
    hidden = elementwise(derivation.spec.hidden_key)
    if hidden.definition:
        rows.append((f"${hidden.definition}$", "the hidden activation"))
    return rows


def _inner_step(nodes, key: str, T: int) -> int:
    """A step of ``key`` away from both ends where there is one (its generic form), else its last."""
    steps = sorted(node.t for node in nodes if node.family == key and node.t is not None)
    inner = [t for t in steps if 1 < t < T]
    return inner[len(inner) // 2] if inner else steps[-1]


def _sweep(n: Notation, derivation: Derivation) -> list:
    """The adjoint equations: each family's at a generic step, then its boundary steps as they stand."""
    T = derivation.spec.T
    adj = derivation.adjoints
    keys = []
    for node in adj:
        if node.family and node.family not in keys:
            keys.append(node.family)
    lines = []
    for key in keys:
        t = _inner_step(adj, key, T)
        lines.append(aligned(generic(n, adj, key, t)) + (rf", \quad t = {t} \text{{ and like it}}" if T > 2 else ""))
        for node in adj:
            if node.family == key and node.t in (0, T + 1):
                lines.append(aligned(f"{n.latex(node.symbol)} = {n.latex(node.expr)}"))
    return lines


def network_context(derivation: Derivation, formulas: list, numbering: Numbering, common: dict) -> dict:
    """Everything ``network.tex.jinja`` lays out."""
    spec = derivation.spec
    n = Notation(spec)
    graph = derivation.graph
    net = graph.network
    chains = []
    for chain in net.chains:
        keys = [k for k in forward_families(graph) if k in (f"z{chain.suffix}", state_key(chain))]
        start = spec.T + 1 if chain.reverse else 0
        chains.append(
            dict(
                where=_where(chain),
                steps="t = T, \\dots, 1" if chain.reverse else "t = 1, \\dots, T",
                start=f"{n.step(state_key(chain), start)} = {n.latex(A.mul(chain.params['initial'].symbol()))}",
                lines=[aligned(generic(n, graph.nodes, k, spec.T)) for k in keys],
            )
        )
    output = [aligned(generic(n, graph.nodes, k, spec.T)) for k in ("o", "yhat")]
    loss = spec.loss_rule
    return dict(
        **common,
        row=n.row,
        layers=net.layers,
        bidirectional=spec.bidirectional,
        stacked=spec.notation == "stacked",
        many_to_one=spec.mapping == "many-to-one",
        legend=_legend(n, derivation),
        chains=chains,
        output_lines=output,
        E_t=n.indexed("E", "t"),
        loss_latex=loss.latex.format(yhat_i=n.entry(r"\hat{y}", "t"), y_i=n.entry("y", "t")),
        sweep=_sweep(n, derivation),
        gradients=_gradient_sums(n, derivation),
        formulas=[f for f in formulas if not f.trivial],
        eq=numbering.tag,
        step=n.step,
    )


def is_single_chain(spec) -> bool:
    """True for the networks ``document.py`` derives three ways: one layer, one direction, U and W apart."""
    return spec.layers == 1 and not spec.bidirectional and spec.notation in ("column", "row")
