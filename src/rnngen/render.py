"""The two readings of one derivation: the contexts of the code and document templates.

The document is rendered first; it numbers its equations, and the module
cites those numbers, so code and text cannot drift apart. The formulas both
show are grouped from the optimized program's statements: the equations the
code runs are exactly the numbered final formulas.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, replace
from functools import partial

from sympy import MatrixSymbol, Transpose

from rnngen import __version__, layout, operations, worked
from rnngen import algebra as A
from rnngen.activations import elementwise
from rnngen.backprop import Derivation
from rnngen.cells import cell_of
from rnngen.document import Notation, Numbering, as_written, broken, forward_families, generic, latex_context
from rnngen.emit import render
from rnngen.families import run_of, step_of
from rnngen.figure import context as figure_context
from rnngen.lower import Lowered
from rnngen.network import Block
from rnngen.network_document import network_context, three_forms
from rnngen.printing.math import text
from rnngen.printing.numpy import NumpyPrinter, block_buffers
from rnngen.program import (
    FORWARD_OUTPUTS,
    Program,
    family_of,
    initial_state_adjoint,
    relative,
    state_key,
    step_template,
)
from rnngen.texwidth import width


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


def _steps_note(ts, fmt) -> str:
    if len(ts) == 1:
        return ""
    lo, hi = ts[0], ts[-1]
    if fmt == "latex":
        return rf", \quad t = {lo}, \dots, {hi}" if len(ts) > 2 else rf", \quad t = {lo}, {hi}"
    return f", t = {lo} down to {hi}" if lo > hi else f", t = {lo}..{hi}"


def _runs(forms: list) -> list:
    """``(start, stop, period)`` runs of statements whose per-step forms repeat.

    Period 1: one form for consecutive steps (``h_t = ...``); period 2: two forms that
    alternate (``z_t = ...``, ``h_t = f(z_t)`` when a custom activation keeps z_t), which
    stay one formula so that the code keeps its order. Anything else stands alone.
    """
    runs, i, n = [], 0, len(forms)
    while i < n:
        stop, period = i + 1, 1
        if forms[i] is not None:
            while stop < n and forms[stop] == forms[i]:
                stop += 1
            if stop - i == 1 and i + 3 < n and forms[i + 1] not in (None, forms[i]):
                pair_stop = i
                while pair_stop + 1 < n and forms[pair_stop : pair_stop + 2] == forms[i : i + 2]:
                    pair_stop += 2
                if pair_stop - i >= 4:
                    stop, period = pair_stop, 2
        runs.append((i, stop, period))
        i = stop
    return runs


def _generic_equation(stmt, t0: int, printer) -> str:
    """A statement at a generic step t standing for step ``t0``: its own step is ``t + (its step - t0)``
    (in two forms that alternate, the second may be a step behind the first: ``δh_{t-1}`` after ``δz_t``)."""
    family, t = stmt.step
    lhs = relative(family, t - t0, stmt.target.shape[0])
    return f"{printer(lhs)} = {printer(step_template(stmt.expr, t0))}"


def final_formulas(program: Program) -> list:
    """Group the statements that share a per-step form into numbered formulas."""
    n = Notation(program.derivation.spec)  # the spec's notation and letters
    stmts = program.stmts
    forms = [(s.step[0], step_template(s.expr, s.step[1])) if s.step else None for s in stmts]
    rows = []  # (lhs, rhs, note, text, statements)
    for start, stop, period in _runs(forms):
        group = stmts[start:stop]
        if stop - start > 1:
            ts = [s.step[1] for s in group[::period]]
            t0 = group[0].step[1]
            tex = r", \qquad ".join(_generic_equation(group[k], t0, n.latex) for k in range(period))
            txt = ";  ".join(_generic_equation(group[k], t0, n.text) for k in range(period))
            rows.append((*tex.split(" = ", 1), _steps_note(ts, "latex"), txt + _steps_note(ts, "text"), group))
        else:
            s = group[0]
            rows.append((n.latex(s.target), n.latex(s.expr), "", f"{n.text(s.target)} = {n.text(s.expr)}", group))
    column = max((width(lhs) for lhs, *_ in rows), default=0.0)  # one align: its widest left side
    # each in rows that fit the page (document.broken), measured from where every right side starts
    return [Formula(f"final-{i}", broken(*row[:3], column), *row[3:]) for i, row in enumerate(rows)]


# --- the module -----------------------------------------------------------------------


@dataclass(frozen=True)
class SizeSource:
    """Where the module reads a size: axis ``axis`` of the array ``array`` (a parameter, or ``x`` for
    B), less the sizes ``minus``.

    A size only blocks have (n_x of seed 002's stacked matrix) is what its matrix's width leaves
    after the other blocks (``W.shape[1] - W.shape[0]``): n_x is read from the parameters, because
    the inputs may be token ids, which have no n_x axis.
    """

    array: str
    axis: int
    minus: tuple = ()


def _size_sources(params: dict, sizes) -> dict:
    """Size name -> ``SizeSource``: ``B`` from ``x``, every other size from the first parameter that
    has it as a whole dimension, else from a dimension it is a block of."""
    sources = {"B": SizeSource("x", 1)}
    for size in sizes:
        found = next(((name, p) for name, p in params.items() if size in p.shape), None)
        if found is not None:
            name, p = found
            sources[str(size)] = SizeSource(name, list(p.shape).index(size))
    for size in sizes:
        if str(size) in sources:
            continue
        name, axis, dim = next(
            (name, axis, d) for name, p in params.items() for axis, d in enumerate(p.shape) if size in d.free_symbols
        )
        sources[str(size)] = SizeSource(name, axis, tuple(str(s) for s in dim.args if s != size))
    return sources


def _read_size(sources: dict, size: str, array=lambda name: name) -> str:
    """The code that reads ``size`` (a key of ``sources``), each array spelled by ``array``: by its name
    (``W.shape[1] - W.shape[0]``) or as an item of ``_prepare``'s list (``arrays[0].shape[1] - ...``)."""
    s = sources[size]
    return " - ".join([f"{array(s.array)}.shape[{s.axis}]", *(_read_size(sources, m, array) for m in s.minus)])


def _size_from(sources: dict, size: str) -> str:
    """Where a size comes from, for an error message: ``n_x from params['U']``."""
    return f"{size} from params[{sources[size].array!r}]"


def _id_weights(lowered: Lowered) -> str | None:
    """What token ids pick, for the docstring: ``the columns of U`` (``the rows of U`` in row
    notation, where U is stored transposed; a block in the stacked ones); None if ids are not taken."""
    names, axis = [], "columns"
    for op in operations.flat(op for w in lowered.writes for op in w.ops):
        if isinstance(op, operations.Lookup):  # one weight, or the gates' weights in one product
            for param in op.param.params if isinstance(op.param, operations.Stack) else (op.param,):
                if isinstance(param, Transpose):  # the stored array is the column-math matrix transposed
                    param, axis = param.arg, "rows"
                name = f"{param.name} (a block of {param.param})" if isinstance(param, Block) else param.name
                names += [name] if name not in names else []
    listed = " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"the {axis} of {listed}" if names else None


def _block_views(network) -> dict:
    """Name -> code of each parameter block the module reads: ``V_f`` -> ``V[:, :n_h]``."""
    views = {}
    for p in network.params.values():
        for i, part in enumerate(p.parts):
            block = p.block(part)
            start = "" if i == 0 else _size_code(block.offset)
            stop = "" if i == len(p.parts) - 1 else _size_code(block.offset + block.width)
            cut = layout.slice_code(start, stop)
            views[block.name] = f"{p.name}[{cut}]" if block.axis == 0 else f"{p.name}[:, {cut}]"
    return views


def _size_code(expr) -> str:
    """A sum of sizes as code (``n_h + n_x``; ``2 * n_h`` for a size twice)."""
    return str(expr).replace("*", " * ")


def _shape(dims) -> str:
    """The code of a shape: ``(T, B, n_h)``, ``(n_h,)``."""
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _prologue(lines, sources: dict, views: dict | None = None) -> list:
    """Definitions of the parameter blocks and the sizes the lines use, in a fixed order."""
    text = "\n".join(lines)
    blocks = [f"{name} = {code}" for name, code in (views or {}).items() if re.search(rf"\b{name}\b", text)]
    used = set(re.findall(r"\b(B|n_\w+)\b", "\n".join([text, *blocks])))
    return [f"{name} = {src}" for name, src in sources.items() if name in used] + blocks


def _network_text(derivation: Derivation) -> list:
    """The network at a generic step, in plain text, for the module's docstring."""
    spec = derivation.spec
    n = Notation(spec)
    show = n.text
    graph = derivation.graph
    lines = [generic(n, graph.nodes, f, spec.T, show) for f in forward_families(graph)]
    loss = spec.loss_rule.text
    if spec.mapping == "many-to-one":
        lines.append(f"E = E_{spec.T} = {loss.replace('_t', '_' + str(spec.T))}  (many-to-one: the last step only)")
    else:
        weight = "m_t " if spec.masked_losses else ""
        lines.append(f"E = sum_{{t={spec.loss_steps[0]}..{spec.T}}} {weight}E_t,  E_t = {loss}")
    if n.gated:  # the letters differ from the arrays' names there (families.GATED_LETTERS)
        lines.append("s_t: the output pre-activation, forward()'s \"o\" (o stays the LSTM's output gate)")
    if spec.masked:
        lines.append("m_t: each sequence's mask at step t, 1 on a real step, 0 on a padded one (1 m_t: down the rows)")
        lines.append("h̄_t: the cell's new state, which a padded step does not take")
    if spec.reads_last_real and spec.bidirectional:
        lines.append("ȟ_t: the backward chain's state at the latest real step up to t (the loss reads ȟ_T)")
    for chain in graph.network.chains:
        start = spec.T + 1 if chain.reverse else 0
        for base, p in chain.initials:
            initial = next(node for node in graph.nodes if node.family == state_key(chain, base) and node.t == start)
            lines.append(f"{n.text(initial.symbol)} = {p.name} (a parameter, zeros by default)")
    for chain in graph.network.chains:  # the arrays of the parameters the math writes otherwise (U¹ is U1)
        params = {p.name: p for p in chain.params.values() if p.role != "initial"}.values()
        pairs = [(text(p.symbol()), p.name) for p in params if text(p.symbol()) != p.name]
        if pairs:
            maths, names = zip(*pairs)
            lines.append(f"{', '.join(maths)}: the parameters {', '.join(names)}")
    return lines


#: What the module's ``targets`` argument holds, per kind of loss; ``{one}``/``{many}`` are the shapes.
_TARGET_DOCS = {
    "classes": "class indices {one} / {many}, or one-hot rows {one_n} / {many_n}",
    "probabilities": "probabilities in [0, 1], {one_n} / {many_n}",
    "values": "real values, {one_n} / {many_n}",
}


def target_steps(spec) -> str | None:
    """The code of how many steps the targets cover (``T``, ``T - 2`` with a delay), or None for one
    target per sequence (many-to-one: no step axis)."""
    if spec.mapping == "many-to-one":
        return None
    return f"T - {spec.delay}" if spec.delay else "T"


def _target_doc(spec) -> str:
    steps = target_steps(spec)
    one, many = ("()", "(B,)") if steps is None else (f"({steps},)", f"({steps}, B)")
    with_n = lambda shape: shape.rstrip(",)") + (", n_y)" if shape != "()" else "n_y,)")  # noqa: E731
    return _TARGET_DOCS[spec.loss_rule.targets].format(one=one, many=many, one_n=with_n(one), many_n=with_n(many))


def _without_loss(write, loss):
    """The write of ``loss`` without the assignment of its value: what ``loss_and_grads`` runs of it when the
    output delta's write computes the loss too (``lower.loss_with_delta``); views it names stay."""
    kept = tuple(op for op in write.ops if not (isinstance(op, operations.Assign) and op.dest == loss))
    return replace(write, ops=kept)


def module_context(derivation: Derivation, lowered: Lowered, formulas: list, numbers: dict) -> dict:
    program = lowered.program
    spec = derivation.spec
    T = spec.T
    storage, class_targets = lowered.storage, lowered.class_targets
    printer = NumpyPrinter.of(lowered)
    writes = {w.stmt.target: w for w in lowered.writes}  # one writer per target
    params = derivation.graph.params
    net = derivation.graph.network
    sources = _size_sources(params, net.sizes)
    size_codes = {size: _read_size(sources, size) for size in sources}
    in_arrays = lambda name: f"arrays[{list(params).index(name)}]"  # noqa: E731 (_prepare's list)
    views = _block_views(net)
    sections = {"forward": [], "loss": [], "backward": [], "grads_loss": []}
    for formula in formulas:
        section = formula.stmts[0].section
        if formula.trivial:
            head = [f"# {text(formula.stmts[0].target)}: the given vector, for every sequence"]
        else:
            head = layout.comment(f"({numbers[formula.key]}) {formula.text}")
        body = {s.target: printer.write(writes[s.target]) for s in formula.stmts}
        sections[section].extend(head + [line for lines in body.values() for line in lines])
        if section == "loss":  # loss_and_grads runs these too, but not the loss its output delta computes
            grads = dict(body)
            loss = lowered.fused_loss
            if loss in grads:
                fused = "# computed with the output delta below, which reads the same probabilities"
                grads[loss] = printer.write(_without_loss(writes[loss], loss)) + [fused]
            sections["grads_loss"].extend(head + [line for lines in grads.values() for line in lines])
    # Each function defines the sizes its own lines use, nothing more.
    sections["forward"] = _prologue(sections["forward"], size_codes, views) + sections["forward"]
    sections["loss_prologue"] = _prologue(sections["loss"], size_codes, views)
    sections["grads_prologue"] = _prologue(sections["grads_loss"] + sections["backward"], size_codes, views)
    states = [state_key(c) for c in net.top]

    written_forward = []
    for s in program.section("forward"):
        fam = step_of(s.target) or run_of(s.target)
        if fam and fam[0] not in written_forward:
            written_forward.append(fam[0])
    read_later = {c[0] for s in program.stmts if s.section != "forward" for c in s.reads}
    carried = [f for f in written_forward if f in read_later or f in FORWARD_OUTPUTS or f in states]
    # The sizes the buffers' shapes name, read from the parameters by the caller of _buffers.
    size_names = [str(s) for s in net.sizes]
    buffer_sizes = [n for n in size_names if re.search(rf"\b{n}\b", " ".join(map(", ".join, lowered.buffers.values())))]
    # An output that is another output's array (yhat = o for an identity output layer) is copied, so
    # that the caller's arrays do not alias; every other output is already an array of its own.
    aliases = {family_of(s.target) for s in program.section("forward") if _same_array(s.expr) in FORWARD_OUTPUTS}
    forward_outputs = []
    for fam in FORWARD_OUTPUTS:
        if fam == "h":  # the states the output layer reads, side by side for a bidirectional layer
            codes = [_all_steps(storage, key, T) for key in states]
            code = codes[0] if len(codes) == 1 else f"np.concatenate(({', '.join(codes)}), axis=-1)"
            forward_outputs.append(("h", code))
            continue
        st = storage[fam]
        if spec.mapping == "many-to-one":  # the last step only: (B, n)
            code = f"{fam}[{T - st.first}]" if st.steps else fam
        else:  # the steps that have a loss: all, or d + 1..T with a delay
            code = _all_steps(storage, fam, T, spec.loss_steps[0])
        forward_outputs.append((fam, code + ".copy()" if fam in aliases else code))
    # Each chain's initial state: its parameter, the code of its final state and of the state's adjoint.
    initial = []
    for chain in net.chains:
        start, last = chain.steps(T)
        for base, p in chain.initials:
            final = _step_code(storage, state_key(chain, base), last)
            adjoint = _step_code(storage, initial_state_adjoint(chain, base), start)
            initial.append((p.name, list(params).index(p.name), final, adjoint))
            if state_key(chain, base) not in carried:  # the final state goes back to the caller
                carried.append(state_key(chain, base))
    weights = [name for name, p in net.params.items() if not p.is_vector]
    layers = [str(s) for s in net.sizes[1:-1]]
    hidden = ['"n_x": n_x', *(f'"{s}": hidden[{i}]' for i, s in enumerate(layers)), '"n_y": n_y']
    # the dtype every array is computed in: the parameters', which _prepare gives the dtype of float xs
    dtype = f"{next(iter(params))}.dtype"
    sizes = [dtype] + [size_codes[n] for n in buffer_sizes]
    members = {m for b in lowered.blocks for m in b.members}  # views of their block (side_by_side)
    calls = _call_lines(net, carried, sizes, spec.input_grad, weights, hidden, dtype if spec.masked else None)
    return dict(
        **_common(spec),
        **calls,
        network=_network_text(derivation),
        sections=sections,
        buffers=[(name, _shape(shape)) for name, shape in lowered.buffers.items() if name not in members],
        block_buffers=block_buffers(lowered),
        step_lists=list(lowered.step_lists.items()),
        row_views=[printer.row_view(*run, n) for run, n in lowered.row_views.items()],
        ones=list(printer.ones.items()),
        rows_product=printer.rows_product,
        buffer_sizes=buffer_sizes,
        forward_outputs=forward_outputs,
        many_to_one=spec.mapping == "many-to-one",
        one_input=spec.mapping == "one-to-many",
        target_steps=target_steps(spec),
        loss_from=spec.loss_steps[0],
        params=list(params),
        hidden_sizes=[str(s) for s in net.sizes[1:-1]],
        input_grad=spec.input_grad,
        masked=spec.masked,
        padding=spec.padding,
        real_in_every_sequence=sorted(spec.real_in_every_sequence.items()),
        initial_states=initial,
        **_state_lines(initial),
        token_ids=lowered.token_ids,
        id_weights=_id_weights(lowered),
        # the sizes only blocks have, read from their parameter once the whole ones are known
        derived_sizes=[(n, _read_size(sources, n, in_arrays), s.array) for n, s in sources.items() if s.minus],
        n_x_of_arrays=_read_size(sources, "n_x", in_arrays),
        n_x_from=_size_from(sources, "n_x"),
        n_y_from=_size_from(sources, "n_y"),
        dtype=dtype,
        compound_dims=any(p.blocks for p in net.params.values()),
        row=spec.row,
        stacked=spec.stacked,
        n_out=size_codes["n_y"],
        targets=spec.loss_rule.targets,
        target_doc=_target_doc(spec),
        normalized_targets=bool(spec.fused and spec.fused.normalized_targets),
        # a masked loss's targets, checked on real steps only
        masked_targets=spec.masked_losses and bool(spec.fused and spec.fused.normalized_targets),
        class_targets=class_targets,
        fan_in=0 if spec.row else 1,
        weights=[name for name, p in net.params.items() if not p.is_vector],
        helpers=[source for _, source in sorted(printer.helpers.items())],
        spec_items=[(k, py_literal(v)) for k, v in spec.as_dict().items()],
        param_shapes=[(name, py_literal(_dims(p))) for name, p in net.params.items()],
    )


def _call_lines(
    net, carried: list, size_codes: list, input_grad: bool, weights: list, hidden: list, masked: str | None = None
) -> dict:
    """The lines that hand the parameters and the forward values from function to function.

    On one line each where they fit; a network of many chains passes its parameters as one
    list, unpacked chain by chain, so that no line outgrows the formatter's length. A masked
    module (``masked``: the code of the dtype it computes in) hands its mask ``m`` (T, B, 1), its
    complement ``pad`` (booleans) and ``padded`` (whether a step has a padded sequence) on beside
    ``x``; any other refuses a mask in one line.
    """
    names = list(net.params)  # chain by chain, then the output layer's: one group each
    groups = [list(dict.fromkeys(p.name for p in chain.params.values())) for chain in net.chains]
    groups.append([n for n in names if net.params[n].chain is None])
    whole = f"{', '.join(names)}, x, single = _prepare(params, xs, state)"
    if 4 + len(whole) <= layout.LINE:
        prepare, args, inner = [whole], names, []
    else:
        inner = layout.unpack(names, "p", groups)
        prepare, args = ["*p, x, single = _prepare(params, xs, state)", *inner], ["p"]
    if masked:
        prepare.append(f"m, pad, padded = _mask(mask, lengths, x, single, {masked})")
    else:  # on every call: two comparisons
        prepare += [
            "if mask is not None or lengths is not None:",
            '    raise ValueError("this module takes no mask or lengths; derive one with rnngen derive --mask")',
        ]
    data = ["x", "m", "pad", "padded"] if masked else ["x"]
    if len(", ".join(carried)) <= 70:
        lhs, after = ", ".join(carried), []
    else:
        lhs, after = "fw", layout.unpack(carried, "fw", layout.chunks(carried, 90))
    buffers = f"_new_buffers({', '.join(['x', *size_codes])})"
    if 8 + len(buffers) + len(", ".join([*args, *data])) > layout.LINE:  # its own line, not an argument
        new = layout.bracketed("new = _new_buffers", ["x", *size_codes])
        buffers = "new"
    else:
        new = []
    grads = [f'"{n}": d{n}' for n in names] + (['"x": dxs'] if input_grad else [])
    returns = [f"return {', '.join(carried)}"]
    if 4 + len(returns[0]) > layout.LINE:
        returns = layout.bracketed("return ", carried, collection=True)
    return dict(
        prepare_lines=prepare,
        forward_call=new + layout.bracketed(f"{lhs} = _forward", [*args, *data, buffers]) + after,
        loss_call=layout.bracketed(f"{lhs} = _forward", [*args, *data, "buf"]) + after,
        buffers_call=layout.bracketed("buf = _buffers", ["x", *size_codes]),
        forward_def=layout.bracketed("def _forward", [*args, *data, "buf"], ":", indent=0),
        forward_unpack=inner,
        forward_return=returns,
        grads_lines=layout.bracketed("grads = ", grads, brackets="{}", collection=True),
        weights_lines=layout.bracketed("WEIGHTS = ", [f'"{w}"' for w in weights], indent=0, collection=True),
        sizes_lines=layout.bracketed("sizes = ", hidden, brackets="{}", collection=True),
    )


def _state_lines(initial: list) -> dict:
    """The module's lines that name each chain's initial state, its place, its final state and the
    state's adjoint, one item a line where they do not fit on one (8 layers in two directions)."""
    names = [f'"{name}"' for name, _, _, _ in initial]
    places = [str(at) for _, at, _, _ in initial]
    one = len(initial) == 1  # a tuple of one item keeps its comma

    def constant(head, items):
        return [f"{head}({items[0]},)"] if one else layout.bracketed(head, items, indent=0, collection=True)

    return dict(
        initial_lines=constant("INITIAL_STATES = ", names),
        initial_at_lines=constant("_INITIAL_AT = ", places),
        finals_lines=layout.bracketed(
            "finals = ", [f for _, _, f, _ in initial], indent=8, brackets="[]", collection=True
        ),
        dstates_lines=layout.bracketed(
            "dstates = ", [d for _, _, _, d in initial], indent=8, brackets="[]", collection=True
        ),
    )


def _dims(param) -> tuple:
    """The names of a parameter's dimensions; a blocked one's as the sum of its blocks (``n_h + n_x``)."""
    dims = [str(d) for d in param.stored_shape]
    if param.blocks:
        dims[0 if param.row else 1] = " + ".join(str(width) for _, width in param.blocks)
    return tuple(d for d in dims if d != "1")


def _step_code(storage: dict, key: str, t: int) -> str:
    """Code of step t of a family, as (B, n)."""
    st = storage[key]
    if st.steps:
        return f"{key}[{t - st.first}]"
    if st.count != 1:
        raise ValueError(f"{key} holds {st.count} steps as rows: its step {t} is no view of its own")
    return key


def _all_steps(storage: dict, key: str, T: int, first: int = 1) -> str:
    """Code of steps first..T of a family, as (steps, B, n)."""
    st = storage[key]
    if not st.steps:
        if (st.first, st.count) != (first, T - first + 1):
            raise ValueError(f"{key} holds steps {st.first}..{st.first + st.count - 1} as rows, not {first}..{T}")
        return f"{key}.reshape({'T' if first == 1 else T - first + 1}, x.shape[1], -1)"
    start, stop = first - st.first, 1 - st.first + T
    cut = ("" if start == 0 else str(start)) + ":" + ("" if stop == st.count else str(stop - st.count))
    return key if cut == ":" else f"{key}[{cut}]"


def _same_array(expr) -> str | None:
    """The family whose array the printed statement hands on as it is (a symbol, or the identity
    of one, which the NumPy printer spells as the argument itself); None for a new value."""
    while isinstance(expr, A.Elementwise) and elementwise(expr.fn).is_identity:
        expr = expr.arg
    return family_of(expr) if isinstance(expr, MatrixSymbol) else None


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


def _command_lines(command: str) -> list:
    """The command split into lines of at most 100 characters, continued with backslashes."""
    words, lines = command.split(" "), [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) > 100:
            lines[-1] += " \\"
            lines.append("   ")
        lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    return lines


def _common(spec) -> dict:
    return dict(
        version=__version__,
        name=spec.name,
        T=spec.T,
        hidden=spec.hidden,
        output=spec.output,
        loss_name=spec.loss,
        loss_text=spec.loss_rule.text,
        mapping=spec.mapping,
        notation=spec.notation,
        spec_lines=textwrap.wrap(json.dumps(spec.as_dict(), sort_keys=True), 100, break_on_hyphens=False),
        command_lines=_command_lines(f"rnngen derive {spec.cli_args()}"),
        digest=spec.digest(),
        command=f"rnngen derive {spec.cli_args()}",
        hidden_title="custom" if spec.is_custom else spec.hidden,
        cell_title=cell_of(spec).title.format(hidden="custom" if spec.is_custom else spec.hidden),
        truncate=spec.truncate,
        truncation_rule=spec.truncation_rule,
    )


def _document(template: str, context: dict, numbering: Numbering, handout: bool) -> str:
    """The LaTeX document, or its handout: the same text without the appendix (the formulas the code runs)
    and without the sentences that speak of the code; ``numbering`` numbers its equations as it is rendered.

    The appendix is last, so the handout's equations keep the full document's numbers.
    """
    context = {**context, "eq": numbering.tag, "eq_again": numbering.again, "numbers": numbering.numbers}
    if context.get("worked"):  # the worked example cites the numbering as this rendering fills it
        context["worked"] = {**context["worked"], "numbers": numbering.numbers}
    context["handout"] = handout
    if handout:  # its preamble's command writes the handout
        context["command_lines"] = _command_lines(f"{context['command']} --handout")
    return render(template, **context)


def _handout(template: str, context: dict, numbers: dict) -> str:
    """The handout of the document whose equations ``numbers`` numbered (rendered when it is asked for)."""
    numbering = Numbering()
    handout = _document(template, context, numbering, handout=True)
    if any(numbers[key] != number for key, number in numbering.numbers.items()):
        raise AssertionError("the handout numbers its equations otherwise than the document: the appendix is not last")
    return handout


def render_both(derivation: Derivation, lowered: Lowered) -> tuple:
    """``(module_text, latex_text, numbers, formulas, handout)``, ``handout`` a function that renders the
    handout (most runs never ask for it).

    The document is rendered first: it numbers the equations the module cites.
    """
    formulas = final_formulas(lowered.program)
    common = _common(derivation.spec)
    common["figure"] = figure_context(derivation)
    shown = as_written(derivation)  # the documents' equations: an identity output's o is the prediction
    # its numbers: the numbering of each rendering (_document)
    common["worked"] = worked.latex_context(shown, {}, worked.example_for(derivation.spec))
    numbering = Numbering()  # the full document's, which its context is made with
    if three_forms(derivation.spec):
        template, context = "derivation.tex.jinja", latex_context(shown, formulas, numbering, common)
    else:
        template, context = "network.tex.jinja", network_context(shown, formulas, numbering, common)
    tex = _document(template, context, numbering, handout=False)
    numbers = numbering.numbers
    code = render("module.py.jinja", **module_context(derivation, lowered, formulas, numbers))
    return code, tex, numbers, formulas, partial(_handout, template, context, numbers)
