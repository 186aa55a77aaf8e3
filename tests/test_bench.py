"""The benchmark's own correctness: baselines that agree, an agreement check that bites, fair timing.

Nothing here measures speed (the machines are shared and noisy); the figures
come from ``benchmarks/frameworks.py`` and ``rnngen bench``.
"""

import threading

import numpy as np
import pytest

from rnngen.api import BPTT
from rnngen.bench import frameworks, loops
from rnngen.bench.harness import (
    TOLERANCE,
    BenchError,
    Contender,
    check_agreement,
    gemm_limit,
    generated_contender,
    loop_contender,
    make_problem,
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


def test_the_gemm_limit_does_the_products_of_bptt_and_nothing_else(monkeypatch):
    spec = RNNSpec(T=5)
    problem = make_problem(spec, 2, 3, 4, 3)
    shapes = []
    real = np.matmul

    def counting(a, b, out=None):
        shapes.append((a.shape, b.shape))
        return real(a, b, out=out)

    limit = gemm_limit(problem)
    monkeypatch.setattr(np, "matmul", counting)
    limit.run()
    recurrent = [s for s in shapes if s == ((2, 4), (4, 4))]
    assert len(recurrent) == 2 * spec.T - 1  # T forward, T - 1 backward
    assert ((4,), (4, 4)) in shapes  # dE/dh0: the sum over the sequences times W
    assert len(shapes) == 2 * spec.T + 6  # and input, output, back through V, dU, dW, dV
    assert limit.result is None  # it computes no gradients, so it is not part of the agreement


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
