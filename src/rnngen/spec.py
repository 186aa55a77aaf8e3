"""``RNNSpec``: what network to derive, validated once, here."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass

from rnngen.activations import HIDDEN, LOSSES, OUTPUT_LOSSES, OUTPUTS

#: Largest unroll length accepted. Derivation and output grow linearly in T;
#: past this the unrolled straight-line module stops being a sensible artifact
#: (tens of thousands of lines) and a loop-based implementation is the better tool.
MAX_T = 1000


class SpecError(ValueError):
    """A spec that cannot be derived; the message says what is allowed."""


def _choice(kind: str, value: str, allowed) -> None:
    if value in allowed:
        return
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(f"unknown {kind} {value!r}{hint}; choose one of: {', '.join(allowed)}")


def check_T(value) -> int:
    """Return ``value`` as an unroll length, or raise SpecError saying what is allowed."""
    allowed = f"T must be a whole number from 1 to {MAX_T}"
    if isinstance(value, bool):
        raise SpecError(f"{allowed}, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SpecError(f"{allowed}, got {value!r}") from None
    if not isinstance(value, int) or not 1 <= value <= MAX_T:
        raise SpecError(f"{allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class RNNSpec:
    """An Elman network unrolled for ``T`` steps, many-to-many, column vectors.

    ``z_t = U x_t + W h_{t-1} + b``, ``h_t = hidden(z_t)``,
    ``o_t = V h_t + c``, ``yhat_t = output(o_t)``, ``E = sum_t loss(yhat_t, y_t)``.
    """

    T: int
    hidden: str = "tanh"
    output: str = "softmax"
    loss: str = "cross_entropy"

    def __post_init__(self):
        object.__setattr__(self, "T", check_T(self.T))
        _choice("hidden activation", self.hidden, HIDDEN)
        _choice("output layer", self.output, OUTPUTS)
        _choice("loss", self.loss, LOSSES)
        if (self.output, self.loss) not in OUTPUT_LOSSES:
            pairs = ", ".join(f"{o}+{l}" for o, l in OUTPUT_LOSSES)
            raise SpecError(f"output {self.output!r} cannot be paired with loss {self.loss!r}; choose one of: {pairs}")

    @property
    def output_loss(self):
        return OUTPUT_LOSSES[(self.output, self.loss)]

    @property
    def name(self) -> str:
        """Canonical module name, e.g. ``rnn_tanh_softmax_xent_t5``."""
        return f"rnn_{self.hidden}_{self.output}_{self.output_loss.short}_t{self.T}"

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Short stable hash of the spec, written into generated headers."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def cli_args(self) -> str:
        """The ``rnngen derive`` options that reproduce this spec (defaults omitted)."""
        args = [f"--T {self.T}"]
        for field, default in (("hidden", "tanh"), ("output", "softmax"), ("loss", "cross_entropy")):
            value = getattr(self, field)
            if value != default:
                args.append(f"--{field} {value}")
        return " ".join(args)
