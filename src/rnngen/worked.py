"""The document's worked example: the derivation's formulas on real numbers.

A short sequence, parameters printed as short decimals, the forward values of
the first step, one entry of one gradient computed by the derivation's own
formula (its symbolic gradient, evaluated), the same number from central
differences of the derivation's own loss, and one step of gradient descent on
that entry. Everything is evaluated from the derivation (``evaluate.run`` over
its graph and adjoints), not from the generated module, so the section checks
the module rather than repeats it (``tests/test_worked.py`` compares the two).

A preset supplies its own sequence and parameters as a ``WorkedExample``
(seed 004's three sentences); every other document uses ``default_example``.
The numbers are rounded for print where they are made, so the section is the
same bytes on every platform.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from rnngen import algebra as A
from rnngen.backprop import Derivation
from rnngen.document import LINE, Notation
from rnngen.evaluate import evaluate, run, size_of
from rnngen.network import size
from rnngen.presets import PRESETS
from rnngen.shapes import size as shape_size
from rnngen.texwidth import EM, width

#: The default example's sizes (every hidden layer n_h) and its seed.
SIZES = (2, 2, 2)
SEED = 4
#: The learning rates the update step may take, in order: the first whose one step lowers the loss by a unit of
#: its last printed digit or more, so that the step shows (an Elman cell's gradients, of order 0.1 to 1, take
#: the first; a gated cell's, of order 0.01, take 10); the first where none does, and the text says the change
#: lies beyond the digits printed. An example that gives its learning rate (``WorkedExample.eta``) keeps it.
ETAS = (0.1, 1.0, 10.0)
#: The step of the central difference: its truncation error (about eps^2 |E'''|) stays far
#: below the last printed digit.
EPS = 1e-4
#: Significant digits of every computed number the section prints.
DIGITS = 4
#: How many times a drawn example's parameters may be halved to keep every number finite.
MAX_HALVINGS = 8
#: How many draws (seeds ``seed``, ``seed + 1``, ...) the default example may take: the first whose update step
#: lowers the printed loss at one of ``ETAS`` (a gated cell's gradients are too small for that at some draws);
#: the first draw where none does.
DRAWS = 8
#: Up to this T the section lists every input and target; beyond it, the rule that makes them.
LISTED_STEPS = 6


@dataclass(frozen=True)
class WorkedExample:
    """What a worked example computes on: the hook a preset fills in.

    Attributes:
        xs: one input per step the graph reads, each ``n_x`` numbers, or for a batch (seed 004's three
            sentences) ``B`` rows of ``n_x`` numbers, time-major as the module takes them.
        targets: one target per loss term, each ``n_y`` numbers (one-hot for classes), or ``B`` rows of them.
        params: parameter name -> its stored array as nested tuples (the module's layout; vectors
            flat); None draws them from ``seed`` and rounds them to two decimals.
        entry: ``(parameter name, index)`` of the gradient entry to work out; None takes the first
            recurrent weight's (``Network.recurrent_weight``) entry of largest gradient in size.
        eta: the learning rate of the update step; None: the first of ``ETAS`` whose step lowers the loss visibly.
        sizes: ``(n_x, n_h, n_y)``, every hidden layer of size ``n_h``.
        sentences: what each sequence reads, in words (``("cat mat rat", ...)``), printed before the
            inputs; empty for none.
        rule: a sentence that says how the inputs and targets were made, printed instead of the
            list when the sequence is too long to list.
        seed: the draw of the parameters that ``params`` leaves out.
    """

    xs: tuple
    targets: tuple
    params: dict | None = None
    entry: tuple | None = None
    eta: float | None = None
    sizes: tuple = SIZES
    sentences: tuple = ()
    rule: str = ""
    seed: int = SEED


def example_for(spec) -> WorkedExample | None:
    """The example a preset supplies for ``spec`` (seed 004's three sentences), or None for the default one;
    a preset's numbers are for the seed's T (three words a sentence), so another T takes the default."""
    preset = PRESETS[spec.preset] if spec.preset else None
    if preset is None or preset.worked is None or spec.T != preset.network["T"]:
        return None
    return WorkedExample(**preset.worked)


@dataclass(frozen=True)
class Worked:
    """The numbers of one worked example (a pure value; ``latex_context`` prints them).

    Attributes:
        example: what it was computed on.
        params: parameter name -> its value (stored layout, 2-D, vectors as columns), as computed with.
        forward: ``(symbol, value)`` of each value of each chain's first step (``first_step``).
        loss: the loss E at the parameters.
        name: the parameter of the chosen entry; ``index`` its index in the stored array.
        gradient: the entry of dE/d(name) by the derivation's formula.
        difference: the same entry by central differences of the derivation's loss, step ``EPS``.
        eta: the learning rate of the update step (the example's, or the one ``ETAS`` chose).
        updated: the entry after one step, ``w - eta * gradient`` (as printed: from the printed numbers).
        loss_after: the loss with the entry updated.
        truncated: True when the gradient is a truncated one, which central differences do not give.
        halvings: how many times the drawn parameters were halved so that every number is finite (a
            network whose activation or output saturates or overflows at the first draw).
        largest: True when the entry is the one of largest gradient in size, the rule when the example names
            none: a tiny gradient would leave the first-order check in rounding.
    """

    example: WorkedExample
    params: dict
    forward: list
    loss: float
    name: str
    index: tuple
    gradient: float
    difference: float
    eta: float
    updated: float
    loss_after: float
    truncated: bool = False
    halvings: int = 0
    largest: bool = False

    @property
    def shows(self) -> bool:
        """The update step moves the loss by a unit of its last printed digit or more (``shows``)."""
        return shows(self.loss, self.loss_after)

    @property
    def finite(self) -> bool:
        """Every number the section prints is a finite float."""
        numbers = [self.loss, self.gradient, self.difference, self.updated, self.loss_after]
        return all(map(math.isfinite, numbers)) and all(np.isfinite(v).all() for _, v in self.forward)


def number(value: float, digits: int = DIGITS, trim: bool = False) -> str:
    """A computed ``value`` to ``digits`` significant digits, as LaTeX: ``-0.1230``, ``1.500 \\times 10^{-5}``.

    The one rounding rule of the section: every computed number to ``digits`` significant digits, trailing
    zeros kept (``1.040``, not ``1.04``); no exponent between 10^-3 and 10^4, no negative zero. ``trim``
    drops the trailing zeros, for a number given rather than computed (``given``).
    """
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    exponent = _exponent(value, digits)
    if -3 <= exponent < 4:
        text = f"{value:.{max(digits - 1 - exponent, 0)}f}"
        text = text.rstrip("0").rstrip(".") if trim and "." in text else text
        return "0" if float(text) == 0 else text
    mantissa, _, power = f"{value:.{digits - 1}e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if trim else mantissa
    power = rf"10^{{{int(power)}}}"
    return power if mantissa == "1" else f"-{power}" if mantissa == "-1" else rf"{mantissa} \times {power}"


def _exponent(value: float, digits: int) -> int:
    """The power of ten of ``value``'s first digit once rounded to ``digits`` significant digits (9.9996 -> 1)."""
    return math.floor(math.log10(abs(float(f"{value:.{digits - 1}e}"))))


def shows(before: float, after: float, digits: int = DIGITS) -> bool:
    """True when the loss moves from ``before`` to ``after`` by a unit of the last digit ``number`` prints of
    ``before`` or more: a change the printed numbers show, not one that only crosses a rounding boundary."""
    if before == 0 or not math.isfinite(before) or not math.isfinite(after):
        return False
    unit = 10.0 ** (_exponent(before, digits) - (digits - 1))
    return abs(after - before) >= unit


def lowers(before: float, after: float) -> bool:
    """The step lowers the loss by a change the printed numbers show: what the learning rate and the draw are
    chosen by, since the text says a step against the gradient lowers the loss (a step too long raises it)."""
    return after < before and shows(before, after)


def given(value: float) -> str:
    """A number given, not computed (an input, a parameter, the learning rate, the updated entry, which is
    exact arithmetic on printed numbers), with all its digits and no trailing zeros: ``0.1``, ``0.4998146``."""
    mantissa = f"{abs(float(value)):.14e}".partition("e")[0].rstrip("0").rstrip(".")
    return number(value, max(len(mantissa.replace(".", "")), 1), trim=True)


def rounded(value: float, digits: int = DIGITS) -> float:
    """``value`` as ``number`` prints it (what the update step computes with)."""
    return float(f"{value:.{digits - 1}e}")


def batch(example: WorkedExample) -> int:
    """How many sequences the example holds (1 for inputs given as vectors)."""
    first = np.asarray(example.xs[0])
    return first.shape[0] if first.ndim == 2 else 1


def _sizes(derivation: Derivation, sizes: tuple, sequences: int = 1) -> dict:
    """Size symbol -> value: n_x, n_y and every hidden layer's size, and B, the number of sequences."""
    n_x, n_h, n_y = sizes
    values = {"n_x": n_x, "n_y": n_y}
    dims = {size(name): n for name, n in values.items()}
    for s in derivation.graph.network.sizes:
        dims.setdefault(s, n_h)
    return dims | {A.B: sequences}


def _shape(symbol, dims) -> tuple:
    return tuple(size_of(d, dims) for d in symbol.shape)


def default_example(derivation: Derivation) -> WorkedExample:
    """The small default: n_x = n_h = n_y = 2, inputs that alternate, targets one step ahead.

    ``x_t`` is the one-hot vector of ``(t - 1) mod n_x`` (so 1, 0 then 0, 1, ...), and the target
    at step t the input of step t + 1, one-hot as well: the sequence predicts its own next symbol.
    """
    n_x, _, n_y = SIZES
    xs = tuple(tuple(float(i == (t - 1) % n_x) for i in range(n_x)) for t in range(1, derivation.spec.T + 1))
    xs = xs[: len(derivation.graph.inputs["x"])]  # one-to-many: the first input only
    targets = tuple(tuple(float(i == t % n_y) for i in range(n_y)) for t in derivation.spec.loss_steps)
    x_t = Notation(derivation.spec).step("x", "t")
    rule = rf"${x_t}$ is the one-hot vector of $(t - 1) \bmod 2$ and each target is the next input, one-hot"
    rule = rule if len(xs) > LISTED_STEPS else ""
    return WorkedExample(xs=xs, targets=targets, rule=rule)


def _params(derivation: Derivation, example: WorkedExample, dims: dict, scale: float = 1.0) -> dict:
    """Name -> 2-D value of every parameter: the example's, or drawn (each entry of size 0.1 to 0.9 times
    ``scale`` and a random sign, two decimals and at least 0.01, so that none is near zero; initial states
    zero, as ``init_params`` has them)."""
    graph = derivation.graph
    rng = np.random.default_rng(example.seed)
    values = {}
    for name, symbol in graph.params.items():
        shape = _shape(symbol, dims)
        if example.params is not None:
            values[name] = np.asarray(example.params[name], dtype=np.float64).reshape(shape)
        elif graph.network.params[name].role == "initial":
            values[name] = np.zeros(shape)
        else:
            magnitude = np.maximum(np.round(rng.uniform(0.1, 0.9, shape) * scale, 2), 0.01)
            values[name] = np.where(rng.random(shape) < 0.5, -magnitude, magnitude)
    return values


def _entry(derivation: Derivation, example: WorkedExample, params: dict) -> tuple:
    """``(name, index)``: the example's entry, or the first recurrent weight with a stand-in index (``_work``
    picks the entry of largest gradient)."""
    if example.entry is not None:
        return example.entry[0], tuple(example.entry[1])
    return derivation.graph.network.recurrent_weight.name, (0, 0)


def _columns(value) -> np.ndarray:
    """A step's value in the math's layout: a column, or one column per sequence."""
    value = np.asarray(value, dtype=np.float64)
    return value.reshape(-1, 1) if value.ndim == 1 else value.T


def _state(value, row: bool, fmt=number) -> tuple:
    """A step's value, ``(n, B)``: a vector for one sequence, else a matrix with a column per sequence
    (a row per sequence in row notation), as the document says a batch is written."""
    if value.shape[1] == 1:
        return _value(value, True, row, fmt)
    return _value(value.T if row else value, False, row, fmt)


def _env(derivation: Derivation, example: WorkedExample, params: dict) -> dict:
    """The values of every parameter and input of the graph, one column per sequence; every step real."""
    graph = derivation.graph
    env = dict(params)
    for symbol, x in zip(graph.inputs["x"], example.xs):
        env[symbol.name] = _columns(x)
    for symbol, y in zip(graph.inputs["y"], example.targets):
        env[symbol.name] = _columns(y)
    for symbol in graph.inputs.get("m", ()):  # every step real
        env[symbol.name] = np.ones((1, batch(example)))
    return env


def _loss(derivation: Derivation, env: dict, dims: dict) -> float:
    graph = derivation.graph
    values = run([(n.symbol, n.expr) for n in graph.nodes], env, dims)
    return float(values[graph.loss.symbol.name].item())


def first_step(graph) -> list:
    """The graph's values of each chain's first step, in the order the network computes them: those that
    read the input of their own step alone (through the initial states). A backward chain's first step is
    T, computed from x_T and its initial state; a value that reads several steps' inputs (a bidirectional
    layer's prediction at step 1 reads the whole backward chain) is left out, as a one-to-many network's
    later steps are, which read x_1 only."""
    x_step = {symbol.name: t for t, symbol in enumerate(graph.inputs["x"], 1)}
    reads: dict = {}  # value -> the names of the inputs x it reads, through every value before it
    shown = []
    for node in graph.nodes:
        found: set = set()
        for symbol in node.expr.free_symbols:
            name = getattr(symbol, "name", None)
            found |= {name} if name in x_step else reads.get(name, set())
        reads[node.symbol.name] = found
        if node.family and {x_step[x] for x in found} == {node.t}:
            shown.append(node)
    return shown


def _size(value: float) -> float:
    """``|value|`` to ten significant digits: compared so, no platform's last bit picks another entry."""
    return float(f"{abs(value):.9e}")


def largest(values: np.ndarray) -> tuple:
    """The index of the entry of largest size (the first in row order among equals)."""
    sizes = np.array([_size(v) for v in values.ravel()])
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(sizes)), values.shape))


def work(derivation: Derivation, example: WorkedExample | None = None) -> Worked:
    """The worked example of ``derivation`` on ``example`` (``default_example`` if None).

    Raises:
        ValueError: the example does not fit the network (a parameter missing, an entry outside it).
    """
    example = example or default_example(derivation)
    graph = derivation.graph
    dims = _sizes(derivation, example.sizes, batch(example))
    if len(example.xs) != len(graph.inputs["x"]) or len(example.targets) != len(graph.inputs["y"]):
        raise ValueError(
            f"the worked example has {len(example.xs)} inputs and {len(example.targets)} targets; "
            f"this network reads {len(graph.inputs['x'])} and {len(graph.inputs['y'])}"
        )
    if example.params is not None and set(example.params) != set(graph.params):
        raise ValueError(f"the worked example's parameters must be exactly {', '.join(graph.params)}")
    if example.params is not None:
        with np.errstate(all="ignore"):  # as a drawn example runs: a number that overflows is printed, not warned of
            return _work(derivation, example, dims, _params(derivation, example, dims))
    first = None
    for seed in range(example.seed, example.seed + DRAWS):
        worked = _finite(derivation, dataclasses.replace(example, seed=seed), dims)
        first = first or worked
        if lowers(worked.loss, worked.loss_after):
            return worked
    return first


def _finite(derivation: Derivation, example: WorkedExample, dims: dict) -> Worked:
    """``_work`` at the example's draw, halved until every number is finite (at most ``MAX_HALVINGS`` times)."""
    for halvings in range(MAX_HALVINGS + 1):
        with np.errstate(all="ignore"):  # a draw that overflows is the one halved next, not a warning
            worked = _work(derivation, example, dims, _params(derivation, example, dims, 0.5**halvings))
        if worked.finite:
            break
    return dataclasses.replace(worked, halvings=halvings)


def _work(derivation: Derivation, example: WorkedExample, dims: dict, params: dict) -> Worked:
    """``work`` at the given parameters."""
    graph = derivation.graph
    name, index = _entry(derivation, example, params)
    if name not in params or len(index) != 2 or not all(0 <= i < n for i, n in zip(index, params[name].shape)):
        raise ValueError(f"the worked entry {name}{list(index)} is not an entry of a parameter of this network")
    env = _env(derivation, example, params)
    values = run([(n.symbol, n.expr) for n in graph.nodes + derivation.adjoints], env, dims)
    forward = [(n.symbol, values[n.symbol.name]) for n in first_step(graph)]
    chosen = example.entry is None and params[name].size > 1
    if chosen:  # the weight's entry of largest gradient: a tiny one would leave the first-order check in rounding
        index = largest(np.asarray(evaluate(derivation.gradients[name], values, dims), dtype=np.float64))
    gradient = float(evaluate(derivation.gradients[name], values, dims)[index])

    def loss_at(shift: float) -> float:
        moved = dict(env)
        moved[name] = params[name].copy()
        moved[name][index] += shift
        return _loss(derivation, moved, dims)

    difference = (loss_at(EPS) - loss_at(-EPS)) / (2 * EPS)
    w = float(params[name][index])
    loss = float(values[graph.loss.symbol.name].item())

    def step(eta: float) -> tuple:
        """``(updated, loss_after)``: exactly the printed w - eta * g (a rounded sum would move the entry by a
        rounding error of its own, as large as the step when the gradient is small), and the loss there."""
        updated = float(Decimal(repr(w)) - Decimal(repr(eta)) * Decimal(repr(rounded(gradient))))
        return updated, loss_at(updated - w)

    etas = ETAS if example.eta is None else (example.eta,)
    steps = ((eta, *step(eta)) for eta in etas)  # taken one by one: most examples keep the first
    eta, updated, loss_after = next((s for s in steps if lowers(loss, s[2])), None) or (etas[0], *step(etas[0]))
    return Worked(
        example=example,
        params=params,
        forward=forward,
        loss=loss,
        name=name,
        index=index,
        gradient=gradient,
        difference=difference,
        eta=eta,
        updated=updated,
        loss_after=loss_after,
        truncated=derivation.spec.truncate is not None and derivation.spec.truncate < derivation.spec.full_horizon,
        largest=chosen,
    )


# --- the document's section -------------------------------------------------------------------


def vector(values, row: bool, fmt=number) -> str:
    """A vector in the notation: ``(0.1, -0.2)`` (a row), ``(0.1, -0.2)^{\\top}`` (a column); ``fmt`` prints
    each number (``number`` for computed ones, ``given``)."""
    text = "(" + ", ".join(fmt(float(v)) for v in np.ravel(values)) + ")"
    return text if row else text + r"^{\top}"


def matrix(values, fmt=number) -> str:
    """A matrix as a ``pmatrix`` on one line (the Markdown conversion splits displays at line ends)."""
    rows = [" & ".join(fmt(float(v)) for v in r) for r in np.asarray(values)]
    return r"\begin{pmatrix} " + r" \\ ".join(rows) + r" \end{pmatrix}"


def _value(value, is_vector: bool, row: bool, fmt=number) -> tuple:
    """``(LaTeX, its stand-in for measuring)``: a pmatrix is measured as its widest row in parentheses
    (``texwidth`` measures formulas, not arrays), a column a quad apart as the array sets them; its parentheses
    span its rows, wider than a ``(`` by about a ``\\Bigl(`` and a thin space each (9 pt for two rows, pdfLaTeX)."""
    if np.size(value) == 1:
        text = fmt(float(np.ravel(value)[0]))
        return text, text
    if is_vector:
        text = vector(value, row, fmt)
        return text, text
    rows = [r" \quad ".join(fmt(float(v)) for v in r) for r in np.asarray(value)]
    return matrix(value, fmt), r"\Bigl(\," + max(rows, key=width) + r"\,\Bigr)"


def _rows(items: list) -> list:
    """``(symbol, (value, stand-in))`` items as align rows of ``symbol = value``, as many to a row as fit
    the line; the first of each row aligned at its ``=``."""
    rows, row, used = [], [], 0.0
    gap = width(r", \qquad ")
    for symbol, (text, proxy) in items:
        size = width(f"{symbol} = {proxy}")
        if row and used + gap + size > LINE - 2 * EM:
            rows.append(row)
            row, used = [], 0.0
        row.append(f"{symbol} = {text}")
        used += (gap if len(row) > 1 else 0.0) + size
    rows.append(row)
    return [r", \qquad ".join([row[0].replace(" = ", " &= ", 1), *row[1:]]) for row in rows if row]


def entry_latex(name: str, index: tuple, is_vector: bool = False) -> str:
    """``W_{12}``, ``(W_{i})_{12}`` for a name with its own subscript, ``b_{1}`` for a vector's entry."""
    i, j = (k + 1 for k in index)
    sub = f"{i}" if is_vector else (f"{i}{j}" if max(i, j) < 10 else f"{i},{j}")
    plain = "_" not in name and "^" not in name
    return f"{name}_{{{sub}}}" if plain else f"({name})_{{{sub}}}"


def _step_of(symbol) -> int:
    """The step of a graph value's symbol (``h_b_5`` -> 5)."""
    return int(symbol.name.rsplit("_", 1)[1])


def latex_context(derivation: Derivation, numbers: dict, example: WorkedExample | None = None) -> dict:
    """What ``worked.tex.jinja`` lays out: the example's numbers as LaTeX strings.

    ``numbers`` is the document's numbering, filled while the template renders: the section cites
    the gradient's equation, numbered before it.
    """
    spec = derivation.spec
    n = Notation(spec)
    w = work(derivation, example)
    ex = w.example
    graph = derivation.graph
    net = graph.network
    dims = _sizes(derivation, ex.sizes, batch(ex))
    sizes = r",\ ".join(f"{shape_size(s)} = {dims[s]}" for s in net.sizes)  # n_x, each layer's, n_y
    inputs, targets = [], []
    if not ex.rule:
        for t, x in enumerate(ex.xs, 1):
            inputs.append((n.step("x", t), _state(_columns(x), n.row, given)))
        targets = [(n.step("y", t), _state(_columns(y), n.row, given)) for t, y in zip(spec.loss_steps, ex.targets)]
    params = [
        (n.latex(graph.params[name]), _value(value, net.params[name].is_vector, n.row, given))
        for name, value in w.params.items()
    ]
    forward = [(n.latex(symbol), _state(value, n.row)) for symbol, value in w.forward]
    name = n.latex(graph.params[w.name])
    g, d = rounded(w.gradient), rounded(w.difference)
    change = w.loss_after - w.loss
    before, after = number(w.loss), number(w.loss_after)
    return dict(
        E=n.E,  # the loss's letter
        sizes=sizes,
        sentences=ex.sentences,
        batch=batch(ex),
        drawn=ex.params is None,
        halvings=w.halvings,
        finite=w.finite,
        seed=ex.seed,
        rule=ex.rule,
        inputs=_rows(inputs) + _rows(targets),  # the targets on rows of their own
        params=_rows(params),
        forward=_rows(forward),
        # a backward chain starts at T: its first step is computed from x_T and its initial state
        backward_first=any(node_t != 1 for node_t in (_step_of(symbol) for symbol, _ in w.forward)),
        largest=w.largest,
        loss=before,
        name=w.name,
        param=name,
        # a scalar weight (seed 004's) is its own entry
        entry=name if w.params[w.name].size == 1 else entry_latex(name, w.index, net.params[w.name].is_vector),
        scalar=w.params[w.name].size == 1,
        entry_row=w.index[0] + 1,
        entry_column=w.index[1] + 1,
        by_rows=n.row,
        value=given(float(w.params[w.name][w.index])),
        gradient=number(g),
        difference=number(d),
        eps=given(EPS),
        eta=given(w.eta),
        # the learning rate the rule raised above the first of ETAS, and the rule in words
        raised=ex.eta is None and w.eta != ETAS[0],
        etas=", ".join(given(e) for e in ETAS[:-1]) + " and " + given(ETAS[-1]),
        step=rf"{given(w.eta)} \cdot ({number(g)})" if g < 0 else rf"{given(w.eta)} \cdot {number(g)}",
        updated=given(w.updated),
        loss_before=before,
        loss_after=after,
        # a small gradient's step changes the loss beyond the digits printed: the change alone is shown
        unseen=not w.shows,
        change=number(change),
        estimate=number(-w.eta * g * g),
        truncated=w.truncated,
        numbers=numbers,
    )
