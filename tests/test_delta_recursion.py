"""The delta recursion as a teacher writes it (a teacher's read of the handouts, issue 18's documents).

Where the output layer and the loss simplify (softmax with cross-entropy, sigmoid with binary
cross-entropy), the recursion and the summary start from the closed form the local Jacobians derive,
``delta^o_t = yhat_t - y_t``, not from the chain rule's general form through ``delta^yhat_t``; every
document kind, each in its own notation, and the line is evaluated by the equation checker. A delta's
terms that share an entrywise factor are written with it taken out (the GRU's update gate), and the
last step of a recursion that speaks of T is written at T.
"""

import re

import pytest
import test_document_equations as three
import test_network_document as network
from seed_reading import as_rnngen
from sympy import MatrixSymbol
from test_document_equations import _tagged_spans

from rnngen import algebra as A
from rnngen.document import Notation, factored
from rnngen.network_document import three_forms
from rnngen.presets import preset_spec
from rnngen.spec import RNNSpec

CANONICAL = (
    RNNSpec(T=3),
    RNNSpec(T=3, output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one", notation="row"),
    RNNSpec(T=3, mapping="many-to-one"),
    RNNSpec(T=5, delay=2),
    RNNSpec(T=3, layers=2),
    RNNSpec(T=3, bidirectional=True),
    RNNSpec(T=3, cell="lstm"),
    RNNSpec(T=3, cell="gru"),
    RNNSpec(T=4, masked=True),
    RNNSpec(T=4, cell="gru", masked=True),
    RNNSpec(T=3, output="sigmoid", loss="binary_cross_entropy", cell="lstm"),
    preset_spec("seed-000"),
    preset_spec("seed-001"),
    preset_spec("seed-004"),
)
#: Pairs that do not simplify to the prediction less the target: the general form stays.
GENERAL = (RNNSpec(T=3, loss="squared_error"), RNNSpec(T=3, cell="gru", loss="binary_cross_entropy"))

_GENERAL_FORM = (r"\oslash", r"\mathbf{1}\mathbf{1}^{\top}")


def _checker(spec):
    return (three if three_forms(spec) else network).make_checker(spec)


def _output_delta(result) -> tuple:
    """``(number, text)`` of the first numbered equation of the delta recursion: the output's delta."""
    key = "rec-out" if "rec-out" in result.equations else "sweep-output-1"
    number = result.equations[key]
    (span,) = [span for n, span in _tagged_spans(result.latex) if n == number]
    return number, result.latex[span[0] : span[1]]


def _recursion_start(tex: str) -> int:
    """Where the section of the delta recursion starts (the third form's, or a network document's)."""
    return re.search(r"\\section\{[^}]*delta recursion", tex).start()


def _summary(tex: str) -> str:
    start = tex.index(r"\section{Summary}")
    return tex[start : tex.index(r"\end{align}", start)]


@pytest.mark.parametrize("spec", CANONICAL, ids=lambda s: s.name)
def test_a_canonical_pairs_recursion_starts_from_the_prediction_less_the_target(spec):
    result, checker = _checker(spec)
    number, line = _output_delta(result)
    assert not any(general in line for general in _GENERAL_FORM), line
    summary = _summary(result.latex)
    assert rf"\tag*{{({number})}}" in summary and not any(general in summary for general in _GENERAL_FORM)
    # the lexicon's spelling of yhat - y, the one term the line has (a mask's factor beside it)
    n = Notation(spec)
    at = "t" if spec.mapping != "many-to-one" else "T"
    yhat, y = (n.step(k, at) for k in ("yhat", "y"))
    assert f"{yhat} - {y}" in line, line
    cited = re.search(r"as \((\d+)\) simplified it", " ".join(result.latex.split()))
    assert cited and int(cited.group(1)) == result.equations["fused"] < number
    assert not checker.check(only={number, result.equations["fused"]})
    wrong = result.latex.replace(line, line.replace(f"{yhat} - {y}", f"{y} - {yhat}"), 1)
    wrong = wrong if spec.preset is None else as_rnngen(spec.preset, wrong)  # the checker's reading key
    assert {n for n, _ in checker.check(wrong, only={number})} == {number}  # the line is evaluated, not skipped


@pytest.mark.parametrize("spec", GENERAL, ids=lambda s: s.name)
def test_a_pair_that_does_not_simplify_keeps_the_general_form(spec):
    result, checker = _checker(spec)
    tex = result.latex
    recursion = tex[_recursion_start(tex) :]
    assert r"\mathbf{1}\mathbf{1}^{\top}" in recursion[: recursion.index(r"\frac{\partial E}{\partial")]
    assert "as (" not in " ".join(recursion.split())[:2000]  # no closed form cited
    assert not checker.check()


def test_the_gru_update_gates_delta_takes_out_its_common_factor():
    """δz_t = δh_t ∘ (h_{t−1} − n_t), not −δh_t ∘ n_t + δh_t ∘ h_{t−1}; evaluated."""
    for spec in (RNNSpec(T=3, cell="gru"), RNNSpec(T=3, cell="gru", gru_reset="before")):
        result, checker = _checker(spec)
        m = re.search(
            r"\\delta\^\{z\}_\{t\} &= \\delta\^\{h\}_\{t\} \\odot \\left\(h_\{t-1\} - n_\{t\}\\right\), "
            r".*?\\tag\{(\d+)\}",
            result.latex,
        )
        assert m and r"-\delta^{h}_{t} \odot n_{t}" not in result.latex
        assert not checker.check(only={int(m.group(1))})


def test_factored_takes_out_what_terms_share():
    a, u, v, w = (MatrixSymbol(name, 3, 1) for name in "auvw")
    ones = A.ones(3, 1)
    assert factored(A.add(A.neg(A.had(a, u)), A.had(a, v))) == A.had(a, A.sub(v, u))  # the positive term first
    assert factored(A.sub(a, A.had(a, u))) == A.had(a, A.sub(ones, u))  # a term with no other factor: a one
    assert factored(A.add(A.had(a, u), A.had(a, v), w)) == A.add(A.had(a, A.add(u, v)), w)  # the others stay
    assert factored(A.add(A.had(a, u), A.had(v, w))) == A.add(A.had(a, u), A.had(v, w))  # nothing shared


@pytest.mark.parametrize("spec", [s for s in CANONICAL if not Notation(s).above], ids=lambda s: s.name)
def test_the_last_step_of_a_recursion_that_speaks_of_T_is_written_at_T(spec):
    result, _ = _checker(spec)
    tex = result.latex
    start = _recursion_start(tex)
    recursion = tex[start : tex.index("very parameter", start)]
    assert f"_{{{spec.T}}}" not in recursion, re.findall(rf".{{40}}_\{{{spec.T}\}}", recursion)
    assert "_{T}" in recursion


@pytest.mark.parametrize("spec", [RNNSpec(T=3, layers=2), RNNSpec(T=3, bidirectional=True)], ids=lambda s: s.name)
def test_the_legend_lists_every_chains_deltas(spec):
    """Not one chain's deltas and "the other values, alike": each chain's state's and pre-activation's."""
    result, _ = _checker(spec)
    tex = result.handout
    legend = tex[tex.index(r"\section*{Notation}") : tex.index(r"\end{longtable}")]
    symbols = "\n".join(line.split(" & ")[0] for line in legend.splitlines())
    n = Notation(spec)
    for chain in result.derivation.graph.network.chains:
        for base in ("h", "z"):
            assert n.step(chain.family(base, "adjoint").key, "t") in symbols, (chain.key, base)
