"""The gated cells (``--cell lstm``, ``--cell gru`` in both reset forms) against references written here.

- ``_lstm_bptt`` and ``_gru_bptt``: the forward pass and the hand-written backward pass (the
  ``dc_next``, ``dh_next`` recursion people write by hand) of one layer, in PyTorch's equations
  (gates i, f, g, o and r, z, n), for a softmax output and a cross-entropy loss at every step;
- ``_network_loss``: any stack of layers, one or both directions, a mask and a carried state, in
  plain NumPy that also runs on complex numbers, so that the complex step gives every derivative
  to rounding, with no subtraction (``Im f(p + i h) / h``, h = 1e-30);
- the check (``verify.check_module``) catches a wrong gate: a dropped sigmoid derivative and an ``=``
  where the memory cell's delta takes a ``+=``;
- bad options are one line each; where torch is importable, ``nn.LSTM`` and ``nn.GRU`` with our
  weights agree.

Nothing here reads ``cells.py``: the references are the textbook equations, spelled out again.
"""

import itertools
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from test_document_equations import _tagged_spans
from test_latex import compile_tex, needs_pdflatex
from test_network_document import _check, make_checker

from rnngen import verify
from rnngen.document import Notation
from rnngen.families import Family, family
from rnngen.markdown import to_markdown
from rnngen.pipeline import build
from rnngen.reference import relative_error
from rnngen.spec import RNNSpec, SpecError

RTOL = 1e-10
GATES = {"lstm": "ifgo", "gru": "rzn"}


def _module(spec):
    module = type(sys)("gated")
    exec(build(spec).module, module.__dict__)
    return module


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _suffix(layers, layer, direction):
    return (str(layer) if layers > 1 else "") + (f"_{direction}" if direction else "")


def _initial(letter, layers, layer, direction):
    return letter + (f"_{layer}" if layers > 1 else "") + (f"_{direction}" if direction else "")


def _problem(spec, n_x=3, n_h=4, n_y=3, B=3, seed=0):
    rng = np.random.default_rng(seed)
    module = _module(spec)
    shapes = module.init_params(n_x, n_h if spec.layers == 1 else (n_h,) * spec.layers, n_y)
    params = {k: 0.6 * rng.standard_normal(np.shape(v)) for k, v in shapes.items()}
    xs = rng.standard_normal((spec.T, B, n_x))
    targets = rng.integers(0, n_y, (spec.T, B) if spec.mapping == "many-to-many" else (B,))
    return module, params, xs, targets


# --- one layer, by hand: forward and the backward recursion ------------------------------------------


def _softmax_xent(logits, y):
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).sum()
    dlogits = p.copy()
    dlogits[np.arange(len(y)), y] -= 1
    return loss, dlogits


def _lstm_bptt(P, xs, ys):
    """E and every gradient of a one-layer LSTM, rows per sequence (x_t W^T)."""
    T, B, _ = xs.shape
    h, c = np.tile(P["h0"], (B, 1)), np.tile(P["c0"], (B, 1))
    cache, E = [], 0.0
    for t in range(T):
        x = xs[t]
        pre = {k: x @ P[f"U_{k}"].T + h @ P[f"W_{k}"].T + P[f"b_{k}"] for k in "ifgo"}
        i, f, o = (_sigmoid(pre[k]) for k in "ifo")
        g = np.tanh(pre["g"])
        c_new = f * c + i * g
        phi = np.tanh(c_new)
        h_new = o * phi
        loss, dlogits = _softmax_xent(h_new @ P["V"].T + P["c"], ys[t])
        E += loss
        cache.append((x, h, c, i, f, g, o, phi, h_new, dlogits))
        h, c = h_new, c_new
    G = {k: np.zeros_like(v) for k, v in P.items()}
    dh_next, dc_next = np.zeros_like(h), np.zeros_like(c)
    for x, h_prev, c_prev, i, f, g, o, phi, h, dlogits in reversed(cache):
        G["V"] += dlogits.T @ h
        G["c"] += dlogits.sum(0)
        dh = dlogits @ P["V"] + dh_next
        dc = dc_next + dh * o * (1 - phi**2)
        dz = {"i": dc * g * i * (1 - i), "f": dc * c_prev * f * (1 - f), "g": dc * i * (1 - g**2)}
        dz["o"] = dh * phi * o * (1 - o)
        dh_next = np.zeros_like(dh)
        for k in "ifgo":
            G[f"U_{k}"] += dz[k].T @ x
            G[f"W_{k}"] += dz[k].T @ h_prev
            G[f"b_{k}"] += dz[k].sum(0)
            dh_next += dz[k] @ P[f"W_{k}"]
        dc_next = dc * f
    G["h0"], G["c0"] = dh_next.sum(0), dc_next.sum(0)
    return E, G


def _gru_bptt(P, xs, ys, after: bool):
    """E and every gradient of a one-layer GRU, the reset gate after (PyTorch) or before the product."""
    T, B, _ = xs.shape
    h = np.tile(P["h0"], (B, 1))
    cache, E = [], 0.0
    for t in range(T):
        x = xs[t]
        r, z = (_sigmoid(x @ P[f"U_{k}"].T + h @ P[f"W_{k}"].T + P[f"b_{k}"]) for k in "rz")
        if after:
            hn = h @ P["W_n"].T + P["b_hn"]
            n = np.tanh(x @ P["U_n"].T + P["b_n"] + r * hn)
        else:
            hn = None
            n = np.tanh(x @ P["U_n"].T + (r * h) @ P["W_n"].T + P["b_n"])
        h_new = (1 - z) * n + z * h
        loss, dlogits = _softmax_xent(h_new @ P["V"].T + P["c"], ys[t])
        E += loss
        cache.append((x, h, r, z, n, hn, h_new, dlogits))
        h = h_new
    G = {k: np.zeros_like(v) for k, v in P.items()}
    dh_next = np.zeros_like(h)
    for x, h_prev, r, z, n, hn, h, dlogits in reversed(cache):
        G["V"] += dlogits.T @ h
        G["c"] += dlogits.sum(0)
        dh = dlogits @ P["V"] + dh_next
        dzn = dh * (1 - z) * (1 - n**2)
        dzz = dh * (h_prev - n) * z * (1 - z)
        dh_next = dh * z
        G["U_n"] += dzn.T @ x
        G["b_n"] += dzn.sum(0)
        if after:
            dhn = dzn * r
            G["W_n"] += dhn.T @ h_prev
            G["b_hn"] += dhn.sum(0)
            dh_next += dhn @ P["W_n"]
            dzr = dzn * hn * r * (1 - r)
        else:
            drh = dzn @ P["W_n"]
            G["W_n"] += dzn.T @ (r * h_prev)
            dh_next += drh * r
            dzr = drh * h_prev * r * (1 - r)
        for k, dk in (("r", dzr), ("z", dzz)):
            G[f"U_{k}"] += dk.T @ x
            G[f"W_{k}"] += dk.T @ h_prev
            G[f"b_{k}"] += dk.sum(0)
            dh_next += dk @ P[f"W_{k}"]
    G["h0"] = dh_next.sum(0)
    return E, G


@pytest.mark.parametrize(
    "cell, reset", [("lstm", None), ("gru", "after"), ("gru", "before")], ids=["lstm", "gru", "gru_resetbefore"]
)
def test_one_layer_against_the_hand_written_backward_pass(cell, reset):
    spec = RNNSpec(T=5, cell=cell, gru_reset=reset)
    module, params, xs, targets = _problem(spec)
    E, grads = module.loss_and_grads(params, xs, targets)
    ref_E, ref = _lstm_bptt(params, xs, targets) if cell == "lstm" else _gru_bptt(params, xs, targets, reset == "after")
    assert sorted(grads) == sorted(ref)
    assert relative_error(E, ref_E) <= RTOL
    for name in ref:
        assert relative_error(grads[name], ref[name]) <= RTOL, name


# --- any network: forward in NumPy (complex too), derivatives by the complex step ------------------


def _step(cell, P, s, x, h, c, reset):
    """One step of a chain whose parameters end in ``s``; returns (h, c)."""

    def pre(k):
        return x @ P[f"U_{k}{s}"].T + h @ P[f"W_{k}{s}"].T + P.get(f"b_{k}{s}", 0)

    if cell == "lstm":
        i, f, o = (_sigmoid(pre(k)) for k in "ifo")
        c = f * c + i * np.tanh(pre("g"))
        return o * np.tanh(c), c
    r, z = _sigmoid(pre("r")), _sigmoid(pre("z"))
    xn = x @ P[f"U_n{s}"].T + P.get(f"b_n{s}", 0)
    if reset == "after":
        n = np.tanh(xn + r * (h @ P[f"W_n{s}"].T + P.get(f"b_hn{s}", 0)))
    else:
        n = np.tanh(xn + (r * h) @ P[f"W_n{s}"].T)
    return (1 - z) * n + z * h, None


def _network_loss(spec, P, xs, ys, mask=None, state=None):
    """E and the final states of any stack of gated layers, by the textbook equations, plainly."""
    T, B, _ = xs.shape
    directions = ("f", "b") if spec.bidirectional else ("",)
    below, final = xs, {}
    for layer in range(1, spec.layers + 1):
        outs = []
        for d in directions:
            s = _suffix(spec.layers, layer, d)
            names = [_initial(letter, spec.layers, layer, d) for letter in ("h0", "c0")]
            h, c = ((state[n] if state is not None else np.tile(P[n], (B, 1))) if n in P else None for n in names)
            hs = [None] * T
            for t in range(T - 1, -1, -1) if d == "b" else range(T):
                h_new, c_new = _step(spec.cell, P, s, below[t], h, c, spec.gru_reset)
                m = 1.0 if mask is None else mask[t][:, None]
                h = h + m * (h_new - h)
                c = None if c is None else c + m * (c_new - c)
                hs[t] = h
            final.update({names[0]: h, **({names[1]: c} if c is not None else {})})
            outs.append(np.stack(hs))
        below = np.concatenate(outs, axis=-1)

    def terms(h, y):
        logits = h @ P["V"].T + P["c"]
        shifted = logits - logits.real.max(axis=1, keepdims=True)
        return np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(B), y]

    if spec.mapping == "many-to-one":  # each sequence's last real step, as PyTorch's packed sequences give it
        last = np.full(B, T - 1) if mask is None else T - 1 - np.argmax(np.asarray(mask)[::-1], axis=0)
        return terms(below[last, np.arange(B)], ys).sum(), final
    E = 0.0
    for t in range(T):
        E = E + (terms(below[t], ys[t]) if mask is None else terms(below[t], ys[t]) * mask[t]).sum()
    return E, final


def _complex_step(loss, values: dict) -> dict:
    """dE/d(every entry of every array in ``values``) by the complex step."""
    out = {}
    for name, v in values.items():
        g = np.zeros(v.shape)
        for idx in np.ndindex(v.shape):
            moved = v.astype(complex)
            moved[idx] += 1e-30j
            g[idx] = loss({**values, name: moved}).imag / 1e-30
        out[name] = g
    return out


NETWORKS = [
    RNNSpec(T=4, cell=cell, gru_reset=reset, layers=layers, bidirectional=bi, masked=masked)
    for cell, reset in (("lstm", None), ("gru", "after"), ("gru", "before"))
    for layers in (1, 2)
    for bi in (False, True)
    for masked in (False, True)
    if not (masked and layers == 1 and not bi)  # one masked one-layer network per cell below
] + [RNNSpec(T=4, cell=cell, gru_reset=reset, masked=True) for cell, reset in (("lstm", None), ("gru", "before"))]
# many-to-one: the loss reads each sequence's last real step (a backward chain's through its held state)
NETWORKS += [
    RNNSpec(T=4, cell="lstm", masked=True, bidirectional=True, mapping="many-to-one"),
    RNNSpec(T=4, cell="gru", masked=True, layers=2, bidirectional=True, mapping="many-to-one"),
    RNNSpec(T=4, cell="gru", gru_reset="before", mapping="many-to-one"),
]


@pytest.mark.parametrize("spec", NETWORKS, ids=lambda s: s.name)
def test_every_network_against_the_complex_step(spec):
    """E, every gradient, a carried state's gradient and the final state, mask or not, rtol 1e-10."""
    module, params, xs, targets = _problem(spec, n_x=2, n_h=3, n_y=3, B=2, seed=1)
    rng = np.random.default_rng(2)
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool) if spec.masked else None
    state = {name: 0.5 * rng.standard_normal((2, *np.shape(params[name]))) for name in module.INITIAL_STATES}
    kw = {"mask": mask} if spec.masked else {}
    # the learned initial states
    E, grads = module.loss_and_grads(params, xs, targets, **kw)
    ref = _complex_step(lambda p: _network_loss(spec, p, xs, targets, mask)[0], params)
    assert relative_error(E, _network_loss(spec, params, xs, targets, mask)[0]) <= RTOL
    for name in params:
        assert relative_error(grads[name], ref[name]) <= RTOL, name
    # a state given per sequence: its gradient and the final state
    given = state if len(state) > 1 else next(iter(state.values()))
    E, grads, final = module.loss_and_grads(params, xs, targets, state=given, return_state=True, **kw)
    ref_E, ref_final = _network_loss(spec, params, xs, targets, mask, state)
    ref = _complex_step(lambda s: _network_loss(spec, params, xs, targets, mask, s)[0], state)
    assert relative_error(E, ref_E) <= RTOL
    got = grads["state"] if isinstance(grads["state"], dict) else {next(iter(state)): grads["state"]}
    finals = final if isinstance(final, dict) else {next(iter(state)): final}
    assert sorted(got) == sorted(state) == sorted(finals)
    for name in state:
        assert relative_error(got[name], ref[name]) <= RTOL, name
        assert relative_error(finals[name], ref_final[name]) <= RTOL, name


@pytest.mark.parametrize(
    "spec",
    [RNNSpec(T=3, cell="lstm", bidirectional=True), RNNSpec(T=3, cell="gru", gru_reset="before", masked=True)],
    ids=lambda s: s.name,
)
def test_the_exact_oracle_runs_each_cell_with_a_given_state(spec):
    """The scalar oracle (the cell's own step on SymPy numbers) with h0 and c0 given per sequence."""
    assert verify.exact_oracle(_module(spec), state=True).worst <= 1e-12


def test_the_lstm_carries_its_memory_cell_beside_h():
    module = _module(RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True))
    assert module.INITIAL_STATES == ("h0_1_f", "c0_1_f", "h0_1_b", "c0_1_b", "h0_2_f", "c0_2_f", "h0_2_b", "c0_2_b")


# --- names, shapes, the module's name and command ------------------------------------------------


def test_parameters_are_named_per_gate_then_per_chain():
    lstm = _module(RNNSpec(T=5, cell="lstm"))
    letters = [f"{m}_{g}" for m in "UWb" for g in "ifgo"]
    assert list(lstm.PARAM_SHAPES) == [*letters, "h0", "c0", "V", "c"]
    assert lstm.PARAM_SHAPES["U_i"] == ("n_h", "n_x") and lstm.PARAM_SHAPES["W_o"] == ("n_h", "n_h")
    assert lstm.PARAM_SHAPES["c0"] == ("n_h",)
    gru = _module(RNNSpec(T=5, cell="gru"))
    assert list(gru.PARAM_SHAPES) == [*(f"{m}_{g}" for m in "UWb" for g in "rzn"), "b_hn", "h0", "V", "c"]
    before = _module(RNNSpec(T=5, cell="gru", gru_reset="before"))
    assert "b_hn" not in before.PARAM_SHAPES
    two = _module(RNNSpec(T=3, cell="gru", layers=2, bidirectional=True, hidden_bias=False))
    assert "U_r2_b" in two.PARAM_SHAPES and two.PARAM_SHAPES["U_r2_b"] == ("n_h2", "n_h1 + n_h1")
    assert not any(name.startswith("b_") for name in two.PARAM_SHAPES)  # --no-hidden-bias drops b_hn too
    row = _module(RNNSpec(T=3, cell="lstm", notation="row"))
    assert row.PARAM_SHAPES["U_i"] == ("n_x", "n_h")  # stored transposed, as the Elman cell's


@pytest.mark.parametrize(
    "spec, name, command",
    [
        (RNNSpec(T=5, cell="lstm"), "lstm_tanh_softmax_xent_t5", "--T 5 --cell lstm"),
        (RNNSpec(T=5, cell="gru"), "gru_tanh_softmax_xent_t5", "--T 5 --cell gru"),
        (
            RNNSpec(T=5, cell="gru", gru_reset="before"),
            "gru_resetbefore_tanh_softmax_xent_t5",
            "--T 5 --cell gru --gru-reset before",
        ),
    ],
)
def test_module_name_and_command(spec, name, command):
    assert spec.name == name and spec.cli_args() == command
    assert RNNSpec(**spec.as_dict()) == spec  # SPEC reads back
    assert "gru_reset" not in RNNSpec(T=5).as_dict()  # an Elman spec keeps its fields (and digest)


# --- the engine's checks on the gated cells: every option through the same machinery -----------------

CHECKED = [
    RNNSpec(T=3, cell="lstm", mapping="many-to-one"),
    RNNSpec(T=3, cell="gru", mapping="one-to-many"),
    RNNSpec(T=4, cell="gru", gru_reset="before", delay=2),
    RNNSpec(T=3, cell="lstm", output="sigmoid", loss="binary_cross_entropy", input_grad=True),
    RNNSpec(T=3, cell="gru", output="identity", loss="squared_error", notation="row"),
    RNNSpec(T=3, cell="lstm", hidden="relu"),  # f'(c) = [c > 0] leads a product with o_t: a bool array
    RNNSpec(T=3, cell="gru", hidden="sigmoid", hidden_bias=False, output_bias=False),
    RNNSpec(T=3, cell="gru", bidirectional=True, masked=True, padding="pre"),
]


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.name)
def test_the_check_passes_with_the_derivations_forms(spec):
    """Central differences, Taylor, carried state, every path of the module and, at T <= 4, the sum
    over paths against the recursion."""
    result = build(spec)
    module = type(sys)("checked")
    exec(result.module, module.__dict__)
    report = verify.check_module(module, build=result)
    assert report.ok, report.failures
    assert report.forms and max(report.forms.values()) <= 1e-12


@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=5, cell="lstm", truncate=2, layers=2),
        RNNSpec(T=5, cell="gru", truncate=3, bidirectional=True),
        RNNSpec(T=5, cell="gru", gru_reset="before", truncate=2, input_grad=True),
    ],
    ids=lambda s: s.name,
)
def test_truncated_gated_modules_are_the_restricted_sum_over_paths(spec):
    """The memory cell's c_{t-1} -> c_t and the GRU's h_{t-1} -> h_t cross a step with no recurrent
    weight: the restricted sum counts them as the truncation does (it kept them: 2.5e-1 off)."""
    module = _module(spec)
    report = verify.check_module(module)
    assert report.ok, report.failures
    assert report.truncated["parameters"] <= 1e-12 and report.truncated["state"] <= 1e-12


# --- the document: every equation of the step and of the sweep, and it compiles ------------------------


def _equations(tex: str, title: str) -> list:
    """The left sides (``c_{t}``) of a section's aligned equations."""
    body = tex.split(rf"\section{{{title}}}")[1].split(r"\section")[0]
    return [line.split(" &=")[0] for line in body.splitlines() if " &=" in line]


@pytest.mark.parametrize(
    "spec, forward, deltas",
    [
        (
            RNNSpec(T=3, cell="lstm"),
            ["{a_{i}}_{t}", "i_{t}", "{a_{f}}_{t}", "f_{t}", "{a_{g}}_{t}", "g_{t}", "{a_{o}}_{t}", "o_{t}", "c_{t}"]
            + [r"\phi_{t}", "h_{t}"],
            [r"\delta^{h}_{t}", r"\delta^{h}_{0}", r"\delta^{c}_{t}", r"\delta^{c}_{0}", r"\delta^{{a_{f}}}_{t}"],
        ),
        (
            RNNSpec(T=3, cell="gru"),
            ["{a_{r}}_{t}", "r_{t}", "{a_{z}}_{t}", "z_{t}", "{a_{hn}}_{t}", "{a_{n}}_{t}", "n_{t}", "h_{t}"],
            [r"\delta^{h}_{t}", r"\delta^{h}_{0}", r"\delta^{{a_{hn}}}_{t}", r"\delta^{{a_{r}}}_{t}"],
        ),
    ],
    ids=["lstm", "gru"],
)
def test_the_document_states_every_value_of_the_step_and_every_delta(spec, forward, deltas):
    tex = build(spec).latex
    assert _equations(tex, "The forward pass")[: len(forward)] == forward
    sweep = _equations(tex, "The delta recursion backward through the network")
    assert all(d in sweep for d in deltas), [d for d in deltas if d not in sweep]
    assert "the initial states $h_{0}$ and $c_{0}$" in tex if spec.cell == "lstm" else "$h_{0}$" in tex


@needs_pdflatex
@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True, masked=True),
        RNNSpec(T=4, cell="gru", gru_reset="before", notation="row", truncate=2),
    ],
    ids=lambda s: s.name,
)
def test_the_gated_documents_compile(tmp_path, spec):
    run = compile_tex(tmp_path, spec.name, build(spec).latex)
    assert run.returncode == 0, run.stdout[-2000:]


# --- every numbered equation of a gated document, evaluated -----------------------------------------

#: Each cell and GRU form with one layer; two layers in both directions; a mask; many-to-one in rows; truncated.
CHECKED = (
    RNNSpec(T=3, cell="lstm"),
    RNNSpec(T=3, cell="gru"),
    RNNSpec(T=3, cell="gru", gru_reset="before"),
    RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True),
    RNNSpec(T=4, cell="gru", masked=True),
    RNNSpec(T=4, cell="lstm", masked=True, mapping="many-to-one", bidirectional=True),
    RNNSpec(T=3, cell="gru", gru_reset="before", mapping="many-to-one", notation="row"),
    RNNSpec(T=4, cell="lstm", truncate=2),
)


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.name)
def test_every_numbered_equation_of_a_gated_document_holds(spec):
    """``latex_reader.Checker`` reads the gates' letters (PyTorch's i, f, g, o and r, z, n, their
    pre-activations {a_i}, the memory cell c_t beside the output bias b_y, its initial c_0, phi_t, {a_hn})
    and evaluates every numbered equation against central differences and the module."""
    _check(spec)


#: A wrong gated equation, as people get them wrong: (spec, the text, its wrong form).
WRONG = [
    # the direct path into c_{t-1} loses its forget gate
    (RNNSpec(T=3, cell="lstm"), r"\delta^{c}_{t+1} \odot f_{t+1}", r"\delta^{c}_{t+1}"),
    (RNNSpec(T=3, cell="lstm"), r"h_{t} &= o_{t} \odot \phi_{t}", r"h_{t} &= i_{t} \odot \phi_{t}"),  # a wrong gate
    (RNNSpec(T=3, cell="lstm"), r"\delta^{f}_{t} &= \delta^{c}_{t} \odot c_{t-1}",
     r"\delta^{f}_{t} &= \delta^{c}_{t} \odot c_{t}"),
    # the GRU's interpolation the other way round
    (RNNSpec(T=3, cell="gru"), r"\left(\mathbf{1} - z_{t}\right) \odot n_{t} + z_{t} \odot h_{t-1}",
     r"z_{t} \odot n_{t} + \left(\mathbf{1} - z_{t}\right) \odot h_{t-1}"),
    (RNNSpec(T=3, cell="gru"), r"\delta^{h}_{t+1} \odot z_{t+1}", r"\delta^{h}_{t+1}"),  # the direct path's z
    (RNNSpec(T=3, cell="gru"), r"r_{t} \odot {a_{hn}}_{t}", r"{a_{hn}}_{t}"),  # no reset gate
    (RNNSpec(T=3, cell="gru", gru_reset="before"), r"\left(W_{n}^{\top} \delta^{{a_{n}}}_{t}\right) \odot h_{t-1}",
     r"\left(W_{n}^{\top} \delta^{{a_{n}}}_{t}\right) \odot r_{t} \odot h_{t-1}"),
    # the teaching section: the direct path left out of the cell's Jacobian; the GRU's reset gate on the wrong side
    (RNNSpec(T=3, cell="lstm"), r"&= \operatorname{diag}(f_{t}) + \frac", r"&= \frac"),
    (RNNSpec(T=3, cell="gru"), r"&= \operatorname{diag}(z_{t}) + \frac", r"&= \frac"),
    (RNNSpec(T=3, cell="gru", gru_reset="before"), r"W_{n} \left(\operatorname{diag}(r_{t}) +",
     r"\left(\operatorname{diag}(r_{t}) W_{n} +"),
    (RNNSpec(T=3, cell="lstm"), r"&= \operatorname{diag}(c_{t-1})", r"&= \operatorname{diag}(c_{t})"),
    # a formula the code runs
    (RNNSpec(T=3, cell="lstm"), r"c_{2} &= f_{2} \odot c_{1}", r"c_{2} &= i_{2} \odot c_{1}"),
]  # fmt: skip


@pytest.mark.parametrize("spec, right, wrong", WRONG, ids=lambda v: v.name if isinstance(v, RNNSpec) else None)
def test_the_document_check_catches_a_wrong_gated_equation(spec, right, wrong):
    result, checker = make_checker(spec)
    assert not checker.check(), "the document must hold before it is changed"
    tex = result.latex
    # the one numbered equation that holds the text (the prose may quote it too)
    found = [(n, lo + tex[lo:hi].index(right)) for n, (lo, hi) in _tagged_spans(tex) if right in tex[lo:hi]]
    assert len(found) == 1, right
    number, at = found[0]
    failed = {n for n, _ in checker.check(tex[:at] + wrong + tex[at + len(right) :])}
    assert number in failed, f"({number}) {right} -> {wrong} passed"


@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True),
        RNNSpec(T=3, cell="gru"),
        RNNSpec(T=3, cell="gru", gru_reset="before"),
    ],
    ids=lambda s: s.name,
)
def test_no_two_values_of_a_gated_document_share_a_symbol(spec):
    """The LSTM's output gate is o_t, so the output layer's pre-activation is s_t there (and in the GRU's
    document, one rule for the gated cells); every value and delta has a symbol of its own, and the legend
    states each letter of the step."""
    result = build(spec)
    n = Notation(spec)
    keys = {node.family for node in (*result.derivation.graph.nodes, *result.derivation.adjoints) if node.family}
    spelled = {}
    for key in sorted(keys):
        spelled.setdefault(n.step(key, "t"), []).append(key)
    assert not {s: k for s, k in spelled.items() if len(k) > 1}
    assert "s_{t} &= V " in result.latex
    legend = result.latex.split(r"\section*{Notation}")[1].split(r"\end{longtable}")[0]
    for key in keys:
        fam = family(key)
        # every value but the inputs', the mask's and the pre-activations' (z with the gate's letter, said once)
        pre = fam.base.startswith("z") and fam.base[1:] in GATES[spec.cell]
        if not fam.is_adjoint and not pre and fam.base not in ("x", "y", "m", "hbar", "cellbar", "hlast"):
            assert n.step(Family(fam.base).key, "t") in legend, key


@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=3, cell="lstm"),
        RNNSpec(T=3, cell="gru"),
        RNNSpec(T=3, cell="lstm", layers=2, bidirectional=True, masked=True),
        RNNSpec(T=4, cell="lstm", truncate=2),
    ],
    ids=lambda s: s.name,
)
def test_no_letter_of_a_gated_document_is_both_a_value_and_a_parameter(spec):
    """The LSTM's memory cell is c_t (and c_0), so the output bias, the module's c, is written otherwise
    (b_y) in every gated document, and the legend says what the module calls it."""
    result = build(spec)
    n = Notation(spec)
    graph = result.derivation.graph
    keys = {node.family for node in (*graph.nodes, *result.derivation.adjoints) if node.family}
    letters = {n.step(key, "t").removesuffix("_{t}") for key in keys if not family(key).is_adjoint}
    legend = result.latex.split(r"\section*{Notation}")[1].split(r"\end{longtable}")[0]
    for name, p in graph.network.params.items():
        if p.role == "initial":
            continue
        symbol = n.latex(graph.params[name])
        assert symbol not in letters, f"{symbol} is a parameter and a value"
        assert f"${symbol}$ & " in legend, symbol
    assert r"$b_{y}$ & output bias, $n_{y}$ (the module's \texttt{c})" in legend
    assert r"\frac{\partial E}{\partial b_{y}}" in result.latex


@pytest.mark.parametrize("spec", [RNNSpec(T=4, cell="lstm", truncate=2), RNNSpec(T=4, cell="gru", truncate=2)],
                         ids=lambda s: s.name)  # fmt: skip
def test_a_truncated_gated_document_writes_the_age_with_a_letter_of_its_own(spec):
    """The gates' pre-activations are a with the gate's letter below ({a_i}_t), so the age of a truncated delta
    (how many recurrent edges its paths crossed) takes another letter, in the legend and the text alike."""
    tex = build(spec).latex
    legend = tex.split(r"\section*{Notation}")[1].split(r"\end{longtable}")[0]
    ages = set(re.findall(r"\\delta\^\{h\[([a-z])\]\}_\{t\}", legend))
    assert len(ages) == 1, ages
    age = ages.pop()
    assert "{a_{i}}_{t}" in tex or "{a_{r}}_{t}" in tex  # the pre-activations' letter is a
    assert age not in "actkhfgiozrnsxy"  # no value's letter, no step's (t, k)
    section = tex.split(r"\section{Truncated backpropagation through time}")[1].split(r"\section")[0]
    assert f"a delta of age ${age}$" in section and "$a$" not in section and "[a]" not in tex


#: A matrix of steps side by side as the appendix writes it: its symbol (a letter, a Greek capital, a gate's
#: {A_{hn}}, a primed {\Sigma'_{o}}, with a tag or a delta's letter above, under a tilde) and its steps.
_GROUP = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"  # braces, nested up to three deep
_RUN = re.compile(rf"((?:\\tilde\{{)?(?:{_GROUP}|\\[A-Za-z]+|[A-Z])\}}?(?:\^{_GROUP})?)_\{{(\d+):(\d+)\}}")
#: A chain's tag above a symbol: (f), (b), (2).
_TAG = re.compile(r"\^\{\((?:\d*(?:\\mathrm\{[fb]\})?)\)\}")


@pytest.mark.parametrize(
    "spec",
    [RNNSpec(T=5, cell="lstm"), RNNSpec(T=5, cell="gru"), RNNSpec(T=3, cell="lstm", bidirectional=True, masked=True)],
    ids=lambda s: s.name,
)
def test_every_matrix_the_gated_appendix_writes_is_named(spec):
    """A student does not know I_{1:5} (it reads as an identity) or Sigma'_o: each matrix of steps side by side
    that the appendix's formulas write is named in the legend or in a sentence of the appendix, a primed one
    as the Jacobian whose diagonal it holds."""
    tex = build(spec).latex
    legend = tex.split(r"\section*{Notation}")[1].split(r"\end{longtable}")[0]
    appendix = tex.split(r"\section{The formulas the code runs}")[1]
    blocks = re.findall(r"\\begin\{align\}.*?\\end\{align\}", appendix, flags=re.S)
    prose = re.sub(r"\\begin\{align\}.*?\\end\{align\}", "", appendix, flags=re.S)
    named = prose + legend
    unnamed = set()
    for symbol, lo, hi in _RUN.findall("".join(blocks)):
        if "'" in symbol:  # a primed capital: its small letter at step t, the diagonal of a Jacobian
            small = _TAG.sub("", symbol.replace(r"\Sigma", r"\sigma").replace("{F'", "{f'"))
            untagged = _TAG.sub("", prose) if "(each chain's with its tag)" in prose else prose
            ok = re.search(re.escape(small) + r"_\{t\}\$, the diagonal of \$\\partial ", untagged)
        elif symbol.startswith((r"\Delta", r"\tilde{\Delta")):
            ok = "a capital delta holds the deltas alike" in prose
        elif symbol.startswith(r"\tilde"):
            ok = "A tilde marks the part" in prose
        else:
            ok = re.search(re.escape(symbol) + r"_\{\d+:\d+\}", named) or (symbol == "X" and "X_{1:T}" in legend)
        if not ok:
            unnamed.add(f"{symbol}_{{{lo}:{hi}}}")
    assert not unnamed, sorted(unnamed)
    if spec.cell == "lstm":  # I, first: the input gates, which a reader would take for an identity matrix
        gates = r"\$I(\^\{[^$]*\})?_\{1:\d\}\$ holds \$i[^$]*\$ \(the input gates, not an identity matrix\)"
        assert re.search(gates, prose)


@pytest.mark.parametrize("spec", CHECKED[:3], ids=lambda s: s.name)
def test_the_document_names_the_paths_of_the_gradient(spec):
    """The delta recursion names the direct path (the memory cell through f, the GRU's state through z) and
    the path through the state; a section gives each gate's local Jacobian and the step's Jacobian split
    into its paths; the GRU's says which form it is and how the other differs."""
    tex = build(spec).latex
    section = tex.split(r"\section{What the gates do to the gradient}")[1].split(r"\section{The formulas")[0]
    if spec.cell == "lstm":
        assert r"\underbrace{\delta^{c}_{t+1} \odot f_{t+1}}_{\text{directly, step } t+1}" in tex
        assert r"}_{\text{through the state, step } t}" in tex
        assert r"\frac{\partial c_{t}}{\partial c_{t-1}} &= \operatorname{diag}(f_{t}) + " in section
        assert "vanishing gradients" in section and r"\gamma \|W\|" in section
    else:
        assert r"\underbrace{\delta^{h}_{t+1} \odot z_{t+1}}_{\text{directly, step } t+1}" in tex
        assert r"\frac{\partial h_{t}}{\partial h_{t-1}} &= \operatorname{diag}(z_{t}) + " in section
        forms = " ".join(tex.split(r"\section{The two forms of the GRU}")[1].split(r"\section")[0].split())
        after = spec.gru_reset == "after"
        ours = "This document's GRU resets " + ("after the product" if after else "the state before the product")
        assert ours in forms
        assert r"r_{t} \odot \left(W_{n} h_{t-1} + b_{hn}\right)" in forms
        assert r"W_{n} \left(r_{t} \odot h_{t-1}\right)" in forms
    for flavor in ("github", "jupyter"):  # the new text renders in Markdown too
        assert "What the gates do to the gradient" in to_markdown(tex, flavor)


@needs_pdflatex
@pytest.mark.parametrize(
    "spec",
    [
        RNNSpec(T=5, cell="lstm"),
        RNNSpec(T=5, cell="gru"),
        RNNSpec(T=5, cell="gru", gru_reset="before"),
        RNNSpec(T=5, cell="lstm", notation="row"),
        RNNSpec(T=4, cell="lstm", layers=2, masked=True),
    ],
    ids=lambda s: s.name,
)
def test_a_gated_documents_long_sums_are_broken_into_rows(tmp_path, spec):
    """A state's delta collects a term per gate (and per chain above): a sum wider than the page is set in
    rows, and the checker reads the rows as one equation (test_every_numbered_equation_...)."""
    tex = build(spec).latex
    assert r"\nonumber \\*" + "\n" + r"&\qquad + " in tex
    _fits_the_page(tmp_path, spec, tex)


def _fits_the_page(tmp_path, spec, tex):
    run = compile_tex(tmp_path, spec.name, tex)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout


def _page_sweep() -> list:
    """Every gated document of 1-2 layers, in one direction or both, column or row vectors, many-to-many
    or many-to-one, LSTM and GRU of both forms, at T = 3 (48). The quick run takes each cell form, mapping
    and notation once, with one layer in both directions, two in both, two in one in rotation (one layer in
    one direction: the test above)."""
    cells = ({"cell": "lstm"}, {"cell": "gru"}, {"cell": "gru", "gru_reset": "before"})
    kinds = itertools.product(cells, ("many-to-many", "many-to-one"), ("column", "row"))
    params = []
    for k, (cell, mapping, notation) in enumerate(kinds):
        quick = ((1, True), (2, True), (2, False))[k % 3]
        for layers, bidirectional in itertools.product((1, 2), (False, True)):
            spec = RNNSpec(T=3, layers=layers, bidirectional=bidirectional, notation=notation, mapping=mapping, **cell)
            marks = () if (layers, bidirectional) == quick else pytest.mark.full
            params.append(pytest.param(spec, id=spec.name, marks=marks))
    return params


@needs_pdflatex
@pytest.mark.parametrize("spec", _page_sweep())
def test_every_gated_document_fits_the_page(tmp_path, spec):
    """Deltas of many terms, the backward chain's step written out whole in the final formulas (a
    product whose factors hold sums), long notation rows: nothing runs off the page (document.broken)."""
    _fits_the_page(tmp_path, spec, build(spec).latex)


# --- the check catches a wrong gate ----------------------------------------------------------------


def _mutated_check(spec, pattern, replacement):
    source = build(spec).module
    mutated, count = re.subn(pattern, replacement, source, count=1, flags=re.M)
    assert count == 1, f"no {pattern!r} in the module"
    module = type(sys)("mutated")
    exec(mutated, module.__dict__)
    return verify.check_module(module, dtypes=("float64",))


def test_the_check_passes_the_lstm_and_catches_a_dropped_sigmoid_derivative():
    spec = RNNSpec(T=4, cell="lstm")
    module = type(sys)("lstm")
    exec(build(spec).module, module.__dict__)
    assert verify.check_module(module, dtypes=("float64",)).ok
    # the input gate's local Jacobian i (1 - i) g loses its factor i: the sigmoid derivative's
    # (jac_i is made in the buffer of dzi, which is built on it: lower.steps_built_in_place)
    report = _mutated_check(spec, r"^(\s*)dzi \*= gi\n", "")
    assert not report.ok


def test_the_check_catches_an_assignment_where_the_cell_delta_accumulates():
    # δc_{t} = δc_{t+1} ∘ f_{t+1} + δh_t ∘ o_t ∘ f'(c_t): '=' for the second term's '+=' drops the first
    report = _mutated_check(RNNSpec(T=4, cell="lstm"), r"^(\s*dcell_\[\d\]) \+= ", r"\1 = ")
    assert not report.ok


# --- bad options ---------------------------------------------------------------------------------


def _rnngen(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rnngen.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--gru-reset", "before"], "--gru-reset applies to the GRU only"),
        (["--cell", "lstm", "--gru-reset", "after"], "--gru-reset applies to the GRU only"),
        (["--cell", "lstm", "--notation", "stacked"], "the stacked notation is for the Elman cell"),
        (["--cell", "gru", "--gru-reset", "middle"], "'middle' is not one of 'after', 'before'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, fragment):
    result = _rnngen("derive", "--T", "3", *args, "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0 and fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("rnngen: error")]) == 1
    assert list(tmp_path.iterdir()) == []


def test_bench_times_a_gated_cell_and_says_which_contenders_are_elman_only(tmp_path):
    sizes = ["--batch", "2", "--n-x", "3", "--n-h", "4", "--n-y", "3", "--samples", "1", "--dtype", "float64"]
    result = _rnngen("bench", "--T", "3", "--cell", "gru", *sizes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the hand-written loops are Elman cells, not gru" in result.stdout
    assert "GEMM only" in result.stdout  # the limit with the gates side by side


def test_flow_measures_a_gated_cell_along_both_paths(tmp_path):
    result = _rnngen("flow", "--T", "4", "--cell", "lstm", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    flow = json.loads(result.stdout)
    assert len(flow["jacobian"]) == len(flow["direct"]) == len(flow["state_jacobian"]) == 5
    assert "bound" not in flow  # no Elman bound for a gated cell
    direct = flow["direct"]
    assert all(a < b for a, b in zip(direct, direct[1:]))  # each step multiplies in sigmoid gates below 1
    # one step back, c_T reads c_{T-1} through f_T alone: the whole Jacobian is the direct path
    assert flow["state_jacobian"][3] == pytest.approx(direct[3], rel=1e-8)


def test_the_spec_refuses_a_reset_form_for_another_cell():
    with pytest.raises(SpecError, match="applies to the GRU only"):
        RNNSpec(T=3, cell="elman", gru_reset="after")


# --- the frameworks' own cells ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_agrees(cell):
    """nn.LSTM / nn.GRU (PyTorch's gate order, reset after) with our weights, in float64."""
    torch = pytest.importorskip("torch")
    spec = RNNSpec(T=5, cell=cell)
    module, params, xs, targets = _problem(spec)
    n_x, n_h = params["U_" + GATES[cell][0]].shape[1], params["h0"].shape[0]
    net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(n_x, n_h).double()
    gates = GATES[cell]
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(np.concatenate([params[f"U_{g}"] for g in gates])))
        net.weight_hh_l0.copy_(torch.from_numpy(np.concatenate([params[f"W_{g}"] for g in gates])))
        net.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([params[f"b_{g}"] for g in gates])))
        hh = [np.zeros(n_h)] * len(gates)
        if cell == "gru":
            hh[-1] = params["b_hn"]
        net.bias_hh_l0.copy_(torch.from_numpy(np.concatenate(hh)))
    B = xs.shape[1]
    h0 = torch.from_numpy(np.tile(params["h0"], (1, B, 1))).requires_grad_()
    x = torch.from_numpy(xs)
    if cell == "lstm":
        c0 = torch.from_numpy(np.tile(params["c0"], (1, B, 1))).requires_grad_()
        hs, _ = net(x, (h0, c0))
    else:
        hs, _ = net(x, h0)
    V, c = (torch.from_numpy(params[k]).requires_grad_() for k in ("V", "c"))
    logits = hs @ V.T + c
    E = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).reshape(-1))
    E = E * targets.size  # a sum over the steps and sequences, as rnngen's loss
    E.backward()
    ours_E, ours = module.loss_and_grads(params, xs, targets)
    assert relative_error(ours_E, E.item()) <= RTOL
    torch_grads = {
        **{f"U_{g}": w for g, w in zip(gates, net.weight_ih_l0.grad.numpy().reshape(len(gates), n_h, n_x))},
        **{f"W_{g}": w for g, w in zip(gates, net.weight_hh_l0.grad.numpy().reshape(len(gates), n_h, n_h))},
        **{f"b_{g}": b for g, b in zip(gates, net.bias_ih_l0.grad.numpy().reshape(len(gates), n_h))},
        "h0": h0.grad.numpy().sum(axis=(0, 1)),
        "V": V.grad.numpy(),
        "c": c.grad.numpy(),
    }
    if cell == "lstm":
        torch_grads["c0"] = c0.grad.numpy().sum(axis=(0, 1))
    else:
        torch_grads["b_hn"] = net.bias_hh_l0.grad.numpy().reshape(3, n_h)[2]
    for name, g in torch_grads.items():
        assert relative_error(ours[name], g) <= RTOL, name


def test_the_derive_summary_names_the_gated_cell_and_its_weights_per_gate():
    from rnngen.cli import _describe

    line = _describe(RNNSpec(T=5, cell="lstm"))
    assert line.startswith("1 layer: LSTM cells (sigmoid gates; tanh candidate and cell output), softmax output")
    assert "matrices U_·, W_· (one per gate) and V, biases b_· and c, T = 5" in line
    assert "bias b_· only" in _describe(RNNSpec(T=5, cell="gru", output_bias=False))
