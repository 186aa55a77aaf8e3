"""The printers: exact spellings for a table of expressions, and strictness."""

import pytest
import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen.lower import Storage
from rnngen.printing import PrintError
from rnngen.printing.math import latex, text
from rnngen.printing.numpy import NumpyPrinter
from rnngen.program import stacked
from rnngen.unroll import step

n_h, n_x = sp.symbols("n_h n_x", integer=True, positive=True)
U = MatrixSymbol("U", n_h, n_x)
W = MatrixSymbol("W", n_h, n_h)
b = MatrixSymbol("b", n_h, 1)
x_2 = step("x", 2, n_x)
h_1 = step("h", 1, n_h)
h_2 = step("h", 2, n_h)
dz_2 = step("dz", 2, n_h)
H = stacked("h", 0, 2, n_h)
DZ = stacked("dz", 1, 3, n_h)

STORAGE = {"x": Storage(1, 3, True), "h": Storage(0, 4, True), "dz": Storage(1, 3, True), "o": Storage(1, 3, False)}

NUMPY = [
    (A.add(A.mul(U, x_2), A.mul(W, h_1), A.mul(b, A.ones(1, A.B))), "x[1] @ U.T + h[1] @ W.T + b"),
    (A.had(dz_2, A.sub(A.ones(n_h, A.B), A.square(h_2))), "dz[1] * (1.0 - h[2] * h[2])"),
    (A.square(A.sub(h_2, dz_2)), "np.square(h[2] - dz[1])"),  # an expression squared is computed once
    (A.square(A.Softmax(h_2)), "np.square(_softmax(h[2]))"),
    (A.mul(DZ, A.transpose(H)), "np.dot(dz.reshape(-1, n_h).T, h[:-1].reshape(-1, n_h))"),
    (A.mul(DZ, A.ones(A.B, 1)), 'np.dot(buf["ones of T steps"], dz.reshape(-1, n_h))'),
    (A.mul(A.transpose(W), dz_2, A.ones(A.B, 1)), 'np.dot(np.dot(buf["ones of a step"], dz[1]), W)'),
    (
        A.neg(A.mul(A.ones(1, n_h), A.had(h_1, A.Elementwise("log", h_2)), A.ones(A.B, 1))),
        "-np.vdot(h[1], np.log(h[2]))",
    ),
    (
        A.had(h_1, A.sub(dz_2, A.mul(A.ones(n_h, n_h), A.had(h_1, dz_2)))),
        "h[1] * (dz[1] - (h[1] * dz[1]).sum(axis=-1, keepdims=True))",
    ),
    (A.neg(A.had(h_1, A.reciprocal(h_2))), "-(h[1] / h[2])"),
    (A.Softmax(A.mul(W, h_1)), "_softmax(h[1] @ W.T)"),
    # time-stacked rows (T * B, n): a run of steps is a run of rows
    (A.mul(W, stacked("o", 1, 3, n_h)), "o @ W.T"),
    (A.mul(W, stacked("o", 2, 3, n_h)), "o[B:] @ W.T"),
    (A.mul(W, stacked("o", 1, 2, n_h)), "o[:2 * B] @ W.T"),
]


@pytest.mark.parametrize("expr, code", NUMPY, ids=[c for _, c in NUMPY])
def test_numpy_spelling(expr, code):
    assert NumpyPrinter(STORAGE, T=3).code(expr) == code


def test_numpy_printer_is_strict():
    with pytest.raises(PrintError, match="no NumPy rule"):
        NumpyPrinter(STORAGE, T=3).code(sp.MatPow(W, 2) * h_1)


MATH = [
    (A.add(A.mul(U, x_2), A.mul(W, h_1), A.mul(b, A.ones(1, A.B))), r"U x_{2} + W h_{1} + b", "U x_2 + W h_1 + b"),
    (A.mul(DZ, A.transpose(H)), r"\Delta^{z}_{1:3} H_{0:2}^{\top}", "Δz[1..3] H[0..2]ᵀ"),
    (A.mul(DZ, A.ones(A.B, 1)), r"\Delta^{z}_{1:3} \mathbf{1}", "Δz[1..3] 1"),
    (
        A.had(dz_2, A.sub(A.ones(n_h, A.B), A.square(h_2))),
        r"\delta^{z}_{2} \odot \left(\mathbf{1} - h_{2} \odot h_{2}\right)",
        "δz_2 ∘ (1 - h_2 ∘ h_2)",
    ),
]


@pytest.mark.parametrize("expr, tex, txt", MATH, ids=[t for _, _, t in MATH])
def test_latex_and_text_spelling(expr, tex, txt):
    assert latex(expr) == tex
    assert text(expr) == txt


def test_math_printer_is_strict():
    with pytest.raises(PrintError):
        latex(sp.MatPow(W, 2))


def test_class_indices_are_kept_only_where_the_fused_pair_alone_reads_the_targets(tmp_path):
    from rnngen import optimize as O
    from rnngen.lower import reads_targets_as_classes
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec
    from rnngen.verify import check_module, load_module

    assert reads_targets_as_classes(build(RNNSpec(T=3)).program)
    # sigmoid with cross-entropy: its closed form -y ∘ σ(-o) reads the rows
    assert not reads_targets_as_classes(build(RNNSpec(T=3, output="sigmoid")).program)
    plain = build(RNNSpec(T=3), skip={p.__name__ for p in O.PASSES} - {"schedule"})
    assert not reads_targets_as_classes(plain.program)
    assert "np.eye(n_out" in plain.module and "np.eye(n_out" not in build(RNNSpec(T=3)).module
    # without the closed form, the targets stay rows, and the loss still reuses the softmax
    unfused = build(RNNSpec(T=3), skip={"fuse_output_gradient"}).module
    assert "np.eye(n_out" in unfused and "_dot_log_softmax(y, o, yhat)" in unfused
    path = tmp_path / "unfused.py"
    path.write_text(unfused)
    assert check_module(load_module(path)).ok


def test_a_step_family_is_written_through_its_list_of_views():
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    module = build(RNNSpec(T=3)).module
    forward = module.split("def _forward")[1].split("\ndef ")[0]
    # the list is made with the buffers, once for every call that takes the set (list() of 100
    # steps: 10-20 µs a call), and read from the set by each call
    assert forward.count('h_ = buf["h_"]') == 1 and "list(" not in forward
    new_buffers = module.split("def _new_buffers")[1].split("\ndef ")[0]
    assert new_buffers.count('buf["h_"] = list(buf["h"])') == 1
    assert "h[0] = h0" in forward  # a plain assignment writes through the array
    assert "np.tanh(h_[3], out=h_[3])" in forward


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "relu", "x/(1+abs(x))"])
def test_every_list_of_step_views_is_made_before_its_function_reads_it(hidden):
    import re

    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    module = build(RNNSpec(T=3, hidden=hidden)).module
    for function in module.split("\ndef ")[1:]:
        made = set()
        for line in function.splitlines():
            made.update(re.findall(r"^\s+(\w+)_ = (?:list\(\1\)|buf\[\"\1_\"\])", line))
            for family in re.findall(r"\b(\w+)_\[", line):
                assert family in made, f"{family}_ read before it is made: {line.strip()}"


def test_one_minus_a_stored_family_is_written_into_its_buffer():
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    # sigmoid' = h ∘ (1 - h) over all steps: 1 - H straight into F′'s buffer, then the product in place
    backward = build(RNNSpec(T=3, hidden="sigmoid")).module.split("def loss_and_grads")[1].split("\ndef ")[0]
    assert "    np.subtract(1.0, h[1:], out=fprime)\n    fprime *= h[1:]\n" in backward
    assert "fprime = (" not in backward


def test_the_output_gradient_takes_the_buffer_of_a_softmax_nothing_reads_later():
    from dataclasses import replace

    from sympy import MatrixSymbol

    from rnngen.lower import buffers_to_reuse, minus_targets, storage_of
    from rnngen.pipeline import build
    from rnngen.program import Stmt
    from rnngen.spec import RNNSpec

    program = build(RNNSpec(T=3)).program
    assert buffers_to_reuse(program, storage_of(program)) == {"do": "yhat"}
    assert "do = yhat  # yhat is not read after this" in build(RNNSpec(T=3)).module
    # a statement that reads ŷ after Δo = Ŷ - Y: Δo must keep its own buffer
    delta = next(s for s in program.stmts if minus_targets(s.expr))
    yhat = minus_targets(delta.expr)[0]
    later = Stmt(MatrixSymbol("late", *yhat.shape), yhat, "backward", delta.order + 0.1)
    read_later = replace(program, stmts=[*program.stmts, later])
    assert buffers_to_reuse(read_later, storage_of(read_later)) == {}


def test_the_recurrence_is_built_in_the_place_of_the_part_only_its_own_step_reads():
    from dataclasses import replace

    from sympy import MatrixSymbol

    from rnngen.lower import steps_built_in_place, storage_of
    from rnngen.pipeline import build
    from rnngen.program import Stmt
    from rnngen.spec import RNNSpec

    built = build(RNNSpec(T=3))
    program = built.program
    # f′_t is a factor of δz_t, not a term of its sum: it keeps its own buffer
    assert steps_built_in_place(program, storage_of(program)) == {"pre_z": "h", "pre_dh": "dz"}
    assert "# pre_z is h[1:]: each step is read only by the same step of h" in built.module
    assert "h_[2] += h_gemm" in built.module
    # another reader of z̃_2: h_2 may not overwrite it
    z2 = next(s for s in program.stmts if s.step == ("h", 2))
    pre = next(sym for sym in z2.expr.free_symbols if sym.name == "pre_z_2")
    later = Stmt(MatrixSymbol("late", *pre.shape), pre, "forward", z2.order + 0.1)
    read_later = replace(program, stmts=[*program.stmts, later])
    assert steps_built_in_place(read_later, storage_of(read_later)) == {"pre_dh": "dz"}


def test_the_recurrence_reads_its_transposed_weight_from_one_contiguous_copy_per_call():
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    module = build(RNNSpec(T=3)).module
    assert module.count("np.copyto(W_T, W.T)") == 1
    assert "np.dot(h_[1], W_T, out=h_gemm)" in module and "W.T, out=" not in module
    # a GEMM of one step that is not a recurrence (the output of many-to-one) reads the view
    m2o = build(RNNSpec(T=3, mapping="many-to-one")).module
    assert "np.dot(h_[3], V.T, out=o_[0])" in m2o and "V_T" not in m2o


@pytest.mark.parametrize(
    ("hidden", "line"),
    [("sigmoid", "_sigmoid(h_[2], out=h_[2])"), ("leaky_relu", "_leaky_relu(h_[2], 0.01, out=h_[2])")],
)
def test_a_helper_activation_that_takes_out_runs_the_recurrence_in_place(hidden, line):
    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    forward = build(RNNSpec(T=3, hidden=hidden)).module.split("def _forward")[1].split("\ndef ")[0]
    # the step as for tanh: its GEMM into the scratch, added in place, the activation in place
    assert f"    np.dot(h_[1], W_T, out=h_gemm)\n    h_[2] += h_gemm\n    {line}\n" in forward
    assert "h[2] =" not in forward


def test_the_sigmoid_helper_is_exact_to_an_ulp_and_never_overflows():
    import numpy as np

    from rnngen.activations import elementwise

    rule = elementwise("sigmoid")
    space = {"np": np}
    exec(dict(rule.helpers)["_sigmoid"], space)
    a = np.concatenate([np.linspace(-88, 745, 100001), [-88.0, -1e300, -np.inf, 1e300, np.inf]])
    a32 = np.clip(a, -3e38, 3e38).astype(np.float32)
    out = a32.copy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # (underflow to 0 is right)
        got = space["_sigmoid"](a)
        space["_sigmoid"](out, out=out)  # in place, in float32 too
    with np.errstate(over="ignore"):
        reference = 1 / (1 + np.exp(-a.astype(np.longdouble)))  # wider than float64 where it has it
        reference32 = 1 / (1 + np.exp(-a32.astype(np.longdouble)))
    np.testing.assert_allclose(got[:-5], reference[:-5], rtol=4e-16, atol=0)
    assert np.all(got[-5:-2] <= 6.1e-39) and np.all(got[-5:-2] >= 0) and np.all(got[-2:] == 1.0)
    np.testing.assert_allclose(out[:-5], reference32[:-5], rtol=2e-7, atol=1e-38)


def test_a_part_that_cannot_be_written_in_place_is_assigned_into_the_place_of_its_readers():
    import types

    import numpy as np

    from rnngen.lower import lower
    from rnngen.pipeline import build
    from rnngen.render import render_both
    from rnngen.spec import RNNSpec

    built = build(RNNSpec(T=3))
    # z̃ = f(U X + b 1ᵀ) for a custom f: a helper that returns a new array instead of writing into h
    stmts = [
        s.with_(expr=A.Elementwise("custom:x/(1+abs(x))", s.expr)) if s.target.name.startswith("pre_z") else s
        for s in built.program.stmts
    ]
    text = render_both(built.derivation, lower(built.program.with_stmts(stmts)))[0]
    assert 'buf["h[1:] rows"][...] = _custom(' in text
    m = types.ModuleType("m")
    exec(compile(text, "m", "exec"), m.__dict__)
    params = m.init_params(n_x=4, n_h=5, n_y=3, seed=1)
    params["b"] = np.linspace(-1, 1, 5)
    params["h0"] = np.linspace(0.5, -0.5, 5)
    xs = np.random.default_rng(2).standard_normal((3, 2, 4))
    h = np.tile(params["h0"], (2, 1))
    for t in range(3):
        a = xs[t] @ params["U"].T + params["b"]
        z = a / (1 + np.abs(a))
        h = np.tanh(z + h @ params["W"].T)
        np.testing.assert_allclose(m.forward(params, xs)["h"][t], h, rtol=1e-12)
