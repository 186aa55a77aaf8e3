"""The same network in PyTorch and in JAX, the frameworks a user would reach for instead.

Both are optional: ``available()`` names those that import, and a missing one
is reported as skipped, never an error. Each builder takes a ``Problem``
(column-layout parameters, inputs, targets) and returns a ``Contender``
whose ``run`` does forward plus every gradient, and whose ``result`` turns
what ``run`` returned into ``(E, grads)`` in column layout for the agreement
check.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from rnngen.bench import layout, loops
from rnngen.cells import cell_of


def available() -> dict:
    """Framework name -> True when it can be imported here."""
    return {name: importlib.util.find_spec(name) is not None for name in ("torch", "jax")}


#: PyTorch's recurrent layer for each cell.
TORCH_LAYERS = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}


def unsupported(framework: str, spec) -> str:
    """Why ``framework`` cannot run ``spec`` (empty when it can)."""
    if spec.is_custom:
        return "a custom activation has no hand-written counterpart"
    if framework == "jax" and cell_of(spec).gated:
        return f"the JAX contender is an Elman network, not {spec.cell}"
    if framework == "torch" and spec.cell == "elman" and spec.hidden not in ("tanh", "relu"):
        return f"nn.RNN has no {spec.hidden} hidden layer (only tanh and relu)"
    if framework == "torch" and cell_of(spec).gated and spec.hidden != "tanh":
        return f"nn.{TORCH_LAYERS[spec.cell]} has tanh where this cell has {spec.hidden}"
    if framework == "torch" and spec.cell == "gru" and spec.gru_reset != "after":
        return "nn.GRU applies the reset gate after the recurrent product (--gru-reset after)"
    return ""


def _torch_rnns(problem, dtype):
    """The recurrent layers as PyTorch builds them, and each cell's parameters in them.

    One ``nn.RNN(num_layers=L, bidirectional=...)`` when every layer has the same size
    (what a user writes); otherwise one single-layer ``nn.RNN`` per layer, chained,
    since ``nn.RNN`` has one hidden size. Returns ``(rnns, where)``, ``where`` mapping
    each ``layout.Cell`` to ``(module, PyTorch's suffix of its weights)``.
    """
    from torch import nn

    spec, sizes = problem.spec, problem.hidden
    layers, directions = layout.depth(spec)
    n_x = problem.sizes[1]
    options = dict(bias=spec.hidden_bias, bidirectional=directions == 2)
    if spec.cell == "elman":
        options["nonlinearity"] = spec.hidden
    kind = getattr(nn, TORCH_LAYERS[spec.cell])
    if len(set(sizes)) == 1:
        rnns = [kind(n_x, sizes[0], num_layers=layers, **options).to(dtype)]
    else:
        fan_in = [n_x] + [directions * n for n in sizes[:-1]]
        rnns = [kind(n_in, n, **options).to(dtype) for n_in, n in zip(fan_in, sizes)]
    where = {}
    for row in layout.cells(spec):
        for cell in row:
            index = cell.layer - 1 if len(rnns) == 1 else 0
            module = rnns[0] if len(rnns) == 1 else rnns[cell.layer - 1]
            where[cell] = (module, f"_l{index}{'_reverse' if cell.reverse else ''}")
    return rnns, where


def torch_contender(problem):
    """``nn.RNN`` (``nn.LSTM``, ``nn.GRU``) + ``nn.Linear`` + the loss with ``reduction="sum"``, then ``backward()``.

    Stacked and bidirectional networks use ``nn.RNN``'s ``num_layers`` and ``bidirectional``;
    each layer's and direction's initial state is its ``h0`` broadcast over the batch, or, for a
    problem with a state per sequence, that state (``h_0`` of shape (layers * directions, B, n_h)).
    A masked problem packs the batch (``pack_padded_sequence``, its lengths unsorted) and counts
    the loss on real steps only; a many-to-one network reads each sequence's last real step.
    """
    import torch
    from torch import nn

    from rnngen.bench.harness import Contender

    spec, p = problem.spec, problem.params
    dtype = torch.float64 if problem.dtype == np.float64 else torch.float32
    n_y, n_top = p["V"].shape
    rnns, where = _torch_rnns(problem, dtype)
    head = nn.Linear(n_top, n_y, bias=spec.output_bias).to(dtype)
    slots = {}  # column-layout key -> (the leaf PyTorch differentiates, the rows of it that hold the key)
    with torch.no_grad():
        for cell, (module, suffix) in where.items():
            gates = cell.of("input")  # PyTorch stacks a gated cell's gates in its weights, in our order
            n = p[cell.h0].shape[0]
            for kind, theirs in (("input", "weight_ih"), ("recurrent", "weight_hh")):
                for g, key in enumerate(cell.of(kind)):
                    slots[key] = (getattr(module, theirs + suffix), slice(g * n, (g + 1) * n))
            if spec.hidden_bias:
                getattr(module, "bias_hh" + suffix).zero_()  # two hidden biases; the input one carries ours
                for g, key in enumerate(cell.of("hidden_bias")):
                    # past the gates: the GRU's b_hn, in the recurrent product of its last gate
                    theirs, g = ("bias_ih", g) if g < len(gates) else ("bias_hh", len(gates) - 1)
                    slots[key] = (getattr(module, theirs + suffix), slice(g * n, (g + 1) * n))
        slots["V"] = (head.weight, slice(None))
        if spec.output_bias:
            slots["c"] = (head.bias, slice(None))
        for key, (tensor, rows) in slots.items():
            tensor[rows].copy_(torch.from_numpy(p[key]))
    # per nn module, one leaf (layers * directions, n_h) per state kind (h; the LSTM's c too) holds
    # its initial states, in PyTorch's order
    chains = [[cell for cell in where if where[cell][0] is rnn] for rnn in rnns]
    given = problem.state
    kinds = range(len(next(iter(where)).of("initial")))
    states = [
        [
            torch.tensor(np.stack([(given or p)[c.of("initial")[k]] for c in group]), dtype=dtype, requires_grad=True)
            for k in kinds
        ]
        for group in chains
    ]
    xs = torch.from_numpy(problem.xs).requires_grad_(spec.input_grad)
    T, B, _ = problem.xs.shape
    targets = torch.from_numpy(np.asarray(problem.targets))
    y = torch.from_numpy(problem.y_rows).reshape(-1, n_y)
    leaves = [*(q for rnn in rnns for q in rnn.parameters()), *head.parameters(), *(s for g in states for s in g), xs]
    pair = (spec.output, spec.loss)

    lengths = None if problem.lengths is None else torch.from_numpy(problem.lengths)
    if lengths is not None:  # the real steps, as (T, B) and as flat rows of (T * B, n_y)
        real = torch.arange(T)[:, None] < lengths[None, :]
        rows = real.reshape(-1) if spec.mapping == "many-to-many" else torch.ones(B, dtype=torch.bool)
        targets, y = targets.reshape(-1, *targets.shape[2:])[rows], y[rows]
    pack, unpack = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence

    def run():
        for leaf in leaves:
            leaf.grad = None
        hs = xs if lengths is None else pack(xs, lengths, enforce_sorted=False)
        for rnn, initial in zip(rnns, states):
            start = [s if given else s.unsqueeze(1).expand(-1, B, -1) for s in initial]
            hs, _ = rnn(hs, tuple(start) if len(start) > 1 else start[0])
        if lengths is None:
            o = head(hs if spec.mapping == "many-to-many" else hs[-1:]).reshape(-1, n_y)
        else:
            hs, _ = unpack(hs, total_length=T)
            top = hs.reshape(T * B, -1)[rows] if spec.mapping == "many-to-many" else hs[lengths - 1, torch.arange(B)]
            o = head(top)
        if pair == ("softmax", "cross_entropy") and problem.classes:
            E = nn.functional.cross_entropy(o, targets.reshape(-1), reduction="sum")
        elif pair == ("sigmoid", "binary_cross_entropy"):
            E = nn.functional.binary_cross_entropy_with_logits(o, y, reduction="sum")
        elif pair == ("identity", "squared_error"):
            E = 0.5 * nn.functional.mse_loss(o, y, reduction="sum")
        else:
            yhat = loops.output(torch, spec.output, o, lambda a: torch.softmax(a, dim=-1))
            E = loops.loss(torch, spec.loss, yhat, y)
        E.backward()
        return E

    def result(E):
        grads = {k: t.grad[rows].numpy() for k, (t, rows) in slots.items()}
        for group, initial in zip(chains, states):
            for k, s in enumerate(initial):
                keys = [cell.of("initial")[k] for cell in group]
                grads.update({f"state {key}" if given else key: g for key, g in zip(keys, s.grad.numpy())})
        if given:  # the learned initial states took no part
            grads.update({k: np.zeros_like(p[k]) for group in chains for cell in group for k in cell.of("initial")})
        if spec.input_grad:
            grads["x"] = xs.grad.numpy()
        return E.item(), {k: grads[k] for k in [*p, "x", *(f"state {k}" for k in given or ())] if k in grads}

    return Contender("PyTorch", run, result)


def jax_contender(problem):
    """``jax.jit(jax.value_and_grad(loss))`` with each layer's and direction's recurrence a ``lax.scan``.

    Compile time is kept apart.
    """
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
    import jax.numpy as jnp
    from jax import lax

    from rnngen.bench.harness import Contender

    spec = problem.spec
    pair = (spec.output, spec.loss)
    index_targets = problem.classes and pair == ("softmax", "cross_entropy")
    rows = layout.cells(spec)

    def chain(params, cell, xs):
        """One layer in one direction over all steps; ``lax.scan`` runs a backward chain in reverse."""

        def step(h, x):
            z = x @ params[cell.U].T + h @ params[cell.W].T
            if cell.b:
                z = z + params[cell.b]
            h = loops.activation(jnp, spec.hidden, z, spec.slope)
            return h, h

        h_init = jnp.broadcast_to(params[cell.h0], (xs.shape[1], params[cell.h0].shape[0]))
        return lax.scan(step, h_init, xs, reverse=cell.reverse)[1]

    def loss(params, xs, targets):
        hs = xs
        for row in rows:
            states = [chain(params, cell, hs) for cell in row]
            hs = states[0] if len(states) == 1 else jnp.concatenate(states, axis=-1)
        o = (hs if spec.mapping == "many-to-many" else hs[-1:]) @ params["V"].T
        if spec.output_bias:
            o = o + params["c"]
        if index_targets:
            logp = jax.nn.log_softmax(o, axis=-1)
            return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))
        if pair == ("sigmoid", "binary_cross_entropy"):
            return jnp.sum(targets * jax.nn.softplus(-o) + (1.0 - targets) * jax.nn.softplus(o))
        if pair == ("identity", "squared_error"):
            return 0.5 * jnp.sum((o - targets) ** 2)
        yhat = loops.output(jnp, spec.output, o, lambda a: jax.nn.softmax(a, axis=-1))
        return loops.loss(jnp, spec.loss, yhat, targets)

    params = {k: jnp.asarray(v) for k, v in problem.params.items()}
    xs = jnp.asarray(problem.xs)
    # class indices with the step axis, as the outputs have it (many-to-one: one step)
    targets = jnp.asarray(np.reshape(problem.targets, problem.y_rows.shape[:-1]) if index_targets else problem.y_rows)
    start = time.perf_counter()
    argnums = (0, 1) if spec.input_grad else 0  # dE/dxs as well when the module returns it
    compiled = jax.jit(jax.value_and_grad(loss, argnums)).lower(params, xs, targets).compile()
    compile_seconds = time.perf_counter() - start

    def run():
        E, grads = compiled(params, xs, targets)
        return jax.block_until_ready((E, grads))

    def result(out):
        E, grads = out
        grads = {**grads[0], "x": grads[1]} if spec.input_grad else grads
        return float(E), {k: np.asarray(v) for k, v in grads.items()}

    return Contender("JAX", run, result, compile_seconds=compile_seconds)
