"""Registries of the elementwise functions and of the output/loss pairs.

Every rule about an activation lives in its registry entry: its SymPy scalar
form (for the exact oracle), its derivative as a matrix expression (preferably
in terms of the activation's own output, which is how the code computes it),
and its NumPy and LaTeX spellings. Adding an activation means adding an entry,
not an ``if``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from rnngen import algebra as A


@dataclass(frozen=True)
class ElementwiseRule:
    """An entrywise function ``f`` and what every stage needs to know about it.

    (The matrix node that applies it is ``algebra.Elementwise``.)

    Attributes:
        name: registry key, also the spelling used in specs and module names.
        scalar: ``f`` as a SymPy function of one scalar (used by the exact oracle).
        numpy: format string printing ``f`` applied to NumPy code ``{}``.
        ufunc: ``f`` on NumPy arrays, for evaluating expressions directly.
        latex: LaTeX of ``f`` applied to ``{}``.
        derivative: ``(arg, out) -> f'(arg)`` as a matrix expression; ``out`` is
            the symbol holding ``f(arg)`` when the graph stores it, else None.
        derivative_latex: LaTeX of ``f'`` at the node whose output is ``{out}`` and
            input ``{arg}``.
    """

    name: str
    scalar: Callable[[sp.Expr], sp.Expr]
    numpy: str
    ufunc: Callable
    latex: str
    derivative: Callable
    derivative_latex: str


def _tanh_derivative(arg, out):
    # tanh' = 1 - tanh^2: computed from the stored output, no second tanh.
    h = out if out is not None else A.Elementwise("tanh", arg)
    return A.sub(A.ones(*h.shape), A.square(h))


def _log_derivative(arg, out):
    return A.reciprocal(arg)


ELEMENTWISE: dict[str, ElementwiseRule] = {
    e.name: e
    for e in (
        ElementwiseRule(
            name="tanh",
            scalar=sp.tanh,
            numpy="np.tanh({})",
            ufunc=np.tanh,
            latex=r"\tanh({})",
            derivative=_tanh_derivative,
            derivative_latex=r"\mathbf{{1}} - {out} \odot {out}",
        ),
        ElementwiseRule(
            name="log",
            scalar=sp.log,
            numpy="np.log({})",
            ufunc=np.log,
            latex=r"\log {}",
            derivative=_log_derivative,
            derivative_latex=r"\mathbf{{1}} \oslash {arg}",
        ),
    )
}

#: The elementwise functions a user may choose for the hidden layer.
HIDDEN = ("tanh",)


@dataclass(frozen=True)
class OutputLoss:
    """An output layer together with the loss applied to it, at one time step.

    Attributes:
        output: name of the output activation.
        loss: name of the loss.
        short: abbreviation used in module names.
        activation: ``o -> yhat`` as a matrix expression.
        loss_expr: ``(yhat, y) -> E_t`` (a 1x1 matrix, summed over the batch).
        fused_grad: ``(yhat, y) -> dE_t/do_t`` when a simplification applies, used
            by the fusing pass; None when the general output Jacobian is used.
        fused_assumes: what the fused form relies on, stated in the document.
        text: the loss at one step in plain text, for docstrings.
        scalar: ``(o, y) -> E_t`` on lists of SymPy scalars, written from the
            textbook definition, for the exact oracle.
    """

    output: str
    loss: str
    short: str
    activation: Callable
    loss_expr: Callable
    fused_grad: Callable | None
    fused_assumes: str
    text: str
    scalar: Callable


def _scalar_softmax_cross_entropy(o, y):
    log_norm = sp.log(sum(sp.exp(v) for v in o))
    return -sum(yi * (oi - log_norm) for oi, yi in zip(o, y))


def _cross_entropy(yhat, y):
    n = yhat.shape[0]
    return A.neg(A.mul(A.ones(1, n), A.had(y, A.Elementwise("log", yhat)), A.ones(A.B, 1)))


OUTPUT_LOSSES: dict[tuple[str, str], OutputLoss] = {
    (o.output, o.loss): o
    for o in (
        OutputLoss(
            output="softmax",
            loss="cross_entropy",
            short="xent",
            activation=A.Softmax,
            loss_expr=_cross_entropy,
            # With every target column summing to one, the dense softmax
            # Jacobian applied to -y / yhat collapses to yhat - y.
            fused_grad=lambda yhat, y: A.sub(yhat, y),
            fused_assumes="each target $y_t$ sums to one (a one-hot vector or a distribution)",
            text="-y_t^T log yhat_t",
            scalar=_scalar_softmax_cross_entropy,
        ),
    )
}
OUTPUTS = tuple(sorted({o.output for o in OUTPUT_LOSSES.values()}))
LOSSES = tuple(sorted({o.loss for o in OUTPUT_LOSSES.values()}))
