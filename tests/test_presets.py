"""Seed presets: each seed's network, its document in the seed's own symbols, and the seed's own
formulas and errors checked against the generated module's gradients."""

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from latex_reader import numbered_equations
from test_document import read_back
from test_document_equations import make_checker
from test_latex import compile_tex, needs_pdflatex

import rnngen
from rnngen.api import BPTT
from rnngen.cli import cli
from rnngen.examples import EXAMPLES
from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.presets import PRESETS, preset_spec
from rnngen.seed_notes import forward, seed_notes
from rnngen.spec import RNNSpec, SpecError
from rnngen.verify import check_build

NAMES = ("seed-000", "seed-001", "seed-002", "seed-003", "seed-004")


@pytest.fixture(scope="module")
def built():
    return {name: build(preset_spec(name)) for name in NAMES}


def test_the_five_presets_and_the_examples():
    assert tuple(PRESETS) == NAMES
    assert {s.preset for s in EXAMPLES if s.preset} == set(NAMES)


# --- options ------------------------------------------------------------------------------------


def test_unknown_preset_is_one_line_listing_the_five(tmp_path):
    with pytest.raises(SpecError, match=r"unknown preset 'seed-9'; choose one of: " + ", ".join(NAMES)):
        rnngen.derive(preset="seed-9")
    run = subprocess.run(
        [sys.executable, "-m", "rnngen", "derive", "--preset", "seed-9", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(", ".join(NAMES))
    assert not (tmp_path / "out").exists()


def test_a_preset_refuses_the_options_it_fixes_and_T_overrides_the_seeds():
    with pytest.raises(SpecError, match=r"the preset seed-000 fixes the network and its notation, so hidden="):
        rnngen.derive(preset="seed-000", hidden="relu", check=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["derive", "--preset", "seed-004", "--hidden", "relu", "--no-latex"])
    assert result.exit_code == 2 and "--hidden cannot be given with it; only --T may" in result.output
    # an option left at its default is no option given
    assert rnngen.derive(preset="seed-003", names="U,W,V", check=False).spec.T == 3
    spec = rnngen.derive(preset="seed-003", T=5, check=False).spec
    assert (spec.T, spec.mapping, spec.preset) == (5, "many-to-one", "seed-003")
    assert spec.cli_args() == "--preset seed-003 --T 5"
    with pytest.raises(
        SpecError, match="seed-004 fixes output, loss"
    ):  # a spec made by hand must be its preset's network
        RNNSpec(T=3, preset="seed-004")


def test_each_caller_is_told_of_a_fixed_option_in_its_own_spelling():
    """One rule (presets.preset_spec), spelled as the caller writes the option: a keyword in Python, a flag on
    the command line; the same options refused both ways."""
    with pytest.raises(SpecError) as caught:
        rnngen.derive(preset="seed-004", mapping="one-to-many", masked=True, check=False)
    message = str(caught.value)
    assert "mapping=, masked= cannot be given with it; only T= may" in message and "--" not in message
    result = CliRunner().invoke(cli, ["derive", "--preset", "seed-004", "--mapping", "many-to-many", "--mask"])
    assert result.exit_code == 2 and "--mapping, --mask cannot be given with it; only --T may" in result.output
    result = CliRunner().invoke(cli, ["derive", "--preset", "seed-004", "--no-hidden-bias"])
    assert "--hidden-bias/--no-hidden-bias cannot be given" in result.output


def test_latex_takes_the_preset_and_the_handout_as_derive_does(tmp_path, built):
    """``rnngen latex`` prints what ``rnngen derive`` writes, for a preset and as a handout too, and refuses
    what derive refuses."""
    runner = CliRunner()
    full = runner.invoke(cli, ["latex", "--preset", "seed-003", "--no-check"])
    handout = runner.invoke(cli, ["latex", "--preset", "seed-003", "--handout", "--no-check"])
    assert full.exit_code == handout.exit_code == 0, full.output + handout.output
    assert full.stdout == built["seed-003"].latex and handout.stdout == built["seed-003"].handout
    assert handout.stdout != full.stdout
    at_T = runner.invoke(cli, ["latex", "--preset", "seed-003", "--T", "4", "--no-check"])
    assert at_T.stdout == build(preset_spec("seed-003", 4)).latex
    refused = [sys.executable, "-m", "rnngen", "latex", "--preset", "seed-003", "--hidden", "relu"]
    run = subprocess.run(refused, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        "rnngen: error: the preset seed-003 fixes the network and its notation, so --hidden cannot be given "
        "with it; only --T may (it overrides the seed's T)"
    )
    unknown = runner.invoke(cli, ["latex", "--preset", "seed-9"])
    assert unknown.exit_code == 2 and ", ".join(NAMES) in unknown.output
    # one definition of each option: the same help on both commands
    for name in ("preset", "handout", "T"):
        helps = {c: next(p.help for p in cli.commands[c].params if p.name == name) for c in ("derive", "latex")}
        assert helps["derive"] == helps["latex"], name


# --- the document in the seed's symbols ----------------------------------------------------------


def _forward_block(tex: str) -> str:
    return tex[tex.index(r"\section{The forward pass}") : tex.index(r"\section{Local Jacobians}")]


def test_seed_000_writes_y_for_the_prediction_and_yhat_for_the_target(built):
    tex = built["seed-000"].latex
    fwd = _forward_block(tex)
    assert r"a^{t} &= x^{t} W + h^{t-1} U" in fwd and r"z^{t} &= h^{t} V" in fwd
    assert r"y^{t} &= \operatorname{softmax}(z^{t})" in fwd
    assert r"E^{t} = -\sum_i \hat{y}^{t}_{i} \log y^{t}_{i}" in fwd
    # the prediction is never \hat{y}: nothing is differentiated by the target, no delta of it
    assert r"\partial \hat{y}" not in tex and r"\delta^{\hat{y}" not in tex
    assert r"$x^{t},\ \hat{y}^{t}$ & input and target" in tex


def test_seed_001_writes_its_layer_notation(built):
    tex = built["seed-001"].latex
    fwd = _forward_block(tex)
    assert r"z^{1,t} &= W^{0} h^{0,t} + W^{11} h^{1,t-1} + b^{0}" in fwd
    assert r"h^{1,t} &= \tanh(z^{1,t})" in fwd and r"z^{2,t} &= W^{1} h^{1,t} + b^{1}" in fwd
    assert r"h^{2,t} &= \operatorname{softmax}(z^{2,t})" in fwd
    assert r"\nabla_{z^{1,t}} \mathcal{L}" in tex and r"\delta" not in tex.replace(r"\delta_{ij}", "")
    assert not re.search(r"(?<![{\\_])W(0|1|11)\b", tex.split(r"\begin{document}")[1])  # no code names


def test_seeds_002_003_004_write_their_letters(built):
    fwd2 = _forward_block(built["seed-002"].latex)
    assert r"a_{t} &= U x_{t} + W h_{t-1}" in fwd2 and r"\hat{y}_{t} &= \operatorname{softmax}(z_{t})" in fwd2
    tex3 = built["seed-003"].latex
    assert r"H_{t} &= g(z_{t})" in _forward_block(tex3) and r"\hat{y} &= V H_{3}" in _forward_block(tex3)
    assert r"h_{" not in tex3.split(r"\begin{document}")[1] and r"$g(x) = \tanh(x)$ & the hidden activation" in tex3
    seed3 = tex3[tex3.index(r"\section{The seed's own formulas}") : tex3.index(r"\section{The formulas the code")]
    assert r"(\hat{y} - y) \cdot V \cdot \frac{\partial g(z_{3})}{\partial z_{3}} \Bigl[H_{2} + W" in seed3
    tex4 = built["seed-004"].latex
    assert r"O_{t} &= \tanh(z_{t})" in _forward_block(tex4) and r"z_{t} &= x_{t} w_{i} + O_{t-1} w_{h}" in tex4
    assert r"h_{" not in tex4.split(r"\begin{document}")[1] and r"w &\leftarrow w - \eta" in tex4
    assert r"\frac{\partial L}{\partial w_{o}} &= (\hat{y} - y)\, O_{3}" in tex4


def _body(tex: str) -> str:
    """The document's text after its title, without the seed's own section (which quotes the seed)."""
    body = tex.split(r"\begin{document}")[1]
    start = body.find(r"\section{The seed's own formulas}")
    return body if start < 0 else body[:start] + body[body.index(r"\section", start + 1) :]


@pytest.mark.parametrize("name", ["seed-001", "seed-003", "seed-004"])
def test_a_seed_with_its_own_loss_letter_never_writes_E(built, name):
    """The loss is the seed's letter everywhere: the factor shapes, the figure, the worked example."""
    letter = PRESETS[name].lexicon.loss
    body = _body(built[name].latex)
    E = r"(?<![\\A-Za-z])E(?![A-Za-z])"
    assert not re.search(E, body), re.findall(".{40}" + E + ".{20}", body)
    assert rf"\partial {letter} / \partial" in body  # the factor shapes' path term of the recurrent weight


@pytest.mark.parametrize("name", ["seed-003", "seed-004"])
def test_a_many_to_one_seed_writes_its_one_loss_and_prediction_without_a_step(built, name):
    """Seeds 003 and 004 write yhat = V H_3 (sigma(O_3 w_o)) and L: the one prediction, target and loss,
    never yhat_3, L_3 or yhat_t; the states keep their steps."""
    body = _body(built[name].latex)
    fwd = _forward_block(body)
    letter = PRESETS[name].lexicon.loss
    one = {"seed-003": (r"\hat{y}", r"V H_{3}"), "seed-004": ("s", r"O_{3} w_{o}")}[name]
    assert rf"{one[0]} &= {one[1]}" in fwd and r"\hat{y} &= " in fwd
    assert rf"{letter} = " in fwd and rf"{letter} = {letter}" not in fwd
    stepped = r"(\\hat\{y\}|(?<![A-Za-z\\])[yos]|(?<![A-Za-z\\])L|\\delta\^\{(\\hat\{y\}|o|s)\})_\{(\d|t|T)"
    assert not re.search(stepped, body), re.findall(".{30}" + stepped + ".{10}", body)[:3]
    assert re.search(r"[HO]_\{3\}", body) and re.search(r"[HO]_\{t-1\}", body)


# --- the seeds' own formulas, evaluated against the module --------------------------------------


def _problem(spec, module, rng):
    n_x, n_h, n_y = (3, 1, 1) if spec.preset == "seed-004" else (3, 4, 2 if spec.output != "softmax" else 3)
    params = {k: rng.normal(scale=0.7, size=v.shape) for k, v in module.init_params(n_x, n_h, n_y).items()}
    x = rng.normal(size=(spec.T, n_x))
    if spec.preset == "seed-004":
        x = np.eye(3)[rng.integers(0, 3, spec.T)]  # one-hot words
    if spec.output == "softmax":
        y = np.eye(n_y)[rng.integers(0, n_y, spec.T)]
    elif spec.loss == "binary_cross_entropy":
        y = rng.integers(0, 2, n_y).astype(float)
    else:
        y = rng.normal(size=n_y)
    return params, x, y


def _last_term_gradient(spec, p, x, y, name):
    """d E_T / d name by central differences of the seed's own forward equations (the last loss term)."""

    def E_T(q):
        return float(-(y[-1] * np.log(forward(spec, q, x)["Y"][spec.T])).sum())

    g = np.zeros_like(p[name])
    for i in np.ndindex(g.shape):
        up, down = {**p, name: p[name].copy()}, {**p, name: p[name].copy()}
        up[name][i] += 1e-6
        down[name][i] -= 1e-6
        g[i] = (E_T(up) - E_T(down)) / 2e-6
    return g


def _expected(spec, module, p, x, y, of):
    if of == "E":
        return module.loss(p, x, y)
    if of.startswith("yhat:"):
        return module.forward(p, x)["yhat"][int(of[5:]) - 1]
    if of == "h":
        return module.forward(p, x)["h"]
    if of == "V_last":
        return _last_term_gradient(spec, p, x, y, "V")
    return module.loss_and_grads(p, x, y)[1][of]


@pytest.mark.parametrize("T", [None, 2, 4])
@pytest.mark.parametrize("name", NAMES)
def test_the_seeds_formulas_equal_the_modules_gradients(built, name, T):
    result = built[name] if T is None else build(preset_spec(name, T))  # --T overrides the seed's T
    spec = result.spec
    module = BPTT(result).module()
    notes = seed_notes(spec)
    formulas = notes["assembled"] + [e.correct for e in notes["errata"]]
    checked = 0
    for seed in range(3):
        p, x, y = _problem(spec, module, np.random.default_rng(seed))
        for f in formulas:
            if f.value is None:
                continue
            np.testing.assert_allclose(f.value(p, x, y), _expected(spec, module, p, x, y, f.of), rtol=1e-6, atol=1e-9)
            checked += 1
    assert checked >= 3 * 3


@pytest.mark.parametrize("name", ["seed-000", "seed-001", "seed-002", "seed-003", "seed-004"])
def test_every_numbered_formula_of_the_section_is_checked_or_says_why(name):
    """Every assembled formula with a value is evaluated above; the ones without are rules or shapes."""
    notes = seed_notes(preset_spec(name))
    for f in notes["assembled"]:
        assert f.value is not None or f.of == "", f.latex


def test_seed_001_errors_cost_what_the_document_says(built):
    spec = built["seed-001"].spec
    module = BPTT(built["seed-001"]).module()
    dropped, written_fused = (e.as_written for e in seed_notes(spec)["errata"][:2])
    p, x, y = _problem(spec, module, np.random.default_rng(0))
    grads = module.loss_and_grads(p, x, y)[1]
    # without tanh's Jacobian each entry of W^0's gradient is too large (every term by 1/(1 - h^2) >= 1)
    assert np.abs(dropped(p, x, y)).sum() > np.abs(grads["W0"]).sum()
    # the softmax gradient read as nabla_h L has no component on the classes the target rules out
    assert not np.allclose(written_fused(p, x, y), grads["W1"])


def test_seed_004_slide_update_of_w_o_has_the_wrong_sign_exactly_when_O3_is_negative(built):
    spec = built["seed-004"].spec
    module = BPTT(built["seed-004"]).module()
    slide = seed_notes(spec)["errata"][0].as_written
    signs = set()
    for seed in range(40):
        p, x, y = _problem(spec, module, np.random.default_rng(seed))
        true = module.loss_and_grads(p, x, y)[1]["w_o"].item()
        O3 = module.forward(p, x)["h"][-1].item()
        wrong_sign = np.sign(slide(p, x, y).item()) != np.sign(true)
        assert wrong_sign == (O3 < 0)
        signs.add(O3 < 0)
    assert signs == {True, False}  # both cases were drawn


# --- the module and the document as every example's ---------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_preset_modules_pass_the_checks(built, name):
    assert check_build(built[name]).ok


@pytest.mark.parametrize("name", NAMES)
def test_preset_markdown_converts(built, name):
    md = to_markdown(built[name].latex, "github")
    assert "The seed's own formulas" in md


@needs_pdflatex
@pytest.mark.parametrize("name", NAMES)
def test_preset_documents_compile_without_a_box_warning(tmp_path, built, name):
    run = compile_tex(tmp_path, name, built[name].latex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout


# --- every equation of the document, read in the seed's spelling ----------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_numbered_equation_of_a_preset_document_holds(built, name):
    """The document read through its reading key (``seed_reading``), equation by equation, as every
    other document is (``test_document_equations``): none is skipped."""
    result, checker = make_checker(built[name].spec)
    failures = checker.check()
    assert not failures, "\n".join(f"({n}) {msg}" for n, msg in failures)
    own = len(seed_notes(result.spec)["assembled"]) + len(seed_notes(result.spec)["errata"])
    assert len(numbered_equations(checker.tex)) == len(result.equations) - own


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_documents_final_formulas_compute_what_the_module_computes(built, name):
    reader, loss, grads = read_back(built[name])
    assert reader.loss == pytest.approx(loss, rel=1e-12)
    for key, g in grads.items():
        np.testing.assert_allclose(reader.gradients[key].reshape(np.shape(g)), g, rtol=1e-11, atol=1e-14)


def test_the_reading_key_does_not_hide_a_wrong_formula(built):
    """Seed 000's delta at the output read with prediction and target swapped: the check fails."""
    result, checker = make_checker(built["seed-000"].spec)
    right = r"\Delta^{z,1:5} &= Y^{1:5} - \hat{Y}^{1:5}"
    assert right in result.latex
    wrong = result.latex.replace(right, r"\Delta^{z,1:5} &= \hat{Y}^{1:5} - Y^{1:5}")
    reader, _, grads = read_back(result, wrong)
    assert not np.allclose(reader.gradients["V"], grads["V"])


def test_the_check_evaluates_the_seeds_formulas_and_fails_on_a_wrong_one(built, monkeypatch):
    """``rnngen derive --preset`` checks the seed's formulas as the document numbers them."""
    report = check_build(built["seed-004"])
    numbers = built["seed-004"].equations
    assert report.ok and numbers["seed-erratum-1"] in report.seed_formulas
    # the slide's dL/dw_o (without O_3) in place of the correction: the check names its number
    erratum = seed_notes(built["seed-004"].spec)["errata"][0]
    wrong = dict(seed_notes(built["seed-004"].spec))
    wrong["errata"] = [type(erratum)(erratum.wrong, type(erratum.correct)("", "w_o", erratum.as_written), "")]
    monkeypatch.setattr("rnngen.seed_notes.seed_notes", lambda spec: wrong)
    failing = check_build(built["seed-004"])
    assert not failing.ok and f"({numbers['seed-erratum-1']})" in " ".join(failing.failures)


def test_a_preset_fixes_every_field_of_the_spec_but_T():
    """``presets.FIXED`` is written out (the spec imports the presets); a field added to RNNSpec must join it,
    or a preset would let it through without a word."""
    import dataclasses

    from rnngen.presets import FIXED
    from rnngen.spec import RNNSpec

    assert sorted(FIXED) == sorted(f.name for f in dataclasses.fields(RNNSpec) if f.name not in ("T", "preset"))
