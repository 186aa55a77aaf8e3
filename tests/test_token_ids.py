"""Integer token ids as inputs (issue 17, item 5): the module given ids equals the module given the
one-hot rows they stand for (a path the gradient checks verify), for every structure, in both
dtypes, with repeated ids and a carried state; bad ids are refused in one line; the check that
``verify.check_module`` runs catches a scatter-add that drops a repeated id's rows."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen import lower as L
from rnngen import render, verify
from rnngen.families import FAMILIES, Run
from rnngen.pipeline import build
from rnngen.program import Program, Stmt
from rnngen.reference import relative_error, sequence
from rnngen.spec import RNNSpec

STRUCTURES = [
    RNNSpec(T=4),
    RNNSpec(T=3, notation="row", names=("W", "U", "V"), hidden_bias=False, output_bias=False),
    RNNSpec(T=3, notation="stacked", hidden_bias=False, output_bias=False),
    RNNSpec(T=3, notation="stacked-row"),
    RNNSpec(T=3, bidirectional=True),
    RNNSpec(T=3, layers=2),
    RNNSpec(T=3, layers=3, bidirectional=True, notation="stacked"),
    RNNSpec(T=4, mapping="one-to-many"),
    RNNSpec(T=4, mapping="many-to-one", output="sigmoid", loss="binary_cross_entropy"),
    RNNSpec(T=3, mapping="many-to-one", notation="row", output="identity", loss="squared_error", hidden_bias=False),
    RNNSpec(T=4, delay=2),
    RNNSpec(T=5, truncate=2),
    RNNSpec(T=4, masked=True),
]
DTYPES = (np.float64, np.float32)
#: Rounding only: the lookup and the one-hot product give the same sums, maybe in another order.
ROUNDING = 64


def _draw(m, dtype, n_x=4, B=3, seed=0):
    """Parameters and targets in ``dtype``, token ids with the last the same as the first (a repeated
    id on purpose), the one-hot rows they stand for, and a state per sequence for every chain."""
    params, xs, targets = verify.random_problem(m, sizes=(n_x, 5, 3, B), seed=seed)
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(0, n_x, np.shape(xs)[:-1])
    ids.reshape(-1)[-1] = ids.reshape(-1)[0]
    params = {k: v.astype(dtype) for k, v in params.items()}
    targets = targets.astype(dtype) if targets.dtype.kind == "f" else targets
    state = {k: rng.standard_normal((B, *params[k].shape)).astype(dtype) for k in m.INITIAL_STATES}
    return params, ids, np.eye(n_x, dtype=dtype)[ids], targets, state


def _figures(m, params, xs, targets, state=None, mask=None) -> dict:
    """E, every gradient, the final state and every forward() output, flat by name."""
    E, grads, final = m.loss_and_grads(params, xs, targets, state=state, mask=mask, return_state=True)
    out = {"E": E, "loss()": m.loss(params, xs, targets, state=state, mask=mask)}
    for name, g in grads.items():
        out.update({f"state {k}": v for k, v in g.items()} if name == "state" else {name: g})
    out.update({f"final {k}": v for k, v in final.items()} if isinstance(final, dict) else {"final": final})
    out.update({f"forward {k}": v for k, v in m.forward(params, xs, state=state, mask=mask).items()})
    return out


def _same(ids_figures: dict, rows_figures: dict, dtype):
    assert ids_figures.keys() == rows_figures.keys()
    bound = ROUNDING * np.finfo(dtype).eps
    for name, value in ids_figures.items():
        assert np.asarray(value).dtype == dtype, name
        assert relative_error(value, rows_figures[name]) <= bound, name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("spec", STRUCTURES, ids=lambda s: s.name)
def test_ids_give_what_their_one_hot_rows_give(module_of, spec, dtype):
    m = module_of(spec)
    assert m.TOKEN_IDS
    params, ids, rows, targets, state = _draw(m, dtype)
    # a masked module: sequences of T, 2 and 1 real steps (post-padding)
    mask = np.arange(spec.T)[:, None] < np.array([spec.T, 2, 1]) if spec.masked else None
    _same(_figures(m, params, ids, targets, mask=mask), _figures(m, params, rows, targets, mask=mask), dtype)
    _same(_figures(m, params, ids, targets, state, mask), _figures(m, params, rows, targets, state, mask), dtype)
    # one sequence: ids (T,), or () for the one input of a one-to-many network
    single = [sequence(m.SPEC, a, 1) for a in (ids, rows)]
    y = np.take(targets, 1, axis=0 if spec.mapping == "many-to-one" else 1)
    mask = None if mask is None else mask[:, 1]
    _same(_figures(m, params, single[0], y, mask=mask), _figures(m, params, single[1], y, mask=mask), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_many_ids_are_summed_by_sorting_and_repeated_ids_add_up(module_of, dtype):
    m = module_of(RNNSpec(T=4))
    params, ids, rows, targets, _ = _draw(m, dtype, n_x=300, B=8)  # a vocabulary above 256: sort + reduceat
    ids[:, :4] = 7  # one id in many rows
    rows = np.eye(300, dtype=dtype)[ids]
    _same(_figures(m, params, ids, targets), _figures(m, params, rows, targets), dtype)


def test_the_dtype_is_the_parameters(module_of):
    m = module_of(RNNSpec(T=3))
    params, ids, _, targets, _ = _draw(m, np.float32)
    E, grads = m.loss_and_grads(params, ids, targets)
    assert E.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    mixed = {**params, "W": params["W"].astype(np.float64)}  # float32 only if every parameter is
    E, grads = m.loss_and_grads(mixed, ids.astype(np.uint8), targets)
    assert E.dtype == np.float64 and all(g.dtype == np.float64 for g in grads.values())


#: The xs shapes a module that takes token ids expects, float rows first: the message of any wrong shape.
SHAPES = r"expected \(T, n_x\) = \(4, 4\) or \(T, B, n_x\) = \(4, B, 4\), or integer token ids \(T,\) or \(T, B\)"
BAD = [
    (RNNSpec(T=4), lambda ids: ids + 4, r"xs \(token ids\) must lie in 0\.\.3 \(n_x from params\['U'\]\), got "),
    (RNNSpec(T=4), lambda ids: ids - 1, r"xs \(token ids\) must lie in 0\.\.3"),
    (RNNSpec(T=4), lambda ids: ids[:3], r"xs has shape \(3, 3\); " + SHAPES),
    (RNNSpec(T=4), lambda ids: ids[..., None], r"xs has shape \(4, 3, 1\); " + SHAPES),
    (RNNSpec(T=4), lambda ids: ids[:, :0], r"xs has shape \(4, 0\): no sequences \(B = 0\)"),
    (RNNSpec(T=4), lambda ids: ids > 1, r"xs has dtype bool; expected float32 or float64 rows, or integer token ids"),
    (RNNSpec(T=4), lambda ids: ids.astype(float), r"xs has shape \(4, 3\); " + SHAPES),  # ids must be integers
    (
        RNNSpec(T=4, mapping="one-to-many"),
        lambda ids: ids[None],
        r"expected the one input \(n_x,\) = \(4,\) or \(B, n_x\) = \(B, 4\), or integer token ids \(\) or \(B,\)",
    ),
    (RNNSpec(T=3, input_grad=True), lambda ids: ids, r"token ids have no dE/dx, which this module returns"),
]


@pytest.mark.parametrize("spec, bad, message", BAD, ids=lambda v: getattr(v, "name", None))
def test_bad_ids_are_refused_in_one_line(module_of, spec, bad, message):
    m = module_of(spec)
    params, ids, _, targets, _ = _draw(m, np.float64)
    for call in (lambda x: m.loss_and_grads(params, x, targets), lambda x: m.forward(params, x)):
        with pytest.raises(ValueError, match=message) as raised:
            call(bad(ids))
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "spec, weight",
    [
        (RNNSpec(T=4), "U"),  # an id picks a column of U (n_h, n_x)
        (RNNSpec(T=4, notation="row", names=("W", "U", "V")), "W"),  # a row of the input weight W (n_x, n_h)
        (RNNSpec(T=4, notation="stacked"), "W"),  # a column of W's block W_x
    ],
    ids=lambda v: getattr(v, "name", v),
)
def test_an_id_out_of_range_is_named_with_the_range_it_left(module_of, spec, weight):
    m = module_of(spec)
    params, ids, _, targets, _ = _draw(m, np.float64)
    ids[1, 0], ids[2, 2] = -2, 9
    message = rf"^xs \(token ids\) must lie in 0\.\.3 \(n_x from params\['{weight}'\]\), got -2\.\.9$"
    with pytest.raises(ValueError, match=message):
        m.loss_and_grads(params, ids, targets)


@pytest.mark.parametrize("spec", [RNNSpec(T=3), RNNSpec(T=3, notation="stacked")], ids=lambda s: s.name)
def test_float_ids_are_told_that_ids_are_integers_and_not_blamed_on_the_parameters(module_of, spec):
    """A stacked module read n_x off float xs, so float ids (T, B) made it blame ``params['W']``."""
    m = module_of(spec)
    params, ids, _, targets, _ = _draw(m, np.float64)
    expected = (
        r"; expected \(T, n_x\) = \(3, 4\) or \(T, B, n_x\) = \(3, B, 4\), "
        r"or integer token ids \(T,\) or \(T, B\): this module is unrolled for T = 3$"
    )
    for xs, y, shape in ((ids, targets, r"\(3, 3\)"), (ids[:, 0], targets[:, 0], r"\(3,\)")):
        for dtype in DTYPES:
            with pytest.raises(ValueError, match=r"^xs has shape " + shape + expected):
                m.loss_and_grads(params, xs.astype(dtype), y)


def test_the_sizes_are_read_from_typed_sources():
    """n_x of the stacked notation is W's width less n_h: one typed source spelled two ways (by the
    parameters' names in the functions, as items of ``_prepare``'s list in its checks)."""
    graph = build(RNNSpec(T=3, notation="stacked-row", bidirectional=True)).derivation.graph
    params = graph.params
    sources = render._size_sources(params, graph.network.sizes)
    assert sources["B"] == render.SizeSource("x", 1)
    assert sources["n_h"] == render.SizeSource("W_f", 1)  # (n_h + n_x, n_h): stored transposed
    assert sources["n_x"] == render.SizeSource("W_f", 0, ("n_h",))
    assert render._read_size(sources, "n_x") == "W_f.shape[0] - W_f.shape[1]"
    at = list(params).index("W_f")
    spelled = render._read_size(sources, "n_x", lambda name: f"arrays[{list(params).index(name)}]")
    assert spelled == f"arrays[{at}].shape[0] - arrays[{at}].shape[1]"


def test_a_small_integer_type_cannot_wrap_a_negative_id_into_range(module_of):
    m = module_of(RNNSpec(T=4))
    params, ids, _, targets, _ = _draw(m, np.float64, n_x=300)
    ids = ids.astype(np.int8) % 100
    ids[0, 0] = -1  # 255 as uint8: below 300, a valid id if read unsigned
    with pytest.raises(ValueError, match=r"must lie in 0\.\.299"):
        m.loss_and_grads(params, ids, targets)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.299"):
        m.loss_and_grads(params, ids.astype(">i2"), targets)  # and in the other byte order


def test_a_stacked_matrix_with_no_room_for_the_inputs_is_refused(module_of):
    m = module_of(RNNSpec(T=3, notation="stacked", hidden_bias=False, output_bias=False))
    params, ids, _, targets, _ = _draw(m, np.float64)
    narrow = {**params, "W": params["W"][:, :5]}  # n_h + n_x columns with n_h = 5: n_x = 0
    message = r"params\['W'\] has shape \(5, 5\); expected \(n_h, n_h \+ n_x\) with n_x at least 1"
    with pytest.raises(ValueError, match=message):
        m.loss_and_grads(narrow, ids, targets)


def test_an_input_gradient_module_takes_float_rows_only():
    b = build(RNNSpec(T=3, input_grad=True))
    assert not b.lowered.token_ids
    assert not any(isinstance(op, L.ByInput) for w in b.lowered.writes for op in w.ops)
    assert "float rows only (an integer token id has no dE/dx)" in b.module  # its docstring says so


def test_the_lowering_reads_the_inputs_in_both_forms():
    lowered = build(RNNSpec(T=3)).lowered
    assert lowered.token_ids
    (forward,) = [w for w in lowered.writes if w.stmt.section == "forward" and "x" in dict(w.stmt.reads)]
    gradient = lowered.write_of("dU")
    (by_input,) = [op for op in forward.ops if isinstance(op, L.ByInput)]
    assert [type(op) for op in by_input.rows] == [L.Gemm] and [type(op) for op in by_input.ids] == [L.Lookup]
    (by_input,) = gradient.ops
    assert [type(op) for op in by_input.rows] == [L.Assign] and [type(op) for op in by_input.ids] == [L.IdSums]
    assert not by_input.ids[0].row
    row = build(RNNSpec(T=3, notation="row", names=("W", "U", "V"))).lowered.write_of("dW").ops[0]
    assert row.ids[0].row  # X Δzᵀ: the rows summed by id, not transposed


def _fresh(spec, path):
    """A module of ``spec`` of its own (not the session's cached one), loaded from ``path``."""
    path.write_text(build(spec).module, encoding="utf-8")
    return verify.load_module(path)


def test_the_check_compares_ids_with_their_one_hot_rows_and_catches_a_scatter_that_drops_repeats(tmp_path):
    spec = RNNSpec(T=4)
    report = verify.check_module(_fresh(spec, tmp_path / "right.py"))
    assert report.ok and {"float64 token ids", "float32 token ids"} <= set(report.paths)
    # `=` where `+=` belongs: a repeated id keeps only its last row (verify draws repeated ids)
    wrong = _fresh(spec, tmp_path / "wrong.py")

    def dropped(d, ids, n, columns):
        sums = np.zeros((n, d.shape[1]), d.dtype)
        sums[ids] = d
        return np.ascontiguousarray(sums.T) if columns else sums

    wrong._id_sums = dropped
    report = verify.check_module(wrong)
    failed = {name for name, result in report.paths.items() if result.failures}
    assert not report.ok and failed == {"float64 token ids", "float32 token ids"}, failed
    assert re.search(r"token ids", " ".join(map(str, report.failures)))


def _hand_built(loss_reads_x: bool):
    """pre_z = U X for all steps at once; the loss reads pre_z, or X itself (not by a lookup's form)."""
    T, (n_x, n_h) = 2, sp.symbols("n_x n_h", integer=True, positive=True)
    x, pre_z = Run.of(FAMILIES["x"], 1, T, n_x), Run.of(FAMILIES["pre_z"], 1, T, n_h)
    read, n = (x, n_x) if loss_reads_x else (pre_z, n_h)
    stmts = [
        Stmt(pre_z, A.mul(MatrixSymbol("U", n_h, n_x), x), "forward", 0),
        Stmt(MatrixSymbol("E", 1, 1), A.mul(A.ones(1, n), A.had(read, read), A.ones(A.B, 1)), "loss", 1),
    ]
    spec = SimpleNamespace(T=T, loss_rule=SimpleNamespace(targets="values"))
    return Program(SimpleNamespace(spec=spec), tuple(stmts), frozenset({("E", None), ("pre_z", 1)}))


def test_a_program_that_reads_the_inputs_otherwise_takes_float_rows_only():
    assert L.lower(_hand_built(loss_reads_x=False)).token_ids
    lowered = L.lower(_hand_built(loss_reads_x=True))  # X ∘ X: no form of a token id
    assert not lowered.token_ids
    assert not any(isinstance(op, L.ByInput) for w in lowered.writes for op in w.ops)
