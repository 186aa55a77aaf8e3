"""Lowering pass: a gated cell's gates in one buffer, so that one product serves them all.

Each gate is a family of its own in the program (``zi``/``gi``, ``dzi``, ...: the document derives
them one by one), so ``lower.writes`` gives each gate its own products: for an LSTM, four input
products over all steps, four recurrent products per step and four products back into ``δh_{t-1}``
per step, where PyTorch's kernels make one of each. ``side_by_side`` keeps the gates of a chain in one
buffer (a ``Block``) and rewrites the writes so that

- the gates' input products over all steps are one product, with their input weights' transposes one
  per gate (a product over the gates in one call), at the first gate's write; their biases are each
  transpose's last row, against a column of ones beside the data's rows (``WithOnes``), so the product
  adds them: a copy of the data in place of a pass over every gate's rows (token ids, which pick rows,
  add the biases' row after); a gate whose input part is its bias alone, the GRU's ``b_hn``, is filled
  there too;
- each step's recurrent products are one GEMM with the recurrent weights' transposes side by side
  (``h_{t-1} [W_iᵀ W_fᵀ W_gᵀ W_oᵀ]`` in the module's rows), into a one-step scratch added to the step's
  gates in one add, at the first gate's write of the step;
- each step's sum ``Σ_k W_kᵀ δz_k`` over the gates' deltas is one GEMM: the deltas of the step side by
  side (one copy into a scratch) times the weights one above another.

The block holds the gates one behind another, ``(gates, T, B, n)``: each gate's array is then a
contiguous ``(T, B, n)`` for the elementwise work over all steps, which dominates the backward pass at
the medium workload (on the gates side by side, ``(T, B, gates n)``, each gate's columns are strided
and a pass over them costs 6x as much: 230 against 36 µs at the medium workload in float32), while
a step's GEMM still writes and reads the gates side by side, through the scratch. The per-gate
statements, their comments and their activations stay as they are: the stacking is a storage decision,
as the time-stacking of the input product is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sympy import Basic, MatMul, MatrixSymbol, Transpose

from rnngen import algebra as A
from rnngen import names
from rnngen.families import Family, adjoint_name, family, run_of, step_of
from rnngen.operations import (
    Apply,
    Assign,
    ByGate,
    ByInput,
    Copy,
    Gates,
    Gather,
    Gemm,
    IdSums,
    Joined,
    Lookup,
    Stack,
    Take,
    TakePlace,
    Update,
    Views,
    WithOnes,
    flat,
    symbols_of,
)

#: The base of a block's family: its steps are the gates' steps (``gates``, ``dgates2_f``).
BLOCK_BASE = "gates"


@dataclass(frozen=True)
class Block:
    """Families kept in one buffer, one behind another: ``(len(members), steps, B, width)``.

    Attributes:
        family: the block's family key (``gates``, ``gates2_f``; the deltas' block ``dgates``).
        members: the families' keys, in order.
        width: each member's rows (a size: ``n_h``).
    """

    family: str
    members: tuple
    width: object

    def span(self, families) -> tuple | None:
        """``(lo, hi)`` when ``families`` are the members ``lo .. hi - 1``, each once, else None."""
        at = sorted(self.members.index(f) for f in families if f in self.members)
        if not at or len(at) != len(families) or at != list(range(at[0], at[0] + len(at))):
            return None
        return at[0], at[-1] + 1

    def gates(self, lo: int, hi: int, t: int | None = None) -> Gates:
        """The members ``lo .. hi - 1`` at step ``t`` (None: all steps, as rows)."""
        return Gates(self.family, lo, hi, t, len(self.members))


# -- what the writes of ``lower.writes`` hold -------------------------------------------------------


def _core(ops) -> list:
    """The operations that compute (not the ``Take``, ``TakePlace`` and ``Views`` that bind names)."""
    return [op for op in ops if not isinstance(op, (Take, TakePlace, Views))]


def _column(expr):
    """``c`` when ``expr`` is ``c 1ᵀ`` for a parameter column ``c`` (a bias), else None."""
    if A.is_repeated_column(expr) and len(expr.args) == 2 and isinstance(expr.args[0], MatrixSymbol):
        return expr.args[0]
    return None


def _weight(p) -> bool:
    """True for a parameter matrix or its transpose (row notation stores the transpose)."""
    return isinstance(p, MatrixSymbol) or isinstance(p, Transpose) and isinstance(p.arg, MatrixSymbol)


def _stored(p) -> MatrixSymbol:
    """The parameter array ``p`` names (``U`` for ``U`` and ``Uᵀ``)."""
    return p.arg if isinstance(p, Transpose) else p


def _chain(key: str) -> tuple:
    """The layer and direction of the family ``key``: the chain it is a part of."""
    f = family(key)
    return f.layer, f.direction


@dataclass(frozen=True)
class _Input:
    """The write (index ``at``) of one gate's input part over all steps into ``out``: ``U X + b 1ᵀ``
    (``param`` U, ``data`` X, ``bias`` b or None), or ``b 1ᵀ`` alone (``param`` None, ``fill`` its op)."""

    at: int
    member: str
    out: MatrixSymbol
    data: object = None
    param: object = None
    bias: object = None
    fill: object = None


def _input(at: int, w, in_place: dict) -> _Input | None:
    """The ``_Input`` of ``w`` (index ``at``), a write of the forward sweep into one run of steps; ``in_place``
    maps a family built in another's buffer to that one (``Lowered.in_place``); else None."""
    core, run = _core(w.ops), run_of(w.stmt.target)
    if w.function != "_forward" or not run or not core:
        return None
    member, out = in_place.get(run[0], run[0]), w.stmt.target
    if len(core) == 1 and isinstance(core[0], Assign) and core[0].form == "fill" and _column(core[0].expr):
        return _Input(at, member, out, bias=_column(core[0].expr), fill=core[0])
    bias = None
    if len(core) == 2:
        add = core[1]
        bias = _column(add.expr) if isinstance(add, Update) and add.dest == out and add.op == "+" else None
        if bias is None:
            return None
    elif len(core) != 1:
        return None
    gemm = core[0]
    if isinstance(gemm, ByInput):  # float rows or token ids: the same product either way
        if len(gemm.rows) != 1 or len(gemm.ids) != 1 or not isinstance(gemm.ids[0], Lookup):
            return None
        gemm = gemm.rows[0]
    if not (isinstance(gemm, Gemm) and gemm.out == out and not gemm.per_step and gemm.copy is None):
        return None
    if not _weight(gemm.param) or not run_of(gemm.data):
        return None
    return _Input(at, member, out, gemm.data, gemm.param, bias)


def _recurrent(w):
    """``(k, gemm)`` when ``w`` writes a step and adds to it a product of one step's data and a weight
    through a scratch (``ops[k]`` the ``Gemm``, ``ops[k + 1]`` the add), else None."""
    if w.function != "_forward" or not step_of(w.stmt.target):
        return None
    for k, (op, add) in enumerate(zip(w.ops, w.ops[1:])):
        if (
            isinstance(op, Gemm)
            and op.per_step
            and isinstance(op.out, str)
            and _weight(op.param)
            and step_of(op.data)
            and add == Update(w.stmt.target, "+", op.out)
        ):
            return k, op
    return None


def _activation(w, k: int):
    """The activation ``w`` applies to its step in place right after the recurrent product ``ops[k]`` and its
    add, as the write's last operation (``sigmoid``); None if it does not."""
    tail = w.ops[k + 2 :]
    if len(tail) == 1 and isinstance(tail[0], Apply) and tail[0].dest == w.stmt.target:
        return tail[0].fn
    return None


def _terms(ops) -> list:
    """``[(k, param, data, into, through)]`` for each operation ``ops[k]`` that puts a product ``paramᵀ δ``
    (the transpose of a weight of the forward sweep times one step of deltas) into ``into``: a ``Gemm``
    through a scratch with the add after it (``through``), a ``Gemm`` straight into it, or a term added
    whole."""
    found = []
    for k, op in enumerate(ops):
        if isinstance(op, Gemm) and _weight(op.param) and step_of(op.data):
            if not isinstance(op.out, str):
                found.append((k, A.transpose(op.param), op.data, op.out, False))
            elif k + 1 < len(ops) and ops[k + 1] == Update(ops[k + 1].dest, "+", op.out):
                found.append((k, A.transpose(op.param), op.data, ops[k + 1].dest, True))
        elif isinstance(op, Update) and op.op == "+" and isinstance(op.expr, MatMul):
            coeff, factors = op.expr.as_coeff_matrices()
            if coeff == 1 and len(factors) == 2 and _weight(factors[0]) and step_of(factors[1]):
                found.append((k, A.transpose(factors[0]), factors[1], op.dest, False))
    return found


def _gradient(w):
    """``(dest, delta)`` when ``w`` writes a gradient ``Δ Dᵀ``, ``D Δᵀ`` (row notation) or ``Δ 1`` of a run of
    the deltas ``delta`` (an adjoint family), in either form of the inputs; else None."""
    ops = _core(w.ops)
    if w.function == "_forward" or len(ops) != 1:
        return None
    op = ops[0]
    if isinstance(op, ByInput):
        if len(op.rows) != 1 or len(op.ids) != 1 or not isinstance(op.ids[0], IdSums):
            return None
        op = op.rows[0]
    if not (isinstance(op, Assign) and op.form == "name" and isinstance(op.expr, MatMul)):
        return None
    coeff, factors = op.expr.as_coeff_matrices()
    if coeff != 1 or len(factors) != 2:
        return None
    runs = [run_of(f.arg if isinstance(f, Transpose) else f) for f in factors]
    deltas = [r[0] for r in runs if r and family(r[0]).is_adjoint]
    return (op.dest, deltas[0]) if len(deltas) == 1 else None


# -- the pass ---------------------------------------------------------------------------------------


def _runs(block: Block, fns: dict) -> list:
    """``[(lo, hi, fn)]``: the runs of adjacent members of ``block`` that ``fns`` gives one function (not None)."""
    runs = []
    for k, m in enumerate(block.members):
        f = fns.get(m)
        if f is None:
            continue
        if runs and runs[-1][1] == k and runs[-1][2] == f:
            runs[-1] = (runs[-1][0], k + 1, f)
        else:
            runs.append((k, k + 1, f))
    return runs


class _Rewrite:
    """The writes of one module, rewritten block by block."""

    def __init__(self, lowered):
        self.writes = list(lowered.writes)
        self.storage = dict(lowered.storage)
        self.in_place = dict(lowered.in_place)
        self.taken = {op.name: op.shape for w in self.writes for op in flat(w.ops) if isinstance(op, Take)}
        self.blocks: list = []
        #: each parameter a forward block stacks -> (the block, its part: in, rec or bias, the gate's place)
        self.place: dict = {}

    def block(self, members: list, width, adjoint: bool = False) -> Block | None:
        """The block of ``members`` (a chain's gates or their deltas), when each has a buffer of its own and
        all are stored alike; its family is registered and stored as they are."""
        if len(members) < 2 or any(m not in self.taken for m in members):
            return None
        if len({self.storage.get(m) for m in members}) != 1 or not self.storage[members[0]].steps:
            return None
        first = family(members[0])
        key = Family(BLOCK_BASE, "adjoint" if adjoint else "value", first.layer, first.direction).key
        block = Block(key, tuple(members), width)
        self.blocks.append(block)
        self.storage[key] = self.storage[members[0]]
        return block

    def take(self, block: Block, ops: list) -> None:
        """The ``Take`` of ``block``'s buffer, into ``ops`` unless made already in any function: one buffer of
        the call's set, which its members are views of and every function reaches through its views."""
        if not any(isinstance(op, Take) and op.name == block.family for w in self.writes for op in (*w.ops, *ops)):
            ops.append(Take(block.family, (str(len(block.members)), *self.taken[block.members[0]])))

    def stack(self, block: Block, part: str, params: list, form: str, function: str, ops: list, biases=()) -> Stack:
        """The ``Stack`` of ``params``, with ``biases`` as their last rows if given (and its ``Take`` and fill,
        first in ``function``, into ``ops``)."""
        name = names.stacked_weights(block.family, part, form != "rows")
        stack = Stack(name, tuple(params), form, tuple(biases))
        made = [op for w in self.writes if w.function == function for op in w.ops] + ops
        if stack not in made:
            k, (rows, cols) = len(params), (str(d) for d in params[0].shape)
            shape = {
                "rows": (f"{k} * {rows}", cols),
                "columns": (cols, f"{k} * {rows}"),
                "layers": (str(k), rows) if cols == "1" else (str(k), f"{cols} + 1" if biases else cols, rows),
            }[form]
            ops += [Take(stack.name, shape), stack]
        return stack

    @staticmethod
    def views(block: Block, ops: list) -> None:
        """The ``Views`` of ``block``'s steps, into ``ops`` (before their first use there); ``views_once`` keeps
        the first of a function's."""
        if Views(block.family, True) not in ops:
            ops.append(Views(block.family, True))

    def views_once(self) -> None:
        """Each block's ``Views`` in a function at its first place only (each operation that reads a block's
        steps has one before it in its write, so the first is before every use)."""
        seen = set()
        for at, w in enumerate(self.writes):
            ops = []
            for op in w.ops:
                key = (w.function, op)
                if isinstance(op, Views) and op.family in {b.family for b in self.blocks}:
                    if key in seen:
                        continue
                    seen.add(key)
                ops.append(op)
            self.writes[at] = replace(w, ops=tuple(ops))

    # -- forward -------------------------------------------------------------------------------

    def forward(self) -> None:
        """Each chain's block: the gates whose steps add a product of one state's previous step through a
        scratch (its recurrent gates), with the gates whose input product reads the same input; then its
        input products and each step's recurrent products, one each."""
        gates, width, fn = {}, {}, {}  # the state each step's recurrent products read -> the gates that read it
        for w in self.writes:
            found = _recurrent(w)
            if found:
                member = step_of(w.stmt.target)[0]
                chain = gates.setdefault(step_of(found[1].data)[0], [])
                if member not in chain:
                    chain.append(member)
                    width[member] = w.stmt.target.shape[0]
                    fn[member] = _activation(w, found[0])
        inputs = [x for at, w in enumerate(self.writes) if (x := _input(at, w, self.in_place))]
        for chain in gates.values():
            # the gates with one input product each, of one input (not a bidirectional layer's two halves)
            data = {x.data for x in inputs if x.member in chain and x.param is not None}
            mine = [x.member for x in inputs if x.param is not None and x.data in data and len(data) == 1]
            mine = [m for m in mine if _chain(m) == _chain(chain[0])]
            both = [m for m in mine if m in chain]
            # the gates with an input part first, so that they, and those with a recurrent part, are runs;
            # among those with both, and among the others of the chain (all of them where no input product
            # is stacked: one-to-many), the rarer activations first (the LSTM's g, then i, f, o): each run of
            # gates with one activation is one call, forward, and in the backward sweep the gates that
            # multiply δc_t (g, i, f) are one run too
            rest = [m for m in chain if m not in both]
            for run in (both, rest):
                count = {m: sum(fn[m] == fn[g] for g in run) for m in run}
                run.sort(key=count.get)
            members = [m for m in mine if m not in chain] + both + rest
            block = self.block(members, width[chain[0]])
            if block is not None:
                if not self.inputs(block, [x for x in inputs if x.member in block.members]):
                    self.gather(block)
                self.recurrences(block, chain)

    def inputs(self, block: Block, parts: list) -> bool:
        """The gates' input products and biases as one product and one add at the first gate's write; a
        part that is only a bias (the GRU's ``b_hn``) is filled there too, before any step adds to it.
        False where they are not of that form."""
        products = sorted((x for x in parts if x.param is not None), key=lambda x: block.members.index(x.member))
        span = block.span([x.member for x in products])
        if span is None or len({x.bias is None for x in products}) != 1:
            return False
        by_input = {any(isinstance(op, ByInput) for op in self.writes[x.at].ops) for x in products}
        if len(by_input) != 1:  # token ids read by some gates' products only: not one product
            return False
        first = self.writes[min(x.at for x in parts)]
        ops: list = []
        self.take(block, ops)
        out = block.gates(*span)
        data, biases = products[0].data, [x.bias for x in products if x.bias is not None]
        weights = self.stack(block, "in", [x.param for x in products], "layers", first.function, ops, biases)
        rows = [Gemm(out, data, weights, None, False)]
        if biases:
            # The biases as the weights' last row, times a column of ones beside the data's rows: the
            # product adds them. A copy of the data (n_x wide) in place of a pass over the gates' rows
            # (gates n_h wide) after it.
            ones = names.with_ones(block.family)
            rows = [WithOnes(ones, data), replace(rows[0], data=ones)]
        if by_input == {True}:
            ids = [Lookup(out, data, weights, False)]
            if biases:  # the ids pick rows of the weights alone: their last rows, the biases, are added
                ids.append(Update(out, "+", weights))
            ops.append(ByInput(tuple(rows), tuple(ids)))
        else:
            ops += rows
        ops += [x.fill for x in parts if x.param is None]
        for x in parts:
            w = self.writes[x.at]
            kept = [op for op in w.ops if isinstance(op, (Take, TakePlace, Views))]
            self.writes[x.at] = replace(w, ops=tuple(kept + (ops if w is first else [Joined(block.family)])))
        for x in products:
            self.place[x.param] = (block, "in", block.members.index(x.member))
        for x in parts:
            if x.bias is not None:
                self.place[x.bias] = (block, "bias", block.members.index(x.member))
        return True

    def gather(self, block: Block) -> None:
        """The gates' input parts, of another form (a bidirectional layer's two halves; one-to-many's first
        step, whose input parts are steps built in the gates' places, and the biases after it), each computed
        as it is but all at the first one's write, where nothing they read is written later: so that the
        first step's gates are written one after another, as the one GEMM of their recurrent products needs."""

        def input_part(w) -> bool:
            target = run_of(w.stmt.target) or step_of(w.stmt.target)
            if w.function != "_forward" or not target:
                return False
            if run_of(w.stmt.target):
                return self.in_place.get(target[0], target[0]) in block.members
            # a step: a pre-activation built in a gate's place (not a gate's own step, which its recurrent
            # product writes)
            return self.in_place.get(target[0]) in block.members and not _recurrent(w)

        ats = [at for at, w in enumerate(self.writes) if input_part(w)]
        if len(ats) < 2:
            return
        moved = [op for at in ats for op in _core(self.writes[at].ops)]
        read = {(step_of(s) or run_of(s))[0] for op in moved for s in symbols_of(op) if step_of(s) or run_of(s)}
        between = (self.writes[at] for at in range(ats[0] + 1, ats[-1]) if at not in ats)
        if any((step_of(w.stmt.target) or run_of(w.stmt.target) or (None,))[0] in read for w in between):
            return
        # nor does a write the moved ones pass read or write the steps they write (in whichever buffer)
        for at in ats[1:]:
            written = self._extents(op.dest for op in _core(self.writes[at].ops) if hasattr(op, "dest"))
            written |= self._extents(op.out for op in _core(self.writes[at].ops) if hasattr(op, "out"))
            for w in (self.writes[k] for k in range(ats[0] + 1, at) if k not in ats):
                touched = self._extents(s for op in _core(w.ops) for s in symbols_of(op))
                if any(f == g and lo <= hi2 and lo2 <= hi for f, lo, hi in written for g, lo2, hi2 in touched):
                    return
        # the names the moved operations spell, bound with them at the first write (whose lists of step views
        # they are spelled with)
        bindings = [
            op
            for at in ats
            for op in self.writes[at].ops
            if isinstance(op, (Take, TakePlace)) or isinstance(op, Views) and at == ats[0]
        ]
        for at in ats:
            w = self.writes[at]
            ops = [*dict.fromkeys(bindings), *moved] if at == ats[0] else [Joined(block.family)]
            self.writes[at] = replace(w, ops=tuple(ops))

    def _extents(self, syms) -> set:
        """``(buffer, first step, last step)`` of each step or run among ``syms``, by the family whose buffer it
        is in (a family built in another's place: that one's)."""
        found = set()
        for s in (s for s in syms if isinstance(s, Basic)):
            step, run = step_of(s), run_of(s)
            family, lo, hi = (step[0], step[1], step[1]) if step else run or (None, 0, 0)
            if family:
                found.add((self.in_place.get(family, family), lo, hi))
        return found

    def recurrences(self, block: Block, chain: list) -> None:
        """Each step's recurrent products of the gates ``chain`` as one GEMM into a scratch and one add into
        their gates of the step, at the first gate's write of the step. A step where another write between
        the gates' writes reads or writes one of them keeps its products."""
        span, ordered = block.span(chain), sorted(chain, key=block.members.index)
        if span is None:
            return
        by_step: dict = {}
        for at, w in enumerate(self.writes):
            found, step = _recurrent(w), step_of(w.stmt.target)
            if found and step[0] in chain:
                by_step.setdefault(step[1], []).append((at, *found))
        params = {}
        for t, group in by_step.items():
            gemms = {step_of(self.writes[at].stmt.target)[0]: gemm for at, _, gemm in group}
            params.update({m: g.param for m, g in gemms.items()})
            if len(group) != len(chain) or len({g.data for g in gemms.values()}) != 1 or not self._alone(group, t):
                continue
            # a later gate's operations before its product stay at its write, after the one add: bindings only
            binding = (Take, TakePlace, Views, Copy, Joined)  # a copy of its own weight is dropped with its product
            if any(not isinstance(op, binding) for at, k, _ in group[1:] for op in self.writes[at].ops[:k]):
                continue
            at0, k0, _ = group[0]
            w0 = self.writes[at0]
            ops = list(w0.ops[:k0])
            self.take(block, ops)
            weights = self.stack(block, "rec", [gemms[m].param for m in ordered], "columns", w0.function, ops)
            scratch = names.step_scratch(block.family)
            if scratch not in self.taken:
                self.taken[scratch] = ("B", f"{len(chain)} * {block.width}")
                ops.append(Take(scratch, self.taken[scratch]))
            self.views(block, ops)
            ops += [
                Gemm(scratch, gemms[chain[0]].data, weights, None, True),
                Update(block.gates(*span, t), "+", ByGate(scratch, len(chain), block.width)),
            ]
            # each gate's activation, where it is all that is left of its write: one call per run of gates
            # with one activation, here, after the one add
            fns = {step_of(self.writes[at].stmt.target)[0]: _activation(self.writes[at], k) for at, k, _ in group}
            applied = {m for m, f in fns.items() if f is not None}
            ops += [Apply(block.gates(lo, hi, t), f) for lo, hi, f in _runs(block, fns)]
            tail = [] if fns[step_of(w0.stmt.target)[0]] else list(w0.ops[k0 + 2 :])
            self.writes[at0] = replace(w0, ops=tuple(ops + tail))
            for at, k, _ in group[1:]:
                w = self.writes[at]
                rest = w.ops[k + 2 :] if step_of(w.stmt.target)[0] not in applied else ()
                self.writes[at] = replace(w, ops=(*w.ops[:k], Joined(block.family), *rest))
        for m in ordered:
            self.place[params[m]] = (block, "rec", block.members.index(m))

    def _alone(self, group: list, t: int) -> bool:
        """True when no write between the first and the last of ``group`` (the gates' writes at step ``t``)
        other than theirs reads or writes one of the gates at step ``t``."""
        chain = {step_of(self.writes[at].stmt.target)[0] for at, _, _ in group}
        ats = [at for at, _, _ in group]
        for at in range(ats[0] + 1, ats[-1]):
            if at in ats:
                continue
            w = self.writes[at]
            for sym in (s for op in flat(w.ops) for s in symbols_of(op)) if _core(w.ops) else ():
                step, run = step_of(sym), run_of(sym)
                key = (step or run or (None,))[0]
                if self.in_place.get(key, key) in chain and (step and step[1] == t or run and run[1] <= t <= run[2]):
                    return False
        return True

    # -- backward ------------------------------------------------------------------------------

    def backward(self) -> None:
        """The deltas' block of each forward block, and each step's recurrent sum over it as one GEMM."""
        grads = [g for w in self.writes if (g := _gradient(w))]
        for block in list(self.blocks):
            dblock = self.deltas(block, grads)
            if dblock is not None:
                for at in range(len(self.writes)):
                    if self.writes[at].function != "_forward":
                        self.sums(at, block, dblock)
                self.elementwise(dblock)

    def deltas(self, block: Block, grads: list) -> Block | None:
        """The block of the deltas of ``block``'s gates, in its order: each gate's delta read off the gradient
        of a parameter stacked for it (``dE/dU_k = Δ_k Xᵀ``), one per gate, else None."""
        of_gate: dict = {}
        for dest, delta in grads:
            for param, (b, _, k) in self.place.items():
                if (
                    b == block
                    and dest.name == adjoint_name(_stored(param).name)
                    and of_gate.setdefault(k, delta) != delta
                ):
                    return None
        if sorted(of_gate) != list(range(len(block.members))):
            return None
        return self.block([of_gate[k] for k in range(len(block.members))], block.width, adjoint=True)

    def sums(self, at: int, block: Block, dblock: Block) -> None:
        """A sum ``Σ_k W_kᵀ δ_k`` in ``self.writes[at]`` over all the recurrent weights ``block`` stacks, each
        with its gate's delta at one step: the deltas side by side in a scratch (one copy) and one GEMM
        with the weights one above another, where the first term was a product into its destination and
        nothing between the terms does anything but add to it."""
        w = self.writes[at]
        stacked = sorted((k, p) for p, (b, part, k) in self.place.items() if b == block and part == "rec")
        weights_of = {p for _, p in stacked}
        found = [
            f for f in _terms(w.ops) if f[1] in weights_of and dblock.members[self.place[f[1]][2]] == step_of(f[2])[0]
        ]
        if sorted(self.place[f[1]][2] for f in found) != [k for k, _ in stacked]:
            return
        if len({step_of(f[2])[1] for f in found}) != 1 or len({f[3] for f in found}) != 1:
            return
        found.sort()
        k0, _, data, into, through = found[0]
        lead = w.ops[k0]
        if not isinstance(lead, Gemm):  # the first term is added whole: no destination to write into
            return
        dropped = {k for k, *_ in found} | {k + 1 for k, *_, by_scratch in found if by_scratch}
        between = [op for k, op in enumerate(w.ops[k0 : found[-1][0] + 1], k0) if k not in dropped]
        adds = [op for op in between if not isinstance(op, (Take, TakePlace, Views, Copy))]
        if any(not (isinstance(op, Update) and op.dest == into and op.op == "+") for op in adds):
            return  # something else happens between the terms: they are not one sum added in a row
        t = step_of(data)[1]
        lo, hi = stacked[0][0], stacked[-1][0] + 1
        ops: list = []
        self.take(dblock, ops)
        weights = self.stack(block, "rec", [p for _, p in stacked], "rows", w.function, ops)
        scratch = names.step_scratch(dblock.family)
        if scratch not in self.taken:
            self.taken[scratch] = ("B", f"{hi - lo} * {dblock.width}")
            ops.append(Take(scratch, self.taken[scratch]))
        self.views(dblock, ops)
        ops += [
            Gather(ByGate(scratch, hi - lo, dblock.width), dblock.gates(lo, hi, t)),
            Gemm(lead.out, scratch, weights, None, True),
        ]
        if through:
            ops.append(Update(into, "+", lead.out))
        kept = [op for k, op in enumerate(w.ops) if k not in dropped]
        before = sum(1 for k in range(k0) if k not in dropped)
        self.writes[at] = replace(w, ops=tuple(kept[:before] + ops + kept[before:]))

    def elementwise(self, dblock: Block) -> None:
        """Consecutive writes that each only multiply (or add to) one gate's delta at one step by the same
        value (``δz_g_t = δc_t ∘ f′_g_t``, ``δz_i_t``, ``δz_f_t``: ``*= δc_t``), for adjacent gates of
        ``dblock``: one operation on their gates of the step, at the first of the writes."""
        at = 0
        while at < len(self.writes):
            key = self._alone_update(at, dblock)
            run = [at]
            while key and run[-1] + 1 < len(self.writes) and self._alone_update(run[-1] + 1, dblock) == key:
                run.append(run[-1] + 1)
            span = dblock.span([self.writes[a].stmt.step[0] for a in run]) if len(run) > 1 else None
            if span is not None:
                t, op, expr = key
                ops: list = []
                self.take(dblock, ops)
                self.views(dblock, ops)
                for a in run:
                    w = self.writes[a]
                    kept = [o for o in w.ops if isinstance(o, (Take, TakePlace, Views))]
                    mine = ops + [Update(dblock.gates(*span, t), op, expr)] if a == run[0] else [Joined(dblock.family)]
                    self.writes[a] = replace(w, ops=tuple(kept + mine))
            at = run[-1] + 1

    def _alone_update(self, at: int, dblock: Block):
        """``(t, op, expr)`` when ``self.writes[at]`` only updates its step ``t`` of a member of ``dblock`` in
        place by ``expr``, else None."""
        w = self.writes[at]
        core = _core(w.ops)
        if not (w.stmt.step and w.stmt.step[0] in dblock.members and len(core) == 1):
            return None
        op = core[0]
        if not (isinstance(op, Update) and op.dest == w.stmt.target and not isinstance(op.expr, str)):
            return None
        t = w.stmt.step[1]
        reads = {step_of(s) for s in A.symbols_in(op.expr) if step_of(s)}
        if any((self.in_place.get(f, f), k) in {(m, t) for m in dblock.members} for f, k in reads):
            return None  # the value reads a delta of the step that one operation over them would change first
        return t, op.op, op.expr

    # -- what no operation reads any more ------------------------------------------------------

    def unread_dropped(self) -> None:
        """The scratches and transposed copies that no operation reads any more, not taken or filled."""
        ops = [op for w in self.writes for op in flat(w.ops)]
        read = {op.copy for op in ops if isinstance(op, Gemm)} | {op.name for op in ops if isinstance(op, Stack)}
        read |= {
            getattr(op, f)
            for op in ops
            for f in ("out", "data", "expr", "dest")
            if isinstance(getattr(op, f, None), str)
        }

        def kept(op) -> bool:
            if isinstance(op, (Copy, Take)):
                return op.name in read or op.name in self.storage
            return True

        self.writes = [replace(w, ops=tuple(op for op in w.ops if kept(op))) for w in self.writes]


def side_by_side(lowered):
    """``lowered`` (a ``lower.Lowered``) with each gated chain's gates and their deltas in one buffer
    (``Lowered.blocks``), and the products over all of them one product each."""
    rewrite = _Rewrite(lowered)
    rewrite.forward()
    if not rewrite.blocks:
        return lowered
    rewrite.backward()
    rewrite.views_once()
    rewrite.unread_dropped()
    # a block no product reads (the deltas of a truncated sweep, whose sums run over ages) stays apart
    taken = {op.name for w in rewrite.writes for op in w.ops if isinstance(op, Take)}
    blocks = tuple(b for b in rewrite.blocks if b.family in taken)
    storage = {f: st for f, st in rewrite.storage.items() if f in lowered.storage or f in taken}
    return replace(lowered, writes=tuple(rewrite.writes), storage=storage, blocks=blocks)
