"""The recurrent cells, as registry entries: each says its parameters and its step equations once.

A cell's ``step`` is written against a small set of operations (``ops``), so one definition serves
every reading of the network: the symbolic graph (``unroll``: nodes of matrix expressions), the
exact scalar oracle (``verify``: SymPy matrices of numbers) and the plain reference loop
(``reference``: NumPy arrays). The operations are:

- ``ops.node(base, value)``: the value becomes the step's quantity ``base`` (``z``, ``h``); the graph
  names it, the others return it as it is;
- ``ops.matmul(weight, v)``, ``ops.add(*terms)`` (``None`` terms are left out),
  ``ops.bias(b)`` (a bias repeated for every sequence; ``None`` when the network has none),
  ``ops.act(key, v)`` (the elementwise activation ``key`` of the registry),
  ``ops.had(a, b)`` (the elementwise product) and ``ops.complement(v)`` (``1 - v``, entry by entry).

A masked network keeps the state on a padded step: ``keep`` is that one rule, ``state + m (new -
state)``, for every cell and every state it carries, written with ``ops.sub(a, b)`` and
``ops.mask(m, v)`` (the mask applied to each sequence's column); the loops that run a cell
(``unroll``, ``reference.run_network``) apply it to each of the step's new states.

A cell may carry several states (the LSTM's ``h`` and its memory cell): ``Cell.states`` names them,
the first is the one the layer above and the output layer read. Its step takes them as a dict and
returns the new ones as a dict.

The gated cells (``lstm``, ``gru``) use the spec's hidden activation where PyTorch uses tanh (the
LSTM's candidate and cell output, the GRU's candidate: Keras's ``activation``); their gates are
sigmoid (Keras's ``recurrent_activation``). A gate's parameters carry its letter after the role's
name (``U_i``, ``W_f``, ``b_hn``), and the chain's suffix follows (``U_i2_f``: layer 2, forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: The gates' activation (Keras's ``recurrent_activation``).
GATE = "sigmoid"


@dataclass(frozen=True)
class Role:
    """One parameter of a cell, per layer and direction.

    Attributes:
        kind: what it is (``input``, ``recurrent``, ``hidden_bias``, ``initial``).
        rows, cols: its shape in column math, in terms of ``"hidden"`` (the layer's size) and
            ``"input"`` (what the layer reads); ``cols`` is 1 for a vector.
        gate: the gate it belongs to (``i``, ``hn``), "" for an Elman cell's.
        state: for an initial state, the state family it starts (``h``, ``cell``).
    """

    kind: str
    rows: str
    cols: str
    gate: str = ""
    state: str = "h"

    @property
    def name(self) -> str:
        """Its key among a chain's parameters and a step's weights: ``input``, ``input_i``, ``initial_cell``."""
        if self.kind == "initial":
            return "initial" if self.state == "h" else f"initial_{self.state}"
        return self.kind + (f"_{self.gate}" if self.gate else "")


@dataclass(frozen=True)
class Cell:
    """A recurrent cell.

    Attributes:
        name: its registry key (``--cell``), with the GRU's form (``gru_resetbefore``).
        roles: its parameters, in the order the module lists them.
        states: the quantities carried from step to step, the one the layers above read first
            (``("h",)``; the LSTM's ``("h", "cell")``).
        step: ``step(ops, weights, inputs, state, hidden) -> new states``: ``weights`` maps a role's
            name to its weight (an input weight as one block per input vector), ``inputs`` are the
            vectors the layer reads at this step, ``state`` maps each state to its value at the
            previous step, ``hidden`` is the activation key; it returns each state's new value.
        text: the step in plain text, for help and docstrings.
        title: what the documents' titles call the layers, ``{hidden}`` the activation's name; ""
            for the Elman cell, which they call by its activation alone (``tanh hidden units``).
        carry: ``(state, gate)`` when a gate carries a state over a step with no weight in the way
            (the LSTM's ``c_t = f_t ∘ c_{t-1} + ...``, the GRU's ``h_t = ... + z_t ∘ h_{t-1}``): that
            path's Jacobian is ``diag(gate_t)``; None for the Elman cell, whose every path crosses W.
    """

    name: str
    roles: tuple
    states: tuple
    step: Callable
    text: str
    title: str = ""
    carry: tuple | None = None

    @property
    def state(self) -> str:
        """The state the layers above and the output layer read (``h``)."""
        return self.states[0]

    @property
    def gated(self) -> bool:
        return any(r.gate for r in self.roles)

    @property
    def gates(self) -> str:
        """Its gates' letters in the order of its weights (the LSTM's ``ifgo``, the GRU's ``rzn``): the gates
        with a pre-activation and a value, each with its recurrent weight (``hn`` names a bias); "" for Elman."""
        return "".join(r.gate for r in self.roles if r.kind == "recurrent")


def _elman_step(ops, weights, inputs, state, hidden):
    terms = [ops.matmul(w, v) for w, v in zip(weights["input"], inputs)]
    terms.append(ops.matmul(weights["recurrent"], state["h"]))
    z = ops.node("z", ops.add(*terms, ops.bias(weights.get("hidden_bias"))))
    return {"h": ops.node("h", ops.act(hidden, z))}


ELMAN = Cell(
    name="elman",
    roles=(
        Role("input", "hidden", "input"),
        Role("recurrent", "hidden", "hidden"),
        Role("hidden_bias", "hidden", "1"),
        Role("initial", "hidden", "1"),
    ),
    states=("h",),
    step=_elman_step,
    text="z_t = U x_t + W h_{t-1} + b, h_t = f(z_t)",
)


def _gate_roles(gates: str, extra_biases: tuple = ()) -> tuple:
    """Every gate's input weights, then its recurrent weights, then its biases (PyTorch's order)."""
    return (
        tuple(Role("input", "hidden", "input", g) for g in gates)
        + tuple(Role("recurrent", "hidden", "hidden", g) for g in gates)
        + tuple(Role("hidden_bias", "hidden", "1", g) for g in (*gates, *extra_biases))
    )


def _input_part(ops, weights, inputs, gate):
    """``U_g x_t + b_g`` (the input weight's blocks times the vectors read; the bias if there is one)."""
    terms = [ops.matmul(w, v) for w, v in zip(weights[f"input_{gate}"], inputs)]
    return ops.add(*terms, ops.bias(weights.get(f"hidden_bias_{gate}")))


def gate_pre(gate: str) -> str:
    """The family base of a gate's pre-activation (``zi``; ``z`` for the Elman cell's, gate "")."""
    return "z" + gate


def gate_value(gate: str) -> str:
    """The family base of a gate's value (``gi``): one rule for the graph, the documents and flow."""
    return "g" + gate


def _gate(ops, weights, inputs, h, gate, act):
    """``act(U_g x_t + W_g h_{t-1} + b_g)``, its pre-activation named ``z<g>``, its value ``g<g>``."""
    recurrent = ops.matmul(weights[f"recurrent_{gate}"], h)
    z = ops.node(gate_pre(gate), ops.add(_input_part(ops, weights, inputs, gate), recurrent))
    return ops.node(gate_value(gate), ops.act(act, z))


def _lstm_step(ops, weights, inputs, state, hidden):
    h, c = state["h"], state["cell"]
    i, f, g, o = (_gate(ops, weights, inputs, h, k, hidden if k == "g" else GATE) for k in "ifgo")
    c_new = ops.node("cell", ops.add(ops.had(f, c), ops.had(i, g)))
    return {"h": ops.node("h", ops.had(o, ops.node("cact", ops.act(hidden, c_new)))), "cell": c_new}


LSTM = Cell(
    name="lstm",
    roles=(*_gate_roles("ifgo"), Role("initial", "hidden", "1"), Role("initial", "hidden", "1", state="cell")),
    states=("h", "cell"),
    step=_lstm_step,
    text=(
        "i_t, f_t, o_t = σ(U_· x_t + W_· h_{t-1} + b_·), g_t = f(U_g x_t + W_g h_{t-1} + b_g), "
        "c_t = f_t ∘ c_{t-1} + i_t ∘ g_t, h_t = o_t ∘ f(c_t)"
    ),
    title="LSTM cells (sigmoid gates; {hidden} candidate and cell output)",
    carry=("cell", "f"),
)


def _gru_step(ops, weights, inputs, state, hidden, after: bool):
    h = state["h"]
    r, z = (_gate(ops, weights, inputs, h, k, GATE) for k in "rz")
    if after:  # PyTorch, cuDNN: the reset gate scales the recurrent product and its bias
        hn = ops.node("zhn", ops.add(ops.matmul(weights["recurrent_n"], h), ops.bias(weights.get("hidden_bias_hn"))))
        zn = ops.add(_input_part(ops, weights, inputs, "n"), ops.had(r, hn))
    else:  # the paper's final form: the reset gate scales the state the product reads
        zn = ops.add(_input_part(ops, weights, inputs, "n"), ops.matmul(weights["recurrent_n"], ops.had(r, h)))
    n = ops.node("gn", ops.act(hidden, ops.node("zn", zn)))
    return {"h": ops.node("h", ops.add(ops.had(ops.complement(z), n), ops.had(z, h)))}


def _gru(after: bool) -> Cell:
    form = "r_t ∘ (W_n h_{t-1} + b_hn)" if after else "W_n (r_t ∘ h_{t-1})"
    return Cell(
        name="gru" if after else "gru_resetbefore",
        roles=(*_gate_roles("rzn", ("hn",) if after else ()), Role("initial", "hidden", "1")),
        states=("h",),
        step=lambda ops, weights, inputs, state, hidden: _gru_step(ops, weights, inputs, state, hidden, after),
        text=(
            "r_t, z_t = σ(U_· x_t + W_· h_{t-1} + b_·), "
            f"n_t = f(U_n x_t + b_n + {form}), h_t = (1 - z_t) ∘ n_t + z_t ∘ h_{{t-1}}"
        ),
        title="GRU cells (sigmoid gates; {hidden} candidate; the reset gate "
        + ("after the recurrent product, as most libraries compute it" if after else "on the state before the product")
        + ")",
        carry=("h", "z"),
    )


GRU, GRU_RESET_BEFORE = _gru(True), _gru(False)

#: What each gate letter of a parameter (``U_i``, ``b_hn``) belongs to, for the documents.
GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "g": "cell candidate",
    "o": "output gate",
    "r": "reset gate",
    "z": "update gate",
    "n": "candidate",
    "hn": "candidate's recurrent part",
}

#: Every cell, by its ``--cell`` name.
CELLS = {cell.name: cell for cell in (ELMAN, LSTM, GRU)}
#: The GRU's two forms, by ``--gru-reset``.
GRU_RESETS = {"after": GRU, "before": GRU_RESET_BEFORE}


def cell_of(spec) -> Cell:
    """The cell a spec's layers run (the GRU in the form ``spec.gru_reset`` says)."""
    return GRU_RESETS[spec.gru_reset] if spec.cell == "gru" else CELLS[spec.cell]


def held_last(ops_at, states: dict, masks: dict, T: int):
    """A chain's state at each sequence's last real step, ``ȟ_T``, where ``ȟ_1 = m_1 ∘ h_1`` and ``ȟ_t =
    keep(ȟ_{t-1}, h_t, m_t)``: the state of the latest real step so far, held over padded ones. What a
    masked many-to-one network's loss reads from a backward chain, which holds its initial state over
    post-padding and so differs at step T (a forward chain's state at T is this already).

    ``ops_at(t)`` gives the operations of step ``t`` (the graph names ``ȟ_t`` for that step),
    ``states`` and ``masks`` map each step 1..T to the chain's state and the step's mask.
    """
    held = None
    for t in range(1, T + 1):
        ops = ops_at(t)
        new = ops.mask(masks[t], states[t]) if held is None else keep(ops, held, states[t], masks[t])
        held = ops.node("hlast", new)
    return held


def keep(ops, state, new, m):
    """The state after a step that may be padded: ``state + m ∘ (new - state)``, ``new`` where the
    mask ``m`` (a 1 x B row of 0 and 1, or one sequence's 0 or 1) is 1, ``state`` where it is 0."""
    return ops.add(state, ops.mask(m, ops.sub(new, state)))
