"""The derivation document of a network with several chains (layers, directions) or seed 002's
stacked matrix: the context of ``network.tex.jinja``.

The one-layer document (``document.py``) derives every gradient three ways; for these networks the
document gives the forward pass of each chain, the delta recursion as the reverse sweep produced it
(each chain's sweep in its own order, every term of a state's delta labelled with the value it came
through), every gradient as a sum over steps, and the formulas the module runs. Every equation comes
from the derivation itself, printed in the reader's notation. A matrix whose column blocks multiply
vectors stacked on top of each other (``V [h^f_t; h^b_t]``, ``W [h_{t-1}; x_t]``) is shown both
ways: block by block, as the derivation has it, and as one matrix on the stacked vector.
"""

from __future__ import annotations

from dataclasses import replace

from sympy import HadamardProduct, MatAdd, MatMul, Transpose

from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.backprop import Derivation
from rnngen.cells import GATE_NAMES
from rnngen.document import (
    Notation,
    Numbering,
    _unwrapped,
    aligned,
    broken,
    closed_output,
    code_output,
    forward_families,
    gamma_sup,
    immediate_and_total,
    keeps_slopes,
    loss_row,
    output_row,
    sum_over_steps,
    truncation_context,
)
from rnngen.families import (
    AGE,
    STATE_LETTERS,
    Family,
    Relative,
    Step,
    adjoint_name,
    family,
    relative_of,
    run_of,
    step_of,
    tag_latex,
)
from rnngen.gate_document import gate_context
from rnngen.network import Block
from rnngen.network import size as size_symbol
from rnngen.printing.math import param_latex
from rnngen.program import gradient_symbol, relative, state_key, step_template
from rnngen.shapes import TEXT_WIDTH, cell_width, gradient_factor_shapes, shape_rows, side_by_side, size
from rnngen.texwidth import DISPLAY, width
from rnngen.unroll import candidate

_ROLES = {
    "input": "input weights",
    "recurrent": "recurrent weights",
    "stacked": "stacked-vector weights",
    "hidden_bias": "bias",
    "initial": "initial state",
    "initial_cell": "initial memory cell",
    "output": "output weights",
    "output_bias": "output bias",
}
_DIRECTION = {"": "", "f": "forward chain", "b": "backward chain"}


def _where(chain) -> str:
    layer = f"layer {chain.layer}" if chain.tag_layer else "the hidden layer"
    return layer + (", " + _DIRECTION[chain.direction] if chain.direction else "")


def sizes_row(hidden: tuple = ("n_{h}",), states: str = "the state") -> tuple:
    """The legend's row of the sizes the shapes and the worked example write: ``hidden``, the states' sizes
    (a layered network's ``n_{h1}``, ``n_{h2}``), and ``states``, which states they are the sizes of."""
    symbols = ",\\ ".join(("n_{x}", *hidden, "n_{y}"))
    return (f"${symbols}$", f"the sizes of the input, {states} and the output")


def _legend(n: Notation, derivation: Derivation, equations: str = "", shapes: tuple = ()) -> list:
    """The legend's rows; ``equations``: the text of the numbered equations and ``shapes``: the shapes
    table's rows, so that an operator or a symbol they write (``\\oslash``, ``X_{1:T}``) is listed."""
    net = derivation.graph.network
    rows = [(f"${n.step('x', 't')},\\ {n.step('y', 't')}$", "input and target at step $t$")]
    inputs = n.printer.step("x", 1, "T")  # the inputs side by side, which the shapes table lists
    if any(inputs in symbols for _, symbols in shapes):
        rows.append((f"${inputs}$", f"the inputs ${n.step('x', 1)}, \\dots, {n.printer.step('x', 'T')}$ side by side"))
    tags = []  # what a tag beside a symbol says
    if net.layers > 1:
        tags.append(("(l)", "layer $l$"))
    if len(net.directions) > 1:
        tags.append((r"(\mathrm{f}),\ (\mathrm{b})", "the forward and the backward chain"))
    if tags:
        symbols = r",\ ".join(tag for tag, _ in tags)
        rows.append((f"${symbols}$", "beside a symbol: " + "; ".join(meaning for _, meaning in tags)))
    graph = derivation.graph
    if net.cell.gated:  # each letter of the step once, for every chain (its tag beside it)
        first = [family(k) for k in forward_families(graph) if _of_chain(family(k), net.chains[0])]
        # without a chain's tag: the tag row says it
        rows += _gate_legend(n, [Family(f.base) for f in first], net.layers)
    for chain in net.chains if not net.cell.gated else ():
        z, h = (n.step(base + chain.suffix, "t") for base in ("z", "h"))
        rows.append((f"${z},\\ {h}$", f"pre-activation and state of {_where(chain)}"))
    if derivation.spec.masked:
        bars = [n.step(candidate(state) + net.chains[-1].suffix, "t") for state in net.cell.states]
        rows.append((f"${n.step('m', 't')}$", "the mask: 1 on a real step, 0 on a padded one"))
        states = "state" if len(bars) == 1 else "states"
        rows.append(("$" + r",\ ".join(bars) + "$", f"the cell's new {states}, which a padded step does not take"))
    if _D_chains(n, derivation):  # the delta recursion's hidden Jacobians
        rows.append(_D_row(n, derivation))
    for chain in net.top if derivation.spec.reads_last_real else ():
        if chain.reverse:
            held = n.step(chain.family("hlast").key, "t")
            rows.append((f"${held}$", f"the state of {_where(chain)} at the latest real step up to $t$"))
    output = "output pre-activation" + (" (the scores)" if net.cell.gated else "")  # o may be a gate's letter
    rows.append(output_row(n, output))
    rows.append(loss_row(n))
    for name, p in net.params.items():
        shape = " \\times ".join(size(d) for d in p.symbol().shape if d != 1)
        where = f" of {_where(net.chain(p.chain))}" if p.chain else ""
        symbol = n.latex(derivation.graph.params[name])
        kind = p.role if p.state in ("", "h") else f"{p.role}_{p.state}"  # an initial state: which it starts
        role = _ROLES[kind] + (f" of the {GATE_NAMES[p.gate]}" if p.gate else "")
        rows.append((f"${symbol}$", f"{role}{where}, ${shape}$"))
        if p.blocks:
            parts = ",\\ ".join(n.latex(p.block(part)) for part in p.parts)
            rows.append(("", f"its {'row' if p.row else 'column'} blocks, in order: ${parts}$"))
    if net.layers == 1:
        rows.append(sizes_row(states="each state" if len(net.chains) > 1 or net.cell.gated else "the state"))
    else:
        layers = ", ".join(str(layer) for layer in range(1, net.layers)) + f" and {net.layers}"
        hidden = tuple(size(size_symbol(f"n_h{layer}")) for layer in range(1, net.layers + 1))
        rows.append(sizes_row(hidden, f"the states of layers {layers}"))
    h, dh = (n.step(key + net.chains[-1].suffix, "t") for key in ("h", "dh"))
    tau = derivation.spec.truncate
    present = {node.family for node in derivation.adjoints}
    if tau is None and len(net.chains) > 1:  # every chain's deltas, a row each, not one chain's and "alike"
        for chain in net.chains:
            keys = [k for k in (chain.family(b, "adjoint").key for b in ("h", "z")) if k in present]
            values = " and ".join(f"${n.step(family(k).value.key, 't')}$" for k in keys)
            deltas = r",\ ".join(n.step(k, "t") for k in keys)
            said = "the gradients" if len(keys) > 1 else "the gradient"
            rows.append((f"${deltas}$", f"{said} of the loss with respect to {values} (a delta each)"))
    elif tau is None:
        rows.append(
            (f"${dh}$", f"$\\partial E / \\partial {h}$, the gradient of the loss with respect to ${h}$ (a delta)")
        )
    else:  # not the derivative: its part over the kept paths (Section on truncated BPTT)
        dh_a = n.aged_step(net.chains[-1].family("h", "adjoint").key, AGE, "t")
        rows.append((f"${dh}$", f"the part of $\\partial E / \\partial {h}$ that the truncation keeps (a delta)"))
        crossed = f"its part whose paths crossed ${AGE}$ recurrent edges, its age ${AGE} \\le {tau - 1}$"
        rows.append((f"${dh_a}$", crossed))
        rows.append((r"$\tau$", f"the truncation horizon, {tau}: see the section on truncated BPTT before the deltas"))
    others = [n.step(key, "t") for key in _other_deltas(derivation, each_chain=tau is None)]
    rows.append(
        ("$" + r",\ ".join(others) + "$", "the deltas of the other values, alike (each the gradient of the loss)")
    )
    if immediate_and_total(n, derivation):  # the paragraph on the immediate derivative writes it with a plus
        rows.append((r"$\partial^{+}$", "the immediate derivative: the earlier states held fixed"))
    if net.cell.gated or _D_chains(n, derivation):  # the gates' Jacobians and the Elman bound; D_t's entries
        rows.append((r"$\operatorname{diag}(v)$", "the diagonal matrix with the entries of $v$ on its diagonal"))
    if net.cell.gated:  # the section on what the gates do compares with an Elman cell's D_t
        elman = "the plain RNN's hidden Jacobian, a diagonal matrix (the section on the gates)"
        rows.append((f"${n.D('t')}$", elman))
        rows.append((r"$\gamma$", f"the hidden activation's largest slope, ${gamma_sup(n)}$"))
    if r"\delta_{ij}" in equations:  # the output delta's closed form, derived entry by entry
        rows.append((r"$I,\ \delta_{ij}$", "the identity matrix, and its entries (1 where $i = j$, else 0)"))
    rows.append(("$\\odot$", "entrywise product"))
    if r"\oslash" in equations:
        rows.append((r"$\oslash$", "entrywise division"))
    rows.append(("$\\mathbf{1}$", "a vector of ones; a product with it sums entries"))
    hidden = elementwise(derivation.spec.hidden_key)
    if hidden.definition:
        rows.append((f"${hidden.definition}$", "the hidden activation"))
    return rows


def _D_row(n: Notation, derivation: Derivation) -> tuple:
    """The legend's row of the hidden Jacobians: ``D_t``; with a chain's tag where there are several
    (``D^{(l)}_t`` of layer l, ``D^{(\\mathrm{f})}_t`` and ``D^{(\\mathrm{b})}_t``), as the states carry it."""
    net = derivation.graph.network
    new = "hbar" if derivation.spec.masked else "h"  # under a mask: the cell's new state, before the mask
    if len(net.chains) == 1:
        chain = net.chains[0]
        h, z = (n.step(chain.family(base).key, "t") for base in (new, "z"))
        meaning = f"${n.partial(h, z)}$, the hidden activation's Jacobian: a diagonal matrix"
        return f"${n.D('t', chain.family('h').tag_latex)}$", meaning
    layer = "l" if net.layers > 1 else ""
    symbols = r",\ ".join(n.D("t", tag_latex(layer, d)) for d in net.directions)
    h = r"\bar{h}" if derivation.spec.masked else "h"
    return (
        f"${symbols}$",
        f"the hidden activation's Jacobian $\\partial {h} / \\partial z$ at step $t$, in the chain its tag "
        "names: a diagonal matrix",
    )


def _D_chains(n: Notation, derivation: Derivation) -> dict:
    """Each chain's ``D_t`` (``D^{(2)}_t``) that the delta recursion multiplies by, in the sweep's order,
    and its size; none in a gated cell's document, or where the hidden activation is the identity."""
    if derivation.graph.network.cell.gated:
        return {}
    through = [node for node in derivation.adjoints if node.family and _through_D(n, node.family, node.expr, node.t)]
    return {chain_D(n, node.family, "t"): node.symbol.shape[0] for node in through}  # one size per chain


def _slopes_of_D(n: Notation, derivation: Derivation, formulas: list) -> dict | None:
    """How the code's slope arrays of a chain (``f'_t``, ``F'_{1:T}``) hold its ``D_t``'s diagonals, for
    the appendix (the first chain's; the others' alike, with their tags); None without them."""
    net = derivation.graph.network
    if not keeps_slopes(formulas) or not _D_chains(n, derivation):
        return None
    chain, T = net.chains[0], derivation.spec.T
    fprime = chain.family("fprime").key
    return dict(
        step=n.step(fprime, "t"),
        stacked=n.printer.step(fprime, 1, T),
        D=n.D("t", chain.family("h").tag_latex),
        first=n.D(1, chain.family("h").tag_latex),
        last=n.D(T, chain.family("h").tag_latex),
        several=len(net.chains) > 1,
    )


def _other_deltas(derivation: Derivation, each_chain: bool = False) -> list:
    """The adjoint families beside the states' that the legend names, at a generic step: every chain's
    pre-activation's (an Elman cell's ``z``) unless ``each_chain`` rows name them with their states (several
    chains), the output's pre-activation and prediction (``o``, ``yhat``)."""
    net = derivation.graph.network
    apart = each_chain and len(net.chains) > 1
    keys = [] if net.cell.gated or apart else [chain.family("z", "adjoint").key for chain in net.chains]
    keys += ["do", "dyhat"]
    present = {node.family for node in derivation.adjoints}
    return [key for key in keys if key in present]


#: What each value of a gated cell's step is, by its base (the gates' own: ``cells.GATE_NAMES``).
_GATED_VALUES = {
    "cell": "the memory cell",
    "cact": "the memory cell's activation, which the output gate scales",
    "zhn": "the candidate's recurrent part, which the reset gate scales",
    "h": "the state, which the next step and the output layer read",
}
#: The state's row in a network of several layers, where the layer above reads it (the top layer's: the output).
_STACKED_STATE = "the state, which the next step and the layer above (above the top layer: the output layer) read"


def _gate_legend(n: Notation, families: list, layers: int) -> list:
    """The rows of a gated cell's step: its gates in the order most libraries use (PyTorch's), their
    pre-activations (a with the gate's letter below, whatever the gate's own letter is: the GRU's update
    gate is z), the other values."""
    gates = [f for f in families if f.base.startswith("g") and f.base[1:] in GATE_NAMES]
    pres = [f for f in families if f.base.startswith("z") and f.base[1:] in GATE_NAMES and f.base not in _GATED_VALUES]
    names = [GATE_NAMES[f.base[1:]] for f in gates]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    rows = [
        (r"$" + r",\ ".join(n.step(f.key, "t") for f in gates) + "$", f"the {listed}, in the order most libraries use"),
        (
            r"$" + r",\ \dots,\ ".join(n.step(f.key, "t") for f in (pres[0], pres[-1])) + "$",
            "their pre-activations: $a$ with the gate's letter below",
        ),
    ]
    meaning = dict(_GATED_VALUES, h=_STACKED_STATE) if layers > 1 else _GATED_VALUES
    rows += [(f"${n.step(f.key, 't')}$", meaning[f.base]) for f in families if f.base in _GATED_VALUES]
    rows.append((r"$\sigma$", r"the gates' activation, the logistic sigmoid $1 / (1 + e^{-a})$"))
    return rows


# --- blocks: a matrix on a stacked vector -------------------------------------------------------


def _block_of(factor):
    """The block a factor of a product is (column math: the block, or its transpose in row notation)."""
    if isinstance(factor, Transpose) and isinstance(factor.arg, Block):
        return factor.arg
    return factor if isinstance(factor, Block) else None


def _joined(expr, network):
    """``B_1 v_1 + B_2 v_2 + ...`` -> ``P [v_1; v_2; ...]`` for the blocks ``B_i`` of one parameter ``P``.

    The derivation multiplies each block by its own vector; this is the same sum read as one matrix
    on the stacked vector, the form seed 002 and a bidirectional output layer are written in. None
    when no parameter has all of its blocks in ``expr``.
    """
    terms = list(expr.args) if isinstance(expr, MatAdd) else [expr]
    found: dict = {}
    for term in terms:
        if isinstance(term, MatMul) and len(term.args) == 2 and _block_of(term.args[0]) is not None:
            block = _block_of(term.args[0])
            found.setdefault(block.param, {})[block.part] = (term, term.args[1])
    joined = [name for name, parts in found.items() if set(parts) == set(network.params[name].parts)]
    if not joined:
        return None
    out = []
    for term in terms:
        block = _block_of(term.args[0]) if isinstance(term, MatMul) and len(term.args) == 2 else None
        if block is None or block.param not in joined:
            out.append(term)
        elif block.part == network.params[block.param].parts[0]:
            p = network.params[block.param]
            stacked = A.Concat(0, *[found[p.name][part][1] for part in p.parts])
            out.append(MatMul(p.math(), stacked))
    return A.add(*out)


def _block_equation(n: Notation, p) -> str:
    """``V = [V^(f)  V^(b)]``: a parameter as its blocks, in the stored layout."""
    blocks = A.Concat(0 if p.row else 1, *[p.block(part) for part in p.parts])
    return f"{n.latex(p.symbol())} = {n.latex(blocks)}"


def _blocked_params(expr, network) -> list:
    """The parameters with blocks that ``expr`` reads, in the order their blocks first appear."""
    names = []
    for sym in A.symbols_in(expr):
        if isinstance(sym, Block) and sym.param not in names:
            names.append(sym.param)
    return [network.params[name] for name in names]


# --- the forward pass ----------------------------------------------------------------------------


def _generic_node(graph, key: str):
    """The node of ``key`` at a step away from both ends where there is one, and that step."""
    T = graph.spec.T
    steps = sorted(node.t for node in graph.nodes if node.family == key and node.t is not None and 1 <= node.t <= T)
    inner = [t for t in steps if 1 < t < T] or steps
    t = inner[len(inner) // 2]
    return next(node for node in graph.nodes if node.family == key and node.t == t), t


def _forward_lines(n: Notation, graph, keys, steps) -> list:
    """The forward equations of ``keys`` at a generic step; one on a stacked vector also as that.

    ``steps`` are the steps every key is computed at (1..T, or the steps with a loss for the output
    layer). Where the steps do not share one form (one-to-many: only x_1 is read), each run of
    steps with one form is written apart: a single step as it stands, a run with the steps it holds at.
    """
    lines = []
    for key in keys:
        nodes = sorted((node for node in graph.nodes if node.family == key and node.t in steps), key=lambda v: v.t)
        runs = _runs(nodes)
        if len(runs) == 1:
            node, t = _generic_node(graph, key)
            runs = [(step_template(node.expr, t), None)]
        for template, run in runs:
            if run is not None and len(run) == 1:
                lines.append(aligned(f"{n.latex(run[0].symbol)} = {n.latex(run[0].expr)}"))
                continue
            lhs = n.latex(relative(key, 0, nodes[0].symbol.shape[0]))
            note = "" if run is None else _range_note([node.t for node in run], graph.spec.T)
            joined = _joined(template, graph.network)
            if joined is not None:
                blocks = [_block_equation(n, p) for p in _blocked_params(template, graph.network)]
                lines.append(aligned(f"{lhs} = {n.latex(joined)}") + "".join(rf", \qquad {b}" for b in blocks))
            lines.append(aligned(f"{lhs} = {n.latex(template)}") + note)
    return lines


def _of_chain(fam: Family, chain) -> bool:
    """True for a family of the chain's cell (not the output layer's, which has no layer or direction)."""
    return fam.layer == chain.tag_layer and fam.direction == chain.direction and fam.base not in _OUTPUT_BASES


#: The families of the output side: the output layer's (a network of one chain has them beside its own,
#: with the same tag) and the held last-real state it reads of a backward chain, written apart (``held_lines``).
_OUTPUT_BASES = ("o", "yhat", "hlast")


def _states(values: list, one: str, several: str) -> str:
    """``the initial state $h_0$``, ``the initial states $h_0$ and $c_0$``: ``one`` or ``several`` and the values."""
    if len(values) == 1:
        return f"{one} ${values[0]}$"
    return f"{several} " + ", ".join(f"${v}$" for v in values[:-1]) + f" and ${values[-1]}$"


def _initial(n: Notation, chain, T: int) -> str:
    """The initial states of a chain, as the parameters they are (``the initial state $h_0$``)."""
    return _states([n.latex(p.symbol()) for _, p in chain.initials], "the initial state", "the initial states")


# --- the reverse sweep ----------------------------------------------------------------------------


def _step_text(t: int, T: int) -> str:
    """A step of a range, relative to T near its end (``T``, ``T-1``, ``T+1``), else its number."""
    if t > 2 and t >= T - 1:
        return "T" if t == T else f"T{t - T:+d}"
    return str(t)


def _range_note(ts: list, T: int) -> str:
    """``, \\quad t = T-1, \\dots, 1``: the steps a generic equation holds at, in the sweep's order."""
    shown = [str(t) for t in ts] if len(ts) <= 2 else [_step_text(ts[0], T), r"\dots", _step_text(ts[-1], T)]
    return rf", \quad t = {', '.join(shown)}"


def _source(fam: Family, k: int, own: Family | None = None) -> str:
    """Where a term of a state's delta comes from: ``layer 2, step t+1``, ``output, step t``.

    In a gated cell's document (``own``: the delta's family) a term names its path: ``directly`` from the
    same state at the next step, or its new value before the mask (the LSTM's memory cell through the
    forget gate, the GRU's state through the update gate); ``through the state`` from another value of
    the same step (the memory cell's activation, which the state reads).
    """
    step = "t" if k == 0 else f"t{k:+d}"
    if fam.base in ("o", "yhat"):  # the output layer's value: the prediction itself, for an identity output
        return rf"\text{{output, step }} {step}"
    if own is not None and k != 0 and fam.value in (own.value, replace(own.value, base=candidate(own.base))):
        return rf"\text{{directly, step }} {step}"
    if own is not None and k == 0 and (fam.layer, fam.direction) == (own.layer, own.direction):
        return rf"\text{{through the state, step }} {step}"
    where = f"layer {fam.layer}" if fam.layer else "this layer"
    if fam.direction:
        where = (where + ", " if fam.layer else "") + _DIRECTION[fam.direction].replace(" chain", "")
    return rf"\text{{{where}, step }} {step}"


def _labelled(n: Notation, template, own: Family | None = None) -> str:
    """A delta's terms, each under a brace that says through which value the gradient arrived.

    The terms are the derivation's own; a term names exactly one adjoint (``V^T delta^o_t``,
    ``W^T delta^z_{t+1}``), whose family and step are the label; ``own``: the delta's family, to name
    a gated cell's paths (``_source``).
    """
    terms = list(template.args) if isinstance(template, MatAdd) else [template]
    parts = []
    for term in terms:
        adjoints = [relative_of(s) for s in A.symbols_in(term) if isinstance(s, Relative)]
        adjoints = [(family(key), k) for key, k in adjoints if family(key).is_adjoint]
        if len(adjoints) != 1 or len(terms) == 1:
            return n.latex(template)
        parts.append(rf"\underbrace{{{n.latex(term)}}}_{{{_source(*adjoints[0], own)}}}")
    return " + ".join(parts)


def _runs(nodes: list) -> list:
    """Consecutive steps of one family (in sweep order) whose equations have one per-step form."""
    runs = []
    for node in nodes:
        template = step_template(node.expr, node.t)
        if runs and runs[-1][0] == template:
            runs[-1][1].append(node)
        else:
            runs.append((template, [node]))
    return runs


def _adjoint(sym) -> Family | None:
    """The adjoint family ``sym`` is one step of (``delta^h_t``, ``delta^h_{t+1}``, ``delta^h_3``), else None."""
    at = relative_of(sym) if isinstance(sym, Relative) else step_of(sym)
    fam = family(at[0]) if at else None
    return fam if fam is not None and fam.is_adjoint else None


def chain_D(n: Notation, key: str, t) -> str:
    """The hidden Jacobian of the chain of the family ``key`` at step ``t``: ``D_t``, ``D^{(2)}_t``, ``D^{(1f),t}``."""
    fam = family(key)
    return n.D(t, tag_latex(fam.layer, fam.direction))


def _through_D(n: Notation, key: str, expr, t) -> tuple | None:
    """``(delta^z_t = D_t delta^h_t, D_t's definition)`` for an Elman chain's ``delta^z`` at step ``t``.

    The derivation multiplies the state's delta entry by entry by the activation's slope
    (``delta^h_t ⊙ (1 − h_t ⊙ h_t)``); the document writes that as the product with the activation's
    Jacobian, ``D_t = dh_t/dz_t = diag(1 − h_t ⊙ h_t)`` (of the new state ``h̄_t`` where a mask keeps the
    old one), as the three-form document does. None where the equation is no such product (an
    identity activation).
    """
    fam = family(key)
    if fam.base != "z" or not isinstance(expr, HadamardProduct) or len(expr.args) != 2:
        return None
    delta = next((f for f in expr.args if _adjoint(f) is not None), None)
    slope = next((f for f in expr.args if f is not delta), None)
    if delta is None or slope is None or any(_adjoint(s) is not None for s in A.symbols_in(slope)):
        return None
    D = chain_D(n, key, t)
    value = _adjoint(delta).value.aged(None)  # the state (h̄ under a mask) the activation makes
    product = rf"{n.latex(delta)}\, {D}" if n.row else rf"{D}\, {n.latex(delta)}"
    h, z = n.step(value.key, t), n.step(fam.value.aged(None).key, t)
    definition = rf"{n.partial(h, z)} = \operatorname{{diag}}\bigl({_unwrapped(n.latex(slope))}\bigr)"
    return product, definition


def _sweep_lines(n: Notation, derivation: Derivation, keys: list) -> list:
    """The adjoint equations of ``keys``, in the order the sweep visits them.

    Steps with one per-step form are written once for a generic step t with the steps it holds
    at; a step whose form is its own (an end of a chain, where a term is absent) stands as it is.
    An Elman chain's ``delta^z`` is the product with its hidden Jacobian ``D_t``, which stands with its
    entries once, on the row before its first use (``_through_D``). Each line comes with the separator
    that ends it: ``\\\\*`` keeps D_t's definition on the page of its use.
    """
    T = derivation.spec.T
    states = derivation.graph.network.cell.states  # a state's delta: its terms labelled by where they came from
    gated = derivation.graph.network.cell.gated  # a gated cell has its gates' Jacobians, no D_t
    equations = []  # (lhs, rhs, note, kept with the next)
    defined = False  # the chain's D_t, given with its entries before its first use

    def add(key, lhs, expr, t, rhs, note):
        nonlocal defined
        through = None if gated else _through_D(n, key, expr, t)
        if through is None:
            equations.append((lhs, rhs, note, False))
            return
        product, definition = through
        if not defined:
            equations.append((chain_D(n, key, t), definition, note, True))
            defined = True
        equations.append((lhs, product, note, False))

    for key in keys:
        nodes = [node for node in derivation.adjoints if node.family == key]
        runs = _runs(nodes)
        for i, (template, run) in enumerate(runs):
            inner = 0 < i < len(runs) - 1
            if len(run) == 1 and not inner:
                node = run[0]
                lhs, rhs = n.ending(node.symbol, node.expr)
                add(key, lhs, node.expr, node.t, rhs, "")
                continue
            lhs = n.latex(relative(key, 0, run[0].symbol.shape[0]))
            own = family(key) if gated else None  # a gated cell's paths named
            rhs = _labelled(n, template, own) if family(key).base in states else n.latex(template)
            add(key, lhs, template, "t", rhs, _range_note([node.t for node in run], T))
    column = max((width(lhs) for lhs, *_ in equations), default=0.0)  # one align: its widest left side
    return [(broken(lhs, rhs, note, column), r"\\*" if kept else r"\\") for lhs, rhs, note, kept in equations]


def _output_split(n: Notation, derivation: Derivation) -> str | None:
    """``V^T delta^o_t = [V^(f)T delta^o_t; V^(b)T delta^o_t]``: the output's delta split between the chains."""
    net = derivation.graph.network
    p = net.output
    if not p.blocks:
        return None
    spec = derivation.spec
    key = adjoint_name(n.output_value)  # the delta of the value the output weights make
    do = next(node for node in reversed(derivation.adjoints) if node.family == key)
    many = spec.mapping == "many-to-many"
    do_t = relative(key, 0, do.symbol.shape[0]) if many else do.symbol
    whole = A.mul(A.transpose(p.math()), do_t)
    parts = A.Concat(0, *[A.mul(A.transpose(p.math(part)), do_t) for part in p.parts])
    return aligned(f"{n.latex(whole)} = {n.latex(parts)}")


def _chain_sweeps(n: Notation, derivation: Derivation) -> list:
    """Per chain, in the order the sweep reaches it: its direction in time and its equations."""
    net = derivation.graph.network
    order = []
    for node in derivation.adjoints:
        fam = family(node.family) if node.family else None
        if fam is not None and fam.base == "h":
            chain = next(c for c in net.chains if state_key(c) == fam.value.key)
            if chain not in order:
                order.append(chain)
    sweeps = []
    ages = sorted({family(node.family).age for node in derivation.adjoints if node.family} - {None})
    for chain in order:
        dh = chain.family("h", "adjoint")
        # the chain's deltas in the order the sweep first reaches them (δh, δh̄ masked, δz; a gated cell's
        # δh, δc, δz_o, ..., δz_i), a truncated derivation's ages first (each from the one before), then their sums
        own, plain = set(), []  # the chain's adjoint families; their plain (unaged) families, as first reached
        for node in derivation.adjoints:
            fam = family(node.family) if node.family else None
            if fam is not None and _of_chain(fam, chain):
                own.add(fam.key)
                if fam.aged(None) not in plain:
                    plain.append(fam.aged(None))
        keys = [f.aged(a).key for a in ages for f in plain if f.aged(a).key in own]
        keys += [f.key for f in plain if f.key in own]
        initial = [
            n.step(chain.family(base, "adjoint").key, "T+1" if chain.reverse else 0) for base, _ in chain.initials
        ]
        sweeps.append(
            dict(
                where=_where(chain),
                reverse=chain.reverse,
                first=n.step((dh.aged(0) if ages else dh).key, 1 if chain.reverse else "T"),
                initial=_states(initial, "the initial state's", "the initial states'"),
                lines=_sweep_lines(n, derivation, keys),
            )
        )
    return sweeps


# --- the gradients --------------------------------------------------------------------------------


def _summed(terms, T: int) -> tuple:
    """``(prefix, term)``: ``\\sum_{t=first}^{T}`` and the generic term, or ``""`` and the terms as they are.

    The terms run over every step, or over the steps up to T from the first that has a loss or
    reaches one (a delay: before it an output, or a backward chain's state, is read by no loss).
    """
    first = T - len(terms) + 1
    term = sum_over_steps(terms, first) if len(terms) > 1 else None
    if term is None:
        return "", A.add(*terms)
    return rf"\sum_{{t={first}}}^{{T}} ", term


def _factored(axis: int, terms: list):
    """``[L a_1^T, L a_2^T]`` -> ``L [a_1; a_2]^T`` (columns side by side), or the rows' twin; None
    when the blocks do not share the factor."""
    if not all(isinstance(t, MatMul) and len(t.args) == 2 for t in terms):
        return None
    if axis == 1:
        common, rest = {t.args[0] for t in terms}, [t.args[1] for t in terms]
        if len(common) != 1 or not all(isinstance(r, Transpose) for r in rest):
            return None
        return A.mul(common.pop(), Transpose(A.Concat(0, *[r.arg for r in rest])))
    common, rest = {t.args[1] for t in terms}, [t.args[0] for t in terms]
    if len(common) != 1:
        return None
    return A.mul(A.Concat(0, *rest), common.pop())


def _gradient_lines(n: Notation, derivation: Derivation) -> dict:
    """Name -> ``dE/dp = sum_t (one term)``; a blocked parameter's block by block, then on the stacked vector."""
    lines = {}
    for name, expr in derivation.gradients.items():
        target = n.latex(gradient_symbol(derivation.graph.params[name]))
        if isinstance(expr, A.Concat):
            T = derivation.spec.T
            summed = [_summed(list(part.args) if isinstance(part, MatAdd) else [part], T) for part in expr.parts]
            sep = " & " if expr.axis == 1 else r" \\ "
            cells = sep.join(prefix + n.latex(term) for prefix, term in summed)
            line = rf"{target} = \begin{{bmatrix}} {cells} \end{{bmatrix}}"
            prefixes = {prefix for prefix, _ in summed}
            factored = _factored(expr.axis, [term for _, term in summed]) if len(prefixes) == 1 else None
            if factored is not None:
                line += f" = {prefixes.pop()}{n.latex(factored)}"
            lines[name] = aligned(line)
            continue
        terms = list(expr.args) if isinstance(expr, MatAdd) else [expr]
        prefix, term = _summed(terms, derivation.spec.T)
        term = expr if not prefix else term
        lines[name] = aligned(f"{target} = {prefix}{n.latex(term)}")
    return lines


def _shown(formula) -> bool:
    """Every final formula but the initial states' (``h_0 = h0`` for every sequence, no number).

    A bias alone repeated over the steps (``Z~ = b 1^T`` of a layer above the first, whose input
    projection runs step by step) is a formula the recurrence reads, so it is shown.
    """
    stmt = formula.stmts[0]
    step = step_of(stmt.target)
    given = all(not isinstance(s, (Step, Relative)) and not run_of(s) for s in A.symbols_in(stmt.expr))
    # a state's initial value (h_0, an LSTM's c_0), not δh_0 = 0 (truncated)
    initial = step and family(step[0]).base in STATE_LETTERS and not family(step[0]).is_adjoint
    return not (len(formula.stmts) == 1 and initial and given)


#: The width of the shapes table's symbols column where its rows must wrap, in points (0.75 of the text).
_SYMBOLS_COLUMN = 0.75 * TEXT_WIDTH


def _shapes_columns(shapes: list) -> str:
    """The shapes table's columns: ``ll`` where every row of symbols fits its column, so that the rule under
    the heading ends with the widest row; else a wrapping column of fixed width."""
    widest = max((cell_width(symbols) for _, symbols in shapes), default=0.0)
    return "ll" if widest <= _SYMBOLS_COLUMN else r"lp{0.75\linewidth}"


#: Half the text width, less an equation number and the space before it, in points: the room for one
#: gradient of the summary when the gradients stand in two columns.
_HALF_COLUMN = 0.5 * 6.5 * 72.27 - 40.0


def _gradient_blocks(derivation: Derivation, gradients: dict) -> list:
    """The summary's gradients in blocks of ``(name, line)``, in order: per chain (of a network of several),
    a gated cell's kinds of matrix apart (its ``U``, its ``W``, its biases); the rest (initial states, output
    layer) in one block; a block of one or two joins the one before (it would end a page on a line)."""
    params = derivation.graph.network.params
    several = len(derivation.graph.network.chains) > 1

    def block(name: str) -> tuple:
        p = params[name]
        return (p.chain if several else None, p.role if p.gate else None)

    blocks = []
    for name, line in gradients.items():
        if blocks and block(blocks[-1][-1][0]) == block(name):
            blocks[-1].append((name, line))
        else:
            blocks.append([(name, line)])
    for i in reversed(range(1, len(blocks))):
        if len(blocks[i]) < 3:
            blocks[i - 1 : i + 1] = [blocks[i - 1] + blocks[i]]
    return blocks


def _summary_bands(derivation: Derivation, gradients: dict) -> list:
    """The summary's gradients as bands, each a list of columns of ``(name, line)``: a page of the summary breaks
    only between bands. Where every gradient fits half the page, two blocks stand side by side in a band (a band
    of one block, its halves), which halves the summary's height; else each block is a band of one column."""
    blocks = _gradient_blocks(derivation, gradients)
    rows = list(gradients.items())
    if len(rows) < 4 or any(width(line.replace("&", ""), DISPLAY) > _HALF_COLUMN for _, line in rows):
        return [[block] for block in blocks]
    bands = [blocks[i : i + 2] for i in range(0, len(blocks), 2)]
    if len(bands[-1]) == 1:  # a block alone: its halves side by side
        last = bands[-1][0]
        half = (len(last) + 1) // 2
        bands[-1] = [last[:half], last[half:]] if len(last) > 1 else [last]
    return bands


def network_context(derivation: Derivation, formulas: list, numbering: Numbering, common: dict) -> dict:
    """Everything ``network.tex.jinja`` lays out."""
    spec = derivation.spec
    n = Notation(spec)
    graph = derivation.graph
    net = graph.network
    T = spec.T
    chains = []
    for chain in net.chains:
        keys = [k for k in forward_families(graph) if _of_chain(family(k), chain)]
        chains.append(
            dict(
                where=_where(chain),
                reverse=chain.reverse,
                initial=_initial(n, chain, T),
                lines=_forward_lines(n, graph, keys, range(1, T + 1)),
            )
        )
    top = net.top
    loss = spec.loss_rule
    out_keys = [k for k in ("dyhat", "do") if any(node.family == k for node in derivation.adjoints)]
    output_sweep, sweeps = _sweep_lines(n, derivation, out_keys), _chain_sweeps(n, derivation)
    # where the sweep starts from the output delta's closed form: the entry-by-entry step that derives it
    fused = spec.fused if closed_output(n, derivation) else None
    fused_derivation = n.respell(fused.derivation.format(yhat=r"\hat{y}", y="y", E=n.loss("t"))) if fused else None
    shapes = shape_rows(n, derivation, jacobians=tuple((D, (m, m)) for D, m in _D_chains(n, derivation).items()))
    return dict(
        **common,
        row=n.row,
        layers=net.layers,
        bidirectional=spec.bidirectional,
        stacked=spec.stacked,
        many_to_one=spec.mapping == "many-to-one",
        masked=spec.masked,
        m_t=n.step("m", "t"),
        legend=_legend(n, derivation, equations=str([fused_derivation, output_sweep, sweeps]), shapes=shapes),
        shapes=shapes,
        shapes_columns=_shapes_columns(shapes),
        shape_tables=side_by_side(shapes),
        hidden_D=list(_D_chains(n, derivation)),
        chains=chains,
        held_lines=_forward_lines(n, graph, [c.family("hlast").key for c in top], range(1, T + 1)),
        output_lines=_forward_lines(n, graph, ("o", "yhat"), spec.loss_steps),
        one_to_many=spec.mapping == "one-to-many",
        delay=spec.delay,
        output_blocks=[n.latex(net.output.block(part)) for part in net.output.parts],
        top_states=[n.step(state_key(c), "t") for c in top],
        top_deltas=[n.step("dh" + c.suffix, "t") for c in top],
        E=n.E,
        E_t=n.loss("t"),
        E_T=n.loss(T),
        loss_latex=loss.latex.format(yhat_i=n.entry_of("yhat", "t"), y_i=n.entry_of("y", "t")),
        output_sweep=output_sweep,
        fused_derivation=fused_derivation,
        fused_assumes=fused.assumes if fused else "",
        output_split=_output_split(n, derivation),
        sweeps=sweeps,
        gradients=(gradients := _gradient_lines(n, derivation)),
        summary_bands=_summary_bands(derivation, gradients),
        immediate_total=immediate_and_total(n, derivation),
        gradient_shapes=gradient_factor_shapes(n, derivation),
        column_names=[param_latex(name) for name in spec.names],
        stacked_weights=[
            (n.latex(p.symbol()), [n.latex(p.block(part)) for part in p.parts])
            for p in net.params.values()
            if p.role == "stacked"
        ],
        formulas=[f for f in formulas if _shown(f)],
        slopes=keeps_slopes(formulas),
        slopes_D=_slopes_of_D(n, derivation, formulas),
        code_output=code_output(n) if n.direct else "",
        truncation=truncation_context(n, derivation),
        gates=gate_context(derivation, _where(net.chains[0]), [f for f in formulas if _shown(f)]),
        # a parameter the document spells otherwise than the module names it (a gated cell's b_y, the module's c):
        # the legend says the module's name, except in the handout, which says nothing of the code
        module_names={
            f"${n.latex(graph.params[name])}$": name
            for name, p in net.params.items()
            if net.cell.gated and p.written.in_gated() != p.written
        },
        step=n.step,
    )


def is_single_chain(spec) -> bool:
    """True for a network of one layer in one direction, U and W apart (``rnngen flow`` takes those)."""
    return spec.layers == 1 and not spec.bidirectional and spec.notation in ("column", "row")


def three_forms(spec) -> bool:
    """True for the networks ``document.py`` derives three ways: a single Elman chain with an input at
    every step and a loss at every step or at the last, untruncated and unmasked (the others, gated cells
    too: this module's document, which reads every equation from the derivation)."""
    return (
        spec.cell == "elman"
        and is_single_chain(spec)
        and spec.mapping != "one-to-many"
        and not spec.delay
        and spec.truncate is None
        and not spec.masked
    )
