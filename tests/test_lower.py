"""The lowering's decisions, read from ``Lowered`` on hand-built and on real programs.

Every storage decision of the module (which buffer a statement takes, what is computed into
the destination first and what is updated in place, which GEMM goes through a one-step scratch,
which weight gets a contiguous transposed copy, which families get a list of step views) is an
operation of ``Lowered.writes``; these tests read them there, not in the printed code.
"""

import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
from sympy import MatrixSymbol, Transpose

from rnngen import algebra as A
from rnngen import lower as L
from rnngen import verify
from rnngen.activations import elementwise
from rnngen.families import FAMILIES, Run, Step
from rnngen.operations import INTO_FORMS, Stack
from rnngen.pipeline import build
from rnngen.printing.numpy import INTO, NumpyPrinter
from rnngen.program import Program, Stmt
from rnngen.spec import RNNSpec

# -- a hand-built recurrence: h_t = tanh(pre_z_t + W h_{t-1}), pre_z = U x for all steps at once --

T = 3
n_x, n_h = sp.symbols("n_x n_h", integer=True, positive=True)
U, W, h0 = MatrixSymbol("U", n_h, n_x), MatrixSymbol("W", n_h, n_h), MatrixSymbol("h0", n_h, 1)
ROWS = {"x": n_x}


def s(family, t):
    return Step.of(FAMILIES[family], t, ROWS.get(family, n_h))


def r(family, lo, hi):
    return Run.of(FAMILIES[family], lo, hi, ROWS.get(family, n_h))


def _program(hidden="tanh") -> Program:
    """The forward recurrence and a loss that reads every state, its spec a stand-in with T."""
    stmts = [(s("h", 0), A.mul(h0, A.ones(1, A.B))), (r("pre_z", 1, T), A.mul(U, r("x", 1, T)))]
    stmts += [(s("h", t), A.Elementwise(hidden, A.add(s("pre_z", t), A.mul(W, s("h", t - 1))))) for t in (1, 2, 3)]
    loss = A.mul(A.ones(1, n_h), A.had(r("h", 1, T), r("h", 1, T)), A.ones(A.B, 1))
    stmts.append((MatrixSymbol("E", 1, 1), loss))
    spec = SimpleNamespace(T=T, loss_rule=SimpleNamespace(targets="values"))
    sections = ["forward"] * (len(stmts) - 1) + ["loss"]
    program = tuple(Stmt(tg, e, sec, i) for i, ((tg, e), sec) in enumerate(zip(stmts, sections)))
    return Program(SimpleNamespace(spec=spec), program, frozenset({("E", None)}))


def test_the_steps_input_part_is_written_into_the_states_buffer():
    lowered = L.lower(_program())
    assert lowered.in_place == {"pre_z": "h"}
    assert lowered.write_of(s("h", 0)).ops == (
        L.Take("h", ("T + 1", "B", "n_h")),
        L.Assign(s("h", 0), A.mul(h0, A.ones(1, A.B)), "array"),
    )
    assert lowered.write_of(r("pre_z", 1, T)).ops == (
        L.TakePlace("pre_z", "h", r("h", 1, T), named=False),
        L.ByInput(  # float rows or token ids, chosen at run time
            (L.Gemm(r("pre_z", 1, T), r("x", 1, T), U, None, False),),
            (L.Lookup(r("pre_z", 1, T), r("x", 1, T), U, False),),
        ),
    )


def test_the_recurrent_steps_gemm_goes_through_a_per_step_scratch():
    lowered = L.lower(_program())
    first = lowered.write_of(s("h", 1)).ops
    assert first == (
        L.Views("h", True),
        L.Take("h_gemm", ("B", "n_h")),
        L.Take("W_T", ("n_h", "n_h")),
        L.Copy("W_T", W),
        L.Gemm("h_gemm", s("h", 0), W, "W_T", True),
        L.Update(s("h", 1), "+", "h_gemm"),
        L.Apply(s("h", 1), "tanh"),
    )
    for t in (2, 3):  # nothing taken or copied again: the steps only compute
        assert lowered.write_of(s("h", t)).ops == (
            L.Gemm("h_gemm", s("h", t - 1), W, "W_T", True),
            L.Update(s("h", t), "+", "h_gemm"),
            L.Apply(s("h", t), "tanh"),
        )
    assert lowered.scratches == [("_forward", "h_gemm")]
    assert lowered.copies == [("_forward", "W_T", W)]


def test_the_buffers_and_the_step_lists_are_those_the_writes_take():
    lowered = L.lower(_program())
    assert lowered.buffers == {"h": ("T + 1", "B", "n_h"), "h_gemm": ("B", "n_h"), "W_T": ("n_h", "n_h")}
    assert lowered.step_lists == {"h_": "h"}
    assert lowered.write_of(s("h", 2)).views == frozenset({"h"})


def test_an_activation_that_returns_a_new_array_is_not_built_in_place():
    # a custom activation's helper takes no out=: the step is evaluated whole and assigned
    custom = "custom:x / (1 + abs(x))"
    assert L.applies_in_place(elementwise("tanh")) and not L.applies_in_place(elementwise(custom))
    lowered = L.lower(_program(custom))
    step = lowered.write_of(s("h", 2))
    assert step.ops == (L.Assign(s("h", 2), step.stmt.expr, "array"),)
    assert lowered.copies == [] and lowered.scratches == []


def test_the_printer_spells_each_operation():
    lowered = L.lower(_program())
    printer = NumpyPrinter.of(lowered)
    assert printer.write(lowered.write_of(s("h", 1))) == [
        'h_ = buf["h_"]  # its steps as views, made with the buffers: cheaper to index',
        'h_gemm = buf["h_gemm"]',
        'W_T = buf["W_T"]',
        "np.copyto(W_T, W.T)  # contiguous: every step's GEMM reads it",
        "np.dot(h_[0], W_T, out=h_gemm)",
        "h_[1] += h_gemm",
        "np.tanh(h_[1], out=h_[1])",
    ]
    assert printer.write(lowered.write_of(r("pre_z", 1, T))) == [
        "# pre_z is h[1:]: each step is read only by the same step of h, built on it",
        'if x.dtype.kind == "f":',
        '    buf["rows product"](x.reshape(-1, n_x), U.T, out=buf["h[1:] rows"])',
        "else:  # token ids (intp, checked), standing for the inputs' one-hot rows",
        '    U.T.take(x.reshape(-1), axis=0, out=buf["h[1:] rows"], mode="clip")',
    ]


def test_a_family_built_in_place_and_written_whole_is_spelled_as_its_home():
    lowered = L.lower(_program())
    assert lowered.homes == {"pre_z": "h"}  # written whole: no name, its steps are h's
    # the loss reads h[1..3] as rows: one view made with the buffers, not a reshape per call
    assert lowered.row_views == {("h", 1, T): n_h}
    printer = NumpyPrinter.of(lowered)
    loss = printer.write(lowered.write_of("E"))
    assert loss == ['E = np.vdot(buf["h[1:] rows"], buf["h[1:] rows"])']
    assert printer.row_view("h", 1, T, n_h) == ("h[1:] rows", "h", "[1:]", n_h)


def test_a_family_built_in_place_and_written_step_by_step_keeps_its_name():
    program = _program()
    # pre_z written a step at a time: it needs a name for its list of views
    stmts = [st for st in program.stmts if st.target.name != r("pre_z", 1, T).name]
    steps = [(s("pre_z", t), A.mul(U, s("x", t))) for t in (1, 2, 3)]
    stmts[1:1] = [type(stmts[0])(tg, e, "forward", 0) for tg, e in steps]
    lowered = L.lower(program.with_stmts(stmts))
    assert lowered.in_place == {"pre_z": "h"} and lowered.homes == {}
    place = [op for w in lowered.writes for op in w.ops if isinstance(op, L.TakePlace)]
    assert set(place) == {L.TakePlace("pre_z", "h", r("h", 1, T), named=True)}


# -- real programs --------------------------------------------------------------------------

# -- real programs --------------------------------------------------------------------------

SPECS = {
    "one layer": dict(),
    "two layers": dict(layers=2),
    "three layers, bidirectional": dict(layers=3, bidirectional=True),
    "bidirectional": dict(bidirectional=True),
    "many-to-one": dict(mapping="many-to-one"),
    "row": dict(notation="row"),
    "stacked": dict(notation="stacked"),
    "stacked-row, two layers": dict(notation="stacked-row", layers=2),
    "relu": dict(hidden="relu"),
    "sigmoid": dict(hidden="sigmoid", output="sigmoid", loss="binary_cross_entropy"),
    "leaky_relu": dict(hidden="leaky_relu", slope=0.1),
    "custom": dict(hidden="x/(1+abs(x))"),
    "no biases": dict(hidden_bias=False, output_bias=False),
    "input gradient": dict(input_grad=True),
    "identity output": dict(output="identity", loss="squared_error"),
}


@pytest.fixture(scope="module")
def lowered():
    return {name: build(RNNSpec(T=4, **kw)).lowered for name, kw in SPECS.items()}


def _steps(lowered, family):
    return [w for w in lowered.writes if w.stmt.step and w.stmt.step[0] == family]


@pytest.mark.parametrize("name", SPECS)
def test_every_statement_has_one_write_in_module_order(lowered, name):
    low = lowered[name]
    assert [w.stmt for w in low.writes] == list(low.program.stmts)


@pytest.mark.parametrize("name", SPECS)
def test_each_buffer_is_taken_once_per_function_before_it_is_written(lowered, name):
    low = lowered[name]
    taken = {}
    for w in low.writes:
        mine = taken.setdefault(w.function, set())
        for op in w.ops:
            if isinstance(op, L.Take):
                assert op.name not in mine, f"{op.name} taken twice in {w.function}"
                assert low.buffers[op.name] == op.shape
                mine.add(op.name)
            for place in (getattr(op, "out", None), getattr(op, "dest", None), getattr(op, "name", None)):
                if isinstance(place, str):  # a scratch or a copy: taken earlier in this function
                    assert place in mine, f"{place} used before it is taken in {w.function}"
    assert set(low.buffers) == set().union(*taken.values())


@pytest.mark.parametrize("name", SPECS)
def test_the_steps_of_a_recurrence_take_nothing_after_the_first_two(lowered, name):
    """Nothing is allocated, copied or listed on the per-step path, only in the first two steps
    (the backward's first step, t = T, has no GEMM: the next one takes the scratch)."""
    low = lowered[name]
    families = {w.stmt.step[0] for w in low.writes if w.stmt.step}
    for family in families:
        steps = [w for w in _steps(low, family) if w.stmt.step[1] > 0]  # h_0 is the initial state
        for w in steps[2:]:
            setup = [op for op in w.ops if isinstance(op, (L.Take, L.TakePlace, L.Views, L.Copy))]
            assert not setup, f"{w.stmt.target} takes {setup}"


@pytest.mark.parametrize("name", SPECS)
def test_a_weight_gets_one_contiguous_transposed_copy_per_function(lowered, name):
    low = lowered[name]
    copies = [(function, copy) for function, copy, _ in low.copies]
    assert len(copies) == len(set(copies))
    gemms = [(w.function, op) for w in low.writes for op in w.ops if isinstance(op, L.Gemm)]
    for function, op in gemms:
        if op.copy is not None:  # the copy is of the weight the GEMM multiplies, made in its function
            assert (function, op.copy, op.param) in low.copies
            assert op.per_step and isinstance(op.param, MatrixSymbol)


@pytest.mark.parametrize(
    ("name", "copies"),
    [
        ("one layer", [("_forward", "W_T")]),
        ("two layers", [("_forward", "W1_T"), ("_forward", "W2_T")]),
        ("bidirectional", [("_forward", "W_f_T"), ("_forward", "W_b_T")]),
        ("many-to-one", [("_forward", "W_T")]),
        # row notation stores W as the rows' matrix: the forward reads it as it is, the backward its transpose
        ("row", [("loss_and_grads", "W_T")]),
        ("custom", [("_forward", "W_T")]),  # z_t's GEMM reads h_{t-1} at every step, as tanh's does
    ],
)
def test_which_weights_get_a_contiguous_copy(lowered, name, copies):
    assert [(function, copy) for function, copy, _ in lowered[name].copies] == copies


@pytest.mark.parametrize("name", [n for n in SPECS if n != "custom"])
def test_each_recurrent_step_adds_its_gemm_from_a_scratch(lowered, name):
    """The state is built on its input part: the recurrent GEMM goes through a one-step scratch."""
    low = lowered[name]
    for family in {home for home in low.in_place.values()}:
        for w in _steps(low, family)[2:]:
            (gemm,) = [op for op in w.ops if isinstance(op, L.Gemm)]
            (add,) = [op for op in w.ops if isinstance(op, L.Update) and op.op == "+"]
            assert gemm.per_step and gemm.out == f"{family}_gemm"
            assert add == L.Update(w.stmt.target, "+", gemm.out)


def test_dz_is_built_in_place_on_the_buffer_of_pre_dh(lowered):
    low = lowered["one layer"]
    assert low.in_place["pre_dh"] == "dz"
    pre = next(w for w in low.writes if w.stmt.target.name.startswith("pre_dh"))
    assert [type(op) for op in pre.ops] == [L.Take, L.TakePlace, L.Gemm]
    # every line reaches dz through the set's views of it (its steps' list, its rows): no name
    assert pre.ops[0] == L.Take("dz", ("T", "B", "n_h"), named=False)
    last, *earlier = _steps(low, "dz")
    fprime = lambda t: Step.of(FAMILIES["fprime"], t, last.stmt.target.shape[0])  # noqa: E731
    # f′ is written whole and read step by step: through the list made with the buffers
    assert last.ops == (L.Views("fprime", True), L.Views("dz", True), L.Update(last.stmt.target, "*", fprime(4)))
    assert all("fprime" in w.views for w in earlier)
    for w in earlier:
        t = w.stmt.step[1]
        dz_next = Step.of(FAMILIES["dz"], t + 1, w.stmt.target.shape[0])
        W_T = Transpose(low.copies[0][2])  # the backward reads W's transpose, no copy
        assert [op for op in w.ops if not isinstance(op, L.Take)] == [
            L.Gemm("dz_gemm", dz_next, W_T, None, True),
            L.Update(w.stmt.target, "+", "dz_gemm"),
            L.Update(w.stmt.target, "*", fprime(t)),
        ]


def test_class_targets_make_the_output_gradient_in_the_softmax_buffer(lowered):
    low = lowered["one layer"]
    assert low.class_targets and low.reuse == {"do": "yhat"}
    (w,) = [w for w in low.writes if w.stmt.target.name.startswith("do")]
    assert [type(op) for op in w.ops] == [L.Reuse, L.LossAndDelta]
    (loss,) = [w for w in low.writes if w.stmt.section == "loss"]
    probs, targets, logits = w.ops[1].args
    assert w.ops[1].loss == loss.stmt.target == low.fused_loss and w.ops[1].coeff == -1
    y, o = L.targets_dot_log_softmax(loss.stmt.expr.as_coeff_matrices()[1][1], low.softmax_of)
    assert (probs, targets, logits) == (low.softmax_of[o], y, o)
    plain = build(RNNSpec(T=4), skip=("loss_with_delta",)).lowered
    (w,) = [w for w in plain.writes if w.stmt.target.name.startswith("do")]
    assert [type(op) for op in w.ops] == [L.Reuse, L.Into] and w.ops[1].fn == "minus_targets"
    assert plain.fused_loss is None


def test_the_loss_is_not_moved_past_a_write_over_what_it_reads():
    """``loss_with_delta`` computes the loss at Δo's write: not when a buffer the loss reads (O's, Ŷ's) is
    given to another family before that."""
    plain = build(RNNSpec(T=4), skip=("loss_with_delta",)).lowered
    at = next(i for i, w in enumerate(plain.writes) if w.stmt.section == "loss") + 1
    for dead, fused in (("o", False), ("yhat", False), ("h", True)):
        between = replace(plain.writes[-1], ops=(L.Reuse("scratch", dead),))
        writes = plain.writes[:at] + (between,) + plain.writes[at:]
        assert (L.loss_with_delta(replace(plain, writes=writes)).fused_loss is not None) == fused, dead


LOSS_WITH_DELTA = {
    "one layer": RNNSpec(T=4),
    "many-to-one": RNNSpec(T=4, mapping="many-to-one"),
    "delayed": RNNSpec(T=5, delay=2),
    "two layers, bidirectional": RNNSpec(T=3, layers=2, bidirectional=True),
    "lstm": RNNSpec(T=3, cell="lstm"),
}


@pytest.mark.parametrize("name", LOSS_WITH_DELTA)
def test_the_loss_computed_with_its_delta_is_the_loss_computed_alone(name):
    """``loss_with_delta``: loss_and_grads computes E once, with Δo, and gives what the module without the
    pass gives (the loss to rounding, every gradient exactly), in both dtypes, for class indices and
    one-hot rows, where the targets' probabilities are ordinary, confident (1 - q below an ulp) and
    below 1e-30 (the careful log-softmax); ``loss`` alone is the same code either way."""
    spec = LOSS_WITH_DELTA[name]
    fused, plain = build(spec).module, build(spec, skip=("loss_with_delta",)).module
    grads_body = fused[fused.index("def loss_and_grads") : fused.index("\ndef ", fused.index("def loss_and_grads") + 1)]
    assert grads_body.count("_dot_log_softmax_and_delta(") == 1 and "_dot_log_softmax(" not in grads_body
    loss_body = lambda text: text[text.index("def loss(") : text.index("def loss_and_grads")]  # noqa: E731
    assert loss_body(fused) == loss_body(plain)
    fused, plain = (SimpleNamespace(**_exec(text)) for text in (fused, plain))
    rng = np.random.default_rng(7)
    n_x, n_y, B = 3, 4, 3
    targets = rng.integers(0, n_y, (spec.T - spec.delay, B) if spec.mapping == "many-to-many" else (B,))
    one_hot = np.eye(n_y)[targets]
    for dtype in (np.float64, np.float32):
        for scale in (1.0, 40.0, 400.0 if dtype == np.float64 else 150.0):
            params = {k: (0.5 * rng.standard_normal(v.shape)) for k, v in plain.init_params(n_x, 5, n_y).items()}
            params = {k: (scale * v if k == "V" else v).astype(dtype) for k, v in params.items()}
            xs = rng.standard_normal((spec.T, B, n_x)).astype(dtype)
            for y in (targets, one_hot.astype(dtype)):
                E, grads = fused.loss_and_grads(params, xs, y)
                E0, grads0 = plain.loss_and_grads(params, xs, y)
                assert E == pytest.approx(E0, rel=1e-13 if dtype == np.float64 else 1e-5), (dtype, scale)
                assert all(np.array_equal(grads[k], grads0[k]) for k in grads0), (dtype, scale)
                assert E == fused.loss(params, xs, y)  # loss() and loss_and_grads() give the same number


def _exec(text) -> dict:
    space = {}
    exec(compile(text, "<module>", "exec"), space)
    return space


# -- a masked network: the mask applied in place, no buffer the unmasked module does without --------


def _product_program(whole: bool) -> Program:
    """``δz_t := f′_t ∘ z̃_t`` for t = 1..T, ``f′ = tanh(z̃)`` written whole or step by step."""
    pre = [(r("pre_z", 1, T), A.mul(U, r("x", 1, T)))]
    if whole:
        pre.append((r("fprime", 1, T), A.Elementwise("tanh", r("pre_z", 1, T))))
    else:
        pre += [(s("fprime", t), A.Elementwise("tanh", s("pre_z", t))) for t in (1, 2, 3)]
    stmts = pre + [(s("dz", t), A.had(s("fprime", t), s("pre_z", t))) for t in (1, 2, 3)]
    stmts.append((MatrixSymbol("E", 1, 1), A.mul(A.ones(1, n_h), r("dz", 1, T), A.ones(A.B, 1))))
    spec = SimpleNamespace(T=T, loss_rule=SimpleNamespace(targets="values"))
    sections = ["forward"] * (len(stmts) - 1) + ["loss"]
    program = tuple(Stmt(tg, e, sec, i) for i, ((tg, e), sec) in enumerate(zip(stmts, sections)))
    return Program(SimpleNamespace(spec=spec), program, frozenset({("E", None)}))


@pytest.mark.parametrize("whole", [True, False])
def test_a_step_is_built_on_a_factor_written_whole_only(whole):
    """A product of stored steps is built in place on a factor that only it reads, as a sum on a term,
    where that factor is written whole before the steps (f′); one written step by step keeps its own."""
    program = _product_program(whole)
    places = L.steps_built_in_place(program, L.storage_of(program))
    assert places == ({"fprime": "dz"} if whole else {})
    if whole:
        low = L.lower(program)
        for w in low.writes:
            if w.stmt.step:
                body = [op for op in w.ops if not isinstance(op, (L.Take, L.TakePlace, L.Views))]
                assert body == [L.Update(w.stmt.target, "*", s("pre_z", w.stmt.step[1]))]


MASKED = {
    "masked": dict(masked=True),
    "masked, two layers, bidirectional": dict(masked=True, layers=2, bidirectional=True),
    "masked many-to-one": dict(masked=True, mapping="many-to-one", output="identity", loss="squared_error"),
    "masked, pre-padded relu": dict(masked=True, padding="pre", hidden="relu"),
}


@pytest.fixture(scope="module")
def masked():
    return {name: build(RNNSpec(T=4, **kw)).lowered for name, kw in MASKED.items()}


@pytest.mark.parametrize("name", ["masked", "masked, two layers, bidirectional", "masked, pre-padded relu"])
def test_a_masked_output_gradient_is_made_in_the_softmax_buffer(masked, name):
    """``(Ŷ - Y) ∘ (1 m)``: the difference in Ŷ's buffer as unmasked, then its padded rows zeroed there."""
    low = masked[name]
    assert low.reuse == {"do": "yhat"} and "do" not in low.buffers
    (w,) = [w for w in low.writes if w.stmt.target.name.startswith("do")]
    assert [type(op) for op in w.ops] == [L.Reuse, L.Into, L.Padded]
    assert w.ops[1].fn == "minus_targets" and w.ops[2].op == "0"


@pytest.mark.parametrize("name", MASKED)
def test_a_masked_dz_is_written_over_its_local_jacobian(masked, name):
    """``δz_t = δh_t ∘ f′_t``: δh_t has two readers (δz_t and the pass-on to δh_{t-1}), so it is not inlined
    as in the unmasked module; f′_t has one, and δz_t is one product in place on it, in f′'s buffer
    (named after δz, as the unmasked module's), with no buffer of δz's own."""
    low = masked[name]
    steps = [w for w in low.writes if w.stmt.step]
    sweeps = {w.stmt.step[0]: w.stmt.target.family.jacobian for w in steps if w.stmt.target.family.jacobian}
    sweeps = {dz: fprime.key for dz, fprime in sweeps.items() if fprime and fprime.key in low.storage}
    assert sweeps, "a masked network has a backward sweep with a local Jacobian"
    for dz, fprime in sweeps.items():
        assert low.in_place[fprime] == dz
        assert fprime not in low.buffers and dz in low.buffers
        for w in _steps(low, dz):
            (other,) = [f for f in w.stmt.expr.args if f.family.key != fprime]
            assert [op for op in w.ops if not isinstance(op, (L.Take, L.Views))] == [
                L.Update(w.stmt.target, "*", other)
            ]


@pytest.mark.parametrize(
    "name, carried",
    [
        ("masked", {"dh": False}),
        ("masked, two layers, bidirectional", {"dh1_f": False, "dh1_b": True, "dh2_f": False, "dh2_b": True}),
        ("masked, pre-padded relu", {"dh": False}),
        ("masked many-to-one", {}),  # its one loss counts for every sequence: a padded step's delta is not 0
    ],
)
def test_a_delta_passed_on_whole_is_added_only_where_a_padded_sequence_carries_it(masked, name, carried):
    """Each loss term weighted by its step's mask: the masked add of δh_t ∘ (1 - m_t) is guarded by the
    list of the steps whose padded sequences still reach a real step along the chain, made once per
    function before its first use; many-to-one keeps ``padded``."""
    low = masked[name]
    assert low.carried == carried
    ops = [op for w in low.writes for op in w.ops if isinstance(op, (L.Padded, L.Carried))]
    made = [op for op in ops if isinstance(op, L.Carried)]
    assert sorted(made, key=lambda op: op.name) == sorted(
        {L.Carried("carried_back" if back else "carried", back) for back in carried.values()}, key=lambda op: op.name
    )
    seen = set()
    for op in ops:
        if isinstance(op, L.Carried):
            seen.add(op.name)
        elif op.op == "+":
            family = op.dest.family.key
            want = ("carried_back" if carried[family] else "carried") if family in carried else "padded"
            assert op.guard == want and (want == "padded" or want in seen)
            # a backward chain's delta passes to the step after it
            assert (op.dest.t > op.expr.t) == carried.get(family, op.dest.t > op.expr.t)
        else:
            assert op.guard == "padded"


def _carried_by_loop(pad, reverse):
    """Per step, whether a sequence padded there has a real step after it (before it, ``reverse``)."""
    T, B = pad.shape[:2]
    later = (lambda t: range(t)) if reverse else (lambda t: range(t + 1, T))
    return [any(pad[t, b, 0] and any(not pad[s, b, 0] for s in later(t)) for b in range(B)) for t in range(T)]


@pytest.mark.parametrize("reverse", [False, True])
def test_the_steps_a_padded_sequence_carries_are_made_as_a_loop_finds_them(reverse):
    """The module's helper ``_carried`` against a loop, on masks with holes and padding at both ends."""
    from rnngen.printing.numpy import HELPERS

    space = {"np": np}
    exec(HELPERS["_carried"], space)  # noqa: S102 (the module's own source)
    rng = np.random.default_rng(5)
    for T, B in ((1, 1), (2, 3), (5, 4), (9, 7)):
        for _ in range(20):
            pad = rng.random((T, B, 1)) < rng.random()
            assert space["_carried"](pad, reverse=reverse) == _carried_by_loop(pad, reverse)


def test_one_hot_targets_are_read_as_rows():
    # without the fused gradient, the dense softmax Jacobian reads the targets' rows
    low = build(RNNSpec(T=3), skip=("fuse_output_gradient",)).lowered
    assert not low.class_targets
    assert all(op.fn != "minus_targets" for w in low.writes for op in w.ops if isinstance(op, L.Into))


def test_the_input_gradient_is_one_gemm_into_its_buffer(lowered):
    low = lowered["input gradient"]
    (w,) = [w for w in low.writes if w.stmt.target.name.startswith("dx")]
    assert w.ops[0] == L.Take("dx", ("T * B", "n_x"))
    assert isinstance(w.ops[1], L.Gemm) and not w.ops[1].per_step and w.ops[1].copy is None


def test_a_dead_buffer_is_reused_only_where_nothing_reads_it_later(lowered):
    low = lowered["identity output"]
    (w,) = [w for w in low.writes if w.stmt.target.name.startswith("do")]
    assert w.ops[0] == L.Reuse("do", "yhat")
    assert w.ops[1].fn == "subtract"


def test_the_lowering_imports_no_printer():
    """Decisions first, spelling after: a second printer reuses the lowering as it is (no import cycle)."""
    code = "import sys, rnngen.lower; print(sorted(m for m in sys.modules if m.startswith('rnngen.print')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(layers=2, bidirectional=True, input_grad=True),
        dict(hidden="x/(1+abs(x))", notation="row"),
        dict(masked=True, layers=2),
    ],
)
def test_the_optional_lowering_passes_switch_off_and_the_module_still_checks(kw):
    """Without buffer reuse and steps built in place, every value has a buffer of its own and a
    step's GEMM goes straight into the step (no scratch); a masked delta is passed on at every
    padded step; the module is as right as before."""
    built = build(RNNSpec(T=4, **kw), skip=tuple(p.__name__ for p in L.OPTIONAL))
    low = built.lowered
    assert low.reuse == {} and low.in_place == {} and low.scratches == [] and low.carried == {}
    assert not any(isinstance(op, (L.Reuse, L.TakePlace, L.Carried)) for w in low.writes for op in w.ops)
    report = verify.check_build(built)
    assert report.ok, report.failures


def test_the_printer_spells_every_form_an_operation_evaluates_into_its_destination():
    assert set(INTO) == set(INTO_FORMS)


@pytest.mark.parametrize("name", ["one layer", "bidirectional", "three layers, bidirectional", "row", "stacked"])
def test_the_row_views_are_of_buffers_in_the_set_and_each_is_read(lowered, name):
    low = lowered[name]
    assert low.row_views
    for family, lo, hi in low.row_views:
        st = low.storage[family]
        assert family in low.buffers and st.steps and st.first <= lo <= hi < st.first + st.count
    printer = NumpyPrinter.of(low)
    code = "\n".join(line for w in low.writes for line in printer.write(w))
    for run, n in low.row_views.items():
        assert f'buf["{printer.row_view(*run, n)[0]}"]' in code
    assert ".reshape(-1" not in code.replace("x.reshape(-1", "")  # no run of a buffer reshaped per call


@pytest.mark.parametrize("name", SPECS)
def test_a_family_read_by_step_reads_through_a_list_made_with_the_buffers(lowered, name):
    low = lowered[name]
    for w in low.writes:
        made = {op.family for op in w.ops if isinstance(op, L.Views)}
        for sym in A.symbols_in(w.stmt.expr):
            step = L.step_of(sym)
            family = step and low.homes.get(step[0], step[0])
            if family in low.buffers and low.storage[family].steps:
                assert family in w.views | made, f"{w.stmt.target} reads {sym} by indexing the array"


@pytest.mark.parametrize("name", SPECS)
def test_a_family_with_its_own_buffer_reads_the_list_of_steps_made_with_the_buffers(lowered, name):
    """No list() per call of a family whose buffer is in the set (δh_0 taken and listed in one statement)."""
    low = lowered[name]
    for w in low.writes:
        for op in w.ops:
            if isinstance(op, L.Views):
                assert op.with_buffers == (op.family in low.buffers), (w.stmt.target, op)


def test_a_bias_repeated_over_steps_of_a_buffer_of_its_own_is_filled_into_it():
    """The GRU's ``Z_hñ = b_hn 1ᵀ`` over steps that no place of its reader holds (the top backward chain of a
    many-to-one network computes step T only): ``b_hn`` is a vector to the array library, so the value is
    filled into a buffer of the run's shape, not kept as the library's value (which reshaping cannot make)."""
    spec = RNNSpec(T=3, cell="gru", layers=2, bidirectional=True, mapping="many-to-one")
    result = build(spec)
    (write,) = [w for w in result.lowered.writes if str(w.stmt.target).startswith("pre_zhn2_b")]
    assert A.is_repeated_column(write.stmt.expr)
    assert [type(op).__name__ for op in write.ops] == ["Take", "Assign"] and write.ops[-1].form == "fill"
    report = verify.check_build(result)
    assert report.ok, report.failures


@pytest.mark.parametrize(
    "spec", [RNNSpec(T=3, cell="lstm"), RNNSpec(T=3, cell="gru"), RNNSpec(T=3, hidden="x/(1+abs(x))")], ids=str
)
def test_every_gemm_of_a_recurrence_on_its_previous_step_reads_a_contiguous_copy(spec):
    """Each gate of a gated cell (and a custom activation's z_t) multiplies h_{t-1} at every step: like
    the Elman cell's own GEMM, it reads its weight's transpose from an array made once per call, not the
    strided view W_i.T (measured at the medium workload in float32: the LSTM module 0.85x the time); the
    gates' weights side by side in one such array, one GEMM per step."""
    low = build(spec).lowered
    cycles = {key: r.families for r in low.program.recurrences for key in r.families}
    recurrent = [
        op
        for w in low.writes
        if w.stmt.step and w.stmt.step[0] in cycles
        for op in w.ops
        if isinstance(op, L.Gemm) and op.per_step and L.family_of(op.data) in cycles[w.stmt.step[0]]
        if w.function == "_forward"  # the backward's W_·ᵀ δz is W_· as it is stored: contiguous already
    ]
    if spec.cell == "elman":
        assert len({op.param for op in recurrent}) == 1 and all(op.copy is not None for op in recurrent)
    else:  # the gates' weights side by side, in one array made once per call (side_by_side)
        gates = {"lstm": 4, "gru": 3}[spec.cell]
        assert all(isinstance(op.param, Stack) for op in recurrent) and len(recurrent) == spec.T
        assert all(op.param.form == "columns" and len(op.param.params) == gates for op in recurrent)


def test_an_activation_of_a_stored_value_is_applied_straight_into_its_destination():
    """The LSTM's ``φ_t = tanh(c_t)`` reads the memory cell's step, which stays stored: one call from it into
    ``φ_t`` (``np.tanh(cell_[t], out=cact_[t - 1])``), not a copy of ``c_t`` and then ``tanh`` in place."""
    lowered = build(RNNSpec(T=3, cell="lstm")).lowered
    writes = [w for w in lowered.writes if w.stmt.step and w.stmt.step[0] == "cact"]
    assert [w.stmt.step[1] for w in writes] == [1, 2, 3]
    for w in writes:
        ops = [op for op in w.ops if not isinstance(op, (L.Take, L.TakePlace, L.Views))]
        assert ops == [L.Apply(w.stmt.target, "tanh", w.stmt.expr.arg)], ops
    printer = NumpyPrinter.of(lowered)
    assert printer.write(writes[1])[-1] == "np.tanh(cell_[2], out=cact_[1])"
