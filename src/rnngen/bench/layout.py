"""The parameters of a stacked, possibly bidirectional network in column layout, as the baselines read them.

Every contender other than the generated module (the loops, PyTorch, JAX, the
GEMM-only limit) takes one dict of column-layout parameters: per layer and
direction an input weight, a recurrent weight, a hidden bias and an initial
state, then the output weight and bias, under the names the module gives them
with the default matrix names in column notation (``U, W, b, h0, V, c``;
``U1, h0_1, ...``; ``U_f, h0_b, ...``). ``rnngen.network`` names and shapes
them; this module reads it. A bidirectional layer's output is its forward
states followed by its backward ones (PyTorch's order), which is what the
next layer's input weight and the output weight read.

``to_module`` lists how each of the module's own parameters is made from
these: renamed (``--names``), transposed (row notation), or, in the stacked
notation, the recurrent and input weights side by side (``W [h_{t-1}; x_t]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

from rnngen.network import network
from rnngen.spec import DEFAULT_NAMES


@dataclass(frozen=True)
class Cell:
    """One layer in one direction (a chain): where its parameters are and which way it runs.

    Attributes:
        layer: 1 for the layer that reads the inputs.
        reverse: True for a backward chain (from ``h0`` at step T down to step 1).
        keys: ``(role name, kind, key)`` of each parameter, in the order the module lists them: the
            cell's role name (``input``, ``recurrent_f``, ``initial_cell``: ``cells.Role.name``), the
            parameter's kind (``network.Param.role``: ``input``, ``recurrent``, ``hidden_bias``,
            ``initial``) and its key.
    """

    layer: int
    reverse: bool
    keys: tuple  # hashable, so a Cell can key a dict

    def key(self, role: str) -> str | None:
        """The key of the parameter of ``role``, None when the network has none (no hidden bias)."""
        return next((key for name, _, key in self.keys if name == role), None)

    @property
    def U(self) -> str:
        return self.key("input")

    @property
    def W(self) -> str:
        return self.key("recurrent")

    @property
    def b(self) -> str | None:
        return self.key("hidden_bias")

    @property
    def h0(self) -> str:
        return self.key("initial")

    def of(self, kind: str) -> list:
        """The keys of every parameter of a kind (``input``, ``recurrent``, ``hidden_bias``, ``initial``):
        one for an Elman cell, one per gate (or per state) for a gated one, in the module's order."""
        return [key for _, of_kind, key in self.keys if of_kind == kind]

    def steps(self, T: int) -> list:
        """The steps (0-based) in the order the chain visits them."""
        return list(range(T - 1, -1, -1) if self.reverse else range(T))


@dataclass(frozen=True)
class Piece:
    """One of the module's parameters as made from the column-layout ones.

    Attributes:
        name: its key in the module's ``params``.
        parts: the column-layout keys whose matrices stand side by side in it (one, but for
            the stacked notation's ``[W U]``).
        row: True when the module stores it transposed.
    """

    name: str
    parts: tuple
    row: bool


def _column(spec):
    """``spec`` with the default matrix names in column notation: the network the baselines read."""
    return dataclasses.replace(spec, notation="column", names=DEFAULT_NAMES)


def depth(spec) -> tuple:
    """``(layers, directions)`` of ``spec``."""
    return spec.layers, 2 if spec.bidirectional else 1


@cache
def cells(spec) -> tuple:
    """One tuple per layer, bottom up, of its ``Cell``s: the forward chain, then the backward one."""
    rows = {}
    for chain in network(_column(spec)).chains:
        cell = Cell(chain.layer, chain.reverse, tuple((role, p.role, p.name) for role, p in chain.params.items()))
        rows.setdefault(chain.layer, []).append(cell)
    return tuple(tuple(row) for row in rows.values())


def hidden_sizes(spec, n_h) -> tuple:
    """Each layer's size: ``n_h`` is one int for all layers or a sequence of one int per layer.

    Raises:
        ValueError: a sequence of the wrong length.
    """
    layers = spec.layers
    if isinstance(n_h, int):
        return (n_h,) * layers
    sizes = tuple(int(n) for n in n_h)
    if len(sizes) != layers:
        raise ValueError(f"n_h gives {len(sizes)} layer sizes {sizes}; the network has {layers} layers")
    return sizes


def shapes(spec, n_x: int, n_h, n_y: int) -> dict:
    """Key -> column-layout shape of every parameter, in the order the module lists them."""
    net = network(_column(spec))
    value = dict(zip(net.sizes, (n_x, *hidden_sizes(spec, n_h), n_y)))
    return {
        name: (int(p.rows.subs(value)),) if p.is_vector else (int(p.rows.subs(value)), int(p.cols.subs(value)))
        for name, p in net.params.items()
    }


@cache
def to_module(spec) -> tuple:
    """The module's parameters as ``Piece``s of the column-layout ones, in the module's order."""
    column, theirs = network(_column(spec)), network(spec)
    keys = {}  # (chain, role name) -> column-layout key
    for chain in column.chains:
        keys.update({(chain.key, role): p.name for role, p in chain.params.items()})
    pieces = []
    for chain in theirs.chains:
        for role, p in chain.params.items():
            if any(piece.name == p.name for piece in pieces):  # the stacked notation's one matrix, met twice
                continue
            roles = ("recurrent", "input") if p.role == "stacked" else (role,)
            pieces.append(Piece(p.name, tuple(keys[chain.key, r] for r in roles), p.row))
    for p, q in zip((theirs.output, theirs.output_bias), (column.output, column.output_bias)):
        if p is not None:
            pieces.append(Piece(p.name, (q.name,), p.row))
    return tuple(pieces)


def multi(spec) -> bool:
    """True for more than one layer or direction (what the one-layer baselines cannot run)."""
    return depth(spec) != (1, 1)
