"""benchmarks/statement_budget.py: the timed copy of a module computes what the module does, and its
statements are the module's, the unrolled steps under one line each."""

import importlib.util
import sys
from collections import Counter

import numpy as np
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports frameworks.py beside it
_spec = importlib.util.spec_from_file_location("statement_budget", ROOT / "benchmarks" / "statement_budget.py")
budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budget)


def test_the_timed_copy_gives_the_same_numbers_and_times_every_step(built, tmp_path):
    T = 4
    path = tmp_path / "m.py"
    path.write_text(built(T).module, encoding="utf-8")
    plain, timed = budget.load(path, "plain_copy"), budget.load(path, "timed_copy")
    acc, keys = budget.instrument(timed, path.read_text(), budget.TOP + budget.HELPERS)
    rng = np.random.default_rng(0)
    params = plain.init_params(3, 5, 4, seed=1)
    xs, targets = rng.standard_normal((T, 2, 3)), rng.integers(0, 4, (T, 2))
    E, grads = plain.loss_and_grads(params, xs, targets)
    E_timed, grads_timed = timed.loss_and_grads(params, xs, targets)
    assert E_timed == E and all(np.array_equal(grads_timed[k], g) for k, g in grads.items())
    # the lines of a given state and of the final state run too
    timed.loss_and_grads(params, xs, targets, state=np.zeros((2, 5)), return_state=True)
    timed.loss_and_grads(params, xs.argmax(axis=-1), targets)  # and those of token ids
    count = Counter(keys)
    # one line per unrolled statement, with its count of steps: T - 1 recurrent GEMMs in the backward pass
    assert count["loss_and_grads", "np.dot(dz_[k], W, out=dz_gemm)"] == T - 1
    assert count["_forward", "np.tanh(h_[k], out=h_[k])"] == T
    # every timed statement ran and took time; the softmax's test (a reduction) is among them
    # (a raise, the refusal of a mask by a module without one, never completes: it has no time)
    assert all(a > 0 for (fn, line), a in zip(keys, acc) if fn in budget.TOP and not line.startswith("raise "))
    assert ("_softmax", "if a.max() < 64.0:") in count
