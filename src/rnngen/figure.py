"""The figure of the unrolled network, drawn from the derivation's own graph, and its two spellings.

``figure(derivation)`` reads the unrolled graph (``unroll.Graph``) and the network
(``network.Network``) and returns a ``Figure``: nodes with their positions and labels, and edges
with their end points, all in centimetres, y up. Which steps have an input, which have a loss,
which state reads which, and in which direction a chain runs all come from the graph's
dependencies, never from a second description of the network:

- a node per drawn value: each input ``x_t``, each chain's state at each step (a gated cell's
  states in one box with its gate letters), each chain's initial states, each prediction and each
  loss term;
- an edge where the graph's value reads another drawn value through values that are not drawn
  (``z_t``, the gates), labelled with the parameter it is multiplied by, in the document's notation;
- for the gradient of the first chain's recurrent weight, its paths highlighted: each edge where the
  weight is used, and the edges from there to the last loss term (one path per use in one chain, several
  when a use climbs into the layer above or runs along the memory cell; the caption counts them and
  names a sum over paths only where the document derives one);
- in a bidirectional layer the input under the backward box and the prediction over the forward one, so
  the arrows that reach across the other chain go straight up through the gap between its boxes;
- for T > ``FULL``, steps 1, 2, T-1 and T with an ellipsis in between, which stands for the
  steps left out (their states' edges go to and from it).

``tikz`` and ``svg`` only spell a ``Figure``; neither decides anything about the drawing.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from dataclasses import dataclass

from sympy import MatrixSymbol

from rnngen.document import Notation
from rnngen.families import Family, ParamName, Step
from rnngen.network_document import three_forms

#: The longest unroll drawn in full; a longer one shows steps 1, 2, T-1, T and an ellipsis.
FULL = 6
#: Widest drawing, in cm (the documents' text is 6.5 in = 16.5 cm wide).
WIDTH = 15.0
#: Vertical distance between rows, in cm.
ROW = 1.35
GAP = "gap"


@dataclass(frozen=True)
class Node:
    """A drawn value.

    Attributes:
        key: its identity in the figure (``x:3``, ``s:1f:3``, ``E:5``).
        kind: ``input``, ``state``, ``initial``, ``output``, ``loss`` or ``gap`` (the ellipsis).
        x, y: its centre, in cm.
        w, h: its box, in cm (a state's frame; the box the edges stop at for the others).
        label: its LaTeX (math mode), as the document writes it.
        note: smaller LaTeX under the label (a gated cell's gate letters), or "".
        t: its step, None for an ellipsis.
    """

    key: str
    kind: str
    x: float
    y: float
    w: float
    h: float
    label: str
    note: str = ""
    t: int | None = None


@dataclass(frozen=True)
class Edge:
    """An arrow from one node to another.

    Attributes:
        src, dst: the keys of its nodes.
        kind: ``input``, ``recurrent``, ``carry`` (a state a gate carries with no weight in the way,
            the LSTM's memory cell), ``output`` or ``loss``.
        start, end: its end points, in cm, on the frames of its nodes.
        control: a quadratic Bézier control point for an edge drawn bent past another node, or None.
        label: the LaTeX of the parameter it is multiplied by, or "".
        at: where the label's centre goes.
        highlighted: on a path of the sum-over-paths form of the highlighted gradient.
        chain: the ``(layer, direction)`` of the chain it enters or runs along, None for the output side.
    """

    src: str
    dst: str
    kind: str
    start: tuple
    end: tuple
    control: tuple | None
    label: str
    at: tuple | None
    highlighted: bool
    chain: tuple | None


@dataclass(frozen=True)
class Figure:
    """The drawing: nodes, edges, the steps shown, and what its caption says.

    Attributes:
        T: the unroll length.
        steps: the steps drawn, in order, with ``GAP`` where steps are left out.
        nodes, edges: the drawing.
        weight: LaTeX of the weight whose gradient's paths are highlighted.
        loss: LaTeX of the loss term the highlighted paths end at.
        caption: LaTeX of the caption (text with inline math).
    """

    T: int
    steps: tuple
    nodes: tuple
    edges: tuple
    weight: str
    loss: str
    caption: str

    @property
    def bounds(self) -> tuple:
        """``(left, bottom, right, top)`` of everything drawn, in cm: the nodes' frames, the arrows (a bent
        one to its farthest point) and the labels (roughly)."""
        xs, ys = [], []
        for n in self.nodes:
            xs += [n.x - n.w / 2, n.x + n.w / 2]
            ys += [n.y - n.h / 2, n.y + n.h / 2]
        for e in self.edges:
            points = [e.start, e.end]
            if e.control is not None:  # a quadratic Bezier reaches halfway to its control point
                points.append(tuple(0.25 * a + 0.5 * q + 0.25 * b for a, q, b in zip(e.start, e.control, e.end)))
            if e.at is not None:
                half = _label_width(e.label) * 0.35
                points += [(e.at[0] - half, e.at[1]), (e.at[0] + half, e.at[1])]
            xs += [p[0] for p in points]
            ys += [p[1] for p in points]
        return (round(min(xs), 3), round(min(ys), 3), round(max(xs), 3), round(max(ys), 3))

    @property
    def width(self) -> float:
        left, _, right, _ = self.bounds
        return right - left

    def node(self, key: str) -> Node:
        return next(n for n in self.nodes if n.key == key)


def shown_steps(T: int) -> tuple:
    """The steps drawn: every step up to ``FULL``, else 1, 2, the ellipsis, T-1, T."""
    return tuple(range(1, T + 1)) if T <= FULL else (1, 2, GAP, T - 1, T)


def _matrix_symbols(expr) -> list:
    """The MatrixSymbols ``expr`` reads, by name (SymPy's cached free symbols: five times faster than a
    traversal on a long unroll's graph, which the figure reads whole)."""
    return sorted((s for s in expr.free_symbols if isinstance(s, MatrixSymbol)), key=lambda s: s.name)


def _label_width(tex: str) -> float:
    """A rough width of a math label, in cm: its letters, smaller in sub- and superscripts (``_runs`` reads it
    as the SVG spells it; accents take no room)."""
    return sum(
        (0.2 if level == 0 else 0.14) * sum(not unicodedata.combining(ch) for ch in text) for text, level in _runs(tex)
    )


def _weight(n: Notation, chain, kind: str, part: str | None) -> str:
    """LaTeX of the weight a chain's ``kind`` edge (``input``, ``recurrent``) is multiplied by; a gated cell's
    gates' weights as one, ``W_{*}``."""
    params = chain.weights(kind)
    if len(params) > 1:  # one per gate: the letter with a star for the gate
        first = params[0].written
        return ParamName(first.letter.split("_")[0] + "_*", first.layer, first.direction, part or "").latex()
    p = params[0]
    return n.latex(p.block(part) if part and p.blocks else p.symbol())


def _arrows(graph, steps: tuple) -> tuple:
    """``(arrows, losses, owners)`` read from the graph: each ``(src, dst, base)`` where the drawn value ``dst``
    reads the state ``base`` (or input) of the drawn ``src`` through values that are not drawn (``z_t``, the
    gates), in a figure showing ``steps``; the predictions the loss reads; the chain of each state's node."""
    net, T = graph.network, graph.spec.T
    states = {chain.family(base): chain for chain in net.chains for base in net.cell.states}
    x_family, yhat_family = Family("x"), Family("yhat")
    known: dict = {}
    owners: dict = {}  # node key -> its chain, for a chain's states, initial states and ellipsis

    def drawn(sym):
        """The node key of a drawn value, None for a value inside a step or left out."""
        if sym in known:
            return known[sym]
        key = None
        if isinstance(sym, Step):
            fam, t = sym.family, sym.t
            chain = states.get(fam)
            if fam in (x_family, yhat_family) and t in steps:
                key = f"{fam.base[0]}:{t}"  # x:3, y:3
            elif chain is not None and t == chain.steps(T)[0]:
                key = f"i:{chain.suffix}:{fam.base}"
            elif chain is not None:
                key = f"s:{chain.suffix}:{t if t in steps else GAP}"
            if chain is not None:
                owners[key] = chain
        known[sym] = key
        return key

    reads: dict = {}  # graph symbol -> {(drawn node key, state base)} it reads through undrawn values
    arrows: dict = {}
    for node in graph.nodes:
        found: dict = {}  # a box holds several states (the LSTM's h and c), each its own arrow
        for sym in _matrix_symbols(node.expr):
            key = drawn(sym)
            found.update({(key, sym.family.base): None} if key is not None else reads.get(sym, {}))
        reads[node.symbol] = found
        dst = drawn(node.symbol)
        for src, base in found if dst is not None else ():
            if src != dst and not (src.endswith(GAP) and dst.endswith(GAP)):  # the ellipsis reads itself
                arrows[(src, dst, base)] = None
    losses = [key for key, _ in reads[graph.loss.symbol] if key.startswith("y:")]
    return list(arrows), losses, owners


def _place(n: Notation, net, T: int, steps: tuple, arrows: list, losses: list) -> tuple:
    """``(nodes, box height)``: each drawn value's node, at its place. Columns are steps (with the initial
    states' columns at the ends); rows are the input, each chain (layer by layer, a layer's forward chain
    below its backward one, the two shifted apart so no arrow up a column crosses a box), the predictions
    and the losses."""
    cell = net.cell
    bidirectional = len(net.directions) > 1
    carried = _carried(cell)
    columns = (
        [None] * any(not c.reverse for c in net.chains) + list(steps) + ["end"] * any(c.reverse for c in net.chains)
    )
    # the columns' span leaves room for the boxes at both ends and a bidirectional layer's two halves
    dx = min(2.3, (WIDTH - 1.6) / (len(columns) - 1 + (0.5 if bidirectional else 0.0)))
    col_x = {c: i * dx for i, c in enumerate(columns)}
    box_h = 0.95 if cell.gated else 0.7
    step_y = ROW + 0.25 * cell.gated + 0.35 * bool(carried) + 0.35 * bidirectional
    rows = {chain.key: step_y * (i + 1) for i, chain in enumerate(net.chains)}
    top = step_y * len(net.chains)
    shift = {c.key: {"f": -dx / 4, "b": dx / 4}.get(c.direction, 0.0) for c in net.chains}
    widest = max(_label_width(n.latex(Step.of(c.family(cell.state), T + 1, c.size))) for c in net.chains)
    state_w = min(max(widest + 0.35, 0.95), dx / 2 - 0.1 if bidirectional else dx - 0.45)
    ends = {k for arrow in arrows for k in arrow[:2]}
    # a bidirectional layer's input stands under its upper (backward) box and the prediction over the top
    # layer's lower (forward) box: the arrows that reach across the other chain go straight up through the gap
    # between its boxes, crossing its arrows square, never diagonally past a box
    below = shift[[c for c in net.chains if c.layer == 1][-1].key]
    above = shift[[c for c in net.chains if c.layer == net.chains[-1].layer][0].key]
    nodes: dict = {}

    def add(key, kind, x, y, label, note="", t=None, w=None, h=0.6):
        w = w if w is not None else max(0.6, _label_width(label) + 0.3)
        nodes[key] = Node(key, kind, round(x, 3), round(y, 3), round(w, 3), h, label, note, t)

    for t in steps:
        x = col_x[t]
        for chain in net.chains:
            key, y = f"s:{chain.suffix}:{t}", rows[chain.key]
            if t == GAP:
                add(key, "gap", x + shift[chain.key], y, r"\cdots", w=0.6)
            else:
                label = n.latex(Step.of(chain.family(cell.state), t, chain.size))
                add(key, "state", x + shift[chain.key], y, label, r"\,".join(cell.gates), t, state_w, box_h)
        if t == GAP:
            continue
        if f"x:{t}" in ends:
            add(f"x:{t}", "input", x + below, 0.0, n.latex(Step.of(Family("x"), t, 1)), t=t)
        if f"y:{t}" in ends:
            add(f"y:{t}", "output", x + above, top + ROW, n.latex(Step.of(Family("yhat"), t, 1)), t=t)
        if f"y:{t}" in losses:
            add(f"E:{t}", "loss", x + above, top + 2 * ROW, n.loss(t), t=t)
    for chain in net.chains:
        x, start = col_x["end" if chain.reverse else None] + shift[chain.key], chain.steps(T)[0]
        for base, _ in chain.initials:
            above = 0.0 if base == cell.state else box_h / 2 + 0.35  # the memory cell's above the state
            label = n.latex(Step.of(chain.family(base), start, chain.size))
            add(f"i:{chain.suffix}:{base}", "initial", x, rows[chain.key] + above, label, t=start)
    return nodes, box_h


def _carried(cell) -> str | None:
    """The state a gate carries with no weight in the way, when it is not the state the layers read: the
    LSTM's memory cell (the GRU carries h itself, along its recurrent arrow)."""
    return cell.carry[0] if cell.carry and cell.carry[0] != cell.state else None


def _kind(arrow: tuple, nodes: dict, owners: dict, cell) -> tuple:
    """``(kind, chain)`` of an arrow: ``input``, ``recurrent`` or ``carry`` into a chain, ``output``, ``loss``."""
    src, dst, base = arrow
    if nodes[dst].kind in ("output", "loss"):
        return nodes[dst].kind, None
    chain = owners[dst]
    if owners.get(src) is chain:
        return ("carry" if base == _carried(cell) else "recurrent"), chain
    return "input", chain


def _on_paths(arrows: list, kinds: dict, nodes: dict, chain, target: str | None, limit: float, gap_steps: int) -> set:
    """The arrows of the sum over paths of ``d target / d W`` for ``chain``'s recurrent weight ``W``: each
    arrow where ``W`` is used (one term each), and the arrows on a path from there to ``target``; with
    truncated BPTT, only the paths that cross at most ``limit`` recurrent arrows (a step of a chain to its
    next, ``gap_steps`` - 1 more across the steps an ellipsis leaves out), as the truncated gradient keeps them."""
    if target is None:
        return set()
    cost = {
        a: (gap_steps if nodes[a[0]].kind == "gap" else 1) * (kinds[a][0] in ("recurrent", "carry")) for a in arrows
    }
    used = [a for a in arrows if kinds[a] == ("recurrent", chain)]
    to, after = {target: 0}, {a[1]: 0 for a in used}  # fewest crossings to the target, and from a use
    for _ in arrows:  # relax both until nothing changes (as many rounds as the longest path)
        changed = False
        for a in arrows:
            src, dst = a[:2]
            if dst in to and to[dst] + cost[a] < to.get(src, math.inf):
                to[src], changed = to[dst] + cost[a], True
            if src in after and after[src] + cost[a] < after.get(dst, math.inf):
                after[dst], changed = after[src] + cost[a], True
        if not changed:
            break
    crossed = {a: (0 if a in used else after.get(a[0], math.inf) + cost[a]) + to.get(a[1], math.inf) for a in arrows}
    return {a for a, n in crossed.items() if n < math.inf and n <= limit}


def _label(n: Notation, net, kind: str, chain, src_chain) -> str:
    """The LaTeX of the weight an arrow's value is multiplied by (the block that reads its source, a state of
    ``src_chain`` or the input), or ""."""
    if kind == "input":
        part = (src_chain.direction or "x") if src_chain else ("x" if chain.recurrent_part else None)
        return _weight(n, chain, "input", part)
    if kind == "recurrent":
        return _weight(n, chain, "recurrent", chain.recurrent_part)
    if kind == "output":
        V = net.output
        return n.latex(V.block(src_chain.direction) if V.blocks else V.symbol())
    return ""


def figure(derivation) -> Figure:
    """The figure of ``derivation``'s unrolled network (see the module's docstring)."""
    graph = derivation.graph
    spec, net, T = graph.spec, graph.network, graph.spec.T
    n = Notation(spec)
    steps = shown_steps(T)
    arrows, losses, owners = _arrows(graph, steps)
    nodes, box_h = _place(n, net, T, steps, arrows, losses)
    arrows += [(y, f"E:{nodes[y].t}", "") for y in losses]
    kinds = {a: _kind(a, nodes, owners, net.cell) for a in arrows}
    target = f"E:{T}" if f"y:{T}" in losses else None
    limit = spec.truncate - 1 if spec.truncate else math.inf  # truncated BPTT keeps the shorter paths
    highlighted = _on_paths(arrows, kinds, nodes, net.chains[0], target, limit, T - 4 if GAP in steps else 1)
    first_output = min((node for node in nodes.values() if node.kind == "output"), key=lambda node: node.t)
    carried = bool(_carried(net.cell))
    out = []
    for arrow in arrows:
        kind, chain = kinds[arrow]
        a, b = nodes[arrow[0]], nodes[arrow[1]]
        shown = len(net.chains) == 1 or _labelled(a, b, kind, chain, T, first_output, len(net.chains) > 2)
        label = _label(n, net, kind, chain, owners.get(arrow[0])) if shown else ""
        if kind == "carry" and shown and a.kind == "state":  # no weight: the memory cell it carries
            label = n.latex(Step.of(chain.family(_carried(net.cell)), a.t, chain.size))
        others = [m for m in nodes.values() if m is not a and m is not b]
        # which way the source's other arrows up a column lean: a straight arrow's label goes the other way
        lean = sum(nodes[d].x - a.x for s_, d, _ in arrows if s_ == a.key and d != b.key and nodes[d].y > a.y)
        out.append(_geometry(a, b, kind, label, arrow in highlighted, chain, box_h, carried, others, lean))
    out = [_label_clear_of_crossings(e, out) for e in out]
    out.sort(key=lambda e: (e.highlighted, e.src, e.dst, e.kind))  # highlighted ones drawn last, on top
    weight_chain = net.chains[0]
    weight = _weight(n, weight_chain, "recurrent", weight_chain.recurrent_part)
    loss = n.loss(T)
    # an output that reads states of other steps: a masked many-to-one network's held backward state
    held = any(e.kind == "output" and nodes[e.src].t != nodes[e.dst].t for e in out)
    crossed = {e.chain for e in out if e.highlighted}  # the chains the highlighted paths run along
    states = [(c.layer, _state_latex(n, net, c)) for c in net.chains if c.key in crossed]
    paths = _paths_per_use(highlighted, kinds, weight_chain, target)
    caption = _caption(n, spec, net, steps, weight, loss, states, paths, _carried(net.cell), held)
    return Figure(T, steps, tuple(nodes[k] for k in sorted(nodes)), tuple(out), weight, loss, caption)


def _state_latex(n: Notation, net, chain) -> str:
    """LaTeX of a chain's state at step t, as the document writes it (``h^{(1)}_{t}``)."""
    return n.step(chain.family(net.cell.state).key, "t")


def _paths_per_use(highlighted: set, kinds: dict, chain, target: str | None) -> int:
    """The most paths from one use of ``chain``'s recurrent weight to ``target`` along the highlighted arrows:
    1 for one chain, more where a use climbs into the layer above at any later step or runs along the
    memory cell as well as the state."""
    if target is None:
        return 0
    counts: dict = {target: 1}

    def count(key: str) -> int:  # paths from key to the target (the arrows form no cycle)
        if key not in counts:
            counts[key] = sum(count(a[1]) for a in highlighted if a[0] == key)
        return counts[key]

    return max((count(a[1]) for a in highlighted if kinds[a] == ("recurrent", chain)), default=0)


def _labelled(a: Node, b: Node, kind: str, chain, T: int, first_output: Node, crowded: bool) -> bool:
    """Whether the arrow from ``a`` to ``b`` carries its weight's label in a network of several chains: the
    arrows into and out of a column at every step, those along a row only into each chain's first step (the
    arrows up the columns cross them in a bidirectional layer); with more than two chains, only those into each
    chain's first step and into the first prediction, so that the labels do not hide the arrows."""
    if kind == "output":  # from the state of the same step (a masked many-to-one network reads more)
        return (b is first_output or not crowded) and a.t == b.t
    if kind == "input" and not crowded:
        return True
    if kind in ("input", "recurrent"):
        return b.kind == "state" and b.t == (T if chain.reverse else 1)
    if kind == "carry":  # the memory cell has no arrow into the first step's box from a state: the next one
        return a.kind == "state" and a.t == (T if chain.reverse else 1)
    return False


def _clip(node: Node, toward: tuple) -> tuple:
    """The point where the segment from ``node``'s centre toward ``toward`` leaves its frame."""
    dx, dy = toward[0] - node.x, toward[1] - node.y
    hw, hh = node.w / 2 + 0.05, node.h / 2 + 0.05
    scale = min(hw / abs(dx) if dx else float("inf"), hh / abs(dy) if dy else float("inf"))
    return (round(node.x + dx * scale, 3), round(node.y + dy * scale, 3))


def _crosses(start: tuple, end: tuple, nodes: list) -> list:
    """The nodes whose frame (with a small margin) the straight segment from ``start`` to ``end`` enters."""
    hit = []
    for m in nodes:
        for i in range(1, 40):  # sampled: the frames are far wider than a fortieth of an arrow
            x, y = (start[k] + (end[k] - start[k]) * i / 40 for k in (0, 1))
            if abs(x - m.x) < m.w / 2 + 0.1 and abs(y - m.y) < m.h / 2 + 0.1:
                hit.append(m)
                break
    return hit


def _clear(start: tuple, end: tuple, nodes: list) -> tuple:
    """Where a label goes on an arrow up a column: the middle of its longest part outside the rows of boxes
    it crosses (an arrow that reaches past the other chain of a bidirectional layer crosses its row)."""
    (x0, y0), (x1, y1) = start, end
    low, high = sorted((y0, y1))
    cuts = sorted((m.y - m.h / 2 - 0.1, m.y + m.h / 2 + 0.1) for m in nodes if m.kind in ("state", "gap"))
    free, at = [], low
    for a, b in cuts:
        if b > at and a < high:
            free.append((at, max(at, min(a, high))))
            at = max(at, b)
    free.append((at, high))
    a, b = max(free, key=lambda part: part[1] - part[0])
    y = (a + b) / 2
    return (x0 + (x1 - x0) * (y - y0) / (y1 - y0), y)


def _label_clear_of_crossings(edge: Edge, edges: list) -> Edge:
    """``edge`` with its label, if it runs along a row, moved to the middle of the longest part of it that no
    arrow up a column crosses (in a bidirectional layer the arrows into and out of the other chain cross the
    row arrows at their middle)."""
    (x0, y0), (x1, y1) = edge.start, edge.end
    if not edge.label or edge.control is not None or abs(y0 - y1) > 1e-6:
        return edge
    cuts = []
    for e in edges:
        (a0, b0), (a1, b1) = e.start, e.end
        if e is not edge and e.control is None and min(b0, b1) < y0 < max(b0, b1):
            cuts.append(a0 + (a1 - a0) * (y0 - b0) / (b1 - b0))
    low, high = sorted((x0, x1))
    points = [low, *sorted(c for c in cuts if low < c < high), high]
    a, b = max(zip(points, points[1:]), key=lambda part: part[1] - part[0])
    return dataclasses.replace(edge, at=(round((a + b) / 2, 3), edge.at[1]))


def _geometry(a: Node, b: Node, kind, label, highlighted, chain, box_h, carried, others, lean: float) -> Edge:
    """An edge's end points, bend and label place: a straight arrow between the frames; an arrow that would
    cross a node bent past it; the memory cell's arrow along the frames' tops, the state's below it. ``lean``:
    which way the source's other arrows up a column lean (a straight arrow's label goes the other way)."""
    key = chain.key if chain is not None else None
    lift = 0.0
    if carried and kind in ("carry", "recurrent") and a.kind != "initial":  # c above, h below, same boxes
        lift = box_h / 2 - 0.12 if kind == "carry" else -0.15
    control = None
    if abs(a.x - b.x) < 1e-6 and _crosses((a.x, a.y), (b.x, b.y), others):  # bend past the node in between
        control = (round(a.x + 0.9, 3), round((a.y + b.y) / 2, 3))
        start, end = _clip(a, control), _clip(b, control)
        at = (round(a.x + 0.75, 3), control[1])
        return Edge(a.key, b.key, kind, start, end, control, label, at if label else None, highlighted, key)
    if abs(a.y - b.y) > 1e-6 and _crosses((a.x, a.y), (b.x, b.y), others):  # a slanted one that would cross a
        # box of its own row (a held state to a later prediction): up its column first, then across
        control = (a.x, b.y)
        start, end = _clip(a, control), _clip(b, control)
        at = (round((a.x + b.x) / 2, 3), round(b.y - 0.2, 3))
        return Edge(a.key, b.key, kind, start, end, control, label, at if label else None, highlighted, key)
    if lift:
        side = 1 if a.x < b.x else -1
        start = (round(a.x + side * (a.w / 2 + 0.05), 3), round(a.y + lift, 3))
        end = (round(b.x - side * (b.w / 2 + 0.05), 3), round(b.y + lift, 3))
    else:
        start, end = _clip(a, (b.x, b.y)), _clip(b, (a.x, a.y))
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    if abs(start[1] - end[1]) < 1e-6:  # along a row: the label above (below the memory cell's arrow)
        at = (mx, my + (-0.22 if lift < 0 else 0.22))
    else:  # up a column: the label beside it, on the side it leans to (an output's: the other side, away from
        # the other direction's arrow into it); a straight one's away from its source's other arrows up
        slope = end[0] - start[0]
        side = 1 if slope > 0.05 else -1
        side = -side if kind == "output" and abs(slope) > 0.05 else side
        side = (1 if lean < -0.05 else -1) if abs(slope) <= 0.05 else side
        away = 0.12 + _label_width(label) * 0.4  # clear of the arrow: half the label, set small
        mx, my = _clear(start, end, others)
        at = (mx + away * side, my)
    at = (round(at[0], 3), round(at[1], 3))
    return Edge(a.key, b.key, kind, start, end, control, label, at if label else None, highlighted, key)


def _caption(n: Notation, spec, net, steps, weight, loss, states, paths, carried, held: bool) -> str:
    """The caption: what the drawing shows, in the document's symbols. ``states`` are the LaTeX of the states
    the highlighted paths run through, ``paths`` the most paths from one use of the weight to the loss."""
    T = spec.T
    steps_word = "step" if T == 1 else "steps"
    parts = [f"The network unrolled for $T = {T}$ {steps_word}"]
    if GAP in steps:
        parts[0] += f" (steps 3 to {T - 2} are left out: $\\cdots$)"
    parts[0] += "."
    labelled = "labelled" if len(net.chains) == 1 else "labelled (at each chain's first step)"
    labelled = "labelled (along the rows at each chain's first step)" if len(net.chains) == 2 else labelled
    parts.append(
        f"Each arrow carries a value to the step that reads it and is {labelled} with the weight it is "
        "multiplied by: the same weights at every step."
    )
    if net.cell.gated:
        gates = ", ".join(f"${g}$" for g in net.cell.gates)
        parts.append(
            f"Each box is one step of the cell, with its gates {gates}; a weight written with $*$ stands for the "
            "gates' weights together."
        )
    c = n.step(net.chains[0].family(carried).key, "t") if carried else ""
    if carried:
        parts.append(
            f"The upper, dashed arrows, labelled with the memory cell ${c}$ they carry, take it from step to step "
            "through the forget gate, with no weight in the way."
        )
    if held:
        parts.append(
            f"The prediction at $t = {T}$ reads each sequence's last real step, which the mask holds, so every "
            "state of the backward chain reaches it."
        )
    if paths:
        through = "the states " + " and ".join(f"${h}$" for _, h in states)
        through += f" and the memory cells ${c}$" if carried else ""
        if three_forms(spec):  # the document derives the sum over paths: one term per use, as drawn
            parts.append(
                f"Thick and red: the paths of the sum over paths of $\\partial {loss} / \\partial {weight}$, from "
                f"each step where ${weight}$ is used (one term per step) to ${loss}$ through {through}."
            )
        else:
            top = max(layer for layer, _ in states)
            route = " to" if paths == 1 or top == states[0][0] else f", every route up into layer {top} and along it to"
            parts.append(
                f"Thick and red: the paths by which ${weight}$ reaches ${loss}$: from each use of ${weight}$"
                f"{route} ${loss}$ through {through} ({'one path' if paths == 1 else 'several paths'} per use)."
            )
        if spec.truncate:
            parts.append(
                f"Truncated to $\\tau = {spec.truncate}$, the gradient keeps only the paths that cross at most "
                f"{spec.truncate - 1} recurrent {'arrow' if spec.truncate == 2 else 'arrows'}: those drawn."
            )
    return " ".join(parts)


# -- spellers ------------------------------------------------------------------------------------


def _point(p) -> str:
    return f"({p[0]:.3f},{p[1]:.3f})"


def tikz(fig: Figure) -> str:
    """The figure as a ``tikzpicture`` (TikZ only, no libraries): nodes at their places, arrows between
    the points the figure computed."""
    left, bottom, right, top = fig.bounds
    lines = [
        r"\begin{tikzpicture}[>=stealth, every node/.style={inner sep=1pt}]",
        rf"\useasboundingbox {_point((left, bottom))} rectangle {_point((right, top))};",  # its size, exactly
    ]
    for node in fig.nodes:
        text = f"${node.label}$"
        if node.note:
            text = rf"\shortstack{{${node.label}$\\[-1pt]{{\scriptsize ${node.note}$}}}}"
        style = {
            "state": "draw, rounded corners=2pt",
            "initial": "draw, dashed, rounded corners=2pt",
        }.get(node.kind, "")
        size = f"minimum width={node.w:.3f}cm, minimum height={node.h:.3f}cm"
        if node.kind in ("state", "initial"):
            style = f"{style}, {size}"
        lines.append(rf"\node[{style}] at {_point((node.x, node.y))} {{{text}}};")
    for edge in fig.edges:
        style = "->, line width=1.4pt, red!75!black" if edge.highlighted else "->, thin"
        if edge.kind == "carry":
            style += ", densely dashed"
        if edge.control is None:
            path = f"{_point(edge.start)} -- {_point(edge.end)}"
        else:
            c1, c2 = _cubic(edge)
            path = f"{_point(edge.start)} .. controls {_point(c1)} and {_point(c2)} .. {_point(edge.end)}"
        lines.append(rf"\draw[{style}] {path};")
        if edge.label:
            color = ", text=red!75!black" if edge.highlighted else ""
            lines.append(rf"\node[font=\scriptsize{color}] at {_point(edge.at)} {{${edge.label}$}};")
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def _cubic(edge: Edge) -> tuple:
    """The quadratic Bézier's control point as the two of a cubic (what TikZ's ``controls`` takes)."""
    (x0, y0), (qx, qy), (x1, y1) = edge.start, edge.control, edge.end
    c1 = (x0 + 2 / 3 * (qx - x0), y0 + 2 / 3 * (qy - y0))
    c2 = (x1 + 2 / 3 * (qx - x1), y1 + 2 / 3 * (qy - y1))
    return tuple((round(x, 3), round(y, 3)) for x, y in (c1, c2))


# -- SVG ---------------------------------------------------------------------------------------

#: Pixels per cm in the SVG.
PX = 40.0
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "check": "\u030c", "tilde": "\u0303"}
_SYMBOLS = {"cdots": "⋯", "sigma": "σ", "phi": "φ", "ast": "∗", ",": " ", "partial": "∂", "odot": "⊙"}


def _script(letter: str) -> str:
    """The script capital of ``\\mathcal{letter}``: ℒ stands in the letterlike block, most others in the
    mathematical alphanumerics."""
    for prefix in ("SCRIPT CAPITAL", "MATHEMATICAL SCRIPT CAPITAL"):
        try:
            return unicodedata.lookup(f"{prefix} {letter}")
        except KeyError:
            continue
    raise ValueError(f"the SVG figure cannot spell \\mathcal{{{letter}}}")


def _runs(tex: str, level: int = 0) -> list:
    """A math label's LaTeX -> ``[(text, level)]``: level 1 a superscript, -1 a subscript; the few macros
    the labels use, and an error on any other (a label the SVG cannot show must not pass silently)."""
    out: list = []
    i = 0
    while i < len(tex):
        ch = tex[i]
        if ch in "^_":
            arg, i = _argument(tex, i + 1)
            out += _runs(arg, 1 if ch == "^" else -1)
        elif ch == "{":
            arg, i = _argument(tex, i)
            out += _runs(arg, level)
        elif ch == "\\":
            name = re.match(r"\\([A-Za-z]+|.)", tex[i:]).group(1)
            i += 1 + len(name)
            if name in _ACCENTS:
                arg, i = _argument(tex, i)
                out.append((arg + _ACCENTS[name], level))
            elif name == "mathrm":
                arg, i = _argument(tex, i)
                out.append((arg, level))
            elif name == "mathcal":  # a seed's loss letter (seed 001's \mathcal{L})
                arg, i = _argument(tex, i)
                out.append((_script(arg), level))
            elif name in _SYMBOLS:
                out.append((_SYMBOLS[name], level))
            else:
                raise ValueError(f"the SVG figure cannot spell the LaTeX \\{name} in the label {tex!r}")
        else:
            out.append((ch, level))
            i += 1
    merged: list = []
    for text, lv in out:
        if merged and merged[-1][1] == lv:
            merged[-1] = (merged[-1][0] + text, lv)
        else:
            merged.append((text, lv))
    return merged


def _argument(tex: str, i: int) -> tuple:
    """The argument at ``tex[i]`` (a braced group or one character) and the index after it."""
    if tex[i] != "{":
        return tex[i], i + 1
    depth = 0
    for j in range(i, len(tex)):
        depth += {"{": 1, "}": -1}.get(tex[j], 0)
        if depth == 0:
            return tex[i + 1 : j], j + 1
    raise ValueError(f"unbalanced braces in the label {tex!r}")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _svg_text(x: float, y: float, tex: str, size: float, extra: str = "") -> str:
    """A ``<text>`` centred at (x, y) in pixels: sub- and superscripts as smaller ``<tspan>``s moved by ``dy``
    (and moved back, so the label's baseline stays)."""
    spans, shift, previous = [], 0.0, None
    for text, level in _runs(tex):
        target = {1: -0.42, -1: 0.28, 0: 0.0}[level] * size
        dy = target - shift
        shift = target
        attrs = (f' dy="{dy:.2f}"' if dy else "") + (f' font-size="{size * 0.7:.1f}"' if level else "")
        if level == -1 and previous and previous[1] == 1:  # a subscript under the superscript, as LaTeX sets them
            attrs = f' dx="{-0.42 * size * 0.7 * len(previous[0]):.2f}"' + attrs
        spans.append(f"<tspan{attrs}>{_escape(text)}</tspan>" if attrs else _escape(text))
        previous = (text, level)
    return (
        f'<text x="{x:.2f}" y="{y + size * 0.35:.2f}" font-size="{size:.1f}" text-anchor="middle"{extra}>'
        + "".join(spans)
        + "</text>"
    )


def svg(fig: Figure, preamble: str, description: str = "") -> str:
    """The figure as a standalone SVG document; ``preamble`` is the comment it starts with (rnngen's marker),
    ``description`` its ``<desc>`` (an XML comment may not hold the ``--`` of a command line).

    Deterministic: coordinates rounded, elements in the figure's order, no dates or ids.
    """
    if "--" in preamble:
        raise ValueError(f"an XML comment may not contain '--': {preamble!r}")
    left, bottom, right, top = fig.bounds
    left, bottom, right, top = left - 0.3, bottom - 0.2, right + 0.3, top + 0.2

    def px(p) -> tuple:
        return ((p[0] - left) * PX, (top - p[1]) * PX)

    width, height = (right - left) * PX, (top - bottom) * PX
    red = "#a01010"
    out = [
        f"<!-- {_escape(preamble)} -->",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.2f} {height:.2f}" font-family="serif" font-style="italic">',
        f"<desc>{_escape(description)}</desc>",
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="black"/></marker>',
        f'<marker id="arrow-hl" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{red}"/></marker>',
        "</defs>",
        f'<rect width="{width:.2f}" height="{height:.2f}" fill="white"/>',
    ]
    for node in fig.nodes:
        x, y = px((node.x, node.y))
        if node.kind in ("state", "initial"):
            w, h = node.w * PX, node.h * PX
            dash = ' stroke-dasharray="4 3"' if node.kind == "initial" else ""
            out.append(
                f'<rect x="{x - w / 2:.2f}" y="{y - h / 2:.2f}" width="{w:.2f}" height="{h:.2f}" rx="4" '
                f'fill="none" stroke="black"{dash}/>'
            )
        if node.note:
            out.append(_svg_text(x, y - 6, node.label, 16))
            out.append(_svg_text(x, y + 11, node.note, 10))
        else:
            out.append(_svg_text(x, y, node.label, 16))
    for edge in fig.edges:
        (x0, y0), (x1, y1) = px(edge.start), px(edge.end)
        if edge.control is None:
            d = f"M{x0:.2f},{y0:.2f} L{x1:.2f},{y1:.2f}"
        else:
            qx, qy = px(edge.control)
            d = f"M{x0:.2f},{y0:.2f} Q{qx:.2f},{qy:.2f} {x1:.2f},{y1:.2f}"
        if edge.highlighted:
            style = f'stroke="{red}" stroke-width="3" marker-end="url(#arrow-hl)"'
        else:
            style = 'stroke="black" stroke-width="1" marker-end="url(#arrow)"'
        dash = ' stroke-dasharray="5 3"' if edge.kind == "carry" else ""
        out.append(f'<path d="{d}" fill="none" {style}{dash}/>')
        if edge.label:
            lx, ly = px(edge.at)
            color = f' fill="{red}"' if edge.highlighted else ""
            out.append(_svg_text(lx, ly, edge.label, 12, color))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_name(spec) -> str:
    """The SVG's file name, beside the Markdown: ``<name>.svg``."""
    return f"{spec.name}.svg"


def context(derivation) -> dict:
    """What ``figure.tex.jinja`` lays out: the TikZ, the caption and the SVG's name (for the Markdown)."""
    fig = figure(derivation)
    return dict(tikz=tikz(fig), caption=fig.caption, svg=svg_name(derivation.spec))


def svg_file(derivation) -> str:
    """The SVG file written beside the Markdown, with rnngen's preamble (how ``emit`` recognises its files)."""
    from rnngen import __version__

    spec = derivation.spec
    preamble = f"Generated by rnngen {__version__}: the figure of {spec.name}.md. Do not edit by hand."
    command = f"Regenerate with: rnngen derive {spec.cli_args()} --markdown"
    return svg(figure(derivation), preamble, command)
