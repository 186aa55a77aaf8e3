"""rnngen: backpropagation through time, derived symbolically, emitted as NumPy and LaTeX, verified.

In Python: ``rnngen.derive(T=5)`` returns the derivation, ``rnngen.load(path)`` imports a
generated module (see ``rnngen.api``).
"""

from typing import TYPE_CHECKING

#: The one source of the version: the command line, the generated preambles and the package
#: metadata (``[tool.setuptools.dynamic]`` in pyproject.toml) all read it.
__version__ = "0.1.0"

#: The name on the package index (``rnngen`` there is an unrelated project); the command and
#: the import name are ``rnngen``.
DISTRIBUTION = "rnngen-bptt"

__all__ = ["BPTT", "DISTRIBUTION", "OutputError", "SpecError", "VerificationError", "derive", "load", "__version__"]

if TYPE_CHECKING:  # what an IDE or type checker sees; at run time they are imported on first use
    from rnngen.api import BPTT, derive, load
    from rnngen.emit import OutputError
    from rnngen.spec import SpecError
    from rnngen.verify import VerificationError

_LAZY = {
    "BPTT": "rnngen.api",
    "derive": "rnngen.api",
    "load": "rnngen.api",
    "SpecError": "rnngen.spec",
    "OutputError": "rnngen.emit",
    "VerificationError": "rnngen.verify",
}


def install_hint(extra: str) -> str:
    """The pip command that installs this project with an optional extra (``plot``, ``bench``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def __getattr__(name):
    # Imported on first use: the command line starts its clock before SymPy is imported.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnngen' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
