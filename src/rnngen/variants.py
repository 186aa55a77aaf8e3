"""Every way of calling a generated module, checked against the one the gradient checks verify.

Finite differences and the Taylor test verify ``loss_and_grads`` in float64 on a batch with the
targets as drawn. A module has more paths than that: float32, a single sequence ``(T, n_x)``,
one-hot rows instead of class indices, ``loss()`` and ``forward()``, and integer token ids in place
of one-hot inputs. Each is compared here with the verified float64 batched result at the same
point (the point rounded to the path's dtype; for token ids, the one-hot rows they stand for),
and ``forward()`` also with a plain loop written from the textbook definition.

A path may differ from the reference by rounding only. The limit is derived, not guessed:
``ROUNDING_FACTOR * eps(dtype) * max(1, condition)``, where ``condition`` is the relative
condition number of the figure, measured by perturbing every input in float64, and
``ROUNDING_FACTOR`` covers what the inputs' condition does not see (cancellation inside the
computation), as measured over the activation set; plus, for a figure near the bottom of the
dtype's range, what underflow takes (``limit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnngen.activations import LOSSES
from rnngen.reference import input_steps, loss_of_outputs, plain_forward, relative_error, sequence

#: The dtypes a module computes in.
DTYPES = ("float64", "float32")
#: A path's error in units of eps times the figure's condition number. Measured on 256 modules of
#: the activation set (every 7th combination, T = 2 and 5): at most 19 in float64 and 28 in
#: float32, except at a saturated softmax in float32 (yhat = 0.99974; relu and leaky_relu,
#: many-to-one), 71 and 75: dE/do = yhat * (dE/dyhat - yhat . dE/dyhat) cancels to 1 - yhat
#: there, which perturbing the inputs does not show. A wrong gradient errs by percents, far
#: above the limit this leaves.
ROUNDING_FACTOR = 256
#: Above this limit a path's figure cannot tell a wrong path (off by percents) from rounding: it is
#: reported as undecided at this point (``PathResult.undecided``), never as checked.
DECISIVE_LIMIT = 1e-3
#: Relative perturbation of the inputs that measures the condition number: far above float64's
#: rounding (so the difference is not noise), far below 1 (so it stays linear).
CONDITION_STEP = 1e-7


@dataclass
class PathResult:
    """One path's figures: relative error against the reference and the limit, per quantity."""

    errors: dict
    limits: dict

    @property
    def failures(self) -> list:
        """``(quantity, error, limit)`` for each quantity above its limit (a nan is above every limit)."""
        return [(q, e, self.limits[q]) for q, e in self.errors.items() if not e <= self.limits[q]]

    @property
    def undecided(self) -> list:
        """The quantities whose limit exceeds ``DECISIVE_LIMIT``: so ill-conditioned at this point, or so
        small in the dtype (below its normal range), that rounding alone could explain any relative error;
        each is still held to its limit, an absolute bound for the small ones."""
        return [q for q, lim in self.limits.items() if lim > DECISIVE_LIMIT]


def figures(module, params, xs, targets) -> dict:
    """E, every gradient and every ``forward()`` output of the batched call, in the dtype of ``xs``."""
    E, grads = module.loss_and_grads(params, xs, targets)
    return {"E": E, **grads, **module.forward(params, xs)}


def condition(module, params, xs, targets, directions=3, seed=2) -> dict:
    """Relative condition number of each figure at this float64 point.

    Every input (parameters, ``xs``, real-valued targets) is scaled by ``1 + CONDITION_STEP * s``
    with random signs ``s``; the condition number is the largest relative change of the figure
    divided by ``CONDITION_STEP``. Rounding the inputs to a dtype is such a perturbation of size
    ``eps / 2``, and rounding inside the computation behaves like one too (backward stability).
    """
    rng = np.random.default_rng(seed)
    base = figures(module, params, xs, targets)
    kappa = dict.fromkeys(base, 0.0)

    def moved(a):
        return a * (1 + CONDITION_STEP * rng.choice([-1.0, 1.0], np.shape(a)))

    real_targets = np.asarray(targets).dtype.kind == "f"
    for _ in range(directions):
        point = {k: moved(v) for k, v in params.items()}, moved(xs), moved(targets) if real_targets else targets
        for name, value in figures(module, *point).items():
            change = relative_error(value, base[name]) / CONDITION_STEP
            kappa[name] = max(kappa[name], change) if np.isfinite(change) else float("nan")
    return kappa


def limit(dtype: str, kappa: float, reference) -> float:
    """The largest relative error rounding explains, for a figure of this condition number and this value.

    Rounding is relative in the dtype's normal range only: below its smallest normal number ``tiny`` a
    value keeps fewer digits, and one below its smallest subnormal is 0, however right the computation
    (seed 003's dE/dh0 at T = 200 is 3e-77, which float32 holds as 0). So each entry may also be off by
    ``ROUNDING_FACTOR * tiny`` (float32: 3e-36), relative to the reference's norm; a figure that small in
    the dtype has a limit above ``DECISIVE_LIMIT``: it is undecided, not failed.
    """
    finfo = np.finfo(dtype)
    norm = float(np.linalg.norm(np.asarray(reference, np.float64)))
    underflow = float(finfo.tiny) * np.sqrt(np.size(reference)) / norm if norm > 0 else 0.0
    return ROUNDING_FACTOR * (float(finfo.eps) * max(1.0, kappa) + underflow)


def _rounded(params, xs, targets, dtype):
    """The point in ``dtype`` (what the path sees) and the same values in float64 (the reference's point)."""
    low = (
        {k: v.astype(dtype) for k, v in params.items()},
        xs.astype(dtype),
        targets.astype(dtype) if targets.dtype.kind == "f" else targets,
    )
    high = (
        {k: v.astype(np.float64) for k, v in low[0].items()},
        low[1].astype(np.float64),
        low[2].astype(np.float64) if targets.dtype.kind == "f" else targets,
    )
    return low, high


def check_paths(module, params, xs, targets, dtypes=DTYPES, progress=None) -> dict:
    """Every path of the module in each dtype against the float64 batched result; ``{name: PathResult}``.

    The float64 batched ``loss_and_grads`` is the reference (finite differences and the Taylor
    test verify it), so it is not a path here; in float32 it is.
    """
    say = progress or (lambda _: None)
    spec = module.SPEC
    many_to_one = spec["mapping"] == "many-to-one"
    classes = LOSSES[spec["loss"]].targets == "classes"
    B = input_steps(spec, xs).shape[1]
    out = {}
    with np.errstate(all="ignore"):  # a nan shows in the figures; no warning reaches the terminal
        kappa = condition(module, params, xs, targets)
        for dtype in dtypes:
            say(f"paths in {dtype}")
            (p, x, y), high = _rounded(params, xs, targets, dtype)
            ref = figures(module, *high)
            mask = getattr(module, "mask", None)  # a masked module's (masks.Masked)
            ref.update(plain_forward(spec, high[0], high[1], mask))  # h, o, yhat from the plain loop

            def compare(name, values, dtype=dtype, ref=ref):
                out[f"{dtype} {name}"] = PathResult(
                    {q: relative_error(v, ref[q]) for q, v in values.items()},
                    {q: limit(dtype, kappa[q], ref[q]) for q in values},
                )

            def calls(p, x, y, module=module):
                E, grads = module.loss_and_grads(p, x, y)
                return {"E": E, **grads}

            def alone(i, masked=mask is not None):  # sequence i's module: a masked one with its mask's column
                return module.sequence(i) if masked else module

            if dtype != "float64":
                compare("loss_and_grads", calls(p, x, y))
            compare("loss()", {"E": module.loss(p, x, y)})
            forward = module.forward(p, x)
            compare("forward()", {**forward, "E": loss_of_outputs(spec, forward["yhat"], y, mask)})
            if classes and y.dtype.kind in "iu":
                compare("one-hot targets", calls(p, x, np.eye(ref["yhat"].shape[-1], dtype=dtype)[y]))
            # sequence i alone: its targets sit on axis 0 (many-to-one) or 1 (a row per step); E and the
            # parameters' gradients are sums over the sequences, the rest (forward()'s outputs, the input
            # gradient) has one entry per sequence on the batch axis
            singles = [
                calls(p, sequence(spec, x, i), np.take(y, i, axis=0 if many_to_one else 1), alone(i)) for i in range(B)
            ]
            singles = [{**s, **alone(i).forward(p, sequence(spec, x, i))} for i, s in enumerate(singles)]
            summed = {
                q: sum(s[q] for s in singles)
                if q == "E" or q in module.PARAM_SHAPES
                else np.stack([s[q] for s in singles], axis=-2)
                for q in singles[0]
            }
            compare("single sequences", summed)
            if getattr(module, "TOKEN_IDS", False):
                say(f"token ids in {dtype}")
                ids = token_ids(spec, x)
                one_hot = np.eye(x.shape[-1])[ids]  # the float64 rows the ids stand for: a verified path
                kappa_ids = condition(module, high[0], one_hot, high[2])
                ref_ids = figures(module, high[0], one_hot, high[2])
                out[f"{dtype} token ids"] = PathResult(
                    {q: relative_error(v, ref_ids[q]) for q, v in figures(module, p, ids, y).items()},
                    {q: limit(dtype, kappa_ids[q], ref_ids[q]) for q in ref_ids},
                )
    return out


def token_ids(spec: dict, xs) -> np.ndarray:
    """Token ids in the shape of ``xs`` without its last axis (each row's largest entry), the last
    row's id the same as the first's: a scatter-add that drops a repeated id's rows shows."""
    ids = np.asarray(xs).argmax(axis=-1)
    flat = ids.reshape(-1)
    flat[-1] = flat[0]
    return ids
