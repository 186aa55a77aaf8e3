"""The parameters of a stacked, possibly bidirectional network in column layout, as the baselines read them.

Every contender other than the generated module (the loops, PyTorch, JAX, the
GEMM-only limit) takes the same dict of column-layout parameters under the
default names of the module convention: per layer l and direction, an input
weight ``U``, a recurrent weight ``W``, a hidden bias ``b`` and an initial
state ``h0``, then the output weight ``V`` and bias ``c``. One layer keeps
``U, W, b, h0``; layers are numbered from 1 when there are two or more
(``U1``, ``h0_1``) and directions get ``_f`` / ``_b`` when the network is
bidirectional (``U1_f``, ``h0_1_b``). A bidirectional layer's output is its
forward states followed by its backward ones (PyTorch's order), which is
what the next layer's ``U`` and the output's ``V`` read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """One layer in one direction: where its parameters are and which way it runs.

    Attributes:
        layer: 1 for the layer that reads the inputs.
        reverse: True for a backward chain (from ``h0`` at step T down to step 1).
        U, W, b, h0: the keys of its parameters; ``b`` is None without hidden biases.
    """

    layer: int
    reverse: bool
    U: str
    W: str
    b: str | None
    h0: str

    def steps(self, T: int) -> list:
        """The steps (0-based) in the order the chain visits them."""
        return list(range(T - 1, -1, -1) if self.reverse else range(T))


def depth(spec) -> tuple:
    """``(layers, directions)`` of ``spec``."""
    # TODO(merge): read spec.layers and spec.bidirectional directly once RNNSpec has them
    return getattr(spec, "layers", 1), 2 if getattr(spec, "bidirectional", False) else 1


def cells(spec) -> list:
    """One list per layer, bottom up, of its ``Cell``s: the forward chain, then the backward one."""
    layers, directions = depth(spec)
    rows = []
    for layer in range(1, layers + 1):
        number = str(layer) if layers > 1 else ""
        row = []
        for reverse in (False, True)[:directions]:
            end = ("_b" if reverse else "_f") if directions == 2 else ""
            bias = f"b{number}{end}" if spec.hidden_bias else None
            state = f"h0_{number}{end}" if number else f"h0{end}"
            row.append(Cell(layer, reverse, f"U{number}{end}", f"W{number}{end}", bias, state))
        rows.append(row)
    return rows


def hidden_sizes(spec, n_h) -> tuple:
    """Each layer's size: ``n_h`` is one int for all layers or a sequence of one int per layer.

    Raises:
        ValueError: a sequence of the wrong length.
    """
    layers = depth(spec)[0]
    if isinstance(n_h, int):
        return (n_h,) * layers
    sizes = tuple(int(n) for n in n_h)
    if len(sizes) != layers:
        raise ValueError(f"n_h gives {len(sizes)} layer sizes {sizes}; the network has {layers} layers")
    return sizes


def shapes(spec, n_x: int, n_h, n_y: int) -> dict:
    """Key -> column-layout shape for every parameter, in the module convention's order."""
    sizes = hidden_sizes(spec, n_h)
    out, fan_in = {}, n_x
    for size, row in zip(sizes, cells(spec)):
        for cell in row:
            out[cell.U] = (size, fan_in)
            out[cell.W] = (size, size)
            if cell.b:
                out[cell.b] = (size,)
            out[cell.h0] = (size,)
        fan_in = len(row) * size
    out["V"] = (n_y, fan_in)
    if spec.output_bias:
        out["c"] = (n_y,)
    return out


def multi(spec) -> bool:
    """True for more than one layer or direction (what the one-layer baselines cannot run)."""
    return depth(spec) != (1, 1)
