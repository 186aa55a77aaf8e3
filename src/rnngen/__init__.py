"""rnngen: backpropagation through time, derived symbolically, emitted as NumPy and LaTeX, verified.

In Python: ``rnngen.derive(T=5)`` returns the derivation (see ``rnngen.api``).
"""

__version__ = "0.1.0"

__all__ = ["BPTT", "derive", "__version__"]


def __getattr__(name):
    # Imported on first use: the command line starts its clock before SymPy is imported.
    if name in ("BPTT", "derive"):
        from rnngen import api

        return getattr(api, name)
    raise AttributeError(f"module 'rnngen' has no attribute {name!r}")
