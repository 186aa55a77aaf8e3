"""Every name rnngen invents for itself, in one place; ``spec.check_names`` reads it.

The generated module binds the user's matrix names as local variables next to the names
rnngen makes up, so a matrix may take none of them. They come in four kinds, each with
one rule here:

- words: the fixed identifiers of the module and of the derivation, and the letters the
  document writes for its own symbols (``WORDS``: ``D_t``, ``d = yhat - y``, ``f``, ...);
- families: the per-step quantities of the program (``unroll.FAMILIES``: ``h``, ``dz``,
  ``fprime``, ...; a truncated derivation's ages, ``dz_a2``), whose steps are ``<family>_<t>``, and
  their letters side by side (``H``);
- names derived from another name: ``d<param>`` (a gradient) and ``<base>_<suffix>``
  (``h_gemm``, a step's scratch; ``W_T``, a weight's transposed copy; ``h_``, the views of
  a family's steps), spelled only by the functions below;
- Python's own names (keywords and builtins, which the module calls) and anything that
  starts with an underscore (module helpers), which a matrix name cannot take anyway.

So a matrix name is free when it is not a word, a family, a builtin or another parameter,
when its stem (``W`` of ``W_T``) is none of these either, and when it is not ``d`` and another
parameter's name. New invented names need no new entry when they follow these forms: a
family added to ``unroll.FAMILIES`` is refused from then on, and so is every
``<family>_<suffix>``; the test (tests/test_names.py) tries every identifier of generated
modules as a matrix name, so a word the template adds and this file lacks fails it.
"""

from __future__ import annotations

import builtins
import keyword

from rnngen.families import FAMILIES, adjoint_name, is_family_name

_CONSTANTS = (
    "RNNGEN_VERSION",
    "SPEC",
    "SPEC_SHA256",
    "HIDDEN",
    "OUTPUT",
    "LOSS",
    "MAPPING",
    "PARAM_SHAPES",
    "WEIGHTS",
    "INITIAL_STATES",
)
#: The identifiers the module template binds or reads in the functions that take the
#: parameters, its public names, and the derivation's own symbols, each with what it is.
WORDS = {
    "np": "the module's NumPy",
    "E": "the loss",
    "B": "the batch size",
    "T": "the number of steps",
    "n_x": "the input size",
    "n_h": "the hidden size",
    "n_y": "the output size",
    "params": "the module's argument of the parameters",
    "xs": "the module's argument of the inputs",
    "targets": "the module's argument of the targets",
    "grads": "the module's gradients",
    "single": "the module's flag of a single sequence",
    "buf": "the module's set of buffers",
    "sizes": "the sizes the module's buffers are made for",
    "out": "the dict the module's forward returns",
    "hidden": "the module's per-layer hidden sizes",
    "p": "the module's list of the parameters (a network of many chains)",
    "fw": "the module's forward values (a network of many chains)",
    "new": "the module's new buffers (a network of many chains)",
    "dxs": "the module's gradient of the inputs",
    "state": "the module's argument of the initial states given per sequence",
    "return_state": "the module's flag that asks for the final state",
    "mask": "the module's argument of the real steps",
    "lengths": "the module's argument of the sequences' lengths",
    "pad": "the module's padded steps (a masked module)",
    "padded": "the module's list of the steps that have a padded sequence (a masked module)",
    "carried": "the module's list of the steps whose padded sequences pass a delta on (a masked module)",
    "carried_back": "the module's list of the steps whose padded sequences pass a delta on, backward chains",
    "final": "the final state the module hands back",
    "finals": "the module's list of each chain's final state",
    "dstates": "the module's list of the gradients of the given states",
    **{f: "a function of the module" for f in ("init_params", "forward", "loss", "loss_and_grads", "free_buffers")},
    **{c: "a constant of the module" for c in _CONSTANTS},
    # the derivation document's own letters, which a matrix named so would be mistaken for
    "D": "the document's Jacobian of the hidden activation, D_t",
    "I": "the document's identity matrix",
    "d": "the document's output difference d = yhat - y",
    "f": "the document's hidden activation f",
    "g": "the document's output layer g",
    "a": "the document's slope a of leaky_relu",
    "i": "an entry index of the document",
    "j": "an entry index of the document",
}

#: The parameters whose names rnngen fixes: role -> name.
FIXED_PARAMS = {"hidden_bias": "b", "output_bias": "c", "initial": "h0"}
_FIXED_ROLES = dict(zip(FIXED_PARAMS.values(), ("the hidden bias", "the output bias", "the initial state")))


def gradient(param: str) -> str:
    """The name of ``dE/d<param>`` in code: ``dW``."""
    return adjoint_name(param)


def transposed_copy(param: str) -> str:
    """The contiguous copy of a weight's transpose that a recurrence's GEMM reads: ``W_T``."""
    return param + "_T"


def stacked_weights(block: str, part: str, transposed: bool) -> str:
    """The parameters of a block of gates in one array (``side_by_side``), ``part`` ``in`` or ``rec``:
    ``gates_rec`` one above another, ``gates_rec_T`` their transposes."""
    return f"{block}_{part}" + ("_T" if transposed else "")


def with_ones(block: str) -> str:
    """The rows of a block's input beside a column of ones (``operations.WithOnes``): ``gates_data``."""
    return f"{block}_data"


def step_scratch(family: str) -> str:
    """The one-step scratch that a step of ``family`` computes its GEMM into: ``h_gemm``."""
    return family + "_gemm"


def carried_steps(reverse: bool) -> str:
    """The list of the steps where a padded sequence passes a delta on (``operations.Carried``):
    ``carried`` for forward chains, ``carried_back`` for backward ones."""
    return "carried_back" if reverse else "carried"


def step_views(family: str) -> str:
    """The list of views of ``family``'s steps: ``h_`` (a trailing underscore, no matrix name has one)."""
    return family + "_"


def _owner(name: str, params: set) -> str | None:
    """What ``name`` is to rnngen or to Python, given the other parameters' names; None if nothing."""
    if name in WORDS:
        return WORDS[name]
    if name.startswith("n_h") and name[3:].isdigit():
        return "a layer's hidden size (n_h1, n_h2, ...)"
    if name in _FIXED_ROLES:
        return f"the parameter of {_FIXED_ROLES[name]}"
    if name in FAMILIES or is_family_name(name):
        return "a per-step quantity of the derivation (of some layer and direction)"
    if any(name == f.partition("_")[0] for f in FAMILIES):
        return f"the start of per-step quantities' names ({name}_...)"
    if any(name == family.stacked_text for family in FAMILIES.values()):
        return "the document's letter of a per-step quantity's steps side by side (H = [h_1 ... h_T])"
    if name in _FIXED_ROLES:
        return f"the parameter of {_FIXED_ROLES[name]}"
    if name in params:
        return "the name of another matrix"
    if keyword.iskeyword(name) or hasattr(builtins, name):
        return "a Python builtin, which the module calls"
    return None


def taken(name: str, others) -> str | None:
    """Why the matrix name ``name`` is not free, given the other parameters' names; None if it is.

    A name is taken when it is a word, a family or a builtin, when it reads as the gradient
    ``d<param>`` of another parameter, or when its stem (``W`` of ``W_T``) is any of these,
    so that every ``<base>_<suffix>`` rnngen derives stays its own.

    Args:
        name: a candidate matrix name (letters and digits, at most one underscore).
        others: the names of the other parameters (the other two matrices, ``b``, ``c``, ``h0``).
    """
    params = set(others)
    owner = _owner(name, params)
    if owner:
        return f"it is {owner}"
    stem, sep, _ = name.partition("_")
    if sep and (owner := _owner(stem, params)):
        return f"it would read as a name derived from {stem}, {owner}"
    if stem.startswith("d") and stem[1:] in params:
        return f"{stem} would read as the gradient of the parameter {stem[1:]}"
    return None
