"""The checks of a masked module (``--mask``): the mask they run with, and that padded steps are inert.

- ``random_mask``: a mask of real steps for the check, as ``lengths`` with the module's padding
  make it: one sequence of length 1, one of length T, the others drawn (so that some steps are
  padded whenever T > 1);
- ``Masked``: the module with that mask bound, which every other check (finite differences, the
  Taylor test, the paths, the carried state) calls as it calls a module;
- ``padded_steps``: what a padded step's input and target change (E, every gradient, the final
  state), which must be nothing.

The exact oracle and the plain reference loop take the mask themselves (``verify.exact_oracle``,
``reference.run_network``).
"""

from __future__ import annotations

import numpy as np

from rnngen.reference import input_steps, relative_error, spec_of
from rnngen.sequences import mask_from_lengths


def random_mask(spec: dict, B: int, seed: int = 5) -> np.ndarray:
    """The (T, B) mask of the check: lengths 1 and T first, the others drawn in 1..T, laid out by the
    spec's padding as ``sequences.mask_from_lengths`` lays them out."""
    T = spec["T"]
    lengths = np.random.default_rng(seed).integers(1, T + 1, size=B)
    lengths[:2] = (1, T)[:B]
    return mask_from_lengths(lengths, T, spec.get("padding", "post"))


class Masked:
    """A masked module whose ``loss``, ``loss_and_grads`` and ``forward`` get ``mask`` on every call;
    every other attribute is the module's."""

    def __init__(self, module, mask: np.ndarray):
        self.module, self.mask = module, mask

    def __getattr__(self, name):
        return getattr(self.module, name)

    def loss(self, params, xs, targets, **kwargs):
        return self.module.loss(params, xs, targets, mask=self.mask, **kwargs)

    def loss_and_grads(self, params, xs, targets, **kwargs):
        return self.module.loss_and_grads(params, xs, targets, mask=self.mask, **kwargs)

    def forward(self, params, xs, **kwargs):
        return self.module.forward(params, xs, mask=self.mask, **kwargs)

    def sequence(self, i: int) -> Masked:
        """Sequence ``i`` alone: its column of the mask."""
        return Masked(self.module, self.mask[:, i])


def padded_steps(module: Masked, params, xs, targets, seed: int = 6) -> float:
    """The largest relative change of E, any gradient or the final state when every padded step's
    input and target are drawn again (0 for a right mask: a padded step reads nothing)."""
    spec = spec_of(module.SPEC)
    padded = ~module.mask
    rng = np.random.default_rng(seed)
    steps = input_steps(module.SPEC, xs)
    moved_x = np.where(padded[: len(steps), :, None], rng.standard_normal(steps.shape), steps).astype(xs.dtype)
    moved_x = moved_x.reshape(xs.shape)
    moved_y = targets
    if spec.masked_losses:  # a padded step's target has no loss term
        lost = padded[spec.loss_steps[0] - 1 :]
        drawn = rng.permutation(targets.reshape(-1, *targets.shape[2:])).reshape(targets.shape)
        moved_y = np.where(lost if targets.ndim == 2 else lost[..., None], drawn, targets)
    before = module.loss_and_grads(params, xs, targets, return_state=True)
    after = module.loss_and_grads(params, moved_x, moved_y, return_state=True)
    errors = []
    for a, b in zip(_flat(before), _flat(after)):
        errors.append(relative_error(b, a))
    return max(errors)


def _flat(result) -> list:
    """E, every gradient and every chain's final state of ``loss_and_grads(..., return_state=True)``."""
    E, grads, final = result
    final = final if isinstance(final, dict) else {"state": final}
    return [E, *(grads[k] for k in sorted(grads)), *(final[k] for k in sorted(final))]
