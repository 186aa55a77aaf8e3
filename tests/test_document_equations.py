"""Every numbered equation of the derivation document, evaluated: a changed index anywhere fails.

``latex_reader.Checker`` reads each numbered equation back from the LaTeX text and evaluates
both sides at a random point with a non-zero h0, at every step the equation states, against
independent numbers: Jacobian fractions and deltas as central differences of the forward pass
(which is run from the document's own forward equations and compared with the module's
``forward``), gradients from the module's ``loss_and_grads``. An equation it cannot read fails.
"""

import re

import numpy as np
import pytest
from latex_reader import Checker, numbered_equations
from seed_reading import as_rnngen
from test_document import _module, legend_functions

from rnngen.activations import pairs
from rnngen.examples import EXAMPLES, NETWORKS  # the networks' documents: test_network_document.py
from rnngen.families import GATED_LETTERS
from rnngen.pipeline import build
from rnngen.presets import preset_spec
from rnngen.spec import RNNSpec
from rnngen.verify import random_problem

#: The issue's lecture network (row notation, W for the input weights), its column twin, a
#: one-step many-to-one network and one long enough (T = 7) for the condensed path sums.
SAMPLE = (
    RNNSpec(T=3, notation="row", names=("W", "U", "V")),
    RNNSpec(T=3),
    RNNSpec(
        T=1, hidden="sigmoid", output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one", notation="row"
    ),
    RNNSpec(T=7, hidden="softplus", output="softmax", loss="squared_error", output_bias=False, notation="row"),
)
HIDDEN = ("tanh", "sigmoid", "relu", "leaky_relu", "softplus", "x/(1+abs(x))", "identity")


def _sweep() -> list:
    """T = 1, 3, 7 over every (output, loss) pair, the hidden activations, both notations, biases and mappings."""
    specs = []
    for T in (1, 3, 7):
        for i, (output, loss) in enumerate(pairs()):
            specs.append(
                RNNSpec(
                    T=T,
                    hidden=HIDDEN[(i + T) % len(HIDDEN)],
                    output=output,
                    loss=loss,
                    notation=("row", "column")[(i + T) % 2],
                    mapping=("many-to-many", "many-to-one")[(i // 2 + T) % 2],
                    hidden_bias=i % 3 != 1,
                    output_bias=i % 4 != 2,
                    slope=0.2 if HIDDEN[(i + T) % len(HIDDEN)] == "leaky_relu" else None,
                )
            )
    return specs


def make_checker(spec, seed=0):
    """A checker of ``spec``'s document on one random sequence (h0 drawn like every other parameter)."""
    result = build(spec)
    module = _module(result)
    n_x, n_h, n_y = 3, 4, 3
    params, xs, targets = random_problem(module, sizes=(n_x, n_h, n_y, 1), seed=seed)
    assert np.abs(params["h0"]).min() > 0  # a learned h0: the h0 terms of every sum count
    per_step = targets[:, 0] if spec.mapping == "many-to-many" else targets[:1].reshape(1, *targets.shape[1:])
    if spec.loss_rule.targets == "classes":
        per_step = np.eye(n_y)[per_step.reshape(-1)]
    ys = dict(zip(spec.loss_steps, per_step.reshape(len(spec.loss_steps), n_y)))
    custom = legend_functions(spec)
    row = spec.notation == "row"
    problem = (params, xs, targets)
    tex = result.latex if spec.preset is None else as_rnngen(spec.preset, result.latex)  # its reading key
    checker = Checker(tex, row, params, xs[:, 0], ys, module, problem, custom)
    return result, checker


def _check(spec):
    result, checker = make_checker(spec)
    failures = checker.check()
    assert not failures, "\n".join(f"({n}) {msg}" for n, msg in failures)
    return result


@pytest.mark.parametrize("spec", SAMPLE, ids=lambda s: s.name)
def test_every_numbered_equation_holds(spec):
    result = _check(spec)
    assert len(numbered_equations(result.latex)) == len(result.equations)  # every number was read


@pytest.mark.full
@pytest.mark.parametrize("spec", _sweep() + [s for s in EXAMPLES if s not in NETWORKS], ids=lambda s: s.name)
def test_every_numbered_equation_holds_across_the_sweep(spec):
    _check(spec)


def test_row_notation_sums_the_recurrent_gradient_from_h0():
    """Issue 15: dE/dU = sum h^{t-1 T} delta^{z,t}, not sum h^{t T} delta^{z,t+1} (no delta^{z,T+1}, h^0 kept)."""
    result = build(SAMPLE[0])
    assert r"\frac{\partial E}{\partial U} &= \sum_{t=1}^{T} {h^{t-1}}^{\top} \delta^{z,t}" in result.latex
    _, checker = make_checker(SAMPLE[0])
    old = result.latex.replace(r"{h^{t-1}}^{\top} \delta^{z,t}", r"{h^{t}}^{\top} \delta^{z,t+1}")
    assert {n for n, _ in checker.check(old)} == {result.equations["delta-U"]}


@pytest.mark.parametrize(
    "equation",
    (
        r"\mathcal{L} = \int E \, dt",  # LaTeX the reader does not know
        r"\frac{\partial h_{t}}{\partial h_{t-1}} = W D_{t}",  # the factors in the wrong order
        r"\frac{\partial E}{\partial h_{0}} = \sum_{t=1}^{T} \delta^{h}_{t}",  # a false sum
    ),
)
def test_a_numbered_equation_added_to_the_document_is_checked(equation):
    """An equation the reader cannot evaluate, or that is false, fails: none is skipped."""
    result, checker = make_checker(SAMPLE[1])
    added = r"\begin{equation}" + "\n" + equation + r" \tag{99}" + "\n" + r"\end{equation}" + "\n"
    tex = result.latex.replace(r"\section{Vanishing", added + r"\section{Vanishing", 1)
    assert {n for n, _ in checker.check(tex)} == {99}


# --- the output layer's gradient: the chain rule down to the stable form ---------------------------


def _fused_checker(output, loss):
    """The checker of a one-step document with this output layer and loss, and the number of its dE/do; of
    its dE/dyhat where the prediction is the output layer's value (an identity output: no o)."""
    i = pairs().index((output, loss))
    spec = RNNSpec(T=1, output=output, loss=loss, notation=("row", "column")[i % 2], output_bias=i % 3 != 1)
    result, checker = make_checker(spec)
    return result, checker, result.equations["fused" if output != "identity" else "jac-loss"]


@pytest.mark.parametrize("pair", pairs(), ids="-".join)
def test_every_side_of_the_output_gradient_is_read_and_holds(pair):
    """Each = of dE/do_j, the =: naming g(o, y)_j and its where-clause d = yhat - y: read and equal."""
    result, checker, number = _fused_checker(*pair)
    assert not checker.check(only={number})


#: A wrong form of each pair's dE/do_j (one of its sides changed), which the check must catch.
WRONG_OUTPUT_GRADIENTS = (
    ("softmax", "squared_error", r"\sum_{i \ne j} \hat{y}_i d_i", r"\sum_i \hat{y}_i d_i"),  # i = j counted
    ("softmax", "squared_error", r"\sum_{i \ne j} \hat{y}_i d_i", r"\sum_{i \ne j} \hat{y}_j d_i"),
    ("softmax", "squared_error", r"d_j (1 - \hat{y}_j)", r"d_j (1 - \hat{y}_i)"),
    ("softmax", "squared_error", r"d = \hat{y} - y", r"d = y - \hat{y}"),  # the where-clause is read
    ("softmax", "squared_error", r", \quad d = \hat{y} - y", ""),  # d that nothing binds
    ("softmax", "squared_error", r"(o, y)_j", r"(o, y)_i"),  # i-entries are not j-entries
    ("softmax", "squared_error", r"g_{\mathrm{sse}}", r"g_{\mathrm{bce}}"),  # the name's own g is checked
    ("softmax", "binary_cross_entropy", r"\sum_{i \ne j}", r"\sum_i"),
    ("softmax", "binary_cross_entropy", r"\frac{d_i}{1 - \hat{y}_i}", r"\frac{d_i}{1 - \hat{y}_j}"),
    ("softmax", "binary_cross_entropy", r"= d_j -", r"= d_i -"),
    ("softmax", "cross_entropy", r"+ \hat{y}_j \sum_i y_i", r"+ \hat{y}_j \sum_{i \ne j} y_i"),
    ("sigmoid", "binary_cross_entropy", r"\sigma(-o_j)", r"\sigma(o_j)"),
    ("sigmoid", "cross_entropy", r"\sigma(-o_j)", r"\sigma(o_j)"),
    ("sigmoid", "squared_error", r"\bigr)\, \hat{y}_j\, \sigma(-o_j)", r"\bigr)\, \hat{y}_j\, \sigma(o_j)"),
    ("tanh", "squared_error", r"\operatorname{sech}^2 o_j", r"\operatorname{sech}^2 y_j"),
    ("tanh", "squared_error", r"(\tanh o_j - y_j)", r"(\tanh o_j + y_j)"),
    ("identity", "squared_error", r"= \hat{y}_i - y_i", r"= \hat{y}_j - y_j"),  # the same numbers, as a j-vector
    ("identity", "squared_error", r"= \hat{y}_i - y_i", r"= y_i - \hat{y}_i"),
)


@pytest.mark.parametrize("output, loss, right, wrong", WRONG_OUTPUT_GRADIENTS)
def test_a_wrong_side_of_the_output_gradient_fails(output, loss, right, wrong):
    result, checker, number = _fused_checker(output, loss)
    (lo, hi) = dict(_tagged_spans(result.latex))[number]
    assert result.latex.count(right, lo, hi) == 1
    tex = result.latex[:lo] + result.latex[lo:hi].replace(right, wrong) + result.latex[hi:]
    assert {n for n, _ in checker.check(tex, only={number})} == {number}


# --- mutations: a changed step index in any numbered equation fails -------------------------------

#: A step index, a sum's or product's limit: what a mutation changes.
_SITE = re.compile(
    r"(?<=[\^_]\{)(?:[tkj](?:[+-]1)?|T|\d+|\d+:\d+)(?=\})"  # h^{t-1}, h_{t}, E^{3}, \prod_{..}^{t}, H^{0:2}
    r"|(?<=,)(?:t(?:[+-]1)?|\d+|\d+:\d+)(?=\})"  # delta^{z,t+1}, Delta^{z,1:3}
    r"|(?<=_\{)t(?=,[ij]\})"  # y_{t,i}
    r"|(?<=_\{[tkj]=)(?:\d+|k\+1)(?=\})"  # \sum_{t=1}, \prod_{j=k+1}
)


def _mutated(index: str, T: int, lower_limit: bool) -> str:
    if ":" in index:  # stacked steps, shifted by one: H^{1:3} -> H^{0:2}, H^{0:2} -> H^{1:3}
        lo, hi = (int(i) for i in index.split(":"))
        shift = -1 if lo >= 1 else 1
        return f"{lo + shift}:{hi + shift}"
    if index.isdigit() and lower_limit:  # drop the first term (k = 0 would add a zero one: d+h_0/dW = 0)
        return str(int(index) + 1)
    if index.isdigit():
        return str(int(index) + 1 if int(index) < T else int(index) - 1)
    if index == "T":
        return "T-1"
    if index[1:]:  # t-1 -> t, k+1 -> k
        return index[0]
    return index + "+1"


def mutations(tex: str, T: int):
    """``(number, mutated tex, what changed)``: each step index of each numbered equation changed in turn."""
    for number, tagged in _tagged_spans(tex):
        lo, hi = tagged
        for m in _SITE.finditer(tex, lo, hi):
            new = _mutated(m.group(0), T, tex[m.start() - 1] == "=")
            yield number, tex[: m.start()] + new + tex[m.end() :], f"{tex[max(lo, m.start() - 25) : m.end()]} -> {new}"


def _tagged_spans(tex: str) -> list:
    """``(number, (start, end))``: where each numbered equation's rows stand in the text."""
    spans = []
    for env in re.finditer(r"\\begin\{(align|equation)\}(.*?)\\end\{\1\}", tex, re.S):
        start = env.start(2)
        for tag in re.finditer(r"\\tag\{(\d+)\}", env.group(2)):
            end = env.start(2) + tag.start()
            spans.append((int(tag.group(1)), (start, end)))
            start = env.start(2) + tag.end()
    return spans


def _assert_every_mutation_fails(spec, numbers=None):
    result, checker = make_checker(spec)
    assert not checker.check(), "the document must hold before it is changed"
    seen, survived = set(), []
    for number, tex, what in mutations(result.latex, spec.T):
        if numbers is not None and number not in numbers:
            continue
        seen.add(number)
        if number not in {n for n, _ in checker.check(tex, only={number})}:
            survived.append(f"({number}) {what}")
    checker.check(result.latex)
    assert not survived, "changed indices that no check noticed:\n" + "\n".join(survived)
    return seen, result


def test_a_changed_index_in_any_numbered_equation_fails():
    """Each step index and sum limit of each numbered equation of the issue's document, changed in turn."""
    seen, result = _assert_every_mutation_fails(SAMPLE[0])
    # every numbered equation with a step index was changed at least once
    assert seen == set(result.equations.values()) - _without_indices(result)


def _without_indices(result) -> set:
    """The numbers of equations with no step index to change."""
    return {n for n, (lo, hi) in _tagged_spans(result.latex) if not _SITE.search(result.latex, lo, hi)}


#: At T = 1 a product over j = k+1..t is empty at every step, so the indices inside it change no
#: value there; the same text is changed at T = 3 and T = 7. Each output layer once at least (its
#: gradient's equation and the final formulas differ), a smooth activation, as relu's 0/1
#: slopes may agree at two steps by chance (then D_7 and D_6 are the same matrix).
MUTATED = (
    SAMPLE[1],
    SAMPLE[3],
    RNNSpec(T=3, hidden="sigmoid", output="sigmoid", loss="squared_error", mapping="many-to-one", notation="row"),
    RNNSpec(T=3, hidden="x/(1+abs(x))", output="identity", loss="squared_error", notation="row", hidden_bias=False),
    RNNSpec(T=3, hidden="softplus", output="tanh", loss="squared_error", output_bias=False),
)


@pytest.mark.full
@pytest.mark.parametrize("spec", MUTATED, ids=lambda s: s.name)
def test_a_changed_index_fails_across_the_sweep(spec):
    _assert_every_mutation_fails(spec)


# --- an identity output layer: the prediction is the layer's value, as seed 003 writes yhat = V H_3 -----------

#: Documents with an identity output layer: the seed's, the three-form and the network template, a
#: loss at every step, a masked many-to-one network and a gated cell (whose output pre-activation is s).
IDENTITY = (
    preset_spec("seed-003"),
    RNNSpec(T=3, output="identity", loss="squared_error"),
    RNNSpec(T=4, masked=True, mapping="many-to-one", output="identity", loss="squared_error", hidden_bias=False),
    RNNSpec(T=3, layers=2, output="identity", loss="squared_error", notation="row"),
    RNNSpec(T=3, cell="gru", output="identity", loss="squared_error", notation="row"),
)


def _math(tex: str) -> list:
    """The mathematics of a document's body up to its appendix (whose formulas are the module's, with its names):
    every display and every inline formula."""
    body = tex.split(r"\begin{document}")[1].split(r"\section{The formulas the code runs}")[0]
    displays = re.compile(r"\\begin\{(align|equation|tikzpicture)\}(.*?)\\end\{\1\}", re.S)
    return [m.group(2) for m in displays.finditer(body)] + re.findall(r"\$([^$]*)\$", displays.sub("", body))


@pytest.mark.parametrize("spec", IDENTITY, ids=lambda s: s.name)
def test_an_identity_output_document_writes_no_output_pre_activation(spec):
    """The prediction is the output layer's value: no o beside it, no yhat = o, no dyhat/do = I, no delta^o."""
    result = build(spec)
    letter = GATED_LETTERS["o"][0] if spec.cell != "elman" else "o"  # the output pre-activation's letter
    alone = re.compile(rf"(?<![\\A-Za-z]){letter}(?![A-Za-z])")
    for tex in (result.latex, result.handout):
        found = [part for part in _math(tex) if alone.search(part)]
        assert not found, found[:3]
        assert "output pre-activation" not in tex.split(r"\section{The formulas the code runs}")[0]
    assert "jac-out" not in result.equations and "fused" not in result.equations


def test_seed_003_writes_its_prediction_and_the_output_gradient_from_its_delta():
    """Seed 003's yhat = V H_3, delta^H_3 = V^T delta^yhat and dL/dV = delta^yhat H_3^T, each read and evaluated:
    a changed factor or sign fails."""
    result, checker = make_checker(preset_spec("seed-003"))
    tex, numbers = result.latex, result.equations
    assert r"\hat{y} &= V H_{3} \tag{" in tex
    dV, dL = r"\frac{\partial L}{\partial V} &= ", r"\frac{\partial L}{\partial \hat{y}_i} = "
    paths = r"\frac{\partial L}{\partial \hat{y}} \frac{\partial \hat{y}}{\partial "
    changes = {  # equation -> (as written, changed)
        "rec-out": (r"\delta^{\hat{y}} &= \hat{y} - y", r"\delta^{\hat{y}} &= y - \hat{y}"),
        "rec-h": (r"\delta^{H}_{T} = V^{\top} \delta^{\hat{y}}", r"\delta^{H}_{T-1} = V^{\top} \delta^{\hat{y}}"),
        "delta-V": (dV + r"\delta^{\hat{y}} H_{3}^{\top}", dV + r"\delta^{\hat{y}} H_{2}^{\top}"),
        "jac-loss": (dL + r"\hat{y}_i - y_i", dL + r"y_i - \hat{y}_i"),
        # the old chain through o: there is no o to differentiate
        "compact-output": (dV + paths + "V}", dV + paths + r"o} \frac{\partial o}{\partial V}"),
    }
    assert not checker.check(only={numbers[key] for key in changes})
    for key, (right, wrong) in changes.items():
        assert right in tex, key
        changed = as_rnngen("seed-003", tex.replace(right, wrong, 1))  # read as every preset's document is
        assert {n for n, _ in checker.check(changed, only={numbers[key]})} == {numbers[key]}, key


# the wrong document's ŷ (V h + c, not a probability) meets a log in the loss: its NaN is the point
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_a_document_without_o_is_held_to_the_modules_o():
    """The reader lets a document write no o only where its prediction is the module's o: a softmax network's
    document that wrote yhat_t = V h_t + c fails at its forward equations."""
    result, checker = make_checker(SAMPLE[1])
    forward = "o_{t} &= V h_{t} + c \\nonumber \\\\*\n\\hat{y}_{t} &= \\operatorname{softmax}(o_{t}) \\tag{1}"
    assert forward in result.latex and result.equations["forward"] == 1
    tex = result.latex.replace(forward, "\\hat{y}_{t} &= V h_{t} + c \\tag{1}")
    assert (1, "yhat from the forward equations differs from the module's") in checker.check(tex)
