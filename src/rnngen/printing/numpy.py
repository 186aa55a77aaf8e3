"""NumPy printer: matrix expressions in the math's column layout -> row-major NumPy code.

The math has one column per sequence (``z_t = U x_t + b``, ``n_h x B``); the
arrays have one row per sequence (``z[t]`` is ``B x n_h``), which is how batches
are stored and what makes the time-stacked products single GEMMs. So a data
expression ``e`` is printed as the code of ``e^T``: ``U x_t + b 1^T`` becomes
``x[t] @ U.T + b``. Parameters keep their math shapes; column vectors
(biases, ``h0``) are 1-D arrays that broadcast over rows.

The printer subclasses SymPy's ``Printer`` for its strict ``emptyPrinter``
hook but dispatches itself: each rule returns ``(code, precedence)`` and
knows whether it prints a data expression (transposed) or a parameter, which
SymPy's string-returning ``_print_X`` protocol cannot carry.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix
from sympy.printing.printer import Printer

from rnngen import algebra as A
from rnngen import expression, names, operations
from rnngen.activations import LEAD_SPLIT, columnwise, elementwise
from rnngen.families import family, run_of, step_of
from rnngen.lower import is_data, is_targets, targets_dot_log_softmax
from rnngen.printing import PrintError
from rnngen.program import family_of

#: A stored value or a view of one (``h``, ``h[2]``, ``h[1:]``): squared as ``a * a``, which reads it twice for free.
_STORED = re.compile(r"^[A-Za-z_]\w*(\[[^\[\]()]*\])?$")

# Precedence of printed code. ``*`` and ``@`` bind alike in Python, but a chain
# mixing them is hard to read, so each keeps its own level and gets parentheses
# inside the other.
ADD, MUL, MATMUL, UNARY, ATOM = 1, 2, 3, 4, 5


def _dot_log_softmax_source(name: str, weighted: bool) -> str:
    """The text of the helper ``1ᵀ (Y ∘ log_softmax(A)) 1``; ``weighted``: each row's term times its weight
    ``w`` (a masked loss, ``1ᵀ (Y ∘ log_softmax(A)) wᵀ``). One text, so the two cannot drift apart."""

    def total(rows: str, call: bool = False) -> str:
        if weighted:
            return f"np.vdot(w, {rows})"
        return f"{rows}.sum()" if call else f"({rows}).sum()"

    return (
        f"def {name}(y, a, p{', w' if weighted else ''}):\n"
        f'    """1ᵀ (Y ∘ log_softmax(A)) {"w" if weighted else "1"} for targets Y given as rows or as class indices, '
        "P = softmax(A).\n"
        "\n"
        "    No second pass of exp: for class indices, the log of the targets' probabilities is\n"
        "    log_softmax(A) to a few ulp while they are normal numbers; otherwise log_softmax(A) = A - lse\n"
        "    per row, with lse = max(A) - log max(P) (a row's largest probability never underflows).\n"
        "    The logs come from _log_p, which keeps a confident class's digits.\n"
        '    """\n'
        "    n = a.shape[-1]\n"
        '    if y.dtype.kind != "f":  # flat indices, one per row\n'
        "        q, logs, _, _ = _log_p(p, y)\n"
        f"        total = _normal_total(q, logs{', w' if weighted else ''})\n"
        "        if total is not None:\n"
        "            return total\n"
        "        top = a.max(axis=-1)\n"
        "        lead = p.argmax(axis=-1) + np.arange(0, p.size, n)\n"
        f"        return {total('a.take(y) - top + _log_p(p, lead)[1]')}\n"
        "    y = y.reshape(a.shape)\n"
        "    lead = p.argmax(axis=-1) + np.arange(0, p.size, n)\n"
        "    total = y.sum(axis=-1)\n"
        "    # y.a - sum(y) max(A) before the log: exact for a one-hot row, so its tiny log p survives\n"
        '    shift = np.einsum("ij,ij->i", y, a) - total * a.max(axis=-1)\n'
        f"    return {total('shift + total * _log_p(p, lead)[1]')}\n"
    )


#: Module-level functions the printed code may call, beyond those of the activation registry.
HELPERS = {
    "_softmax": (
        "def _softmax(a, out=None):\n"
        "    # The shift by each row's maximum only where it is needed: when no exp can overflow and\n"
        "    # every row sums to at least 1 (so no probability of 1e-30 or more is subnormal, even in\n"
        "    # float32), exp(a) / sum is the same softmax with two passes less.\n"
        "    # The rows' sums are products with a vector of ones, which BLAS reads faster than .sum\n"
        "    # (np.dot: a third less call overhead than @).\n"
        "    ones = _ones(a.shape[-1], a.dtype)\n"
        "    if a.max() < 64.0:\n"
        "        out = np.exp(a, out=out)\n"
        "        total = np.dot(out, ones)[..., None]\n"
        "        if total.min() >= 1.0:\n"
        "            out /= total\n"
        "            return out\n"
        "    out = np.subtract(a, a.max(axis=-1, keepdims=True), out=out)\n"
        "    np.exp(out, out=out)\n"
        "    out /= np.dot(out, ones)[..., None]\n"
        "    return out\n"
    ),
    "_column_sums": (
        "def _column_sums(a):\n"
        '    """a.sum(axis=0) of rows (N, n), as the product of a vector of ones with a: BLAS reads a faster."""\n'
        "    return np.dot(_ones(a.shape[0], a.dtype), a)\n"
    ),
    "_ones": (
        "def _ones(n, dtype):\n"
        '    """A vector of n ones, kept for the next call: sums as products with it (2-3x faster than .sum)."""\n'
        "    key = (n, dtype.char)\n"
        "    ones = _ONES.get(key)\n"
        "    if ones is None:\n"
        "        ones = np.ones(n, dtype)\n"
        "        if len(_ONES) < 16:  # a bound, for a caller that tries many sizes\n"
        "            _ONES[key] = ones\n"
        "    return ones\n"
        "\n"
        "\n"
        "_ONES = {}\n"
    ),
    "_log_softmax": (
        "def _log_softmax(a):\n"
        "    # log-sum-exp: no overflow for large logits, no log(0) for tiny probabilities; the largest\n"
        "    # entry's own term is split off (log1p of the others'), so log p of a confident class keeps\n"
        "    # its digits (-3.7e-44 at a lead of 100, not 0)\n"
        "    s, _, rest, _ = _lead_split(a)\n"
        "    return s - np.log1p(rest)\n"
    ),
    "_lead_split": LEAD_SPLIT[1],
    "_dot_log_softmax": _dot_log_softmax_source("_dot_log_softmax", weighted=False),
    "_weighted_dot_log_softmax": _dot_log_softmax_source("_weighted_dot_log_softmax", weighted=True),
    "_dot_log_softmax_and_delta": (
        "def _dot_log_softmax_and_delta(y, a, p, out):\n"
        '    """_dot_log_softmax(y, a, p), and P - Y written into ``out`` (which may be P): for class indices\n'
        "    in one pass over the targets' probabilities q and their confident classes (q > 1/2), which both need.\n"
        '    """\n'
        '    if y.dtype.kind == "f":\n'
        "        total = _dot_log_softmax(y, a, p)\n"
        "        _minus_targets(p, y, out=out)\n"
        "        return total\n"
        "    q, logs, sure, rest = _log_p(p, y)\n"
        "    total = _normal_total(q, logs)  # as _dot_log_softmax sums them: loss() gives the same number\n"
        "    if total is None:\n"
        "        total = _dot_log_softmax(y, a, p)  # the careful form, before p is written\n"
        "    if out is not p:\n"
        "        np.copyto(out, p)\n"
        "    q -= 1.0\n"
        "    out.put(y, q)\n"
        "    if sure.size:  # a confident class's 1 - q from its row's others, as in _minus_targets\n"
        "        out.put(y[sure], -rest)\n"
        "    return total\n"
    ),
    "_log_p": (
        "def _log_p(p, at):\n"
        '    """``(q, log q, sure, rest)``: q = P at the flat indices ``at`` (one per row), its log, and the\n'
        "    confident classes (q > 1/2): their places in ``at``, and 1 - q there as the sum of the row's others.\n"
        "\n"
        "    Above 1/2, log q is -log1p((1 - q) / q): log of the rounded q would give 0 for a confident\n"
        "    class's -3.7e-44. A q below 1e-30 may be subnormal, its log short of digits (``_normal_total`` tells);\n"
        "    one that underflowed to 0 is clamped, so that its log stays finite.\n"
        '    """\n'
        "    q = p.take(at)\n"
        "    logs = np.maximum(q, 1e-35)\n"
        "    np.log(logs, out=logs)\n"
        "    sure = (q > 0.5).nonzero()[0]  # one pass: no reduction first to see if there are any\n"
        "    rest = None\n"
        "    if sure.size:\n"
        "        rest = _complement(p, at[sure])\n"
        "        logs[sure] = -np.log1p(rest / q[sure])\n"
        "    return q, logs, sure, rest\n"
    ),
    "_normal_total": (
        "def _normal_total(q, logs, w=None):\n"
        '    """The sum of the ``logs`` of _log_p (each times its weight ``w``, a mask\'s 0 or 1) when every q is\n'
        "    at least 1e-30, a normal number, so that each log is good to a few ulp; else None. No term is above\n"
        "    0, so a sum above log(1e-30) = -69.08 says so without a reduction (a min costs more than the sum\n"
        "    at small sizes). The sum is a product with ones, which BLAS reads faster than .sum().\n"
        '    """\n'
        "    total = np.dot(logs, _ones(logs.size, logs.dtype)) if w is None else np.vdot(w, logs)\n"
        "    return total if total > -69.0 or q.min() > 1e-30 else None\n"
    ),
    "_complement": (
        "def _complement(p, at):\n"
        '    """1 - P at the flat indices ``at`` (at most one per row), as the sum of each row\'s other entries.\n'
        "\n"
        "    The entries at ``at`` are set to 0 for one product of all rows with a vector of ones (faster\n"
        "    than copying those rows out), then put back.\n"
        '    """\n'
        "    n = p.shape[-1]\n"
        "    kept = p.take(at)\n"
        "    p.put(at, 0.0)\n"
        "    sums = np.dot(p.reshape(-1, n), _ones(n, p.dtype)).take(at // n)\n"
        "    p.put(at, kept)\n"
        "    return sums\n"
    ),
    "_id_sums": (
        "def _id_sums(d, ids, n, columns):\n"
        '    """Xᵀ D for the one-hot rows X (N, n) of the token ids ``ids`` and rows D (N, m): the rows of D\n'
        "    summed by id, an id that repeats adding each of its rows; with ``columns``, its transpose Dᵀ X.\n"
        "\n"
        "    For a vocabulary n of up to 256, one product with the one-hot rows (N, n), gathered from a kept\n"
        "    identity, is the fastest (char-rnn, 25 rows of 100 and n = 65: 10-16 µs, against 51 for sort +\n"
        "    reduceat and 66-73 for np.add.at); for a larger one the one-hot rows grow with n, and sorting\n"
        "    the ids to sum runs of rows wins (1,600 rows of 128 and n = 4,096: 1.6 against 10 ms).\n"
        '    """\n'
        "    if n <= 256:\n"
        "        x = _eye(n, d.dtype).take(ids, axis=0)  # rows by id: cheaper than indexing at small sizes\n"
        "        return np.dot(d.T, x) if columns else np.dot(x.T, d)\n"
        '    order = np.argsort(ids, kind="stable")\n'
        "    run = ids[order]\n"
        "    starts = np.flatnonzero(np.concatenate(([True], run[1:] != run[:-1])))\n"
        "    sums = np.zeros((n, d.shape[1]), d.dtype)\n"
        "    sums[run[starts]] = np.add.reduceat(d[order], starts, axis=0)\n"
        "    return np.ascontiguousarray(sums.T) if columns else sums\n"
    ),
    "_eye": (
        "def _eye(n, dtype):\n"
        '    """The identity of size n, kept for the next call: its rows are the one-hot rows of token ids."""\n'
        "    key = (n, dtype.char)\n"
        "    eye = _EYES.get(key)\n"
        "    if eye is None:\n"
        "        eye = np.eye(n, dtype=dtype)\n"
        "        if len(_EYES) < 16:  # a bound, for a caller that tries many sizes\n"
        "            _EYES[key] = eye\n"
        "    return eye\n"
        "\n"
        "\n"
        "_EYES = {}\n"
    ),
    "_carried": (
        "def _carried(pad, reverse=False):\n"
        '    """Per step, whether a sequence padded there (pad: (T, B, 1), true on padded steps) has a real\n'
        "    step after it (before it: reverse, a backward chain), as a list: elsewhere its delta is 0,\n"
        '    and passing it on whole at a padded step adds nothing."""\n'
        "    if reverse:\n"
        "        return _carried(pad[::-1])[::-1]\n"
        "    ahead = np.logical_or.accumulate(~pad[::-1], axis=0)[::-1]  # a real step here or after\n"
        "    return (pad[:-1] & ahead[1:]).any(axis=(1, 2)).tolist() + [False]\n"
    ),
    "_with_ones": (
        "def _with_ones(buf, key, rows):\n"
        '    """``rows`` beside a column of ones, in the buffer ``key`` of the call\'s set (made on first use:\n'
        '    a call with token ids never needs it); a product with the weights and a last row of biases adds them."""\n'
        "    out = buf.get(key)\n"
        "    if out is None:\n"
        "        out = buf[key] = np.ones((rows.shape[0], rows.shape[1] + 1), rows.dtype)\n"
        "    np.copyto(out[:, :-1], rows)\n"
        "    return out\n"
    ),
    "_minus_targets": (
        "def _minus_targets(p, y, out):\n"
        '    """P - Y for targets Y given as rows or as flat class indices (one-hot rows: one entry each).\n'
        "\n"
        "    Where p and y are both above 1/2, p - y is (1 - y) - (1 - p) with 1 - p the row's other\n"
        "    entries: a confident class's gradient keeps its digits (-3.7e-44, not 0).\n"
        '    """\n'
        '    if y.dtype.kind == "f":\n'
        "        sure = np.flatnonzero(y > 0.5)\n"
        "        sure = sure[p.take(sure) > 0.5]\n"
        "        if not sure.size:  # no confident class: the plain difference keeps every digit\n"
        "            return np.subtract(p, y.reshape(p.shape), out=out)\n"
        "        fix = (1.0 - y.take(sure)) - _complement(p, sure)  # before out, which may be p, is written\n"
        "        np.subtract(p, y.reshape(p.shape), out=out)\n"
        "        out.put(sure, fix)\n"
        "        return out\n"
        "    if out is not p:\n"
        "        np.copyto(out, p)\n"
        "    q = out.take(y)\n"
        "    out.put(y, q - 1.0)  # put and take index any layout as flat, in place\n"
        "    sure = y[q > 0.5]  # one pass: no reduction first to see if there are any\n"
        "    if sure.size:\n"
        "        out.put(sure, -_complement(out, sure))  # the entries at sure are left out of the sums\n"
        "    return out\n"
    ),
}


def _product_shape(factors):
    return factors[0].shape[0], factors[-1].shape[1]


def _inplace(rule) -> str:
    """``rule`` applied to ``{0}`` into ``{1}`` (the same array: in place): ``np.tanh({})`` ->
    ``np.tanh({0}, out={1})`` for a NumPy ufunc or a helper that takes ``out=``
    (``_sigmoid({0}, out={1})``); see ``lower.applies_in_place``."""
    return rule.numpy[:-1].replace("{}", "{0}") + ", out={1})"


#: How each ``operations.Into`` form is spelled into ``{out}``.
INTO = {
    "add": "np.add({0}, {1}, out={out})",
    "subtract": "np.subtract({0}, {1}, out={out})",
    "multiply": "np.multiply({0}, {1}, out={out})",
    "square": "np.square({0}, out={out})",
    "softmax": "_softmax({0}, out={out})",
    "minus_targets": "_minus_targets({0}, {1}, out={out})",
}


class NumpyPrinter(Printer):
    """Spells a lowered program's write operations, and the expressions in them, as NumPy code in row layout.

    Every storage decision (which buffer, what goes into the destination first, what is updated in
    place, which scratch and which copy) is made in ``lower``; this class only spells them.
    """

    printmethod = "_rnngen_numpy"

    def __init__(
        self,
        storage: dict,
        T: int,
        class_targets: bool = False,
        softmax_of: dict | None = None,
        homes: dict | None = None,
        row_views=(),
        blocks=(),
    ):
        """``class_targets``: the module may hold the targets ``y`` as class indices, so ``Ŷ - Y``
        goes through a helper that takes either form; ``softmax_of`` maps an argument ``O`` to the
        symbol already holding ``softmax(O)``, which ``1ᵀ (Y ∘ log_softmax(O)) 1`` then reuses.
        ``homes`` (``Lowered.homes``): the families spelled as another's buffer; ``row_views``
        (``Lowered.row_views``): the runs ``(family, lo, hi)`` read as rows through a view in the set."""
        super().__init__()
        self.storage = storage
        self.T = T
        self.class_targets = class_targets
        self.softmax_of = softmax_of or {}
        self.homes = homes or {}
        self.row_views = set(row_views)
        self.blocks = {b.family: b.members for b in blocks}  # side_by_side: the gates in each block, in order
        self._as_steps = False  # set while an operation is printed over (steps, B, n) views
        self._views = frozenset()  # the families read through their list of step views
        #: name -> source of every helper function the printed code calls, in first-use order.
        self.helpers: dict = {}
        #: ``ones of T steps`` -> ``T * B``: the vectors of ones ``_new_buffers`` makes, in first-use order.
        #: Recorded as ``helpers`` are: which sum reads one is how ``d 1`` is spelled, not where a value lives.
        self.ones: dict = {}
        #: Whether a product of time-stacked rows reads ``buf["rows product"]`` (``_new_buffers`` binds it).
        self.rows_product = False

    @classmethod
    def of(cls, lowered) -> NumpyPrinter:
        """The printer of a ``lower.Lowered`` program's module."""
        T = lowered.program.derivation.spec.T
        return cls(
            lowered.storage,
            T,
            class_targets=lowered.class_targets,
            softmax_of=lowered.softmax_of,
            homes=lowered.homes,
            row_views=lowered.row_views,
            blocks=lowered.blocks,
        )

    def row_view(self, family, lo, hi, n) -> tuple:
        """``(key, family, index, n)`` of the view as rows of steps lo..hi that ``_new_buffers`` makes:
        ``("h[1:] rows", "h", "[1:]", "n_h")``."""
        view = self._run_view(family, lo, hi)
        return f"{view} rows", family, view[len(family) :], n

    def _use(self, name):
        """Put the helper ``name`` into the module, with the helpers it calls."""
        self.helpers[name] = HELPERS[name]
        for other in HELPERS:
            if other != name and re.search(rf"(?<!\w){other}\(", HELPERS[name]):
                self._use(other)

    def emptyPrinter(self, expr):
        raise PrintError(f"no NumPy rule for {type(expr).__name__}: {expr}")

    # -- entry points -------------------------------------------------------------

    def write(self, write) -> list:
        """The lines of one lowered statement (``operations.Write``): each operation spelled in turn by
        its ``_write_<Op>`` method. The in-place operations spell runs of steps as ``(steps, B, n)``
        views where the lowering says so; an ``Assign`` spells its value as rows either way."""
        self._views = write.views
        lines = []
        try:
            for op in write.ops:
                spell = getattr(self, f"_write_{type(op).__name__}", None)
                if spell is None:
                    raise PrintError(f"no NumPy spelling for the write operation {op}")
                self._as_steps = write.over_steps and not isinstance(op, operations.Assign)
                line = spell(op)
                if isinstance(line, list):  # a ByInput's branches
                    lines.extend(line)
                elif line is not None:  # an unnamed Take: nothing to spell
                    lines.append(line)
        finally:
            self._as_steps, self._views = False, frozenset()
        return lines

    @staticmethod
    def _write_Take(op) -> str | None:
        return f'{op.name} = buf["{op.name}"]' if op.named else None

    def _write_TakePlace(self, op) -> str:
        view = self._symbol_rows(op.view, as_steps=True)
        if not op.named:
            return f"# {op.family} is {view}: each step is read only by the same step of {op.home}, built on it"
        return f"{op.family} = {view}  # each step is read only by the same step of {op.home}, built on it"

    @staticmethod
    def _write_Reuse(op) -> str:
        return f"{op.family} = {op.dead}  # {op.dead} is not read after this: {op.family} takes its buffer"

    @staticmethod
    def _write_Views(op) -> str:
        views = names.step_views(op.family)
        if op.with_buffers:
            return f'{views} = buf["{views}"]  # its steps as views, made with the buffers: cheaper to index'
        return f"{views} = list({op.family})  # its steps as views: cheaper to index than the array"

    def _write_Copy(self, op) -> str:
        return f"np.copyto({op.name}, {self._transposed_param(op.param)})  # contiguous: every step's GEMM reads it"

    @staticmethod
    def _write_Joined(op) -> str:
        return f"# made above, in one operation over all the gates ({op.block})"

    def _write_Stack(self, op) -> list:
        """One array of the parameters a product over a block of gates reads, filled once per call."""
        if op.form == "rows":  # the matrices as the math writes them
            parts = ", ".join(self._plain(p)[0] for p in op.params)
            lines = [f"np.concatenate(({parts}), out={op.name})  # one above another: one product for the gates"]
        else:
            parts = ", ".join(p.name if p.shape[1] == 1 else self._transposed_param(p) for p in op.params)
            if op.form == "columns":
                lines = [f"np.concatenate(({parts}), axis=1, out={op.name})  # side by side: one product for the gates"]
            elif op.biases:
                biases = ", ".join(b.name for b in op.biases)
                lines = [
                    f"np.stack(({parts}), out={op.name}[:, :-1])  # one per gate, for one operation over the gates",
                    f"np.stack(({biases}), out={op.name}[:, -1])  # each gate's bias, a last row for the ones",
                ]
            else:
                lines = [f"np.stack(({parts}), out={op.name})  # one per gate, for one operation over the gates"]
        if op.halved:
            lo, hi = op.halved
            k = len(op.params)
            if op.form == "rows":  # read by the backward sweep only, which takes the weights as they are
                raise PrintError(f"no NumPy rule for halving the stack {op.name}: its rows are not its gates")
            if (lo, hi) == (0, k):
                part = op.name
            elif op.form == "columns":  # (n, k n): each gate's columns
                part = f"{op.name}.reshape(len({op.name}), {k}, -1)[:, {lo}:{hi}]"
            else:
                part = f"{op.name}[{lo}:{hi}]"
            lines.append(f"{part} *= 0.5  # halved: σ(a) = (1 + tanh(a / 2)) / 2")
        return lines

    def _write_FromTanh(self, op) -> list:
        """Gates that hold ``tanh(a / 2)`` become ``σ(a)``: two passes, in place."""
        dest = self._dest(op.dest)
        return [f"{dest} *= 0.5{self._which(op.dest)}: σ(a) = (1 + tanh(a / 2)) / 2", f"{dest} += 0.5"]

    def _write_WithOnes(self, op) -> str:
        self._use("_with_ones")
        return f'{op.name} = _with_ones(buf, "{op.name}", {self.code(op.data)})  # the product adds the biases'

    def _write_Gather(self, op) -> str:
        return f"np.copyto({self._dest(op.out)}, {self._dest(op.source)})  # side by side: one product for the gates"

    def _write_Gemm(self, op) -> str:
        weight = op.copy or self._transposed_param(op.param)
        # np.dot: a third less call overhead than np.matmul for one step's rows (0.45 against
        # 0.70 µs at B = 1), the same BLAS call. Time-stacked rows times one weight take the
        # product the buffers chose by the rows' count (``_new_buffers``); gates stacked on a third
        # axis (a Stack) stay np.matmul, which broadcasts over them.
        if op.per_step:
            call = "np.dot"
        elif isinstance(op.param, operations.Stack):
            call = "np.matmul"
        else:
            self.rows_product = True
            call = 'buf["rows product"]'
        data = op.data if isinstance(op.data, str) else self.code(op.data)
        return f"{call}({data}, {weight}, out={self._dest(op.out)})"

    def _write_ByInput(self, op) -> list:
        """Both forms of a write that reads the inputs, chosen by the dtype of ``xs`` (``_prepare``
        checks token ids and hands them over as intp)."""
        x = family_of(op.ids[0].ids)
        rows = [self._spell_nested(o) for o in op.rows]
        ids = [self._spell_nested(o) for o in op.ids]
        return [
            f'if {x}.dtype.kind == "f":',
            *(f"    {line}" for line in rows),
            "else:  # token ids (intp, checked), standing for the inputs' one-hot rows",
            *(f"    {line}" for line in ids),
        ]

    def _spell_nested(self, op) -> str:
        spell = getattr(self, f"_write_{type(op).__name__}", None)
        if spell is None:
            raise PrintError(f"no NumPy spelling for the write operation {op}")
        return spell(op)

    def _write_Lookup(self, op) -> str:
        # mode="clip": the ids are checked already, and "raise" would copy through a temporary; the
        # method, not np.take: a third less call overhead (1.8 against 2.6 µs for 5 ids of 16 entries)
        weight = self._transposed_param(op.param)
        axis = 1 if isinstance(op.param, operations.Stack) else 0  # (gates, n_x, n): the ids pick along n_x
        return f'{weight}.take({self._ids(op.ids)}, axis={axis}, out={self._dest(op.out)}, mode="clip")'

    def _write_IdSums(self, op) -> str:
        self._use("_id_sums")
        n = op.ids.shape[0]
        return f"{op.dest.name} = _id_sums({self.code(op.rows)}, {self._ids(op.ids)}, {n}, columns={not op.row})"

    def _ids(self, sym) -> str:
        """The token ids that stand for the inputs ``sym`` (a step: (B,), a run: flat (steps * B,))."""
        step, run = step_of(sym), run_of(sym)
        if step:
            return self._step(*step, views=False)
        return f"{self._run_view(*run)}.reshape(-1)"

    def _write_Into(self, op) -> str:
        if op.fn in ("softmax", "minus_targets"):
            self._use(f"_{op.fn}")
        args = [self.code(a) for a in op.args]
        if op.fn == "minus_targets":  # the targets as rows or as class indices
            args[1] = self._targets_code(op.args[1])
        return INTO[op.fn].format(*args, out=self._dest(op.dest))

    def _write_LossAndDelta(self, op) -> str:
        self._use("_dot_log_softmax_and_delta")
        probs, targets, logits = op.args
        call = (
            f"_dot_log_softmax_and_delta({self._targets_code(targets)}, {self.code(logits)}, "
            f"{self.code(probs)}, out={self._dest(op.dest)})"
        )
        return f"{op.loss.name} = {self._scaled(op.coeff, (call, ATOM))[0]}  # and {self._dest(op.dest)}, in place"

    def _write_Update(self, op) -> str:
        if isinstance(op.expr, operations.Stack):  # token ids' rows: the stack's last row, the gates' biases
            if not op.expr.biases:
                raise PrintError(f"no NumPy rule for adding the stack {op.expr.name}: only its biases' row is added")
            code = f"{op.expr.name}[:, -1:]"
        elif isinstance(op.expr, (str, operations.ByGate)):
            code = self._dest(op.expr)
        else:
            code = self.code(op.expr)
        return self._update(self._dest(op.dest), op.op, code) + self._which(op.dest)

    def _write_Padded(self, op) -> str:
        """Where the step's mask is 0 only: ``np.copyto`` (=) or ``np.add`` (+) with ``where=`` the step of
        ``pad``, the mask's complement as booleans that the module's ``_mask`` makes once per call,
        and only at a step that ``padded`` (made with it) says has a padded sequence."""
        if run_of(op.mask):  # steps side by side, as rows: the padded rows zeroed by one boolean index
            family, lo, hi = run_of(op.mask)
            first, count = self.storage[family].first, self.storage[family].count
            steps = "pad" if (lo, hi) == (first, first + count - 1) else f"pad[{lo - first}:{hi - first + 1}]"
            if op.op != "0" or isinstance(op.dest, str):
                raise PrintError(f"no NumPy rule for {op}: a run of steps is only zeroed where padded")
            saved, self._as_steps = self._as_steps, False  # as rows, which the flat mask indexes
            rows = self._symbol_rows(op.dest)
            self._as_steps = saved
            return f"{rows}[{steps}.reshape(-1)] = 0.0"
        family, t = step_of(op.mask)
        k = t - self.storage[family].first
        dest, where = self._dest(op.dest), f"pad[{k}]"
        if op.op == "0":
            call = f"np.copyto({dest}, 0.0, where={where})"
        elif op.op == "=":
            call = f"np.copyto({dest}, {self.code(op.expr)}, where={where})"
        else:
            call = f"np.add({dest}, {self.code(op.expr)}, out={dest}, where={where})"
        # a step where no sequence is padded skips the call: a masked call costs 2-3 µs on
        # (32, 128), and post-padded batches have real steps only, up to their shortest length
        return [f"if {op.guard}[{k}]:", f"    {call}"]

    def _write_Carried(self, op) -> str:
        self._use("_carried")
        return f"{op.name} = _carried(pad{', reverse=True' if op.reverse else ''})"

    def _write_Apply(self, op) -> str:
        rule = elementwise(op.fn)
        self.helpers.update(rule.helpers)
        dest = self._dest(op.dest)
        return _inplace(rule).format(dest if op.arg is None else self.code(op.arg), dest) + self._which(op.dest)

    def _which(self, dest) -> str:
        """For some gates of a block, a comment naming them (``# i, f, o``): their place in it says nothing."""
        if not isinstance(dest, operations.Gates):
            return ""
        letters = [family(m).text_spelling(gated=True) for m in self.blocks[dest.block][dest.lo : dest.hi]]
        return f"  # {', '.join(letters)}"

    def _write_Assign(self, op) -> str:
        """``dest = value`` in the storage ``op.form`` names."""
        target, form = op.dest, op.form
        if form == "name":
            return f"{target.name} = {self.code(op.expr)}"
        if form == "array":
            return f"{self._step(*step_of(target), views=False)} = {self._any(op.expr)[0]}"
        if form == "fill":  # a slice is filled as it is; a whole array or a buffer's entry through [...]
            dest = self._symbol_rows(target)
            whole = not dest.endswith("]") or dest.startswith("buf[")
            return f"{dest}{'[...]' if whole else ''} = {self._any(op.expr)[0]}"
        family, lo, hi = run_of(target)
        if form == "rows":
            return f"{family} = {self._any(op.expr)[0]}"
        count = "T" if hi - lo + 1 == self.T else str(hi - lo + 1)
        return f"{family} = {self._wrap(self._any(op.expr), ATOM)}.reshape({count}, B, -1)"

    def _dest(self, dest) -> str:
        """A destination: a scratch's name (or its gates' view), some gates of a block, or a data symbol."""
        if isinstance(dest, operations.ByGate):
            return f'buf["{by_gate(dest.name)}"]'
        if isinstance(dest, operations.Gates):
            part = "" if (dest.lo, dest.hi) == (0, dest.count) else f"[{dest.lo}:{dest.hi}]"
            if dest.t is None:
                return f'buf["{dest.block} rows"]{part}'
            return f"{names.step_views(dest.block)}[{dest.t - self.storage[dest.block].first}]{part}"
        return dest if isinstance(dest, str) else self._symbol_rows(dest)

    @staticmethod
    def _update(dest, op, code) -> str:
        """``dest op= code`` in place; a reshaped view (``v.reshape(..)``) needs the ufunc's ``out=``."""
        if not dest.endswith(")"):
            return f"{dest} {op}= {code}"
        ufunc = {"+": "add", "-": "subtract", "*": "multiply"}[op]
        return f"np.{ufunc}({dest}, {code}, out={dest})"

    def code(self, expr) -> str:
        return self._any(expr)[0]

    # -- targets that may be class indices ------------------------------------------------

    def _targets_code(self, sym) -> str:
        """The targets ``sym`` names: their steps' rows (.., B, n_y), unreshaped, or all the flat class indices.

        The module holds flat class indices (one per row of the stacked outputs) only for the steps
        the loss reads, and every reader of the targets reads all of those steps.
        """
        if not self.class_targets:
            return self._symbol_rows(sym, as_steps=True)
        step, run = step_of(sym), run_of(sym)
        st = self.storage["y"]
        lo, hi = (step[1], step[1]) if step else run[1:]
        if (lo, hi) != (st.first, st.first + st.count - 1):
            raise PrintError(f"class indices are held for all the steps the loss reads, not for {sym.name} alone")
        return "y"

    def _dot_log_softmax(self, body):
        """Code of ``1ᵀ (Y ∘ log_softmax(O)) 1`` when ``body`` is that product, else None.

        It reuses softmax(O) for targets in either form, so it does not depend on ``class_targets``.
        """
        parts = targets_dot_log_softmax(body, self.softmax_of)
        if parts is None:
            return None
        y, o = parts
        self._use("_dot_log_softmax")
        return f"_dot_log_softmax({self._targets_code(y)}, {self.code(o)}, {self.code(self.softmax_of[o])})"

    # -- helpers ----------------------------------------------------------------------

    def _any(self, expr):
        return self._rows(expr) if is_data(expr) else self._plain(expr)

    @staticmethod
    def _wrap(code_prec, at_least):
        code, prec = code_prec
        return code if prec >= at_least else f"({code})"

    def _step(self, family, t, views=True):
        """Step ``t`` of ``family``: through its list of views where the lowering says it exists."""
        family = self.homes.get(family, family)
        name = names.step_views(family) if views and family in self._views else family
        return f"{name}[{t - self.storage[family].first}]"

    def _symbol_rows(self, sym, as_steps=False):
        """Code of a data symbol as rows; with ``as_steps``, a run of steps as its (steps, B, n) view."""
        step, run = step_of(sym), run_of(sym)
        if step:
            return self._step(*step)
        if run:
            family, lo, hi = run
            family = self.homes.get(family, family)
            view = self._run_view(family, lo, hi)
            if as_steps or self._as_steps or not self.storage[family].steps:
                return view
            if (family, lo, hi) in self.row_views:  # made with the buffers
                return f'buf["{self.row_view(family, lo, hi, sym.shape[0])[0]}"]'
            return f"{view}.reshape(-1, {sym.shape[0]})"
        raise PrintError(f"{sym.name} is not a data symbol")

    def _run_view(self, family, lo, hi) -> str:
        """Steps lo..hi of ``family`` as a slice of its array: ``h[1:]`` of steps, ``o[B:]`` of time-stacked rows."""
        st = self.storage[family]
        a, b, n = lo - st.first, hi - st.first + 1, st.count
        if not st.steps:  # time-stacked rows: step k holds rows k*B .. (k+1)*B - 1
            start = "" if a == 0 else "B" if a == 1 else f"{a} * B"
            stop = "" if b == n else "B" if b == 1 else f"{b} * B"
        else:
            start = "" if a == 0 else str(a)
            stop = "" if b == n else str(b - n) if b == n - 1 else str(b)
        return family if (start, stop) == ("", "") else f"{family}[{start}:{stop}]"

    def _join(self, terms):
        parts = []
        for term in terms:
            coeff, body = A.split_coeff(term)
            sign = " - " if coeff < 0 else " + "
            body = A.scale(abs(coeff), body)
            code = self._wrap(self._any(body), MUL if sign == " - " else ADD)
            parts.append((sign, code))
        first_sign, first = parts[0]
        out = f"-{first}" if first_sign == " - " else first
        return "".join([out] + [s + c for s, c in parts[1:]]), ADD

    def _scaled(self, coeff, code_prec):
        if coeff == 1:
            return code_prec
        if coeff == -1:
            return f"-{self._wrap(code_prec, UNARY)}", UNARY
        return f"{float(coeff)!r} * {self._wrap(code_prec, UNARY)}", MUL

    def _chain(self, operands, op):
        if len(operands) == 1:
            return operands[0]
        level = MATMUL if op == "@" else MUL
        first, *rest = operands
        lead = first[0] if first[1] in (level, UNARY, ATOM) else f"({first[0]})"
        pieces = [lead] + [self._wrap(r, UNARY) for r in rest]
        return f" {op} ".join(pieces), level

    @staticmethod
    def _dot(operands):
        """The matrix product of ``operands`` (code, precedence), left to right, as nested ``np.dot``.

        For a product whose left operand is a vector or a transposed run of rows (a gradient's
        ``dz.T X``): a third less call overhead than ``@`` (1.5 against 2.1 µs at small sizes) and
        the same time at the large workload (dE/dU, dE/dW, dE/dV: 0.99-1.00x, one BLAS thread).
        Rows times a weight stay ``@`` and ``np.matmul``: there np.dot took 1.05-1.08x the time of
        a large GEMM (6400 x 256 by 256 x 512, float64, best of 40).
        """
        if len(operands) == 1:
            return operands[0]
        code = operands[0][0]
        for right in operands[1:]:
            code = f"np.dot({code}, {right[0]})"
        return code, ATOM

    def _column_sums(self, expr) -> str:
        """Code of ``expr 1``, the sum of a data expression's rows: a product with a vector of ones.

        The rows of a data symbol (a step: B; a run of k steps: k * B) are counted here, so its
        ones come from the call's set (``buf["ones of T steps"]``, made with the buffers): 0.3 µs less
        than the helper ``_column_sums``, which looks its ones up by size on every call. The key
        names no size, which the function's prologue would define.
        """
        rows = self._rows(expr)[0]
        step, run = step_of(expr), run_of(expr)
        if not (step or run):
            self._use("_column_sums")
            return f"_column_sums({rows})"
        k = 1 if step else run[2] - run[1] + 1
        key = "ones of a step" if k == 1 else f"ones of {'T' if k == self.T else k} steps"
        self.ones[key] = "B" if k == 1 else "T * B" if k == self.T else f"{k} * B"
        return f'np.dot(buf["{key}"], {rows})'

    @staticmethod
    def _transposed_param(factor) -> str:
        if isinstance(factor, operations.Stack):  # the parameters in one array, as the product reads them
            return factor.name
        if isinstance(factor, Transpose) and isinstance(factor.arg, MatrixSymbol):
            return factor.arg.name
        if isinstance(factor, MatrixSymbol):
            return f"{factor.name}.T"
        raise PrintError(f"no NumPy rule for the parameter factor {factor}")

    # -- data expressions: code for expr^T (one row per sequence) ------------------------

    def _rows(self, expr):
        if isinstance(expr, MatrixSymbol):
            return self._symbol_rows(expr), ATOM
        if isinstance(expr, MatAdd):
            return self._join(expr.args)
        if isinstance(expr, MatMul):
            coeff, factors = expr.as_coeff_matrices()
            return self._scaled(coeff, self._rows_product(factors))
        if isinstance(expr, HadamardProduct):
            numer = [f for f in expr.args if not (isinstance(f, HadamardPower) and f.exp == -1)]
            denom = [f.base for f in expr.args if f not in numer]
            code = self._chain([self._rows(f) for f in numer], "*")
            for d in denom:  # a sum before the quotient needs its parentheses: (1 - y) / (1 - yhat)
                code = f"{self._wrap(code, MUL)} / {self._wrap(self._rows(d), UNARY)}", MUL
            return code
        if isinstance(expr, HadamardPower) and expr.exp == 2:
            base = self._rows(expr.base)
            if not _STORED.match(base[0]):  # a call or an expression: evaluated once, not twice
                return f"np.square({base[0]})", ATOM
            return self._chain([base, base], "*")
        if isinstance(expr, HadamardPower) and expr.exp == -1:
            return f"1.0 / {self._wrap(self._rows(expr.base), UNARY)}", MUL
        if isinstance(expr, OneMatrix):
            return "1.0", ATOM
        if isinstance(expr, ZeroMatrix):  # a truncated gradient no kept path reaches: assigned, broadcast
            return "0.0", ATOM
        if isinstance(expr, A.Elementwise):
            rule = elementwise(expr.fn)
            self.helpers.update(rule.helpers)
            code = self._rows(expr.arg)
            if rule.is_identity:  # the argument itself
                return code
            return rule.numpy.format(code[0]), ATOM
        if isinstance(expr, A.Columnwise):
            rule = columnwise(expr.fn)
            self.helpers.update(rule.helpers)
            codes = [self._targets_code(a) if is_targets(a) else self.code(a) for a in expr.operands]
            return rule.numpy.format(*codes), ATOM
        if isinstance(expr, A.LogSoftmax):  # before Softmax: it is a subclass
            self._use("_log_softmax")
            return f"_log_softmax({self.code(expr.arg)})", ATOM
        if isinstance(expr, A.Softmax):
            self._use("_softmax")
            return f"_softmax({self.code(expr.arg)})", ATOM
        return self.emptyPrinter(expr)

    def _rows_product(self, factors):
        last = factors[-1]
        if isinstance(last, OneMatrix) and last.shape[0] == 1:
            # p 1^T: a parameter column repeated for every sequence; broadcasting does it.
            return self._plain(A.mul(*factors[:-1]))
        if isinstance(factors[0], OneMatrix) and A.mul(*factors[1:]).shape[0] == 1:
            # 1 m: a row (a step's mask) repeated down every column; broadcasting does it.
            return self._rows(A.mul(*factors[1:]))
        if isinstance(factors[0], OneMatrix):
            # 1 1^T a: every entry of a column replaced by the column's sum.
            inner = self._rows(A.mul(*factors[1:]))
            return f"{self._wrap(inner, ATOM)}.sum(axis=-1, keepdims=True)", ATOM
        if not is_data(last):
            raise PrintError(f"no NumPy rule for the product {MatMul(*factors)}")
        # P_1 ... P_k d  ->  d^T P_k^T ... P_1^T
        operands = [self._rows(last)] + [(self._transposed_param(f), ATOM) for f in reversed(factors[:-1])]
        return self._chain(operands, "@")

    # -- parameter-shaped expressions -------------------------------------------------

    def _plain(self, expr):
        if isinstance(expr, MatrixSymbol):
            return expr.name, ATOM
        if isinstance(expr, Transpose) and isinstance(expr.arg, MatrixSymbol):
            return f"{expr.arg.name}.T", ATOM
        if isinstance(expr, MatAdd):
            return self._join(expr.args)
        if isinstance(expr, MatMul):
            coeff, factors = expr.as_coeff_matrices()
            return self._scaled(coeff, self._plain_product(list(factors)))
        if isinstance(expr, A.Concat):  # a blocked parameter's gradient: its blocks' gradients side by side
            parts = ", ".join(self._plain(p)[0] for p in expr.parts)
            return f"np.concatenate(({parts}), axis={expr.axis})", ATOM
        return self.emptyPrinter(expr)

    def _plain_product(self, factors):
        last = factors[-1]
        if isinstance(last, OneMatrix) and last.shape[0] == A.B:
            # d 1: a sum over the sequences of the batch (and over stacked steps).
            inner = factors[:-1]
            if isinstance(inner[0], OneMatrix) and inner[0].shape[0] == 1:
                # 1^T d 1: the sum of every entry (the loss); of a ∘ b, a dot product with no temporary.
                body = A.mul(*inner[1:])
                cross_entropy = self._dot_log_softmax(body)
                if cross_entropy:
                    return cross_entropy, ATOM
                if isinstance(body, HadamardProduct) and len(body.args) == 2 and is_data(body):
                    a, b = (self.code(f) for f in body.args)
                    return f"np.vdot({a}, {b})", ATOM
                return f"np.sum({self.code(body)})", ATOM
            product = A.mul(*inner)
            coeff, flat = product.as_coeff_matrices() if isinstance(product, MatMul) else (1, [product])
            if coeff == 1 and len(flat) > 1 and is_data(flat[-1]) and not any(is_data(f) for f in flat[:-1]):
                # P d 1 = P (d 1): the sum over the sequences first, then a product with a vector
                params = [(self._transposed_param(f), ATOM) for f in reversed(flat[:-1])]
                return self._dot([(self._column_sums(flat[-1]), ATOM), *params])
            return self._column_sums(product), ATOM
        if isinstance(last, Transpose) and last.shape[1] == 1 and isinstance(factors[0], OneMatrix):
            # 1^T d w^T: the sum of each sequence's column weighted by w (a masked loss), one dot product
            weights = self.code(last.arg)
            parts = targets_dot_log_softmax(A.mul(*factors[1:-1]), self.softmax_of)
            if parts is not None:  # the cross-entropy's, from the softmax already computed
                y, o = parts
                self._use("_weighted_dot_log_softmax")
                codes = (self._targets_code(y), self.code(o), self.code(self.softmax_of[o]), weights)
                return f"_weighted_dot_log_softmax({', '.join(codes)})", ATOM
            body = self._rows(A.mul(*factors[1:-1]))
            return f"np.vdot({weights}, {self._wrap(body, ATOM)}.sum(axis=-1))", ATOM
        for i in range(1, len(factors)):
            left, right = factors[:i], factors[i:]
            if _product_shape(left)[1] == A.B:
                # L R with the batch on the inner dimension: (L^T)^T (R^T)
                lhs = self._rows(A.mul(*left))
                rhs = self._rows(A.transpose(A.mul(*right)))
                return self._dot([(f"{self._wrap(lhs, ATOM)}.T", ATOM), rhs])
        return self._chain([self._plain(f) for f in factors], "@")


# -- scalar expressions (custom activations) ------------------------------------------

_POWER = 4  # binds tighter than unary minus in Python


def by_gate(scratch: str) -> str:
    """The key of the view ``(gates, B, n)`` of a one-step scratch ``(B, gates n)`` in the call's set."""
    return f"{scratch} by gate"


def block_buffers(lowered) -> list:
    """The lines of ``_new_buffers`` that make a block's views (``side_by_side``), after the buffers: each
    gate's own array, the steps' views and the rows of the block, and each scratch's view by gate."""
    ops = [op for w in lowered.writes for op in operations.flat(w.ops)]
    fields = [getattr(op, f, None) for op in ops for f in ("expr", "out", "dest", "source")]
    as_rows = {f.block for f in fields if isinstance(f, operations.Gates) and f.t is None}
    lines = []
    for b in lowered.blocks:
        k, n = len(b.members), b.width
        lines += [f'buf["{m}"] = buf["{b.family}"][{j}]  # its gate of {b.family}' for j, m in enumerate(b.members)]
        views = names.step_views(b.family)
        lines.append(f'buf["{views}"] = list(buf["{b.family}"].swapaxes(0, 1))  # each step\'s gates, (gates, B, n)')
        if b.family in as_rows:
            lines.append(f'buf["{b.family} rows"] = buf["{b.family}"].reshape({k}, -1, {n})  # each gate\'s rows')
    scratches = {f.name: f for f in fields if isinstance(f, operations.ByGate)}
    for name, g in scratches.items():
        lines.append(f'buf["{by_gate(name)}"] = buf["{name}"].reshape(-1, {g.count}, {g.width}).swapaxes(0, 1)')
    return lines


def scalar_code(expr) -> str:
    """NumPy code of a scalar SymPy expression in ``x``, spaced as the formatter writes it.

    SymPy's own code printers space operators differently from ruff format, and
    generated modules must be formatted, so this small printer writes exactly
    the spelling the formatter keeps.
    """
    return _scalar(expr)[0]


def _simple(code_prec) -> bool:
    """An operand the formatter hugs in a power: a name or a number, maybe negated."""
    code = code_prec[0].lstrip("-")
    return code.replace(".", "").replace("_", "").isalnum()


def _scalar(e):
    if e.is_Symbol:
        return e.name, ATOM
    if e.is_Integer:
        return str(e), ATOM if e >= 0 else UNARY
    if e.is_Rational:
        return f"{e.p} / {e.q}", MUL
    if e.is_Float:
        value = float(e)
        return repr(value), ATOM if value >= 0 else UNARY
    if e is sp.pi:
        return "np.pi", ATOM
    if e.is_Add:
        terms = [_scalar(t) for t in e.as_ordered_terms()]
        out = terms[0][0]
        for code, prec in terms[1:]:
            if code.startswith("-") and prec >= MUL:
                out += f" - {code[1:]}"
            else:
                out += f" + {code if prec > ADD else f'({code})'}"
        return out, ADD
    if e.is_Mul:
        coeff, factors = e.as_coeff_mul()
        numer = [f for f in factors if not (f.is_Pow and f.exp.is_negative)]
        denom = [f.base if f.exp == -1 else sp.Pow(f.base, -f.exp) for f in factors if f not in numer]
        parts = [NumpyPrinter._wrap(_scalar(f), MUL + 1) for f in numer] or ["1"]
        code = " * ".join(parts)
        for d in denom:
            code += f" / {NumpyPrinter._wrap(_scalar(d), MUL + 1)}"
        if coeff == -1:
            return f"-{code}", MUL
        if coeff != 1:
            return f"{NumpyPrinter._wrap(_scalar(coeff), MUL)} * {code}", MUL
        return code, MUL
    if e.is_Pow:
        if e.exp == sp.S.Half:
            return f"np.sqrt({_scalar(e.base)[0]})", ATOM
        if e.exp == -1:
            return f"1 / {NumpyPrinter._wrap(_scalar(e.base), MUL + 1)}", MUL
        base, exp = _scalar(e.base), _scalar(e.exp)
        base_code = base[0] if base[1] == ATOM else f"({base[0]})"
        exp_code = exp[0] if exp[1] >= UNARY else f"({exp[0]})"
        op = "**" if _simple((base_code, 0)) and _simple((exp_code, 0)) else " ** "
        return f"{base_code}{op}{exp_code}", _POWER
    if isinstance(e, sp.Function) and type(e).__name__ in expression.NUMPY:
        return f"{expression.NUMPY[type(e).__name__]}({_scalar(e.args[0])[0]})", ATOM
    raise PrintError(f"no NumPy rule for {type(e).__name__}: {e}")
