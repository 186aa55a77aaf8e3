"""The two readings of one derivation: the contexts of the code and document templates.

The document is rendered first; it numbers its equations, and the module
cites those numbers, so code and text cannot drift apart. The formulas both
show are grouped from the optimized program's statements: the equations the
code runs are exactly the numbered final formulas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sympy import MatAdd, MatrixSymbol

from rnngen import __version__
from rnngen import algebra as A
from rnngen.activations import ELEMENTWISE
from rnngen.derive import Derivation
from rnngen.emit import render
from rnngen.printing.math import latex, text
from rnngen.printing.numpy import NumpyPrinter, storage_of
from rnngen.program import FORWARD_OUTPUTS, Program, parse_stacked, relative, step_template
from rnngen.unroll import parse_step

#: Up to this T the document writes every path term in full, like the slides;
#: beyond it, the first terms, an ellipsis and the last (the size stays O(T)).
FULL_PATHS_UP_TO = 6


@dataclass
class Formula:
    """One numbered final formula and the statements that implement it.

    Attributes:
        key: the document's label for it.
        latex: the equation, in LaTeX.
        text: the equation in plain text (for code comments and the CLI).
        stmts: the program statements it covers (several for a per-step formula).
    """

    key: str
    latex: str
    text: str
    stmts: list

    @property
    def trivial(self) -> bool:
        """A statement that only repeats a given vector for every sequence (``h_0``)."""
        s = self.stmts[0]
        return len(self.stmts) == 1 and len(A.symbols_in(s.expr)) == 1 and A.symbols_in(s.expr)[0].shape[1] == 1


def aligned(equation: str) -> str:
    """``a = b`` -> ``a &= b``, for align environments."""
    return equation.replace(" = ", " &= ", 1)


def _steps_note(ts, fmt) -> str:
    if len(ts) == 1:
        return ""
    lo, hi = ts[0], ts[-1]
    if fmt == "latex":
        return rf", \quad t = {lo}, \dots, {hi}" if len(ts) > 2 else rf", \quad t = {lo}, {hi}"
    return f", t = {lo}..{hi}"


def final_formulas(program: Program) -> list:
    """Group consecutive statements that share one per-step form into formulas."""
    groups: list = []
    for s in program.stmts:
        form = (s.step[0], step_template(s.expr, s.step[1])) if s.step else None
        if groups and form is not None and groups[-1][0] == form:
            groups[-1][1].append(s)
        else:
            groups.append((form, [s]))
    formulas = []
    for i, (form, stmts) in enumerate(groups):
        if form is not None and len(stmts) > 1:
            family, template = form
            lhs = relative(family, 0, stmts[0].target.shape[0])
            ts = [s.step[1] for s in stmts]
            tex = f"{latex(lhs)} = {latex(template)}{_steps_note(ts, 'latex')}"
            txt = f"{text(lhs)} = {text(template)}{_steps_note(ts, 'text')}"
        else:
            s = stmts[0]
            tex = f"{latex(s.target)} = {latex(s.expr)}"
            txt = f"{text(s.target)} = {text(s.expr)}"
        formulas.append(Formula(f"final-{i}", aligned(tex), txt, stmts))
    return formulas


class Numbering:
    """Equation numbers handed out in document order; the template calls ``tag(key)``."""

    def __init__(self):
        self.numbers: dict = {}

    def tag(self, key: str) -> str:
        if key in self.numbers:
            raise ValueError(f"equation {key!r} is numbered twice")
        self.numbers[key] = len(self.numbers) + 1
        return rf"\tag{{{self.numbers[key]}}}"


# --- the document -------------------------------------------------------------------


def _jacobian_chain(t: int, k: int, var: str) -> str:
    """``dE_t/dyhat_t dyhat_t/dh_t dh_t/dh_{t-1} ... d+h_k/dvar`` in fraction notation."""
    parts = [
        rf"\frac{{\partial E_{{{t}}}}}{{\partial \hat{{y}}_{{{t}}}}}",
        rf"\frac{{\partial \hat{{y}}_{{{t}}}}}{{\partial h_{{{t}}}}}",
    ]
    if t - k > 3 and t > FULL_PATHS_UP_TO:
        parts.append(rf"\Bigl(\prod_{{j={k + 1}}}^{{{t}}} \frac{{\partial h_{{j}}}}{{\partial h_{{j-1}}}}\Bigr)")
    else:
        parts += [rf"\frac{{\partial h_{{{j}}}}}{{\partial h_{{{j - 1}}}}}" for j in range(t, k, -1)]
    parts.append(rf"\frac{{\partial^{{+}} h_{{{k}}}}}{{\partial {var}}}")
    return " ".join(parts)


def path_terms(T: int, var: str) -> list:
    """The T path terms of dE_T/dvar, newest first; elided in the middle for large T."""
    ks = list(range(T, 0, -1))
    if T > FULL_PATHS_UP_TO:
        ks = ks[:2] + [None] + ks[-1:]
    return [r"\cdots" if k is None else _jacobian_chain(T, k, var) for k in ks]


def _node(nodes, family: str, t: int):
    return next(n for n in nodes if n.family == family and n.t == t)


def _generic(nodes, family: str, t: int) -> str:
    """The derivation's own equation for ``family`` at step ``t``, written for a generic step t."""
    node = _node(nodes, family, t)
    lhs = relative(family, 0, node.symbol.shape[0])
    return f"{latex(lhs)} = {latex(step_template(node.expr, t))}"


def _at(nodes, family: str, t: int) -> str:
    """The derivation's own equation for ``family`` at step ``t``, as it stands."""
    node = _node(nodes, family, t)
    return f"{latex(node.symbol)} = {latex(node.expr)}"


def recursive_form(derivation: Derivation) -> dict:
    """The adjoint equations of the reverse sweep: at a generic step, and at the ends."""
    T = derivation.spec.T
    adj = derivation.adjoints
    form = {
        "dyhat": _generic(adj, "dyhat", T),
        "do": _generic(adj, "do", T),
        "dh": _generic(adj, "dh", T - 1) if T > 1 else None,  # an inner step: both terms
        "dh_last": _at(adj, "dh", T),
        "dz": _generic(adj, "dz", T),
        "dh0": _at(adj, "dh", 0),
    }
    sums = {}
    for name, expr in derivation.gradients.items():
        target = latex(MatrixSymbol("d" + name, 1, 1))
        terms = expr.args if isinstance(expr, MatAdd) and len(expr.args) == T else None
        if terms:
            t0 = parse_step(A.symbols_in(terms[-1])[0].name)[1]
            sums[name] = rf"{target} = \sum_{{t=1}}^{{T}} {latex(step_template(terms[-1], t0))}"
        else:
            sums[name] = f"{target} = {latex(expr)}"
    form["gradients"] = {k: aligned(v) for k, v in sums.items()}
    return {k: aligned(v) if isinstance(v, str) else v for k, v in form.items()}


def latex_context(derivation: Derivation, formulas: list, numbering: Numbering) -> dict:
    spec = derivation.spec
    act = ELEMENTWISE[spec.hidden]
    return dict(
        **_common(spec),
        hidden_latex=act.latex.format("z_t"),
        hidden_derivative=act.derivative_latex.format(out="h_{t}", arg="z_{t}"),
        hidden_derivative_j=act.derivative_latex.format(out="h_{j}", arg="z_{j}"),
        fused_assumes=spec.output_loss.fused_assumes,
        paths_W=path_terms(spec.T, "W"),
        paths_U=path_terms(spec.T, "U"),
        full_paths=spec.T <= FULL_PATHS_UP_TO,
        recursive=recursive_form(derivation),
        formulas=[f for f in formulas if not f.trivial],
        eq=numbering.tag,
    )


# --- the module -----------------------------------------------------------------------

_SIZE_SOURCES = {"B": "x.shape[1]", "n_x": "U.shape[1]", "n_h": "W.shape[0]", "n_y": "V.shape[0]"}


def _prologue(lines) -> list:
    """Definitions of the sizes the lines use, in a fixed order."""
    used = set(re.findall(r"\b(B|n_x|n_h|n_y)\b", "\n".join(lines)))
    return [f"{name} = {src}" for name, src in _SIZE_SOURCES.items() if name in used]


def _count(n: int, T: int) -> str:
    return "T + 1" if n == T + 1 else "T" if n == T else str(n)


def module_context(derivation: Derivation, program: Program, formulas: list, numbers: dict) -> dict:
    spec = derivation.spec
    T = spec.T
    storage = storage_of(program)
    printer = NumpyPrinter(storage, T)
    sections = {"forward": [], "loss": [], "backward": []}
    allocated = set()
    for formula in formulas:
        lines = sections[formula.stmts[0].section]
        if formula.trivial:
            lines.append(f"# {text(formula.stmts[0].target)}: the given vector, for every sequence")
        else:
            lines.append(f"# ({numbers[formula.key]}) {formula.text}")
        for s in formula.stmts:
            step = parse_step(s.target.name)
            if step and step[0] not in allocated:
                allocated.add(step[0])
                rows = s.target.shape[0]
                count = _count(storage[step[0]].count, T)
                lines.append(f"{step[0]} = np.empty(({count}, B, {rows}), dtype=x.dtype)")
            lines.append(printer.statement(s))
    # Each function defines the sizes its own lines use, nothing more.
    sections["forward"] = _prologue(sections["forward"]) + sections["forward"]
    sections["loss_prologue"] = _prologue(sections["loss"])
    sections["grads_prologue"] = _prologue(sections["loss"] + sections["backward"])

    written_forward = []
    for s in program.section("forward"):
        fam = parse_step(s.target.name) or parse_stacked(s.target.name)
        if fam and fam[0] not in written_forward:
            written_forward.append(fam[0])
    read_later = {c[0] for s in program.stmts if s.section != "forward" for c in s.reads}
    carried = [f for f in written_forward if f in read_later or f in FORWARD_OUTPUTS]
    forward_outputs = []
    for fam in FORWARD_OUTPUTS:
        st = storage[fam]
        if st.steps:
            code = fam if st.first == 1 else f"{fam}[{1 - st.first}:]"
        else:
            code = f"{fam}.reshape(T, x.shape[1], -1)"
        forward_outputs.append((fam, code))
    params = list(derivation.graph.params)
    return dict(
        **_common(spec),
        sections=sections,
        carried=", ".join(carried),
        forward_outputs=forward_outputs,
        params=params,
        spec_literal=py_literal(spec.as_dict()),
        param_shapes=[
            (n, py_literal(tuple(str(d) for d in p.shape if d != 1))) for n, p in derivation.graph.params.items()
        ],
    )


def py_literal(value) -> str:
    """A Python literal the way the formatter writes it (double quotes), for dicts of str, int, bool, tuple."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(py_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    raise TypeError(f"no literal for {type(value).__name__}")


def _common(spec) -> dict:
    return dict(
        version=__version__,
        name=spec.name,
        T=spec.T,
        hidden=spec.hidden,
        output=spec.output,
        loss_name=spec.loss,
        loss_text=spec.output_loss.text,
        spec_json=json.dumps(spec.as_dict(), sort_keys=True),
        digest=spec.digest(),
        command=f"rnngen derive {spec.cli_args()}",
    )


def render_both(derivation: Derivation, program: Program) -> tuple:
    """``(module_text, latex_text, numbers, formulas)``.

    The document is rendered first: it numbers the equations the module cites.
    """
    formulas = final_formulas(program)
    numbering = Numbering()
    tex = render("derivation.tex.jinja", **latex_context(derivation, formulas, numbering))
    code = render("module.py.jinja", **module_context(derivation, program, formulas, numbering.numbers))
    return code, tex, numbering.numbers, formulas
