"""Truncated BPTT, ``--truncate τ`` (issue 17, item 2): each E_t reaches the steps t - τ + 1..t only.

The gradient is no loss's gradient, so it is checked against two computations that share nothing
with the aged reverse mode: a truncated loop written by hand below (per loss term, seed 002's fixed
horizon), and the full network's sum over paths restricted to the kept paths (``truncated``).
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from test_latex import compile_tex, needs_pdflatex

from rnngen import truncated, verify
from rnngen.families import Family, is_family_name
from rnngen.names import taken
from rnngen.optimize import recurrent_families
from rnngen.pipeline import build
from rnngen.spec import RNNSpec, SpecError

# --- a truncated loop, by hand ---------------------------------------------------------------


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def hand_truncated(params, xs, targets, tau, *, layers=1, bidirectional=False, last_only=False, state=None):
    """tanh layers, softmax and cross-entropy; ``xs`` (T, B, n_x), ``targets`` (T, B), or (B,) with
    ``last_only`` (many-to-one). For each loss term E_t, each chain runs back from step t over tau
    steps (forward in time for a backward chain), fed by the layer above at the same steps; its
    initial state gets what is left when the window reaches the chain's first step. A forward stack
    or one bidirectional layer. Returns ``(E, grads, dxs, dstates)``."""
    assert not (bidirectional and layers > 1)
    T, B, _ = xs.shape
    chains = [
        (str(layer) if layers > 1 else "") + (f"_{d}" if d else "")
        for layer in range(1, layers + 1)
        for d in (("f", "b") if bidirectional else ("",))
    ]
    layer_of = {s: (int(s.split("_")[0]) if layers > 1 else 1) for s in chains}
    reverse = {s: s.endswith("_b") for s in chains}
    h0 = {s: "h0" + (f"_{s.lstrip('_')}" if s else "") for s in chains}
    below = {s: next((c for c in chains if layer_of[c] == layer_of[s] - 1), None) for s in chains}
    hs = {}
    for s in chains:
        inputs = xs if below[s] is None else hs[below[s]][1 : T + 1]
        h = np.zeros((T + 2, B, params["W" + s].shape[0]))
        start = T + 1 if reverse[s] else 0
        h[start] = state[h0[s]] if state is not None else params[h0[s]]
        for t in range(T, 0, -1) if reverse[s] else range(1, T + 1):
            prev = h[t + 1] if reverse[s] else h[t - 1]
            h[t] = np.tanh(inputs[t - 1] @ params["U" + s].T + prev @ params["W" + s].T + params["b" + s])
        hs[s] = h
    top = [s for s in chains if layer_of[s] == layers]
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dxs, dstates, E = np.zeros_like(xs), {h0[s]: np.zeros((B, hs[s].shape[-1])) for s in chains}, 0.0
    for t in [T] if last_only else range(1, T + 1):
        y = targets if last_only else targets[t - 1]
        hcat = np.concatenate([hs[s][t] for s in top], axis=-1)
        p = _softmax(hcat @ params["V"].T + params["c"])
        E -= np.log(p[np.arange(B), y]).sum()
        dy = p.copy()
        dy[np.arange(B), y] -= 1
        grads["V"] += dy.T @ hcat
        grads["c"] += dy.sum(axis=0)
        split = np.split(dy @ params["V"], len(top), axis=-1)
        inject = {s: {t: g} for s, g in zip(top, split)}
        for s in reversed(chains):  # the top layer first
            window = range(t, min(T, t + tau - 1) + 1) if reverse[s] else range(t, max(1, t - tau + 1) - 1, -1)
            carry, down = 0.0, {}
            for k in window:
                dz = (inject.get(s, {}).get(k, 0.0) + carry) * (1 - hs[s][k] ** 2)
                inputs = xs[k - 1] if below[s] is None else hs[below[s]][k]
                grads["U" + s] += dz.T @ inputs
                grads["W" + s] += dz.T @ (hs[s][k + 1] if reverse[s] else hs[s][k - 1])
                grads["b" + s] += dz.sum(axis=0)
                carry = dz @ params["W" + s]
                if below[s] is None:
                    dxs[k - 1] += dz @ params["U" + s]
                else:
                    down[k] = dz @ params["U" + s]
            if window[-1] == (T if reverse[s] else 1):  # the window reached the first step: the initial state
                dstates[h0[s]] += carry
            if below[s] is not None:
                inject[below[s]] = down
    for s in chains:
        grads[h0[s]] = np.zeros_like(params[h0[s]]) if state is not None else dstates[h0[s]].sum(axis=0)
    return E, grads, dxs, dstates


def _point(m, T, B=3, seed=0, dtype=np.float64):
    """Every parameter drawn (biases and initial states too), inputs and class targets."""
    rng = np.random.default_rng(seed)
    params = {k: (0.6 * rng.standard_normal(v.shape)).astype(dtype) for k, v in m.init_params(3, 4, 3).items()}
    xs = rng.standard_normal((T, B, 3)).astype(dtype)
    return params, xs, rng.integers(0, 3, (T, B))


def _error(a, b):
    return verify.relative_error(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


STRUCTURES = [{}, {"layers": 2}, {"bidirectional": True}]


@pytest.mark.parametrize("structure", STRUCTURES, ids=["one_layer", "two_layers", "bidirectional"])
@pytest.mark.parametrize("tau", [1, 2, 3])
def test_the_module_is_the_hand_written_truncated_loop(module_of, structure, tau):
    m = module_of(RNNSpec(T=5, truncate=tau, input_grad=True, **structure))
    params, xs, ys = _point(m, 5)
    E, grads = m.loss_and_grads(params, xs, ys)
    E_ref, ref, dxs, _ = hand_truncated(params, xs, ys, tau, **structure)
    assert _error(E, E_ref) < 1e-14
    for name in params:
        assert _error(grads[name], ref[name]) < 1e-13, name
    assert _error(grads["x"], dxs) < 1e-13


@pytest.mark.parametrize("structure", STRUCTURES, ids=["one_layer", "two_layers", "bidirectional"])
def test_a_given_state_gets_the_truncated_gradient_and_the_learned_one_none(module_of, structure):
    m = module_of(RNNSpec(T=5, truncate=2, **structure))
    params, xs, ys = _point(m, 5)
    rng = np.random.default_rng(7)
    state = {name: 0.5 * rng.standard_normal((3, 4)) for name in m.INITIAL_STATES}
    given = state if len(state) > 1 else state[m.INITIAL_STATES[0]]
    _, grads = m.loss_and_grads(params, xs, ys, state=given)
    _, ref, _, dstates = hand_truncated(params, xs, ys, 2, state=state, **structure)
    got = grads["state"] if isinstance(grads["state"], dict) else {m.INITIAL_STATES[0]: grads["state"]}
    for name in m.INITIAL_STATES:
        assert _error(got[name], dstates[name]) < 1e-13, name
        assert not np.any(grads[name])
    for name in params:
        assert _error(grads[name], ref[name]) < 1e-13, name


def test_many_to_one_reaches_the_last_tau_steps_only(module_of):
    m = module_of(RNNSpec(T=5, truncate=2, mapping="many-to-one", input_grad=True))
    params, xs, ys = _point(m, 5)
    _, grads = m.loss_and_grads(params, xs, ys[-1])
    _, ref, dxs, _ = hand_truncated(params, xs, ys[-1], 2, last_only=True)
    for name in params:
        assert _error(grads[name], ref[name]) < 1e-13, name
    assert _error(grads["x"], dxs) < 1e-13
    assert not np.any(grads["x"][:3]) and not np.any(grads["h0"])  # no kept path reaches them


def test_float32_follows_the_float64_hand_loop(module_of):
    m = module_of(RNNSpec(T=5, truncate=2, layers=2))
    params, xs, ys = _point(m, 5, dtype=np.float32)
    _, grads = m.loss_and_grads(params, xs, ys)
    wide = {k: v.astype(np.float64) for k, v in params.items()}
    _, ref, _, _ = hand_truncated(wide, xs.astype(np.float64), ys, 2, layers=2)
    for name in params:
        assert grads[name].dtype == np.float32
        assert _error(grads[name], ref[name]) < 1e-5, name


# --- the restricted sum over paths ------------------------------------------------------------

PATH_SPECS = [
    RNNSpec(T=5, truncate=1),
    RNNSpec(T=5, truncate=3, input_grad=True),
    RNNSpec(T=4, truncate=2, layers=2),
    RNNSpec(T=3, truncate=3, layers=2, bidirectional=True),  # paths zigzag: 5 edges at most
    RNNSpec(T=4, truncate=2, mapping="many-to-one", notation="stacked"),
    RNNSpec(T=4, truncate=2, notation="row", output="sigmoid", loss="binary_cross_entropy"),
    RNNSpec(T=5, truncate=2, delay=2),
]


@pytest.mark.parametrize("spec", PATH_SPECS, ids=lambda s: s.name)
def test_the_module_is_the_restricted_sum_over_paths(module_of, spec):
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m)
    _, grads = m.loss_and_grads(params, xs, targets)
    reference = truncated.restricted_path_sum(spec, params, xs, targets)
    assert set(reference) == set(grads)
    for name in grads:
        assert _error(grads[name], reference[name]) < 1e-13, name
    report = verify.check_module(m)
    assert report.ok and report.horizon == spec.truncate and report.fd == {}, report.failures
    assert report.truncated["parameters"] < 1e-13 and report.truncated["state"] < 1e-13


def test_the_restricted_sum_is_not_the_full_gradient():
    # the check would pass a module that ignored the truncation if the restriction kept every path
    spec = RNNSpec(T=5, truncate=2)
    m = verify.load_module(_write(build(dataclasses.replace(spec, truncate=None)).module, "full"))
    params, xs, targets = verify.random_problem(m)
    _, full = m.loss_and_grads(params, xs, targets)
    reference = truncated.restricted_path_sum(spec, params, xs, targets)
    assert _error(full["W"], reference["W"]) > 1e-2 and _error(full["V"], reference["V"]) < 1e-14


@pytest.mark.parametrize("tau", [1, 2, 3])
def test_the_pruned_expansion_keeps_exactly_the_short_paths(tau):
    # pruning during the expansion drops no path the full expansion, filtered afterwards, keeps
    from rnngen.backprop import derive, path_expansion, path_terms

    full = derive(RNNSpec(T=5, layers=2))
    # an Elman path term holds one factor of a recurrent weight per edge it crosses: counted apart here
    weights = {chain.params["recurrent"].symbol() for chain in full.graph.network.chains}

    def edges(term):
        return sum(1 for node in sp.preorder_traversal(term) if node in weights)

    for name in ("W1", "W2", "U1", "h0_2"):
        every = path_expansion(full, name)
        kept = path_terms(full, full.gradients[name], max_edges=tau - 1)
        assert sorted(map(str, kept)) == sorted(str(t) for t in every if edges(t) <= tau - 1), name
    # W of one layer: E_t reaches the uses at steps max(1, t - tau + 1)..t
    one = derive(RNNSpec(T=6))
    assert len(path_terms(one, one.gradients["W"], max_edges=tau - 1)) == sum(min(t, tau) for t in range(1, 7))


def test_a_long_truncated_module_is_checked(module_of):
    # the restricted sum grows like tau T, not T^2: at T = 200 it is built (it was skipped, and "ok")
    report = verify.check_module(module_of(RNNSpec(T=200, truncate=3)))
    assert report.ok and report.truncated["parameters"] < 1e-13, report.failures
    assert any("checked against the full sum over paths" in note for note in report.notes)


def test_a_truncated_check_that_cannot_run_fails(module_of, monkeypatch):
    from rnngen.backprop import TooManyPaths

    def too_many(*args):
        raise TooManyPaths("the sum over paths of dE/dW has more than 20000 terms")

    monkeypatch.setattr(verify, "check_truncated", too_many)
    report = verify.check_module(module_of(RNNSpec(T=5, truncate=2)))
    assert not report.ok and report.failures[0].startswith("the truncated gradient is not checked: "), report.failures
    assert not any("checked against" in note for note in report.notes)


@pytest.mark.parametrize(
    "spec", [RNNSpec(T=4, truncate=4), RNNSpec(T=3, truncate=5, layers=2, bidirectional=True)], ids=lambda s: s.name
)
def test_the_full_horizon_is_the_untruncated_gradient(module_of, spec):
    assert spec.truncate == spec.full_horizon
    m, full = module_of(spec), module_of(dataclasses.replace(spec, truncate=None))
    params, xs, targets = verify.random_problem(m)
    _, got = m.loss_and_grads(params, xs, targets)
    _, ref = full.loss_and_grads(params, xs, targets)
    for name in ref:
        assert _error(got[name], ref[name]) < 1e-13, name
    report = verify.check_module(m)  # the full gradient: finite differences and the Taylor test apply
    assert report.ok and report.horizon is None and report.fd


def test_stacked_bidirectional_layers_count_every_edge_a_path_crosses(module_of):
    # at tau = T a path of a 2-layer bidirectional network can still cross more edges (back in layer 2,
    # forward in layer 1): tau = T is not yet the full gradient there, tau = 2 (T - 1) + 1 is
    spec = RNNSpec(T=3, truncate=3, layers=2, bidirectional=True)
    assert spec.full_horizon == 5
    m, full = module_of(spec), module_of(dataclasses.replace(spec, truncate=None))
    params, xs, targets = verify.random_problem(m)
    _, got = m.loss_and_grads(params, xs, targets)
    _, ref = full.loss_and_grads(params, xs, targets)
    assert _error(got["W1_f"], ref["W1_f"]) > 1e-6
    assert _error(got["W2_f"], ref["W2_f"]) < 1e-14  # layer 2 alone crosses at most T - 1 = 2 edges


# --- the checks catch a truncation off by one ---------------------------------------------------


def _write(text, stem):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / f"{stem}.py"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("tau, claimed", [(3, 2), (1, 2)], ids=["one_step_too_many", "one_step_too_few"])
def test_the_check_catches_a_truncation_off_by_one(tau, claimed):
    """A module that truncates at tau but says (in its SPEC) it truncates at tau -/+ 1 fails its check."""
    text = build(RNNSpec(T=5, truncate=tau)).module
    assert f'"truncate": {tau},' in text
    wrong = verify.load_module(_write(text.replace(f'"truncate": {tau},', f'"truncate": {claimed},'), "wrong"))
    report = verify.check_module(wrong)
    assert not report.ok
    assert any("restricted sum over paths" in f for f in report.failures), report.failures
    right = verify.load_module(_write(text, "right"))
    assert verify.check_module(right).ok


def test_the_check_catches_an_initial_state_off_by_one():
    """The edge into the initial state does not age a path (the state is read at step 1): a module that
    counts it (drops the oldest term of δh_0) fails."""
    text = build(RNNSpec(T=5, truncate=2)).module
    old = "dh_[0] += dz_a1_[0] @ W"
    assert old in text
    wrong = verify.load_module(_write(text.replace(old, "pass"), "wrong_h0"))
    report = verify.check_module(wrong)
    assert not report.ok and any("restricted sum over paths" in f for f in report.failures), report.failures


# --- the derivation and the program ------------------------------------------------------------


def test_each_age_is_one_product_over_all_steps_and_no_recurrence():
    """The backward pass of a truncated module has no recurrence: each age reads only the age before it,
    so each is computed for all steps at once, and the program's size does not grow with T."""
    sizes = []
    for T in (20, 40):
        program = build(RNNSpec(T=T, truncate=3)).program
        backward = [s for s in program.stmts if s.section == "backward"]
        assert not {f for f in recurrent_families(program) if f.startswith("d")}
        stacked = {s.target.family.key for s in backward if s.is_stacked}
        assert stacked >= {"dz_a0", "fprime", "dz_a1", "dz"}
        sizes.append(len(backward))
    assert sizes[0] == sizes[1]


def test_the_sum_of_the_ages_is_written_into_its_buffer_without_temporaries():
    """dz[2..6] = dz_a0 + dz_a1 + dz_a2 (the last inlined): into the buffer's part, the others added in
    place (a value the array library made would replace the family's buffer, whose other steps hold the rest)."""
    text = build(RNNSpec(T=8, truncate=3)).module
    assert 'buf["dz[1:6] rows"] += buf["dz_a0[1:6] rows"]' in text
    assert 'buf["dz[1:6] rows"] += buf["dz_a1[1:-1] rows"]' in text
    assert "[...] =" not in text


def test_a_buffer_written_in_parts_is_taken_once_and_a_slice_filled_plainly():
    text = build(RNNSpec(T=6, truncate=3, layers=2, mapping="many-to-one", input_grad=True)).module
    # dE/dx_t is 0 for the steps no kept path reaches, then the rest: one buffer, bound once
    assert text.count('dx = buf["dx"]') == 1 and "dx[:3 * B] = 0.0" in text
    assert "[...] =" not in text


def test_no_step_views_are_made_per_call():
    # the initial state's oldest age was a family built in dh's buffer, its step list made per call
    text = build(RNNSpec(T=5, truncate=2, layers=2)).module
    assert "cheaper to index than the array" not in text and " = dh2  #" not in text


def test_an_aged_family_is_its_own_family_and_reserved():
    dz2 = Family("z", "adjoint", age=2)
    assert dz2.key == "dz_a2" and Family("h", "adjoint", 2, "f", age=0).key == "dh2_f_a0"
    assert dz2.text == "δz^[2]" and dz2.tag_latex == "[2]"
    assert dz2.jacobian == Family("fprime") and dz2.aged(None) == Family("z", "adjoint")
    assert is_family_name("dz_a2") and is_family_name("dh2_f_a13")
    assert taken("dz_a2", ["W", "V"])
    with pytest.raises(ValueError, match="only an adjoint has an age"):
        Family("z", age=1)


def test_the_spec_names_and_bounds_the_horizon():
    spec = RNNSpec(T=5, truncate=3)
    assert spec.name == "rnn_tanh_softmax_xent_trunc3_t5" and spec.cli_args() == "--T 5 --truncate 3"
    assert RNNSpec(T=5).full_horizon == 5 and RNNSpec(T=5, layers=3, bidirectional=True).full_horizon == 13
    for bad in (0, 6, 2.5, True, "--3", "²", "6"):
        with pytest.raises(SpecError, match="whole number from 1 to 5"):
            RNNSpec(T=5, truncate=bad)


def test_a_horizon_given_as_text_is_read_as_the_length_is():
    # one rule from text to number for T and the horizon (spec.check_T, spec.check_truncate)
    assert RNNSpec(T="5", truncate=" 3 ") == RNNSpec(T=5, truncate=3)


def test_the_module_says_what_is_truncated():
    spec = RNNSpec(T=5, truncate=3, bidirectional=True)
    docstring = " ".join(build(spec).module.split('"""')[1].split())
    assert "truncated BPTT with the horizon tau = 3" in docstring and spec.truncation_rule in docstring
    # the rule in edges, per direction: a backward chain is reached ahead of t, its state read at step T
    assert "at most 2 recurrent edges" in spec.truncation_rule
    assert "a forward chain at the steps t - 2..t (its initial state for t <= 3)" in spec.truncation_rule
    assert "a backward chain at the steps t..t + 2 (its initial state, read at step T, for t >= T - 2)" in docstring
    help_text = " ".join(rnngen("derive", "--help").stdout.split())
    assert "a backward chain at the steps t..t + TAU - 1" in help_text


def test_the_full_horizon_says_it_is_the_full_gradient():
    spec = RNNSpec(T=4, truncate=4)
    docstring = " ".join(build(spec).module.split('"""')[1].split())
    assert "At this horizon no path is cut: the gradient is the full one" in docstring
    assert "not the gradient of any loss" not in docstring
    assert "not the gradient of any loss" in RNNSpec(T=4, truncate=3).truncation_rule


def test_the_derive_summary_does_not_call_a_truncated_delta_a_derivative(tmp_path):
    result = rnngen("derive", "--T", "5", "--truncate", "2", "--out", str(tmp_path), "--no-check")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "δv_t = dE/dv_t" not in out and "δv_t = the part of dE/dv_t kept" in out
    assert "q <= 1" in out and "^[2]" not in out  # every age is at most tau - 1, the initial state's too
    full = rnngen("derive", "--T", "4", "--truncate", "4", "--out", str(tmp_path), "--no-check")
    assert "the gradient is the full one" in " ".join(full.stdout.split())


# --- the document -------------------------------------------------------------------------------

#: Networks whose every path from E_t to step k crosses |t - k| recurrent edges: the document checker
#: reads an age-a delta as one loss term's derivative (not a stack of bidirectional layers)
DOCUMENTS = [
    RNNSpec(T=4, truncate=2),
    RNNSpec(T=4, truncate=1, notation="row"),
    RNNSpec(T=4, truncate=3, layers=2, hidden="sigmoid"),
    RNNSpec(T=4, truncate=2, bidirectional=True),
    RNNSpec(T=4, truncate=2, mapping="many-to-one", notation="row"),  # δh_0 = 0: no kept path reaches h_0
    RNNSpec(T=4, truncate=2, delay=1, notation="stacked"),
    RNNSpec(T=4, truncate=3, mapping="one-to-many", output="sigmoid", loss="binary_cross_entropy"),
]


@pytest.mark.parametrize("spec", DOCUMENTS, ids=lambda s: s.name)
def test_every_numbered_equation_of_the_document_holds(spec):
    from test_network_document import _check

    result = _check(spec)
    assert r"\section{Truncated backpropagation through time}" in result.latex
    assert f"[{spec.truncate - 1}]" in result.latex  # the ages are written out, the oldest tau - 1
    # an initial state's too (the edge into it does not age); the preamble's \allowdisplaybreaks[1] is no age
    assert f"[{spec.truncate}]" not in result.latex.split(r"\begin{document}")[1]
    restricted = "truncated-restricted" in result.equations
    assert restricted == (spec.mapping == "many-to-many" and not spec.delay and not spec.bidirectional)


def test_the_document_states_the_rule_per_direction_and_names_every_chain():
    tex = build(RNNSpec(T=4, truncate=2, layers=2, bidirectional=True)).latex
    section = " ".join(tex[tex.index(r"\section{Truncated") :].split())
    assert r"a backward chain at the steps $t, \dots, t + 1$" in section
    chains = ["W^{(1\\mathrm{f})}", "W^{(1\\mathrm{b})}", "W^{(2\\mathrm{f})}", "W^{(2\\mathrm{b})}"]
    assert all(w in section for w in chains), section[:600]
    assert "lecture" not in section and "is the full derivatives" not in section
    # age a also reads age a of the layer above (going down a layer crosses no recurrent edge)
    assert "of the layer above at the same step" in section
    # the notation table does not call a truncated delta dE/dh, and says what an age is
    legend = tex[tex.index(r"\section*{Notation}") : tex.index(r"\end{longtable}")]
    assert "that the truncation keeps" in legend and "[q]" in legend and r"$\tau$" in legend
    assert r"\widetilde{\frac{\partial E}{\partial W^{(1\mathrm{f})}}}" in section  # its own symbol


@pytest.mark.parametrize("wrong", [r"\sum_{q=0}^{2}", r"\sum_{q=0}^{0}"], ids=["one_age_more", "one_age_less"])
def test_the_document_checker_catches_a_restricted_sum_off_by_one(wrong):
    from test_network_document import make_checker

    result, checker = make_checker(RNNSpec(T=4, truncate=2))
    number = result.equations["truncated-restricted"]
    assert r"\sum_{q=0}^{1}" in checker.tex
    checker.tex = checker.tex.replace(r"\sum_{q=0}^{1}", wrong)
    assert any(n == number for n, _ in checker.check())


# --- the command line ---------------------------------------------------------------------------


def rnngen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnngen.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "value, shown",
    [("0", "0"), ("6", "6"), ("-1", "-1"), ("abc", "'abc'"), ("2.5", "'2.5'"), ("--3", "'--3'"), ("²", "'²'")],
)
def test_a_bad_horizon_is_one_line_and_writes_nothing(tmp_path, value, shown):
    result = rnngen("derive", "--T", "5", f"--truncate={value}", cwd=tmp_path)
    assert result.returncode != 0 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"rnngen: error: the truncation horizon must be a whole number from 1 to 5 (5 cuts no path: the full "
        f"gradient), got {shown}"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["flow", "bench"])
def test_flow_and_bench_refuse_a_truncation_in_one_line(tmp_path, command):
    result = rnngen(command, "--T", "5", "--truncate", "2", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "--truncate" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_derive_truncate_writes_checks_and_reports(tmp_path):
    result = rnngen("derive", "--T", "5", "--truncate", "2", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    import json

    check = json.loads(result.stdout)["check"]
    assert check["ok"] and check["truncated"]["tau"] == 2 and check["finite_differences"]["errors"] == {}
    assert (tmp_path / "rnn_tanh_softmax_xent_trunc2_t5.py").is_file()


@needs_pdflatex
@pytest.mark.parametrize(
    "spec", [RNNSpec(T=4, truncate=2, notation="row"), RNNSpec(T=3, truncate=4, layers=2, bidirectional=True)]
)
def test_the_truncated_document_compiles(tmp_path, spec):
    result = compile_tex(tmp_path, spec.name, build(spec).latex)
    assert result.returncode == 0, result.stdout[-2000:]
