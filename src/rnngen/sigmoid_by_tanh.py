"""Lowering pass: a gated step's sigmoid gates through one tanh with its other gates.

After ``side_by_side`` each step of an LSTM applies ``tanh`` to its gate g and the sigmoid to i, f and o
(a GRU the sigmoid to r and z), and the sigmoid helper makes five NumPy calls (its check for an exp that
would overflow, the negation, exp, the add, the division) beside its own. With the sigmoid gates' input
and recurrent weights and their biases halved once per call (``Stack.halved``), the step's product leaves
``a / 2`` in those gates, and

    σ(a) = (1 + tanh(a / 2)) / 2

is one ``tanh`` over the step's gates (g's and the others' in one call where they are side by side) and two
passes after it (``FromTanh``): an LSTM step makes 3 NumPy calls for its activations where it made 6
and the helper's, a GRU step 3 where it made 5 and the helper's. Where a call costs its overhead (the
small and char-rnn workloads) that is 5-10 % of the LSTM's call; at medium, 3-8 % in float32 and none in
float64, where ``tanh`` costs more than ``exp`` per element (README, "Gated cells").

What changes is the kind of accuracy: the gate is right to about an ulp of 1, absolutely, not to an ulp
of itself. Where ``σ(a)`` is below an ulp of 1 (``a`` below about -37 in float64, -17 in float32) the
computed gate is 0 or that ulp. A gate multiplies a bounded value (``c_{t-1}``, ``g_t``, ``tanh(c_t)``,
``h_{t-1}``), so its absolute error is what reaches the state and the gradients. The output layer's
sigmoid, which a log may read, keeps its helper, right to an ulp of itself.

The pass rewrites a block only where each step's sigmoid gates are written by nothing but the block's
stacked input product and the step's one recurrent product (a layer whose input parts ``side_by_side``
gathers rather than stacks, a bidirectional upper layer's or a one-to-many network's first, keeps the
helper), at every step, and where nothing else reads those stacks.
"""

from __future__ import annotations

from dataclasses import fields, replace

from sympy import Basic

from rnngen.families import run_of, step_of
from rnngen.operations import Apply, ByGate, ByInput, FromTanh, Gates, Gemm, Lookup, Stack, Update, flat


def sigmoid_by_tanh(lowered):
    """``lowered`` (a ``lower.Lowered``) with each block's sigmoid gates taken through one tanh per step."""
    writes = list(lowered.writes)
    for block in lowered.blocks:
        plan = _plan(writes, block, lowered.in_place)
        if plan is not None:
            writes = _rewritten(writes, block.family, *plan)
    return replace(lowered, writes=tuple(writes))


def _plan(writes: list, block, in_place: dict):
    """``(lo, hi, {stack: halved stack})`` when the block's gates ``lo .. hi - 1`` are its sigmoid gates at
    every step, written only as the module docstring says; else None. ``in_place`` maps a family built in
    another's buffer to that one (``Lowered.in_place``: a gate's pre-activation to the gate)."""
    ops = [op for w in writes for op in flat(w.ops)]
    sigmoids = [op.dest for op in ops if _applies(op, block.family, "sigmoid")]
    if len({(g.lo, g.hi) for g in sigmoids}) != 1:
        return None
    lo, hi = sigmoids[0].lo, sigmoids[0].hi
    sigmoid_families = set(block.members[lo:hi])
    stacks, steps, feeds = {}, set(), []
    for w in writes:
        products = {op.out: op for op in flat(w.ops) if isinstance(op, Gemm) and isinstance(op.out, str)}
        for op in flat(w.ops):
            dest = getattr(op, "dest", getattr(op, "out", None))
            if isinstance(dest, Gates) and dest.block == block.family and dest.lo < hi and lo < dest.hi:
                if not (dest.lo <= lo and hi <= dest.hi):
                    return None
                product = products.get(op.expr.name) if isinstance(op, Update) and isinstance(op.expr, ByGate) else None
                source = _source(op, product)
                if source is None and not _applies(op, block.family, "sigmoid"):
                    return None
                if source is not None:
                    if stacks.setdefault(source, (lo - dest.lo, hi - dest.lo)) != (lo - dest.lo, hi - dest.lo):
                        return None  # one stack feeding the gates at two places
                    feeds += [op, product]
                    if dest.t is not None:  # a step's recurrent product
                        steps.add(dest.t)
            elif _stored_in(dest, in_place) in {block.family, *sigmoid_families}:
                return None  # the block's buffer, or a sigmoid gate, written otherwise than through the block
    if len(stacks) != 2 or steps != {g.t for g in sigmoids}:
        return None
    if any(stacks[s][1] - stacks[s][0] != hi - lo for s in stacks):
        return None
    readers = [op for op in ops if not isinstance(op, Stack) and any(v in stacks for v in _values(op))]
    if any(op not in feeds for op in readers):
        return None  # a stack something else reads too, which the halving would change
    return lo, hi, {s: replace(s, halved=at) for s, at in stacks.items()}


def _applies(op, block: str, fn: str) -> bool:
    return isinstance(op, Apply) and isinstance(op.dest, Gates) and op.dest.block == block and op.fn == fn


def _source(op, product):
    """The stack whose product ``op`` writes or adds into gates: a ``Gemm`` or ``Lookup`` of it, the add of its
    biases' row (token ids), or the add of the scratch that ``product`` (a ``Gemm`` of it) filled; else None."""
    if isinstance(op, (Gemm, Lookup)) and isinstance(op.param, Stack):
        return op.param
    if isinstance(op, Update) and op.op == "+":
        if isinstance(op.expr, Stack):
            return op.expr
        if product is not None and isinstance(product.param, Stack) and product.param.form == "columns":
            return product.param
    return None


def _values(op) -> list:
    return [getattr(op, f.name) for f in fields(op)]


def _stored_in(dest, in_place: dict) -> str | None:
    """The buffer ``dest`` writes into, by its family's name: a step, a run or a whole family (built in its own
    buffer or another's), a buffer or a scratch by name, or a view of one by gate; None for a block's gates."""
    if isinstance(dest, ByGate):
        return dest.name
    if isinstance(dest, str):
        return dest
    if not isinstance(dest, Basic):
        return None
    found = step_of(dest) or run_of(dest)
    name = found[0] if found else getattr(dest, "name", None)
    return in_place.get(name, name)


def _rewritten(writes: list, block: str, lo: int, hi: int, halved: dict) -> list:
    """``writes`` with the stacks halved and each step's activations of the block as one tanh and a ``FromTanh``."""
    out = []
    for w in writes:
        ops = [_swapped(op, halved) for op in w.ops]
        while sigmoid := next((op for op in ops if _applies(op, block, "sigmoid")), None):
            g = sigmoid.dest
            # a tanh run of the same step beside the sigmoid gates, in the block and in the operations (nothing
            # between them reads the gates), joins their one tanh
            at = ops.index(sigmoid)
            near = [ops[k] for k in (at - 1, at + 1) if 0 <= k < len(ops)]
            beside = [o for o in near if _applies(o, block, "tanh") and o.dest.t == g.t]
            beside = [o for o in beside if o.dest.hi == g.lo or o.dest.lo == g.hi]
            first, last = min(o.dest.lo for o in [sigmoid, *beside]), max(o.dest.hi for o in [sigmoid, *beside])
            ops = [o for o in ops if o not in beside]
            at = ops.index(sigmoid)
            ops[at : at + 1] = [Apply(replace(g, lo=first, hi=last), "tanh"), FromTanh(g)]
        out.append(replace(w, ops=tuple(ops)))
    return out


def _swapped(op, halved: dict):
    """``op`` with each stack of ``halved`` replaced by its halved form (inside a ``ByInput`` too)."""
    if isinstance(op, ByInput):
        return replace(
            op, rows=tuple(_swapped(o, halved) for o in op.rows), ids=tuple(_swapped(o, halved) for o in op.ids)
        )
    if isinstance(op, Stack):
        return halved.get(op, op)
    changed = {f.name: halved[v] for f in fields(op) if isinstance(v := getattr(op, f.name), Stack) and v in halved}
    return replace(op, **changed) if changed else op
