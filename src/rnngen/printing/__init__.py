"""Printers for matrix expressions: NumPy code, LaTeX and plain text.

Printers are strict: an expression they have no rule for is an error, never
silent text in a generated file.
"""


class PrintError(TypeError):
    """An expression the printer has no rule for."""
