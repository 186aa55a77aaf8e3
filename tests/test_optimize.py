"""Each rewrite pass keeps the program's value, alone and in the pipeline, and does its one job."""

import numpy as np
import pytest
import sympy as sp

from rnngen import algebra as A
from rnngen import optimize as O
from rnngen.evaluate import run
from rnngen.unroll import SIZES, step

OUTPUTS = ["E", "dU", "dW", "dV", "db", "dc", "dh0"]


def _values(program, B=2, seed=0):
    graph = program.derivation.graph
    dims = {SIZES["n_x"]: 3, SIZES["n_h"]: 4, SIZES["n_y"]: 3, A.B: B}
    rng = np.random.default_rng(seed)
    env = {
        name: 0.5 * rng.standard_normal((int(p.shape[0].subs(dims)), int(sp.sympify(p.shape[1]).subs(dims))))
        for name, p in graph.params.items()
    }
    for x in graph.inputs["x"]:
        env[x.name] = rng.standard_normal((3, B))
    for y in graph.inputs["y"]:
        env[y.name] = np.eye(3)[:, rng.integers(0, 3, B)]
    out = run([(s.target, s.expr) for s in program.stmts], env, dims)
    return {k: out[k] for k in OUTPUTS}


def _assert_same(a, b):
    for k in OUTPUTS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("T", [1, 2, 4])
@pytest.mark.parametrize("p", O.PASSES, ids=lambda p: p.__name__)
def test_each_pass_alone_keeps_the_value(built, T, p):
    plain = built(T).plain
    _assert_same(_values(O.schedule(p(plain))), _values(plain))


@pytest.mark.parametrize("T", [1, 3, 6])
def test_each_pass_in_the_pipeline_keeps_the_value(built, T):
    program = built(T).plain
    reference = _values(program)
    for p in O.PASSES:
        program = p(program)
        _assert_same(_values(O.schedule(program)), reference)


def _targets(program):
    return [s.target.name for s in program.stmts]


def test_fusing_turns_the_softmax_jacobian_into_yhat_minus_y(built):
    fused = O.eliminate_dead_code(O.fuse_output_gradient(built(3).plain))
    do_3 = next(s for s in fused.stmts if s.target.name == "do_3")
    assert sp.srepr(do_3.expr) == sp.srepr(
        A.sub(step("yhat", 3, do_3.target.shape[0]), step("y", 3, do_3.target.shape[0]))
    )
    assert not any(name.startswith("dyhat") for name in _targets(fused))


def test_log_softmax_replaces_log_of_softmax(built):
    stable = O.stable_logs(built(2).plain)
    loss = next(s for s in stable.stmts if s.target.name == "E")
    assert any(isinstance(n, A.LogSoftmax) for n in sp.preorder_traversal(loss.expr))
    assert not any(isinstance(n, A.Elementwise) and n.fn == "log" for n in sp.preorder_traversal(loss.expr))


def test_recurrence_is_found(built):
    assert O.recurrent_families(built(4).plain) == {"z", "h", "dh", "dz"}


def test_optimized_program_runs_only_the_recurrence_per_step(built):
    T = 7
    program = built(T).program
    per_step = [s.step[0] for s in program.stmts if s.step]
    # h_0, then one statement per step forward (h) and backward (dz), and dE/dh_0 (a state given per sequence)
    assert sorted(per_step) == sorted(["h"] * (T + 1) + ["dz"] * T + ["dh"])
    stacked = {s.target.name for s in program.stmts if "[" in s.target.name}
    parts = ("pre_z", "o", "yhat", "do", "pre_dh", "fprime")
    assert stacked == {f"{family}[1:{T}]" for family in parts}
    grads = {s.target.name: s.expr for s in program.stmts if s.target.name in OUTPUTS[1:]}
    for name in ("dU", "dW", "dV", "db", "dc"):
        # one product of time-stacked matrices, no sum over steps
        assert not isinstance(grads[name], sp.MatAdd), name


def test_local_jacobians_are_hoisted_out_of_the_backward_sweep(built):
    T = 4
    program = built(T).program
    sweep = [s for s in program.stmts if s.step and s.step[0] == "dz"]
    for s in sweep:
        # the step reads f'(z_t) as a stored value: no tanh' is computed inside the sweep
        families = {f for f, _ in s.reads}
        assert "fprime" in families and "h" not in families, s
    fprime = next(s for s in program.stmts if s.target.name == f"fprime[1:{T}]")
    assert {f for f, _ in fprime.reads} == {"h"}


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "relu", "leaky_relu", "softplus", "x/(1+abs(x))"])
def test_the_hoisted_local_jacobian_is_the_whole_derivative(hidden):
    # sigmoid' = h ∘ (1 - h) is a product: SymPy flattens it into the step's product, and all of
    # it, not only (1 - h), must become f' (one product per step, and the document's F′ is f').
    from rnngen.activations import elementwise
    from rnngen.evaluate import evaluate
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec
    from rnngen.unroll import step_name

    T, n_h, B = 2, 4, 3
    spec = RNNSpec(T=T, hidden=hidden)
    program = build(spec).program
    sweep = [s for s in program.stmts if s.step and s.step[0] == "dz"]
    for s in sweep:  # the sweep reads f' whole: nothing computed from h or z inside it
        assert {f for f, _ in s.reads} <= {"fprime", "pre_dh", "dz", "W"}, s
    fprime = next(s for s in program.stmts if s.target.name == f"fprime[1:{T}]")
    rule = elementwise(spec.hidden_key)
    x = sp.Symbol("x", real=True)
    derivative = sp.lambdify(x, sp.diff(rule.scalar(x), x), modules="numpy")
    z = np.random.default_rng(0).uniform(-2, 2, (n_h, T * B))
    z[np.abs(z) < 0.1] = 0.5  # away from the kink of relu and leaky_relu
    env = {}
    for t in range(1, T + 1):
        env[step_name("z", t)] = z[:, (t - 1) * B : t * B]
        env[step_name("h", t)] = rule.ufunc(env[step_name("z", t)])
    value = evaluate(fprime.expr, env, {SIZES["n_h"]: n_h, A.B: B})
    np.testing.assert_allclose(value, derivative(z) + 0 * z, rtol=1e-12, atol=1e-15)


def test_skipping_passes_still_gives_a_correct_module(tmp_path):
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec
    from rnngen.verify import check_module, load_module

    skip = {p.__name__ for p in O.PASSES} - {"schedule"}
    result = build(RNNSpec(T=4), skip=skip)
    # the plain derivation: the dense softmax Jacobian, log of softmax, one GEMM per step
    assert "dyhat[3] = -(y[3] / yhat_[3])" in result.module  # yhat read through its list of step views
    assert "_log_softmax" not in result.module.split("def _softmax")[0]
    path = tmp_path / "plain.py"
    path.write_text(result.module)
    report = check_module(load_module(path))
    assert report.ok, report


def test_each_chain_and_each_backward_sweep_is_a_recurrence_of_its_own():
    from rnngen.families import Recurrence
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    found = set(build(RNNSpec(T=4, layers=2, bidirectional=True)).plain.recurrences)
    forward = {
        Recurrence(frozenset({f"z{layer}_{d}", f"h{layer}_{d}"}), 1 if d == "f" else -1)
        for layer in (1, 2)
        for d in "fb"
    }
    backward = {
        Recurrence(frozenset({f"dz{layer}_{d}", f"dh{layer}_{d}"}), -1 if d == "f" else 1)
        for layer in (1, 2)
        for d in "fb"
    }
    assert found == forward | backward


def _gated_sweep(cell, family, **fields):
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    result = build(RNNSpec(T=3, cell=cell, **fields))
    forward = {s.target.family.key for s in result.program.stmts if s.section == "forward" and s.step}
    steps = [s for s in result.program.stmts if s.step and s.step[0] == family]
    return result, forward, steps


@pytest.mark.parametrize("gru_reset", ["after", "before"])
def test_the_grus_update_gate_delta_is_one_product_with_its_hoisted_local_jacobian(gru_reset):
    """``δz_z = (δh_t ∘ h_{t-1} - δh_t ∘ n_t) ∘ σ′_z``: δh_t factored out of the sum, the rest, which reads
    forward values only, hoisted with σ′_z into ``jac_z``; the sweep multiplies once per step."""
    result, forward, steps = _gated_sweep("gru", "dzz", gru_reset=gru_reset)
    assert len(steps) == 3
    for s in steps:
        assert isinstance(s.expr, sp.HadamardProduct) and {f for f, _ in s.reads} == {"dh", "jac_z"}, s.expr
    (jac,) = [s for s in result.program.stmts if str(s.target).startswith("jac_z")]
    assert {f for f, _ in jac.reads} == {"h", "gn", "gz"} and {f for f, _ in jac.reads} <= forward


def test_the_lstms_cell_delta_reads_its_hoisted_local_jacobian_and_builds_on_it_in_place():
    """``δc_t = δc_{t+1} ∘ f_{t+1} + δh_t ∘ o_t ∘ (1 - φ_t ∘ φ_t)``: ``∂h_t/∂c_t = o_t ∘ (1 - φ_t ∘ φ_t)`` is
    computed for all steps before the sweep (``jac_cell``, in the buffer of δc), and each step multiplies it
    by δh_t in place and adds δc_{t+1} ∘ f_{t+1}: three calls, not six with four temporaries."""
    from rnngen.operations import Update

    result, forward, steps = _gated_sweep("lstm", "dcell")
    (jac,) = [s for s in result.program.stmts if str(s.target).startswith("jac_cell")]
    assert {f for f, _ in jac.reads} == {"go", "cact"}
    for s in steps:
        if s.step[1] in (1, 2, 3):
            assert {f for f, _ in s.reads} <= {"dcell", "dh", "gf", "jac_cell"} and "jac_cell" in dict(s.reads), s
    for t in (1, 2):
        (write,) = [w for w in result.lowered.writes if w.stmt.step == ("dcell", t)]
        ops = [op for op in write.ops if isinstance(op, Update)]
        assert [op.op for op in ops] == ["*", "+"] and len(ops) == len(write.ops) - sum(
            type(op).__name__ in ("Take", "TakePlace", "Views") for op in write.ops
        ), write.ops


def test_a_masked_lstms_cell_delta_hoists_the_same_jacobian_and_keeps_the_mask_term():
    """A masked LSTM's new-state delta ``δc̄_t = δc_t ∘ (1 m_t) + δh̄_t ∘ o_t ∘ (1 - φ_t ∘ φ_t)`` hoists the same
    ``∂h_t/∂c_t`` (``jac_cell``); the term that reads the mask, an input, stays in the sweep as it was."""
    result, forward, steps = _gated_sweep("lstm", "dcellbar", masked=True)
    (jac,) = [s for s in result.program.stmts if str(s.target).startswith("jac_cell")]
    assert {f for f, _ in jac.reads} == {"go", "cact"}
    for s in steps:  # the last step has no δc_T to pass on
        last = s.step[1] == 3
        assert {f for f, _ in s.reads} == {"dhbar", "jac_cell"} | (set() if last else {"dcell", "m"}), s
