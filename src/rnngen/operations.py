"""The write operations a statement is lowered to (``lower.writes``), in the order the module runs them.

Each is a small value the lowering decides and a printer spells: a second array library needs a
printer for these, not a second lowering. A destination (``dest``, ``out``) is the data symbol of
the statement's target (a step or a run of steps) or the name of a scratch buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen.program import Stmt


@dataclass(frozen=True)
class Take:
    """``name`` is the buffer of that name from the call's set (made by ``_new_buffers``).

    ``named``: the function binds the name; not when every line reaches the buffer through the
    views the set holds of it (its steps' list, its rows), so a name would be a dead local.
    """

    name: str
    shape: tuple  # code of each dimension: ("T", "B", "n_h") for steps, ("T * B", "n_h") for rows
    named: bool = True


@dataclass(frozen=True)
class TakePlace:
    """``family`` is ``view``: the steps of ``home``'s buffer that are built on it (``steps_built_in_place``).

    ``named``: the family gets a name of its own (a view of ``home``), as one written step by step
    needs for its list of step views; else it is spelled as ``home`` itself (a line that only says
    where it lives), one binding and one slice less per call.
    """

    family: str
    home: str
    view: MatrixSymbol
    named: bool = True


@dataclass(frozen=True)
class Reuse:
    """``family`` takes the buffer of ``dead``, which is not read after this (``buffers_to_reuse``)."""

    family: str
    dead: str


@dataclass(frozen=True)
class Views:
    """``family``'s list of step views is named; ``with_buffers``: the list ``_new_buffers`` made, else made here."""

    family: str
    with_buffers: bool


@dataclass(frozen=True)
class Copy:
    """The contiguous copy ``name`` of ``param``'s transpose is filled (a ``Take`` of it comes first)."""

    name: str
    param: MatrixSymbol


@dataclass(frozen=True)
class Gemm:
    """``out`` = the product of one data operand and one parameter, ``param @ data`` in the math.

    ``copy`` names the contiguous transposed copy the product reads instead of the parameter's
    transpose (None: the transpose itself); ``per_step``: the rows of one step, not of all steps.
    ``out`` may also be some gates of a block (``Gates``), ``data`` a scratch's name, ``param`` a ``Stack``.
    """

    out: object
    data: object
    param: object
    copy: str | None
    per_step: bool


@dataclass(frozen=True)
class Into:
    """``dest`` = ``fn(*args)`` evaluated into it: ``fn`` is one of ``INTO_FORMS``."""

    dest: object
    fn: str
    args: tuple


#: What ``Into`` may evaluate straight into its destination.
INTO_FORMS = ("add", "subtract", "multiply", "square", "softmax", "minus_targets")


@dataclass(frozen=True)
class LossAndDelta:
    """``dest = Ŷ - Y`` in place, written with the loss ``loss = coeff 1ᵀ (Y ∘ log_softmax(O)) 1`` in one call
    that reads the targets' probabilities once (``lower.loss_with_delta``); ``args`` is ``(Ŷ, Y, O)``.
    The loss's own statement is then not run again where this runs (``loss_and_grads``)."""

    dest: object
    loss: object
    coeff: object
    args: tuple


@dataclass(frozen=True)
class Update:
    """``dest op= expr`` in place, ``op`` one of ``+ - *``; ``expr`` is an expression or a scratch's name."""

    dest: object
    op: str
    expr: object


@dataclass(frozen=True)
class Padded:
    """``dest op= expr`` for the sequences a step pads only, where ``mask`` (the step's 1 x B row of 0
    and 1, or steps of it side by side) is 0: ``op`` ``=`` puts ``expr`` there (a padded step keeps the
    state), ``+`` adds it (the state's delta passes a padded step whole), ``0`` zeroes it (a product
    with the mask; ``expr`` is None). One masked call each, no temporary, made at the steps the
    module's list ``guard`` names: ``padded`` (a sequence is padded there) or a ``Carried`` list."""

    dest: object
    op: str
    expr: object
    mask: object
    guard: str = "padded"


@dataclass(frozen=True)
class Carried:
    """``name`` is the list, per step, of whether a sequence padded there has a real step after it
    in its chain (before it in time, ``reverse``: a backward chain), made from the padded steps:
    the steps where a delta passed on whole can be other than 0 (``lower.deltas_carried``)."""

    name: str
    reverse: bool


@dataclass(frozen=True)
class Apply:
    """``dest = fn(dest)`` in place, or ``dest = fn(arg)`` straight into ``dest`` when ``arg`` (a stored
    value) is given, for the elementwise function ``fn`` (``applies_in_place``)."""

    dest: object
    fn: str
    arg: object = None


@dataclass(frozen=True)
class Assign:
    """``dest`` = ``expr``, a value the array library makes the ordinary way.

    ``form`` says how it is stored: ``"name"`` (a plain name, not a family's step), ``"rows"``
    (the family's time-stacked rows are the value), ``"steps"`` (the value reshaped to
    ``(count, B, n)``), ``"fill"`` (written into the buffer already taken), ``"array"`` (a step
    written through the array, not its list of views).
    """

    dest: object
    expr: object
    form: str


@dataclass(frozen=True)
class Stack:
    """The parameters ``params`` in one array ``name``, filled once per call (a ``Take`` of it comes first),
    for one product over a block of gates (``side_by_side``). ``form`` says how: ``rows``, the matrices one
    above another (``[W_i; W_f; ...]``); ``columns``, their transposes side by side (``[W_iᵀ W_fᵀ ...]``);
    ``layers``, their transposes (vectors as they are) one behind another, one per gate, along a first axis;
    with ``biases`` (``layers`` only), each gate's bias as one more row after its weight's transpose, for a
    product with rows that end in a one (``WithOnes``)."""

    name: str
    params: tuple
    form: str
    biases: tuple = ()
    #: ``(lo, hi)``: the parameters ``lo .. hi - 1`` (and their biases) halved after the fill, for gates whose
    #: sigmoid is taken as ``(1 + tanh(a / 2)) / 2`` (``sigmoid_by_tanh``); None: as they are.
    halved: tuple | None = None


@dataclass(frozen=True)
class FromTanh:
    """``dest``, gates that hold ``tanh(a / 2)`` (their weights halved, ``Stack.halved``), becomes their sigmoid
    ``σ(a) = (1 + tanh(a / 2)) / 2`` in place (``sigmoid_by_tanh``)."""

    dest: object


@dataclass(frozen=True)
class WithOnes:
    """The rows of ``data`` (a run of steps) copied into the call set's buffer ``name``, beside a last column of
    ones: one product with a ``Stack`` that has ``biases`` then adds the biases too, in place of one more pass
    over its output. The buffer is made on first use, not with the set: token ids never need it."""

    name: str
    data: object


@dataclass(frozen=True)
class Gates:
    """The gates ``lo .. hi - 1`` of the block ``block`` (``side_by_side.Block``: a buffer ``(count, steps, B,
    n)``, one gate behind another) at step ``t``, ``(hi - lo, B, n)``; with ``t`` None all its steps as rows,
    ``(hi - lo, steps * B, n)``."""

    block: str
    lo: int
    hi: int
    t: int | None
    count: int


@dataclass(frozen=True)
class ByGate:
    """The one-step scratch ``name``, ``(B, count n)`` (gates side by side, as one product writes or reads
    them), seen as ``(count, B, n)``, one gate behind another: a view made with the buffers."""

    name: str
    count: int
    width: object


@dataclass(frozen=True)
class Gather:
    """``out`` (a ``ByGate`` view) = ``source`` (some ``Gates`` of one step): the gates side by side, for one
    product."""

    out: ByGate
    source: Gates


@dataclass(frozen=True)
class Joined:
    """Some of the write's work (its products, its activation, an update) was done in one operation over
    the gates of ``block``, at the first gate's write (``side_by_side``)."""

    block: str


@dataclass(frozen=True)
class Write:
    """One statement lowered: the operations that write it, in order.

    Attributes:
        stmt: the statement.
        function: the module function it goes to (``_forward`` or ``loss_and_grads``).
        ops: its write operations.
        views: the families whose steps these operations read and write through their list of views.
        over_steps: the operations' runs of steps are spelled as ``(steps, B, n)`` views, not rows
            (``elementwise_over_steps``); an ``Assign`` is spelled as rows either way.
    """

    stmt: Stmt
    function: str
    ops: tuple
    views: frozenset
    over_steps: bool


@dataclass(frozen=True)
class Lookup:
    """``out`` = ``param @ X`` for inputs X given as token ids ``ids`` (X their one-hot rows, implied):
    the rows of the parameter's transpose that the ids pick, no product. ``per_step``: one step's ids."""

    out: object
    ids: object
    param: object
    per_step: bool


@dataclass(frozen=True)
class IdSums:
    """``dest`` = ``D Xᵀ`` (``X Dᵀ`` with ``row``) for inputs X given as token ids ``ids``: the rows
    of ``D`` summed by id, a scatter-add (an id that repeats adds each of its rows)."""

    dest: object
    rows: object
    ids: object
    row: bool


@dataclass(frozen=True)
class ByInput:
    """A write that reads the network's inputs, in each form the caller may give them, chosen at
    run time by the dtype of ``xs``: ``rows`` for float rows, ``ids`` for token ids."""

    rows: tuple
    ids: tuple


def flat(ops) -> list:
    """``ops`` with each ``ByInput`` replaced by the operations of both its forms (what they read and write)."""
    return [o for op in ops for o in ((*op.rows, *op.ids) if isinstance(op, ByInput) else (op,))]


def symbols_of(op) -> list:
    """The data symbols an operation spells as rows or reads (an ``Assign``'s target only when filled)."""
    fields = [getattr(op, f) for f in ("out", "data", "dest", "expr", "rows", "ids", "arg") if hasattr(op, f)]
    if isinstance(op, Assign) and op.form != "fill":
        fields = [op.expr]
    fields += list(getattr(op, "args", ()))
    return [s for f in fields if isinstance(f, sp.Basic) for s in A.symbols_in(f)]
