"""The documents of stacked, bidirectional and seed-002 networks: every numbered equation evaluated.

``latex_reader.Checker`` reads each numbered equation back from the LaTeX text and evaluates both
sides at a random point (every parameter drawn, initial states too), at every step the equation
states, against independent numbers: deltas as central differences of the forward pass that the
document's own forward equations define (checked against the module's ``forward``), gradients
from the module's ``loss_and_grads``, the final formulas run in order. The blocks of a matrix on a
stacked vector are cut here, by the convention the issue fixes (the forward chain's columns
first, as PyTorch concatenates; seed 002's ``[h_{t-1}; x_t]``: the recurrent block first).
"""

import re
import shutil
import subprocess

import numpy as np
import pytest
from latex_reader import Checker, formula_lines, numbered_equations, spec_blocks
from test_document import _module, legend_functions
from test_document_equations import _tagged_spans, mutations
from test_latex import compile_tex, needs_pdflatex

from rnngen.document import Notation
from rnngen.examples import NETWORKS
from rnngen.markdown import to_markdown
from rnngen.masks import Masked
from rnngen.pipeline import build
from rnngen.sequences import mask_from_lengths
from rnngen.spec import RNNSpec

N_X, N_Y = 3, 3


def _hidden(spec) -> tuple:
    """A different size per layer, so that a block cut at the wrong place cannot go unnoticed."""
    return tuple(4 + layer for layer in range(spec.layers))


def _blocks(spec, hidden) -> dict:
    return spec_blocks(spec, hidden, N_X)


def make_checker(spec, seed=0):
    """The document of ``spec`` and a checker of it on one random sequence."""
    result = build(spec)
    module = _module(result)
    hidden = _hidden(spec)
    rng = np.random.default_rng(seed)
    shapes = module.init_params(N_X, hidden if len(hidden) > 1 else hidden[0], N_Y)
    params = {name: 0.5 * rng.standard_normal(np.shape(v)) for name, v in shapes.items()}
    xs = rng.standard_normal((len(spec.input_steps), 1, N_X))  # one-to-many: x_1 only
    many = spec.mapping != "many-to-one"
    steps = len(spec.loss_steps)
    kind = spec.loss_rule.targets
    if kind == "classes":
        targets = rng.integers(0, N_Y, (steps, 1))
        per_step = np.eye(N_Y)[targets[:, 0]]
    else:
        draw = (
            rng.uniform(0.05, 0.95, (steps, 1, N_Y))
            if kind == "probabilities"
            else rng.standard_normal((steps, 1, N_Y))
        )
        targets, per_step = draw, draw[:, 0]
    ys = dict(zip(spec.loss_steps, per_step))
    module_xs = xs[0] if spec.mapping == "one-to-many" else xs  # the module takes the one input as (B, n_x)
    problem = (params, module_xs, targets if many else targets[0])
    row = spec.notation == "row"
    blocks = _blocks(spec, hidden)
    masks = None
    if spec.masked:  # the sequence padded: two steps fewer are real
        mask = mask_from_lengths([max(1, spec.T - 2)], spec.T, spec.padding)
        module, masks = Masked(module, mask), mask[:, 0].astype(int).tolist()
    checker = Checker(
        result.latex, row, params, xs[:, 0], ys, module, problem, legend_functions(spec), blocks=blocks, T=spec.T,
        truncate=spec.truncate, masks=masks, gated=spec.cell != "elman",
    )  # fmt: skip
    return result, checker


def _check(spec):
    result, checker = make_checker(spec)
    failures = checker.check()
    assert not failures, "\n".join(f"({n}) {msg}" for n, msg in failures)
    assert len(numbered_equations(result.latex)) == len(result.equations)  # every number was read
    return result


#: The four networks of the brief at T = 3, and the notations and mappings around them.
SAMPLE = (
    RNNSpec(T=3, layers=2),
    RNNSpec(T=3, bidirectional=True),
    RNNSpec(T=3, layers=2, bidirectional=True),
    RNNSpec(T=3, notation="stacked"),
    RNNSpec(T=3, layers=2, notation="row", hidden="sigmoid", output="identity", loss="squared_error"),
    RNNSpec(T=3, bidirectional=True, notation="stacked", mapping="many-to-one", output_bias=False),
    RNNSpec(T=3, bidirectional=True, notation="row"),  # V [h^f; h^b] as [h^f h^b] V, blocks of rows
    # seed 001's other mappings: one input at the first step; losses from step d + 1 on
    RNNSpec(T=4, mapping="one-to-many"),
    RNNSpec(T=4, delay=2),
    RNNSpec(T=3, layers=2, bidirectional=True, mapping="one-to-many", notation="row"),
    RNNSpec(T=4, delay=1, bidirectional=True, output="sigmoid", loss="binary_cross_entropy"),
    # activations the reader knows only from the legend's definition
    RNNSpec(T=3, layers=2, hidden="leaky_relu", slope=0.1),
    RNNSpec(T=3, bidirectional=True, hidden="x/(1+abs(x))", notation="row"),
)


def _sweep() -> list:
    """T = 1, 2, 5 over layers 1-3, both directions, every notation, both mappings, a few output layers."""
    specs = []
    outputs = (("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("identity", "squared_error"))
    i = 0
    for T in (1, 2, 5):
        for layers in (1, 2, 3):
            for bidirectional in (False, True):
                for notation in ("column", "row", "stacked"):
                    if layers == 1 and not bidirectional and notation != "stacked":
                        continue  # the one-layer document, checked by test_document_equations
                    output, loss = outputs[i % 3]
                    specs.append(
                        RNNSpec(
                            T=T,
                            layers=layers,
                            bidirectional=bidirectional,
                            notation=notation,
                            hidden=("tanh", "sigmoid", "softplus")[i % 3],
                            output=output,
                            loss=loss,
                            mapping=("many-to-many", "many-to-one")[(i // 3) % 2],
                            hidden_bias=i % 4 != 1,
                            output_bias=i % 5 != 2,
                        )
                    )
                    i += 1
    return specs


@pytest.mark.parametrize("spec", SAMPLE, ids=lambda s: s.name)
def test_every_numbered_equation_holds(spec):
    _check(spec)


@pytest.mark.full
@pytest.mark.parametrize("spec", _sweep() + list(NETWORKS), ids=lambda s: s.name)
def test_every_numbered_equation_holds_across_the_sweep(spec):
    _check(spec)


# --- what the documents teach ---------------------------------------------------------------------


def _equation(result, key: str) -> str:
    """The text of the numbered equation ``key``."""
    number = result.equations[key]
    lo, hi = dict(_tagged_spans(result.latex))[number]
    return result.latex[lo:hi]


def test_a_lower_layers_delta_has_the_two_arrows():
    """Seed 001: the gradient at h^{1,t} arrives from layer 2 at step t and from layer 1 at step t+1."""
    result = build(RNNSpec(T=5, layers=2))
    assert re.search(
        r"\\delta\^\{h\(1\)\}_\{t\} &= "
        r"\\underbrace\{\{U\^\{\(2\)\}\}\^\{\\top\} \\delta\^\{z\(2\)\}_\{t\}\}_\{\\text\{layer 2, step \} t\} \+ "
        r"\\underbrace\{\{W\^\{\(1\)\}\}\^\{\\top\} \\delta\^\{z\(1\)\}_\{t\+1\}\}_\{\\text\{layer 1, step \} t\+1\}"
        r", \\quad t = T-1, \\dots, 1",
        result.latex,
    )
    # at the chain's end, no step t+1: the recurrent term is absent; the text speaks of T, and so does the line
    assert r"\delta^{h(1)}_{T} &= {U^{(2)}}^{\top} \delta^{z(2)}_{T} \tag" in result.latex


def test_the_bidirectional_output_delta_splits_between_two_sweeps():
    result = build(RNNSpec(T=3, bidirectional=True))
    split = _equation(result, "split")
    assert (
        r"V^{\top} \delta^{o}_{t} &= "
        r"\begin{bmatrix} {V^{(\mathrm{f})}}^{\top} \delta^{o}_{t} \\ "
        r"{V^{(\mathrm{b})}}^{\top} \delta^{o}_{t} \end{bmatrix}" in split
    )
    # the backward chain's sweep runs forward in time: its state's delta reads step t-1
    assert (
        r"{W^{(\mathrm{b})}}^{\top} \delta^{z(\mathrm{b})}_{t-1}}_{\text{backward, step } t-1}, \quad t = 2, 3"
        in result.latex
    )
    assert (
        r"{W^{(\mathrm{f})}}^{\top} \delta^{z(\mathrm{f})}_{t+1}}_{\text{forward, step } t+1}, \quad t = 2, 1"
        in result.latex
    )
    # V = [V_f V_b], and its gradient's blocks, one per chain
    assert (
        r"o_{t} &= V \begin{bmatrix} h^{(\mathrm{f})}_{t} \\ h^{(\mathrm{b})}_{t} \end{bmatrix} + c, "
        r"\qquad V = \begin{bmatrix} V^{(\mathrm{f})} & V^{(\mathrm{b})} \end{bmatrix}" in result.latex
    )
    assert (
        r"\sum_{t=1}^{T} \delta^{o}_{t} "
        r"{\begin{bmatrix} h^{(\mathrm{f})}_{t} \\ h^{(\mathrm{b})}_{t} \end{bmatrix}}^{\top}"
        in _equation(result, "delta-V")
    )
    # the backward chain starts after the last step, at the lecture's h^{1,T+1}
    assert r"\frac{\partial E}{\partial h^{(\mathrm{b})}_{T+1}} &= \delta^{h(\mathrm{b})}_{4}" in result.latex


def test_the_stacked_gradient_is_one_sum_with_the_two_blocks_side_by_side():
    """Seed 002: dE/dW = sum_t delta^z_t [h_{t-1}; x_t]^T = [dE/dW_h  dE/dW_x]."""
    result = build(RNNSpec(T=3, notation="stacked"))
    assert _equation(result, "delta-W").strip() == (
        r"\frac{\partial E}{\partial W} &= \begin{bmatrix} \sum_{t=1}^{T} \delta^{z}_{t} h_{t-1}^{\top} & "
        r"\sum_{t=1}^{T} \delta^{z}_{t} x_{t}^{\top} \end{bmatrix} = "
        r"\sum_{t=1}^{T} \delta^{z}_{t} \begin{bmatrix} h_{t-1} \\ x_{t} \end{bmatrix}^{\top}"
    )
    assert (
        r"z_{t} &= W \begin{bmatrix} h_{t-1} \\ x_{t} \end{bmatrix} + b, "
        r"\qquad W = \begin{bmatrix} W_{h} & W_{x} \end{bmatrix}" in result.latex
    )


def test_every_value_a_final_formula_reads_is_stated_before_it():
    """Layer 2's recurrence reads its non-recurrent part Z~^{(2)}; the document must state it (when that
    part was the bias alone, b2 for every step, it was left out as if it were an initial state)."""
    lines = formula_lines(build(RNNSpec(T=3, layers=2)).latex)
    for layer in (1, 2):
        first_reader = next(i for i, line in enumerate(lines) if rf"\tilde{{z}}^{{({layer})}}_{{t}}" in line)
        assert any(line.startswith(rf"\tilde{{Z}}^{{({layer})}}_{{1:3}} &=") for line in lines[:first_reader])


# --- a changed index or tag fails ---------------------------------------------------------------

#: A chain's tag, of a family or a parameter: (2), (\mathrm{f}), (1\mathrm{b}) (z^{(2)}_{t}, U^{(2)}); a
#: block's direction (V^{(\mathrm{f})}).
_TAG_SITE = re.compile(r"(?<=\()\d(?=[\\)])|\\mathrm\{[fb]\}")


def tag_mutations(tex: str):
    """``(number, mutated tex, what changed)``: each chain tag of each numbered equation swapped in turn."""
    for number, (lo, hi) in _tagged_spans(tex):
        for m in _TAG_SITE.finditer(tex, lo, hi):
            old = m.group(0)
            new = {r"\mathrm{f}": r"\mathrm{b}", r"\mathrm{b}": r"\mathrm{f}", "1": "2", "2": "1"}.get(old)
            if new is not None:
                yield (
                    number,
                    tex[: m.start()] + new + tex[m.end() :],
                    f"{tex[max(lo, m.start() - 25) : m.end()]} -> {new}",
                )


def _assert_every_mutation_fails(spec, kinds=(mutations, tag_mutations)):
    result, checker = make_checker(spec)
    assert not checker.check(), "the document must hold before it is changed"
    seen, survived = set(), []
    for kind in kinds:
        for number, tex, what in kind(result.latex, spec.T) if kind is mutations else kind(result.latex):
            seen.add(number)
            if number not in {n for n, _ in checker.check(tex, only={number})}:
                survived.append(f"({number}) {what}")
    checker.check(result.latex)
    assert not survived, "changes that no check noticed:\n" + "\n".join(survived)
    return seen


def test_a_changed_step_or_tag_fails_in_the_sweep_of_a_two_layer_network():
    """Each step index and each layer tag of the delta recursion, changed in turn, fails at its equation."""
    spec = RNNSpec(T=3, layers=2)
    result, _ = make_checker(spec)
    sweep = {n for k, n in result.equations.items() if k.startswith(("sweep-", "delta-"))}
    seen = _assert_every_mutation_fails(spec)
    assert sweep <= seen


@pytest.mark.full
@pytest.mark.parametrize(
    "spec",
    (RNNSpec(T=3, bidirectional=True), RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked")),
    ids=lambda s: s.name,
)
def test_a_changed_step_or_tag_fails_across_the_sweep(spec):
    _assert_every_mutation_fails(spec)


# --- renderings -------------------------------------------------------------------------------------

RENDERED = (
    RNNSpec(T=3, layers=2),
    RNNSpec(T=5, bidirectional=True),
    RNNSpec(T=3, layers=2, bidirectional=True),
    RNNSpec(T=5, notation="stacked"),
    RNNSpec(T=5, layers=2, bidirectional=True, notation="row"),
)


@pytest.mark.parametrize("spec", RENDERED, ids=lambda s: s.name)
def test_the_markdown_renders(spec):
    result = build(spec)
    for flavor in ("github", "jupyter"):
        assert r"\underbrace" in to_markdown(result.latex, flavor) or spec.T == 1


@needs_pdflatex
@pytest.mark.parametrize("spec", RENDERED, ids=lambda s: s.name)
def test_the_document_compiles_without_overfull_boxes(spec, tmp_path):
    run = compile_tex(tmp_path, "doc", build(spec).latex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout  # nothing runs off the page


# --- parameters spelled as mathematics ----------------------------------------------------------

#: Layers 1-3 x one or two directions x column and row vectors (one layer, one direction: the
#: one-layer document, whose parameters carry no tag).
NAMED = tuple(
    RNNSpec(T=3, layers=layers, bidirectional=bi, notation=notation)
    for layers in (1, 2, 3)
    for bi in (False, True)
    for notation in ("column", "row")
    if layers > 1 or bi
)


def _body(text: str) -> str:
    """The document without its header (the spec and the command name the code's parameters)."""
    start = text.index(r"\begin{document}") if r"\begin{document}" in text else text.index("-->")
    return re.sub(r"\\texttt\{[^}]*\}|`[^`$]*\.py`", "", text[start:])


def _code_spellings(name: str) -> set:
    """How a code name reads when a document writes it as it is: ``U2_f``, ``U2_{f}``, ``h0_{1}``, ``b_{f}``."""
    base, _, sub = name.partition("_")
    return {name, name.replace("_", r"\_")} | ({f"{base}_{{{sub.replace('_', ',')}}}"} if sub else set())


def _renamed(result) -> list:
    """The code names of the parameters and blocks that mathematics writes otherwise (a layer, a direction)."""
    out = []
    for p in result.derivation.graph.network.params.values():
        out += [p.block(part).name for part in p.parts]
        if p.chain is not None:
            out.append(p.name)
    return out


@pytest.mark.parametrize("spec", NAMED, ids=lambda s: s.name)
def test_the_documents_spell_no_code_name(spec):
    """``U1`` reads as U times 1 and ``b_{f}`` has an italic f beside the families' roman (f): the LaTeX
    and the Markdown write a parameter as its letter with its chain's tag, ``U^{(1)}``, ``b^{(\\mathrm{f})}``."""
    result = build(spec)
    names = _renamed(result)
    assert names
    for flavor, text in (("latex", result.latex), ("markdown", to_markdown(result.latex, "github"))):
        body = _body(text)
        for name in names:
            for spelled in _code_spellings(name):
                found = re.search(rf"(?<![A-Za-z0-9\\]){re.escape(spelled)}(?![A-Za-z0-9])", body)
                assert not found, (
                    f"{flavor}: the code name {name} as {spelled!r}: {body[found.start() - 40 : found.end() + 40]!r}"
                )
        # a direction is roman wherever it stands, as the families write it: never an italic subscript f or b
        assert not re.search(r"_\{(?:[^{}]*,)?[fb](?:,[^{}]*)?\}", body), flavor


def _legend(tex: str) -> list:
    """``(symbol, meaning)`` of each row of the notation table."""
    table = tex.split(r"\section*{Notation}", 1)[1].split("\n", 2)[2].split(r"\end{longtable}", 1)[0]
    rows = [row.strip() for row in re.split(r"\\\\\s*\n", table) if row.strip()]
    return [(row.partition("&")[0].strip(), row.partition("&")[2].strip()) for row in rows]


def _chain_tags(legend) -> dict:
    """Where -> the tag the document writes its families with (``of layer 2, forward chain`` -> ``(2\\mathrm{f})``)."""
    tags = {}
    for symbol, meaning in legend:
        if meaning.startswith("pre-activation and state of "):
            m = re.fullmatch(r"\$z\^\{(\((?:[^{}]|\{[^{}]*\})*\))[,}].*", symbol)
            assert m, symbol
            tags[meaning.removeprefix("pre-activation and state of ")] = m.group(1)
    return tags


@pytest.mark.parametrize("spec", NAMED, ids=lambda s: s.name)
def test_each_parameter_carries_its_chains_tag_and_is_listed_once_with_its_shape(spec):
    """The legend writes each parameter once, with the shape of the module's array, and the tag of
    a chain's parameters is the tag its families carry (``U^{(2)}`` beside ``z^{(2)}_{t}``)."""
    result, checker = make_checker(spec)
    params = checker.raw[0]  # the module's arrays
    legend = _legend(result.latex)
    tags = _chain_tags(legend)
    sizes = {"x": N_X, "y": N_Y} | {f"h{i + 1}": n for i, n in enumerate(_hidden(spec))}
    if spec.layers == 1:
        sizes["h"] = _hidden(spec)[0]
    listed = []
    for symbol, meaning in legend:
        m = re.fullmatch(
            r"(?P<what>(?:[a-z ]+ )?(?:weights|bias|state|memory cell))(?: of (?P<where>.+))?, \$(?P<shape>.+)\$",
            meaning,
        )
        if not m:
            continue
        math = symbol.strip("$")
        name = checker._param_of(math)
        listed.append(name)
        shape = re.sub(r"n_\{(\w+)\}", lambda s: str(sizes[s.group(1)]), m.group("shape"))
        shape = re.sub(r"(\d) (\d)", r"\1*\2", shape)
        assert tuple(eval(d) for d in shape.split(r" \times ")) == np.shape(params[name]), (symbol, meaning)
        if m.group("where"):  # a chain's parameter: the chain's tag, as its families write it
            tag = re.escape(tags[m.group("where")])
            assert re.fullmatch(rf"\{{?[A-Za-z]+\}}?\^\{{{tag}[,}}].*|h\^\{{{tag}\}}_\{{.*", math), (math, meaning)
        else:
            assert "^" not in math, math  # the output layer's: no chain
    assert sorted(listed) == sorted(params)  # each parameter once


#: A parameter's chain tag or block direction: U^{(2\mathrm{f})}, W^{(1)}, V^{(\mathrm{b})},
#: U^{(2\mathrm{f})}_{\mathrm{b}}.
_PARAM_SITE = re.compile(
    r"(?<=[UWbV]\^\{\()\d|(?<=[UWbV]\^\{\()\\mathrm\{[fb]\}|(?<=[UWbV]\^\{\(\d)\\mathrm\{[fb]\}"
    r"|(?<=V_\{)\\mathrm\{[fb]\}|(?<=\)\}_\{)\\mathrm\{[fb]\}"
)


def param_tag_mutations(tex: str):
    """``(number, mutated tex, what changed)``: each parameter's layer, direction or block swapped in turn."""
    for number, (lo, hi) in _tagged_spans(tex):
        for m in _PARAM_SITE.finditer(tex, lo, hi):
            old = m.group(0)
            new = {r"\mathrm{f}": r"\mathrm{b}", r"\mathrm{b}": r"\mathrm{f}", "1": "2", "2": "1"}[old]
            yield number, tex[: m.start()] + new + tex[m.end() :], f"{tex[max(lo, m.start() - 25) : m.end()]} -> {new}"


@pytest.mark.parametrize(
    "spec",
    (RNNSpec(T=3, layers=2, bidirectional=True), RNNSpec(T=2, layers=2, bidirectional=True, notation="row")),
    ids=lambda s: s.name,
)
def test_a_parameter_of_another_chain_fails_its_equation(spec):
    """The reader reads ``U^{(2\\mathrm{f})}`` as the module's ``U2_f``: a parameter written with another
    layer, direction or block (``W^{(1)}`` for ``W^{(2)}``, ``V^{(\\mathrm{b})}`` for ``V^{(\\mathrm{f})}``) fails."""
    result, checker = make_checker(spec)
    assert not checker.check(), "the document must hold before it is changed"
    changes = list(param_tag_mutations(result.latex))
    changed = {number for number, _, _ in changes}
    final = {n for k, n in result.equations.items() if k.startswith("final-")}
    assert changed & final and changed - final  # in the derivation and in the formulas the code runs
    assert any(r"V^{(\mathrm" in what for _, _, what in changes) and any(")}_{" in what for _, _, what in changes)
    survived = [
        what for number, tex, what in changes if number not in {n for n, _ in checker.check(tex, only={number})}
    ]
    assert not survived, "changes that no check noticed:\n" + "\n".join(survived)


#: Custom names, and seed 000's W, U, V, each with more than one chain. (The reader reads a name of several
#: letters only with its chain's tag, {Wxh}^{(1)}: an output weight's Why would read as W h y.)
CUSTOM = (
    RNNSpec(T=3, layers=2, names=("Wxh", "Whh", "V")),
    RNNSpec(T=3, layers=2, bidirectional=True, notation="row", names=("w_i", "w_h", "w_o")),
    RNNSpec(T=3, layers=2, notation="row", names=("W", "U", "V")),
    RNNSpec(T=3, bidirectional=True, notation="stacked", names=("Wxh", "Whh", "V")),
)


@pytest.mark.parametrize("spec", CUSTOM, ids=lambda s: s.name)
def test_custom_names_are_written_with_their_chains_tag_and_checked(spec):
    result = _check(spec)
    inp, rec, _ = spec.names
    body = _body(result.latex)
    tag = "(" + ("1" if spec.layers > 1 else "") + (r"\mathrm{f}" if spec.bidirectional else "") + ")"
    for letter in (rec,) if spec.notation == "stacked" else (inp, rec):  # the first chain's
        base, _, sub = letter.partition("_")
        head = f"{{{base}}}" if len(base) > 1 else base  # the tag is the whole name's
        assert head + "^{" + tag + "}" + (f"_{{{sub}}}" if sub else "") in body, letter
    for name in _renamed(result):
        assert not re.search(rf"(?<![A-Za-z0-9\\]){re.escape(name)}(?![A-Za-z0-9])", body), name


@pytest.mark.parametrize("spec", (RNNSpec(T=3, layers=2), RNNSpec(T=3, bidirectional=True)), ids=lambda s: s.name)
def test_the_text_formulas_write_parameters_as_mathematics(spec):
    """The command line's and the module comments' formulas: ``dE/dU¹``, not ``dE/dU1``; the module's
    docstring says which array each one is."""
    result = build(spec)
    names = _renamed(result)
    blocks = {p.block(part).name for p in result.derivation.graph.network.params.values() for part in p.parts}
    for f in result.formulas:
        for name in names:
            if name not in blocks:  # V_f is the block's name and its spelling in text
                assert not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", f.text), (name, f.text)
    legend = "U¹, W¹, b¹: the parameters U1, W1, b1" if spec.layers == 2 else "Uᶠ, Wᶠ, bᶠ: the parameters U_f, W_f, b_f"
    assert legend in result.module


def test_a_parameters_spelling_survives_sympys_rebuilding():
    """SymPy rebuilds symbols from their arguments (``xreplace``, ``func(*args)``): the spelling is one of
    them, so a rebuilt parameter, block or gradient is written as the original is."""
    from rnngen.network import network
    from rnngen.printing.math import latex, text
    from rnngen.program import gradient_symbol

    net = network(RNNSpec(T=3, layers=2, bidirectional=True))
    u = net.params["U2_f"]
    for sym, spelled, plain in (
        (u.symbol(), r"U^{(2\mathrm{f})}", "U²ᶠ"),
        (u.block("b"), r"U^{(2\mathrm{f})}_{\mathrm{b}}", "U²ᶠ_b"),
        (gradient_symbol(u.symbol()), r"\frac{\partial E}{\partial U^{(2\mathrm{f})}}", "dE/dU²ᶠ"),
        (net.params["h0_1_b"].symbol(), r"h^{(1\mathrm{b})}_{T+1}", "h¹ᵇ_{T+1}"),
    ):
        rebuilt = sym.func(*sym.args)
        assert rebuilt == sym and rebuilt.name == sym.name  # the code's name is kept for the module
        assert (latex(rebuilt), text(rebuilt)) == (spelled, plain)


@needs_pdflatex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed (Debian: poppler-utils)")
@pytest.mark.parametrize("spec", [RNNSpec(T=5, cell="lstm"), RNNSpec(T=5, layers=2)], ids=["lstm", "two-layer"])
def test_page_one_fills_with_the_legend_and_no_heading_stands_alone(tmp_path, spec):
    """The legend may break across pages: page 1 does not end after the introduction (the LSTM's long
    legend moved whole to page 2); and a table's heading never ends a page without its table."""
    run = compile_tex(tmp_path, "doc", build(spec).latex)
    assert run.returncode == 0, run.stdout[-2000:]
    page = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", "-layout", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True
    ).stdout
    assert "input and target at step" in page, page[-800:]
    assert "Shapes" not in page or re.search(r"shape\s+symbols", page), page[-800:]


@pytest.mark.parametrize("spec", [RNNSpec(T=3, layers=2), RNNSpec(T=3, cell="lstm")], ids=lambda s: s.name)
def test_the_appendix_says_what_its_primed_arrays_are(spec):
    """The code's slope arrays (f', F') stand in the appendix only, which says once what they hold,
    instead of introducing them silently; the handout, without the appendix, has neither."""
    result = build(spec)
    body, _, appendix = result.latex.partition(r"\appendix")
    said = "A primed\nsymbol holds an activation's slope"
    said = "A primed symbol holds the entrywise factor" if spec.cell == "lstm" else said  # a gated cell's: more
    assert said in appendix and re.search(r"\{[fF]'", appendix)
    assert not re.search(r"\{[fF]'", body.split(r"\begin{document}")[1])
    assert "A primed" not in result.handout


# --- one name for the hidden activation's Jacobian ------------------------------------------------

#: Elman chains in every arrangement the network documents take: layers, directions, rows, a mask (D of
#: the new state before it), a truncation (one D for the deltas of every age), a single step.
_ELMAN_CHAINS = (
    RNNSpec(T=5, layers=2),
    RNNSpec(T=5, bidirectional=True),
    RNNSpec(T=3, layers=2, bidirectional=True, notation="row"),
    RNNSpec(T=4, masked=True, mapping="many-to-one"),
    RNNSpec(T=4, truncate=2),
    RNNSpec(T=1, layers=2),
)


@pytest.mark.parametrize("spec", _ELMAN_CHAINS, ids=lambda s: s.name)
def test_each_chains_hidden_jacobian_has_one_name_defined_once(spec):
    """The delta recursion writes delta^z = D delta^h with the chain's own D (its state's tag: D^{(2)}_t),
    not the derivation's delta^h ⊙ (1 − h ⊙ h): D's entries stand once per chain, in its definition on the
    row before its first use; the legend says how it is written, the Shapes table gives its shape, the
    appendix says which primed arrays hold its diagonals; and every equation still holds."""
    result = _check(spec)
    n = Notation(result.spec)
    tex = result.latex.split(r"\begin{document}")[1]
    body, _, appendix = tex.partition(r"\appendix")
    body, _, summary = body.partition(r"\section{Summary}")  # the summary restates equations by their numbers
    legend = body[body.index(r"\section*{Notation}") : body.index(r"\section*{Shapes}")]
    shapes = body[body.index(r"\section*{Shapes}") : body.index(r"\section{")]
    chains = result.derivation.graph.network.chains
    new = "hbar" if spec.masked else "h"
    for chain in chains:
        tag = chain.family("h").tag_latex
        D = n.D("t", tag) if spec.T > 1 else n.D(1, tag)
        t = "t" if spec.T > 1 else 1
        h, z = n.step(chain.family(new).key, t), n.step(chain.family("z").key, t)
        assert body.count(f"{D} &= ") == 1, D  # defined once
        definition = re.escape(f"{D} &= {n.partial(h, z)} = \\operatorname{{diag}}\\bigl(")
        assert re.search(definition + r"\\mathbf\{1\}(?:\^\{\\top\})? - " + re.escape(f"{h} \\odot {h}\\bigr)"), body)
        # every delta at the pre-activation, whatever its age, through D (no entrywise product left)
        dz = [line for line in body.splitlines() if line.startswith(r"\delta^{z" + tag)]
        product = f"\\, {D}," if n.row else f"= {D}\\, \\delta"
        assert any(product in line for line in dz) and not any(r"\odot" in line for line in dz), dz
        assert n.D("t", tag) in shapes
    # the activation's slope is written once per chain, in D's definition, and nowhere else in the body
    slope = re.findall(r"\\mathbf\{1\}(?:\^\{\\top\})? - (?:\\bar\{h\}|h)", body)
    assert len(slope) == len(chains), slope
    assert re.search(r"^\$D[\^_].*Jacobian", legend, re.M), legend
    if len(chains) > 1:  # how a chain's D is written: with its tag, a generic layer l
        assert re.search(r"^\$D\^\{\((?:l|\\mathrm\{f\})", legend, re.M), legend
    assert not re.search(r"\{[fF]'", body)
    assert "is the diagonal of $D" in appendix or not re.search(r"\{[fF]'", appendix)  # T = 1 keeps no slopes


@pytest.mark.parametrize(
    "spec", [RNNSpec(T=3, cell="lstm"), RNNSpec(T=3, cell="gru", notation="row")], ids=lambda s: s.name
)
def test_the_gated_documents_compare_with_a_plain_rnns_D(spec):
    """A gated document keeps its gates' Jacobians, and where it compares with a plain RNN it writes that
    network's Jacobian as the Elman documents do (D_t, D^t in rows), listed in the legend."""
    result = build(spec)
    n = Notation(result.spec)
    body = result.latex.split(r"\begin{document}")[1].partition(r"\appendix")[0]
    D = n.D("t")
    assert f"is ${D} W$, with ${D} = " in body.replace("\n", " ")
    assert re.search("^" + re.escape(f"${D}$ & the plain RNN's hidden Jacobian"), body, re.M)
    assert "the diagonal of its activation's derivative" not in " ".join(body.split())  # the old, second name
