"""Lowering: the decisions that turn the optimized program into a NumPy module's storage, as a stage.

``lower(program)`` is a pure function from the optimized program to a ``Lowered`` program: the same
statements with every storage decision the printer then only spells. Each decision is a small pass
here with a docstring that says what it decides and why, testable on hand-built programs:

- ``storage_of``: how each family is stored (steps ``(count, B, n)`` or time-stacked rows), and
  which step is at index 0;
- ``buffers_to_reuse``: a value written into the buffer of a value that is dead by then;
- ``steps_built_in_place``: a family written straight into the buffer of the family built on it;
- ``deltas_carried``: a masked network's delta passed on whole only at the steps where a padded
  sequence still reaches a real step along its chain (elsewhere it is 0);
- ``reads_targets_as_classes`` / ``softmax_outputs``: class-index targets kept as indices where
  every reader takes them so, and the softmax a ``log_softmax`` can reuse;
- ``writes``: how each statement is written into its storage, as a list of the operations of
  ``operations.py``: ``Take`` a buffer, ``Views`` of its steps, ``Gemm`` into a destination or a
  one-step scratch with or without a contiguous transposed ``Copy`` of the weight, ``Into``,
  ``Update`` and ``Apply`` in place, ``Assign`` a value the array library makes. The module's set
  of buffers is read from them. A step read of a family written whole gets a ``Views`` made with
  the buffers; a family built in another's place and written whole is spelled as that buffer;
- ``ByInput``: a write that reads the network's inputs ``X`` in both forms the caller may give
  them, float rows or token ids (``X`` their one-hot rows, implied): the input projection
  ``U X`` a ``Gemm`` or a ``Lookup`` of rows, ``dE/dU = Δz Xᵀ`` a product or ``IdSums``, a
  scatter-add (``takes_token_ids``);
- ``Lowered.row_views``: the runs of steps read as rows, views made once with the buffers;
- ``unread_names_dropped``: no name bound for a buffer reached only through those views.
- ``sigmoid_by_tanh`` (its own module, after ``side_by_side``): a gated step's sigmoid gates through
  one tanh with its other gates, their weights halved once per call;
- ``loss_with_delta``: the cross-entropy and its output delta ``Ŷ - Y`` in one call, which reads the
  targets' probabilities once; ``loss_and_grads`` then skips the loss's own line.

``Build`` keeps the ``Lowered`` value; a second array library needs a printer and these decisions,
not a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from rnngen import algebra as A
from rnngen import names
from rnngen.activations import elementwise
from rnngen.families import adjoint_name, run_of, step_of
from rnngen.operations import (
    Apply,
    Assign,
    ByInput,
    Carried,
    Copy,
    Gemm,
    IdSums,
    Into,
    Lookup,
    LossAndDelta,
    Padded,
    Reuse,
    Take,
    TakePlace,
    Update,
    Views,
    Write,
    flat,
    symbols_of,
)
from rnngen.program import Program, family_of, stacked
from rnngen.side_by_side import side_by_side
from rnngen.sigmoid_by_tanh import sigmoid_by_tanh


@dataclass(frozen=True)
class Storage:
    """How one family is stored.

    Attributes:
        first: the step held at index 0 (``h`` starts at step 0, the others at 1).
        count: how many steps it holds.
        steps: True for a ``(count, B, n)`` array indexed by step, False for
            time-stacked rows ``(count * B, n)``.
    """

    first: int
    count: int
    steps: bool


def storage_of(program: Program) -> dict:
    """The storage of every family the program reads or writes."""
    per_step, first, last = {"x", "y", "m"}, {}, {}  # the caller hands x, y and a mask over as (T, B, n)
    for s in program.stmts:
        for sym in [s.target, *A.symbols_in(s.expr)]:
            step, run = step_of(sym), run_of(sym)
            if step:
                per_step.add(step[0])
                family, lo, hi = step[0], step[1], step[1]
            elif run:
                family, lo, hi = run
            else:
                continue
            first[family] = min(first.get(family, lo), lo)
            last[family] = max(last.get(family, hi), hi)
    return {f: Storage(lo, last[f] - lo + 1, f in per_step) for f, lo in first.items()}


def kept_state(expr):
    """``(s, new, m)`` when ``expr`` is ``s + (1 m) ∘ (new - s)`` (``cells.keep``: a masked step's state),
    else None."""
    if not (isinstance(expr, MatAdd) and len(expr.args) == 2):
        return None
    for s, other in (expr.args, reversed(expr.args)):
        if isinstance(other, HadamardProduct) and len(other.args) == 2:
            row = next((f for f in other.args if A.is_repeated_row(f)), None)
            diff = next((f for f in other.args if f is not row), None)
            if row is not None and isinstance(diff, MatAdd) and len(diff.args) == 2 and A.neg(s) in diff.args:
                new = next(t for t in diff.args if t != A.neg(s))
                return s, new, row.args[-1]
    return None


def passed_whole(terms: list):
    """``(a, m, rest)`` when ``terms`` hold ``a`` and ``-(a ∘ (1 m))``, together ``a ∘ (1 - m)``: a state's
    delta passed on whole where the mask ``m`` is 0; else None."""
    for term in terms:
        c, body = A.split_coeff(term)
        if c != -1 or not isinstance(body, HadamardProduct) or len(body.args) != 2:
            continue
        row = next((f for f in body.args if A.is_repeated_row(f)), None)
        a = next((f for f in body.args if f is not row), None)
        if row is not None and a in terms:
            return a, row.args[-1], [t for t in terms if t != term and t != a]
    return None


def is_targets(expr) -> bool:
    return isinstance(expr, MatrixSymbol) and family_of(expr) == "y"


def is_inputs(expr) -> bool:
    """The network's inputs ``X`` (a step or a run of them): the family token ids may stand for."""
    return isinstance(expr, MatrixSymbol) and family_of(expr) == "x"


def input_sums(expr):
    """``(D, X, row)`` when ``expr`` is ``D Xᵀ`` (``X Dᵀ``: ``row``) for the inputs ``X``, else None:
    the gradient of the input weight, a scatter-add of ``D``'s rows when ``X`` is given as token ids."""
    if not isinstance(expr, MatMul):
        return None
    coeff, factors = expr.as_coeff_matrices()
    if coeff != 1 or len(factors) != 2 or not isinstance(factors[1], Transpose):
        return None
    left, right = factors[0], factors[1].arg
    if is_inputs(right) and is_data(left) and not is_inputs(left):
        return left, right, False
    if is_inputs(left) and is_data(right) and not is_inputs(right):
        return right, left, True
    return None


def minus_targets(expr):
    """``(P, Y)`` when ``expr`` is ``P - Y`` for the targets ``Y``, else None."""
    if not (isinstance(expr, MatAdd) and len(expr.args) == 2):
        return None
    (c1, a), (c2, b) = sorted((A.split_coeff(t) for t in expr.args), key=lambda cb: -cb[0])
    return (a, b) if (c1, c2) == (1, -1) and is_targets(b) and not is_targets(a) else None


def without_mask(expr):
    """``expr`` without its factor of a mask row, ``(Ŷ - Y) ∘ (1 m)`` -> ``Ŷ - Y`` (the mask is applied
    after, in place: ``Padded``); any other expression as it is."""
    if isinstance(expr, HadamardProduct) and len(expr.args) == 2:
        kept = [f for f in expr.args if not A.is_repeated_row(f)]
        return kept[0] if len(kept) == 1 else expr
    return expr


def targets_dot_log_softmax(body, softmax_of: dict):
    """``(Y, O)`` when ``body`` is ``Y ∘ log_softmax(O)`` for the targets ``Y`` and a known softmax(O), else None."""
    if not (isinstance(body, HadamardProduct) and len(body.args) == 2):
        return None
    y = next((f for f in body.args if is_targets(f)), None)
    log = next((f for f in body.args if isinstance(f, A.LogSoftmax)), None)
    return (y, log.arg) if y is not None and log is not None and log.arg in softmax_of else None


def softmax_outputs(program: Program) -> dict:
    """``O -> Ŷ`` for every statement ``Ŷ = softmax(O)``: what ``log_softmax(O)`` can reuse."""
    return {s.expr.arg: s.target for s in program.stmts if type(s.expr) is A.Softmax}


def reads_targets_as_classes(program: Program) -> bool:
    """True when every statement that reads the targets is ``Ŷ - Y`` or the loss ``-1ᵀ (Y ∘ log_softmax(O)) 1``
    (masked: ``(Ŷ - Y) ∘ (1 m)`` and ``-1ᵀ (Y ∘ log_softmax(O)) mᵀ``).

    Then the module can keep class indices as indices: the two helpers that print those
    forms take either rows or indices. Any other reader (the dense softmax Jacobian of an
    unfused derivation, say) needs the rows.
    """
    softmax_of = softmax_outputs(program)
    for s in program.stmts:
        if "y" not in {family for family, _ in s.reads}:
            continue
        if minus_targets(without_mask(s.expr)):
            continue
        factors = s.expr.as_coeff_matrices()[1] if isinstance(s.expr, MatMul) else ()
        if not (
            len(factors) == 3
            and isinstance(factors[0], OneMatrix)
            and (isinstance(factors[2], OneMatrix) or _weights(factors[2]))
            and targets_dot_log_softmax(factors[1], softmax_of)
        ):
            return False
    return True


def _weights(expr) -> bool:
    """True for ``w^T``, a row of weights per sequence (a masked loss's mask) taken as a column."""
    return isinstance(expr, Transpose) and isinstance(expr.arg, MatrixSymbol) and expr.arg.shape[0] == 1


def buffers_to_reuse(program: Program, storage: dict) -> dict:
    """``F -> G`` for each ``F = G - Y`` (``Δo = Ŷ - Y``) that can run in place in ``G``'s buffer,
    masked too (``(Ŷ - Y) ∘ (1 m)``: the padded rows are zeroed after, in place).

    That holds where ``F`` and ``G`` span the same steps, stored alike, and no later statement
    reads ``G``: the module then skips one buffer and one copy (a masked module at the medium
    workload: 44 against 16 µs of 3.5 ms, and 400 kB less to keep in cache). Only after the
    forward section, whose arrays ``forward`` returns.
    """
    reuse = {}
    for i, s in enumerate(program.stmts):
        run, pair = run_of(s.target), minus_targets(without_mask(s.expr))
        if s.section == "forward" or not run or not pair or not isinstance(pair[0], MatrixSymbol):
            continue
        source = run_of(pair[0])
        if not source or source[1:] != run[1:] or storage[source[0]] != storage[run[0]]:
            continue
        if all(source[0] != family for later in program.stmts[i + 1 :] for family, _ in later.reads):
            reuse[run[0]] = source[0]
    return reuse


def steps_built_in_place(program: Program, storage: dict) -> dict:
    """``P -> H`` for each family ``P`` whose step ``t`` only ``H_t`` reads (``z̃_t`` and ``h_t``).

    ``P`` is then written straight into ``H``'s buffer, and each ``H_t`` is built in place on
    ``P_t``: the step's GEMM goes into a small scratch that stays in cache and is added in place
    (``np.dot(h_[0], W_T, out=h_gemm)``, ``h_[1] += h_gemm``). Against a GEMM into ``h_t``
    followed by ``h_t += z̃_t``, that is one stream over memory less per step and one buffer less
    (measured at B = 64, n_h = 512, T = 100: 53.6 -> 48.5 ms forward, 47.7 -> 44.6 ms backward).
    Both must be stored as steps, of the same size, written in the same function, with ``P``'s
    steps among ``H``'s; ``P`` must not be a result the module returns, and ``P_t`` must be a term
    of a sum in some ``H_t`` (``f'_t`` in ``δz_t = (δ̃h_t + Wᵀ δz_{t+1}) ∘ f'_t`` is not). Each
    ``H`` has one such ``P``.

    Where ``H`` has none, ``P_t`` may be a factor of ``H_t``, a product of stored steps, for a ``P``
    written whole, not step by step (``f′``, as ``z̃`` and ``δ̃h`` are): a masked
    network's ``δz_t = δh_t ∘ f′_t`` (``δh_t`` has two readers, so it is not inlined into ``δz_t``
    as in the unmasked module) is then written over ``f′_t`` by one product in place, and ``δz``
    takes no buffer of its own (medium workload, float32: the sweep's products 162 -> 57 µs, and
    800 kB less to keep in cache), as the unmasked module's ``δz`` takes none beside ``f′``.
    """
    readers, sections, rows, summed, multiplied = {}, {}, {}, set(), set()
    for s in program.stmts:
        run = run_of(s.target) or s.step
        if run:
            sections.setdefault(run[0], set()).add(s.section)
            rows[run[0]] = s.target.shape[0]
        for family, t in s.reads:
            readers.setdefault(family, set()).add((s.step, t))
        for e in sp.preorder_traversal(s.expr):
            if isinstance(e, MatAdd):
                summed |= {step_of(a)[0] for a in e.args if isinstance(a, MatrixSymbol) and step_of(a)}
        if isinstance(s.expr, HadamardProduct) and all(step_of(f) for f in s.expr.args):
            multiplied |= {step_of(f)[0] for f in s.expr.args}
    multiplied -= {s.step[0] for s in program.stmts if s.step}  # a factor written whole
    returned = {family for family, _ in program.outputs}
    places = {}
    # the terms first: a family built on a term keeps it, and a factor goes where none is
    for built_on in (summed, multiplied):
        for p, reads in readers.items():
            reader = next(iter(reads))[0]  # any one: the test below wants them all steps of one family
            h = reader[0] if reader else None
            st_p, st_h = storage.get(p), storage.get(h)
            if (
                h not in (None, p)
                and p not in returned
                and p in built_on
                and p not in places
                and h not in places.values()
                and st_p is not None
                and st_h is not None
                and st_p.steps
                and st_h.steps
                and all(step == (h, t) for step, t in reads)  # only H_t reads P_t
                and sections.get(p) == sections.get(h)
                and rows.get(p) == rows.get(h)
                and st_h.first <= st_p.first
                and st_p.first + st_p.count <= st_h.first + st_h.count
            ):
                places[p] = h
    return places


def deltas_carried(program: Program, storage: dict) -> dict:
    """``H -> reverse`` for each family ``H`` (a state's delta) that a padded step passes on whole
    (``δh_{t-1} = ... + δh_t ∘ (1 - m_t)``, ``reverse`` for a backward chain's ``δh_{t+1}``), where
    that masked add need only be made at the steps a ``Carried`` list names, not at every padded one.

    That holds where every loss term is weighted by its step's mask (``RNNSpec.masked_losses``): a
    sequence's delta is then exactly 0 at a step from which its chain reaches no real step (no loss
    term it reaches counts; its ``Δo``, ``f′`` and so ``δz`` are 0 there), so passing it on adds 0.
    Post-padded sequences are padded only after their real steps: a forward chain's pass-on is
    skipped at every step (medium workload, float32: 24 masked calls, 80-110 µs of 3.5 ms).
    Many-to-one's one loss counts for every sequence: it keeps ``padded``.
    """
    if not getattr(program.derivation.spec, "masked_losses", False):
        return {}
    carried = {}
    for s in program.stmts:
        passed = passed_whole(list(s.expr.args)) if s.step and isinstance(s.expr, MatAdd) else None
        if passed and step_of(passed[0]) and step_of(passed[0])[0] == s.step[0]:
            carried[s.step[0]] = s.step[1] > step_of(passed[0])[1]
    return carried


# -- writes: how each statement is written into its storage (the operations: ``operations.py``) ---


def is_data(expr) -> bool:
    """Data has one column per sequence; everything else is parameter-shaped."""
    return expr.shape[1] == A.B


def is_gemm(term) -> bool:
    """A product of one data operand and one parameter: a single GEMM."""
    if not isinstance(term, MatMul):
        return False
    coeff, factors = term.as_coeff_matrices()
    return (
        coeff == 1
        and len(factors) == 2
        and is_data(factors[1])
        and not is_data(factors[0])
        and not any(isinstance(f, OneMatrix) for f in factors)  # broadcasts and sums, not products
    )


def applies_in_place(rule) -> bool:
    """True when the activation ``rule`` can overwrite its argument: a NumPy ufunc, or a helper that
    takes ``out=``, of one argument. Any other helper returns a new array."""
    code = rule.numpy
    return (code.startswith("np.") or rule.takes_out) and code.endswith(")") and code.count("{}") == 1


def elementwise_over_steps(stmt, storage: dict) -> bool:
    """True when ``stmt`` is elementwise over runs of the same steps, all stored as ``(steps, B, n)``.

    Such work needs no reshaping to rows: the module spells its runs as ``(steps, B, n)`` views.
    """
    data = [s for s in [stmt.target, *A.symbols_in(stmt.expr)] if is_data(s)]
    runs = {(run_of(s) or (None,))[1:] for s in data}
    families = [family_of(s) for s in data]
    # products other than a scaling or a parameter column repeated for every sequence (b 1ᵀ)
    products = [e.as_coeff_matrices()[1] for e in sp.preorder_traversal(stmt.expr) if isinstance(e, MatMul)]
    return (
        len(runs) == 1
        and None not in families
        and all(storage[f].steps for f in families)
        and all(len(m) == 1 or len(m) == 2 and isinstance(m[1], OneMatrix) and not is_data(m[0]) for m in products)
    )


class _Writes:
    """The pass ``writes``: walks the statements in module order and keeps what each function has
    taken so far (buffers, scratches, copies, lists of step views)."""

    def __init__(
        self,
        storage: dict,
        T: int,
        class_targets: bool,
        reuse: dict,
        in_place: dict,
        step_written=(),
        token_ids=False,
        carried=None,
    ):
        self.storage, self.T, self.class_targets, self.token_ids = storage, T, class_targets, token_ids
        self.reuse, self.in_place, self.carried = reuse, in_place, carried or {}
        # a family built in another's place and written whole is spelled as that buffer (TakePlace.named)
        self.homes = {p: h for p, h in in_place.items() if p not in step_written}
        self.taken: set = set()  # the names taken so far, in any function
        self._lists: set = set()  # (function, family) whose list of step views exists
        self._scratches: set = set()  # (function, name) of the scratches, copies and Carried lists made
        self._function = None
        self._step_family = None  # the family of the step being lowered
        self.cycles: dict = {}  # family -> the families of its recurrence (a masked h̄ is h's)

    def write(self, stmt) -> Write:
        """The operations that compute ``stmt.expr`` into its target's storage.

        A data target is written in place: a product goes straight into the buffer (a GEMM with
        ``out=``), the other terms of a sum are added in place, a Hadamard factor multiplied in
        place, an activation that can be applied in place is. So a step of the recurrence
        allocates nothing, and a stacked statement allocates only its own buffer.
        """
        target = stmt.target
        step, run = step_of(target), run_of(target)
        # _forward runs the forward section; loss and loss_and_grads the loss and backward ones
        self._function = "_forward" if stmt.section == "forward" else "loss_and_grads"
        w = self._write(stmt, target, step, run)
        read = self._read_views(stmt, (step or run or (None,))[0])
        return w if not read else self._done(stmt, read + list(w.ops), w.over_steps)

    def _read_views(self, stmt, written) -> list:
        """``Views`` made with the buffers for the families whose steps ``stmt`` reads but whose list
        this function has not named yet (``f′_t`` in ``δz_t``: a family written whole, read by step).
        Indexing a list of views costs a third of indexing the array (0.15 µs less per read)."""
        ops = []
        for sym in A.symbols_in(stmt.expr):
            step = step_of(sym)
            family = step and self.homes.get(step[0], step[0])
            if not family or family == self.homes.get(written, written) or family not in self.taken:
                continue
            if self.storage[family].steps and (self._function, family) not in self._lists:
                self._lists.add((self._function, family))
                ops.append(Views(family, True))
        return ops

    def _write(self, stmt, target, step, run) -> Write:
        if not (step or run) or not is_data(stmt.expr):
            assign = Assign(target, stmt.expr, "name")
            sums = input_sums(stmt.expr) if self.token_ids else None
            if sums:  # dE/dU: the product with X's rows, or the rows of Δz summed by token id
                return self._done(stmt, [ByInput((assign,), (IdSums(target, *sums),))])
            return self._done(stmt, [assign])
        if step:
            return self._step_write(stmt, *step)
        over_steps = elementwise_over_steps(stmt, self.storage)
        first, rest, value = self._into(target, stmt.expr)
        family, rows = run[0], target.shape[0]
        if first is not None and family in self.reuse:
            return self._done(stmt, [Reuse(family, self.reuse[family])] + first + rest, over_steps)
        if family in self.in_place:
            if first is None:  # into the place the readers are built in, not a new array
                first = [Assign(target, value, "fill")]
            return self._done(stmt, self._take_place(family, rows) + first + rest, over_steps)
        if first is not None:  # (a part of a buffer an earlier part took: not taken again)
            take = [] if family in self.taken else [self._allocate(family, rows)]
            return self._done(stmt, take + first + rest, over_steps)
        st = self.storage[family]
        if (run[1], run[2]) != (st.first, st.first + st.count - 1):  # a part of the buffer: written into it
            take = [] if family in self.taken else [self._allocate(family, rows)]
            return self._done(stmt, take + [Assign(target, value, "fill")] + rest, over_steps)
        if rest and isinstance(value, (MatrixSymbol, Transpose)):  # updating it in place would write another array
            value, rest = stmt.expr, []
        if A.is_repeated_column(value):  # b 1ᵀ is the vector b to the array library: filled into a buffer
            take = [] if family in self.taken else [self._allocate(family, rows)]
            return self._done(stmt, take + [Assign(target, value, "fill")] + rest, over_steps)
        # a value the array library makes anyway: keep it as the buffer
        form = "steps" if self.storage[family].steps else "rows"
        return self._done(stmt, [Assign(target, value, form)] + rest, over_steps)

    def _done(self, stmt, ops, over_steps=False) -> Write:
        views = frozenset(family for function, family in self._lists if function == self._function)
        return Write(stmt, self._function, tuple(ops), views, over_steps)

    def _step_write(self, stmt, family, t) -> Write:
        """One step of a family, written in place through the list of its steps' views.

        A family written step by step is indexed several times per step; indexing a list of
        its views (``h_[3]``, made once per function by ``h_ = list(h)``) costs a fraction of
        slicing the array (``h[3]``), which matters for small networks. A step that is only
        assigned (``h[0] = h0``) writes through the array itself.
        """
        rows = stmt.target.shape[0]
        if family in self.in_place:
            alloc = [] if family in self.taken else self._take_place(family, rows)
        else:
            alloc = [] if family in self.taken else [self._allocate(family, rows)]
        key = (self._function, family)
        made = key in self._lists
        self._lists.add(key)
        # the step of a family built in this one's place: already in the destination
        held = next((s for s in A.symbols_in(stmt.expr) if self._held_by(s) == (family, t)), None)
        self._step_family = family
        try:
            if held is None:
                first, rest, value = self._into(stmt.target, stmt.expr)
            else:
                first, rest, value = self._into_holding(stmt.target, stmt.expr, held, family, rows)
        finally:
            self._step_family = None
        if first is None and not rest and not made:
            self._lists.discard(key)  # no list exists for the value to read
        if first is None:
            first = [Assign(stmt.target, value, "array")]
            if not rest:
                return self._done(stmt, alloc + first)
        return self._done(stmt, alloc + ([] if made else [self._step_views(family)]) + first + rest)

    def _step_views(self, family) -> Views:
        """The list of ``family``'s step views. For a family with a buffer of its own in the set, the
        list made with the buffers: list() costs 10-20 µs a call at 100 steps, 0.3 µs at one (δh_0),
        and a name nothing else reads is not bound (``unread_names_dropped``). Else (a view of the
        buffer it is built in) one made here."""
        return Views(family, family in self.taken)

    def _held_by(self, sym):
        """``(H, t)`` when ``sym`` is step t of a family whose place ``H`` is built in, else None."""
        step = step_of(sym)
        return (self.in_place[step[0]], step[1]) if step and step[0] in self.in_place else None

    def _take_place(self, family, rows) -> list:
        """``family`` as a view of the buffer of the family built in its place (taken first if need be)."""
        home, st = self.in_place[family], self.storage[family]
        take = [] if home in self.taken else [self._allocate(home, rows)]
        view = stacked(home, st.first, st.first + st.count - 1, rows)
        return take + [TakePlace(family, home, view, family not in self.homes)]

    def _allocate(self, family, rows) -> Take:
        """``family``'s buffer from the call's set: ``(count, B, n)`` steps or ``(count * B, n)`` rows."""
        st = self.storage[family]
        count = "T" if st.count == self.T else "T + 1" if st.count == self.T + 1 else str(st.count)
        shape = (count, "B", str(rows)) if st.steps else (f"{count} * B", str(rows))
        self.taken.add(family)
        return Take(family, shape)

    def _scratch(self, name, shape, ops) -> str:
        """A buffer of its own ``shape``, taken from the call's set on first use in a function."""
        if (self._function, name) not in self._scratches:
            self._scratches.add((self._function, name))
            self.taken.add(name)
            ops.append(Take(name, shape))
        return name

    def _gemm(self, data, param, out, ops) -> Gemm:
        """One step's GEMM of ``data`` and ``param`` into ``out``; ``ops`` gets what it needs first.

        A recurrence's own GEMM (a previous step of its families times a weight) reads a transposed weight from
        a contiguous copy made once per call: BLAS reads that faster than the view ``W.T`` (100
        steps at B = 32, n_h = 128 in float32: 2.6 against 1.1 ms), and it is read at every step.
        """
        copy = None
        cycle = self.cycles.get(self._step_family, {self._step_family})
        if isinstance(param, MatrixSymbol) and isinstance(data, MatrixSymbol) and family_of(data) in cycle:
            copy = names.transposed_copy(param.name)
            if (self._function, copy) not in self._scratches:
                self._scratch(copy, (str(param.shape[1]), str(param.shape[0])), ops)
                ops.append(Copy(copy, param))
        return Gemm(out, data, param, copy, True)

    def _into(self, dest, expr):
        """``(first, rest, value)``: the operations computing ``expr`` into ``dest``.

        ``first`` writes ``dest``; when it is None, the caller assigns the expression ``value``
        (the lead of ``expr``, which the array library evaluates the ordinary way) instead.
        ``rest`` then updates ``dest`` in place.
        """
        minus = minus_targets(expr) if self.class_targets else None
        if minus is not None:
            return [Into(dest, "minus_targets", minus)], [], None
        kept = kept_state(expr)
        if kept is not None:  # the new state, then the old one back where the step is padded
            state, new, m = kept
            first, rest, value = self._into(dest, new)
            return first, rest + [Padded(dest, "=", state, m)], value
        if isinstance(expr, MatAdd) and passed_whole(list(expr.args)):
            a, m, others = passed_whole(list(expr.args))
            if not others:  # a ∘ (1 - m) alone (a held state's delta): the array library's value
                return None, [], expr
            first, rest, value = self._into(dest, A.add(*others))
            return first, rest + self._pass_whole(dest, a, m), value
        if is_gemm(expr):
            param, data = expr.as_coeff_matrices()[1]
            ops = []
            gemm = self._gemm(data, param, dest, ops) if self._step_family else Gemm(dest, data, param, None, False)
            if self.token_ids and is_inputs(data):  # U X: a product with X's rows, or rows of U looked up
                gemm = ByInput((gemm,), (Lookup(dest, data, param, gemm.per_step),))
            return ops + [gemm], [], None
        if isinstance(expr, HadamardPower) and expr.exp == 2:
            return [Into(dest, "square", (expr.base,))], [], None
        if isinstance(expr, A.Softmax) and not isinstance(expr, A.LogSoftmax):
            return [Into(dest, "softmax", (expr.arg,))], [], None
        if isinstance(expr, MatAdd) and len(expr.args) == 2:
            (c1, a), (c2, b) = sorted((A.split_coeff(t) for t in expr.args), key=lambda cb: -cb[0])
            # a ± b of stored values, or 1 - b (sigmoid's 1 - H), in one call into dest
            if (
                abs(c1) == abs(c2) == 1
                and c1 > 0
                and isinstance(a, (MatrixSymbol, OneMatrix))
                and isinstance(b, MatrixSymbol)
            ):
                return [Into(dest, "add" if c2 > 0 else "subtract", (a, b))], [], None
        if isinstance(expr, MatAdd) and all(isinstance(t, MatrixSymbol) for t in expr.args):
            # a sum of stored values (a truncated derivation's ages): the first two into dest, the others added
            a, b, *others = expr.args
            return [Into(dest, "add", (a, b))], [self._add_term(dest, t) for t in others], None
        if isinstance(expr, MatAdd):
            terms = list(expr.args)
            fresh = [t for t in terms if not isinstance(A.split_coeff(t)[1], (MatrixSymbol, OneMatrix))]
            lead = next((t for t in fresh if is_gemm(t)), None)
            lead = lead or next((t for t in fresh if A.split_coeff(t)[0] > 0), None)
            one = next((t for t in terms if isinstance(t, OneMatrix)), None)
            if lead is None and one is not None and len(fresh) == 1:  # 1 - a: a into dest, then 1 - dest
                lead = fresh[0]
            if lead is not None:
                coeff, body = A.split_coeff(lead)
                first, rest, value = self._into(dest, A.scale(abs(coeff), body))
                if coeff < 0:
                    rest.append(Into(dest, "subtract", (one, dest)))
                for term in terms:
                    if term is lead or coeff < 0 and term is one:
                        continue
                    rest.append(self._add_term(dest, term))
                return first, rest, value
        if isinstance(expr, A.Elementwise):
            rule = elementwise(expr.fn)
            if rule.is_identity:
                return self._into(dest, expr.arg)
            if applies_in_place(rule) and isinstance(expr.arg, MatrixSymbol):  # a stored value: read, not copied
                return [Apply(dest, expr.fn, expr.arg)], [], None
            if applies_in_place(rule):
                first, rest, value = self._into(dest, expr.arg)
                return first, rest + [Apply(dest, expr.fn)], value
        if (
            isinstance(expr, HadamardProduct)
            and len(expr.args) == 2
            and all(isinstance(f, MatrixSymbol) for f in expr.args)
        ):
            return [Into(dest, "multiply", tuple(expr.args))], [], None
        if isinstance(expr, HadamardProduct) and not any(isinstance(f, HadamardPower) for f in expr.args):
            factors = list(expr.args)
            # not a row repeated down the columns (1 m_t, a mask): it has fewer entries than dest
            lead = next(
                (f for f in factors if isinstance(f, (MatAdd, MatMul, A.Elementwise)) and not A.is_repeated_row(f)),
                None,
            )
            if lead is not None:
                first, rest, value = self._into(dest, lead)
                if first is None:
                    # the lead is the array library's value ((h > 0) is bool): neither a mask row nor
                    # another factor can be multiplied into it in place, so the product is evaluated whole
                    return None, [], expr
                for f in factors:
                    if f is not lead:  # a mask row of 0 and 1: its padded entries zeroed, no product
                        rest.append(
                            Padded(dest, "0", None, f.args[-1]) if A.is_repeated_row(f) else Update(dest, "*", f)
                        )
                return first, rest, value
        return None, [], expr

    def _pass_whole(self, dest, a, m) -> list:
        """The masked add of ``a ∘ (1 - m)`` into ``dest``: a delta passed on whole where the step pads,
        at the steps ``padded`` names, or those of the ``Carried`` list of its chain's direction
        (``deltas_carried``), made before its first use in the function."""
        family = step_of(dest)[0] if step_of(dest) else None
        if family not in self.carried:
            return [Padded(dest, "+", a, m)]
        name = names.carried_steps(self.carried[family])
        made = [] if (self._function, name) in self._scratches else [Carried(name, self.carried[family])]
        self._scratches.add((self._function, name))
        return made + [Padded(dest, "+", a, m, name)]

    @staticmethod
    def _add_term(dest, term) -> Update:
        """Adding one term of a sum to ``dest`` in place (the term evaluated whole)."""
        c, b = A.split_coeff(term)
        return Update(dest, "-" if c < 0 else "+", A.scale(abs(c), b))

    def _into_holding(self, dest, expr, held, family, rows):
        """``_into`` for a ``dest`` that already holds ``held``, one of the values ``expr`` reads.

        The forms below never write ``dest`` before they read ``held``: a sum with ``held`` as a
        term adds the other terms in place (a GEMM through a scratch of one step that stays in
        cache), a product with it as a factor multiplies in place, a sum with one term built on it
        builds that term in place and adds the others, and an activation that applies in place
        does so after its argument. Any other form is evaluated whole before it is assigned,
        which is right whatever ``dest`` holds.
        """
        whole = None, [], expr
        if expr == held:
            return [], [], None
        kept = kept_state(expr)
        if kept is not None:  # the new state built on what dest holds, then the old one back where padded
            state, new, m = kept
            first, rest, value = self._into_holding(dest, new, held, family, rows)
            if first is None:
                return whole
            return first, rest + [Padded(dest, "=", state, m)], None
        if isinstance(expr, MatAdd) and held in expr.args:
            rest, terms, whole_where = [], list(expr.args), None
            if passed_whole(terms):  # a ∘ (1 - m) as one masked add, after the others
                a, m, terms = passed_whole(terms)
                whole_where = self._pass_whole(dest, a, m)
            for term in terms:
                if term == held:
                    continue
                if is_gemm(term):
                    param, data = term.as_coeff_matrices()[1]
                    scratch = self._scratch(names.step_scratch(family), ("B", str(rows)), rest)
                    rest += [self._gemm(data, param, scratch, rest), Update(dest, "+", scratch)]
                    continue
                rest.append(self._add_term(dest, term))
            return [], rest + (whole_where or []), None
        if isinstance(expr, MatAdd):
            # one term built on what dest holds (the LSTM's δh_t ∘ f′_c_t on f′_c_t), then the others added
            with_held = [t for t in expr.args if held in A.symbols_in(t)]
            if len(with_held) != 1 or passed_whole(list(expr.args)):
                return whole
            first, rest, value = self._into_holding(dest, with_held[0], held, family, rows)
            if first is None:
                return whole
            return first, rest + [self._add_term(dest, t) for t in expr.args if t is not with_held[0]], None
        if isinstance(expr, A.Elementwise):
            rule = elementwise(expr.fn)
            if not rule.is_identity and not applies_in_place(rule):
                return whole
            first, rest, value = self._into_holding(dest, expr.arg, held, family, rows)
            if first is None:
                return whole
            return first, rest + ([] if rule.is_identity else [Apply(dest, expr.fn)]), None
        if isinstance(expr, HadamardProduct) and not any(isinstance(f, HadamardPower) for f in expr.args):
            with_held = [f for f in expr.args if held in A.symbols_in(f)]
            if len(with_held) != 1:
                return whole
            first, rest, value = self._into_holding(dest, with_held[0], held, family, rows)
            if first is None:
                return whole
            for f in expr.args:
                if f is not with_held[0]:
                    rest.append(Update(dest, "*", f))
            return first, rest, None
        return whole


def writes(
    program: Program,
    storage: dict,
    class_targets: bool,
    reuse: dict,
    in_place: dict,
    token_ids: bool = False,
    carried: dict | None = None,
) -> tuple:
    """Every statement's write operations (``Write``), in module order; with ``token_ids``, each that
    reads the inputs in both of their forms (``ByInput``); ``carried``: ``deltas_carried``."""
    step_written = {step_of(s.target)[0] for s in program.stmts if step_of(s.target)}
    T = program.derivation.spec.T
    plan = _Writes(storage, T, class_targets, reuse, in_place, step_written, token_ids, carried)
    # every family of a recurrence reads its previous step through the recurrence's own GEMM: a masked
    # network's h̄_t, a custom activation's z_t and each gate of a gated cell read h_{t-1} so
    plan.cycles = {key: r.families for r in program.recurrences for key in r.families}
    return tuple(plan.write(s) for s in program.stmts)


def takes_token_ids(program: Program, done: tuple) -> bool:
    """True when the module can take its inputs as token ids: every operation of ``done`` (written
    with ``token_ids``) that reads ``X`` is one form of a ``ByInput``, and the module returns no
    ``dE/dX`` (an id has no gradient). Otherwise the module takes float rows only."""
    if any(family == adjoint_name("x") for family, _ in program.outputs):  # --input-grad
        return False
    loose = (op for w in done for op in w.ops if not isinstance(op, ByInput))
    return not any(is_inputs(sym) for op in loose for sym in symbols_of(op))


@dataclass(frozen=True)
class Lowered:
    """The optimized program and every storage decision its module makes.

    Attributes:
        program: the optimized program.
        storage: family -> ``Storage``.
        class_targets: the module may hold class-index targets as indices (``reads_targets_as_classes``).
        softmax_of: ``O -> Ŷ`` for each ``Ŷ = softmax(O)`` that ``log_softmax(O)`` reuses.
        reuse: family -> the dead family whose buffer it takes.
        in_place: family -> the family built step by step in its buffer.
        writes: per statement of ``program``, the operations that write it (``Write``). What the
            module's set of buffers holds is read from them (``buffers``, ``step_lists``), so a
            pass that rewrites the operations changes the set with them.
        carried: a state's delta -> whether its chain runs backward, for each passed on whole at
            the steps a ``Carried`` list names only (``deltas_carried``).
        blocks: the families kept in one buffer (``side_by_side.Block``, one behind another): each member's
            buffer is the block's slice along its first axis.
        fused_loss: the loss, when its output delta's write computes it too (``loss_with_delta``):
            ``loss_and_grads`` does not run the loss's own write.
    """

    program: Program
    storage: dict
    class_targets: bool
    softmax_of: dict
    reuse: dict
    in_place: dict
    writes: tuple
    carried: dict = field(default_factory=dict)
    blocks: tuple = ()
    fused_loss: object = None

    @property
    def token_ids(self) -> bool:
        """The module takes its inputs as token ids too (``takes_token_ids``): some write reads them by form."""
        return any(isinstance(op, ByInput) for w in self.writes for op in w.ops)

    @property
    def buffers(self) -> dict:
        """Name -> shape of every buffer the module takes from the call's set, in first-use order."""
        return {op.name: op.shape for w in self.writes for op in flat(w.ops) if isinstance(op, Take)}

    @property
    def step_lists(self) -> dict:
        """Name -> family of every list of step views that ``_new_buffers`` makes with the buffers."""
        blocks = {b.family for b in self.blocks}  # a block's steps: views of its gates (side_by_side)
        views = (op for w in self.writes for op in w.ops if isinstance(op, Views) and op.with_buffers)
        return {names.step_views(op.family): op.family for op in views if op.family not in blocks}

    @property
    def homes(self) -> dict:
        """Family -> the buffer it is spelled as: a family built in another's place and written whole."""
        return {op.family: op.home for w in self.writes for op in w.ops if isinstance(op, TakePlace) and not op.named}

    @property
    def row_views(self) -> dict:
        """``(family, lo, hi)`` -> rows of each run of steps the module reads as rows ``(steps * B, n)``, in
        first-use order: a view ``_new_buffers`` makes once with the buffers, where the family's buffer
        is in the set (a reshape per use costs 0.3-0.6 µs, indexing the set 0.05 µs at small sizes).

        A run is read as rows except by a ``TakePlace`` and by the in-place operations of a statement
        written over ``(steps, B, n)`` views (``Write.over_steps``); runs of a family spelled as its
        home are its home's.
        """
        homes, buffers, views = self.homes, self.buffers, {}
        for w in self.writes:
            for op in flat(w.ops):
                if isinstance(op, TakePlace) or w.over_steps and not isinstance(op, Assign):
                    continue
                for sym in symbols_of(op):
                    run = run_of(sym)
                    if not run:
                        continue
                    family = homes.get(run[0], run[0])
                    if family in buffers and self.storage[family].steps:
                        views.setdefault((family, *run[1:]), sym.shape[0])
        return views

    @property
    def copies(self) -> list:
        """``(function, copy, param)`` of each contiguous transposed copy, where it is made."""
        return [(w.function, op.name, op.param) for w in self.writes for op in w.ops if isinstance(op, Copy)]

    @property
    def scratches(self) -> list:
        """``(function, name)`` of each one-step scratch a GEMM goes through."""
        gemms = [(w.function, op.out) for w in self.writes for op in flat(w.ops) if isinstance(op, Gemm)]
        return list(dict.fromkeys((f, out) for f, out in gemms if isinstance(out, str)))

    def write_of(self, target) -> Write:
        """The ``Write`` of the statement whose target is ``target`` (a symbol or its name)."""
        name = getattr(target, "name", target)
        found = [w for w in self.writes if w.stmt.target.name == name]
        if not found:
            raise KeyError(f"no statement writes {name}")
        return found[0]


def names_read(write: Write, homes: dict, row_views: dict) -> set:
    """The names ``write``'s operations spell as themselves, not through a view the set holds
    (``homes`` and ``row_views``: those of ``Lowered``)."""
    found = set()
    for op in flat(write.ops):
        if isinstance(op, TakePlace) and op.named:
            found.add(op.home)
        elif isinstance(op, Reuse):
            found.add(op.dead)
        elif isinstance(op, Views) and not op.with_buffers:
            found.add(op.family)
        fields = (getattr(op, f, None) for f in ("name", "out", "data", "expr", "copy"))
        found |= {f for f in fields if isinstance(f, str) and not isinstance(op, (Take, TakePlace, Views))}
        if isinstance(op, (Take, TakePlace, Reuse, Views, Copy)):
            continue
        as_rows = not write.over_steps or isinstance(op, Assign)
        for sym in symbols_of(op):
            step, run = step_of(sym), run_of(sym)
            family = homes.get((step or run)[0], (step or run)[0]) if step or run else sym.name
            if step and family in write.views or run and as_rows and (family, *run[1:]) in row_views:
                continue
            found.add(family)
        if isinstance(op, Assign) and op.form == "array":  # written through the array, not its list
            family = step_of(op.dest)[0]
            found.add(homes.get(family, family))
    return found


def unread_names_dropped(lowered: Lowered) -> Lowered:
    """``lowered`` with ``Take.named`` False for each buffer its function reaches only through the
    set's views of it (``dz``: its steps' list and its rows): no dead local per call. A family the
    module returns or another function reads keeps its name."""
    writers = {}  # family -> the functions that write it
    for w in lowered.writes:
        target = step_of(w.stmt.target) or run_of(w.stmt.target)
        if target:
            writers.setdefault(target[0], set()).add(w.function)
    outside = {family for family, _ in lowered.program.outputs}
    read, homes, row_views = {}, lowered.homes, lowered.row_views
    for w in lowered.writes:
        outside |= {f for f, _ in w.stmt.reads if writers.get(f, {w.function}) != {w.function}}
        read.setdefault(w.function, set()).update(names_read(w, homes, row_views))

    def named(op, function) -> bool:
        return op.name in read[function] or op.name in outside

    writes = tuple(
        replace(w, ops=tuple(replace(op, named=named(op, w.function)) if isinstance(op, Take) else op for op in w.ops))
        for w in lowered.writes
    )
    return replace(lowered, writes=writes)


#: The decisions that only save memory traffic or calls, each switchable off (``lower(skip=...)``).
OPTIONAL = (buffers_to_reuse, steps_built_in_place, deltas_carried)


def loss_with_delta(lowered: Lowered) -> Lowered:
    """``lowered`` with the cross-entropy's output delta ``Δo = Ŷ - Y`` written together with the loss
    ``E = -1ᵀ (Y ∘ log_softmax(O)) 1`` (``LossAndDelta``).

    Both read the targets' probabilities (and, for a confident class, the sum of its row's others):
    one call reads them once, and in ``loss_and_grads`` the loss's own line is not run. At the small
    workload that is 3-4 % of the call (the loss and its delta are a third of it). ``loss`` alone
    keeps the loss's line. A masked loss (weighted rows) keeps the two apart.
    """
    by_target = {w.stmt.target: i for i, w in enumerate(lowered.writes)}
    for loss in (w for w in lowered.writes if w.stmt.section == "loss"):
        expr = loss.stmt.expr
        if not (any(isinstance(op, Assign) and op.form == "name" for op in loss.ops) and isinstance(expr, MatMul)):
            continue
        coeff, factors = expr.as_coeff_matrices()
        if len(factors) != 3 or not all(isinstance(factors[k], OneMatrix) for k in (0, 2)):
            continue
        parts = targets_dot_log_softmax(factors[1], lowered.softmax_of)
        if parts is None:
            continue
        y, o = parts
        probs = lowered.softmax_of[o]
        read = {family_of(o), family_of(probs)}  # what the loss reads, which must still hold at Δo
        later = lowered.writes[by_target[loss.stmt.target] + 1 :]
        for k, write in enumerate(later):
            into = [op for op in write.ops if isinstance(op, Into) and op.fn == "minus_targets"]
            if not (into and into[0].args == (probs, y)):
                continue
            if any(isinstance(op, Reuse) and op.dead in read for w in later[:k] for op in w.ops):
                break  # a buffer the loss reads is written over before Δo
            fused = LossAndDelta(into[0].dest, loss.stmt.target, coeff, (probs, y, o))
            ops = tuple(fused if op is into[0] else op for op in write.ops)
            writes = list(lowered.writes)
            writes[by_target[write.stmt.target]] = replace(write, ops=ops)
            return replace(lowered, writes=tuple(writes), fused_loss=loss.stmt.target)
    return lowered


#: The passes from ``Lowered`` to ``Lowered``, each switchable off the same way.
REWRITES = (side_by_side, sigmoid_by_tanh, loss_with_delta)


def lower(program: Program, skip=()) -> Lowered:
    """Every storage decision of ``program``'s NumPy module; ``skip`` names passes of ``OPTIONAL`` and
    ``REWRITES`` to leave out."""
    spec = program.derivation.spec
    storage = storage_of(program)
    # Class indices stay indices where the only readers of the targets are the fused softmax /
    # cross-entropy pair (E and Ŷ - Y): no one-hot rows to build, and log_softmax reuses Ŷ.
    class_targets = spec.loss_rule.targets == "classes" and reads_targets_as_classes(program)
    reuse, in_place, carried = (p(program, storage) if p.__name__ not in skip else {} for p in OPTIONAL)
    # Token ids stand for the inputs' one-hot rows where every reader of X can take them so.
    done = writes(program, storage, class_targets, reuse, in_place, token_ids=True, carried=carried)
    if not takes_token_ids(program, done):
        done = writes(program, storage, class_targets, reuse, in_place, carried=carried)
    lowered = Lowered(program, storage, class_targets, softmax_outputs(program), reuse, in_place, done, carried)
    for rewrite in REWRITES:
        if rewrite.__name__ not in skip:
            lowered = rewrite(lowered)
    return unread_names_dropped(lowered)
