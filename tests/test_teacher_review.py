"""A teacher's last reading of the handouts (issue 19): sentences that say what the mathematics does, not
what the program does, and symbols that read as they are meant."""

import re

import pytest

from rnngen.pipeline import build
from rnngen.presets import preset_spec
from rnngen.spec import RNNSpec

SEEDS = ("seed-000", "seed-001", "seed-002", "seed-003", "seed-004")
NETWORKS = {
    "l2": RNNSpec(T=5, layers=2),
    "bi": RNNSpec(T=5, bidirectional=True),
    "lstm": RNNSpec(T=5, cell="lstm"),
    "gru": RNNSpec(T=5, cell="gru"),
}


@pytest.fixture(scope="module")
def handouts():
    docs = {name: build(preset_spec(name)).handout for name in SEEDS}
    docs.update({name: build(spec).handout for name, spec in NETWORKS.items()})
    return docs


def _section(tex: str, title: str) -> str:
    start = tex.index(rf"\section{{{title}}}")
    return tex[start : tex.index(r"\section", start + 1)]


def _prose(tex: str) -> str:
    """The text with its inline math and line breaks taken out."""
    return " ".join(re.sub(r"\$[^$]*\$", "", tex).split())


@pytest.mark.parametrize("name", ["seed-003", "seed-004"])
def test_a_many_to_one_state_has_one_reader_so_its_delta_one_term(handouts, name):
    """H_T is read by the prediction only and H_t (t < T) by z_{t+1} only: no two paths meet at a state."""
    section = _prose(_section(handouts[name], "Third form: the delta recursion backward in time"))
    assert "two paths meet" not in section and "second term" not in section
    assert "each delta has one term" in section


def test_a_many_to_many_state_has_two_readers(handouts):
    section = _prose(_section(handouts["seed-000"], "Third form: the delta recursion backward in time"))
    assert "two paths meet" in section and "the second term is absent" in section


def test_seed_001_writes_the_step_in_every_entry_of_a_layer_value(handouts):
    """h^{2}_i reads as h squared (the document also writes real squares): an entry is h^{2,t}_i."""
    tex = handouts["seed-001"]
    assert not re.search(r"(?<![A-Za-z\\])[hz]\^\{\d\}_", tex)
    assert r"h^{2,t}_{j} - \mathbf{t}_j" in tex


def test_seed_003_does_not_call_its_slides_both_right_and_undefined(handouts):
    section = _prose(_section(handouts["seed-003"], "The seed's own formulas"))
    assert "no error" not in section and "defined only for" not in section
    assert "The slides are right for a scalar output; for vectors their products" in section


@pytest.mark.parametrize("name", ["seed-002", "seed-003", "seed-004"])
def test_the_seed_section_opens_with_a_sentence(handouts, name):
    """Its first sentence has a verb (before: "The notes' gradients, the sum over k written out ...")."""
    section = _section(handouts[name], "The seed's own formulas").split("\n", 1)[1]
    first = re.split(r"\. |:\s", _prose(section), maxsplit=1)[0]
    assert re.search(r"\b(are|is|give|gives|write|writes)\b", first), first


@pytest.mark.parametrize("name", SEEDS[:4])
def test_no_sentence_about_scalar_weights_where_the_weights_are_matrices(handouts, name):
    assert "weights are scalars" not in handouts[name]


def test_seed_002_s_source_is_notes_not_slides(handouts):
    assert "slides" not in handouts["seed-002"]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_delta_section_speaks_of_the_chain_rule_not_of_the_program(handouts, name):
    section = _prose(_section(handouts[name], "The delta recursion backward through the network"))
    assert "of the derivation" not in section and "sweep" not in section.split(".")[0]
    assert section.split("} ", 1)[1].startswith("By the chain rule")
    assert "defined on the line before" not in section


@pytest.mark.parametrize("name", SEEDS + tuple(NETWORKS))
def test_the_caption_and_the_worked_example_speak_of_the_network(handouts, name):
    tex = handouts[name]
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert "derivation" not in caption
    prose = _prose(tex)
    assert "rounding" not in prose and "last printed digit" not in prose


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_a_raised_learning_rate_is_said_plainly(handouts, name):
    prose = _prose(handouts[name])
    assert "The gradients of this network are small, so the step uses" in prose
    assert "(of 0.1, 1 and 10" not in prose


@pytest.mark.parametrize("name", SEEDS + tuple(NETWORKS))
def test_the_legend_defines_the_sizes_the_document_writes(handouts, name):
    """Every size the shapes and the worked example write (n_x, n_h, a layer's n_{h2}, n_y) is defined."""
    tex = handouts[name]
    legend, body = tex.split(r"\section*{Notation}")[1].split(r"\end{longtable}", 1)
    sizes = lambda text: {m.group(1) for m in re.finditer(r"n_\{?([xy]|h\d?)\b", text)}  # noqa: E731
    defining = "\n".join(row for row in legend.splitlines() if "size" in row)  # not a weight's shape alone
    assert sizes(body) and sizes(body) <= sizes(defining), (sizes(body), defining)
