"""BPTT written by hand with a loop over time: the baselines a generated module is measured against.

Both loops take the parameters in column layout (``U`` is n_h x n_x, ``W``
n_h x n_h, ``V`` n_y x n_h, ``b``, ``c``, ``h0`` 1-D, missing biases absent),
``xs`` as (T, B, n_x) rows and the targets as rows ``y`` (L, B, n_y), where L
is T (many-to-many) or 1 (many-to-one), or as class indices (L, B) for
softmax with cross-entropy. They return ``(E, grads)`` with the keys of
``params``. Nothing here is generated or derived: these are what a person
writes from the textbook equations, and the benchmark checks them against
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


def tutorial_loop(params, xs, targets, spec):
    """The classic per-step BPTT loop: forward step by step, then backward step by step."""
    U, W, V, h0 = params["U"], params["W"], params["V"], params["h0"]
    b, c = params.get("b"), params.get("c")
    T, B, _ = xs.shape
    n_h, n_y = W.shape[0], V.shape[0]
    y = _rows(targets, n_y, xs.dtype)
    loss_at = {t: i for i, t in enumerate(range(T) if spec.mapping == "many-to-many" else [T - 1])}
    hs, ps = {-1: np.broadcast_to(h0, (B, n_h))}, {}
    E = 0.0
    for t in range(T):
        z = xs[t] @ U.T + hs[t - 1] @ W.T
        if b is not None:
            z = z + b
        hs[t] = _f(spec.hidden, z, spec.slope)
        if t in loss_at:
            o = hs[t] @ V.T
            if c is not None:
                o = o + c
            ps[t] = _output(spec.output, o)
            E += _loss(spec.loss, ps[t], y[loss_at[t]])
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = np.zeros(n_h, xs.dtype)
    dc = np.zeros(n_y, xs.dtype)
    dh_next = np.zeros((B, n_h), xs.dtype)
    for t in reversed(range(T)):
        dh = dh_next
        if t in loss_at:
            do = _output_delta(spec.output, spec.loss, ps[t], y[loss_at[t]])
            dV += do.T @ hs[t]
            dc += do.sum(axis=0)
            dh = dh + do @ V
        dz = dh * _df(spec.hidden, hs[t], spec.slope)
        db += dz.sum(axis=0)
        dU += dz.T @ xs[t]
        dW += dz.T @ hs[t - 1]
        dh_next = dz @ W
    grads = {"U": dU, "W": dW, "V": dV, "b": db, "c": dc, "h0": dh_next.sum(axis=0)}
    return E, {k: grads[k] for k in params}


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
    return E, {k: grads[k] for k in params}
