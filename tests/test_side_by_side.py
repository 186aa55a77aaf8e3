"""The gates of a gated cell in one buffer, one product each (``side_by_side``): the rule on the lowered
program, the layout of the module's buffers, and the module's numbers against the same module lowered
without the pass (itself checked against the exact oracle and by finite differences elsewhere)."""

import sys

import numpy as np
import pytest

from rnngen import verify
from rnngen.families import step_of
from rnngen.operations import Apply, Gates, Gather, Gemm, Joined, Stack, Update, flat
from rnngen.pipeline import build
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
#: Each cell's gates that multiply h_{t-1} by a weight of their own, and those with an input product.
RECURRENT = {("lstm", None): 4, ("gru", "after"): 3, ("gru", "before"): 2}
INPUT = {"lstm": 4, "gru": 3}


def _module(text):
    module = type(sys)("side_by_side")
    exec(text, module.__dict__)
    return module


def _chains(lowered):
    """The state family of each chain (``h``, ``h1_f``, ...) and its forward block."""
    return {b.family: b for b in lowered.blocks if not b.family.startswith("d")}


@pytest.mark.parametrize("spec", GATED, ids=str)
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
    # every layer's, but a bidirectional layer's above the first, whose input is two halves, two products
    assert len(firsts) == chains * (1 if spec.bidirectional else spec.layers)
    assert all(len(op.param.params) == INPUT[spec.cell] for op in firsts)
    gathers = [op for w in low.writes for op in w.ops if isinstance(op, Gather)]
    assert len(gathers) == chains * spec.layers * spec.T
    assert any(isinstance(op, Joined) for w in low.writes for op in w.ops)


@pytest.mark.parametrize("spec", GATED, ids=str)
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
        xs = rng.standard_normal((spec.T, 2, 3)).astype(dtype)
        targets = rng.integers(0, 4, (spec.T, 2) if spec.mapping == "many-to-many" else (2,))
        kw = {"lengths": np.array([spec.T, spec.T - 2])} if spec.masked else {}
        inputs = [xs] + ([rng.integers(0, 3, (spec.T, 2))] if plain.TOKEN_IDS else [])
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
    module = _module(build(spec).module)
    low = build(spec).lowered
    x = np.zeros((spec.T, 2, 3))
    args = [3, 5, 4] if "n_x" in module._new_buffers.__code__.co_varnames[:3] else [5, 4]
    buf = module._new_buffers(x, np.dtype(np.float64), *args)
    for block in low.blocks:
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


@pytest.mark.parametrize("spec", GATED[:3], ids=str)
def test_a_steps_gates_take_their_activation_and_delta_factor_in_one_call_each(spec):
    """Forward, one call per activation per step over the gates that take it (the LSTM's g: tanh; i, f, o:
    one sigmoid; the GRU's r, z: one sigmoid); backward, the LSTM's δz_g, δz_i, δz_f of a step, each δc_t
    times its local derivative, one product (the gates are ordered so that those are one run)."""
    low = build(spec).lowered
    applies, updates = {}, {}
    for w in low.writes:
        for op in w.ops:
            if isinstance(op, Apply) and isinstance(op.dest, Gates):
                applies.setdefault(op.dest.t, []).append((op.fn, op.dest.hi - op.dest.lo))
            if isinstance(op, Update) and isinstance(op.dest, Gates) and op.op == "*":
                updates.setdefault(op.dest.t, []).append(op.dest.hi - op.dest.lo)
    wanted = {"lstm": [("tanh", 1), ("sigmoid", 3)], "gru": [("sigmoid", 2)]}[spec.cell]
    assert sorted(applies) == list(range(1, spec.T + 1))
    assert all(sorted(a, reverse=True) == sorted(wanted, reverse=True) for a in applies.values())
    if spec.cell == "lstm":  # not at the last step, where each δz_T follows its own local derivative's sweep
        assert all(u == [3] for u in updates.values()) and sorted(updates) == list(range(1, spec.T))
