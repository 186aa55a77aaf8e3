"""rnngen: backpropagation through time, derived symbolically, emitted as NumPy and LaTeX, verified.

In Python: ``rnngen.derive(T=5)`` returns the derivation (see ``rnngen.api``).
"""

__version__ = "0.1.0"

from rnngen.api import BPTT, derive  # noqa: E402  (the version is read by the modules it imports)

__all__ = ["BPTT", "derive", "__version__"]
