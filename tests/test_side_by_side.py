"""The gates of a gated cell in one buffer, one product each (``side_by_side``): the rule on the lowered
program, the layout of the module's buffers, and the module's numbers against the same module lowered
without the pass (itself checked against the exact oracle and by finite differences elsewhere)."""

import sys
from dataclasses import replace

import numpy as np
import pytest

from rnngen import algebra as A
from rnngen import verify
from rnngen.families import family, step_of
from rnngen.operations import (
    Apply,
    ByInput,
    Gates,
    Gather,
    Gemm,
    Joined,
    Stack,
    Take,
    Update,
    Views,
    WithOnes,
    flat,
)
from rnngen.pipeline import build
from rnngen.side_by_side import side_by_side
from rnngen.spec import RNNSpec

GATED = [
    RNNSpec(T=3, cell="lstm"),
    RNNSpec(T=3, cell="gru"),
    RNNSpec(T=3, cell="gru", gru_reset="before"),
    RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True),
    RNNSpec(T=3, cell="gru", layers=2, input_grad=True),
    RNNSpec(T=3, cell="gru", gru_reset="before", bidirectional=True, notation="row"),
    RNNSpec(T=4, cell="lstm", masked=True, mapping="many-to-one"),
    RNNSpec(T=4, cell="gru", masked=True, padding="pre"),
]
#: One input at the first step: the first layer's gates have no input product over all steps, and that
#: step's input parts are gathered before its gates' one recurrent product.
ONE_TO_MANY = [
    RNNSpec(T=3, cell="lstm", mapping="one-to-many"),
    RNNSpec(T=3, cell="gru", mapping="one-to-many", layers=2),
]
#: Each cell's gates that multiply h_{t-1} by a weight of their own, and those with an input product.
RECURRENT = {("lstm", None): 4, ("gru", "after"): 3, ("gru", "before"): 2}
INPUT = {"lstm": 4, "gru": 3}


def _module(text):
    module = type(sys)("side_by_side")
    exec(text, module.__dict__)
    return module


def _chains(lowered):
    """Each forward block (one per chain, ``gates``, ``gates1_f``, ...), by its family: not the deltas' ones."""
    return {b.family: b for b in lowered.blocks if not family(b.family).is_adjoint}


@pytest.mark.parametrize("spec", [*GATED, *ONE_TO_MANY], ids=str)
def test_each_steps_gates_are_one_product_forward_and_back(spec):
    """Per chain: one input product over all steps for the gates with one (where the input is one array),
    one GEMM per step for every gate that multiplies h_{t-1}, and one GEMM per step back into δh_{t-1};
    no gate keeps a product of its own there."""
    low = build(spec).lowered
    chains = 2 if spec.bidirectional else 1
    forward = _chains(low)
    assert len(forward) == chains * spec.layers
    recurrent = RECURRENT[spec.cell, spec.gru_reset]
    steps = {}  # block -> the steps of its one recurrent GEMM
    for w in low.writes:
        for op in flat(w.ops):
            if isinstance(op, Gemm) and isinstance(op.param, Stack) and op.param.form == "columns":
                assert len(op.param.params) == recurrent
                steps.setdefault(op.out, []).append(step_of(op.data)[1])
    assert len(steps) == chains * spec.layers and all(len(s) == len(set(s)) == spec.T for s in steps.values())
    # no gate's own product on h_{t-1} is left in the forward sweep: every one went into a stacked GEMM
    states = {step_of(op.data)[0] for w in low.writes for op in w.ops if isinstance(op, Gemm) and op.out in steps}
    gates = {m for b in forward.values() for m in b.members}
    for w in low.writes:
        if w.function == "_forward" and w.stmt.step and w.stmt.step[0] in gates:
            for op in w.ops:
                if isinstance(op, Gemm) and not isinstance(op.param, Stack) and step_of(op.data):
                    assert step_of(op.data)[0] not in states, (w.stmt.target, op)
    inputs = [op for w in low.writes if w.function == "_forward" for op in flat(w.ops) if isinstance(op, Gemm)]
    firsts = [op for op in inputs if isinstance(op.param, Stack) and op.param.form == "layers"]
    # every layer's, but a bidirectional layer's above the first, whose input is two halves, two products,
    # and a one-to-many network's first, whose input is one step (a product per gate, gathered)
    stacked = (1 if spec.bidirectional else spec.layers) - (spec.mapping == "one-to-many")
    assert len(firsts) == chains * stacked
    assert all(len(op.param.params) == INPUT[spec.cell] for op in firsts)
    gathers = [op for w in low.writes for op in w.ops if isinstance(op, Gather)]
    assert len(gathers) == chains * spec.layers * spec.T
    # and no gate's delta is multiplied by its own recurrent weight back into δh any more
    deltas = {m for b in low.blocks if family(b.family).is_adjoint for m in b.members}
    recurrent_weights = {p for w in low.writes for op in w.ops if isinstance(op, Stack) for p in op.params}
    for w in low.writes:
        if w.function == "loss_and_grads":
            for op in w.ops:
                if isinstance(op, Gemm) and step_of(op.data) and step_of(op.data)[0] in deltas:
                    assert A.transpose(op.param) not in recurrent_weights, (w.stmt.target, op)
    joined = [w for w in low.writes if any(isinstance(op, Joined) for op in w.ops)]
    assert all(w.stmt.step or w.stmt.is_stacked for w in joined) and len(joined) >= (spec.T - 1) * recurrent - 1


@pytest.mark.parametrize("spec", [*GATED, RNNSpec(T=3, cell="lstm", hidden_bias=False)], ids=str)
def test_the_input_product_adds_the_biases(spec):
    """The one input product over all steps adds the gates' biases too, a last row of its stacked weights
    against a column of ones beside the data's rows: no second pass over every gate's rows of all steps
    (at the large workload as many elements as the product writes). Token ids pick rows of the weights
    alone: they add the biases' row after."""
    low = build(spec).lowered
    products = []
    for w in low.writes:
        if w.function != "_forward":
            continue
        # the operations for float rows, in order (a ByInput's rows in its place), and those for token ids
        rows = [o for op in w.ops for o in (op.rows if isinstance(op, ByInput) else (op,))]
        ids = [o for op in w.ops if isinstance(op, ByInput) for o in op.ids]
        for o in rows:
            assert not (isinstance(o, Update) and isinstance(o.dest, Gates) and o.dest.t is None), o
        products += [(o, rows[k - 1] if k else None) for k, o in enumerate(rows) if isinstance(o, Gemm)]
        products += [(o, None) for o in ids if isinstance(o, Update)]
    firsts = [(g, before) for g, before in products if isinstance(g, Gemm) and isinstance(g.param, Stack)]
    firsts = [(g, before) for g, before in firsts if g.param.form == "layers"]
    assert firsts
    for gemm, before in firsts:
        assert len(gemm.param.biases) == (len(gemm.param.params) if spec.hidden_bias else 0)
        assert isinstance(before, WithOnes) == spec.hidden_bias and (not spec.hidden_bias or before.name == gemm.data)
    ids_adds = [u for u, _ in products if isinstance(u, Update)]
    # one for each chain of the first layer, where the module takes token ids (not with input_grad)
    takes_ids = any(isinstance(op, ByInput) for w in low.writes for op in w.ops if w.function == "_forward")
    chains = 2 if spec.bidirectional else 1
    assert all(u.expr.biases for u in ids_adds) and len(ids_adds) == chains * (spec.hidden_bias and takes_ids)


@pytest.mark.parametrize("spec", [*GATED, *ONE_TO_MANY], ids=str)
def test_the_module_is_the_module_without_the_pass(spec):
    """Loss, every gradient, the final state and forward()'s arrays agree with the module lowered without
    ``side_by_side`` to rounding, in float64 and float32, for float inputs and (where taken) token ids."""
    texts = build(spec).module, build(spec, skip=("side_by_side",)).module
    assert 'buf["gates' in texts[0] and 'buf["gates' not in texts[1]
    fused, plain = map(_module, texts)
    rng = np.random.default_rng(1)
    n_h = 5 if spec.layers == 1 else (5, 4)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        shapes = plain.init_params(3, n_h, 4)
        params = {k: (0.7 * rng.standard_normal(v.shape)).astype(dtype) for k, v in shapes.items()}
        steps = () if spec.mapping == "one-to-many" else (spec.T,)  # one input at the first step
        xs = rng.standard_normal((*steps, 2, 3)).astype(dtype)
        targets = rng.integers(0, 4, (2,) if spec.mapping == "many-to-one" else (spec.T, 2))
        kw = {"lengths": np.array([spec.T, spec.T - 2])} if spec.masked else {}
        inputs = [xs] + ([rng.integers(0, 3, (*steps, 2))] if plain.TOKEN_IDS else [])
        for x in inputs:
            E, grads, final = fused.loss_and_grads(params, x, targets, return_state=True, **kw)
            E0, grads0, final0 = plain.loss_and_grads(params, x, targets, return_state=True, **kw)
            scale = max(1.0, abs(float(E0)))
            assert abs(float(E) - float(E0)) <= tol * scale
            assert grads.keys() == grads0.keys()
            for k in grads:
                assert np.allclose(grads[k], grads0[k], rtol=tol, atol=tol * scale), k
            final, final0 = ({"h": f} if isinstance(f, np.ndarray) else f for f in (final, final0))
            assert final.keys() == final0.keys()
            for k in final0:
                assert np.allclose(final[k], final0[k], rtol=tol, atol=tol), k
            out, out0 = fused.forward(params, x, **kw), plain.forward(params, x, **kw)
            for k in out0:
                assert np.allclose(out[k], out0[k], rtol=tol, atol=tol), k


@pytest.mark.parametrize("spec", GATED[:3], ids=str)
def test_each_gates_array_is_a_contiguous_view_of_its_block(spec):
    """The block holds the gates one behind another, so each gate's array is contiguous for the
    elementwise work over all steps (a gate's columns of the gates side by side would be strided, and a
    pass over them costs several times as much), and it is the block's memory, not a copy."""
    built = build(spec)
    module = _module(built.module)
    params = module.init_params(3, 5, 4)
    module.loss(params, np.zeros((spec.T, 2, 3)), np.zeros((spec.T, 2), int))
    buf = module._SPARE["buffers"]  # the set the call gave back
    for block in built.lowered.blocks:
        whole = buf[block.family]
        assert whole.shape[0] == len(block.members)
        for k, member in enumerate(block.members):
            assert buf[member].flags.c_contiguous and np.shares_memory(buf[member], whole)
            assert buf[member].shape == whole.shape[1:]
            buf[member][...] = k
        assert all((whole[k] == k).all() for k in range(len(block.members)))


@pytest.mark.parametrize("spec", [GATED[2], GATED[3]], ids=str)
def test_a_stacked_module_passes_every_check(spec):
    """The oracle, finite differences, the Taylor test and the forms' agreement, on the module as written."""
    report = verify.check_build(build(spec))
    assert report.ok, report.failures


@pytest.mark.parametrize("spec", [*GATED[:3], ONE_TO_MANY[0]], ids=str)
def test_a_steps_gates_take_their_activation_and_delta_factor_in_one_call_each(spec):
    """Forward, one call per activation per step over the gates that take it (the LSTM's g: tanh; i, f, o:
    one sigmoid; the GRU's r, z: one sigmoid); backward, the LSTM's δz_g, δz_i, δz_f of a step, each δc_t
    times its local derivative, one product (the gates are ordered so that those are one run). Without
    ``sigmoid_by_tanh``, which then takes the sigmoids through the tanh (``tests/test_sigmoid_by_tanh.py``)."""
    low = build(spec, skip=("sigmoid_by_tanh",)).lowered
    applies, updates = {}, {}
    for w in low.writes:
        for op in w.ops:
            if isinstance(op, Apply) and isinstance(op.dest, Gates):
                applies.setdefault(op.dest.t, []).append((op.fn, op.dest.hi - op.dest.lo))
            if isinstance(op, Update) and isinstance(op.dest, Gates) and op.op == "*":
                updates.setdefault(op.dest.t, []).append(op.dest.hi - op.dest.lo)
    wanted = {"lstm": [("sigmoid", 3), ("tanh", 1)], "gru": [("sigmoid", 2)]}[spec.cell]
    assert sorted(applies) == list(range(1, spec.T + 1))
    assert all(sorted(a) == wanted for a in applies.values())
    # the LSTM's δz_g, δz_i, δz_f by δc_t, not at the last step, where each δz_T follows its own local
    # derivative's sweep; the GRU's deltas are each multiplied by another value
    assert updates == ({t: [3] for t in range(1, spec.T)} if spec.cell == "lstm" else {})


def test_without_steps_built_in_place_there_are_no_blocks_and_the_module_still_checks():
    """The pass reads the gates' recurrent products through a one-step scratch, as ``steps_built_in_place``
    writes them; with that pass skipped it finds no gates and leaves the module as it is."""
    spec = RNNSpec(T=3, cell="lstm")
    built = build(spec, skip=("steps_built_in_place",))
    assert built.lowered.blocks == ()
    report = verify.check_build(built)
    assert report.ok, report.failures


def _delta_h0(lowered):
    return next(at for at, w in enumerate(lowered.writes) if w.function != "_forward" and str(w.stmt.target) == "dh_0")


def test_a_sum_back_into_the_state_leaves_no_add_of_a_scratch_behind():
    """δh_0 = Σ_k W_kᵀ δz_k,1 as one product into δh_0, then the other terms each through the scratch and an
    add: all of those become the one product, and no add of the scratch is left (it would add a stale one)."""
    plain = build(RNNSpec(T=3, cell="lstm"), skip=("side_by_side",)).lowered
    at = _delta_h0(plain)
    w = plain.writes[at]
    ops = []
    for op in w.ops:  # the terms added whole rewritten as a GEMM through the scratch and an add
        if isinstance(op, Update) and not isinstance(op.expr, str):
            param, data = op.expr.as_coeff_matrices()[1]
            ops += [Gemm("dh_gemm", data, param, None, True), Update(op.dest, "+", "dh_gemm")]
        else:
            ops.append(op)
    assert sum(isinstance(op, Gemm) for op in ops) == 4
    writes = plain.writes[:at] + (replace(w, ops=tuple(ops)),) + plain.writes[at + 1 :]
    fused = side_by_side(replace(plain, writes=writes)).writes[at]
    assert [type(op).__name__ for op in fused.ops if not isinstance(op, (Take, Views, Stack))] == ["Gather", "Gemm"]
    assert fused.ops[-1].out == w.stmt.target


def test_deltas_are_not_updated_together_by_a_value_that_reads_one_of_them():
    """``δz_g_1, δz_i_1, δz_f_1 *= δz_i_1`` one after another use δz_i_1 before and after it changes; one
    operation over the three would read it before only. So such writes stay apart."""
    plain = build(RNNSpec(T=3, cell="lstm"), skip=("side_by_side",)).lowered
    writes = list(plain.writes)
    value = next(w.stmt.target for w in writes if str(w.stmt.target) == "dzi_1")
    for at, w in enumerate(writes):
        if str(w.stmt.target) in ("dzg_1", "dzi_1", "dzf_1"):
            writes[at] = replace(
                w, ops=tuple(replace(op, expr=value) if isinstance(op, Update) else op for op in w.ops)
            )
    fused = side_by_side(replace(plain, writes=tuple(writes)))
    merged = [op for w in fused.writes for op in w.ops if isinstance(op, Update) and isinstance(op.dest, Gates)]
    assert [op.dest.t for op in merged if op.op == "*"] == [2]  # step 2's, by δc_2, and not step 1's


def test_the_first_steps_input_parts_are_not_moved_past_a_write_that_reads_them():
    """One-to-many: the first step's input parts move up to the first one's write, past the gates written
    in between; a write among those that reads a moved part (here the input gate's, reading f's input part
    of step 1) would see it early, so nothing moves: the first step keeps a product per gate, and so does the
    second, whose gates' writes the biases' fills stand between."""
    spec = ONE_TO_MANY[0]
    plain = build(spec, skip=("side_by_side",)).lowered
    writes = list(plain.writes)
    at = next(k for k, w in enumerate(writes) if str(w.stmt.target) == "gi_1")
    part = next(w.stmt.target for w in writes if str(w.stmt.target) == "pre_zf_1")
    writes[at] = replace(writes[at], ops=(*writes[at].ops, Update(writes[at].stmt.target, "+", part)))

    def joined(lowered) -> set:  # the steps whose gates are one recurrent product (of h_{t-1})
        return {
            step_of(op.data)[1] + 1
            for w in side_by_side(lowered).writes
            for op in flat(w.ops)
            if isinstance(op, Gemm) and isinstance(op.param, Stack) and op.param.form == "columns"
        }

    assert joined(plain) == {1, 2, 3}
    assert joined(replace(plain, writes=tuple(writes))) == {3}
