"""The benchmark's own correctness: baselines that agree, an agreement check that bites, fair timing.

Nothing here measures speed (the machines are shared and noisy); the figures
come from ``benchmarks/frameworks.py`` and ``rnngen bench``.
"""

import dataclasses
import threading

import numpy as np
import pytest

from rnngen.api import BPTT
from rnngen.bench import frameworks, layout, loops
from rnngen.bench.harness import (
    TOLERANCE,
    BenchError,
    Contender,
    check_agreement,
    column_grads,
    gemm_limit,
    generated_contender,
    loop_contender,
    make_problem,
    module_params,
    time_interleaved,
)
from rnngen.bench.run import bench, table
from rnngen.pipeline import build
from rnngen.spec import RNNSpec

NETWORKS = [
    RNNSpec(T=4),
    RNNSpec(T=3, hidden="sigmoid", output="softmax", loss="squared_error"),
    RNNSpec(T=3, hidden="relu", output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one", notation="row"),
    RNNSpec(T=5, hidden="leaky_relu", slope=0.2, output="tanh", loss="squared_error", hidden_bias=False),
    RNNSpec(
        T=3, hidden="softplus", output="identity", loss="squared_error", output_bias=False, names=("Wx", "Wh", "Wy")
    ),
    RNNSpec(T=2, hidden="identity", output="sigmoid", loss="cross_entropy", mapping="many-to-one"),
]


def _module(spec):
    return BPTT(build(spec)).module()


@pytest.mark.parametrize("spec", NETWORKS, ids=lambda s: s.name)
def test_hand_written_loops_agree_with_the_generated_module(spec):
    """Two independent computations (derived and generated vs written by hand) of the same gradients."""
    problem = make_problem(spec, 3, 4, 5, 3)
    contenders = [generated_contender(_module(spec), problem)]
    contenders += [
        loop_contender(n, f, problem) for n, f in (("tuned", loops.tuned_loop), ("tutorial", loops.tutorial_loop))
    ]
    report = check_agreement(contenders, np.float64)
    assert set(report) == {"tuned", "tutorial"}
    assert max(report.values()) <= TOLERANCE[np.float64]


@pytest.mark.parametrize("spec", [RNNSpec(T=4), RNNSpec(T=4, hidden="relu", mapping="many-to-one")], ids=str)
def test_the_tuned_loop_keeps_its_buffers_and_hands_out_none_of_them(spec):
    """The tuned baseline keeps its arrays between calls, as the generated module does (a fair
    opponent at small sizes), so a second call must give the same numbers and no result may be a
    view of a kept array, which the next call would overwrite."""
    problem = make_problem(spec, 2, 3, 5, 3)
    targets = problem.targets if spec.mapping == "many-to-many" else problem.targets[None]
    E, grads = loops.tuned_loop(problem.params, problem.xs, targets, spec)
    kept = next(iter(loops._KEPT.values()))
    again = loops.tuned_loop(problem.params, problem.xs, targets, spec)
    assert next(iter(loops._KEPT.values())) is kept
    assert again[0] == E
    for k, g in grads.items():
        np.testing.assert_array_equal(again[1][k], g, err_msg=k)
        arrays = [a for a in kept.values() if isinstance(a, np.ndarray)]
        arrays += [v for a in kept.values() if isinstance(a, list) for v in a]
        assert not any(np.shares_memory(g, a) for a in arrays), k


def test_float32_problems_agree_to_float32_precision():
    spec = RNNSpec(T=6)
    problem = make_problem(spec, 4, 5, 6, 4, dtype=np.float32)
    assert problem.xs.dtype == np.float32 and all(p.dtype == np.float32 for p in problem.params.values())
    contenders = [generated_contender(_module(spec), problem), loop_contender("tuned", loops.tuned_loop, problem)]
    assert check_agreement(contenders, np.float32)["tuned"] <= TOLERANCE[np.float32]


def test_a_wrong_gradient_stops_the_benchmark_before_timing():
    """A baseline that forgets tanh' in one place must be refused, with the gradient named."""
    spec = RNNSpec(T=4)
    problem = make_problem(spec, 2, 3, 4, 3)

    def forgetful(params, xs, targets, spec):
        E, grads = loops.tuned_loop(params, xs, targets, spec)
        grads["W"] = grads["W"] * (1 + 1e-6)  # a relative slip far below what a plot would show
        return E, grads

    contenders = [generated_contender(_module(spec), problem), loop_contender("forgetful", forgetful, problem)]
    with pytest.raises(BenchError, match=r"forgetful disagrees with rnngen: dW differs by 1\.0e-06"):
        check_agreement(contenders, np.float64)


def test_samples_are_interleaved_and_rotated():
    calls = []
    contenders = [Contender(name, (lambda n=name: calls.append(n))) for name in "abc"]
    time_interleaved(contenders, samples=3, settle=0, min_sample=0)
    timed = calls[2 * len(contenders) :]  # after the two warm-up calls of each
    assert timed == list("abc" + "bca" + "cab")
    assert all(len(c.seconds) == 3 for c in contenders)


def _gemm_shapes(problem, monkeypatch) -> list:
    """The operand shapes of every product the GEMM-only figure runs, in order."""
    shapes = []
    real = np.matmul

    def counting(a, b, out=None):
        shapes.append((a.shape, b.shape))
        return real(a, b, out=out)

    limit = gemm_limit(problem)
    monkeypatch.setattr(np, "matmul", counting)
    limit.run()
    return shapes


def test_the_gemm_limit_does_the_products_of_bptt_and_nothing_else(monkeypatch):
    spec = RNNSpec(T=5)
    problem = make_problem(spec, 2, 3, 4, 3)
    shapes = _gemm_shapes(problem, monkeypatch)
    recurrent = [s for s in shapes if s == ((2, 4), (4, 4))]
    assert len(recurrent) == 2 * spec.T - 1  # T forward, T - 1 backward
    assert ((4,), (4, 4)) in shapes  # dE/dh0: the sum over the sequences times W
    assert len(shapes) == 2 * spec.T + 6  # and input, output, back through V, dU, dW, dV
    assert gemm_limit(problem).result is None  # it computes no gradients, so it is not part of the agreement


def test_a_framework_that_cannot_run_the_network_is_reported_not_failed(monkeypatch):
    monkeypatch.setattr(frameworks, "available", lambda: {"torch": False, "jax": True})
    spec = RNNSpec(T=3, hidden="sigmoid")
    assert "only tanh and relu" in frameworks.unsupported("torch", spec)
    assert frameworks.unsupported("jax", spec) == ""
    monkeypatch.setattr(frameworks, "available", lambda: {"torch": False, "jax": False})
    result = bench(_module(spec), spec, (2, 3, 4, 3), samples=1, settle=0)
    lines = "\n".join(table(result))
    assert lines.count("not installed (pip install 'rnngen-bptt[bench]')") == 2  # PyTorch and JAX
    assert [c.name for c in result.contenders] == ["rnngen", "hand loop, tuned", "hand loop, tutorial", "GEMM only"]
    assert result.ratio("tuned") == pytest.approx(result.seconds("tuned") / result.seconds("rnngen"))


# -- the generated module's scratch buffers ------------------------------------------------


@pytest.fixture(scope="module")
def module():
    return _module(RNNSpec(T=4))


def test_scratch_buffers_never_leak_into_what_forward_returns(module):
    """``forward`` hands its arrays to the caller; a later call must not overwrite them."""
    problem = make_problem(RNNSpec(T=4), 3, 4, 5, 3)
    out = module.forward(problem.params, problem.xs)
    saved = {k: v.copy() for k, v in out.items()}
    other = make_problem(RNNSpec(T=4), 3, 4, 5, 3, seed=1)
    for _ in range(2):
        module.loss_and_grads(other.params, other.xs, other.targets)
        module.loss(other.params, other.xs, other.targets)
    for k in saved:
        np.testing.assert_array_equal(out[k], saved[k])


def test_reused_buffers_give_the_same_gradients_as_fresh_ones(module):
    problem = make_problem(RNNSpec(T=4), 3, 4, 5, 3)
    module.free_buffers()
    E1, g1 = module.loss_and_grads(problem.params, problem.xs, problem.targets)
    assert module._SPARE  # kept for the next call
    small = make_problem(RNNSpec(T=4), 1, 4, 5, 3, seed=2)  # other sizes in between
    module.loss_and_grads(small.params, small.xs, small.targets)
    E2, g2 = module.loss_and_grads(problem.params, problem.xs, problem.targets)
    assert E1 == E2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    module.free_buffers()
    assert not module._SPARE


def test_forward_between_training_steps_leaves_the_kept_buffers_alone(module):
    """``forward`` returns its arrays, so it makes new ones; it must not take loss_and_grads' set."""
    problem = make_problem(RNNSpec(T=4), 3, 4, 5, 3)
    module.loss_and_grads(problem.params, problem.xs, problem.targets)
    kept = module._SPARE["buffers"]
    out = module.forward(problem.params, problem.xs)
    assert module._SPARE["buffers"] is kept
    assert not any(np.shares_memory(v, a) for v in out.values() for a in kept.values() if isinstance(a, np.ndarray))


def test_threads_do_not_share_scratch_buffers(module):
    problems = [make_problem(RNNSpec(T=4), 16, 8, 32, 8, seed=s) for s in range(4)]
    expected = [module.loss_and_grads(p.params, p.xs, p.targets) for p in problems]
    failures = []

    def work(i):
        p = problems[i % 4]
        for _ in range(30):
            E, g = module.loss_and_grads(p.params, p.xs, p.targets)
            if E != expected[i % 4][0] or not np.array_equal(g["W"], expected[i % 4][1]["W"]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize(
    "output, loss", [("softmax", "squared_error"), ("sigmoid", "cross_entropy"), ("tanh", "squared_error")]
)
def test_frameworks_agree_on_outputs_without_a_closed_form(framework, output, loss):
    """The optional frameworks (installed with '.[bench]') through the generic output and loss formulas."""
    pytest.importorskip(framework)
    spec = RNNSpec(T=3, output=output, loss=loss)
    problem = make_problem(spec, 2, 3, 4, 3)
    build_contender = frameworks.torch_contender if framework == "torch" else frameworks.jax_contender
    contenders = [generated_contender(_module(spec), problem), build_contender(problem)]
    assert max(check_agreement(contenders, np.float64).values()) <= TOLERANCE[np.float64]


# -- stacked and bidirectional networks ----------------------------------------------------


def _key(base, layer, direction, spec):
    """A parameter's name under the module convention, spelled out here rather than read from the bench."""
    number = str(layer) if spec.layers > 1 else ""
    if base == "h0" and number:
        number = "_" + number
    return f"{base}{number}{direction}"


def _reference_loss(params, xs, y_rows, spec):
    """The loss of a stacked, possibly bidirectional tanh network, from the seeds' equations.

    A backward chain is the forward recurrence run on the flipped sequence and flipped
    back; the output reads each layer's forward states followed by its backward ones.
    """
    directions = ("_f", "_b") if spec.bidirectional else ("",)
    below = xs
    for layer in range(1, spec.layers + 1):
        chains = []
        for d in directions:
            U, W, h0 = (params[_key(k, layer, d, spec)] for k in ("U", "W", "h0"))
            b = params[_key("b", layer, d, spec)] if spec.hidden_bias else 0.0
            h, hs = np.broadcast_to(h0, (xs.shape[1], h0.size)), []
            for x in below[::-1] if d == "_b" else below:
                h = np.tanh(U @ x.T + W @ h.T + np.reshape(b, (-1, 1))).T
                hs.append(h)
            chains.append(np.stack(hs[::-1] if d == "_b" else hs))
        below = np.concatenate(chains, axis=-1)
    top = below if spec.mapping == "many-to-many" else below[-1:]
    o = top @ params["V"].T + (params["c"] if spec.output_bias else 0.0)
    if spec.output == "softmax":
        logp = o - o.max(axis=-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
        return -np.sum(y_rows * logp)
    p = 1.0 / (1.0 + np.exp(-o))  # sigmoid with binary cross-entropy
    return -np.sum(y_rows * np.log(p) + (1.0 - y_rows) * np.log(1.0 - p))


def _finite_differences(problem, step=1e-6):
    """dE/dθ for every entry of every parameter (and of xs with the input gradient), by central differences."""
    params = {k: v.copy() for k, v in problem.params.items()}
    xs = problem.xs.copy()
    arrays = {**params, "x": xs} if problem.spec.input_grad else params
    grads = {}
    for name, p in arrays.items():
        g = np.empty_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + step
            up = _reference_loss(params, xs, problem.y_rows, problem.spec)
            p[i] = keep - step
            down = _reference_loss(params, xs, problem.y_rows, problem.spec)
            p[i] = keep
            g[i] = (up - down) / (2 * step)
        grads[name] = g
    return grads


LAYERED = [
    RNNSpec(T=4, layers=2),
    RNNSpec(T=4, bidirectional=True),
    RNNSpec(T=3, layers=2, bidirectional=True),
    RNNSpec(T=3, layers=3, output="sigmoid", loss="binary_cross_entropy", mapping="many-to-one", hidden_bias=False),
    RNNSpec(T=3, layers=2, bidirectional=True, mapping="many-to-one", input_grad=True),
]
# unequal layer sizes where the network has more than one layer
LAYER_SIZES = {1: 4, 2: (4, 3), 3: (3, 4, 2)}


@pytest.mark.parametrize("loop", [loops.tutorial_loop, loops.tuned_loop], ids=["tutorial", "tuned"])
@pytest.mark.parametrize("spec", LAYERED, ids=lambda s: s.name)
def test_the_loops_run_stacked_and_bidirectional_networks(spec, loop):
    """The NumPy baselines against central differences of a forward pass written in this file."""
    problem = make_problem(spec, 2, 3, LAYER_SIZES[spec.layers], 3)
    targets = problem.targets if spec.mapping == "many-to-many" else problem.targets[None]
    E, grads = loop(problem.params, problem.xs, targets, spec)
    assert E == pytest.approx(_reference_loss(problem.params, problem.xs, problem.y_rows, spec), rel=1e-13)
    expected = _finite_differences(problem)
    assert set(grads) == set(expected)
    for name, g in expected.items():
        # central differences at step 1e-6 carry about 1e-9 of absolute error here
        np.testing.assert_allclose(grads[name], g, rtol=0, atol=1e-8, err_msg=name)


def test_a_stacked_bidirectional_problem_follows_the_module_convention():
    spec = RNNSpec(T=3, layers=2, bidirectional=True)
    problem = make_problem(spec, 2, 5, (4, 6), 3, dtype=np.float32)
    expected = {}
    for layer, size, fan_in in ((1, 4, 5), (2, 6, 8)):  # layer 2 reads both directions of layer 1
        for d in ("_f", "_b"):
            expected |= {
                _key("U", layer, d, spec): (size, fan_in),
                _key("W", layer, d, spec): (size, size),
                _key("b", layer, d, spec): (size,),
                _key("h0", layer, d, spec): (size,),
            }
    expected |= {"V": (3, 12), "c": (3,)}
    assert {k: v.shape for k, v in problem.params.items()} == expected
    assert list(problem.params) == list(expected)  # the order of the modules' PARAM_SHAPES
    assert all(v.dtype == np.float32 for v in problem.params.values())
    assert problem.hidden == (4, 6)
    with pytest.raises(ValueError, match=r"n_h gives 3 layer sizes \(4, 6, 8\); the network has 2 layers"):
        make_problem(spec, 2, 5, (4, 6, 8), 3)


def test_a_one_layer_problem_draws_what_it_drew_before_layers():
    """Layers must not move the one-layer benchmark: the same draws, in the same order."""
    spec = RNNSpec(T=3)
    problem = make_problem(spec, 2, 4, 5, 3, seed=7)
    rng = np.random.default_rng(7)
    U = rng.standard_normal((5, 4)) / 2.0
    W = rng.standard_normal((5, 5)) / np.sqrt(5)
    V = rng.standard_normal((3, 5)) / np.sqrt(5)
    b, c, h0 = (0.1 * rng.standard_normal(n) for n in (5, 3, 5))
    for name, value in dict(U=U, W=W, V=V, b=b, c=c, h0=h0).items():
        assert np.array_equal(problem.params[name], value), name
    assert np.array_equal(problem.xs, rng.standard_normal((3, 2, 4)))


def test_layered_names_follow_the_spec_names_and_notation():
    spec = RNNSpec(T=3, layers=2, bidirectional=True, notation="row", names=("Wx", "Wh", "Wy"))
    problem = make_problem(spec, 2, 3, 4, 3)
    params = module_params(problem.params, spec)
    assert params["Wx2_b"].shape == (8, 4) and params["Wh1_f"].shape == (4, 4) and params["Wy"].shape == (8, 3)
    np.testing.assert_array_equal(params["Wx2_b"], problem.params["U2_b"].T)
    assert {"b1_f", "h0_2_b", "c"} <= set(params)
    back = column_grads(params, spec)
    assert set(back) == set(problem.params)
    assert all(np.array_equal(back[k], problem.params[k]) for k in back)


@pytest.mark.parametrize("layers", [1, 2])
def test_names_that_swap_the_defaults_go_there_and_back(layers):
    """Seed 000 calls the input weight W and the recurrent one U: the module's U is the bench's W."""
    spec = RNNSpec(T=3, layers=layers, notation="row", names=("W", "U", "V"))
    problem = make_problem(spec, 2, 3, 4, 3)
    params = module_params(problem.params, spec)
    suffix = "1" if layers > 1 else ""
    np.testing.assert_array_equal(params["W" + suffix], problem.params["U" + suffix].T)
    back = column_grads(params, spec)
    assert set(back) == set(problem.params)
    assert all(np.array_equal(back[k], problem.params[k]) for k in back)


def test_the_stacked_notation_takes_the_recurrent_and_input_weights_side_by_side():
    """Seed 002's W [h_{t-1}; x_t]: one matrix per chain, its first columns the recurrent weight."""
    spec = RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked")
    problem = make_problem(spec, 2, 3, (4, 5), 3)
    params = module_params(problem.params, spec)
    assert not any(k.startswith("U") for k in params)
    np.testing.assert_array_equal(params["W2_b"], np.hstack([problem.params["W2_b"], problem.params["U2_b"]]))
    assert params["W1_f"].shape == (4, 4 + 3) and params["W2_f"].shape == (5, 5 + 8)
    grads = {k: v + 1.0 for k, v in params.items()} | {"x": problem.xs}
    back = column_grads(grads, spec)
    assert set(back) == set(problem.params) | {"x"}
    assert all(np.array_equal(back[k], problem.params[k] + 1.0) for k in problem.params)


GENERATED = [
    (RNNSpec(T=4, layers=2), 5),
    (RNNSpec(T=4, bidirectional=True), 5),
    (RNNSpec(T=3, layers=2, bidirectional=True, notation="stacked"), (4, 6)),
    (
        RNNSpec(
            T=3,
            layers=3,
            notation="row",
            names=("Wx", "Wh", "Wy"),
            mapping="many-to-one",
            output="sigmoid",
            loss="binary_cross_entropy",
        ),
        (5, 3, 4),
    ),
    (RNNSpec(T=3, layers=2, bidirectional=True, hidden="relu", hidden_bias=False, output_bias=False), 4),
    (RNNSpec(T=3, bidirectional=True, input_grad=True), 4),
]


@pytest.mark.parametrize("spec, n_h", GENERATED, ids=lambda v: v.name if isinstance(v, RNNSpec) else str(v))
def test_generated_stacked_and_bidirectional_modules_agree_with_the_loops(spec, n_h):
    """What ``rnngen bench`` checks before timing: the module against the loops written by hand."""
    problem = make_problem(spec, 3, 4, n_h, 3)
    contenders = [generated_contender(_module(spec), problem)]
    for name, loop in (("tuned", loops.tuned_loop), ("tutorial", loops.tutorial_loop)):
        contenders.append(loop_contender(name, loop, problem))
    report = check_agreement(contenders, np.float64)
    assert set(report) == {"tuned", "tutorial"} and max(report.values()) <= TOLERANCE[np.float64]


def test_a_module_of_another_network_is_refused_before_timing():
    spec = RNNSpec(T=3, layers=2)
    problem = make_problem(spec, 2, 3, 4, 3)
    with pytest.raises(BenchError, match="the module's parameters .* are not the benchmark's"):
        generated_contender(_module(RNNSpec(T=3)), problem)


def test_the_gemm_limit_of_a_stacked_bidirectional_network(monkeypatch):
    spec = RNNSpec(T=3, layers=2, bidirectional=True)
    problem = make_problem(spec, 2, 3, (4, 5), 3)
    shapes = _gemm_shapes(problem, monkeypatch)
    T = spec.T
    assert shapes.count(((2, 4), (4, 4))) == 2 * (2 * T - 1)  # layer 1: T forward, T - 1 backward, per chain
    assert shapes.count(((2, 5), (5, 5))) == 2 * (2 * T - 1)  # layer 2
    assert shapes.count(((T * 2, 5), (5, 8))) == 2  # back into layer 1's states, per chain of layer 2
    assert shapes.count(((T * 2, 8), (8, 5))) == 2  # layer 2's input GEMM reads both directions of layer 1
    # per chain: input, 2T - 1 recurrent, dh0, dU, dW (4 chains); back into layer 1 (2); output, back, dV
    assert len(shapes) == 4 * (2 * T + 3) + 2 + 3


def test_the_gemm_limit_goes_back_into_the_inputs_when_the_module_returns_dx(monkeypatch):
    shapes = []
    real = np.matmul

    def counting(a, b, out=None):
        shapes.append((a.shape, b.shape))
        return real(a, b, out=out)

    for spec in (RNNSpec(T=3), RNNSpec(T=3, input_grad=True)):
        limit = gemm_limit(make_problem(spec, 2, 5, 4, 3))
        monkeypatch.setattr(np, "matmul", counting)
        limit.run()
        monkeypatch.undo()
    plain, with_dx = shapes[: len(shapes) // 2], shapes[len(shapes) // 2 :]
    assert len(with_dx) == len(plain) + 1 and with_dx.count(((6, 4), (4, 5))) == 1  # dZ (T B, n_h) U


def test_a_two_layer_bench_runs_both_loops():
    spec = RNNSpec(T=3, layers=2)
    result = bench(_module(spec), spec, (2, 3, 4, 3), samples=1, settle=0, skip=("torch", "jax"))
    assert [c.name for c in result.contenders] == ["rnngen", "hand loop, tuned", "hand loop, tutorial", "GEMM only"]
    assert max(result.agreement.values()) <= TOLERANCE[np.float64]


def test_only_a_custom_activation_or_a_gated_cell_has_no_loop():
    assert loops.unsupported(RNNSpec(T=3, layers=2, bidirectional=True)) == ""
    assert loops.unsupported(RNNSpec(T=3, hidden="x/(1+abs(x))")) == "a custom activation has no hand-written loop"
    assert loops.unsupported(RNNSpec(T=3, cell="lstm")) == "the hand-written loops are Elman cells, not lstm"


# -- gated cells: nn.LSTM and nn.GRU ---------------------------------------------------------


def test_the_gemm_limit_of_a_gated_cell_puts_its_gates_side_by_side(monkeypatch):
    """One GEMM each way for all of a gated cell's gates: the LSTM's four, the GRU's three."""
    for cell, gates in (("lstm", 4), ("gru", 3)):
        problem = make_problem(RNNSpec(T=3, cell=cell), 2, 3, 4, 3)
        shapes = _gemm_shapes(problem, monkeypatch)
        monkeypatch.undo()
        assert shapes.count(((2, 4), (4, 4 * gates))) == 3  # forward: h_{t-1} times every gate's W
        assert shapes.count(((2, 4 * gates), (4 * gates, 4))) == 2  # backward: every gate's delta back into h
        assert ((6, 3), (3, 4 * gates)) in shapes  # every step's input GEMM for every gate


def test_a_gated_problem_draws_every_gate_and_state():
    spec = RNNSpec(T=3, cell="lstm", layers=2)
    problem = make_problem(spec, 2, 3, 4, 3, carried=True)
    assert set(problem.params) == set(_module(spec).PARAM_SHAPES)  # the default names, column notation
    assert set(problem.state) == {"h0_1", "c0_1", "h0_2", "c0_2"}
    weights = [k for k in problem.params if k[0] in "UW"]
    assert len(weights) == 2 * 4 * 2  # per layer: U and W of each of the four gates
    assert all(problem.params[k].any() for k in problem.params)  # every one drawn, so every gradient shows


def test_what_pytorch_cannot_run_of_a_gated_cell_is_said():
    assert frameworks.unsupported("torch", RNNSpec(T=3, cell="lstm")) == ""
    assert frameworks.unsupported("torch", RNNSpec(T=3, cell="gru")) == ""
    assert "after the recurrent product" in frameworks.unsupported(
        "torch", RNNSpec(T=3, cell="gru", gru_reset="before")
    )
    assert "has tanh where" in frameworks.unsupported("torch", RNNSpec(T=3, cell="lstm", hidden="relu"))
    assert "Elman network, not lstm" in frameworks.unsupported("jax", RNNSpec(T=3, cell="lstm"))


@pytest.mark.parametrize(
    ("spec", "carried"),
    [
        (RNNSpec(T=4, cell="lstm"), False),
        (RNNSpec(T=4, cell="gru"), False),
        (RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True), False),
        (RNNSpec(T=3, cell="gru", layers=2, bidirectional=True, mapping="many-to-one"), False),
        (RNNSpec(T=4, cell="lstm", notation="row", hidden_bias=False), False),
        (RNNSpec(T=4, cell="lstm", layers=2), True),
        (RNNSpec(T=4, cell="gru"), True),
        (RNNSpec(T=4, cell="lstm", masked=True), False),
        (RNNSpec(T=4, cell="gru", masked=True, bidirectional=True, mapping="many-to-one"), False),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_pytorch_agrees_with_a_gated_module(spec, carried):
    """nn.LSTM and nn.GRU, their stacked gate weights set from ours (with '.[bench]')."""
    pytest.importorskip("torch")
    problem = make_problem(spec, 3, 4, 5, 3, carried=carried)
    contenders = [generated_contender(_module(spec), problem), frameworks.torch_contender(problem)]
    assert max(check_agreement(contenders, np.float64).values()) <= TOLERANCE[np.float64]


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize(
    "spec, sizes",
    [
        (RNNSpec(T=4, layers=2), 5),
        (RNNSpec(T=4, layers=2), (5, 3)),  # nn.RNN has one size: a chain of one-layer nn.RNNs
        (RNNSpec(T=4, bidirectional=True, hidden="relu"), 5),
        (RNNSpec(T=3, layers=2, bidirectional=True, mapping="many-to-one", output_bias=False), (5, 3)),
        (RNNSpec(T=3, mapping="many-to-one"), 5),  # class targets without a step axis
    ],
    ids=["2-layer", "2-layer-unequal", "bidirectional-relu", "2-layer-bidirectional-m2o", "1-layer-m2o"],
)
def test_frameworks_run_stacked_and_bidirectional_networks(framework, spec, sizes):
    """PyTorch's nn.RNN(num_layers, bidirectional) and JAX's scans against the NumPy baseline."""
    pytest.importorskip(framework)
    problem = make_problem(spec, 2, 3, sizes, 3)
    assert _key("W", spec.layers, "_b" if spec.bidirectional else "", spec) in problem.params  # the whole network
    build_contender = frameworks.torch_contender if framework == "torch" else frameworks.jax_contender
    contenders = [loop_contender("tutorial", loops.tutorial_loop, problem), build_contender(problem)]
    assert max(check_agreement(contenders, np.float64).values()) <= TOLERANCE[np.float64]


# -- a chunk of a long sequence: the state given per sequence ------------------------------


@pytest.mark.parametrize("spec", [RNNSpec(T=3), RNNSpec(T=3, layers=2, bidirectional=True)], ids=lambda s: s.name)
def test_a_carried_problem_gives_every_chain_its_state_and_times_the_plain_call_beside_it(spec):
    module = _module(spec)
    result = bench(module, spec, (2, 3, 4, 3), samples=1, settle=0, skip=("torch", "jax"), carried=True)
    names = [c.name for c in result.contenders]
    assert names == ["rnngen", "rnngen, plain call", "GEMM only"]
    assert result.skipped["tuned"] == "starts from the learned h0 only (no state per sequence)"
    problem = make_problem(spec, 2, 3, 4, 3, carried=True)
    assert set(problem.state) == {cell.h0 for row in layout.cells(spec) for cell in row}
    assert all(s.shape == (2, 4) for s in problem.state.values())
    # the contender's result is the module's own call with that state, each chain's gradient under its column key
    E, grads = generated_contender(module, problem).result(generated_contender(module, problem).run())
    names = module.INITIAL_STATES
    own = {name: problem.state[cell.h0] for name, cell in zip(names, [c for row in layout.cells(spec) for c in row])}
    E_own, g_own = module.loss_and_grads(
        module_params(problem.params, spec), problem.xs, problem.targets, state=own if len(own) > 1 else own[names[0]]
    )
    g_state = g_own["state"] if isinstance(g_own["state"], dict) else {names[0]: g_own["state"]}
    assert E == E_own
    for name, cell in zip(names, [c for row in layout.cells(spec) for c in row]):
        assert np.array_equal(grads[f"state {cell.h0}"], g_state[name])
        assert not grads[cell.h0].any()  # the learned initial state took no part
    E_plain, _ = module.loss_and_grads(module_params(problem.params, spec), problem.xs, problem.targets)
    assert E != E_plain  # the state given is not the learned one


@pytest.mark.parametrize("spec", [RNNSpec(T=3), RNNSpec(T=3, layers=2, bidirectional=True)], ids=lambda s: s.name)
def test_pytorch_agrees_from_a_state_per_sequence(spec):
    """nn.RNN's h_0 of shape (layers * directions, B, n_h) against the module's ``state`` (with '.[bench]')."""
    pytest.importorskip("torch")
    problem = make_problem(spec, 2, 3, 4, 3, carried=True)
    contenders = [generated_contender(_module(spec), problem), frameworks.torch_contender(problem)]
    assert max(check_agreement(contenders, np.float64).values()) <= TOLERANCE[np.float64]


# -- a masked network: padded batches ------------------------------------------------------


def test_a_masked_problem_draws_lengths_and_times_the_unmasked_module_beside_it():
    spec = RNNSpec(T=4, masked=True)
    plain = _module(dataclasses.replace(spec, masked=False))
    result = bench(_module(spec), spec, (5, 3, 4, 3), samples=1, settle=0, skip=("torch", "jax"), plain=plain)
    assert [c.name for c in result.contenders] == ["rnngen", "rnngen, plain call", "GEMM only"]
    assert result.skipped["tuned"] == "reads every step (no padding)"
    problem = make_problem(spec, 5, 3, 4, 3)
    assert problem.lengths[0] == 4 and 2 <= problem.lengths.min() and problem.lengths.max() <= 4
    assert make_problem(RNNSpec(T=4), 5, 3, 4, 3).lengths is None
    # the module's call takes the lengths: padded steps of the inputs change nothing
    module = _module(spec)
    E, grads = generated_contender(module, problem).result(generated_contender(module, problem).run())
    problem.xs[problem.lengths[1] :, 1] = 7.0
    E2, grads2 = generated_contender(module, problem).result(generated_contender(module, problem).run())
    assert E == E2 and all(np.array_equal(grads[k], grads2[k]) for k in grads)
    assert E != plain.loss(module_params(problem.params, spec), problem.xs, problem.targets)


@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=4, masked=True),
        RNNSpec(T=4, masked=True, mapping="many-to-one"),
        RNNSpec(T=4, masked=True, layers=2, bidirectional=True),
        RNNSpec(T=4, masked=True, bidirectional=True, mapping="many-to-one"),
        RNNSpec(T=4, masked=True, layers=2, bidirectional=True, mapping="many-to-one"),
    ],
    ids=lambda s: s.name,
)
def test_pytorch_on_packed_sequences_agrees_with_a_masked_module(spec):
    """nn.RNN on pack_padded_sequence, the loss on real steps only (with '.[bench]')."""
    pytest.importorskip("torch")
    problem = make_problem(spec, 5, 3, 4, 3)
    assert problem.lengths.min() < spec.T  # some padding, or the check shows nothing
    contenders = [generated_contender(_module(spec), problem), frameworks.torch_contender(problem)]
    assert max(check_agreement(contenders, np.float64).values()) <= TOLERANCE[np.float64]
