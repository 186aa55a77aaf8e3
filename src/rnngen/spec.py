"""``RNNSpec``: what network to derive, validated once, here."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import keyword
import re
import shlex
from dataclasses import asdict, dataclass

from rnngen import expression
from rnngen.activations import DEFAULT_SLOPE, FUSED, HIDDEN, LOSSES, OUTPUT_LAYERS, elementwise, pairs
from rnngen.cells import CELLS, GRU_RESETS
from rnngen.names import FIXED_PARAMS, gradient, taken

#: Largest unroll length accepted. Derivation and output grow linearly in T;
#: past this the unrolled straight-line module stops being a sensible artifact
#: (tens of thousands of lines) and a loop-based implementation is the better tool.
MAX_T = 1000

#: Where the loss is applied: at every step, or at the last step only.
MAPPINGS = {
    "many-to-many": "a target and a loss term at every step (sequence labelling, language models); "
    "with --delay d, from step d + 1 on",
    "many-to-one": "one target, a loss at the last step only (classifying or scoring a sequence)",
    "one-to-many": "one input at the first step, a target and a loss at every step (generating a sequence)",
}
#: How vectors are written: columns (h_t = f(U x_t + W h_{t-1} + b)) or rows (h^t = f(x^t W + h^{t-1} U + b)).
NOTATIONS = {
    "column": "column vectors: h_t = f(U x_t + W h_{t-1} + b), yhat_t = g(V h_t + c)",
    "row": "row vectors: h^t = f(x^t U + h^{t-1} W + b), yhat^t = g(h^t V + c); matrices are transposed",
    "stacked": "column vectors, one matrix on the stacked vector: h_t = f(W [h_{t-1}; x_t] + b) (no input name)",
    "stacked-row": "row vectors, one matrix on the stacked row: h^t = f([h^{t-1}, x^t] W + b) (no input name)",
}
#: Where a masked module's ``lengths`` put the padded steps: after each sequence's real steps, or before.
PADDINGS = ("post", "pre")
#: Largest number of stacked layers accepted.
MAX_LAYERS = 8
#: The three weight matrices, in the order ``names`` lists them.
ROLES = ("input", "recurrent", "output")
DEFAULT_NAMES = ("U", "W", "V")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)?$")
MAX_NAME = 12


class SpecError(ValueError):
    """A spec that cannot be derived; the message says what is allowed."""


def _choice(kind: str, value: str, allowed, extra: str = "") -> None:
    if value in allowed:
        return
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(f"unknown {kind} {value!r}{hint}; choose one of: {', '.join(allowed)}{extra}")


def _whole(value, top: int, allowed: str) -> int:
    """``value`` (an int, or text that reads as one) as a whole number in 1..top, or SpecError(allowed)."""
    if isinstance(value, bool):
        raise SpecError(f"{allowed}, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SpecError(f"{allowed}, got {value!r}") from None
    if not isinstance(value, int) or not 1 <= value <= top:
        raise SpecError(f"{allowed}, got {value!r}")
    return value


def check_T(value) -> int:
    """Return ``value`` as an unroll length, or raise SpecError saying what is allowed."""
    return _whole(value, MAX_T, f"T must be a whole number from 1 to {MAX_T}")


def check_truncate(value, full: int) -> int | None:
    """Return ``value`` as a truncation horizon (None: no truncation), or raise SpecError saying what
    is allowed; ``full`` is the spec's ``full_horizon``, the largest horizon (it cuts no path)."""
    if value is None:
        return None
    allowed = f"the truncation horizon must be a whole number from 1 to {full} ({full} cuts no path: the full gradient)"
    return _whole(value, full, allowed)


def truncation_rule(tau="τ", directions: str = "both", layers: int = 1, latex: str | None = None) -> str:
    """The rule of truncated BPTT with horizon ``tau``, stated once: the module's docstring, ``--help``,
    ``api.derive`` and the documents all read it from here.

    Args:
        tau: the horizon, a number or its name (``"τ"``, ``"TAU"``).
        directions: ``"forward"`` (a network of one direction) or ``"both"`` (bidirectional).
        layers: the layers; with stacked bidirectional layers the steps said are the top layer's.
        latex: for the document, the loss term E_t as the notation spells it; the math is then in ``$...$``.
    """
    if isinstance(tau, int):
        older = "" if tau == 1 else f" - {tau - 1}"
        most, back, ahead, last = f"{tau - 1}", f"t{older}", f"t{older.replace('-', '+')}", f"T{older}"
    else:
        most, back, ahead, last = f"{tau} - 1", f"t - {tau} + 1", f"t + {tau} - 1", f"T - {tau} + 1"
    edges = "edge" if most == "1" else "edges"

    def m(text: str) -> str:
        if latex is None:
            return text
        text = (
            text.replace("E_t", latex)
            .replace("τ", r"\tau")
            .replace("<=", r"\le")
            .replace(">=", r"\ge")
            .replace("..", r", \dots, ")
        )
        return f"${text}$"

    forward = f"a forward chain at the steps {m(f'{back}..t')} (its initial state for {m(f't <= {tau}')})"
    backward = (
        f"a backward chain at the steps {m(f't..{ahead}')} (its initial state, read at step {m('T')}, "
        f"for {m(f't >= {last}')})"
    )
    where, tail = "so it reaches", ""
    if directions == "both":
        forward = f"{forward} and {backward}"
        if layers > 1:  # below the top layer a path can zigzag
            where = "so in the top layer it reaches"
            tail = "; below it, a path can go back in one layer and forward in the next"
    return (
        f"the gradient of each loss term {m('E_t')} keeps only the paths that cross at most {m(most)} recurrent "
        f"{edges} (a step of a chain to its next step; the edge into an initial state, which is read at its "
        f"chain's first step, is not counted), {where} {forward}{tail}"
    )


def check_names(value) -> tuple:
    """The three matrix names (input, recurrent, output) as a tuple, or SpecError.

    A name rnngen uses for itself (``names.taken``) is refused, so no name in the generated
    module has two meanings.
    """
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        example = "U,W,V or ('U', 'W', 'V')"
        raise SpecError(f"give three matrix names, input,recurrent,output (e.g. {example}), got {value!r}")
    names = tuple(n.strip() for n in value)
    if len(names) != 3:
        raise SpecError(f"give three matrix names, input,recurrent,output (e.g. U,W,V), got {','.join(names)!r}")
    for n in names:
        if not isinstance(n, str) or not _NAME.match(n) or len(n) > MAX_NAME or keyword.iskeyword(n):
            raise SpecError(
                f"matrix name {n!r} is not allowed; use letters and digits with at most one underscore, "
                f"starting with a letter, up to {MAX_NAME} characters (e.g. W, Wxh, w_i)"
            )
    if len(set(names)) != 3:
        raise SpecError(f"the three matrix names must differ, got {','.join(names)}")
    for n in names:
        reason = taken(n, [m for m in names if m != n] + list(FIXED_PARAMS.values()))
        if reason:
            raise SpecError(f"matrix name {n!r} is used by rnngen itself: {reason}; choose another name")
    return names


def custom_text(hidden: str) -> str:
    """The canonical spelling of a custom activation (``x/(1+abs(x))`` -> ``x / (1 + abs(x))``).

    ``ast`` only parses; text that does not parse, or is too long to parse safely, is kept
    for the parser's own error.
    """
    try:
        expression.check_length(hidden)
        return ast.unparse(ast.parse(hidden.strip(), mode="eval"))
    except (SyntaxError, ValueError):  # ExpressionError is a ValueError
        return hidden.strip()


def check_layers(value) -> int:
    """Return ``value`` as a number of layers, or raise SpecError saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAYERS:
        raise SpecError(f"layers must be a whole number from 1 to {MAX_LAYERS}, got {value!r}")
    return value


@dataclass(frozen=True)
class RNNSpec:
    """A recurrent network unrolled for ``T`` steps.

    With one Elman layer in column notation, ``z_t = U x_t + W h_{t-1} + b``, ``h_t = hidden(z_t)``,
    ``o_t = V h_t + c``, ``yhat_t = output(o_t)``, and ``E = sum_t loss(yhat_t, y_t)``
    (many-to-many) or ``E = loss(yhat_T, y_T)`` (many-to-one). Layer l > 1 reads the states of
    layer l - 1 where layer 1 reads ``x_t``; a bidirectional layer has a forward chain over
    t = 1..T and a backward one over t = T..1, and what reads it reads both states side by side.

    Attributes:
        T: unroll length.
        hidden: a name from ``HIDDEN`` or an expression in ``x`` (a custom activation).
        output: a name from ``OUTPUT_LAYERS``.
        loss: a name from ``LOSSES`` that the output can feed.
        hidden_bias, output_bias: whether ``b`` and ``c`` exist.
        mapping: a key of ``MAPPINGS``.
        notation: a key of ``NOTATIONS``.
        names: the input, recurrent and output matrix names.
        slope: the negative-side slope of ``leaky_relu`` (None for other activations).
        cell: a key of ``cells.CELLS``.
        layers: the number of stacked layers.
        bidirectional: whether every layer has a backward chain beside its forward one.
        input_grad: whether the module also returns dE/dx (``grads["x"]``).
        delay: with many-to-many, the losses start at step ``delay + 1`` (delayed many-to-many).
        truncate: truncated BPTT with horizon τ (seed 002's fixed horizon), or None for the full
            gradient: ``truncation_rule`` says what it keeps; dE/dx_t (``input_grad``) and a given
            state's gradient take the same rule. From ``full_horizon`` on nothing is cut (see there).
        masked: whether the module takes a mask (or lengths) of real steps: a padded step keeps the
            state and has no loss term.
        padding: where a masked module's ``lengths`` put the padding: ``"post"`` or ``"pre"``.
        gru_reset: the GRU's form (``GRU_RESETS``): ``"after"`` (PyTorch, cuDNN: the reset gate scales
            ``W_n h_{t-1} + b_hn``, the default) or ``"before"`` (it scales ``h_{t-1}`` inside the
            product); None for the other cells.
        preset: a seed preset (``presets.PRESETS``: ``seed-000`` ...) whose network this is and whose
            notation its document writes, or None. ``presets.preset_spec`` makes such a spec.
    """

    T: int
    hidden: str = "tanh"
    output: str = "softmax"
    loss: str = "cross_entropy"
    hidden_bias: bool = True
    output_bias: bool = True
    mapping: str = "many-to-many"
    notation: str = "column"
    names: tuple = DEFAULT_NAMES
    slope: float | None = None
    cell: str = "elman"
    layers: int = 1
    bidirectional: bool = False
    input_grad: bool = False
    delay: int = 0
    truncate: int | None = None
    masked: bool = False
    padding: str = "post"
    gru_reset: str | None = None
    preset: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "T", check_T(self.T))
        self._check_hidden()
        _choice("output layer", self.output, tuple(OUTPUT_LAYERS))
        _choice("loss", self.loss, tuple(LOSSES))
        if (self.output, self.loss) not in pairs():
            outputs = ", ".join(o for o, loss in pairs() if loss == self.loss)
            losses = ", ".join(loss for o, loss in pairs() if o == self.output)
            raise SpecError(
                f"the {self.loss} loss needs an output in (0, 1) (--output {outputs}); "
                f"the {self.output} output fits --loss {losses}"
            )
        _choice("mapping", self.mapping, tuple(MAPPINGS))
        _choice("notation", self.notation, tuple(NOTATIONS))
        object.__setattr__(self, "names", check_names(self.names))
        for flag in ("hidden_bias", "output_bias", "bidirectional", "input_grad", "masked"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        _choice("cell", self.cell, tuple(CELLS))
        self._check_cell()
        object.__setattr__(self, "layers", check_layers(self.layers))
        self._check_delay()
        self._check_truncate()
        self._check_padding()
        self._check_network_names()
        if self.preset is not None:
            from rnngen.presets import check_preset  # a preset is made of specs: imported here, no cycle

            check_preset(self)

    def _check_cell(self):
        if self.cell == "gru":
            object.__setattr__(self, "gru_reset", "after" if self.gru_reset is None else self.gru_reset)
            _choice("GRU reset form", self.gru_reset, tuple(GRU_RESETS))
        elif self.gru_reset is not None:
            raise SpecError(f"--gru-reset applies to the GRU only, not to the {self.cell} cell; add --cell gru")
        if self.cell != "elman" and self.stacked:
            raise SpecError(
                f"the {self.notation} notation is for the Elman cell; the {self.cell} cell takes --notation column"
                " or row"
            )

    def _check_delay(self):
        d = self.delay
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < self.T:
            raise SpecError(f"the delay must be a whole number from 0 to T - 1 = {self.T - 1}, got {d!r}")
        if d and self.mapping != "many-to-many":
            raise SpecError(f"a delay applies to the many-to-many mapping only, not to {self.mapping}")

    def _check_truncate(self):
        object.__setattr__(self, "truncate", check_truncate(self.truncate, self.full_horizon))

    def _check_padding(self):
        _choice("padding", self.padding, PADDINGS)
        if self.masked and self.truncate is not None:
            raise SpecError("--mask and --truncate together are not derived yet; choose one")
        if self.padding != "post" and not self.masked:
            raise SpecError("padding applies to a masked network only; add --mask (rnngen derive --mask --padding pre)")
        if not self.masked:
            return
        for step, why in self.real_in_every_sequence.items():
            padded = {"post": self.T, "pre": 1}[self.padding]  # the step the padding pads first
            if step == padded and self.T > 1:
                other = "pre" if self.padding == "post" else "post"
                raise SpecError(f"{why}, which {self.padding}-padding pads; use --padding {other}")

    def _check_network_names(self):
        """Every name the network's parameters and their blocks take, distinct and free."""
        from rnngen.network import block_name, network  # network reads the cell registry, not the spec

        params = network(self).params
        names = list(params) + [block_name(p.name, part) for p in params.values() for part in p.parts]
        names += [gradient(n) for n in names]
        seen = set()
        for n in names:
            if n in seen:
                raise SpecError(f"the parameter name {n!r} would be taken twice; choose other matrix names")
            seen.add(n)
        users = [p.name for p in params.values() if p.role in ("input", "recurrent", "stacked", "output")]
        if self.layers > 1 or self.bidirectional:
            for n in users:
                reason = taken(n, [m for m in params if m != n])
                if reason:
                    raise SpecError(f"the parameter name {n!r} is used by rnngen itself: {reason}; choose another name")

    def _check_hidden(self):
        if isinstance(self.hidden, str) and self.hidden.strip() in HIDDEN:  # 'relu ' is relu
            object.__setattr__(self, "hidden", self.hidden.strip())
        if self.hidden == "leaky_relu":
            slope = DEFAULT_SLOPE if self.slope is None else self.slope
            if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 < slope < 1:
                raise SpecError(f"the leaky_relu slope must be a number between 0 and 1 (exclusive), got {slope!r}")
            object.__setattr__(self, "slope", float(slope))
        elif self.slope is not None:
            raise SpecError(f"a slope applies to leaky_relu only, not to {self.hidden!r}")
        if self.hidden in HIDDEN:
            return
        text = custom_text(self.hidden)
        if text.isidentifier() and text != "x" and not keyword.iskeyword(text):
            _choice("hidden activation", text, HIDDEN, ', or an expression in x such as "x/(1+abs(x))"')
        try:
            elementwise(f"custom:{text}")
            elementwise(f"custom_derivative:{text}")
        except expression.ExpressionError as e:
            raise SpecError(str(e)) from None
        object.__setattr__(self, "hidden", text)

    # -- derived facts -------------------------------------------------------------------

    @property
    def row(self) -> bool:
        """True when vectors are rows (``h^t = f(x^t U + ...)``): matrices are stored transposed."""
        return self.notation in ("row", "stacked-row")

    @property
    def stacked(self) -> bool:
        """True when one matrix multiplies the stacked vector ``[h_{t-1}; x_t]`` (seed 002)."""
        return self.notation in ("stacked", "stacked-row")

    @property
    def is_custom(self) -> bool:
        return self.hidden not in HIDDEN

    @property
    def hidden_key(self) -> str:
        """The key of the hidden activation's rule (``activations.elementwise``)."""
        if self.is_custom:
            return f"custom:{self.hidden}"
        if self.hidden == "leaky_relu":
            return f"leaky_relu:{self.slope!r}"
        return self.hidden

    @property
    def output_layer(self):
        return OUTPUT_LAYERS[self.output]

    @property
    def loss_rule(self):
        return LOSSES[self.loss]

    @property
    def fused(self):
        """The closed-form output gradient of this output and loss, or None."""
        return FUSED.get((self.output, self.loss))

    @property
    def loss_steps(self) -> range:
        """The steps that have a target and a loss term."""
        if self.mapping == "many-to-one":
            return range(self.T, self.T + 1)
        return range(self.delay + 1, self.T + 1)

    @property
    def real_in_every_sequence(self) -> dict:
        """Step -> why: the steps a masked network needs real in every sequence. Lengths make them so
        when the padding leaves them alone (``_check_padding``); a mask given as such is checked."""
        need = {}
        if self.mapping == "one-to-many":
            need[1] = "one-to-many reads its one input at step 1"
        elif self.delay:
            need[1] = "a delay counts from step 1"
        return need

    @property
    def reads_last_real(self) -> bool:
        """True when the loss reads each sequence's last real step (a masked many-to-one network): a
        backward chain's state there is ``cells.held_last``, a forward chain's its state at step T."""
        return self.masked and self.mapping == "many-to-one"

    @property
    def masked_losses(self) -> bool:
        """True when each loss term is weighted by its step's mask (a padded step has no loss term):
        a masked network, except many-to-one, whose one loss at step T reads the state held since each
        sequence's last real step and so counts for every sequence."""
        return self.masked and self.mapping != "many-to-one"

    @property
    def input_steps(self) -> range:
        """The steps that read an input ``x_t``: the first only for one-to-many."""
        return range(1, 2) if self.mapping == "one-to-many" else range(1, self.T + 1)

    @property
    def truncation_rule(self) -> str | None:
        """What the truncation keeps (``truncation_rule``), for this spec's horizon and directions, and
        whether that is the full gradient; None without a truncation."""
        if self.truncate is None:
            return None
        rule = truncation_rule(self.truncate, "both" if self.bidirectional else "forward", self.layers)
        if self.truncate >= self.full_horizon:
            return f"{rule}. At this horizon no path is cut: the gradient is the full one"
        return f"{rule}. This is not the gradient of any loss: a dependency across more edges gets no gradient"

    @property
    def full_horizon(self) -> int:
        """The smallest truncation horizon that cuts no path: the most recurrent edges a path from a loss
        term to an initial state crosses. T for a network of one direction (a path only goes back in time);
        a path through a stack of bidirectional layers can go back in one layer and forward in the next,
        up to T - 1 edges per layer below the first, so L (T - 1) + 1 for L such layers."""
        return self.layers * (self.T - 1) + 1 if self.bidirectional else self.T

    @property
    def role_names(self) -> dict:
        """Role -> parameter name, for the weights, the biases that exist and the initial state."""
        roles = dict(zip(ROLES, self.names))
        if self.hidden_bias:
            roles["hidden_bias"] = FIXED_PARAMS["hidden_bias"]
        if self.output_bias:
            roles["output_bias"] = FIXED_PARAMS["output_bias"]
        roles["initial"] = FIXED_PARAMS["initial"]
        return roles

    @property
    def name(self) -> str:
        """Canonical module name, e.g. ``rnn_tanh_softmax_xent_t5``."""
        if self.is_custom:
            hidden = "custom" + hashlib.sha256(self.hidden.encode()).hexdigest()[:8]
        elif self.hidden == "leaky_relu":
            hidden = "leaky_relu" + repr(self.slope).replace(".", "p").replace("-", "m")
        else:
            hidden = self.hidden
        parts = ["rnn" if self.cell == "elman" else self.cell]
        if self.gru_reset == "before":
            parts.append("resetbefore")
        if self.layers > 1:
            parts.append(f"l{self.layers}")
        if self.bidirectional:
            parts.append("bi")
        parts += [hidden, self.output, self.loss_rule.short]
        if self.mapping != "many-to-many":
            parts.append({"many-to-one": "m2o", "one-to-many": "o2m"}[self.mapping])
        if self.delay:
            parts.append(f"delay{self.delay}")
        if self.notation != "column":
            parts.append(self.notation.replace("-", "_"))  # a module name is an identifier
        if self.names != DEFAULT_NAMES:
            parts.append(("" if all(len(n) == 1 for n in self.names) else "_").join(self.names))
        dropped = {(False, True): "nob", (True, False): "noc", (False, False): "nobias"}
        if (self.hidden_bias, self.output_bias) in dropped:
            parts.append(dropped[(self.hidden_bias, self.output_bias)])
        if self.input_grad:
            parts.append("dx")
        if self.truncate is not None:
            parts.append(f"trunc{self.truncate}")
        if self.masked:
            parts.append("masked" if self.padding == "post" else f"masked_{self.padding}")
        if self.preset is not None:  # the same network in a seed's notation is another document
            parts.insert(0, self.preset.replace("-", ""))
        return "_".join(parts) + f"_t{self.T}"

    def as_dict(self) -> dict:
        """The fields as a dict (``gru_reset`` only for a GRU, ``preset`` only with one, so that other specs keep
        their digest)."""
        out = asdict(self)
        for field in ("gru_reset", "preset"):
            if out[field] is None:
                del out[field]
        return out

    def digest(self) -> str:
        """Short stable hash of the spec, written into generated headers."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def cli_args(self) -> str:
        """The ``rnngen derive`` options that reproduce this spec (defaults omitted)."""
        args = [f"--T {self.T}"]
        if self.preset is not None:  # the preset fixes every other option
            return f"--preset {self.preset} {args[0]}"
        if self.hidden != "tanh":
            args.append(f"--hidden {shlex.quote(self.hidden)}")
        if self.slope is not None and self.slope != DEFAULT_SLOPE:
            args.append(f"--slope {self.slope!r}")
        for field, default in (("output", "softmax"), ("loss", "cross_entropy"), ("mapping", "many-to-many")):
            if getattr(self, field) != default:
                args.append(f"--{field} {getattr(self, field)}")
        if self.notation != "column":
            args.append(f"--notation {self.notation}")
        if self.names != DEFAULT_NAMES:
            args.append(f"--names {','.join(self.names)}")
        if not self.hidden_bias:
            args.append("--no-hidden-bias")
        if not self.output_bias:
            args.append("--no-output-bias")
        if self.cell != "elman":
            args.append(f"--cell {self.cell}")
        if self.gru_reset not in (None, "after"):
            args.append(f"--gru-reset {self.gru_reset}")
        if self.layers != 1:
            args.append(f"--layers {self.layers}")
        if self.bidirectional:
            args.append("--bidirectional")
        if self.input_grad:
            args.append("--input-grad")
        if self.delay:
            args.append(f"--delay {self.delay}")
        if self.truncate is not None:
            args.append(f"--truncate {self.truncate}")
        if self.masked:
            args.append("--mask")
        if self.padding != "post":
            args.append(f"--padding {self.padding}")
        return " ".join(args)
