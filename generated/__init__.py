"""Generated examples, committed and kept fresh by tests/test_generated.py.

Refresh them all with: python -m rnngen.examples
"""
