"""The committed examples under ``generated/``, and the command that refreshes them.

Run from the repository root::

    python -m rnngen.examples

Each example is derived, verified (finite differences and Taylor test) and
written (module, LaTeX and Markdown, and for ``HANDOUTS`` the handout's); ``tests/test_generated.py`` fails
when a committed file differs from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnngen.emit import write_all
from rnngen.pipeline import Build, build
from rnngen.presets import PRESETS, preset_spec
from rnngen.spec import RNNSpec
from rnngen.verify import VerificationError, check_build

#: The specs whose module and document are committed: the default network at
#: T = 5 and T = 20 (how the document abbreviates long path expansions), and the
#: networks of the lecture seeds, each in its own notation (see ``SEEDS``).
SEEDS = {
    # seed 000: row vectors, h^t = tanh(x^t W + h^{t-1} U), y^t = softmax(h^t V), no biases
    "000": RNNSpec(T=5, notation="row", names=("W", "U", "V"), hidden_bias=False, output_bias=False),
    # seed 002: column vectors, h_t = tanh(U x_t + W h_{t-1} + b), yhat_t = softmax(V h_t + c)
    "002": RNNSpec(T=3),
    # seed 003: many-to-one, H_t = g(W H_{t-1} + U x_t), yhat = V H_3, L = 1/2 (y - yhat)^2
    "003": RNNSpec(
        T=3, output="identity", loss="squared_error", mapping="many-to-one", hidden_bias=False, output_bias=False
    ),
    # seed 004: O_t = tanh(x_t w_i + O_{t-1} w_h), yhat = sigma(O_3 w_o), binary cross-entropy;
    # scalar weights are the row-notation matrices with n_h = n_y = 1 (n_x = 3 one-hot words)
    "004": RNNSpec(
        T=3,
        output="sigmoid",
        loss="binary_cross_entropy",
        mapping="many-to-one",
        notation="row",
        names=("w_i", "w_h", "w_o"),
        hidden_bias=False,
        output_bias=False,
    ),
}
#: The networks whose document is the delta recursion (``network_document``): more than one chain,
#: seed 002's stacked form and truncated BPTT, seed 001's other mappings, seed 003's padding, and the
#: gated cells.
NETWORKS = (
    RNNSpec(T=5, layers=2),  # seed 001's stacked layers
    RNNSpec(T=5, bidirectional=True),  # seed 001's bidirectional RNN
    RNNSpec(T=3, notation="stacked", hidden_bias=False, output_bias=False),  # seed 002: h_t = tanh(W [h_{t-1}; x_t])
    RNNSpec(T=5, delay=2),  # seed 001's delayed many-to-many: the losses from step 3 on
    RNNSpec(T=5, mapping="one-to-many"),  # seed 001's one-to-many: one input, at the first step
    RNNSpec(T=5, truncate=2),  # seed 002's truncated BPTT, a fixed horizon of 2 steps
    # seed 003's many-to-one network on token sequences padded to max_len = 7 (post-padding, masked)
    RNNSpec(
        T=7,
        output="identity",
        loss="squared_error",
        mapping="many-to-one",
        hidden_bias=False,
        output_bias=False,
        masked=True,
    ),
    # the gated cells: an LSTM and a GRU in each of its two reset forms
    RNNSpec(T=5, cell="lstm"),
    RNNSpec(T=5, cell="gru"),
    RNNSpec(T=5, cell="gru", gru_reset="before"),
)
#: The seed presets (``presets.py``): each seed's network with its document in the seed's own symbols.
PRESET_EXAMPLES = tuple(preset_spec(name) for name in PRESETS)
EXAMPLES = (
    RNNSpec(T=5),
    RNNSpec(T=20),
    *(s for s in SEEDS.values() if s != RNNSpec(T=5)),
    *NETWORKS,
    *PRESET_EXAMPLES,
)
#: The examples whose handout (``--handout``: ``<name>_handout.tex`` and ``.md``) is committed too: the
#: documents a class is handed, the five seed presets, two layers, a bidirectional layer, an LSTM and a GRU.
HANDOUTS = (*PRESET_EXAMPLES, RNNSpec(T=5, layers=2), RNNSpec(T=5, bidirectional=True))
HANDOUTS += (RNNSpec(T=5, cell="lstm"), RNNSpec(T=5, cell="gru"))


def files(result: Build, out_dir: Path = Path("generated")) -> dict:
    """``{path: text}`` of an example's committed files: its module, its LaTeX and Markdown documents and
    their figure, and its handout's documents when it is one of ``HANDOUTS`` (what ``refresh`` writes and
    ``tests/test_generated.py`` compares)."""
    return result.files(out_dir, markdown=True, handout=result.spec in HANDOUTS)


def refresh(out_dir: Path = Path("generated")) -> list:
    """Derive, verify and write every example; return the paths written."""
    written = []
    for spec in EXAMPLES:
        result = build(spec)
        if not check_build(result).ok:
            raise VerificationError(f"{spec.name} fails its gradient check")
        written_now = files(result, out_dir)
        write_all(written_now)
        written.extend(written_now)
    return written


def main() -> None:
    if not Path("generated").is_dir() or not Path("pyproject.toml").is_file():
        sys.exit("rnngen: error: run python -m rnngen.examples from the repository root (it writes generated/)")
    for path in refresh():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
