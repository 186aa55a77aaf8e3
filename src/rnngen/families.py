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

from sympy import Basic, Integer, MatrixSymbol, sympify
from sympy.core.symbol import Str

from rnngen.algebra import B, symbols_in
from rnngen.cells import CELLS  # the cells import nothing of the program: no cycle

#: Every gate letter of the registered cells, in their order (``ifgorzn``): the families spell each one's values.
_GATES = "".join(dict.fromkeys(letter for cell in CELLS.values() for letter in cell.gates))
#: How each base quantity is spelled: LaTeX letter, stacked LaTeX letter, text letter, stacked text letter,
#: and the family that holds its local Jacobian (the elementwise derivative of the activation that reads it).
_SPELLING = {
    "x": ("x", "X", "x", "X", ""),
    "y": ("y", "Y", "y", "Y", ""),
    "z": ("z", "Z", "z", "Z", "fprime"),
    "h": ("h", "H", "h", "H", ""),
    "o": ("o", "O", "o", "O", "gprime"),
    "yhat": (r"\hat{y}", r"\hat{Y}", "ŷ", "Ŷ", ""),
    "hbar": (r"\bar{h}", r"\bar{H}", "h̄", "H̄", ""),
    "hlast": (r"\check{h}", r"\check{H}", "ȟ", "Ȟ", ""),
    "m": ("m", "M", "m", "M", ""),
    "fprime": ("{f'}", "{F'}", "f′", "F′", ""),
    "gprime": ("{g'}", "{G'}", "g′", "G′", ""),
    # the gated cells (cells.py): each gate's pre-activation z<g>, value g<g> and local Jacobian jac_<g>,
    # keyed so that none is another family's code name, whatever the chain's suffix (the output layer's
    # o, the GRU's z; fprime_f is the forward chain's fprime); the LSTM's memory cell ``cell`` (``c`` is
    # the output bias) and its activation ``cact``; the GRU's W_n h_{t-1} + b_hn, ``zhn``
    # spelled a (a_r, a_z, a_n): z is the GRU's update gate
    **{f"z{g}": (f"{{a_{{{g}}}}}", f"{{A_{{{g}}}}}", f"a_{g}", f"A_{g}", f"jac_{g}") for g in _GATES},
    **{f"g{g}": (g, g.upper(), g, g.upper(), "") for g in _GATES},
    **{
        f"jac_{g}": (f"{{{d}'_{{{g}}}}}", f"{{{D}'_{{{g}}}}}", f"{t}′_{g}", f"{T}′_{g}", "")
        for g in _GATES
        for d, D, t, T in [("f", "F", "f", "F") if g in "gn" else (r"\sigma", r"\Sigma", "σ", "Σ")]
    },
    "cell": ("c", "C", "c", "C", "jac_cell"),
    # the LSTM's dh_t/dc_t = o_t ∘ f'(c_t), the local Jacobian of the cell's path into h_t: spelled as the
    # candidate's f'_g = i ∘ f'(z_g), by the activation both read (φ = f(c))
    "jac_cell": ("{f'_{c}}", "{F'_{c}}", "f′_c", "F′_c", ""),
    "cellbar": (r"\bar{c}", r"\bar{C}", "c̄", "C̄", "jac_cell"),
    "cact": (r"\phi", r"\Phi", "φ", "Φ", ""),
    "zhn": ("{a_{hn}}", "{A_{hn}}", "a_hn", "A_hn", ""),
    # a gated cell's gates in one buffer, a storage decision of the module's (side_by_side.py) that no
    # document writes: spelled as the pre-activations stacked
    "gates": ("{a_{*}}", "{A_{*}}", "a_*", "A_*", ""),
}
#: A gated cell's documents write its gates with PyTorch's letters (the LSTM's i, f, g, o; the GRU's r, z, n),
#: so there the output layer's pre-activation, o beside an Elman cell, is s (the scores): the letters that
#: differ, as the table above (LaTeX, stacked LaTeX, text, stacked text). One rule for every printer.
GATED_LETTERS = {"o": ("s", "S", "s", "S")}
#: The parameters a gated cell's documents spell otherwise, by code name: the output bias ``c`` is ``b_y`` there,
#: since ``c`` is the LSTM's memory cell (``c_t``, ``c_0``), and ``b_y`` reads beside the gates' biases
#: (``b_i``, ..., ``b_o``) as the bias of the output. The LaTeX only: the module and its comments keep ``c``.
GATED_PARAMS = {"c": "b_y"}
#: The letter mathematics writes each state a cell carries with (an initial state is its state's first step).
STATE_LETTERS = {"h": "h", "cell": "c"}
#: The bases that hold a local Jacobian (no adjoint of their own).
_JACOBIANS = {spelling[4] for spelling in _SPELLING.values()} - {""}
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


def age_suffix(age: int | None) -> str:
    """The suffix of an aged adjoint's code name: ``_a2`` (``dz_a2``), "" without an age."""
    return "" if age is None else f"_a{age}"


#: The letter of a generic age in the documents (a truncated derivation's ``\delta^{h[q]}_t``, ``\sum_{q=0}``): not
#: ``a``, the letter of a gated cell's pre-activations (``{a_{i}}_t``), nor ``k``, a step.
AGE = "q"


def age_latex(age) -> str:
    """An age (a number, or a letter such as ``"a-1"`` for a generic one) as the documents write it after
    the letter's tag: ``[2]``; "" for None."""
    return "" if age is None else f"[{age}]"


def tag_latex(layer: int, direction: str) -> str:
    """A layer and a direction as LaTeX writes them beside a symbol: ``(2)``, ``(\\mathrm{f})``, ``(2\\mathrm{f})``.

    One rule for the families (``z^{(2)}_t``) and the parameters (``U^{(2)}``), so the two agree.
    """
    if not layer and not direction:
        return ""
    return "(" + (str(layer) if layer else "") + (rf"\mathrm{{{direction}}}" if direction else "") + ")"


def tag_text(layer: int, direction: str) -> str:
    """The same in plain text, as superscripts: ``²``, ``ᶠ``, ``²ᶠ``."""
    return ((str(layer) if layer else "") + direction).translate(_SUPERSCRIPT)


@dataclass(frozen=True)
class Family:
    """A per-step quantity of one layer and direction.

    Attributes:
        base: the quantity (a key of the spelling table: ``h``, ``z``, ``o``, ``yhat``, ``fprime``, ...).
        kind: ``value``, ``adjoint`` (dE/d of the value), ``pre`` (the non-recurrent part of a step,
            split off by a pass) or ``pre_adjoint`` (the same for an adjoint).
        layer: the layer (1..L), or 0 in a network of one layer and for the output side.
        direction: ``""``, ``"f"`` or ``"b"`` (a bidirectional layer's forward and backward chains).
        age: for an adjoint of a truncated derivation (``spec.truncate``), the number of recurrent edges
            its paths crossed since their loss term (``backprop.reverse_mode``); None for every other
            family. An adjoint of age a is a family of its own, δz^{[a]}_t (``dz_a2`` in code).
    """

    base: str
    kind: str = "value"
    layer: int = 0
    direction: str = ""
    age: int | None = None

    def __post_init__(self):
        if self.base not in _SPELLING or self.kind not in KINDS or self.direction not in DIRECTIONS:
            raise ValueError(f"no family {self!r}")
        if self.age is not None and not (self.is_adjoint and isinstance(self.age, int) and self.age >= 0):
            raise ValueError(f"no family {self!r}: only an adjoint has an age, a whole number")
        _BY_KEY.setdefault(self.key, self)

    @property
    def key(self) -> str:
        """The code name: kind prefix, base, layer and direction suffix, age (``dh2_f``, ``dz_a2``)."""
        return KINDS[self.kind] + self.base + chain_suffix(self.layer, self.direction) + age_suffix(self.age)

    # -- related families ------------------------------------------------------------

    @property
    def adjoint(self) -> Family:
        return replace(self, kind="pre_adjoint" if self.kind == "pre" else "adjoint")

    def aged(self, age: int | None) -> Family:
        """The same adjoint family at ``age`` (None: the ages' sum, the plain adjoint)."""
        return replace(self, age=age)

    @property
    def pre(self) -> Family:
        """The family of the part of each step that does not read the recurrence."""
        return replace(self, kind="pre_adjoint" if self.kind == "adjoint" else "pre")

    @property
    def age_latex(self) -> str:
        """The age as the documents write it after the letter's tag: ``[2]`` (δz^{[2]}_t), "" without one."""
        return age_latex(self.age)

    @property
    def value(self) -> Family:
        return replace(self, kind="value", age=None)

    @property
    def jacobian(self) -> Family | None:
        """The family holding this family's local Jacobian (``fprime`` for ``z`` and ``dz`` of any age), or None."""
        base = _SPELLING[self.base][4]
        return replace(self, base=base, kind="value", age=None) if base else None

    @property
    def is_adjoint(self) -> bool:
        return self.kind in ("adjoint", "pre_adjoint")

    # -- spelling --------------------------------------------------------------------

    @property
    def tag_latex(self) -> str:
        """The layer and direction as the documents write them beside the letter: ``(2\\mathrm{f})``,
        followed by the age of a truncated derivation's adjoint: ``(2)[1]``."""
        return tag_latex(self.layer, self.direction) + self.age_latex

    def _letter(self, index: int, gated: bool) -> str:
        """Entry ``index`` of the base's spelling, in a gated cell's document (``gated``) or another's."""
        spelling = GATED_LETTERS.get(self.base) if gated else None
        return (spelling or _SPELLING[self.base])[index]

    def latex_letter(self, stacked: bool = False, gated: bool = False) -> str:
        """The LaTeX letter (``z``, ``\\tilde{Z}`` stacked), as a gated cell's document writes it if ``gated``."""
        letter = self._letter(1 if stacked else 0, gated)
        return rf"\tilde{{{letter}}}" if self.kind == "pre" else letter

    @property
    def latex(self) -> str:
        return self.latex_letter()

    @property
    def stacked_latex(self) -> str:
        return self.latex_letter(stacked=True)

    @property
    def delta(self) -> str:
        """For an adjoint, the LaTeX delta it is written with, else ""."""
        return {"adjoint": r"\delta", "pre_adjoint": r"\tilde{\delta}"}.get(self.kind, "")

    @property
    def stacked_delta(self) -> str:
        return {"adjoint": r"\Delta", "pre_adjoint": r"\tilde{\Delta}"}.get(self.kind, "")

    def text_spelling(self, stacked: bool = False, gated: bool = False) -> str:
        """The plain-text spelling (``δz²``, ``Δz`` stacked), as a gated cell's document writes it if ``gated``."""
        prefix = {"adjoint": "δ", "pre_adjoint": "δ̃"}.get(self.kind, "")
        if stacked and prefix:  # a delta's steps side by side: the capital delta, the same letter (Δz)
            prefix, stacked = {"δ": "Δ", "δ̃": "Δ̃"}[prefix], False
        tilde = "\u0303" if self.kind == "pre" else ""  # on the letter, before the layer's superscript
        age = "" if self.age is None else f"^[{self.age}]"
        letter = self._letter(3 if stacked else 2, gated)
        return prefix + letter + tilde + tag_text(self.layer, self.direction) + age

    @property
    def text(self) -> str:
        return self.text_spelling()

    @property
    def stacked_text(self) -> str:
        return self.text_spelling(stacked=True)


@dataclass(frozen=True)
class ParamName:
    """How mathematics writes a parameter: typed, like a family, and spelled by the same tag rule.

    Attributes:
        letter: the user's letter for it (``U``, ``Wxh``, ``w_i``; ``b``, ``c``), or ``h`` for an initial state.
        layer: the layer of its chain, 0 in a network of one layer and for the output layer's.
        direction: ``""``, ``"f"`` or ``"b"``: the direction of its chain.
        part: for a block of a matrix on stacked vectors, what the block multiplies: ``h`` or ``x``
            (seed 002's ``W_h``, ``W_x``), or a direction of the layer below (``V_f``, ``V_b``).
        initial: True for a chain's initial state, which is written as its state family's first step
            (``h^{(1)}_0``; a backward chain's ``h^{(\\mathrm{b})}_{T+1}``, the step after the last).
    """

    letter: str
    layer: int = 0
    direction: str = ""
    part: str = ""
    initial: bool = False

    @classmethod
    def plain(cls, name: str) -> ParamName:
        """A parameter known only by its code name, in a network of one layer (``h0``: the initial state)."""
        return cls("h", initial=True) if name == "h0" else cls(name)

    @property
    def state(self) -> Family:
        """An initial state's family: the chain's state (``h``, or the memory cell's for ``c``)."""
        base = next(b for b, letter in STATE_LETTERS.items() if letter == self.letter)
        return Family(base, "value", self.layer, self.direction)

    @property
    def start(self) -> str:
        """The step an initial state is (a backward chain's is after the last step)."""
        return "T+1" if self.direction == "b" else "0"

    def in_gated(self) -> ParamName:
        """The name as a gated cell's document writes it (``GATED_PARAMS``: the output bias ``b_y``)."""
        return self if self.initial else replace(self, letter=GATED_PARAMS.get(self.letter, self.letter))

    def latex(self) -> str:
        """``U^{(2)}``, ``w^{(1\\mathrm{f})}_{i}``, ``V^{(\\mathrm{f})}``, ``W^{(2)}_{x}``: the letter, its chain's
        tag above (a chain's block: the tag of the chain it reads), its own subscript and its other block below
        (not for an initial state: see ``state``)."""
        letter, _, sub = self.letter.partition("_")
        subs = [sub.replace("_", ",")] if sub else []
        if self.part and not self._chain_block:
            subs.append(rf"\mathrm{{{self.part}}}" if self.part in DIRECTIONS else self.part)
        tag = tag_latex(self.layer, self.part if self._chain_block else self.direction)
        if tag and len(letter) > 1:  # the tag belongs to the whole name: {Wxh}^{(1)}, not Wx h^{(1)}
            letter = f"{{{letter}}}"
        return letter + (f"^{{{tag}}}" if tag else "") + (f"_{{{','.join(subs)}}}" if subs else "")

    @property
    def _chain_block(self) -> bool:
        """A block that reads one chain of a bidirectional layer (``V``'s forward block): it carries that
        chain's tag above, as the chain's states do (``V^{(f)}`` beside ``h^{(f)}``)."""
        return self.part in ("f", "b") and not self.direction

    @property
    def text(self) -> str:
        """``U²``, ``w_i¹ᶠ``, ``Vᶠ``, ``W²_x`` (not for an initial state: see ``state``)."""
        if self._chain_block:
            return self.letter + tag_text(self.layer, self.part)
        return self.letter + tag_text(self.layer, self.direction) + (f"_{self.part}" if self.part else "")

    # -- as SymPy arguments: a symbol that carries its name survives SymPy's rebuilding (xreplace) --

    def args(self) -> tuple:
        return (Str(self.letter), Integer(self.layer), Str(self.direction), Str(self.part), Integer(self.initial))

    @classmethod
    def from_args(cls, args) -> ParamName:
        letter, layer, direction, part, initial = args
        return cls(letter.name, int(layer), direction.name, part.name, bool(initial))


class Spelled(MatrixSymbol):
    """A parameter's symbol (or its gradient's, or a block's): a MatrixSymbol that carries how mathematics
    writes it, a ``ParamName`` held in its last five arguments, so printers never read a code name."""

    def __new__(cls, name, rows, cols, *spelling):
        cls._check_spelling(spelling)
        name = name if isinstance(name, Str) else Str(name)
        return Basic.__new__(cls, name, sympify(rows), sympify(cols), *spelling)

    @staticmethod
    def _check_spelling(spelling: tuple) -> None:
        if len(spelling) != 5:  # a symbol without its name would read its other arguments as one
            raise TypeError(f"a parameter's symbol takes its spelling, ParamName.args(), not {spelling!r}")

    @property
    def spelling(self) -> ParamName:
        return ParamName.from_args(self.args[-5:])


def spelling_of(sym) -> ParamName:
    """How mathematics writes a parameter's symbol; a plain MatrixSymbol (a hand-built program) by its name."""
    return sym.spelling if isinstance(sym, Spelled) else ParamName.plain(sym.name)


@dataclass(frozen=True)
class Lexicon:
    """How a document spells its symbols: a value the document is rendered with, so one network can be
    written in a seed's own notation (``presets.py``). Only the LaTeX changes; the module's names and
    its plain-text comments keep rnngen's spelling. The default is rnngen's own spelling (the table
    above, ``ParamName.latex``), so a document rendered with it is what it was before lexicons.

    Attributes:
        letters: ``(base, letter, stacked letter)`` triples that replace a base's LaTeX letters (seed 000
            writes the prediction ``y`` and the target ``\\hat{y}``).
        tags: ``(base, tag)`` pairs: a fixed index written before the step (seed 001's ``h^{1,t}``).
        steps: where the step index goes: ``"sub"`` (``O_t``), ``"super"`` (``h^{t}``), or ``""``: as the
            notation has it (above in row notation, below in column notation).
        loss: the loss's letter (``E``, ``L``, ``\\mathcal{L}``); its terms are this letter at a step.
        params: ``(code name, LaTeX)`` pairs for a network of one layer (seed 001's ``W^{11}``).
        adjoint: how an adjoint is written, a format of the value's spelling at its step (seed 001's
            ``\\nabla_{{{}}} \\mathcal{{L}}``); "" for rnngen's deltas (``\\delta^{h}_{t}``).
        pre_adjoint: the same for the part of an adjoint that does not read the recurrence (``\\tilde{\\delta}``).
        functions: ``(activation, LaTeX format)`` pairs: an activation written by the seed's own name
            (seed 003's ``g(z_t)`` for tanh); the legend says which function it is.
        last_unindexed: a many-to-one seed's habit: what the network has at its last step only (the
            output's values, the target, the loss, their deltas) is written without the step, as the one
            of its kind (seed 003's ``\\hat{y} = V H_3``, ``L``, not ``\\hat{y}_3``, ``L_3``).
    """

    letters: tuple = ()
    tags: tuple = ()
    steps: str = ""
    loss: str = "E"
    params: tuple = ()
    adjoint: str = ""
    pre_adjoint: str = ""
    functions: tuple = ()
    last_unindexed: bool = False

    def __post_init__(self):
        if self.steps not in ("", "sub", "super"):
            raise ValueError(f"a lexicon's steps are 'sub', 'super' or '', not {self.steps!r}")
        unknown = [b for b, *_ in self.letters + self.tags if b not in _SPELLING]
        if unknown:
            raise ValueError(f"a lexicon spells no base {unknown[0]!r}; the bases are {', '.join(_SPELLING)}")

    def superscript(self, row: bool) -> bool:
        """True when a step goes above its letter (``h^{t}``), in a network of notation ``row``."""
        return row if not self.steps else self.steps == "super"

    def latex_letter(self, fam: Family, stacked: bool = False, gated: bool = False) -> str:
        """A family's LaTeX letter: the lexicon's where it has one (with the pre-part's tilde), else rnngen's."""
        own = {base: pair for base, *pair in self.letters}.get(fam.base)
        if own is None:
            return fam.latex_letter(stacked, gated)
        letter = own[1] if stacked else own[0]
        return rf"\tilde{{{letter}}}" if fam.kind == "pre" else letter

    def indexed(self, fam: Family) -> bool:
        """False where the step of ``fam`` goes unwritten: a quantity of the last step only, in a lexicon
        that writes those without their step (``last_unindexed``)."""
        return not (self.last_unindexed and fam.value.base in LAST_STEP_ONLY)

    def tag(self, fam: Family) -> str:
        """A family's fixed index (seed 001's layer: ``1`` of ``h^{1,t}``), "" without one."""
        return dict(self.tags).get(fam.base, "")

    def function(self, key: str) -> str | None:
        """The LaTeX format of an activation (``activations.elementwise`` key) where the seed names it, else None."""
        return dict(self.functions).get(key)

    def param(self, name: ParamName) -> str | None:
        """A parameter's LaTeX, where the lexicon names it (a network of one layer), else None."""
        if name.layer or name.direction or name.part or name.initial:
            return None
        return dict(self.params).get(name.letter)


#: The bases a many-to-one network has at its last step only: the output layer's values (and its
#: activation's slope), the prediction and the target.
LAST_STEP_ONLY = ("o", "gprime", "yhat", "y")
#: rnngen's own spelling.
DEFAULT_LEXICON = Lexicon()

_BY_KEY: dict[str, Family] = {}


def family(key: str) -> Family:
    """The family whose code name is ``key`` (every family ever made registers itself)."""
    return _BY_KEY[key]


#: The families of a network of one layer and one direction, by code name.
FAMILIES: dict[str, Family] = {}
for _base in _SPELLING:
    for _kind in KINDS:
        if _kind == "value" or _base not in _JACOBIANS:
            _f = Family(_base, _kind)
            FAMILIES[_f.key] = _f


def is_family_name(name: str) -> bool:
    """True when ``name`` is the code name of a family of some layer and direction (``h``, ``dz2``, ``h1_f``):
    the names the module's per-step arrays take, which no parameter may take."""
    for prefix in sorted(KINDS.values(), key=len, reverse=True):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            for base in _SPELLING:
                if rest.startswith(base) and _is_suffix(rest[len(base) :]):
                    return True
    return False


def _is_suffix(text: str) -> bool:
    """A layer number, a direction, both (``2``, ``_f``, ``2_b``) or nothing, then an age or not (``2_f_a3``)."""
    head, sep, age = text.rpartition("_a")
    if sep and age.isdigit():
        text = head
    layer = text.rstrip("_fb")
    return (layer == "" or layer.isdigit()) and text[len(layer) :] in ("", "_f", "_b")


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


def holds_slopes(sym) -> bool:
    """True when ``sym`` is a step or steps of a family that holds an activation's slopes (``f'_t``,
    ``F'_{1:T}``, a gate's ``jac``): the diagonal of a local Jacobian, which the code keeps as a vector."""
    key = (step_of(sym) or run_of(sym) or (None,))[0]
    return key is not None and family(key).base in _JACOBIANS


def step_of(sym):
    """``(family key, t)`` when ``sym`` is one step of a family, else None."""
    return (sym.family.key, sym.t) if isinstance(sym, Step) else None


def run_of(sym):
    """``(family key, lo, hi)`` when ``sym`` is steps side by side, else None."""
    return (sym.family.key, sym.lo, sym.hi) if isinstance(sym, Run) else None


def relative_of(sym):
    """``(family key, k)`` when ``sym`` is a step relative to a generic t, else None."""
    return (sym.family.key, sym.k) if isinstance(sym, Relative) else None


@dataclass(frozen=True)
class Recurrence:
    """A block of families computed step by step, each step from the previous one in its order.

    Attributes:
        families: the code names of the families in the cycle (``h`` and ``z``; ``dz`` and ``dh``).
        step: +1 when step t reads step t - 1 (forward in time), -1 when it reads step t + 1.
    """

    families: frozenset
    step: int


def recurrences(steps) -> tuple:
    """The recurrences among ``steps``, (family key, t, expression) of every step's value: the cycles
    of the family graph that cross time steps (``program.find_recurrences`` of a program's statements,
    ``backprop`` of the unrolled graph's nodes).

    A network of several chains has one recurrence per chain (and one per chain's backward
    sweep): layer 2 reads layer 1's states, but is not part of layer 1's recurrence.
    """
    edges: dict = {}  # family -> {(reader family, offset)}
    for fam, t, expr in steps:
        for sym in symbols_in(expr):
            if isinstance(sym, Step):
                edges.setdefault(sym.family.key, set()).add((fam, t - sym.t))
                edges.setdefault(fam, set())
    fams = set(edges)
    reach = {f: {g for g, _ in edges[f]} for f in fams}
    for k in fams:  # transitive closure (a handful of families)
        for i in fams:
            if k in reach[i]:
                reach[i] |= reach[k]
    cycles: dict = {}
    for f in sorted(fams):
        crossing = [off for g, off in edges[f] if off != 0 and f in reach[g]]
        if crossing:
            members = frozenset(g for g in fams if g in reach[f] and f in reach[g])
            cycles.setdefault(members, 1 if crossing[0] > 0 else -1)
    return tuple(Recurrence(members, step) for members, step in sorted(cycles.items(), key=lambda kv: sorted(kv[0])))
