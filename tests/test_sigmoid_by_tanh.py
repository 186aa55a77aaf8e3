"""A gated step's sigmoid gates through one tanh with its other gates (``sigmoid_by_tanh``): the rewrite on
the lowered program, where it declines, the module's numbers against the module without it, and, with
gates saturated far below an ulp of 1, against an independent LSTM with an exact sigmoid."""

import sys
from dataclasses import replace

import numpy as np
import pytest
from sympy import MatrixSymbol
from test_gated import _lstm_bptt

from rnngen.families import family
from rnngen.operations import Apply, ByGate, FromTanh, Gates, Gemm, Lookup, Stack, Update, flat
from rnngen.pipeline import build
from rnngen.sigmoid_by_tanh import sigmoid_by_tanh
from rnngen.spec import RNNSpec

SPECS = [
    RNNSpec(T=3, cell="lstm"),
    RNNSpec(T=3, cell="gru"),
    RNNSpec(T=3, cell="gru", gru_reset="before"),
    RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True),
    RNNSpec(T=3, cell="gru", gru_reset="before", bidirectional=True, notation="row"),
    RNNSpec(T=4, cell="lstm", masked=True, mapping="many-to-one"),
    RNNSpec(T=4, cell="gru", masked=True, padding="pre"),
    RNNSpec(T=3, cell="lstm", output="sigmoid", loss="binary_cross_entropy", hidden_bias=False),
    RNNSpec(T=3, cell="gru", layers=2, input_grad=True),
    RNNSpec(T=4, cell="lstm", truncate=2),
]
#: Per cell: the gates of a step one tanh covers, and the sigmoid gates among them (the block's order:
#: the LSTM's g, i, f, o; the GRU's n, r, z and W_n h's part).
RUNS = {"lstm": ((0, 4), (1, 4)), "gru": ((1, 3), (1, 3))}


def _module(text):
    module = type(sys)("sigmoid_by_tanh")
    exec(text, module.__dict__)
    return module


def ops_of(lowered) -> list:
    return [op for w in lowered.writes for op in flat(w.ops)]


def _stacked_input(lowered, block) -> bool:
    """True when the block's gates take their input parts from one stacked product (not gathered halves)."""
    return any(
        isinstance(op, (Gemm, Lookup)) and isinstance(op.out, Gates) and op.out.block == block and op.out.t is None
        for w in lowered.writes
        for op in flat(w.ops)
    )


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_each_step_takes_one_tanh_and_its_stacks_are_halved(spec):
    """Where a chain's gates are one stacked product, each step applies one tanh over its gates and one
    FromTanh over its sigmoid gates, and no sigmoid; the input and recurrent stacks halve exactly those
    gates. A chain whose input is gathered from two halves keeps its sigmoids and its stacks whole."""
    low = build(spec).lowered
    (lo, hi), sigmoids = RUNS[spec.cell]
    stacks = [op for w in low.writes for op in flat(w.ops) if isinstance(op, Stack)]
    rewritten = 0
    for block in (b for b in low.blocks if not family(b.family).is_adjoint):
        ops = [op for w in low.writes for op in w.ops if isinstance(op, (Apply, FromTanh))]
        ops = [op for op in ops if isinstance(op.dest, Gates) and op.dest.block == block.family]
        mine = [s for s in stacks if s.name.startswith(f"{block.family}_") and s.form != "rows"]
        if not _stacked_input(low, block.family):
            assert any(isinstance(op, Apply) and op.fn == "sigmoid" for op in ops)
            assert all(s.halved is None for s in mine)
            continue
        rewritten += 1
        steps = sorted({op.dest.t for op in ops})
        assert steps == list(range(1, spec.T + 1))
        for t in steps:
            at_t = [op for op in ops if op.dest.t == t]
            assert at_t == [Apply(Gates(block.family, lo, hi, t, len(block.members)), "tanh"), FromTanh(at_t[1].dest)]
            assert (at_t[1].dest.lo, at_t[1].dest.hi) == sigmoids
        assert {s.form for s in mine} == {"layers", "columns"}
        # each stack's halved parameters are the sigmoid gates' own: a stack's parameters are the gates it
        # writes, from the first gate its product writes
        for s in mine:
            if s.form == "layers":  # the input product, into the gates of all steps
                into = [op.out for op in ops_of(low) if isinstance(op, Gemm) and op.param == s]
            else:  # a step's recurrent product, through a scratch added to the step's gates
                into = [op.dest for op in ops_of(low) if isinstance(op, Update) and isinstance(op.expr, ByGate)]
                into = [g for g in into if g.block == block.family]
            first = into[0].lo
            assert s.halved == (sigmoids[0] - first, sigmoids[1] - first)
    # every chain but those of a bidirectional network's upper layers, whose input is two halves
    assert rewritten == (2 if spec.bidirectional else spec.layers)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_the_module_is_the_module_without_the_pass(spec):
    """Loss, every gradient and forward()'s arrays agree with the module lowered without the pass to
    rounding, in float64 and float32, for float inputs and (where taken) token ids."""
    builds = build(spec), build(spec, skip=("sigmoid_by_tanh",))
    from_tanh = [any(isinstance(op, FromTanh) for w in b.lowered.writes for op in w.ops) for b in builds]
    assert from_tanh == [True, False]
    new, old = (_module(b.module) for b in builds)
    rng = np.random.default_rng(2)
    n_h = 5 if spec.layers == 1 else (5, 4)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        shapes = old.init_params(3, n_h, 4)
        params = {k: (0.7 * rng.standard_normal(v.shape)).astype(dtype) for k, v in shapes.items()}
        xs = rng.standard_normal((spec.T, 2, 3)).astype(dtype)
        shape = (spec.T, 2) if spec.mapping == "many-to-many" else (2,)
        if spec.output == "softmax":
            targets = rng.integers(0, 4, shape)
        else:  # binary targets, one per output
            targets = rng.integers(0, 2, (*shape, 4)).astype(dtype)
        kw = {"lengths": np.array([spec.T, spec.T - 2])} if spec.masked else {}
        inputs = [xs] + ([rng.integers(0, 3, (spec.T, 2))] if old.TOKEN_IDS else [])
        for x in inputs:
            E, grads = new.loss_and_grads(params, x, targets, **kw)
            E0, grads0 = old.loss_and_grads(params, x, targets, **kw)
            scale = max(1.0, abs(float(E0)))
            assert abs(float(E) - float(E0)) <= tol * scale
            for k in grads0:
                assert np.allclose(grads[k], grads0[k], rtol=tol, atol=tol * scale), k
            out, out0 = new.forward(params, x, **kw), old.forward(params, x, **kw)
            for k in out0:
                assert np.allclose(out[k], out0[k], rtol=tol, atol=tol), k


def test_saturated_gates_are_right_to_an_ulp_of_one():
    """Gates driven to |a| of 20-200 (σ(a) far below an ulp of 1 at the negative end): the states, the
    loss and every gradient against an LSTM written out with an exact sigmoid, to a few ulps of 1 in the
    states and of the largest gradient, in float64; and in float32 against the same float64 LSTM."""
    spec = RNNSpec(T=5, cell="lstm")
    module = _module(build(spec).module)
    rng = np.random.default_rng(4)
    shapes = module.init_params(3, 4, 3)
    params = {k: 25.0 * rng.standard_normal(v.shape) for k, v in shapes.items()}
    params["V"] /= 25.0
    xs, ys = rng.standard_normal((5, 3, 3)), rng.integers(0, 3, (5, 3))
    pre = np.concatenate([xs[0] @ params[f"U_{k}"].T + params[f"b_{k}"] for k in "ifo"])
    assert pre.min() < -40 and np.mean(np.abs(pre) > 20) > 0.5  # saturated, far below an ulp of 1
    with np.errstate(over="ignore"):  # the exact sigmoid's exp(-a) overflows to inf, its 1 / inf is 0
        E_ref, G_ref = _lstm_bptt(params, xs, ys)
        h_ref = _states(params, xs)
    for dtype, ulps in ((np.float64, 8), (np.float32, 64)):
        eps = np.finfo(dtype).eps
        P = {k: v.astype(dtype) for k, v in params.items()}
        E, G = module.loss_and_grads(P, xs.astype(dtype), ys)
        h = module.forward(P, xs.astype(dtype))["h"]
        assert np.abs(h - h_ref).max() <= ulps * eps
        assert abs(E - E_ref) <= ulps * eps * abs(E_ref)
        for k in G_ref:
            assert np.abs(G[k] - G_ref[k]).max() <= ulps * eps * max(1.0, np.abs(G_ref[k]).max()), k


def _states(P, xs):
    """The states h_1..h_T of a one-layer LSTM, an exact sigmoid, float64."""
    h, c, out = np.tile(P["h0"], (xs.shape[1], 1)), np.tile(P["c0"], (xs.shape[1], 1)), []
    for x in xs:
        pre = {k: x @ P[f"U_{k}"].T + h @ P[f"W_{k}"].T + P[f"b_{k}"] for k in "ifgo"}
        i, f, o = (1 / (1 + np.exp(-pre[k])) for k in "ifo")
        c = f * c + i * np.tanh(pre["g"])
        h = o * np.tanh(c)
        out.append(h)
    return np.array(out)


def _lowered_without_the_pass():
    return build(RNNSpec(T=3, cell="lstm"), skip=("sigmoid_by_tanh",)).lowered


#: Writes of a sigmoid gate outside the block's products, each added to f_2's write: the step's gate by its
#: own name, the block's buffer by name or by gate, and the gate's whole family.
ELSEWHERE = {
    "the step": lambda gate: Update(gate, "*", gate),
    "the buffer": lambda gate: Update("gates", "*", 2),
    "the buffer by gate": lambda gate: Update(ByGate("gates", 4, 5), "*", 2),
    "the family": lambda gate: Update(MatrixSymbol("gi", 5, 2), "*", 2),
}


@pytest.mark.parametrize("written", ELSEWHERE.values(), ids=list(ELSEWHERE))
def test_the_pass_declines_a_block_whose_sigmoid_gates_are_written_elsewhere(written):
    """A sigmoid gate written outside the block's products: the halved stacks would leave it a / 2 there, or
    the write would see a / 2, so the pass changes nothing."""
    plain = _lowered_without_the_pass()
    assert sigmoid_by_tanh(plain).writes != plain.writes  # it applies as lowered
    writes = list(plain.writes)
    at = next(k for k, w in enumerate(writes) if str(w.stmt.target) == "gf_2")
    writes[at] = replace(writes[at], ops=(*writes[at].ops, written(writes[at].stmt.target)))
    changed = replace(plain, writes=tuple(writes))
    assert sigmoid_by_tanh(changed).writes == changed.writes


def test_the_pass_declines_a_step_whose_gates_keep_their_own_sigmoid():
    """One step whose sigmoid gates are squashed one gate at a time (not joined by ``side_by_side``): the
    stacks are the same for every step, so halving them would be wrong there, and nothing changes."""
    plain = _lowered_without_the_pass()
    writes = list(plain.writes)
    for k, w in enumerate(writes):
        ops = []
        for op in w.ops:
            if isinstance(op, Apply) and isinstance(op.dest, Gates) and op.fn == "sigmoid" and op.dest.t == 2:
                ops += [Apply(replace(op.dest, lo=g, hi=g + 1), "sigmoid") for g in range(op.dest.lo, op.dest.hi)]
            else:
                ops.append(op)
        writes[k] = replace(w, ops=tuple(ops))
    changed = replace(plain, writes=tuple(writes))
    assert sigmoid_by_tanh(changed).writes == changed.writes


def test_the_pass_declines_stacks_that_something_else_reads():
    """The recurrent stack read by one more product in the backward sweep: halving it would halve that
    product too, so nothing changes."""
    plain = _lowered_without_the_pass()
    product = next(
        op
        for w in plain.writes
        for op in w.ops
        if isinstance(op, Gemm) and isinstance(op.param, Stack) and op.param.form == "columns"
    )
    writes = list(plain.writes)
    at = next(k for k, w in enumerate(writes) if w.function == "loss_and_grads")
    writes[at] = replace(writes[at], ops=(*writes[at].ops, replace(product, out="dh_gemm")))
    changed = replace(plain, writes=tuple(writes))
    assert sigmoid_by_tanh(changed).writes == changed.writes
