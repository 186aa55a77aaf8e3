"""rnngen: backpropagation through time, derived symbolically, emitted as NumPy and LaTeX, verified."""

__version__ = "0.1.0"
