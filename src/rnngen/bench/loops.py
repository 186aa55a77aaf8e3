"""BPTT written by hand with a loop over time: the baselines a generated module is measured against.

Both loops take the parameters in column layout (``U`` is n_h x n_x, ``W``
n_h x n_h, ``V`` n_y x n_h, ``b``, ``c``, ``h0`` 1-D, missing biases absent;
a stacked or bidirectional network's keys as ``layout`` names them, which
only the tutorial loop runs),
``xs`` as (T, B, n_x) rows and the targets as rows ``y`` (L, B, n_y), where L
is T (many-to-many) or 1 (many-to-one), or as class indices (L, B) for
softmax with cross-entropy. They return ``(E, grads)`` with the keys of
``params``, and ``x`` (dE/dxs) when the spec asks for the input gradient.
Nothing here is generated or derived: these are what a person writes from
the textbook equations, and the benchmark checks them against
the generated module before it times anything.

- ``tutorial_loop``: the classic per-step loop of the lecture notes and blog
  posts (every product of a step is its own GEMM, dictionaries of states,
  fresh arrays everywhere). This is the code people copy.
- ``tuned_loop``: the best loop-based NumPy we could write by hand. The input
  and output products are single GEMMs over all steps, buffers (and the lists
  of their steps' views) are kept between calls, small products go through
  np.dot, the recurrent weight is held in the layout each step's GEMM
  reads fastest, elementwise work is done in place with ``out=``, the local
  Jacobians f'(z_t) are computed for all steps in one call, and the softmax
  is computed once and reused for the loss. Only the recurrence loops.
"""

from __future__ import annotations

import numpy as np

from rnngen.bench import layout
from rnngen.cells import cell_of

# The textbook formulas, written once for any array module ``xp`` with NumPy's names
# (NumPy here, jax.numpy and torch in ``frameworks``). A softmax is passed in, because
# the libraries spell a row-wise maximum differently.


def activation(xp, hidden, z, slope):
    """The hidden activation f(z)."""
    if hidden == "tanh":
        return xp.tanh(z)
    if hidden == "sigmoid":
        return 1.0 / (1.0 + xp.exp(-z))
    if hidden == "relu":
        return xp.where(z > 0, z, 0.0 * z)
    if hidden == "leaky_relu":
        return xp.where(z > 0, z, slope * z)
    if hidden == "softplus":
        return xp.logaddexp(0.0 * z, z)
    return z


def output(xp, name, o, softmax):
    """The output layer ŷ = g(o)."""
    if name == "softmax":
        return softmax(o)
    if name == "sigmoid":
        return 1.0 / (1.0 + xp.exp(-o))
    if name == "tanh":
        return xp.tanh(o)
    return o


def loss(xp, name, yhat, y):
    """The loss summed over every entry."""
    if name == "cross_entropy":
        return -(y * xp.log(yhat)).sum()
    if name == "binary_cross_entropy":
        return -(y * xp.log(yhat) + (1.0 - y) * xp.log(1.0 - yhat)).sum()
    return 0.5 * ((yhat - y) ** 2).sum()


# f'(z), written through the stored output h = f(z), per hidden activation (NumPy only).
_SLOPE = {
    "tanh": lambda h, s: 1.0 - h * h,
    "sigmoid": lambda h, s: h * (1.0 - h),
    "relu": lambda h, s: (h > 0).astype(h.dtype),
    "leaky_relu": lambda h, s: np.where(h > 0, 1.0, s).astype(h.dtype),
    "identity": lambda h, s: np.ones_like(h),
    "softplus": lambda h, s: -np.expm1(-h),
}
HIDDEN = tuple(_SLOPE)


def _softmax(o):
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _f(hidden, z, slope):
    return activation(np, hidden, z, slope)


def _df(hidden, h, slope):
    return _SLOPE[hidden](h, slope)


def _output(name, o):
    return output(np, name, o, _softmax)


def _loss(name, yhat, y):
    return loss(np, name, yhat, y)


def _output_delta(output, loss, yhat, y):
    """dE/do at one step: the closed form where the pair has one, else the chain rule through the output.

    The pairs are listed here by hand, not read from ``activations.FUSED``: a baseline
    that trusted the registry could not catch a wrong entry in it.
    """
    if (output, loss) in (
        ("softmax", "cross_entropy"),
        ("sigmoid", "binary_cross_entropy"),
        ("identity", "squared_error"),
    ):
        return yhat - y
    if loss == "cross_entropy":
        g = -y / yhat
    elif loss == "binary_cross_entropy":
        g = -y / yhat + (1.0 - y) / (1.0 - yhat)
    else:
        g = yhat - y
    if output == "softmax":
        return yhat * (g - np.sum(g * yhat, axis=-1, keepdims=True))
    if output == "sigmoid":
        return g * yhat * (1.0 - yhat)
    if output == "tanh":
        return g * (1.0 - yhat * yhat)
    return g


def _rows(targets, n_y, dtype):
    """Targets as rows: class indices become one-hot rows."""
    y = np.asarray(targets)
    if np.issubdtype(y.dtype, np.integer):
        one_hot = np.zeros(y.shape + (n_y,), dtype)
        np.put_along_axis(one_hot, y[..., None], 1.0, axis=-1)
        return one_hot
    return y.astype(dtype, copy=False)


def unsupported(spec) -> str:
    """Why the loops cannot run ``spec`` (empty when they can)."""
    if spec.is_custom:
        return "a custom activation has no hand-written loop"
    if cell_of(spec).gated:
        return f"the hand-written loops are Elman cells, not {spec.cell}"
    return ""


def tutorial_loop(params, xs, targets, spec):
    """The classic per-step BPTT loop: forward step by step, then backward step by step.

    Layer by layer and, in each, chain by chain: a backward chain visits the steps
    from T down to 1, and a layer passes its chains' states side by side to the next.
    """
    rows = layout.cells(spec)
    V, c = params["V"], params.get("c")
    T, B, _ = xs.shape
    n_y = V.shape[0]
    y = _rows(targets, n_y, xs.dtype)
    loss_at = {t: i for i, t in enumerate(range(T) if spec.mapping == "many-to-many" else [T - 1])}
    inputs, states = [], []  # per layer: its input at each step; per chain: [h0, then h at each step visited]
    layer_in = list(xs)
    for row in rows:
        inputs.append(layer_in)
        chains = []
        for cell in row:
            U, W, b, h0 = params[cell.U], params[cell.W], params.get(cell.b), params[cell.h0]
            hs = [np.broadcast_to(h0, (B, W.shape[0]))]
            for t in cell.steps(T):
                z = layer_in[t] @ U.T + hs[-1] @ W.T
                if b is not None:
                    z = z + b
                hs.append(_f(spec.hidden, z, spec.slope))
            chains.append(hs)
        states.append(chains)
        at = [dict(zip(cell.steps(T), hs[1:])) for cell, hs in zip(row, chains)]
        layer_in = [at[0][t] if len(at) == 1 else np.concatenate([a[t] for a in at], axis=-1) for t in range(T)]
    E, ps = 0.0, {}
    for t in loss_at:
        o = layer_in[t] @ V.T
        if c is not None:
            o = o + c
        ps[t] = _output(spec.output, o)
        E += _loss(spec.loss, ps[t], y[loss_at[t]])
    grads = {"V": np.zeros_like(V)}
    if c is not None:
        grads["c"] = np.zeros(n_y, xs.dtype)
    d_in = {}  # the gradient at each step's input to the layer above (here: the output layer)
    for t in reversed(range(T)):
        if t in loss_at:
            do = _output_delta(spec.output, spec.loss, ps[t], y[loss_at[t]])
            grads["V"] += do.T @ layer_in[t]
            if c is not None:
                grads["c"] += do.sum(axis=0)
            d_in[t] = do @ V
    for row, chains, layer_in in reversed(list(zip(rows, states, inputs))):
        d_below = {}
        start = 0
        for cell, hs in zip(row, chains):
            U, W = params[cell.U], params[cell.W]
            n_h = W.shape[0]
            dU, dW = np.zeros_like(U), np.zeros_like(W)
            db = np.zeros(n_h, xs.dtype)
            dh_next = np.zeros((B, n_h), xs.dtype)
            for k, t in reversed(list(enumerate(cell.steps(T), start=1))):
                dh = dh_next if t not in d_in else dh_next + d_in[t][:, start : start + n_h]
                dz = dh * _df(spec.hidden, hs[k], spec.slope)
                db += dz.sum(axis=0)
                dU += dz.T @ layer_in[t]
                dW += dz.T @ hs[k - 1]
                dh_next = dz @ W
                if cell.layer > 1 or spec.input_grad:
                    d_below[t] = d_below[t] + dz @ U if t in d_below else dz @ U
            grads.update({cell.U: dU, cell.W: dW, cell.h0: dh_next.sum(axis=0)})
            if cell.b:
                grads[cell.b] = db
            start += n_h
        d_in = d_below
    out = {k: grads[k] for k in params}
    if spec.input_grad:
        out["x"] = np.stack([d_in[t] for t in range(T)])
    return E, out


def _loss_and_delta(o, targets, spec):
    """``(E, dE/do)`` from the outputs' pre-activations ``o`` (rows), in place; one softmax for class targets."""
    classes = np.issubdtype(np.asarray(targets).dtype, np.integer)
    if classes and (spec.output, spec.loss) == ("softmax", "cross_entropy"):
        idx = np.asarray(targets).reshape(-1)
        rows = np.arange(idx.size)
        o -= o.max(axis=-1, keepdims=True)
        do = np.exp(o)
        total = do.sum(axis=-1)
        E = np.sum(np.log(total)) - np.sum(o[rows, idx])
        do /= total[:, None]
        do[rows, idx] -= 1.0
        return E, do
    y = _rows(targets, o.shape[-1], o.dtype).reshape(o.shape)
    yhat = _output(spec.output, o)
    return _loss(spec.loss, yhat, y), _output_delta(spec.output, spec.loss, yhat, y)


#: The buffers of the last sizes ``tuned_loop`` ran at, kept as a training loop would keep them
#: (the generated module keeps its set between calls too).
_KEPT: dict = {}


def _kept_buffers(T, B, n_h, n_y, L, dtype) -> dict:
    """Every array ``tuned_loop`` writes, with the lists of their steps' views (indexing a list
    costs a fraction of slicing the array), made once per sizes."""
    key = (T, B, n_h, n_y, L, dtype.char)
    kept = _KEPT.get(key)
    if kept is None:
        h, dz, d = np.empty((T + 1, B, n_h), dtype), np.empty((T, B, n_h), dtype), np.empty((T, B, n_h), dtype)
        kept = dict(
            h=h,
            hs=list(h),
            H=h[1:].reshape(T * B, n_h),
            H_prev=h[:-1].reshape(T * B, n_h),
            dz=dz,
            dzs=list(dz),
            Z=dz.reshape(T * B, n_h),
            d=d,
            ds=list(d),
            tmp=np.empty((B, n_h), dtype),
            WT=np.empty((n_h, n_h), dtype),
            o=np.empty((L * B, n_y), dtype),
            rows=np.arange(L * B),
            ones=np.ones(L * B, dtype),
            ones_z=np.ones(T * B, dtype),
            ones_y=np.ones(n_y, dtype),
        )
        _KEPT.clear()
        _KEPT[key] = kept
    return kept


def tuned_loop(params, xs, targets, spec):
    """The same BPTT with everything but the recurrence batched over time, in place where NumPy allows."""
    if layout.multi(spec):
        return _tuned_stacked_loop(params, xs, targets, spec)
    U, W, V, h0 = params["U"], params["W"], params["V"], params["h0"]
    b, c = params.get("b"), params.get("c")
    T, B, n_x = xs.shape
    n_h, n_y = W.shape[0], V.shape[0]
    m2m = spec.mapping == "many-to-many"
    L = T if m2m else 1
    targets = np.asarray(targets)
    softmax_xent = targets.dtype.kind in "iu" and (spec.output, spec.loss) == ("softmax", "cross_entropy")
    kept = _kept_buffers(T, B, n_h, n_y, L, xs.dtype)
    h, hs, H, tmp = kept["h"], kept["hs"], kept["H"], kept["tmp"]

    # Forward: all input products in one GEMM, written straight into the state buffer.
    hs[0][...] = h0
    X = xs.reshape(T * B, n_x)
    np.dot(X, U.T, out=H)  # np.dot: a third less call overhead than np.matmul at small sizes
    if b is not None:
        H += b
    WT = kept["WT"]
    np.copyto(WT, W.T)  # BLAS reads a contiguous copy faster than the view, at every step
    for t in range(T):
        np.dot(hs[t], WT, out=tmp)
        ht = hs[t + 1]
        ht += tmp
        if spec.hidden == "tanh":
            np.tanh(ht, out=ht)
        else:
            ht[...] = _f(spec.hidden, ht, spec.slope)
    Hout = H if m2m else hs[T]
    o = kept["o"]
    np.dot(Hout, V.T, out=o)
    if c is not None:
        o += c

    # Loss and dE/do, from one softmax.
    if softmax_xent:
        idx = targets.reshape(-1)
        rows = kept["rows"]
        o -= o.max(axis=-1, keepdims=True)
        E = -np.sum(o[rows, idx])
        do = np.exp(o, out=o)
        total = np.dot(do, kept["ones_y"])
        E += np.sum(np.log(total))
        do /= total[:, None]
        do[rows, idx] -= 1.0
    else:
        y = _rows(targets, n_y, xs.dtype).reshape(L * B, n_y)
        yhat = _output(spec.output, o)
        E = _loss(spec.loss, yhat, y)
        do = _output_delta(spec.output, spec.loss, yhat, y)

    # Backward: f'(z_t) for all steps at once, then the recurrence in place.
    dz, dzs, Z = kept["dz"], kept["dzs"], kept["Z"]
    if m2m:
        np.dot(do, V, out=Z)
    else:
        dz[:-1] = 0.0
        np.dot(do, V, out=dzs[-1])
    if spec.hidden == "tanh":
        d, ds = kept["d"], kept["ds"]
        np.multiply(h[1:], h[1:], out=d)
        np.subtract(1.0, d, out=d)
    else:
        ds = list(_df(spec.hidden, h[1:], spec.slope))
    dzs[T - 1] *= ds[T - 1]
    for t in range(T - 2, -1, -1):
        np.dot(dzs[t + 1], W, out=tmp)
        dt = dzs[t]
        dt += tmp
        dt *= ds[t]
    ZT = Z.T
    grads = {
        "U": np.dot(ZT, X),
        "W": np.dot(ZT, kept["H_prev"]),
        "V": np.dot(do.T, Hout),
        "b": np.dot(kept["ones_z"], Z),
        "c": np.dot(kept["ones"], do),
        "h0": np.dot(np.dot(kept["ones"][:B], dzs[0]), W),
    }
    out = {k: grads[k] for k in params}
    if spec.input_grad:
        out["x"] = (Z @ U).reshape(T, B, n_x)
    return E, out


def _tuned_chain(h, X, U, W, b, cell, spec):
    """Forward through one chain, in place in ``h`` (T + 1, B, n_h): its states and its h0 slot.

    A forward chain keeps h0 in h[0] and the state of step t in h[t + 1]; a backward one
    keeps the state of step t in h[t] and h0 in h[T], so each reads the slot beside it.
    """
    T, B, n_h = h.shape[0] - 1, h.shape[1], h.shape[2]
    S = h[:-1] if cell.reverse else h[1:]
    np.matmul(X, U.T, out=S.reshape(T * B, n_h))
    if b is not None:
        S += b
    WT = np.ascontiguousarray(W.T)
    tmp = np.empty((B, n_h), h.dtype)
    order = range(T - 1, -1, -1) if cell.reverse else range(1, T + 1)
    step = 1 if cell.reverse else -1  # where the previous state is
    for t in order:
        np.matmul(h[t + step], WT, out=tmp)
        h[t] += tmp
        if spec.hidden == "tanh":
            np.tanh(h[t], out=h[t])
        else:
            h[t] = _f(spec.hidden, h[t], spec.slope)
    return S


def _tuned_chain_backward(dz, h, W, cell, spec):
    """Backward through one chain, in place in ``dz`` (T, B, n_h), which holds dE/dh from above."""
    T = dz.shape[0]
    S = h[:-1] if cell.reverse else h[1:]
    if spec.hidden == "tanh":
        d = np.multiply(S, S)
        np.subtract(1.0, d, out=d)
    else:
        d = _df(spec.hidden, S, spec.slope)
    order = range(T) if cell.reverse else range(T - 1, -1, -1)  # the chain's steps, last visited first
    tmp = np.empty_like(dz[0])
    later = None
    for t in order:
        if later is not None:
            np.matmul(dz[later], W, out=tmp)
            dz[t] += tmp
        dz[t] *= d[t]
        later = t
    return later  # the step the chain visits first, whose dz gives dE/dh0


def _tuned_stacked_loop(params, xs, targets, spec):
    """``tuned_loop`` for several layers or directions: per chain, the input product over all
    steps is one GEMM and the recurrence runs in place; a layer passes [h_f; h_b] up."""
    V, c = params["V"], params.get("c")
    T, B, n_x = xs.shape
    dtype = xs.dtype
    m2m = spec.mapping == "many-to-many"
    layers = []  # (the layer's input (T B, n_in), [(cell, h, S)])
    X = xs.reshape(T * B, n_x)
    for row in layout.cells(spec):
        chains = []
        for cell in row:
            W = params[cell.W]
            h = np.empty((T + 1, B, W.shape[0]), dtype)
            h[T if cell.reverse else 0] = params[cell.h0]
            S = _tuned_chain(h, X, params[cell.U], W, params.get(cell.b), cell, spec)
            chains.append((cell, h, S))
        layers.append((X, chains))
        X = np.concatenate([S for _, _, S in chains], axis=-1) if len(chains) > 1 else chains[0][2]
        X = X.reshape(T * B, -1)
    Hout = X if m2m else X.reshape(T, B, -1)[T - 1]
    o = np.matmul(Hout, V.T)
    if c is not None:
        o += c
    E, do = _loss_and_delta(o, targets, spec)

    grads = {"V": do.T @ Hout}
    if c is not None:
        grads["c"] = do.sum(axis=0)
    dX = np.zeros((T, B, X.shape[1]), dtype)  # dE/d(the layer's output), all steps
    np.matmul(do, V, out=dX.reshape(T * B, -1) if m2m else dX[T - 1])
    for X, chains in reversed(layers):
        below = None
        start = 0
        for cell, h, _ in chains:
            U, W = params[cell.U], params[cell.W]
            n_h = W.shape[0]
            dz = np.ascontiguousarray(dX[..., start : start + n_h])
            first = _tuned_chain_backward(dz, h, W, cell, spec)
            Z = dz.reshape(T * B, n_h)
            previous = h[1:] if cell.reverse else h[:-1]
            grads[cell.U] = Z.T @ X
            grads[cell.W] = Z.T @ previous.reshape(T * B, n_h)
            if cell.b:
                grads[cell.b] = Z.sum(axis=0)
            grads[cell.h0] = dz[first].sum(axis=0) @ W
            if cell.layer > 1 or spec.input_grad:
                below = Z @ U if below is None else below + Z @ U
            start += n_h
        if below is not None:
            dX = below.reshape(T, B, -1)
    out = {k: grads[k] for k in params}
    if spec.input_grad:
        out["x"] = dX
    return E, out
