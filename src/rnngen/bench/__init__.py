"""Benchmarks: a generated module against hand-written loops, PyTorch, JAX and the GEMM-only limit.

``run.bench`` is what ``rnngen bench`` and ``benchmarks/frameworks.py`` call;
``harness`` holds the problems, contenders, agreement check and timing;
``loops`` the hand-written baselines; ``frameworks`` the optional PyTorch and
JAX versions, imported only when they are installed.
"""
