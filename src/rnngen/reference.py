"""The network computed by plain loops from its textbook definition, independent of the generated code.

Errors are norm-wise relative errors, ``|g - ref| / |ref|``, which do not blow up on entries
that happen to be near zero.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from rnngen.activations import LOSSES, OUTPUT_LAYERS, elementwise
from rnngen.spec import RNNSpec


def hidden_key(spec: dict) -> str:
    """The hidden activation's rule key, from a module's ``SPEC``."""
    return RNNSpec(**{**spec, "T": 1}).hidden_key


def weights(spec: dict, params: dict) -> tuple:
    """(input, recurrent, output) weights as column-notation matrices, biases (zeros if absent), h0."""
    names = spec["names"]
    mats = [np.asarray(params[n], np.float64) for n in names]
    if spec["notation"] == "row":
        mats = [m.T for m in mats]
    n_h, n_y = mats[1].shape[0], mats[2].shape[0]
    b = np.asarray(params["b"], np.float64) if spec["hidden_bias"] else np.zeros(n_h)
    c = np.asarray(params["c"], np.float64) if spec["output_bias"] else np.zeros(n_y)
    return (*mats, b, c, np.asarray(params["h0"], np.float64))


def preactivations(spec: dict, params: dict, xs) -> np.ndarray:
    """Every ``z_t`` of every sequence, by a plain loop (independent of the generated code)."""
    return _recurrence(spec, params, xs)[0]


def _recurrence(spec: dict, params: dict, xs) -> tuple:
    """``(z, h)`` of every step and sequence: the hidden layer's plain float64 loop."""
    Wx, Wh, _, b, _, h0 = weights(spec, params)
    f = elementwise(hidden_key(spec)).ufunc
    h = np.broadcast_to(h0, (xs.shape[1], h0.size))
    zs, hs = [], []
    for x in np.asarray(xs, np.float64):
        zs.append(x @ Wx.T + h @ Wh.T + b)
        h = f(zs[-1])
        hs.append(h)
    return np.array(zs), np.array(hs)


def relative_error(value, reference) -> float:
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    scale = np.linalg.norm(reference)
    diff = np.linalg.norm(value - reference)
    return float(diff / scale) if scale > 0 else float(diff)


def plain_forward(spec: dict, params: dict, xs) -> dict:
    """h, o and yhat by a plain float64 loop over the steps and sequences, from the textbook definition
    (the activation's ufunc, the output layer's scalar form), independent of the generated code."""
    _, _, Wo, _, c, _ = weights(spec, params)
    output = _textbook("output", spec["output"], Wo.shape[0])
    hs = _recurrence(spec, params, xs)[1]
    os = (hs[-1:] if spec["mapping"] == "many-to-one" else hs) @ Wo.T + c
    yhat = np.stack(np.broadcast_arrays(*output(list(np.moveaxis(os, -1, 0)))), axis=-1)
    if spec["mapping"] == "many-to-one":
        os, yhat = os[0], yhat[0]
    return {"h": hs, "o": os, "yhat": yhat}


def loss_of_outputs(spec: dict, yhat, targets) -> float:
    """E from the outputs ``forward()`` returns, by the loss's textbook scalar form."""
    yhat = np.asarray(yhat, np.float64)
    targets = np.asarray(targets)
    if targets.dtype.kind in "iu":
        targets = np.eye(yhat.shape[-1])[targets]
    n = yhat.shape[-1]
    step_loss = _textbook("loss", spec["loss"], n)
    rows = yhat.reshape(-1, n).T, np.asarray(targets, np.float64).reshape(-1, n).T
    return float(np.sum(step_loss(list(rows[0]), list(rows[1]))))


@functools.cache
def _textbook(kind: str, name: str, n: int):
    """The registry's textbook scalar form of an output layer or a loss over ``n`` entries, as a
    NumPy function of the entries' arrays (one entry per argument, every row at once)."""
    a, b = sp.symbols(f"a0:{n}"), sp.symbols(f"b0:{n}")
    if kind == "output":
        return sp.lambdify([a], list(OUTPUT_LAYERS[name].scalar(list(a))), "numpy")
    return sp.lambdify([a, b], LOSSES[name].scalar(list(a), list(b)), "numpy")
