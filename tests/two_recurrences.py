"""A small program with two recurrences, written by hand for the pass tests.

Two chained recurrent layers over T = 2 steps, in column math (one column per sequence):
``z_t = U x_t + W h_{t-1}``, ``h_t = tanh(z_t)`` and ``o_t = V h_t + R yhat_{t-1}``,
``yhat_t = sigmoid(o_t)``, with the loss ``E = sum_t 1ᵀ (y_t ∘ yhat_t) 1``. The backward
statements are the chain rule written out by hand (not by ``backprop``), so the two layers
carry two different derivative factors, ``1 - h_t ∘ h_t`` and ``yhat_t ∘ (1 - yhat_t)``.
"""

from types import SimpleNamespace

import numpy as np
import sympy as sp
from sympy import MatrixSymbol, Transpose

from rnngen import algebra as A
from rnngen.activations import OUTPUT_LAYERS
from rnngen.evaluate import run
from rnngen.families import FAMILIES, Run, Step
from rnngen.program import Program, Stmt, gradient_symbol

T = 2
n_x, n_h, n_y = sp.symbols("n_x n_h n_y", integer=True, positive=True)
DIMS = {n_x: 3, n_h: 4, n_y: 5}
ROWS = {"x": n_x, "y": n_y, "z": n_h, "h": n_h, "o": n_y, "yhat": n_y, "fprime": n_h, "gprime": n_y}
PARAMS = {
    "U": MatrixSymbol("U", n_h, n_x),
    "W": MatrixSymbol("W", n_h, n_h),
    "V": MatrixSymbol("V", n_y, n_h),
    "R": MatrixSymbol("R", n_y, n_y),
    "h0": MatrixSymbol("h0", n_h, 1),
    "g0": MatrixSymbol("g0", n_y, 1),
}
U, W, V, R, h0, g0 = PARAMS.values()
OUTPUTS = ["E"] + ["d" + p for p in PARAMS]


def _rows(family: str):
    """The rows of a family; its adjoint ``d<f>`` and its split-off part ``pre_<f>`` have those of ``f``."""
    family = family.removeprefix("pre_")
    return ROWS[family] if family in ROWS else ROWS[family.removeprefix("d")]


def s(family: str, t: int) -> MatrixSymbol:
    """Step t of a family."""
    return Step.of(FAMILIES[family], t, _rows(family))


def run_of(family: str, lo: int, hi: int) -> MatrixSymbol:
    """The steps ``lo..hi`` of a family side by side."""
    return Run.of(FAMILIES[family], lo, hi, _rows(family))


def ones(rows):
    return A.ones(rows, A.B)


def tanh_prime(t):
    return A.sub(ones(n_h), A.had(s("h", t), s("h", t)))


def sigmoid_prime(t):
    return A.had(s("yhat", t), A.sub(ones(n_y), s("yhat", t)))


def _log(a):
    return A.Elementwise("log", a)


def _loss(t: int, bce: bool):
    """Step t's loss term: ``1ᵀ (y_t ∘ yhat_t) 1``, or the binary cross-entropy of ``yhat_t`` with ``log``s."""
    y, yhat, one = s("y", t), s("yhat", t), A.ones(n_y, A.B)
    if not bce:
        return A.mul(A.ones(1, n_y), A.had(y, yhat), A.ones(A.B, 1))
    inner = A.add(A.had(y, _log(yhat)), A.had(A.sub(one, y), _log(A.sub(one, yhat))))
    return A.neg(A.mul(A.ones(1, n_y), inner, A.ones(A.B, 1)))


def _loss_adjoint(t: int, bce: bool):
    """``dE_t/dyhat_t``: ``y_t``, or ``-(y_t / yhat_t - (1 - y_t) / (1 - yhat_t))``."""
    y, yhat, one = s("y", t), s("yhat", t), A.ones(n_y, A.B)
    if not bce:
        return y
    return A.neg(A.sub(A.had(y, A.reciprocal(yhat)), A.had(A.sub(one, y), A.reciprocal(A.sub(one, yhat)))))


def statements(bce: bool = False) -> list:
    """``(target, expr, section)`` of the plain program, in derivation order."""
    fwd = [(s("h", 0), A.mul(h0, A.ones(1, A.B))), (s("yhat", 0), A.mul(g0, A.ones(1, A.B)))]
    for t in range(1, T + 1):
        fwd += [
            (s("z", t), A.add(A.mul(U, s("x", t)), A.mul(W, s("h", t - 1)))),
            (s("h", t), A.Elementwise("tanh", s("z", t))),
            (s("o", t), A.add(A.mul(V, s("h", t)), A.mul(R, s("yhat", t - 1)))),
            (s("yhat", t), A.Elementwise("sigmoid", s("o", t))),
        ]
    loss = A.add(*(_loss(t, bce) for t in range(1, T + 1)))
    back = []
    for t in range(T, 0, -1):
        later = t < T
        back += [
            (
                s("dyhat", t),
                A.add(_loss_adjoint(t, bce), A.mul(Transpose(R), s("do", t + 1))) if later else _loss_adjoint(t, bce),
            ),
            (s("do", t), A.had(s("dyhat", t), s("yhat", t), A.sub(ones(n_y), s("yhat", t)))),
            (
                s("dh", t),
                A.add(A.mul(Transpose(V), s("do", t)), A.mul(Transpose(W), s("dz", t + 1)))
                if later
                else A.mul(Transpose(V), s("do", t)),
            ),
            (s("dz", t), A.had(s("dh", t), tanh_prime(t))),
        ]
    steps = range(1, T + 1)
    grads = {
        "U": A.add(*(A.mul(s("dz", t), Transpose(s("x", t))) for t in steps)),
        "W": A.add(*(A.mul(s("dz", t), Transpose(s("h", t - 1))) for t in steps)),
        "V": A.add(*(A.mul(s("do", t), Transpose(s("h", t))) for t in steps)),
        "R": A.add(*(A.mul(s("do", t), Transpose(s("yhat", t - 1))) for t in steps)),
        "h0": A.mul(Transpose(W), s("dz", 1), A.ones(A.B, 1)),
        "g0": A.mul(Transpose(R), s("do", 1), A.ones(A.B, 1)),
    }
    back += [(gradient_symbol(PARAMS[name]), expr) for name, expr in grads.items()]
    return (
        [(tg, e, "forward") for tg, e in fwd]
        + [(MatrixSymbol("E", 1, 1), loss, "loss")]
        + [(tg, e, "backward") for tg, e in back]
    )


def program(bce: bool = False) -> Program:
    """The plain program, its derivation a stand-in with what the passes read of a spec.

    With ``bce`` the loss is the binary cross-entropy of the sigmoid layer, whose log forms the
    registry's sigmoid output layer gives; there is no fused output gradient either way (the
    sigmoid layer is recurrent: ``dE/do_t`` is not ``yhat_t - y_t``).
    """
    layer = OUTPUT_LAYERS["sigmoid" if bce else "identity"]  # identity: no log or residual forms
    spec = SimpleNamespace(output_layer=layer, fused=None, masked=False)
    derivation = SimpleNamespace(spec=spec, graph=SimpleNamespace(inputs={}))
    stmts = tuple(Stmt(tg, e, section, i) for i, (tg, e, section) in enumerate(statements(bce)))
    return Program(derivation, stmts, frozenset((name, None) for name in OUTPUTS))


def inputs(B: int = 3, seed: int = 0) -> dict:
    """Random parameters, inputs and targets, by name."""
    rng = np.random.default_rng(seed)
    env = {
        name: 0.5 * rng.standard_normal(tuple(int(sp.sympify(d).subs(DIMS)) for d in p.shape))
        for name, p in PARAMS.items()
    }
    for t in range(1, T + 1):
        env[f"x_{t}"] = rng.standard_normal((DIMS[n_x], B))
        env[f"y_{t}"] = rng.uniform(0, 1, (DIMS[n_y], B))  # probabilities, as the cross-entropy wants
    return env


def values(prog: Program, env: dict, B: int = 3) -> dict:
    """The outputs of ``prog`` at ``env``, by evaluating its statements in order."""
    out = run([(st.target, st.expr) for st in prog.stmts], env, {**DIMS, A.B: B})
    return {k: out[k] for k in OUTPUTS}
