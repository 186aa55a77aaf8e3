"""The network a spec describes, as data: its chains (a layer in one direction), parameters and sizes.

``network(spec)`` is the one place that knows how layers, directions and notations name and shape
the parameters; ``unroll``, the oracle, the reference loop, the documents and the module read it.

- A *chain* is one layer in one direction: it reads the input ``x_t`` (layer 1) or the states of
  the layer below at the same step (both of its directions, side by side), and carries its state
  over t = 1..T, or T..1 for the backward chain of a bidirectional layer.
- A *parameter* has a name, a role, the column-math shape, and maybe column *blocks*: a matrix
  that multiplies vectors stacked on top of each other (``V [h^f_t; h^b_t]``, seed 002's
  ``W [h_{t-1}; x_t]``) is one parameter whose column blocks each multiply one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache, partial

import sympy as sp
from sympy import Basic, MatrixSymbol, Transpose
from sympy.core.symbol import Str

from rnngen.cells import cell_of
from rnngen.families import STATE_LETTERS, Family, ParamName, Spelled, chain_suffix


@cache
def size(name: str) -> sp.Symbol:
    """The size symbol ``name`` (``n_x``, ``n_h``, ``n_h2``, ``n_y``)."""
    return sp.Symbol(name, integer=True, positive=True)


n_x, n_h, n_y = size("n_x"), size("n_h"), size("n_y")


def block_name(param: str, part: str) -> str:
    """The code name of a parameter's block: ``V_f`` (the columns of ``V`` that read the forward states)."""
    return f"{param}_{part}"


@dataclass(frozen=True)
class Param:
    """One parameter of the network.

    Attributes:
        name: its key in the module's ``params``.
        role: ``input``, ``recurrent``, ``hidden_bias``, ``initial`` (per chain), ``output``, ``output_bias``.
        rows, cols: its shape in column math (``cols`` is 1 for a vector).
        blocks: ``((part, columns), ...)`` when the matrix multiplies vectors stacked on top of each
            other, one block per vector, in order; empty otherwise.
        row: True when it is a matrix stored transposed (row notation: ``x^t U``).
        chain: ``(layer, direction)`` of the chain it belongs to, None for the output layer's.
        spelling: how mathematics writes it (``U^{(2)}`` for the code's ``U2``); its code name by default.
        gate: the gate of a gated cell it belongs to (``i``, ``hn``), else "".
        state: for an initial state, the state it starts (``h``, the LSTM's ``cell``), else "".
    """

    name: str
    role: str
    rows: sp.Expr
    cols: sp.Expr
    blocks: tuple = ()
    row: bool = False
    chain: tuple | None = None
    spelling: ParamName | None = None
    gate: str = ""
    state: str = ""

    @property
    def written(self) -> ParamName:
        return self.spelling or ParamName.plain(self.name)

    @property
    def is_vector(self) -> bool:
        return self.cols == 1

    @property
    def stored_shape(self) -> tuple:
        """The shape of the array (column math transposed for a row-notation matrix)."""
        return (self.cols, self.rows) if self.row else (self.rows, self.cols)

    def symbol(self) -> MatrixSymbol:
        return Spelled(self.name, *self.stored_shape, *self.written.args())

    def math(self, part: str | None = None):
        """The weight (or one block of it) in column math: the symbol, transposed in row notation."""
        sym = self.block(part) if part is not None else self.symbol()
        return Transpose(sym) if self.row else sym

    def block(self, part: str) -> Block:
        """The stored block of ``part``: the columns of the column-math matrix that multiply it."""
        offset = sum((n for p, n in self.blocks[: self.parts.index(part)]), sp.S.Zero)
        width = dict(self.blocks)[part]
        rows, cols = (width, self.rows) if self.row else (self.rows, width)
        axis = 0 if self.row else 1
        spelling = replace(self.written, part=part).args()
        return Block(block_name(self.name, part), rows, cols, self.name, part, axis, offset, width, *spelling)

    @property
    def parts(self) -> tuple:
        return tuple(p for p, _ in self.blocks)


class Block(Spelled):
    """A block of a parameter: its entries ``offset .. offset + width - 1`` along ``axis`` of the stored array.

    What it is a block of is part of its SymPy arguments: the same name and shape can be a column
    block (column notation) or a row block (row notation) of a square matrix.
    """

    def __new__(cls, name, rows, cols, param, part, axis, offset, width, *spelling):
        cls._check_spelling(spelling)
        args = [sp.sympify(a) for a in (rows, cols, axis, offset, width)]
        name, param, part = (a if isinstance(a, Str) else Str(a) for a in (name, param, part))
        return Basic.__new__(cls, name, args[0], args[1], param, part, *args[2:], *spelling)

    @property
    def shape(self):
        return self.args[1], self.args[2]

    @property
    def param(self) -> str:
        return self.args[3].name

    @property
    def part(self) -> str:
        return self.args[4].name

    @property
    def axis(self) -> int:
        return int(self.args[5])

    @property
    def offset(self) -> sp.Expr:
        return self.args[6]

    @property
    def width(self) -> sp.Expr:
        return self.args[7]


@dataclass(frozen=True)
class Chain:
    """One layer in one direction.

    Attributes:
        layer: 1..L.
        direction: ``""`` (a one-directional layer), ``"f"`` or ``"b"``.
        tag_layer: the layer as family and parameter names carry it (0 in a network of one layer).
        size: its state's size symbol.
        reads: ``"x"``, or the ``(layer, direction)`` of each chain of the layer below, in order.
        params: role -> parameter.
        input_parts: the input weight's block parts, one per vector read (``(None,)``: the whole weight).
        recurrent_part: the recurrent weight's block part when it is a block of one stacked matrix.
    """

    layer: int
    direction: str
    tag_layer: int
    size: sp.Symbol
    reads: tuple
    params: dict = field(hash=False, compare=False)
    input_parts: tuple = (None,)
    recurrent_part: str | None = None

    @property
    def reverse(self) -> bool:
        """True for the backward chain: it runs from step T down to 1, starting at step T + 1."""
        return self.direction == "b"

    def steps(self, T: int) -> tuple:
        """``(start, last)``: the step of the initial state (0, or T + 1 backward) and the chain's last step."""
        return (T + 1, 1) if self.reverse else (0, T)

    @property
    def key(self) -> tuple:
        return (self.layer, self.direction)

    @property
    def initials(self) -> tuple:
        """``(state family base, initial parameter)`` of each state the chain carries, ``h`` first."""
        return tuple((p.state, p) for p in self.params.values() if p.role == "initial")

    @property
    def suffix(self) -> str:
        return chain_suffix(self.tag_layer, self.direction)

    def weights(self, kind: str) -> tuple:
        """The chain's parameters of one kind of role (``input``, ``recurrent``) in the cell's order: the Elman
        cell's one, a gated cell's one per gate (``W_i``, ``W_f``, ...); seed 002's stacked matrix is both."""
        return tuple(dict.fromkeys(p for r, p in self.params.items() if r == kind or r.startswith(kind + "_")))

    def family(self, base: str, kind: str = "value") -> Family:
        """The chain's family of ``base`` (its ``z``, ``h``, ``dz``): one rule for every stage."""
        return Family(base, kind, self.tag_layer, self.direction)


@dataclass(frozen=True)
class Network:
    """The network of a spec: its cell, chains in evaluation order, and every parameter."""

    cell: object
    chains: tuple
    output: Param
    output_bias: Param | None
    layers: int
    directions: tuple

    @property
    def params(self) -> dict:
        """Name -> parameter, in the order the module lists them: chain by chain, then the output layer's."""
        out = {}
        for chain in self.chains:
            for p in chain.params.values():
                out.setdefault(p.name, p)
        out[self.output.name] = self.output
        if self.output_bias is not None:
            out[self.output_bias.name] = self.output_bias
        return out

    @property
    def recurrent_weight(self) -> Param:
        """The first chain's (first) recurrent weight, the one a document takes as its example (its shapes,
        its paths, its worked gradient): the Elman cell's W, a gated cell's W_i, seed 002's stacked matrix."""
        return self.chains[0].weights("recurrent")[0]

    @property
    def top(self) -> tuple:
        """The chains the output layer reads (the top layer's, forward first)."""
        return tuple(c for c in self.chains if c.layer == self.layers)

    @property
    def sizes(self) -> tuple:
        """Every size symbol, in the order ``init_params`` takes them: n_x, the hidden sizes, n_y."""
        hidden = []
        for c in self.chains:
            if c.size not in hidden:
                hidden.append(c.size)
        return (n_x, *hidden, n_y)

    def chain(self, key: tuple) -> Chain:
        return next(c for c in self.chains if c.key == key)


def _initial_name(tag_layer: int, direction: str, letter: str = "h0") -> str:
    """``h0``, ``h0_2``, ``h0_f``, ``h0_2_f`` (``c0_2``): the layer number after an underscore (``h02`` would
    read as h_02)."""
    return letter + (f"_{tag_layer}" if tag_layer else "") + (f"_{direction}" if direction else "")


def _param(role, names: tuple, hidden, in_blocks: tuple, row: bool, chain: tuple, tag: int, d: str) -> Param:
    """The parameter of a cell's ``role`` in one chain (not the stacked notation's matrix).

    Its letter is the user's name for the role (or ``b``), followed by the gate's letter (``U_i``, ``b_hn``),
    then the chain's suffix (``U_i2_f``); an initial state is ``h0``, ``c0`` with the layer after an underscore.
    """
    suffix = chain_suffix(tag, d)
    written = partial(ParamName, layer=tag, direction=d)
    if role.kind == "initial":
        letter = STATE_LETTERS[role.state]  # h0; the LSTM's memory cell's c0
        spelling = written(letter, initial=True)  # written as its state's first step
        name = _initial_name(tag, d, letter + "0")
        return Param(name, "initial", hidden, sp.S.One, chain=chain, spelling=spelling, state=role.state)
    letter = {"input": names[0], "recurrent": names[1], "hidden_bias": "b"}[role.kind]
    letter += f"_{role.gate}" if role.gate else ""
    if role.kind == "hidden_bias":
        return Param(
            letter + suffix, "hidden_bias", hidden, sp.S.One, chain=chain, spelling=written(letter), gate=role.gate
        )
    if role.kind == "recurrent":
        return Param(letter + suffix, "recurrent", hidden, hidden, (), row, chain, written(letter), role.gate)
    blocks = () if len(in_blocks) == 1 else in_blocks
    cols = sum(n for _, n in in_blocks)
    return Param(letter + suffix, "input", hidden, cols, blocks, row, chain, written(letter), role.gate)


def network(spec) -> Network:
    """The network ``spec`` describes."""
    cell = cell_of(spec)
    L = spec.layers
    directions = ("f", "b") if spec.bidirectional else ("",)
    row, stacked_form = spec.row, spec.stacked
    input_name, recurrent_name, output_name = spec.names
    chains = []
    below = None  # (chains of the layer below, their size)
    for layer in range(1, L + 1):
        tag = layer if L > 1 else 0
        hidden = n_h if L == 1 else size(f"n_h{layer}")
        if below is None:
            reads, in_blocks = "x", (("x", n_x),)
        else:
            reads = tuple(c.key for c in below)
            in_blocks = tuple((c.direction or "x", c.size) for c in below)
        for d in directions:
            suffix = chain_suffix(tag, d)
            written = partial(ParamName, layer=tag, direction=d)  # how this chain's parameters are written
            params = {}
            if stacked_form:
                # seed 002: one matrix on [h_{t-1}; x_t], its columns side by side
                w = Param(
                    recurrent_name + suffix,
                    "stacked",
                    hidden,
                    hidden + sum(n for _, n in in_blocks),
                    (("h", hidden),) + in_blocks,
                    row,
                    (layer, d),
                    written(recurrent_name),
                )
                params["input"] = params["recurrent"] = w
                input_parts = tuple(p for p, _ in in_blocks)
            else:
                input_parts = (None,) if len(in_blocks) == 1 else tuple(p for p, _ in in_blocks)
            for role in cell.roles:
                if role.name in params or (role.kind == "hidden_bias" and not spec.hidden_bias):
                    continue
                params[role.name] = _param(role, spec.names, hidden, in_blocks, row, (layer, d), tag, d)
            chains.append(Chain(layer, d, tag, hidden, reads, params, input_parts, "h" if stacked_form else None))
        below = chains[-len(directions) :]
    top_blocks = tuple((c.direction, c.size) for c in below) if len(below) > 1 else ()
    n_top = sum(c.size for c in below)
    output = Param(output_name, "output", n_y, n_top, top_blocks, row, spelling=ParamName(output_name))
    output_bias = Param("c", "output_bias", n_y, sp.S.One, spelling=ParamName("c")) if spec.output_bias else None
    return Network(cell, tuple(chains), output, output_bias, L, directions)
