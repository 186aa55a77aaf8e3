"""Stacked and bidirectional Elman networks with BPTT, written by hand the way PyTorch defines them.

It shares no code with rnngen; the tests compare generated modules against it. The semantics are
those of ``torch.nn.RNN(num_layers=L, bidirectional=...)`` followed by a linear output layer:

- layer 1 reads ``x_t``; layer l reads the output of layer l - 1 at the same step;
- a layer's forward chain runs t = 1..T from its h0, the backward chain runs t = T..1 from its own
  h0, and the layer's output at step t is ``[h^f_t, h^b_t]`` (forward first);
- ``o_t = V [h^f_t; h^b_t] + c``, a softmax and the cross-entropy against class indices.

Weights are in column math (``U`` is (n_h, n_in)), one dict per layer and direction:
``{"U", "W", "b", "h0"}``; sequences are rows, as PyTorch has them.
"""

import numpy as np


def _softmax(o):
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(layers, V, c, xs):
    """``layers[l][d]`` the weights of layer l, direction d (0 forward, 1 backward); xs (T, B, n_x).

    Returns ``(inputs, states, o)``: each layer's input per step, each chain's states
    (``states[l][d][t]``, t = 0..T + 1 with the initial state at 0 or T + 1), and o (T, B, n_y).
    """
    T, B, _ = xs.shape
    inputs, states = [], []
    below = [xs[t] for t in range(T)]
    for chains in layers:
        inputs.append(below)
        layer_states = []
        for d, p in enumerate(chains):
            h = {}
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            prev = -1 if d == 0 else T
            h[prev] = np.tile(p["h0"], (B, 1))
            for t in order:
                before = h[t - 1] if d == 0 else h[t + 1]
                h[t] = np.tanh(below[t] @ p["U"].T + before @ p["W"].T + p["b"])
            layer_states.append(h)
        states.append(layer_states)
        below = [np.concatenate([h[t] for h in layer_states], axis=-1) for t in range(T)]
    o = np.stack([below[t] @ V.T + c for t in range(T)])
    return inputs, states, o


def loss_and_grads(layers, V, c, xs, targets):
    """E and every gradient (same structure as the weights), and dE/dxs, by hand-written BPTT."""
    T, B, _ = xs.shape
    inputs, states, o = forward(layers, V, c, xs)
    p = _softmax(o)
    rows = np.arange(B)
    E = -sum(np.log(p[t, rows, targets[t]]).sum() for t in range(T))
    do = p.copy()
    for t in range(T):
        do[t, rows, targets[t]] -= 1
    top = [np.concatenate([h[t] for h in states[-1]], axis=-1) for t in range(T)]
    dV = sum(do[t].T @ top[t] for t in range(T))
    dc = do.sum(axis=(0, 1))
    d_out = [do[t] @ V for t in range(T)]  # dE/d(layer output) at each step, from above
    grads = [None] * len(layers)
    for layer in reversed(range(len(layers))):
        chains = layers[layer]
        n = [p["W"].shape[0] for p in chains]
        offsets = np.cumsum([0] + n)
        d_in = [np.zeros_like(x) for x in inputs[layer]]
        layer_grads = []
        for d, p in enumerate(chains):
            h = states[layer][d]
            g = {k: np.zeros_like(v) for k, v in p.items()}
            dh_next = np.zeros((B, n[d]))
            order = range(T - 1, -1, -1) if d == 0 else range(T)
            for t in order:
                before = h[t - 1] if d == 0 else h[t + 1]
                dh = d_out[t][:, offsets[d] : offsets[d + 1]] + dh_next
                dz = dh * (1 - h[t] ** 2)
                g["U"] += dz.T @ inputs[layer][t]
                g["W"] += dz.T @ before
                g["b"] += dz.sum(axis=0)
                d_in[t] += dz @ p["U"]
                dh_next = dz @ p["W"]
            g["h0"] = dh_next.sum(axis=0)
            layer_grads.append(g)
        grads[layer] = layer_grads
        d_out = d_in
    return E, grads, dV, dc, np.stack(d_out)
