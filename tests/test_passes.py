"""Each rewrite pass alone on a hand-built program with two recurrences (tests/two_recurrences.py).

A row gives a pass, its input (the plain program, or the plain program after the passes that
run before it in ``PASSES``) and the statements it must add, change or drop; every other
statement must come out as it went in. Both sides are then evaluated with random matrices.
"""

import numpy as np
import pytest
import two_recurrences as H
from sympy import MatrixSymbol, Transpose
from two_recurrences import R, U, V, W, n_h, n_y, run_of, s

from rnngen import algebra as A
from rnngen import optimize as O
from rnngen.program import Program, ProgramError, Stmt

DROP = None  # a statement the pass removes


def _tanh_prime(h):
    return A.sub(A.ones(n_h, A.B), A.had(h, h))


def _sigmoid_prime(yhat):
    return A.had(yhat, A.sub(A.ones(n_y, A.B), yhat))


def _after(name: str) -> Program:
    """The plain program after the passes that run before ``name`` in ``PASSES``."""
    program = H.program()
    for p in O.PASSES:
        if p.__name__ == name:
            return program
        program = p(program)
    raise KeyError(name)


def _with_a_dead_statement() -> Program:
    program = H.program()
    dead = Stmt(MatrixSymbol("unused", n_h, A.B), A.mul(W, s("h", 1)), "backward", len(program.stmts))
    return program.with_stmts((*program.stmts, dead))


# log sigma(o) = -softplus(-o), log(1 - sigma(o)) = -softplus(o): the loss term
# -(y log yhat + (1 - y) log(1 - yhat)) becomes y ∘ softplus(-o) + (1 - y) ∘ softplus(o)
STABLE_LOGS = {
    "E": A.add(
        *(
            A.mul(
                A.ones(1, n_y),
                A.add(
                    A.had(s("y", t), A.Elementwise("softplus", A.neg(s("o", t)))),
                    A.had(A.sub(A.ones(n_y, A.B), s("y", t)), A.Elementwise("softplus", s("o", t))),
                ),
                A.ones(A.B, 1),
            )
            for t in (1, 2)
        )
    )
}
# A term that reads the other recurrence (V h_t in o_t, Vᵀ do_t in dh_t) is not part of this one:
# the h chain is finished before the yhat chain starts (and do before dz), as layer 1 before layer 2.
HOIST_NON_RECURRENT = {
    "pre_z_1": A.mul(U, s("x", 1)),
    "pre_z_2": A.mul(U, s("x", 2)),
    "z_1": A.add(s("pre_z", 1), A.mul(W, s("h", 0))),
    "z_2": A.add(s("pre_z", 2), A.mul(W, s("h", 1))),
    "pre_o_1": A.mul(V, s("h", 1)),
    "pre_o_2": A.mul(V, s("h", 2)),
    "o_1": A.add(s("pre_o", 1), A.mul(R, s("yhat", 0))),
    "o_2": A.add(s("pre_o", 2), A.mul(R, s("yhat", 1))),
    "pre_dh_1": A.mul(Transpose(V), s("do", 1)),
    "pre_dh_2": A.mul(Transpose(V), s("do", 2)),
    "dh_1": A.add(s("pre_dh", 1), A.mul(Transpose(W), s("dz", 2))),
    "dh_2": s("pre_dh", 2),
    "pre_dyhat_1": s("y", 1),
    "pre_dyhat_2": s("y", 2),
    "dyhat_1": A.add(s("pre_dyhat", 1), A.mul(Transpose(R), s("do", 2))),
    "dyhat_2": s("pre_dyhat", 2),
}
# Each layer's derivative factor becomes a family of its own: f' of the tanh layer, g' of the sigmoid one.
HOIST_LOCAL_JACOBIANS_PLAIN = {
    "fprime_1": _tanh_prime(s("h", 1)),
    "fprime_2": _tanh_prime(s("h", 2)),
    "gprime_1": _sigmoid_prime(s("yhat", 1)),
    "gprime_2": _sigmoid_prime(s("yhat", 2)),
    "dz_1": A.had(s("dh", 1), s("fprime", 1)),
    "dz_2": A.had(s("dh", 2), s("fprime", 2)),
    "do_1": A.had(s("dyhat", 1), s("gprime", 1)),
    "do_2": A.had(s("dyhat", 2), s("gprime", 2)),
}
INLINE = {
    **{f"{f}_{t}": DROP for f in ("z", "o", "dyhat", "dh") for t in (1, 2)},
    "h_1": A.Elementwise("tanh", A.add(s("pre_z", 1), A.mul(W, s("h", 0)))),
    "h_2": A.Elementwise("tanh", A.add(s("pre_z", 2), A.mul(W, s("h", 1)))),
    "yhat_1": A.Elementwise("sigmoid", A.add(s("pre_o", 1), A.mul(R, s("yhat", 0)))),
    "yhat_2": A.Elementwise("sigmoid", A.add(s("pre_o", 2), A.mul(R, s("yhat", 1)))),
    "do_1": A.had(A.add(s("pre_dyhat", 1), A.mul(Transpose(R), s("do", 2))), _sigmoid_prime(s("yhat", 1))),
    "do_2": A.had(s("pre_dyhat", 2), _sigmoid_prime(s("yhat", 2))),
    "dz_1": A.had(A.add(s("pre_dh", 1), A.mul(Transpose(W), s("dz", 2))), _tanh_prime(s("h", 1))),
    "dz_2": A.had(s("pre_dh", 2), _tanh_prime(s("h", 2))),
}
HOIST_LOCAL_JACOBIANS = {
    "fprime_1": _tanh_prime(s("h", 1)),
    "fprime_2": _tanh_prime(s("h", 2)),
    "gprime_1": _sigmoid_prime(s("yhat", 1)),
    "gprime_2": _sigmoid_prime(s("yhat", 2)),
    "do_1": A.had(A.add(s("pre_dyhat", 1), A.mul(Transpose(R), s("do", 2))), s("gprime", 1)),
    "do_2": A.had(s("pre_dyhat", 2), s("gprime", 2)),
    "dz_1": A.had(A.add(s("pre_dh", 1), A.mul(Transpose(W), s("dz", 2))), s("fprime", 1)),
    "dz_2": A.had(s("pre_dh", 2), s("fprime", 2)),
}
VECTORIZE = {
    **{f"{f}_{t}": DROP for f in ("pre_z", "pre_o", "pre_dh", "pre_dyhat", "fprime", "gprime") for t in (1, 2)},
    "pre_z[1:2]": A.mul(U, run_of("x", 1, 2)),
    "pre_o[1:2]": A.mul(V, run_of("h", 1, 2)),
    "pre_dh[1:2]": A.mul(Transpose(V), run_of("do", 1, 2)),
    "pre_dyhat[1:2]": run_of("y", 1, 2),
    "fprime[1:2]": _tanh_prime(run_of("h", 1, 2)),
    "gprime[1:2]": _sigmoid_prime(run_of("yhat", 1, 2)),
}
STACK_TIME_SUMS = {
    "E": A.mul(A.ones(1, n_y), A.had(run_of("y", 1, 2), run_of("yhat", 1, 2)), A.ones(A.B, 1)),
    "dU": A.mul(run_of("dz", 1, 2), Transpose(run_of("x", 1, 2))),
    "dW": A.mul(run_of("dz", 1, 2), Transpose(run_of("h", 0, 1))),
    "dV": A.mul(run_of("do", 1, 2), Transpose(run_of("h", 1, 2))),
    "dR": A.mul(run_of("do", 1, 2), Transpose(run_of("yhat", 0, 1))),
}

ROWS = [  # (pass, its input, target -> new expression or DROP)
    ("stable_logs", H.program, {}),  # no output layer with a log form: nothing to do
    ("stable_logs", lambda: H.program(bce=True), STABLE_LOGS),
    ("fuse_output_gradient", H.program, {}),  # no fused output gradient: nothing to do
    ("hoist_non_recurrent", H.program, HOIST_NON_RECURRENT),
    ("inline_recurrent_temporaries", lambda: _after("inline_recurrent_temporaries"), INLINE),
    ("hoist_local_jacobians", H.program, HOIST_LOCAL_JACOBIANS_PLAIN),
    ("hoist_local_jacobians", lambda: _after("hoist_local_jacobians"), HOIST_LOCAL_JACOBIANS),
    ("vectorize_over_time", lambda: _after("vectorize_over_time"), VECTORIZE),
    ("stack_time_sums", lambda: _after("stack_time_sums"), STACK_TIME_SUMS),
    ("eliminate_dead_code", H.program, {}),
    ("eliminate_dead_code", _with_a_dead_statement, {"unused": DROP}),
    ("schedule", lambda: _after("schedule"), {}),
]


def _table(program: Program) -> dict:
    return {st.target.name: st.expr for st in program.stmts}


@pytest.mark.parametrize(("name", "source", "changes"), ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_pass_rewrites_the_two_recurrence_program_as_expected(name, source, changes):
    before = source()
    after = getattr(O, name)(before)
    expected = {k: v for k, v in {**_table(before), **changes}.items() if v is not DROP}
    got = _table(after)
    assert sorted(got) == sorted(expected)
    for target, expr in expected.items():
        assert A.normalize(got[target]) == A.normalize(expr), f"{target} := {got[target]}, expected {expr}"


@pytest.mark.parametrize(("name", "source", "changes"), ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_pass_keeps_the_value_of_the_two_recurrence_program(name, source, changes):
    before = source()
    after = O.schedule(getattr(O, name)(before))
    env = H.inputs()
    # between passes a statement may stand before one it reads (schedule orders them): both scheduled
    want, got = H.values(O.schedule(before), env), H.values(after, env)
    for k in H.OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("bce", [False, True])
def test_the_hand_written_backward_is_the_gradient(bce):
    # the fixture's own check, against central differences of E (independent of every pass)
    program, env = H.program(bce), H.inputs()
    grads = H.values(program, env)
    for name in H.PARAMS:
        fd = np.zeros_like(env[name])
        for i in np.ndindex(fd.shape):
            e = dict(env)
            e[name] = env[name].copy()
            e[name][i] += 1e-6
            up = H.values(program, e)["E"][0, 0]
            e[name][i] -= 2e-6
            fd[i] = (up - H.values(program, e)["E"][0, 0]) / 2e-6
        np.testing.assert_allclose(grads["d" + name], fd, rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_pipeline_keeps_the_value_of_the_two_recurrence_program():
    program, env = H.program(), H.inputs()
    want, got = H.values(program, env), H.values(O.optimize(program), env)
    for k in H.OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_schedule_runs_one_recurrence_after_the_other():
    # as layer 2 after layer 1: the h chain, then V h_t for all steps at once, then the yhat chain;
    # backward the do chain, then Vᵀ do_t for all steps at once, then the dz chain
    order = [st.target.name for st in O.schedule(_after("schedule")).stmts]
    assert order == [
        "h_0", "yhat_0", "pre_z[1:2]", "h_1", "h_2", "pre_o[1:2]", "yhat_1", "yhat_2", "E",
        "pre_dyhat[1:2]", "gprime[1:2]", "do_2", "fprime[1:2]", "do_1", "pre_dh[1:2]", "dz_2", "dz_1",
        "dU", "dW", "dV", "dR", "dh0", "dg0",
    ]  # fmt: skip


def _stmt(target, order):
    return Stmt(target, A.mul(W, s("h", 0)), "forward", order)


def test_a_second_writer_of_a_step_is_refused():
    program = H.program()
    with pytest.raises(ProgramError, match=r"^h_1 has two writers, 'h_1 := .*' and 'h_1 := W\*h_0'"):
        program.with_stmts((*program.stmts, _stmt(s("h", 1), 99)))


def test_a_run_that_overlaps_a_written_step_is_refused():
    program = H.program()
    with pytest.raises(ProgramError, match=r"^h_2 has two writers, 'h_2 := .*' and 'h\[2:3\] := W\*h_0'"):
        program.with_stmts((*program.stmts, _stmt(run_of("h", 2, 3), 99)))


def test_a_second_writer_of_a_whole_value_is_refused():
    program = H.program()
    with pytest.raises(ProgramError, match=r"^dU has two writers"):
        program.with_stmts((*program.stmts, _stmt(MatrixSymbol("dU", n_h, A.B), 99)))
