"""The adjoint rules one by one against finite differences, and the derivation's shape."""

import numpy as np
import pytest
import sympy as sp
from sympy import MatrixSymbol

from rnngen import algebra as A
from rnngen.backprop import backprop, path_expansion, path_source
from rnngen.evaluate import evaluate

n, m, k = 3, 4, 2
DIMS = {A.B: 2}
a = MatrixSymbol("a", n, m)
b = MatrixSymbol("b", m, k)
c = MatrixSymbol("c", n, m)
v = MatrixSymbol("v", n, 1)
s = MatrixSymbol("s", n, A.B)

# expression, the symbols to differentiate; each row exercises one adjoint rule
RULES = [
    (A.mul(a, b), [a, b]),
    (A.add(a, c), [a, c]),
    (A.had(a, c), [a, c]),
    (A.transpose(a), [a]),
    (A.mul(-2, a), [a]),
    (A.Elementwise("tanh", a), [a]),
    (A.Elementwise("log", A.had(a, a)), [a]),
    (A.Softmax(s), [s]),
    (A.mul(v, A.ones(1, A.B)), [v]),
    (A.mul(A.ones(1, n), A.had(a, c), A.ones(m, 1)), [a, c]),
]


def _values(rng):
    return {
        "a": rng.uniform(0.5, 1.5, (n, m)),
        "b": rng.standard_normal((m, k)),
        "c": rng.standard_normal((n, m)),
        "v": rng.standard_normal((n, 1)),
        "s": rng.standard_normal((n, 2)),
    }


@pytest.mark.parametrize("expr, wrt", RULES, ids=[type(e).__name__ + str(i) for i, (e, _) in enumerate(RULES)])
def test_adjoint_rule_matches_finite_differences(expr, wrt):
    rng = np.random.default_rng(0)
    env = _values(rng)
    out = evaluate(expr, env, DIMS)
    g = rng.standard_normal(out.shape)
    G = MatrixSymbol("G", *expr.shape)
    contributions: dict = {}
    backprop(expr, G, lambda sym, term: contributions.setdefault(sym, []).append(term))
    for sym in wrt:
        grad = sum(evaluate(t, {**env, "G": g}, DIMS) for t in contributions[sym])
        numeric = np.zeros_like(env[sym.name])
        for idx in np.ndindex(numeric.shape):
            up, down = dict(env), dict(env)
            up[sym.name] = env[sym.name].copy()
            down[sym.name] = env[sym.name].copy()
            up[sym.name][idx] += 1e-6
            down[sym.name][idx] -= 1e-6
            numeric[idx] = (np.sum(g * evaluate(expr, up, DIMS)) - np.sum(g * evaluate(expr, down, DIMS))) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


def test_unknown_node_has_no_rule():
    with pytest.raises(TypeError, match="no adjoint rule"):
        backprop(A.Softmax(s) + sp.MatPow(MatrixSymbol("q", n, n), 2) * s, MatrixSymbol("G", n, A.B), lambda *_: None)


@pytest.mark.parametrize("T", [1, 2, 5, 12])
def test_one_named_adjoint_per_node_and_T_terms_per_weight(built, T):
    d = built(T).derivation
    families = [node.family for node in d.adjoints]
    # dyhat, do, dh, dz per step, and dh_0
    assert len(families) == 4 * T + 1
    for name in ("U", "W", "V", "b", "c"):
        assert len(d.gradients[name].args if T > 1 else [d.gradients[name]]) == T


@pytest.mark.parametrize("T", [1, 3, 5])
def test_sum_over_paths_has_one_term_per_path(built, T):
    d = built(T).derivation
    for name in ("U", "W", "b"):
        terms = path_expansion(d, name)
        assert len(terms) == T * (T + 1) // 2
        # E_t contributes one path per step k <= t
        assert sorted(path_source(t) for t in terms) == sorted(t for t in range(1, T + 1) for _ in range(t))
    assert len(path_expansion(d, "V")) == T
    assert len(path_expansion(d, "h0")) == T


def test_matrix_calculus_of_sympy_is_not_used():
    import pathlib

    source = "".join(p.read_text() for p in pathlib.Path(A.__file__).parent.rglob("*.py"))
    assert ".diff(" not in source.replace("sp.diff(", "")
