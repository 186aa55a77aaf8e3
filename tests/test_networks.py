"""Every network the engine makes, through every check.

Layers 1-3, one direction or two, column, row and stacked notation, with a sample of hidden
activations, output/loss pairs and mappings: the exact oracle, finite differences, the Taylor
test, the agreement of the derivation's forms and every path of the module; each optimization
pass left out in turn; a hand-written PyTorch-convention reference (``reference_networks``) that
shares no code with rnngen; and the cost of generating and checking against the number of layers.
"""

import functools
import itertools
import tempfile
from pathlib import Path

import mpmath
import numpy as np
import pytest
import reference_networks as torchlike
import sympy as sp

from rnngen import algebra as A
from rnngen import verify
from rnngen.backprop import TooManyPaths, derive, path_expansion, path_source
from rnngen.families import Step
from rnngen.optimize import PASSES
from rnngen.pipeline import build
from rnngen.reference import plain_forward
from rnngen.spec import NOTATIONS, RNNSpec
from rnngen.variants import DTYPES

# --- the sweep -------------------------------------------------------------------------------

#: Layers x direction x notation.
STRUCTURES = list(itertools.product((1, 2, 3), (False, True), tuple(NOTATIONS)))
#: The rest of a spec, taken in turn: hidden activations (a kink, a custom one), output/loss pairs,
#: mappings, biases, the input gradient.
FLAVOURS = [
    dict(hidden="tanh"),
    dict(hidden="sigmoid", output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one"),
    dict(hidden="relu", output="identity", loss="squared_error", input_grad=True),
    dict(hidden="leaky_relu", output="softmax", loss="squared_error", hidden_bias=False),
    dict(hidden="softplus", output="tanh", loss="squared_error", mapping="many-to-one", output_bias=False),
    dict(hidden="x/(1+abs(x))", input_grad=True),
    dict(hidden="identity", output="sigmoid", loss="cross_entropy", mapping="many-to-one", input_grad=True),
]
SWEEP = [
    RNNSpec(T=3 if layers < 3 else 2, layers=layers, bidirectional=bi, notation=notation, **FLAVOURS[i % len(FLAVOURS)])
    for i, (layers, bi, notation) in enumerate(STRUCTURES)
]
#: The quick run's sample: every layer count, both directions, every notation, four flavours.
QUICK = {1, 6, 11, 20}


def _ids(spec):
    return spec.name


@functools.cache
def _built(spec, skip=()):
    return build(spec, skip=skip)


@functools.cache
def _module(spec):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{spec.name}.py"
        path.write_text(_built(spec).module, encoding="utf-8")
        return verify.load_module(path)


@pytest.mark.parametrize(
    "spec",
    [s if i in QUICK else pytest.param(s, marks=pytest.mark.full) for i, s in enumerate(SWEEP)],
    ids=_ids,
)
def test_every_network_passes_every_check(spec):
    report = verify.check_build(_built(spec), exact=True)
    assert report.ok, report.failures
    wanted = set(_module(spec).PARAM_SHAPES) | ({"x"} if spec.input_grad else set())
    assert set(report.fd) == wanted and set(report.exact.grads) == wanted and set(report.forms) == wanted
    assert {name.split(" ", 1)[1] for name in report.paths} >= {"loss()", "forward()", "single sequences"}


def test_the_quick_sample_meets_every_structure_value():
    quick = [SWEEP[i] for i in QUICK]
    assert {s.layers for s in quick} == {1, 2, 3}
    assert {s.bidirectional for s in quick} == {False, True}
    assert {s.notation for s in quick} == set(NOTATIONS)
    assert any(s.input_grad for s in quick) and any(s.mapping == "many-to-one" for s in quick)


#: Networks that go through the build with each optimization pass left out in turn.
PASS_SPECS = [
    RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked", input_grad=True),
    RNNSpec(T=3, layers=3, notation="row", mapping="many-to-one", hidden="sigmoid"),
]
SKIPPABLE = list(dict.fromkeys(p.__name__ for p in PASSES if p.__name__ != "schedule"))
#: A pass only a masked network gives work to, and the network it is left out of.
MASKED_ONLY = {"read_held_states": RNNSpec(T=3, layers=2, bidirectional=True, masked=True, padding="pre")}
PASS_CASES = [
    case
    for name in SKIPPABLE
    for case in (
        [pytest.param(MASKED_ONLY[name], name, id=f"{MASKED_ONLY[name].name}-{name}")]
        if name in MASKED_ONLY
        else [
            pytest.param(PASS_SPECS[0], name, id=f"{PASS_SPECS[0].name}-{name}"),
            pytest.param(PASS_SPECS[1], name, id=f"{PASS_SPECS[1].name}-{name}", marks=pytest.mark.full),
        ]
    )
]


@pytest.mark.parametrize(("spec", "name"), PASS_CASES)
def test_every_pass_can_be_left_out(spec, name):
    b = _built(spec, (name,))
    assert b.module != _built(spec).module  # the pass does something to this network
    report = verify.check_build(b, dtypes=("float64",))
    assert report.ok, (name, report.failures)


# --- per-layer sizes ----------------------------------------------------------------------------


def test_each_layer_can_have_its_own_size():
    spec = RNNSpec(T=3, layers=3, bidirectional=True, notation="stacked", input_grad=True)
    b = _built(spec)
    m = _module(spec)
    sizes = (3, (2, 4, 3), 2, 2)
    params, xs, _ = verify.random_problem(m, sizes)
    assert params["W1_f"].shape == (2, 2 + 3) and params["W2_b"].shape == (4, 4 + 2 + 2)
    assert params["W3_f"].shape == (3, 3 + 4 + 4) and params["V"].shape == (2, 3 + 3)
    report = verify.check_module(m, build=b, sizes=sizes)
    assert report.ok, report.failures
    assert report.as_dict()["sizes"]["n_h"] == [2, 4, 3]
    oracle = verify.exact_oracle(m, sizes=(2, (3, 1, 2), 2, 1))
    assert oracle.worst <= verify.EXACT_TOLERANCE, oracle


@pytest.mark.parametrize("n_h", [(2, 3), (2, 3, 4, 5), (2, 0, 3), 0])
def test_sizes_per_layer_must_match_the_layers(n_h):
    m = _module(RNNSpec(T=2, layers=3))
    with pytest.raises(ValueError, match=r"sizes must be four whole numbers .*one per layer, 3 here"):
        verify.check_module(m, sizes=(2, n_h, 2, 1))


# --- the sum over paths --------------------------------------------------------------------------


def test_a_blocked_parameters_paths_are_its_blocks_paths():
    """The stacked W = [W | U] has the paths of W and of U; V = [V^f | V^b] one per step and block."""
    T = 3
    stacked, column = derive(RNNSpec(T=T, notation="stacked")), derive(RNNSpec(T=T))
    assert len(path_expansion(stacked, "W")) == len(path_expansion(column, "W")) + len(path_expansion(column, "U"))
    bi = derive(RNNSpec(T=T, bidirectional=True))
    terms = path_expansion(bi, "V")
    assert len(terms) == 2 * T
    assert sorted(path_source(t) for t in terms) == sorted(2 * list(range(1, T + 1)))
    # each term is one block's path, the other block zero
    assert all(sum(not p.is_ZeroMatrix for p in t.parts) == 1 for t in terms)


def test_paths_cross_the_layers_and_the_directions():
    """dE/dW1 in two layers: a path from o_t goes back in time in layer 2 to step u <= t, down,
    and back in layer 1 to the use of W1 at step s <= u: u paths for each u <= t."""
    T = 3
    d = derive(RNNSpec(T=T, layers=2))
    assert len(path_expansion(d, "W1")) == sum(u for t in range(1, T + 1) for u in range(1, t + 1))
    assert len(path_expansion(d, "V")) == T
    # a path of the loss at step t reaches the forward chain's steps up to t, the backward chain's from t on
    bi = derive(RNNSpec(T=T, bidirectional=True))
    for name, later in (("W_f", False), ("W_b", True)):
        terms = path_expansion(bi, name)
        assert len(terms) == T * (T + 1) // 2
        for term in terms:
            t = path_source(term)
            steps = [s.t for s in A.symbols_in(term) if isinstance(s, Step) and s.family.direction]
            assert steps and all((s >= t) if later else (s <= t) for s in steps), (name, t, steps)


def test_a_sum_over_paths_too_large_is_refused_and_said_to_be(monkeypatch):
    b = _built(RNNSpec(T=3, layers=2, bidirectional=True))
    with pytest.raises(TooManyPaths, match="more than 100 terms in all"):
        verify.forms_agree(b, max_terms=100)
    assert verify.forms_agree(b, max_terms=231)  # 231 terms: the limit is inclusive
    monkeypatch.setattr(verify, "FORMS_MAX_TERMS", 230)
    report = verify.check_build(b, dtypes=("float64",))
    assert report.ok and report.forms is None
    assert "paths vs recursion not compared: the sums over paths have more than 230 terms in all" in report.notes


# --- the module's paths: forward()'s states, the input gradient ---------------------------------


def _load(text, tmp_path, name="m"):
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return verify.load_module(path)


def test_forward_h_is_the_top_layers_states_forward_first(tmp_path):
    """A module whose forward() put the backward states first is refused by the forward() paths."""
    b = _built(RNNSpec(T=3, layers=2, bidirectional=True))
    old = "np.concatenate((h2_f[1:], h2_b[:-1]), axis=-1)"
    assert b.module.count(old) == 1
    swapped = _load(b.module.replace(old, "np.concatenate((h2_b[:-1], h2_f[1:]), axis=-1)"), tmp_path)
    report = verify.check_module(swapped, dtypes=("float64",))
    assert not report.ok
    assert {n for n, p in report.paths.items() if p.failures} == {"float64 forward()", "float64 single sequences"}
    assert max(report.fd.values()) <= verify.FD_TOLERANCE  # loss_and_grads is right


def test_a_wrong_input_gradient_is_caught(tmp_path):
    b = _built(RNNSpec(T=3, bidirectional=True, input_grad=True))
    old = '"x": dxs'
    assert b.module.count(old) == 1
    wrong = _load(b.module.replace(old, '"x": dxs * 1.01'), tmp_path)
    report = verify.check_module(wrong, exact=True, dtypes=("float64",))
    assert report.fd["x"] > 1e-3 and report.exact.grads["x"] > 1e-3
    assert max(e for n, e in report.fd.items() if n != "x") <= verify.FD_TOLERANCE
    assert any("wrong gradient of x" in f for f in report.failures)
    right = verify.check_module(_module(b.spec), dtypes=DTYPES)
    assert right.ok and "x" in right.paths["float32 single sequences"].errors


# --- an independent reference, PyTorch's convention -----------------------------------------------


def _names(layers, bidirectional, layer, direction):
    """The issue's names: U1, W1, b1, h0_1 (a layer of several), U_f, h0_f (a direction), U, W, b, h0."""
    suffix = (str(layer) if layers > 1 else "") + (f"_{direction}" if direction else "")
    h0 = "h0" + (f"_{layer}" if layers > 1 else "") + (f"_{direction}" if direction else "")
    return suffix, h0


def _to_module(spec, chains, V, c):
    """The reference's weights (column math, per layer and direction) as the module's params."""
    t = (lambda a: a.T) if spec.notation in ("row", "stacked-row") else (lambda a: a)
    params = {}
    for layer, pair in enumerate(chains, 1):
        for direction, p in zip(("f", "b") if spec.bidirectional else ("",), pair):
            suffix, h0 = _names(spec.layers, spec.bidirectional, layer, direction)
            if spec.notation.startswith("stacked"):  # seed 002: W [h_{t-1}; x_t], the recurrent block first
                params["W" + suffix] = t(np.hstack([p["W"], p["U"]]))
            else:
                params["U" + suffix], params["W" + suffix] = t(p["U"]), t(p["W"])
            params["b" + suffix], params[h0] = p["b"], p["h0"]
    params["V"], params["c"] = t(V), c
    return params


REFERENCE_SPECS = [
    (RNNSpec(T=4, layers=2, input_grad=True), (4, 3)),
    (RNNSpec(T=4, bidirectional=True), (3,)),
    (RNNSpec(T=3, layers=2, bidirectional=True, notation="row"), (3, 2)),
    (RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked", input_grad=True), (2, 4)),
    (RNNSpec(T=3, layers=3, notation="stacked"), (2, 3, 4)),
    (RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked-row", input_grad=True), (3, 2)),
]


@pytest.mark.parametrize("spec, n_h", REFERENCE_SPECS, ids=[s.name for s, _ in REFERENCE_SPECS])
def test_modules_match_a_hand_written_pytorch_convention_reference(spec, n_h):
    rng = np.random.default_rng(5)
    n_x, n_y, B = 3, 3, 2
    directions = 2 if spec.bidirectional else 1
    chains, n_in = [], n_x
    for n in n_h:
        chains.append(
            [
                {
                    "U": 0.5 * rng.standard_normal((n, n_in)),
                    "W": 0.5 * rng.standard_normal((n, n)),
                    "b": 0.5 * rng.standard_normal(n),
                    "h0": 0.5 * rng.standard_normal(n),
                }
                for _ in range(directions)
            ]
        )
        n_in = directions * n
    V, c = 0.5 * rng.standard_normal((n_y, n_in)), 0.5 * rng.standard_normal(n_y)
    xs = rng.standard_normal((spec.T, B, n_x))
    ys = rng.integers(0, n_y, (spec.T, B))

    E, grads, dV, dc, dxs = torchlike.loss_and_grads(chains, V, c, xs, ys)
    m = _module(spec)
    params = _to_module(spec, chains, V, c)
    assert list(params) == list(m.PARAM_SHAPES)
    sizes = list(n_h) if spec.layers > 1 else n_h[0]
    assert all(params[k].shape == v.shape for k, v in m.init_params(n_x, sizes, n_y).items())
    expected = _to_module(spec, grads, dV, dc)
    loss, got = m.loss_and_grads(params, xs, ys)
    assert verify.relative_error(loss, E) <= 1e-13
    for name in expected:
        assert verify.relative_error(got[name], expected[name]) <= 1e-12, name
    if spec.input_grad:
        assert verify.relative_error(got["x"], dxs) <= 1e-12
    # forward()'s h and rnngen's own plain loop: the top layer's states, forward first
    _, states, o = torchlike.forward(chains, V, c, xs)
    h = np.stack([np.concatenate([s[t] for s in states[-1]], axis=-1) for t in range(spec.T)])
    out = m.forward(params, xs)
    mine = plain_forward(m.SPEC, params, xs)
    for k, want in (("h", h), ("o", o)):
        assert verify.relative_error(out[k], want) <= 1e-13 and verify.relative_error(mine[k], want) <= 1e-13, k
    # and the exact oracle's scalar loss, evaluated at these numbers
    numbers = {k: sp.Matrix(v if v.ndim == 2 else v[:, None]) for k, v in params.items()}
    program, definitions = verify._scalar_loss(m, numbers, xs.astype(object), ys)
    with mpmath.workdps(30):
        assert verify.relative_error(float(verify._value_exactly(program, definitions, {}, {})), E) <= 1e-13


# --- cost against the number of layers ------------------------------------------------------------

#: Layer counts of the growth fits: from 2 on, every layer is the same (layer 1 reads x, not n_h).
LAYERS = (2, 3, 4, 5)


def _linear_fit_residual(xs, sizes):
    coeffs = np.polyfit(xs, sizes, 1)
    return coeffs[0], np.max(np.abs(np.polyval(coeffs, xs) - sizes)) / max(sizes)


def _python_calls(f, where: str | None = None) -> int:
    """Function calls made by ``f()`` (only those of functions in the file ``where``, if given):
    deterministic, unlike wall time."""
    import cProfile
    import gc
    import pstats

    from sympy.core.cache import clear_cache

    clear_cache()
    gc.collect()  # no collection inside: its finalizers' calls would count, at moments that vary by run
    gc.disable()
    profile = cProfile.Profile()
    try:
        profile.enable()
        f()
        profile.disable()
    finally:
        gc.enable()
    stats = pstats.Stats(profile)
    if where is None:
        return stats.total_calls
    return sum(calls for (file, _, _), (_, calls, *_) in stats.stats.items() if file.endswith(where))


def _spec(layers):
    return RNNSpec(T=4, layers=layers, bidirectional=True)


def _counted(m, seen):
    """The module with its calls of loss, loss_and_grads and forward counted."""

    def wrap(f):
        def call(*args):
            seen.append(f.__name__)
            return f(*args)

        return call

    names = ("T", "SPEC", "PARAM_SHAPES", "init_params")
    fields = {n: getattr(m, n) for n in names} | {f: wrap(getattr(m, f)) for f in ("loss", "loss_and_grads", "forward")}
    return type("Counted", (), fields)


@pytest.mark.parametrize(
    "measure",
    [
        lambda L: len(_built(_spec(L)).module.splitlines()),
        lambda L: len(_built(_spec(L)).latex),
        lambda L: len(_built(_spec(L)).derivation.graph.nodes) + len(_built(_spec(L)).derivation.adjoints),
        lambda L: sum(len(str(s.expr)) for s in _built(_spec(L)).program.stmts),
        lambda L: _python_calls(lambda: build(_spec(L))),
    ],
    ids=["module lines", "document characters", "graph nodes", "program size", "pipeline calls"],
)
def test_generating_grows_linearly_in_the_layers(measure):
    _python_calls(lambda: build(_spec(1)))  # warm up: imports and template compilation are not per-layer work
    sizes = [measure(L) for L in LAYERS]
    slope, residual = _linear_fit_residual(LAYERS, sizes)
    assert residual < 0.03 and slope > 0, sizes  # a term in L^2 would leave a residual over 2..5
    assert (sizes[3] - sizes[2]) / (sizes[1] - sizes[0]) < 1.3, sizes  # a quadratic cost gives 2.3


def test_checking_grows_linearly_in_the_layers():
    """The module calls the check makes (one pair per parameter entry for finite differences, a fixed
    number for Taylor and the paths) and the exact oracle's work (its own calls: one reverse sweep
    over its program, not one pass per parameter entry) grow linearly. SymPy's call count varies
    from run to run with the hash seed, so the oracle's calls are those of verify.py.

    (Each module call itself costs O(L), so the finite differences' total work is O(L^2), as it is
    O(T) calls of O(T) work in T; and the sum over paths has about T times more terms per layer,
    which FORMS_MAX_TERMS bounds.)
    """
    module_calls = []
    for L in LAYERS:
        seen = []
        verify.check_module(_counted(_module(_spec(L)), seen), dtypes=("float64",))
        module_calls.append(len(seen))
    verify.exact_oracle(_module(_spec(1)))  # warm up: the registries' cached functions are not per-layer work
    oracle_calls = [_python_calls(lambda L=L: verify.exact_oracle(_module(_spec(L))), "verify.py") for L in LAYERS]
    for sizes in (module_calls, oracle_calls):
        slope, residual = _linear_fit_residual(LAYERS, sizes)
        assert residual < 0.03 and slope > 0, sizes
        assert (sizes[3] - sizes[2]) / (sizes[1] - sizes[0]) < 1.3, sizes


# --- found here, left to the module's owners ------------------------------------------------------


def test_init_params_of_one_layer_takes_a_list_of_one_size_or_refuses_it():
    m = _module(RNNSpec(T=2))
    try:
        params = m.init_params(2, [3], 2)
    except ValueError:
        return
    assert params["W"].shape == (3, 3)


def test_init_params_refuses_a_layer_of_size_zero():
    m = _module(RNNSpec(T=2, layers=2))
    with pytest.raises(ValueError, match="n_h"):
        m.init_params(2, [3, 0], 2)


def test_a_network_too_long_for_one_line_passes_its_parameters_as_one_list_and_is_right():
    # every parameter in one list, unpacked chain by chain; the output layer's group is V alone (no c):
    # one name takes the item, not a slice of one (which ran as a list: 'list' has no attribute 'shape')
    spec = RNNSpec(T=3, layers=3, bidirectional=True, notation="stacked", output_bias=False, mapping="many-to-one")
    text = _built(spec).module
    assert "*p, x, single = _prepare(params, xs, state)" in text and "    V = p[18]\n" in text
    report = verify.check_build(_built(spec))
    assert report.ok, report.failures


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        (RNNSpec(T=3), "W"),
        (RNNSpec(T=3, cell="lstm"), "W_i"),  # the first gate's
        (RNNSpec(T=3, cell="gru"), "W_r"),
        (RNNSpec(T=3, notation="stacked"), "W"),  # seed 002's stacked matrix, W its block on h_{t-1}
        (RNNSpec(T=3, layers=2, bidirectional=True), "W1_f"),  # the first chain's
    ],
    ids=lambda v: v.name if isinstance(v, RNNSpec) else v,
)
def test_the_first_recurrent_weight_has_one_rule_that_the_document_parts_read(spec, name):
    """The weight a document takes as its example (shapes, immediate and total derivative, truncation, the
    figure, the worked gradient) is ``Network.recurrent_weight``, whatever the cell or notation."""
    from rnngen import worked

    derivation = _built(spec).derivation
    net = derivation.graph.network
    weight = net.recurrent_weight
    assert weight.name == name and weight is net.chains[0].weights("recurrent")[0]
    assert weight.role == ("stacked" if spec.stacked else "recurrent")
    assert worked.work(derivation).name == name  # the worked gradient is its entry's
    per_chain = {"elman": 1, "lstm": 4, "gru": 3}[spec.cell]  # a gated cell's: one per gate
    assert all(len(c.weights("recurrent")) == per_chain for c in net.chains)
