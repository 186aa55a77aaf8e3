"""Padding and masks (issue 17, item 3): a masked module (``--mask``) against an independent NumPy loop
over each sequence cut to its real steps, every check on masked modules, each check catching a mask
that leaks, and the one-line errors of bad arguments."""

import numpy as np
import pytest
from click.testing import CliRunner

from rnngen import masks, verify
from rnngen.cli import cli
from rnngen.sequences import mask_from_lengths
from rnngen.spec import RNNSpec, SpecError

# --- an independent reference: the unpadded sequence by a plain loop and hand-written BPTT ---------


def _softmax(o):
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference(chains, V, c, xs, losses, bidirectional):
    """One sequence of n steps, tanh cells, softmax and cross-entropy, in row math (a batch of one).

    ``chains``: per layer, per direction, the dict ``{"U", "W", "b", "h0"}``; ``xs``: n inputs
    (None where a step reads none: one-to-many); ``losses``: step (0-based) -> target class.
    Returns E, the gradients (the same structure), dV, dc and each chain's final state.
    """
    n = len(xs)
    dirs = 2 if bidirectional else 1
    layers = [chains[i : i + dirs] for i in range(0, len(chains), dirs)]
    below, inputs, states = xs, [], []
    for layer in layers:
        inputs.append(below)
        hs = []
        for d, p in enumerate(layer):
            h = {-1 if d == 0 else n: p["h0"][None]}
            for t in range(n) if d == 0 else range(n - 1, -1, -1):
                before = h[t - 1] if d == 0 else h[t + 1]
                z = before @ p["W"].T + p["b"] + (0 if below[t] is None else below[t] @ p["U"].T)
                h[t] = np.tanh(z)
            hs.append(h)
        states.append(hs)
        below = [np.concatenate([h[t] for h in hs], axis=-1) for t in range(n)]
    E, d_out = 0.0, [np.zeros((1, V.shape[1])) for _ in range(n)]
    dV, dc = np.zeros_like(V), np.zeros_like(c)
    for t, y in losses.items():
        p = _softmax(below[t] @ V.T + c)
        E -= np.log(p[0, y])
        do = p.copy()
        do[0, y] -= 1
        dV += do.T @ below[t]
        dc += do[0]
        d_out[t] = d_out[t] + do @ V
    grads = [None] * len(chains)
    for li in reversed(range(len(layers))):
        d_in = [None if x is None else np.zeros_like(x) for x in inputs[li]]
        offset = 0
        for d, p in enumerate(layers[li]):
            h, k = states[li][d], p["W"].shape[0]
            g = {key: np.zeros_like(v) for key, v in p.items()}
            carry = np.zeros((1, k))
            for t in range(n - 1, -1, -1) if d == 0 else range(n):
                before = h[t - 1] if d == 0 else h[t + 1]
                dz = (d_out[t][:, offset : offset + k] + carry) * (1 - h[t] ** 2)
                if inputs[li][t] is not None:
                    g["U"] += dz.T @ inputs[li][t]
                    d_in[t] += dz @ p["U"]
                g["W"] += dz.T @ before
                g["b"] += dz[0]
                carry = dz @ p["W"]
            g["h0"] = carry[0]
            grads[li * dirs + d] = g
            offset += k
        d_out = d_in
    finals = [states[li][d][n - 1 if d == 0 else 0][0] for li in range(len(layers)) for d in range(dirs)]
    return E, grads, dV, dc, finals


def _unpadded(m, params, xs, targets, lengths, state=None, mask=None):
    """E, the gradients and the final states, each sequence cut to its real steps and run alone
    (the steps of ``mask``'s column when given: a mask with holes)."""
    spec = RNNSpec(**m.SPEC)
    T, names = spec.T, list(m.PARAM_SHAPES)
    per_chain = [names[i : i + 4] for i in range(0, len(names) - 2, 4)]  # U, W, b, h0 of each chain
    B = len(lengths)
    E, grads = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    finals = {chain[3]: np.zeros((B, *params[chain[3]].shape)) for chain in per_chain}
    for i, n in enumerate(lengths):
        steps = range(T - n, T) if spec.padding == "pre" else range(n)  # the real ones, 0-based
        if mask is not None:
            steps = np.flatnonzero(mask[:, i])
        if spec.mapping == "one-to-many":
            cut = [xs[i][None]] + [None] * (n - 1)
        else:
            cut = [xs[t, i][None] for t in steps]
        if spec.mapping == "many-to-one":
            losses = {n - 1: targets[i]}
        else:
            first = spec.loss_steps[0] - 1
            losses = {k: targets[t - first, i] for k, t in enumerate(steps) if t >= first}
        chains = []
        for U, W, b, h0 in per_chain:
            start = params[h0] if state is None else state[h0][i]
            chains.append({"U": params[U], "W": params[W], "b": params[b], "h0": start})
        e, g, dV, dc, final = _reference(chains, params["V"], params["c"], cut, losses, spec.bidirectional)
        E += e
        for chain, gc, f in zip(per_chain, g, final):
            for key, name in zip(("U", "W", "b", "h0"), chain):
                grads[name] += gc[key]
            finals[chain[3]][i] = f
        grads["V"] += dV
        grads["c"] += dc
    return E, grads, finals


def _problem(m, B=4, seed=0):
    params, xs, targets = verify.random_problem(m, (3, 4, 3, B), seed)
    T = m.T
    lengths = np.random.default_rng(seed).integers(1, T + 1, size=B)
    lengths[:2] = 1, T
    return params, xs, targets, lengths


MASKED = [
    RNNSpec(T=4, masked=True),
    RNNSpec(T=4, masked=True, padding="pre"),
    RNNSpec(T=4, masked=True, mapping="many-to-one"),
    RNNSpec(T=4, masked=True, mapping="many-to-one", padding="pre"),
    RNNSpec(T=4, masked=True, delay=1),
    RNNSpec(T=4, masked=True, delay=2),
    RNNSpec(T=4, masked=True, mapping="one-to-many"),
    RNNSpec(T=3, masked=True, layers=2),
    RNNSpec(T=4, masked=True, bidirectional=True),
    RNNSpec(T=4, masked=True, bidirectional=True, padding="pre"),
    RNNSpec(T=3, masked=True, bidirectional=True, mapping="many-to-one", padding="pre"),
    RNNSpec(T=4, masked=True, bidirectional=True, mapping="many-to-one"),
    RNNSpec(T=3, masked=True, layers=2, bidirectional=True),
    RNNSpec(T=3, masked=True, layers=2, bidirectional=True, mapping="many-to-one"),
]


def _as_dict(m, final):
    return final if isinstance(final, dict) else {m.INITIAL_STATES[0]: final}


@pytest.mark.parametrize("spec", MASKED, ids=lambda s: s.name)
def test_a_masked_module_is_each_sequence_cut_to_its_real_steps(module_of, spec):
    m = module_of(spec)
    params, xs, targets, lengths = _problem(m)
    E, grads, final = m.loss_and_grads(params, xs, targets, lengths=lengths, return_state=True)
    E_ref, grads_ref, final_ref = _unpadded(m, params, xs, targets, lengths)
    assert E == pytest.approx(E_ref, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for name, value in _as_dict(m, final).items():
        np.testing.assert_allclose(value, final_ref[name], rtol=1e-12, atol=1e-15, err_msg=name)
    # the same mask given as a mask
    E_mask = m.loss(params, xs, targets, mask=mask_from_lengths(lengths, spec.T, spec.padding))
    assert E_mask == E


@pytest.mark.parametrize("spec", [MASKED[0], MASKED[9]], ids=lambda s: s.name)
def test_a_carried_state_with_a_mask_is_the_cut_sequences_from_that_state(module_of, spec):
    m = module_of(spec)
    params, xs, targets, lengths = _problem(m, seed=1)
    rng = np.random.default_rng(7)
    state = {name: rng.standard_normal((len(lengths), *params[name].shape)) for name in m.INITIAL_STATES}
    given = state if len(state) > 1 else state[m.INITIAL_STATES[0]]
    E, grads, final = m.loss_and_grads(params, xs, targets, state=given, lengths=lengths, return_state=True)
    E_ref, grads_ref, final_ref = _unpadded(m, params, xs, targets, lengths, state)
    assert E == pytest.approx(E_ref, rel=1e-12)
    for name in params:
        if name not in m.INITIAL_STATES:  # the learned states took no part
            np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for name, value in _as_dict(m, final).items():
        np.testing.assert_allclose(value, final_ref[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_float32_follows_float64_with_a_mask(module_of):
    m = module_of(MASKED[1])
    params, xs, targets, lengths = _problem(m)
    E, grads = m.loss_and_grads(params, xs, targets, lengths=lengths)
    E32, grads32 = m.loss_and_grads(
        {k: v.astype(np.float32) for k, v in params.items()}, xs.astype(np.float32), targets, lengths=lengths
    )
    assert E32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32.values())
    assert E32 == pytest.approx(E, rel=1e-5)
    for name in params:
        assert np.linalg.norm(grads32[name] - grads[name]) <= 1e-5 * np.linalg.norm(grads[name]), name


def test_no_mask_is_every_step_real(module_of):
    masked, plain = module_of(RNNSpec(T=4, masked=True, layers=2)), module_of(RNNSpec(T=4, layers=2))
    params, xs, targets, _ = _problem(masked)
    E, grads = masked.loss_and_grads(params, xs, targets)
    E_plain, grads_plain = plain.loss_and_grads(params, xs, targets)
    assert E == pytest.approx(E_plain, rel=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], grads_plain[name], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_the_modules_lengths_make_the_mask_sequences_makes(module_of, padding):
    m = module_of(RNNSpec(T=5, masked=True, padding=padding))
    params, xs, targets = verify.random_problem(m, (3, 4, 3, 5))
    for lengths in ([1, 2, 3, 4, 5], [5, 5, 1, 1, 3]):
        lengths = np.array(lengths)
        mask = mask_from_lengths(lengths, 5, padding)
        assert m.forward(params, xs, lengths=lengths)["h"].tolist() == m.forward(params, xs, mask=mask)["h"].tolist()
    # one sequence: an int of lengths, a (T,) mask
    one = m.loss(params, xs[:, 2], targets[:, 2], lengths=3)
    assert one == m.loss(params, xs[:, 2], targets[:, 2], mask=mask_from_lengths([3], 5, padding)[:, 0])


# --- the checks --------------------------------------------------------------------------------------


#: Besides the structures: relu's derivative is bool (the mask cannot be multiplied into it in place), and
#: softmax with squared error has its fused gradient's product led by a helper's value.
OUTPUTS = [
    RNNSpec(T=3, masked=True, hidden="relu", output="identity", loss="squared_error"),
    RNNSpec(T=3, masked=True, output="softmax", loss="squared_error", padding="pre"),
    RNNSpec(T=3, masked=True, output="sigmoid", loss="binary_cross_entropy", notation="row", input_grad=True),
]


@pytest.mark.parametrize("spec", MASKED[:4] + [MASKED[6], MASKED[8], MASKED[10]] + OUTPUTS, ids=lambda s: s.name)
def test_every_check_passes_on_a_masked_module(spec):
    from rnngen.pipeline import build

    report = verify.check_build(build(spec), exact=True)
    assert report.ok, report.failures
    assert report.padded is not None and report.forms is not None and report.exact is not None
    assert report.state  # the carried-state checks ran with the mask too


def test_the_checks_run_with_padded_steps():
    mask = masks.random_mask({"T": 5, "padding": "pre"}, 4)
    assert mask.sum(axis=0)[:2].tolist() == [1, 5] and not mask.all()
    assert mask.tolist() == mask_from_lengths(mask.sum(axis=0), 5, "pre").tolist()


def _broken(spec, old: str, new: str, tmp_path):
    """The module of ``spec`` with a piece of its text changed everywhere: a mask that leaks."""
    from rnngen.pipeline import build

    text = build(spec).module
    assert old in text, old
    path = tmp_path / f"{spec.name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return verify.load_module(path)


#: An edit of the module, and whether a padded step's target then moves the result (the padded-step
#: check sees only what a padded step reads).
LEAKS = {
    # a padded step's loss term passes its gradient on (the m on do_t dropped)
    "loss gradient unmasked": (RNNSpec(T=3, masked=True), "    do[pad.reshape(-1)] = 0.0\n", "", True),
    # the delta passes a real step whole as well (the (1 - m) of δh_{t-1}'s term δh_t ∘ (1 - m_t) dropped,
    # and with it the steps it is made at: those where a padded sequence carries a delta)
    "delta passed whole": (
        RNNSpec(T=3, masked=True),
        "    if carried[1]:\n        np.add(dh_[1], dh_[2], out=dh_[1], where=pad[1])\n",
        "    np.add(dh_[1], dh_[2], out=dh_[1])\n",
        False,
    ),
    # a padded step's loss term counted in E, but not in the gradient
    "loss counts padding": (
        RNNSpec(T=3, masked=True),
        "yhat, m.reshape(-1, 1))",
        "yhat, np.ones_like(m).reshape(-1, 1))",
        True,
    ),
}


@pytest.mark.parametrize("leak", LEAKS)
def test_each_check_catches_a_mask_that_leaks(leak, tmp_path):
    spec, old, new, reads_padding = LEAKS[leak]
    m = _broken(spec, old, new, tmp_path)
    report = verify.check_module(m, exact=True)
    assert any("finite differences" in f for f in report.failures), report.failures
    assert abs(report.taylor - 2) > verify.TAYLOR_SLOPE_TOLERANCE
    assert report.exact.worst > 1e-6
    assert (report.padded > 1e-6) == reads_padding


def test_the_padded_step_check_catches_a_state_that_is_not_kept(tmp_path):
    # the forward step ignores the mask: the state moves on over padding (its gradient still masked)
    m = _broken(RNNSpec(T=3, masked=True), "    np.copyto(h_[2], h_[1], where=pad[1])\n", "", tmp_path)
    report = verify.check_module(m)
    assert report.padded > 1e-6
    assert not report.ok


# --- bad input ---------------------------------------------------------------------------------------


def test_an_unmasked_module_refuses_a_mask_in_one_line(module_of):
    m = module_of(RNNSpec(T=3))
    params, xs, targets = verify.random_problem(m)
    for call in (
        lambda: m.loss_and_grads(params, xs, targets, mask=np.ones((3, 2), bool)),
        lambda: m.loss(params, xs, targets, lengths=np.array([1, 2])),
        lambda: m.forward(params, xs, mask=np.ones((3, 2), bool)),
    ):
        with pytest.raises(ValueError, match=r"derive one with rnngen derive --mask$"):
            call()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.ones((3, 2), bool), "lengths": np.array([1, 2])}, "give mask or lengths, not both"),
        ({"mask": np.ones((3, 3), bool)}, r"mask has shape \(3, 3\) and dtype bool; expected bool of shape \(3, 2\)"),
        ({"mask": np.ones((3, 2))}, r"mask has shape \(3, 2\) and dtype float64; expected bool"),
        ({"lengths": np.array([1, 4])}, r"lengths must lie in 1..T = 1..3, got 4"),
        ({"lengths": np.array([0, 2])}, r"lengths must lie in 1..T = 1..3, got 0"),
        ({"lengths": np.array([1.0, 2.0])}, r"lengths has shape \(2,\) and dtype float64; expected whole numbers"),
        ({"lengths": np.array([1, 2, 3])}, r"lengths has shape \(3,\) and dtype int64; expected whole numbers"),
    ],
)
def test_a_wrong_mask_or_lengths_is_refused_in_one_line(module_of, kwargs, message):
    m = module_of(RNNSpec(T=3, masked=True))
    params, xs, targets = verify.random_problem(m)
    for call in (m.loss_and_grads, m.loss):
        with pytest.raises(ValueError, match=message):
            call(params, xs, targets, **kwargs)
    with pytest.raises(ValueError, match=message):
        m.forward(params, xs, **kwargs)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mapping": "one-to-many", "padding": "pre"}, "its one input at step 1, which pre-padding pads"),
        ({"delay": 1, "padding": "pre"}, "a delay counts from step 1, which pre-padding pads; use --padding post"),
    ],
)
def test_a_padding_that_pads_a_step_every_sequence_needs_is_refused(fields, message):
    with pytest.raises(SpecError, match=message):
        RNNSpec(T=4, masked=True, **fields)


@pytest.mark.parametrize(
    ("fields", "padded", "message"),
    [
        ({"mapping": "one-to-many"}, 0, "mask pads step 1 of a sequence: one-to-many reads its one input"),
        ({"delay": 1}, 0, "mask pads step 1 of a sequence: a delay counts from step 1"),
        ({}, slice(None), "mask has a sequence with no real step"),
    ],
)
def test_a_mask_that_pads_a_step_every_sequence_needs_is_refused_in_one_line(module_of, fields, padded, message):
    """A mask given as such could pad what lengths with the module's padding never pad: refused, not
    computed as another network (a backward chain that never started, an input never read)."""
    m = module_of(RNNSpec(T=4, masked=True, **fields))
    params, xs, targets = verify.random_problem(m)
    mask = np.ones((4, 2), bool)
    mask[padded, 1] = False
    with pytest.raises(ValueError, match=message) as caught:
        m.loss_and_grads(params, xs, targets, mask=mask)
    assert "\n" not in str(caught.value)
    m.loss_and_grads(params, xs, targets, mask=np.ones((4, 2), bool))  # a full mask is fine


@pytest.mark.parametrize(
    "spec",
    [RNNSpec(T=5, masked=True, layers=2), RNNSpec(T=5, masked=True, bidirectional=True, mapping="many-to-one")],
    ids=lambda s: s.name,
)
def test_a_mask_with_holes_keeps_the_state_across_them(module_of, spec):
    """A mask need not be contiguous: a padded step between real ones holds the state, which is the
    sequence run over its real steps alone; the gradient is right and the holes' inputs inert (a
    many-to-one loss reads the last real step, which the backward chain starts at)."""
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m, (3, 4, 3, 3))
    mask = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 1, 1], [1, 1, 0]], bool)
    E, grads, final = m.loss_and_grads(params, xs, targets, mask=mask, return_state=True)
    E_ref, grads_ref, final_ref = _unpadded(m, params, xs, targets, mask.sum(axis=0), mask=mask)
    assert E == pytest.approx(E_ref, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for name, value in _as_dict(m, final).items():
        np.testing.assert_allclose(value, final_ref[name], rtol=1e-12, atol=1e-15, err_msg=name)
    assert masks.padded_steps(masks.Masked(m, mask), params, xs, targets) == 0.0


def test_holes_in_both_directions_pass_each_delta_on(module_of):
    """A padded step passes its delta on only where a sequence still reaches a real step along its chain
    (``lower.deltas_carried``): with holes, padding at both ends and chains both ways, every such step
    is one, and the gradient is still each sequence's over its real steps alone."""
    spec = RNNSpec(T=6, masked=True, layers=2, bidirectional=True)
    m = module_of(spec)
    params, xs, targets = verify.random_problem(m, (3, 4, 3, 4))
    mask = np.array([[0, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]], bool)
    E, grads, final = m.loss_and_grads(params, xs, targets, mask=mask, return_state=True)
    E_ref, grads_ref, final_ref = _unpadded(m, params, xs, targets, mask.sum(axis=0), mask=mask)
    assert E == pytest.approx(E_ref, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for name, value in _as_dict(m, final).items():
        np.testing.assert_allclose(value, final_ref[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_flow_refuses_a_mask_in_one_line():
    """flow runs every step as real: a masked spec is refused, not measured as another network."""
    result = CliRunner().invoke(cli, ["flow", "--T", "5", "--mask"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].endswith("it does not take --mask")


def test_padding_without_a_mask_is_refused(tmp_path):
    with pytest.raises(SpecError, match="padding applies to a masked network only"):
        RNNSpec(T=3, padding="pre")
    result = CliRunner().invoke(cli, ["derive", "--T", "3", "--padding", "pre", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "add --mask" in result.output and not list(tmp_path.iterdir())


def test_the_spec_names_and_reproduces_a_mask():
    spec = RNNSpec(T=4, masked=True, padding="pre", mapping="many-to-one")
    assert spec.name == "rnn_tanh_softmax_xent_m2o_masked_pre_t4"
    assert RNNSpec(T=4, masked=True).name == "rnn_tanh_softmax_xent_masked_t4"
    assert spec.cli_args() == "--T 4 --mapping many-to-one --mask --padding pre"


# --- the document --------------------------------------------------------------------------------------


def _document_checker(spec, lengths_of_one: int, seed=0):
    """The document of ``spec`` and a checker of it on one sequence with ``lengths_of_one`` real steps."""
    from latex_reader import Checker
    from test_network_document import N_X, N_Y, _blocks, _hidden

    from rnngen.pipeline import build

    result = build(spec)
    path = verify.Path(result.spec.name + ".py")
    module = verify.load_module(_written(result, path))
    hidden = _hidden(spec)
    rng = np.random.default_rng(seed)
    shapes = module.init_params(N_X, hidden if len(hidden) > 1 else hidden[0], N_Y)
    params = {name: 0.5 * rng.standard_normal(np.shape(v)) for name, v in shapes.items()}
    xs = rng.standard_normal((len(spec.input_steps), 1, N_X))
    targets = rng.integers(0, N_Y, (len(spec.loss_steps), 1))
    ys = dict(zip(spec.loss_steps, np.eye(N_Y)[targets[:, 0]]))
    mask = mask_from_lengths([lengths_of_one], spec.T, spec.padding)
    many = spec.mapping != "many-to-one"
    problem = (params, xs[0] if spec.mapping == "one-to-many" else xs, targets if many else targets[0])
    blocks = _blocks(spec, hidden)
    checker = Checker(
        result.latex,
        spec.notation == "row",
        params,
        xs[:, 0],
        ys,
        masks.Masked(module, mask),
        problem,
        blocks=blocks,
        T=spec.T,
        masks=mask[:, 0],
    )
    return result, checker


def _written(result, path):
    import tempfile

    folder = verify.Path(tempfile.mkdtemp())
    (folder / path).write_text(result.module, encoding="utf-8")
    return folder / path


DOCUMENTED = [
    (RNNSpec(T=4, masked=True), 2),
    (RNNSpec(T=4, masked=True, padding="pre", notation="row"), 3),
    (RNNSpec(T=4, masked=True, mapping="many-to-one"), 2),
    (RNNSpec(T=3, masked=True, layers=2, bidirectional=True), 2),
    (RNNSpec(T=4, masked=True, delay=1), 3),
    (RNNSpec(T=4, masked=True, bidirectional=True, mapping="many-to-one"), 2),
]


@pytest.mark.parametrize(("spec", "length"), DOCUMENTED, ids=lambda v: getattr(v, "name", str(v)))
def test_every_equation_of_a_masked_document_holds(spec, length):
    from latex_reader import numbered_equations

    result, checker = _document_checker(spec, length)
    failures = checker.check()
    assert not failures, "\n".join(f"({n}) {msg}" for n, msg in failures)
    assert len(numbered_equations(result.latex)) == len(result.equations)
    text = result.latex
    assert r"m_{t} E_{t}" in text or r"m^{t} E^{t}" in text or "many-to-one" in text  # the masked loss
    assert r"\bar{h}" in text  # the cell's new state and the masked update


def test_one_hot_targets_may_be_zero_on_padded_steps(module_of):
    m = module_of(RNNSpec(T=4, masked=True))
    params, xs, targets, lengths = _problem(m)
    rows = np.eye(3)[targets]
    padded = ~mask_from_lengths(lengths, 4)
    zeros = np.where(padded[..., None], 0.0, rows)
    assert m.loss(params, xs, zeros, lengths=lengths) == pytest.approx(m.loss(params, xs, targets, lengths=lengths))
    with pytest.raises(ValueError, match="must sum to 1 over the last axis on real steps"):
        m.loss(params, xs, zeros, lengths=np.full(4, 4))


def test_derive_with_a_mask_reports_the_padded_steps(tmp_path):
    result = CliRunner().invoke(cli, ["derive", "--T", "3", "--mask", "--padding", "pre", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "masked (pre-padded lengths)" in result.output
    assert "a padded step's input and target change nothing (0.0e+00)" in result.output
    assert (tmp_path / "rnn_tanh_softmax_xent_masked_pre_t3.py").exists()


def test_a_mask_with_truncation_is_refused():
    with pytest.raises(SpecError, match="--mask and --truncate together are not derived yet"):
        RNNSpec(T=4, masked=True, truncate=2)


def test_token_ids_take_a_mask_as_one_hot_rows_do(module_of):
    m = module_of(RNNSpec(T=4, masked=True, padding="pre"))
    params = m.init_params(5, 4, 3)
    rng = np.random.default_rng(3)
    ids, targets, lengths = rng.integers(0, 5, (4, 3)), rng.integers(0, 3, (4, 3)), np.array([1, 4, 2])
    E, grads = m.loss_and_grads(params, ids, targets, lengths=lengths)
    E_rows, grads_rows = m.loss_and_grads(params, np.eye(5)[ids], targets, lengths=lengths)
    assert E == pytest.approx(E_rows, rel=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], grads_rows[name], rtol=1e-12, atol=1e-15)


def test_the_new_state_is_built_in_the_held_states_buffer():
    """The local Jacobian of a masked step reads the held state (read_held_states), so the cell's new
    state h̄_t has one reader left and is written into h_t: no buffer for h̄, and every step's kept
    state is one masked call after the step is built in place."""
    from rnngen.optimize import PASSES, optimize
    from rnngen.pipeline import build

    result = build(RNNSpec(T=4, masked=True, layers=2))
    families = {f.split("[")[0].rstrip("_0123456789") for f in result.lowered.buffers}
    assert not any(f.startswith("hbar") for f in families), families
    without = optimize(result.plain, skip=("read_held_states",))
    assert any(s.target.name.startswith("hbar") for s in without.stmts)  # the pass is what removes it
    assert "read_held_states" in [p.__name__ for p in PASSES]
    assert result.module.count("np.copyto(h1_") == 4 and result.module.count("np.copyto(h2_") == 4


@pytest.mark.parametrize("T", [3, 12])
def test_the_held_last_state_is_one_short_statement_per_step(T):
    """ȟ_t reads only ȟ_{t-1} and h_t: inlining each step into the next would write ȟ_T as one expression
    of O(T²) size. Each step keeps its statement, of a size independent of T."""
    from rnngen.pipeline import build

    spec = RNNSpec(T=T, masked=True, bidirectional=True, mapping="many-to-one")
    held = [s for s in build(spec).program.stmts if s.step and s.step[0] == "hlast_b"]
    assert sorted(s.step[1] for s in held) == list(range(1, T + 1))
    assert max(s.expr.count_ops() for s in held) <= 6
