"""The last section of a seed preset's document: the seed's own assembled formulas and its errors.

Each formula is a ``SeedFormula``: its LaTeX in the seed's symbols and a NumPy function that evaluates
it the way it is written, from the seed's own forward equations (``forward``), for one sequence. The
tests compare each value with the module's gradient (``tests/test_presets.py``): an independent
computation of the same number. Each error of a seed is an ``Erratum``: one sentence that names it,
the correct form (a ``SeedFormula``, so checked the same way), and what the error costs, with the
seed's own reading as a function too where the cost is a number (seed 004's sign of the update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnngen.presets import PRESETS


@dataclass(frozen=True)
class SeedFormula:
    """One equation in the seed's symbols.

    Attributes:
        latex: the equation (no alignment marks).
        of: what it equals in the module: a gradient's parameter name, ``"E"`` (the loss), ``"yhat:3"``
            (the prediction at step 3), ``"h"`` (the states, steps 1..T), ``"V_last"`` (the gradient of
            the last loss term alone), or "" for a formula that is not a number (a rule, a shape).
        value: ``value(params, x, y) -> array``, the formula evaluated as written, for one sequence.
    """

    latex: str
    of: str = ""
    value: Callable | None = None


@dataclass(frozen=True)
class Erratum:
    """An error of a seed: the sentence that names it, the correct form, and what the error costs.

    Attributes:
        wrong: one sentence, LaTeX text, naming the error as the seed writes it.
        correct: the correct form in the seed's symbols.
        cost: what the error costs, LaTeX text.
        as_written: the seed's formula evaluated as written (for the cost), or None.
    """

    wrong: str
    correct: SeedFormula
    cost: str
    as_written: Callable | None = None


# --- the seeds' forward equations, for one sequence --------------------------------------------------


def forward(spec, params: dict, x: np.ndarray) -> dict:
    """The states, pre-activations and predictions of one sequence ``x`` (T, n_x) as vectors.

    Written from the seed's equations (``h_t = tanh(U x_t + W h_{t-1} + b)``, in row notation
    ``h^t = tanh(x^t U + h^{t-1} W)``), not from the module: ``H[t]`` is the state at step t
    (``H[0]`` the initial state), ``Z[t]`` the hidden pre-activation, ``O[t]`` the output's.
    """
    U, W, V = (params[n] for n in spec.names)
    b = params.get("b", 0.0)
    c = params.get("c", 0.0)
    H, Z, O, Y = [params["h0"]], [None], [None], [None]
    for t in range(1, spec.T + 1):
        if spec.row:
            z = x[t - 1] @ U + H[-1] @ W + b
        else:
            z = U @ x[t - 1] + W @ H[-1] + b
        h = np.tanh(z)
        o = h @ V + c if spec.row else V @ h + c
        Z.append(z)
        H.append(h)
        O.append(o)
        Y.append(_output(spec.output, o))
    return {"H": H, "Z": Z, "O": O, "Y": Y}


def _output(name: str, o):
    if name == "softmax":
        e = np.exp(o - o.max())
        return e / e.sum()
    if name == "sigmoid":
        return 1 / (1 + np.exp(-o))
    return o


def _targets(spec, y) -> list:
    """The target of each step (index t), None where the step has no loss term."""
    y = np.asarray(y, dtype=float)
    if spec.mapping == "many-to-one":
        return [None] * spec.T + [y]
    return [None] + [y[t - 1] for t in range(1, spec.T + 1)]


def _tanh_prime(h):
    return 1 - h * h


def _immediate(who: str, written: str, marked: str) -> str:
    """The sentence that a seed's unmarked derivative in a sum over paths is the immediate one."""
    return (
        rf"{who} ${written}$ is the immediate derivative ${marked}$; read as the total one, the sum counts "
        r"every longer path again."
    )


# --- seed 000 ---------------------------------------------------------------------------------------


def _seed000(spec) -> dict:
    T = spec.T

    def grad_V(p, x, y):
        f, tg = forward(spec, p, x), _targets(spec, y)
        return sum(np.outer(f["H"][t], f["Y"][t] - tg[t]) for t in range(1, T + 1))

    def path_sum(which):
        """sum_t sum_{i<=t} (source^i)^T (y^t - yhat^t) V^T (prod_{j=t}^{i+1} D^j U^T) D^i, as written."""

        def value(p, x, y):
            f, tg = forward(spec, p, x), _targets(spec, y)
            U = p["U"]
            total = 0.0
            for t in range(1, T + 1):
                row = (f["Y"][t] - tg[t]) @ p["V"].T
                for i in range(t, 0, -1):  # row is dE^t/dh^i
                    at_z = row * _tanh_prime(f["H"][i])
                    source = f["H"][i - 1] if which == "U" else x[i - 1]
                    total = total + np.outer(source, at_z)
                    row = at_z @ U.T
            return total

        return value

    def y3(p, x, y):
        return forward(spec, p, x)["Y"][3]

    def loss(p, x, y):
        f, tg = forward(spec, p, x), _targets(spec, y)
        return sum(-(tg[t] * np.log(f["Y"][t])).sum() for t in range(1, T + 1))

    prod = r"\Bigl(\prod_{j=i+1}^{t} D^{j} U^{\top}\Bigr) D^{i}"
    assembled = [
        SeedFormula(
            r"\frac{\partial E}{\partial V} = \sum_{t=1}^{T} \frac{\partial E^{t}}{\partial y^{t}} "
            r"\frac{\partial y^{t}}{\partial z^{t}} \frac{\partial z^{t}}{\partial V} "
            r"= \sum_{t=1}^{T} {h^{t}}^{\top} \bigl(y^{t} - \hat{y}^{t}\bigr)",
            "V",
            grad_V,
        ),
        SeedFormula(
            r"\frac{\partial E}{\partial U} = \sum_{t=1}^{T} \sum_{i=1}^{t} {h^{i-1}}^{\top} "
            r"\bigl(y^{t} - \hat{y}^{t}\bigr) V^{\top} " + prod,
            "U",
            path_sum("U"),
        ),
        SeedFormula(
            r"\frac{\partial E}{\partial W} = \sum_{t=1}^{T} \sum_{i=1}^{t} {x^{i}}^{\top} "
            r"\bigl(y^{t} - \hat{y}^{t}\bigr) V^{\top} " + prod,
            "W",
            path_sum("W"),
        ),
    ]
    intro = (
        r"The slides write a row with an overbar: their $\bar{h}^{t\,T}$ is our row $h^{t}$. Their compact sums, "
        r"$\partial E^{t} / \partial U = \sum_{i=1}^{t} \frac{\partial E^{t}}{\partial y^{t}} "
        r"\frac{\partial y^{t}}{\partial h^{t}} \frac{\partial h^{t}}{\partial h^{i}} "
        r"\frac{\partial^{+} h^{i}}{\partial U}$ and the same for $W$, hold with the immediate derivative in the "
        r"last factor: "
        + _immediate(r"the slides'", r"\partial h^{i} / \partial U", r"\partial^{+} h^{i} / \partial U")
        + r" With every Jacobian written out ($D^{j} = \operatorname{diag}(\mathbf{1}^{\top} - h^{j} \odot h^{j})$, "
        r"the product's latest step on the left) and summed over the loss terms, they are:"
    )
    errata = []
    if T >= 3:
        errata.append(
            Erratum(
                r"The slide that unrolls the prediction writes $y^{3} = \operatorname{softmax}(\sigma(x^{3} W + "
                r"\sigma(x^{2} W + \sigma(x^{1} W + h^{0} U) U) V))$: $\sigma$ for $\tanh$, one $U$ missing and $V$ "
                r"inside the outer activation; the network computes",
                SeedFormula(
                    r"y^{3} = \operatorname{softmax}\bigl(\tanh\bigl(x^{3} W + \tanh\bigl(x^{2} W + \tanh(x^{1} W "
                    r"+ h^{0} U) U\bigr) U\bigr) V\bigr).",
                    "yhat:3",
                    y3,
                ),
                r"As written, the expression adds the $1 \times n_y$ row $\sigma(\cdot) V$ to the $1 \times n_h$ "
                r"row $x^{3} W$, which is defined only when $n_y = n_h$, and even then is another function than "
                r"the network's.",
            )
        )
    errata.append(
        Erratum(
            r"Several slides write $E = \sum_t -\bar{y}^{t} \log(\bar{y}^{t})$, one letter for the target and "
            r"the prediction; the loss weights the log of the prediction $y^{t}$ by the target $\hat{y}^{t}$:",
            SeedFormula(r"E = \sum_{t=1}^{T} E^{t}, \qquad E^{t} = -\sum_i \hat{y}^{t}_{i} \log y^{t}_{i}.", "E", loss),
            r"Read with one letter, $-\sum_i y_i \log y_i$ is the entropy of the prediction, smallest at any "
            r"one-hot prediction whatever the target: a network trained on it learns nothing about its targets.",
        )
    )
    return dict(intro=intro, assembled=assembled, errata=errata)


# --- seed 001 ---------------------------------------------------------------------------------------


def _backward001(spec, p, x, y, jacobian: bool = True, fused: bool = True) -> dict:
    """The slides' five gradients by their delta recursion; ``jacobian`` False drops tanh's Jacobian
    (the slides' nabla_{z^{1,t}} L = nabla_{h^{1,t}} L), ``fused`` False their nabla_{z^{2,t}} L = nabla_{h^{2,t}} L."""
    f, tg = forward(spec, p, x), _targets(spec, y)
    T = spec.T
    g = {k: np.zeros_like(p[k]) for k in ("W0", "W11", "W1", "b", "c")}
    dz1_next = np.zeros_like(p["b"])
    for t in range(T, 0, -1):
        dz2 = f["Y"][t] - tg[t] if fused else -tg[t] / f["Y"][t]
        g["W1"] += np.outer(dz2, f["H"][t])
        g["c"] += dz2
        dh1 = p["W1"].T @ dz2 + p["W11"].T @ dz1_next
        dz1 = dh1 * _tanh_prime(f["H"][t]) if jacobian else dh1
        g["W11"] += np.outer(dz1, f["H"][t - 1])
        g["W0"] += np.outer(dz1, x[t - 1])
        g["b"] += dz1
        dz1_next = dz1
    return g


def _seed001(spec) -> dict:
    def grad(name, **how):
        return lambda p, x, y: _backward001(spec, p, x, y, **how)[name]

    nz1, nz2, nh1 = (rf"\nabla_{{{v}}} \mathcal{{L}}" for v in ("z^{1,t}", "z^{2,t}", "h^{1,t}"))
    assembled = [
        SeedFormula(
            rf"{nz2} = h^{{2,t}} - \mathbf{{t}}^{{t}}, \qquad "
            rf"\nabla_{{W^{{1}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} {nz2}\, {{h^{{1,t}}}}^{{\top}}",
            "W1",
            grad("W1"),
        ),
        SeedFormula(rf"\nabla_{{b^{{1}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} {nz2}", "c", grad("c")),
        SeedFormula(
            rf"{nh1} = {{W^{{1}}}}^{{\top}} {nz2} + {{W^{{11}}}}^{{\top}} \nabla_{{z^{{1,t+1}}}} \mathcal{{L}}, "
            rf"\qquad {nz1} = D^{{t}}\, {nh1}",
        ),
        SeedFormula(
            rf"\nabla_{{W^{{11}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} {nz1}\, {{h^{{1,t-1}}}}^{{\top}}",
            "W11",
            grad("W11"),
        ),
        SeedFormula(
            rf"\nabla_{{W^{{0}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} {nz1}\, {{h^{{0,t}}}}^{{\top}}", "W0", grad("W0")
        ),
        SeedFormula(rf"\nabla_{{b^{{0}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} {nz1}", "b", grad("b")),
    ]
    intro = (
        r"The slides give five gradients, their formulas (1) to (5), each a sum over time of the "
        r"gradient at a pre-activation times what the weight multiplies there, as the slides' formula (1) "
        r"says: $\nabla_{W^{l-1}} \mathcal{L} = \sum_t (\nabla_{z^{l,t}} \mathcal{L}) (h^{l-1,t})^{\top}$. "
        r"The slides write a gradient such as $" + nz2 + r"$ as a row ($1 \times n_y$); here it is the column of the "
        r"same entries, so that it has the shape of its value. The second term of $" + nh1 + r"$ is absent at "
        r"$t = T$:"
    )
    errata = [
        Erratum(
            rf"The slides' ${nz1} = {nh1}\, \nabla_{{z^{{1,t}}}} h^{{1,t}} = {nh1}$ drops the Jacobian of $\tanh$, "
            r"which is diagonal, not the identity; with it, entry by entry, the gradient of $W^{0}$ is",
            SeedFormula(  # (38) with the delta written out: where the Jacobian enters, not (38) again
                rf"\nabla_{{W^{{0}}}} \mathcal{{L}} = \sum_{{t=1}}^{{T}} \Bigl({nh1} \odot \bigl(\mathbf{{1}} - "
                r"h^{1,t} \odot h^{1,t}\bigr)\Bigr)\, {h^{0,t}}^{\top}.",
                "W0",
                grad("W0"),
            ),
            r"Without it every gradient of $W^{0}$, $W^{11}$ and $b^{0}$ is wrong: the slides' delta at "
            r"$z^{1,t}$ lacks the factor $1 - (h^{1,t})^2$ entry by entry, so it is too large where the units "
            r"saturate; through the earlier steps the errors mix and compound, and the vanishing of the gradient "
            r"that the lecture explains is missing from its own formula.",
            grad("W0", jacobian=False),
        ),
        Erratum(
            rf"Likewise ${nz2} = \nabla_{{h^{{2,t}}}} \mathcal{{L}}$ holds for $f$ the identity only; "
            r"for softmax with cross-entropy",
            SeedFormula(rf"{nz2} = h^{{2,t}} - \mathbf{{t}}^{{t}}.", "W1", grad("W1")),
            rf"Read as written, ${nz2} = -\mathbf{{t}}^{{t}} \oslash h^{{2,t}}$ is zero on every class the target "
            r"rules out, so the wrong classes are never pushed down, and the right one is pushed by "
            r"$1 / h^{2,t}_i$ instead of $1 - h^{2,t}_i$.",
            grad("W1", fused=False),
        ),
        Erratum(
            r"One slide writes $z^{1} = W^{0} h^{0} + b^{0} + W^{1} h^{1,t-1}$ and ties exploding gradients to "
            r"the eigenvalues of $W^{1}$, the output weights; the recurrent weights are $W^{11}$:",
            SeedFormula(r"z^{1,t} = W^{0} h^{0,t} + W^{11} h^{1,t-1} + b^{0}."),
            r"The eigenvalues of $W^{1}$ ($n_y \times n_h$, not even square when $n_y \ne n_h$) say nothing about "
            r"exploding gradients; the bound of the section on vanishing and exploding gradients is on "
            r"$\| W^{11} \|$.",
        ),
    ]
    return dict(intro=intro, assembled=assembled, errata=errata)


# --- seed 002 ---------------------------------------------------------------------------------------


def _seed002(spec) -> dict:
    T = spec.T

    def grad_V(p, x, y):
        f, tg = forward(spec, p, x), _targets(spec, y)
        return sum(np.outer(f["Y"][t] - tg[t], f["H"][t]) for t in range(1, T + 1))

    def grad_V_last(p, x, y):
        f, tg = forward(spec, p, x), _targets(spec, y)
        return np.outer(f["Y"][T] - tg[T], f["H"][T])

    def paths(which):
        def value(p, x, y):
            f, tg = forward(spec, p, x), _targets(spec, y)
            total = 0.0
            for t in range(1, T + 1):
                col = p["V"].T @ (f["Y"][t] - tg[t])  # dE_t/dh_t
                for k in range(t, 0, -1):
                    at_z = col * _tanh_prime(f["H"][k])
                    source = f["H"][k - 1] if which == "W" else x[k - 1]
                    total = total + np.outer(at_z, source)
                    col = p["W"].T @ at_z
            return total

        return value

    def stacked(p, x, y):
        f = forward(spec, p, x)
        WU = np.hstack([p["W"], p["U"]])
        return np.array([np.tanh(WU @ np.concatenate([f["H"][t - 1], x[t - 1]])) for t in range(1, T + 1)])

    prod = r"\Bigl(\prod_{j=k}^{t-1} D_{j} W^{\top}\Bigr) D_{t} V^{\top} \bigl(\hat{y}_{t} - y_{t}\bigr)"
    assembled = [
        SeedFormula(
            rf"\frac{{\partial E_{{{T}}}}}{{\partial V}} = \frac{{\partial E_{{{T}}}}}{{\partial \hat{{y}}_{{{T}}}}} "
            rf"\frac{{\partial \hat{{y}}_{{{T}}}}}{{\partial z_{{{T}}}}} \frac{{\partial z_{{{T}}}}}{{\partial V}} "
            rf"= \bigl(\hat{{y}}_{{{T}}} - y_{{{T}}}\bigr) \otimes h_{{{T}}}",
            "V_last",
            grad_V_last,
        ),
        SeedFormula(
            r"\frac{\partial E}{\partial V} = \sum_{t} \frac{\partial E_{t}}{\partial V} "
            r"= \sum_{t=1}^{T} \bigl(\hat{y}_{t} - y_{t}\bigr) h_{t}^{\top}",
            "V",
            grad_V,
        ),
        SeedFormula(
            r"\frac{\partial E}{\partial W} = \sum_{t=1}^{T} \sum_{k=1}^{t} "
            r"\Bigl(\frac{\partial E_{t}}{\partial \hat{y}_{t}} \frac{\partial \hat{y}_{t}}{\partial h_{t}}\Bigr) "
            r"\Bigl(\frac{\partial h_{t}}{\partial h_{k}} \frac{\partial^{+} h_{k}}{\partial W}\Bigr) "
            rf"= \sum_{{t=1}}^{{T}} \sum_{{k=1}}^{{t}} {prod}\, h_{{k-1}}^{{\top}}",
            "W",
            paths("W"),
        ),
        SeedFormula(
            rf"\frac{{\partial E}}{{\partial U}} = \sum_{{t=1}}^{{T}} \sum_{{k=1}}^{{t}} {prod}\, x_{{k}}^{{\top}}",
            "U",
            paths("U"),
        ),
        SeedFormula(
            r"h_{t} = \tanh\Bigl(\begin{bmatrix} W & U \end{bmatrix} \begin{bmatrix} h_{t-1} \\ x_{t} "
            r"\end{bmatrix}\Bigr)",
            "h",
            stacked,
        ),
    ]
    intro = (
        r"Below are the notes' gradients, with the sum over $k$ written out and $D_{j} = \operatorname{diag}("
        r"\mathbf{1} - h_{j} \odot h_{j})$ (a column gradient: the product's earliest step on the left), and the "
        r"stacked form of the step, one matrix on $[h_{t-1}; x_{t}]$. "
        + _immediate(r"The notes'", r"\partial h_{k} / \partial W", r"\partial^{+} h_{k} / \partial W")
        + r" Here it carries the plus:"
    )
    errata = [
        Erratum(
            r"The notes write $y_{t} = \operatorname{softmax}(V h_{t})$ and then $E_{t}(y_{t}, \hat{y}_{t}) = "
            r"-y_{t} \log \hat{y}_{t}$ (their $\ln$) with $y_{t}$ the target; the prediction is",
            SeedFormula(
                r"\hat{y}_{t} = \operatorname{softmax}(V h_{t}).",
                f"yhat:{T}",
                lambda p, x, y: forward(spec, p, x)["Y"][T],
            ),
            r"With one letter for both, $E_{t} = -\sum_i y_{t,i} \log y_{t,i}$ compares the prediction with "
            r"itself: it is the prediction's entropy, whatever the target.",
        ),
        Erratum(
            r"The notes write $\partial E_{3} / \partial V = (\hat{y}_{3} - y_{3}) \otimes h_{3}$ and call it "
            r"an inner product; it is the outer product of $\hat{y}_{3} - y_{3}$ and $h_{3}$:",
            SeedFormula(
                rf"\frac{{\partial E_{{{T}}}}}{{\partial V}} = \bigl(\hat{{y}}_{{{T}}} - y_{{{T}}}\bigr) "
                rf"h_{{{T}}}^{{\top}}.",
                "V_last",
                grad_V_last,
            ),
            r"An inner product would be one number, not a matrix of the shape of $V$ ($n_y \times n_h$).",
        ),
        Erratum(
            r"The sum $\sum_{k=0}^{3}$ of $\partial E_{3} / \partial W$ starts at $k = 0$, where "
            r"$\partial^{+} h_{0} / \partial W = 0$ ($h_{0}$ does not depend on $W$):",
            SeedFormula(
                r"\frac{\partial E_{3}}{\partial W} = \sum_{k=1}^{3} "
                r"\Bigl(\frac{\partial E_{3}}{\partial \hat{y}_{3}} \frac{\partial \hat{y}_{3}}{\partial h_{3}}\Bigr) "
                r"\Bigl(\frac{\partial h_{3}}{\partial h_{k}} \frac{\partial^{+} h_{k}}{\partial W}\Bigr).",
            ),
            r"It costs nothing: the term is zero.",
        ),
    ]
    return dict(intro=intro, assembled=assembled, errata=errata)


# --- seed 003 ---------------------------------------------------------------------------------------


def _seed003(spec) -> dict:
    T = spec.T

    def grad_V(p, x, y):
        f = forward(spec, p, x)
        return np.outer(f["Y"][T] - np.asarray(y), f["H"][T])

    def recursive(which):
        """(yhat - y) . V . g'(z_T) [source + W dH_{T-1}/dp], with dH_t/dp = g'(z_t) [source_t + W dH_{t-1}/dp]
        as three-index arrays J[i, j, k] = dH_{t,i}/dp_{jk}, dH_0/dp = 0."""

        def value(p, x, y):
            f = forward(spec, p, x)
            W = p["W"]
            n_h = W.shape[0]
            shape = p[which].shape
            J = np.zeros((n_h, *shape))
            for t in range(1, T + 1):
                source = f["H"][t - 1] if which == "W" else x[t - 1]
                immediate = np.einsum("ij,k->ijk", np.eye(n_h), source)  # dz_{t,i}/dp_{jk} = delta_ij source_k
                J = _tanh_prime(f["H"][t])[:, None, None] * (immediate + np.einsum("im,mjk->ijk", W, J))
            row = (f["Y"][T] - np.asarray(y)) @ p["V"]
            return np.einsum("i,ijk->jk", row, J)

        return value

    gz = lambda t: rf"\frac{{\partial g(z_{{{t}}})}}{{\partial z_{{{t}}}}}"  # noqa: E731
    assembled = [
        SeedFormula(
            r"\frac{\partial L}{\partial V} = \Bigl(\frac{\partial L}{\partial \hat{y}}\Bigr) \cdot "
            rf"\Bigl(\frac{{\partial \hat{{y}}}}{{\partial V}}\Bigr) = (\hat{{y}} - y) \cdot (H_{{{T}}})",
            "V",
            grad_V,
        ),
        SeedFormula(
            rf"\frac{{\partial H_{{t}}}}{{\partial W}} = {gz('t')} \Bigl[H_{{t-1}} + W "
            r"\Bigl(\frac{\partial H_{t-1}}{\partial W}\Bigr)\Bigr], \qquad \frac{\partial H_{0}}{\partial W} = 0",
        ),
        SeedFormula(
            rf"\frac{{\partial H_{{t}}}}{{\partial U}} = {gz('t')} \Bigl[x_{{t}} + W "
            r"\Bigl(\frac{\partial H_{t-1}}{\partial U}\Bigr)\Bigr], \qquad \frac{\partial H_{0}}{\partial U} = 0",
        ),
        SeedFormula(
            rf"\frac{{\partial L}}{{\partial W}} = (\hat{{y}} - y) \cdot V \cdot {gz(T)} "
            rf"\Bigl[H_{{{T - 1}}} + W \Bigl(\frac{{\partial H_{{{T - 1}}}}}{{\partial W}}\Bigr)\Bigr]",
            "W",
            recursive("W"),
        ),
        SeedFormula(
            rf"\frac{{\partial L}}{{\partial U}} = (\hat{{y}} - y) \cdot V \cdot {gz(T)} "
            rf"\Bigl[x_{{{T}}} + W \Bigl(\frac{{\partial H_{{{T - 1}}}}}{{\partial U}}\Bigr)\Bigr]",
            "U",
            recursive("U"),
        ),
    ]
    intro = (
        r"The slides write the gradients in a recursive form, with $g = \tanh$, $g'(z_{t}) = \mathbf{1} - H_{t} "
        r"\odot H_{t}$ and $\partial g(z_{t}) / \partial z_{t} = \operatorname{diag}(g'(z_{t}))$. Its products "
        r"contract as follows: "
        r"$\partial H_{t} / \partial W$ has three indices, $[H_{t-1} + W\, \partial H_{t-1} / \partial W]$ holds "
        r"$\delta_{ij} H_{t-1,k} + \sum_m W_{im}\, \partial H_{t-1,m} / \partial W_{jk}$, and "
        r"$(\hat{y} - y) \cdot V \cdot g'(z_{t})$ is the row $(\hat{y} - y)^{\top} V \operatorname{diag}(g'(z_{t}))$, "
        r"which sums over $i$ and leaves the shape of $W$. The slides assemble:"
    )
    errata = [
        Erratum(
            # not errors: products written in the order of scalars, which vectors read otherwise
            r"The slides are right for a scalar output; for vectors their products $(\hat{y} - y) \cdot V \cdot "
            rf"g'(z_{{{T}}})$ and $\partial L / \partial V = (\hat{{y}} - y) \cdot (H_{{{T}}})$ read as",
            SeedFormula(
                rf"(\hat{{y}} - y)^{{\top}} V \operatorname{{diag}}\bigl(g'(z_{{{T}}})\bigr), \qquad "
                rf"\frac{{\partial L}}{{\partial V}} = (\hat{{y}} - y)\, H_{{{T}}}^{{\top}}.",
                "V",
                grad_V,
            ),
            r"The first is a row, the second a matrix of the shape of $V$ ($n_y \times n_h$).",
        ),
    ]
    return dict(intro=intro, assembled=assembled, errata=errata)


# --- seed 004 ---------------------------------------------------------------------------------------


def _seed004(spec) -> dict:
    T = spec.T

    def grad_wo(p, x, y):
        f = forward(spec, p, x)
        return np.outer(f["H"][T], f["Y"][T] - np.asarray(y))

    def slide_wo(p, x, y):
        """The slide's dL/dw_o = (yhat - y) / (yhat (1 - yhat)) * sigma (1 - sigma): no O_3."""
        f = forward(spec, p, x)
        s = f["Y"][T]
        return ((s - np.asarray(y)) / (s * (1 - s)) * s * (1 - s)).reshape(p["w_o"].shape)

    def paths(which):
        """sum_j dL/dyhat dyhat/dO_T dO_T/dO_j d+O_j/dw, every factor a number (O_t is a scalar)."""

        def value(p, x, y):
            f = forward(spec, p, x)
            yhat = f["Y"][T]
            top = (yhat - np.asarray(y)) @ p["w_o"].T  # dL/dyhat dyhat/dO_T = (yhat - y) w_o
            total = 0.0
            for j in range(T, 0, -1):
                chain = top
                for m in range(T, j, -1):
                    chain = chain * _tanh_prime(f["H"][m]) @ p["w_h"].T  # dO_m/dO_{m-1}
                source = f["H"][j - 1] if which == "w_h" else x[j - 1]
                total = total + np.outer(source, chain * _tanh_prime(f["H"][j]))  # d+O_j/dw
            return total

        return value

    last = f"O_{{{T}}}"
    chain = (
        rf"\frac{{\partial L}}{{\partial \hat{{y}}}} \times \frac{{\partial \hat{{y}}}}{{\partial {last}}} "
        rf"\times \frac{{\partial {last}}}{{\partial O_{{j}}}} \times \frac{{\partial^{{+}} O_{{j}}}}{{\partial "
    )
    numbers = (
        r"(\hat{y} - y)\, w_{o} \Bigl(\prod_{m=j+1}^{" + str(T) + r"} (1 - O_{m}^{2})\, w_{h}\Bigr) (1 - O_{j}^{2})"
    )
    assembled = [
        SeedFormula(
            r"\frac{\partial L}{\partial \hat{y}} = \frac{-y}{\hat{y}} + \frac{1 - y}{1 - \hat{y}} "
            r"= \frac{\hat{y} - y}{\hat{y}(1 - \hat{y})}, \qquad \frac{\partial \hat{y}}{\partial w_{o}} "
            rf"= \hat{{y}}(1 - \hat{{y}})\, {last}, \qquad "
            rf"\frac{{\partial L}}{{\partial w_{{o}}}} = (\hat{{y}} - y)\, {last}",
            "w_o",
            grad_wo,
        ),
        SeedFormula(
            rf"\frac{{\partial L}}{{\partial w_{{i}}}} = \sum_{{j=1}}^{{{T}}} {chain}w_{{i}}}} "
            rf"= \sum_{{j=1}}^{{{T}}} {numbers}\, x_{{j}}^{{\top}}",
            "w_i",
            paths("w_i"),
        ),
        SeedFormula(
            rf"\frac{{\partial L}}{{\partial w_{{h}}}} = \sum_{{j=1}}^{{{T}}} {chain}w_{{h}}}} "
            rf"= \sum_{{j=1}}^{{{T}}} {numbers}\, O_{{j-1}}",
            "w_h",
            paths("w_h"),
        ),
        SeedFormula(
            r"w \leftarrow w - \eta \frac{\partial L}{\partial w} \quad \text{for each of } w_{o}, w_{i}, w_{h}"
        ),
    ]
    intro = (
        # the parentheses in braces: TeX breaks no line inside a math group
        r"The slides give the gradients and the gradient-descent step with learning rate $\eta$, every factor a "
        r"number: "
        r"$\partial \hat{y} / \partial " + last + r" = \hat{y}{(1 - \hat{y})}\, w_{o}$ and "
        r"$\partial O_{m} / \partial O_{m-1} = {(1 - O_{m}^{2})}\, w_{h}$. "
        + _immediate(r"The slides'", r"\partial O_{j} / \partial w", r"\partial^{+} O_{j} / \partial w")
        + r" Here it carries the plus:"
    )
    errata = [
        Erratum(
            r"The slide's $\partial \hat{y} / \partial w_{o} = \sigma(1 - \sigma)$ drops the factor "
            rf"${last}$ of $\hat{{y}} = \sigma({last} w_{{o}})$:",
            SeedFormula(rf"\frac{{\partial L}}{{\partial w_{{o}}}} = (\hat{{y}} - y)\, {last}.", "w_o", grad_wo),
            rf"With the slide's formula, $\partial L / \partial w_{{o}} = \hat{{y}} - y$, the gradient of $w_{{o}}$ "
            rf"is too large by the factor $1 / |{last}| > 1$ always (${last}$ is a $\tanh$), and the update has "
            rf"the wrong sign whenever ${last} < 0$.",
            slide_wo,
        ),
        Erratum(
            r"The second term of $\partial L / \partial w_{h}$ writes $\frac{\partial \hat{y}}{\partial o_{2}} "
            r"\times \frac{\partial o_{2}}{\partial o_{3}} \times \frac{\partial o_{3}}{\partial w_{h}}$ (the "
            r"slides write $o_{t}$ for $O_{t}$ in their gradients), its steps swapped; the path through $O_{2}$ is",
            SeedFormula(
                r"\frac{\partial L}{\partial \hat{y}} \times \frac{\partial \hat{y}}{\partial O_{3}} \times "
                r"\frac{\partial O_{3}}{\partial O_{2}} \times \frac{\partial^{+} O_{2}}{\partial w_{h}}."
            ),
            r"$O_{2}$ does not depend on $O_{3}$, so read as written the term is zero and $\partial L / \partial "
            r"w_{h}$ loses the path through $O_{2}$.",
        ),
        Erratum(
            r"The slides' table writes $x_{it}$ for word $t$ of sentence $i$; here $x_{t}$ holds step $t$ of all "
            r"three sentences, one row per sentence. Each row is a one-hot row of the three words, so $w_{i}$ is a "
            r"column of three weights, one per word, not a number:",
            SeedFormula(
                r"x_{t} w_{i} = (w_{i})_{k} \quad \text{for the word } k \text{ at step } t, \qquad "
                r"\frac{\partial L}{\partial w_{i}} \text{ is } 3 \times 1."
            ),
            r"Taken as one number, $w_{i}$ would give every word the same weight and the network could not tell "
            r"``cat mat rat'' from ``mat mat cat''; as a column, a step updates only the weights of the words "
            r"the sentence contains.",
        ),
    ]
    return dict(intro=intro, assembled=assembled, errata=errata)


_SEEDS = {"seed-000": _seed000, "seed-001": _seed001, "seed-002": _seed002, "seed-003": _seed003}
_SEEDS["seed-004"] = _seed004


def seed_notes(spec) -> dict | None:
    """The seed's section of the document of ``spec`` (None without a preset): ``intro``, ``assembled``
    (``SeedFormula``) and ``errata`` (``Erratum``)."""
    if spec.preset is None:
        return None
    return _SEEDS[spec.preset](spec)


# --- the check ``rnngen derive --preset`` runs ------------------------------------------------------


def _problem(spec, module, rng) -> tuple:
    """Random parameters (h0 too), one sequence and its targets; a seed of one-hot words at its own sizes."""
    words = PRESETS[spec.preset].words
    n_x, n_h, n_y = words or (3, 4, 3)
    params = {k: rng.normal(scale=0.7, size=v.shape) for k, v in module.init_params(n_x, n_h, n_y).items()}
    x = np.eye(n_x)[rng.integers(0, n_x, spec.T)] if words else rng.normal(size=(spec.T, n_x))
    if spec.output == "softmax":
        y = np.eye(n_y)[rng.integers(0, n_y, spec.T)]
    elif spec.loss == "binary_cross_entropy":
        y = rng.integers(0, 2, n_y).astype(float)
    else:
        y = rng.normal(size=n_y)
    return params, x, y


def deviations(spec, module, numbers: dict, seed: int = 0) -> dict:
    """Equation number -> relative error of each of the seed's formulas that equals a gradient, the loss or a
    prediction of ``module``, evaluated as written at a random point; ``numbers`` are the document's
    (``Build.equations``: ``seed-1``, ``seed-erratum-1``, ...). Empty without a preset."""
    notes = seed_notes(spec)
    if notes is None:
        return {}
    p, x, y = _problem(spec, module, np.random.default_rng(seed))
    E, grads = module.loss_and_grads(p, x, y)
    yhat = module.forward(p, x)["yhat"]
    keyed = [(f"seed-{i}", f) for i, f in enumerate(notes["assembled"], 1)]
    keyed += [(f"seed-erratum-{i}", e.correct) for i, e in enumerate(notes["errata"], 1)]
    out = {}
    for key, f in keyed:
        if f.value is None:
            continue
        if f.of in grads:
            want = grads[f.of]
        elif f.of == "E":
            want = E
        elif f.of.startswith("yhat:"):
            want = yhat[int(f.of[5:]) - 1]
        else:  # the last loss term alone, the stacked form's states: the tests compare them
            continue
        got = np.asarray(f.value(p, x, y), dtype=float).reshape(np.shape(want))
        out[numbers[key]] = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))
    return out
