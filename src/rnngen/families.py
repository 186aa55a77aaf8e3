"""The typed names of the program: families of per-step values and the symbols of their steps.

A *family* is a quantity with one value per time step (``h``, ``z``, ``dz``, ``fprime``), for one
layer and one direction of the network. It is an object: its base quantity, its kind (the value,
its adjoint ``dE/d·``, the non-recurrent part a pass splits off, that part's adjoint), its layer and
direction, and how each printer spells it. Its code name (``key``) is made from those by one rule
and never read back.

A step of a family is a ``Step`` symbol, steps side by side a ``Run``, a step relative to a generic
``t`` a ``Relative``: SymPy ``MatrixSymbol`` subclasses that carry their family and step, so passes
and printers ask the symbol (``step_of(sym)``) instead of parsing its name. The meta data lives in
one table per class, keyed by the symbol's name, because SymPy rebuilds symbols from their
``(name, rows, cols)`` arguments (``xreplace``): the table makes the rebuilt symbol the same object
in every respect. The table's key is the symbol's name and shape, as SymPy's equality is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sympy import MatrixSymbol

from rnngen.algebra import B

#: How each base quantity is spelled: LaTeX letter, stacked LaTeX letter, text letter, stacked text letter,
#: and the family that holds its local Jacobian (the elementwise derivative of the activation that reads it).
_SPELLING = {
    "x": ("x", "X", "x", "X", ""),
    "y": ("y", "Y", "y", "Y", ""),
    "z": ("z", "Z", "z", "Z", "fprime"),
    "h": ("h", "H", "h", "H", ""),
    "o": ("o", "O", "o", "O", "gprime"),
    "yhat": (r"\hat{y}", r"\hat{Y}", "ŷ", "Ŷ", ""),
    "fprime": ("{f'}", "{F'}", "f′", "F′", ""),
    "gprime": ("{g'}", "{G'}", "g′", "G′", ""),
}
#: The kinds of family, and the prefix of their code names.
KINDS = {"value": "", "adjoint": "d", "pre": "pre_", "pre_adjoint": "pre_d"}
DIRECTIONS = {"": "", "f": "forward", "b": "backward"}
#: Unicode superscripts for the plain-text spelling of a layer and a direction (h²ᶠ).
_SUPERSCRIPT = str.maketrans("0123456789fb", "⁰¹²³⁴⁵⁶⁷⁸⁹ᶠᵇ")


def adjoint_name(name: str) -> str:
    """The name of the adjoint dE/dv of a value named ``v``: ``dv`` (one rule, here)."""
    return "d" + name


def chain_suffix(layer: int, direction: str) -> str:
    """The suffix of a layer's and direction's names: ``""``, ``"2"``, ``"_f"``, ``"2_f"``.

    Layer 0 means a network of one layer, whose names carry no number.
    """
    return (str(layer) if layer else "") + (f"_{direction}" if direction else "")


@dataclass(frozen=True)
class Family:
    """A per-step quantity of one layer and direction.

    Attributes:
        base: the quantity (a key of the spelling table: ``h``, ``z``, ``o``, ``yhat``, ``fprime``, ...).
        kind: ``value``, ``adjoint`` (dE/d of the value), ``pre`` (the non-recurrent part of a step,
            split off by a pass) or ``pre_adjoint`` (the same for an adjoint).
        layer: the layer (1..L), or 0 in a network of one layer and for the output side.
        direction: ``""``, ``"f"`` or ``"b"`` (a bidirectional layer's forward and backward chains).
    """

    base: str
    kind: str = "value"
    layer: int = 0
    direction: str = ""

    def __post_init__(self):
        if self.base not in _SPELLING or self.kind not in KINDS or self.direction not in DIRECTIONS:
            raise ValueError(f"no family {self!r}")
        _BY_KEY.setdefault(self.key, self)

    @property
    def key(self) -> str:
        """The code name: kind prefix, base, layer and direction suffix (``dh2_f``)."""
        return KINDS[self.kind] + self.base + chain_suffix(self.layer, self.direction)

    # -- related families ------------------------------------------------------------

    @property
    def adjoint(self) -> Family:
        return replace(self, kind="pre_adjoint" if self.kind == "pre" else "adjoint")

    @property
    def pre(self) -> Family:
        """The family of the part of each step that does not read the recurrence."""
        return replace(self, kind="pre_adjoint" if self.kind == "adjoint" else "pre")

    @property
    def value(self) -> Family:
        return replace(self, kind="value")

    @property
    def jacobian(self) -> Family | None:
        """The family holding this family's local Jacobian (``fprime`` for ``z`` and ``dz``), or None."""
        base = _SPELLING[self.base][4]
        return replace(self, base=base, kind="value") if base else None

    @property
    def is_adjoint(self) -> bool:
        return self.kind in ("adjoint", "pre_adjoint")

    # -- spelling --------------------------------------------------------------------

    @property
    def tag(self) -> str:
        """The layer and direction as the documents write them beside the step (``2``, ``f``, ``2f``)."""
        return (str(self.layer) if self.layer else "") + self.direction

    @property
    def latex(self) -> str:
        letter = _SPELLING[self.base][0]
        return rf"\tilde{{{letter}}}" if self.kind == "pre" else letter

    @property
    def stacked_latex(self) -> str:
        letter = _SPELLING[self.base][1]
        return rf"\tilde{{{letter}}}" if self.kind == "pre" else letter

    @property
    def delta(self) -> str:
        """For an adjoint, the LaTeX delta it is written with, else ""."""
        return {"adjoint": r"\delta", "pre_adjoint": r"\tilde{\delta}"}.get(self.kind, "")

    @property
    def stacked_delta(self) -> str:
        return {"adjoint": r"\Delta", "pre_adjoint": r"\tilde{\Delta}"}.get(self.kind, "")

    def _text(self, stacked: bool) -> str:
        prefix = {"adjoint": "δ", "pre_adjoint": "δ̃"}.get(self.kind, "")
        if stacked and prefix:  # a delta's steps side by side: the capital delta, the same letter (Δz)
            prefix, stacked = {"δ": "Δ", "δ̃": "Δ̃"}[prefix], False
        tilde = "\u0303" if self.kind == "pre" else ""  # on the letter, before the layer's superscript
        return prefix + _SPELLING[self.base][3 if stacked else 2] + tilde + self.tag.translate(_SUPERSCRIPT)

    @property
    def text(self) -> str:
        return self._text(False)

    @property
    def stacked_text(self) -> str:
        return self._text(True)


_BY_KEY: dict[str, Family] = {}


def family(key: str) -> Family:
    """The family whose code name is ``key`` (every family ever made registers itself)."""
    return _BY_KEY[key]


#: The families of a network of one layer and one direction, by code name.
FAMILIES: dict[str, Family] = {}
for _base in _SPELLING:
    for _kind in KINDS:
        if _kind == "value" or _base not in ("fprime", "gprime"):
            _f = Family(_base, _kind)
            FAMILIES[_f.key] = _f


def step_name(key: str, t: int) -> str:
    """The name of step ``t`` of the family called ``key``: ``h_3`` (the symbol's name; never parsed)."""
    return f"{key}_{t}"


class _Typed(MatrixSymbol):
    """A MatrixSymbol with typed meta data, kept in the class's table under the symbol's name."""

    _meta: dict

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._meta = {}

    @classmethod
    def _make(cls, name: str, meta: tuple, rows, cols=B):
        known = cls._meta.setdefault((name, rows, cols), meta)
        if known != meta:
            raise ValueError(f"{cls.__name__} {name} already means {known}, not {meta}")
        return cls(name, rows, cols)

    @property
    def meta(self) -> tuple:
        return self._meta[(self.name, *self.shape)]


class Step(_Typed):
    """Step ``t`` of a family."""

    @classmethod
    def of(cls, fam: Family, t: int, rows) -> Step:
        return cls._make(step_name(fam.key, t), (fam, t), rows)

    @property
    def family(self) -> Family:
        return self.meta[0]

    @property
    def t(self) -> int:
        return self.meta[1]


class Run(_Typed):
    """Steps ``lo..hi`` of a family side by side (the matrix ``[f_lo ... f_hi]``)."""

    @classmethod
    def of(cls, fam: Family, lo: int, hi: int, rows) -> Run:
        return cls._make(f"{fam.key}[{lo}:{hi}]", (fam, lo, hi), rows)

    @property
    def family(self) -> Family:
        return self.meta[0]

    @property
    def lo(self) -> int:
        return self.meta[1]

    @property
    def hi(self) -> int:
        return self.meta[2]


class Relative(_Typed):
    """Step ``t + k`` of a family at a generic step ``t``: the placeholder of per-step forms."""

    @classmethod
    def of(cls, fam: Family, k: int, rows) -> Relative:
        return cls._make(f"{fam.key}@{k}", (fam, k), rows)

    @property
    def family(self) -> Family:
        return self.meta[0]

    @property
    def k(self) -> int:
        return self.meta[1]


def step_of(sym):
    """``(family key, t)`` when ``sym`` is one step of a family, else None."""
    return (sym.family.key, sym.t) if isinstance(sym, Step) else None


def run_of(sym):
    """``(family key, lo, hi)`` when ``sym`` is steps side by side, else None."""
    return (sym.family.key, sym.lo, sym.hi) if isinstance(sym, Run) else None


def relative_of(sym):
    """``(family key, k)`` when ``sym`` is a step relative to a generic t, else None."""
    return (sym.family.key, sym.k) if isinstance(sym, Relative) else None
