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

from rnngen.bench import loops


def available() -> dict:
    """Framework name -> True when it can be imported here."""
    return {name: importlib.util.find_spec(name) is not None for name in ("torch", "jax")}


def unsupported(framework: str, spec) -> str:
    """Why ``framework`` cannot run ``spec`` (empty when it can)."""
    if framework == "torch" and spec.hidden not in ("tanh", "relu"):
        return f"nn.RNN has no {spec.hidden} hidden layer (only tanh and relu)"
    if spec.is_custom:
        return "a custom activation has no hand-written counterpart"
    return ""


def torch_contender(problem):
    """``nn.RNN`` + ``nn.Linear`` + the loss with ``reduction="sum"``, then ``backward()``."""
    import torch
    from torch import nn

    from rnngen.bench.harness import Contender

    spec, p = problem.spec, problem.params
    dtype = torch.float64 if problem.dtype == np.float64 else torch.float32
    n_h, n_x = p["U"].shape
    n_y = p["V"].shape[0]
    rnn = nn.RNN(n_x, n_h, nonlinearity=spec.hidden, bias=spec.hidden_bias).to(dtype)
    head = nn.Linear(n_h, n_y, bias=spec.output_bias).to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["U"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["W"]))
        if spec.hidden_bias:
            rnn.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
            rnn.bias_hh_l0.zero_()  # nn.RNN has two hidden biases; one carries b
        head.weight.copy_(torch.from_numpy(p["V"]))
        if spec.output_bias:
            head.bias.copy_(torch.from_numpy(p["c"]))
    h0 = torch.tensor(p["h0"], dtype=dtype, requires_grad=True)
    xs = torch.from_numpy(problem.xs)
    T, B, _ = problem.xs.shape
    targets = torch.from_numpy(np.asarray(problem.targets))
    y = torch.from_numpy(problem.y_rows).reshape(-1, n_y)
    leaves = [*rnn.parameters(), *head.parameters(), h0]
    pair = (spec.output, spec.loss)

    def run():
        for leaf in leaves:
            leaf.grad = None
        hs, _ = rnn(xs, h0.expand(1, B, n_h))
        o = head(hs if spec.mapping == "many-to-many" else hs[-1:]).reshape(-1, n_y)
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
        grads = {"U": rnn.weight_ih_l0, "W": rnn.weight_hh_l0, "V": head.weight, "h0": h0}
        if spec.hidden_bias:
            grads["b"] = rnn.bias_ih_l0
        if spec.output_bias:
            grads["c"] = head.bias
        return E.item(), {k: v.grad.numpy() for k, v in grads.items()}

    return Contender("PyTorch", run, result)


def jax_contender(problem):
    """``jax.jit(jax.value_and_grad(loss))`` with the recurrence as ``lax.scan``; compile time kept apart."""
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
    import jax.numpy as jnp
    from jax import lax

    from rnngen.bench.harness import Contender

    spec = problem.spec
    pair = (spec.output, spec.loss)
    index_targets = problem.classes and pair == ("softmax", "cross_entropy")

    def loss(params, xs, targets):
        def step(h, x):
            z = x @ params["U"].T + h @ params["W"].T
            if spec.hidden_bias:
                z = z + params["b"]
            h = loops.activation(jnp, spec.hidden, z, spec.slope)
            return h, h

        h_init = jnp.broadcast_to(params["h0"], (xs.shape[1], params["h0"].shape[0]))
        _, hs = lax.scan(step, h_init, xs)
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
    targets = jnp.asarray(np.asarray(problem.targets) if index_targets else problem.y_rows)
    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params, xs, targets).compile()
    compile_seconds = time.perf_counter() - start

    def run():
        E, grads = compiled(params, xs, targets)
        return jax.block_until_ready((E, grads))

    def result(out):
        E, grads = out
        return float(E), {k: np.asarray(v) for k, v in grads.items()}

    return Contender("JAX", run, result, compile_seconds=compile_seconds)
