"""Seed presets: the network of each lecture seed, written in that seed's own notation.

``--preset seed-000`` (``rnngen.derive(preset="seed-000")``) sets the network as the seed has it (cell,
activations, output and loss, mapping, biases, T) and the document's ``Lexicon``: which letter each
quantity takes, where the step index goes, the loss's letter, the parameters' names. The document
then ends with the seed's own assembled formulas and names each error of the seed in one sentence,
with the correct form in the seed's symbols and what the error costs (``seed_formulas.py``).

How options combine with a preset: the preset fixes the network and its notation, so every option
that chooses them is refused with one line naming the options a preset fixes; only ``T`` may be
given, and it overrides the seed's T (the document then writes the seed's formulas at that T).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rnngen.families import DEFAULT_LEXICON, Lexicon


@dataclass(frozen=True)
class Preset:
    """One seed's network and notation.

    Attributes:
        name: the preset's name (``seed-000``).
        seed: what the seed is, in a few words, for ``rnngen list`` (its section of the seed presets).
        network: the ``RNNSpec`` fields the seed fixes, T among them (the seed's T).
        lexicon: how the seed spells each symbol.
        worked: the seed's own numbers for the document's worked example (``worked.WorkedExample``'s
            fields), or None for the default example.
        words: the seed's sizes ``(n_x, n_h, n_y)`` when its inputs are one-hot words (seed 004's scalar
            weights), which the check of the seed's formulas draws at; None for any sizes and real inputs.
    """

    name: str
    seed: str
    network: dict
    lexicon: Lexicon
    worked: dict | None = None
    words: tuple | None = None


_SOFTMAX = {"output": "softmax", "loss": "cross_entropy"}

# Seed 004's table: three sentences of the words cat, mat, rat (one-hot, in that order) and their labels;
# the slides give no weights, so these are chosen (w_o negative, so that O_3 w_o and the slide's dropped
# O_3 both show). The gradient worked out is w_o's, where the slide's error lies.
_WORDS = {"cat": (1.0, 0.0, 0.0), "mat": (0.0, 1.0, 0.0), "rat": (0.0, 0.0, 1.0)}
_SENTENCES = ("cat mat rat", "rat rat mat", "mat mat cat")
_SEED_004_SIZES = (3, 1, 1)  # three words; scalar w_h and w_o
_SEED_004_WORKED = dict(
    xs=tuple(tuple(_WORDS[s.split()[t]] for s in _SENTENCES) for t in range(3)),
    targets=(((1.0,), (1.0,), (0.0,)),),
    params={"w_i": ((0.5,), (-0.3,), (0.8,)), "w_h": ((0.7,),), "h0": (0.0,), "w_o": ((-1.2,),)},
    sizes=_SEED_004_SIZES,
    sentences=_SENTENCES,
    entry=("w_o", (0, 0)),
)

PRESETS = {
    p.name: p
    for p in (
        Preset(
            "seed-000",
            "BPTT slides in row vectors: h^t = tanh(x^t W + h^{t-1} U), y^t = softmax(h^t V)",
            dict(T=5, notation="row", names=("W", "U", "V"), hidden_bias=False, output_bias=False, **_SOFTMAX),
            # y^t is the prediction, yhat^t the target, z^t the output's pre-activation; the slides leave the
            # hidden pre-activation unnamed, so it takes a (not z, which is the output's)
            Lexicon(
                letters=(("yhat", "y", "Y"), ("y", r"\hat{y}", r"\hat{Y}"), ("o", "z", "Z"), ("z", "a", "A")),
                steps="super",
            ),
        ),
        Preset(
            "seed-001",
            "lecture in layer notation: z^{1,t} = W^0 h^{0,t} + W^{11} h^{1,t-1} + b^0, h^{2,t} = f(W^1 h^{1,t} + b^1)",
            dict(T=5, names=("W0", "W11", "W1"), **_SOFTMAX),
            # layer l's pre-activation z^{l,t} and activation h^{l,t}: the input is h^{0,t}, the prediction
            # h^{2,t}; the target is t (bold, so that it is not the step t), the loss script L
            Lexicon(
                letters=(
                    ("x", "h", "H"),
                    ("o", "z", "Z"),
                    ("yhat", "h", "H"),
                    ("y", r"\mathbf{t}", r"\mathbf{t}"),
                ),
                tags=(("x", "0"), ("z", "1"), ("h", "1"), ("fprime", "1"), ("o", "2"), ("yhat", "2"), ("y", "")),
                steps="super",
                loss=r"\mathcal{L}",
                params=(("W0", "W^{0}"), ("W11", "W^{11}"), ("W1", "W^{1}"), ("b", "b^{0}"), ("c", "b^{1}")),
                adjoint=r"\nabla_{{{}}} \mathcal{{L}}",
                pre_adjoint=r"\tilde{{\nabla}}_{{{}}} \mathcal{{L}}",
            ),
        ),
        Preset(
            "seed-002",
            "handwritten notes: h_t = tanh(U x_t + W h_{t-1}), yhat_t = softmax(V h_t), E_t = -y_t ln yhat_t",
            dict(T=3, hidden_bias=False, output_bias=False, **_SOFTMAX),
            # z_3 = V h_3 is the output's pre-activation; the hidden one is unnamed, so it takes a
            Lexicon(letters=(("o", "z", "Z"), ("z", "a", "A")), steps="sub"),
        ),
        Preset(
            "seed-003",
            "many-to-one slides: H_t = g(W H_{t-1} + U x_t), yhat = V H_3, L = 1/2 (y - yhat)^2",
            dict(
                T=3,
                output="identity",
                loss="squared_error",
                mapping="many-to-one",
                hidden_bias=False,
                output_bias=False,
            ),
            Lexicon(
                letters=(("h", "H", "H"), ("fprime", "{g'}", "{G'}")),
                steps="sub",
                loss="L",
                functions=(("tanh", "g({})"),),
                last_unindexed=True,
            ),
        ),
        Preset(
            "seed-004",
            "toy sentiment task with scalar weights: O_t = tanh(x_t w_i + O_{t-1} w_h), yhat = sigma(O_3 w_o)",
            dict(
                T=3,
                output="sigmoid",
                loss="binary_cross_entropy",
                mapping="many-to-one",
                notation="row",
                names=("w_i", "w_h", "w_o"),
                hidden_bias=False,
                output_bias=False,
            ),
            # the slides write O_t (and o_3 in the derivatives) for the state, so the output's
            # pre-activation, which they leave unnamed, takes s
            Lexicon(letters=(("h", "O", "O"), ("o", "s", "S")), steps="sub", loss="L", last_unindexed=True),
            _SEED_004_WORKED,
            _SEED_004_SIZES,
        ),
    )
}
#: What a preset fixes: every field of the spec but T.
FIXED = ("hidden", "slope", "output", "loss", "hidden_bias", "output_bias", "mapping", "notation", "names")
FIXED += ("cell", "gru_reset", "layers", "bidirectional", "input_grad", "delay", "truncate", "masked", "padding")
#: The options (of ``rnngen derive``, keywords of ``rnngen.derive``) that choose the network.
SPEC_FIELDS = ("T", *FIXED)


def _unknown(name) -> str:
    return f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}"


def keyword(field: str) -> str:
    """How Python spells the option of a spec field: ``mapping=`` (``rnngen.derive``'s keyword)."""
    return f"{field}="


def preset_spec(name: str, T: int | None = None, given=(), spell: Callable[[str], str] = keyword):
    """The spec of preset ``name``, at the seed's T or at ``T``: the one home of how options combine with a preset.

    Args:
        name: a key of ``PRESETS``.
        T: the unroll length, or None for the seed's.
        given: the spec fields (``hidden``, ``masked``) the caller was given besides the preset and T; each
            is refused, since the preset fixes it. What counts as given is the caller's to say (the command
            line: an option on it; ``rnngen.derive``: a keyword that differs from its default).
        spell: how the caller writes the option of a field in the message (``keyword``: ``mapping=``; the
            command line: ``--mapping``).

    Raises:
        SpecError: an unknown preset, or an option the preset fixes.
    """
    from rnngen.spec import RNNSpec, SpecError  # the spec checks its preset here: imported on use

    if name not in PRESETS:
        raise SpecError(_unknown(name))
    if given:
        raise SpecError(
            f"the preset {name} fixes the network and its notation, so {', '.join(map(spell, given))} cannot be "
            f"given with it; only {spell('T')} may (it overrides the seed's T)"
        )
    network = dict(PRESETS[name].network)
    if T is not None:
        network["T"] = T
    return RNNSpec(**network, preset=name)


def check_preset(spec) -> None:
    """Raise SpecError unless ``spec`` is the network of its preset (at any T)."""
    from rnngen.spec import RNNSpec, SpecError

    if spec.preset not in PRESETS:
        raise SpecError(_unknown(spec.preset))
    own = RNNSpec(**{**PRESETS[spec.preset].network, "T": spec.T})
    differ = [f for f in FIXED if getattr(spec, f) != getattr(own, f)]
    if differ:
        raise SpecError(
            f"the preset {spec.preset} fixes {', '.join(differ)}; make its spec with presets.preset_spec "
            "(only T may differ from the seed's)"
        )


def lexicon_of(spec) -> Lexicon:
    """How the document of ``spec`` spells its symbols: its preset's lexicon, else rnngen's own."""
    preset = getattr(spec, "preset", None)
    return PRESETS[preset].lexicon if preset else DEFAULT_LEXICON
