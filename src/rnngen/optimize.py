"""Rewrite passes: each a pure function from one program to the next.

Every pass keeps the program's value (tests evaluate both sides) and can be
left out to show a plainer program. ``PASSES`` is the default pipeline, in the
order that makes each pass's input what it expects:

1. ``stable_logs``: ``log(softmax(o))`` -> ``log_softmax(o)`` (log-sum-exp), and the like.
2. ``fuse_output_gradient``: the output/loss pair's closed form, e.g.
   ``do = yhat - y`` instead of the dense softmax Jacobian applied to ``-y / yhat``.
3. ``hoist_non_recurrent``: split each step of the recurrence into the part that
   does not depend on the recurrence (``U x_t + b``, ``V^T do_t``) and the rest.
4. ``inline_recurrent_temporaries``: one statement per step of the recurrence.
   ``read_held_states`` (a masked network): a product with a step's mask reads the held state
   ``h_t`` for the cell's new state ``h̄_t`` (equal where the mask is 1), which then has one reader
   and is inlined by a second ``inline_recurrent_temporaries``.
5. ``hoist_local_jacobians``: the factor ``f'(z_t)`` of each backward step, which
   reads only forward values, becomes a family of its own (computed for all
   steps at once by the next pass, so the backward sweep is one GEMM, one add and
   one in-place product per step).
6. ``vectorize_over_time``: a family whose steps do not depend on each other
   becomes one statement over all steps (one GEMM instead of T).
7. ``stack_time_sums``: ``sum_t a_t b_t^T`` -> ``A B^T`` over time-stacked matrices.
8. ``eliminate_dead_code``: drop what no output needs.
9. ``schedule``: a dependency-respecting order, close to the derivation's.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import replace

from sympy import HadamardProduct, MatAdd, MatrixSymbol

from rnngen import algebra as A
from rnngen.cells import CELLS
from rnngen.families import Step, step_name, step_of
from rnngen.program import SECTIONS, Program, family_of, instantiate, stacked, step_template
from rnngen.unroll import candidate


def _step_symbols(expr):
    return [(s, step_of(s)) for s in A.symbols_in(expr) if step_of(s)]


def stable_logs(program: Program) -> Program:
    """Rewrite ``log(yhat)``, ``log(1 - yhat)`` and ``yhat - y`` into forms of ``o`` that cannot overflow,
    take log 0 or lose a confident prediction's digits to a subtraction.

    The output layer's registry entry gives the forms: ``log softmax(o)`` by
    log-sum-exp, ``log sigma(o) = -softplus(-o)``, ``log(1 - sigma(o)) = -softplus(o)``,
    ``sigma(o) - y = (1 - y) sigma(o) - y sigma(-o)``.
    """
    layer = program.derivation.spec.output_layer
    if not (layer.log or layer.log1m or layer.residual):
        return program
    targets = {y.name: y for y in program.derivation.graph.inputs.get("y", ())}
    swap = {}
    for s in program.stmts:
        o = getattr(s.expr, "arg", None)
        if s.step and s.step[0] == "yhat" and o is not None and s.expr == layer.activation(o):
            y = targets.get(step_name("y", s.step[1]))
            if layer.residual and y is not None:  # yhat - y, which a squared error takes
                swap[A.sub(s.target, y)] = layer.residual(s.target, y, o)
            if layer.log:
                swap[A.Elementwise("log", s.target)] = layer.log(o)
            if layer.log1m:
                swap[A.Elementwise("log", A.sub(A.ones(*s.target.shape), s.target))] = layer.log1m(o)
    if not swap:
        return program
    return program.with_stmts(s.with_(expr=A.normalize(s.expr.xreplace(swap))) for s in program.stmts)


def fuse_output_gradient(program: Program) -> Program:
    """Replace the output adjoint ``do_t`` by the output/loss pair's closed form, if it has one
    (times the step's weights, a masked step's ``1 m_t``, which the loss term carries)."""
    fused = program.derivation.spec.fused
    if fused is None:
        return program
    steps = {s.target.name: s.target for s in program.stmts}
    outputs = {s.target.name: s.expr.arg for s in program.stmts if s.step and s.step[0] == "yhat"}  # yhat_t -> o_t
    graph = program.derivation.graph
    inputs = {x.name: x for x in graph.inputs["y"]}

    def rewrite(stmt):
        if not stmt.step or stmt.step[0] != "do":
            return stmt
        t = stmt.step[1]
        yhat = step_name("yhat", t)
        return stmt.with_(expr=graph.weighted(t, fused.grad(steps[yhat], inputs[step_name("y", t)], outputs[yhat])))

    return program.with_stmts(rewrite(s) for s in program.stmts)


def recurrent_families(program: Program) -> set:
    """Families in a dependency cycle that crosses time steps (the sequential part)."""
    return {key for r in program.recurrences for key in r.families}


def hoist_non_recurrent(program: Program) -> Program:
    """Split ``v_t := a_t + r_t`` (``r_t`` reads v's recurrence) into ``pre_v_t := a_t``, ``v_t := pre_v_t + r_t``.

    ``a_t`` may read another recurrence (layer 2's ``U2 h1_t`` reads layer 1's states): that one is
    finished before v's starts, so its part of every step is computed at once, one product.

    A family is split when one of its steps is such a sum; its steps that do
    not read the recurrence at all (``dh_T := V^T do_T``) are hoisted whole,
    so every step of ``pre_v`` has the same form and vectorizes.
    """
    recurrent = {key: r.families for r in program.recurrences for key in r.families}

    def split(stmt):
        """The terms that read nothing of the statement's own recurrence, and the others."""
        terms = stmt.expr.args if isinstance(stmt.expr, MatAdd) else (stmt.expr,)
        cycle = recurrent.get(stmt.step[0], frozenset())
        rec = [any(f in cycle for _, (f, _) in _step_symbols(term)) for term in terms]
        return [x for x, r in zip(terms, rec) if not r], [x for x, r in zip(terms, rec) if r]

    mixed = {
        s.step[0]
        for s in program.stmts
        if s.step and s.step[0] in recurrent and all(split(s)) and isinstance(s.expr, MatAdd)
    }
    out = []
    for s in program.stmts:
        free, rest = split(s) if s.step and s.step[0] in mixed else ([], [])
        if not free:
            out.append(s)
            continue
        fam, t = s.step
        pre = Step.of(s.target.family.pre, t, s.target.shape[0])
        out.append(s.with_(target=pre, expr=A.add(*free), order=s.order - 0.5))
        out.append(s.with_(expr=A.add(pre, *rest)))
    return program.with_stmts(out)


def inline_recurrent_temporaries(program: Program) -> Program:
    """Substitute a step of the recurrence that is read exactly once into its reader, unless the reader is
    a step of its own family (its next one): that would fold the whole recurrence into one expression of
    O(T²) size (a held state ``ȟ_t`` read only by ``ȟ_{t+1}``).

    One sweep in program order (definitions precede uses), so the cost is O(T).
    """
    recurrent = recurrent_families(program)
    uses: dict = defaultdict(int)
    readers: dict = {}  # symbol -> the family of a statement that reads it
    for s in program.stmts:
        for sym in A.symbols_in(s.expr):
            uses[sym] += 1
            readers[sym] = s.step[0] if s.step else None
    inlined: dict = {}  # symbol -> its expression
    out = []
    for s in program.stmts:
        if any(sym in inlined for sym in A.symbols_in(s.expr)):  # flat again: a product inlined into a product
            s = s.with_(expr=A.normalize(s.expr.xreplace(inlined)))
        own = s.step and readers.get(s.target) == s.step[0]
        if s.step and s.step[0] in recurrent and s.step not in program.outputs and uses[s.target] == 1 and not own:
            inlined[s.target] = s.expr
        else:
            out.append(s)
    return program.with_stmts(out)


def read_held_states(program: Program) -> Program:
    """In a product with a step's mask, read the held state ``h_t`` where it reads the cell's new state ``h̄_t``.

    Where ``m_t`` is 1, ``h_t = h̄_t``; where it is 0 the product is 0 whatever it reads (every
    value is finite). The local Jacobian of a masked step, ``(1 m_t) ∘ (1 - h̄_t ∘ h̄_t)``, then reads
    ``h_t``, and ``h̄_t`` is left with one reader, ``h_t``, into which the next pass writes it: the
    module builds the new state in ``h_t``'s own buffer and keeps the old one where the step is
    padded, with no buffer and no copy per step for ``h̄``. Valid for masks of 0 and 1 only, which
    is what a mask is (the module checks it is boolean).
    """
    spec = program.derivation.spec
    if not spec.masked:
        return program
    cell = CELLS[spec.cell]
    new_base = candidate(cell.state)

    def held(e):
        """``e`` with each step of a new state read as the held state of its step, where a factor
        of the product is that step's mask repeated down the rows."""
        steps = {step_of(f.args[-1])[1] for f in e.args if _mask_row(f)}
        swap = {
            sym: Step.of(replace(sym.family, base=cell.state), sym.t, sym.shape[0])
            for sym in A.symbols_in(e)
            if isinstance(sym, Step) and sym.family.base == new_base and sym.t in steps
        }
        return e.xreplace(swap) if swap else e

    def rewrite(expr):
        return expr.replace(lambda e: isinstance(e, HadamardProduct) and any(_mask_row(f) for f in e.args), held)

    # the backward section only: the forward one defines h_t from h̄_t (which must stay what it is)
    return program.with_stmts(s.with_(expr=rewrite(s.expr)) if s.section == "backward" else s for s in program.stmts)


def _mask_row(f) -> bool:
    """True for ``1 m_t``: one step's mask repeated down the rows of a product."""
    return A.is_repeated_row(f) and isinstance(f.args[-1], Step) and f.args[-1].family.base == "m"


def _adjoint_factored(expr, adjoints: set):
    """``a ∘ u + a ∘ v`` -> ``a ∘ (u + v)`` for a factor ``a`` that is a step of an adjoint every term
    shares (the GRU's ``δz_z = (δh ∘ h_{t-1} - δh ∘ n) ∘ σ′_z``), in a product's factors too: what is
    left reads forward values only, a local Jacobian the sweep multiplies by in one call."""
    if isinstance(expr, HadamardProduct):
        return A.had(*[_adjoint_factored(f, adjoints) for f in expr.args])
    if not isinstance(expr, MatAdd):
        return expr
    split = [A.split_coeff(t) for t in expr.args]
    if not all(isinstance(body, HadamardProduct) for _, body in split):
        return expr
    shared = set.intersection(*[{f for f in body.args if family_of(f) in adjoints} for _, body in split])
    if len(shared) != 1:
        return expr
    (a,) = shared
    rest = [A.scale(c, A.had(*[f for f in body.args if f != a])) for c, body in split]
    return A.had(a, A.add(*rest))


def _local_factors(factors: list, forward: set) -> list:
    """The factors that read only forward values (so they can be computed before the sweep starts)."""
    return [f for f in factors if (reads := _step_symbols(f)) and all(g in forward for _, (g, _) in reads)]


def hoist_local_jacobians(program: Program) -> Program:
    """``dz_t := (...) ∘ f'(z_t)`` -> ``fprime_t := f'(z_t)``, ``dz_t := (...) ∘ fprime_t``.

    The hoisted family is the one the adjoint's family names as its local Jacobian (``fprime``
    for ``dz``, ``gprime`` for ``do``): one per recurrence, so two recurrences never write the
    same value. A family that names none keeps its product in the sweep.

    Only the factors of a backward step of the recurrence that read nothing but forward values
    (so they can be computed before the sweep starts), hoisted together: SymPy flattens a
    derivative that is itself a product, such as sigmoid's ``h ∘ (1 - h)``, into the step's
    product, and ``fprime`` must be the whole ``f'``, one product per step in the sweep.
    A factor that is only a stored value (``h_t``) is not worth a family of its own. A sum whose
    terms share one adjoint's step is first written as that step times the sum of the rest
    (``_adjoint_factored``), which then reads forward values only and is hoisted with the rest.

    In a step that is a sum, the one term that is such a product is hoisted the same way (the LSTM's
    ``δc_t = δc_{t+1} ∘ f_{t+1} + δh_t ∘ o_t ∘ (1 - φ_t ∘ φ_t)``: ``∂h_t/∂c_t``, four passes a step
    less); a term that reads an input (a mask's ``1 - m_t``: a delta passed on whole) stays as it is.

    The adjoints of a truncated derivation (``Family.age``) are no recurrence, but every age of a
    step reads the same ``f'(z_t)``: it is hoisted too, once, and computed for all steps at once.
    """
    recurrent = recurrent_families(program)
    inputs = set(program.derivation.graph.inputs)
    # the inputs too: a masked step's (1 m_t) is hoisted with f'(z_t), one product less per step
    forward = {family_of(s.target) for s in program.stmts if s.section == "forward"} | inputs
    adjoints = {family_of(s.target) for s in program.stmts if s.step and s.target.family.is_adjoint}
    out = []
    hoisted_steps = set()  # every age of a truncated derivation reads the same f'(z_t): hoisted once

    def hoist(s, jacobian, product):
        """``(hoisted statement or None, product)``: the product's local factors into ``jacobian``'s step."""
        local = _local_factors(list(product.args), forward)
        if all(isinstance(f, MatrixSymbol) for f in local):
            return None, product
        hoisted = Step.of(jacobian, s.step[1], s.target.shape[0])
        made = None
        if hoisted not in hoisted_steps:
            hoisted_steps.add(hoisted)
            made = s.with_(target=hoisted, expr=A.had(*local), order=s.order - 0.25)
        kept = [hoisted if f is local[0] else f for f in product.args if f is local[0] or f not in local]
        return made, A.had(*kept)

    for s in program.stmts:
        aged = s.step and s.target.family.age is not None
        jacobian = s.target.family.jacobian if s.step and (s.step[0] in recurrent or aged) else None
        if not (s.section == "backward" and jacobian):
            out.append(s)
            continue
        expr = _adjoint_factored(s.expr, adjoints)
        if isinstance(expr, HadamardProduct):
            made, product = hoist(s, jacobian, expr)
            out += [made] if made is not None else []
            out.append(s if made is None and product is expr else s.with_(expr=product))
            continue
        terms = list(expr.args) if isinstance(expr, MatAdd) else []
        products = [
            t
            for t in terms
            if isinstance(t, HadamardProduct)
            and len(_local_factors(list(t.args), forward)) > 1
            and not any(family_of(f) in inputs for f in A.symbols_in(t) if step_of(f))
        ]
        if len(products) != 1:
            out.append(s)
            continue
        made, product = hoist(s, jacobian, products[0])
        out += [made] if made is not None else []
        out.append(s.with_(expr=A.add(*[product if t is products[0] else t for t in terms])))
    return program.with_stmts(out)


def vectorize_over_time(program: Program) -> Program:
    """One statement for each run of consecutive steps of a family whose steps are independent of
    each other and share one form (all its steps, or, one-to-many, steps 2..T that read no input
    beside step 1 that does)."""
    recurrent = recurrent_families(program)
    members = defaultdict(list)
    for s in program.stmts:
        if s.step and s.step[0] not in recurrent:
            members[s.step[0]].append(s)
    merged = {}  # the order of a run's first statement -> the statement of the whole run
    dropped = set()  # the orders of the other statements of a run
    for fam, group in members.items():
        runs: list = []  # [template, [statements]] of consecutive steps with one form
        for s in sorted(group, key=lambda s: s.step[1]):
            template = step_template(s.expr, s.step[1])
            if runs and runs[-1][0] == template and runs[-1][1][-1].step[1] == s.step[1] - 1:
                runs[-1][1].append(s)
            else:
                runs.append([template, [s]])
        for template, run in runs:
            if len(run) < 2:
                continue
            lo, hi = run[0].step[1], run[-1].step[1]
            first = min(run, key=lambda s: s.order)
            target = stacked(fam, lo, hi, first.target.shape[0])
            merged[first.order] = first.with_(target=target, expr=instantiate(template, lo, hi))
            dropped |= {s.order for s in run if s is not first}
    out = [merged.get(s.order, s) for s in program.stmts if s.order not in dropped]
    return program.with_stmts(out)


def stack_time_sums(program: Program) -> Program:
    """``sum_t f(a_t, b_t)`` -> ``f(A, B)`` with the steps stacked side by side.

    Only a sum of at least two steps is stacked, or one that reads a family
    already stored stacked (so no step of it has to be cut out again).
    """
    vectorized = {family_of(s.target) for s in program.stmts if s.is_stacked}

    def stack(expr):
        if isinstance(expr, A.Concat):  # a blocked parameter's gradient: each block's sum on its own
            return A.Concat(expr.axis, *[stack(p) for p in expr.parts])
        terms = expr.args if isinstance(expr, MatAdd) else (expr,)
        groups: dict = {}  # per-step form -> its terms, in order of first appearance
        for i, term in enumerate(terms):
            syms = _step_symbols(term)
            t = syms[0][1][1] if syms else None
            key = step_template(term, t) if syms else i  # a term without steps stands alone
            groups.setdefault(key, []).append((t, term, syms))
        new_terms = []
        for template, items in groups.items():
            if items[0][0] is None:
                new_terms.append(items[0][1])
                continue
            ts = sorted(t for t, _, _ in items)
            contiguous = ts == list(range(ts[0], ts[-1] + 1))
            reads_stacked = any(f in vectorized for _, _, syms in items for _, (f, _) in syms)
            if contiguous and (len(ts) >= 2 or reads_stacked):
                new_terms.append(instantiate(template, ts[0], ts[-1]))
            else:
                new_terms.extend(term for _, term, _ in items)
        return A.add(*new_terms)

    return program.with_stmts(s if s.step or s.is_stacked else s.with_(expr=stack(s.expr)) for s in program.stmts)


def eliminate_dead_code(program: Program) -> Program:
    """Drop statements that no output needs.

    Whatever the statements' order: a pass may leave a statement before one it reads (a family
    vectorized over time stands where its first step stood) until ``schedule`` orders them.
    """
    writer = {cell: i for i, s in enumerate(program.stmts) for cell in s.writes}
    todo = [writer[c] for c in program.outputs if c in writer]
    kept = set(todo)
    while todo:
        for cell in program.stmts[todo.pop()].reads:
            i = writer.get(cell)
            if i is not None and i not in kept:
                kept.add(i)
                todo.append(i)
    return program.with_stmts(s for i, s in enumerate(program.stmts) if i in kept)


def schedule(program: Program) -> Program:
    """Order statements so every cell is written before it is read, staying close to the old order."""
    stmts = list(program.stmts)
    writer = {}
    for i, s in enumerate(stmts):
        for cell in s.writes:
            writer[cell] = i
    deps = {i: {writer[c] for c in s.reads if c in writer} - {i} for i, s in enumerate(stmts)}
    users = defaultdict(set)
    for i, ds in deps.items():
        for d in ds:
            users[d].add(i)

    def key(i):
        return (SECTIONS.index(stmts[i].section), stmts[i].order, i)

    ready = [key(i) for i, ds in deps.items() if not ds]
    heapq.heapify(ready)
    order = []
    while ready:
        *_, i = heapq.heappop(ready)
        order.append(stmts[i])
        for u in users[i]:
            deps[u].discard(i)
            if not deps[u]:
                heapq.heappush(ready, key(u))
    if len(order) != len(stmts):
        raise RuntimeError("the program has a dependency cycle")
    return program.with_stmts(order)


PASSES = (
    stable_logs,
    fuse_output_gradient,
    hoist_non_recurrent,
    inline_recurrent_temporaries,
    read_held_states,
    inline_recurrent_temporaries,
    hoist_local_jacobians,
    vectorize_over_time,
    stack_time_sums,
    eliminate_dead_code,
    schedule,
)


def optimize(program: Program, skip=()) -> Program:
    """Run ``PASSES`` except those named in ``skip`` (``schedule`` always runs)."""
    for p in PASSES:
        if p.__name__ not in skip or p is schedule:
            program = p(program)
    return program
