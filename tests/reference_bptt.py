"""A classic per-step BPTT loop, written by hand the way tutorials teach it.

It shares no code with rnngen; the tests compare generated modules against it.
"""

import numpy as np


def loss_and_grads(params, xs, targets):
    """``xs`` (T, B, n_x), ``targets`` (T, B) class indices; returns (E, grads)."""
    U, W, V, b, c, h0 = (params[k] for k in ("U", "W", "V", "b", "c", "h0"))
    T, B, _ = xs.shape
    hs = {-1: np.tile(h0, (B, 1))}
    probs, E = {}, 0.0
    for t in range(T):
        hs[t] = np.tanh(xs[t] @ U.T + hs[t - 1] @ W.T + b)
        logits = hs[t] @ V.T + c
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        probs[t] = p
        E -= np.log(p[np.arange(B), targets[t]]).sum()
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dh_next = np.zeros_like(hs[0])
    for t in reversed(range(T)):
        dy = probs[t].copy()
        dy[np.arange(B), targets[t]] -= 1
        grads["V"] += dy.T @ hs[t]
        grads["c"] += dy.sum(axis=0)
        dh = dy @ V + dh_next
        dz = dh * (1 - hs[t] ** 2)
        grads["U"] += dz.T @ xs[t]
        grads["W"] += dz.T @ hs[t - 1]
        grads["b"] += dz.sum(axis=0)
        dh_next = dz @ W
    grads["h0"] = dh_next.sum(axis=0)
    return E, grads
