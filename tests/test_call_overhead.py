"""The generated module's per-call work: what a call may skip, it does not redo (issue 16, small workload).

At the small workload (B, n_x, n_h, n_y, T) = (1, 8, 16, 8, 5) a call costs about 45 µs and each
NumPy call about 0.5 µs, so the spelling of every line counts. These tests check the spelling by
structure and the views by the memory they share, never by wall clock.
"""

import re
import types

import numpy as np
import pytest

from rnngen.pipeline import build
from rnngen.spec import RNNSpec

SPECS = {
    "default": dict(T=5),
    "2-layer": dict(T=4, layers=2),
    "bidirectional": dict(T=4, bidirectional=True),
    "many-to-one row": dict(T=3, mapping="many-to-one", notation="row", output="sigmoid", loss="binary_cross_entropy"),
    "input gradient, relu": dict(T=2, hidden="relu", input_grad=True),
}


def _function(text: str, name: str) -> str:
    """The body of the module's function ``name``, without its comments and docstring."""
    body = text.split(f"\ndef {name}(")[1].split("\ndef ")[0]
    body = re.sub(r'"""[\s\S]*?"""', "", body)
    return "\n".join(line.split("#")[0] for line in body.splitlines())


def _load(text: str):
    m = types.ModuleType("m")
    exec(compile(text, "m", "exec"), m.__dict__)
    return m


@pytest.mark.parametrize("key", SPECS)
def test_products_are_np_dot_and_runs_are_read_as_rows_through_views_made_with_the_buffers(key):
    text = build(RNNSpec(**SPECS[key])).module
    for name in ("loss_and_grads", "_forward"):
        body = _function(text, name)
        # a reshape per call only of the caller's x (and of dx, handed back shaped as xs); every
        # buffer's rows are a view made once
        assert set(re.findall(r"(\w+)(?:\[[^\]]*\])?\.reshape\(", body)) <= {"x", "dx"}, body
    # a gradient's product (a transposed run of rows, or a vector, on the left) is np.dot: the
    # same BLAS call as @ with a third less call overhead
    grads = re.findall(r"^\s*d\w+ = (.*)$", _function(text, "loss_and_grads"), re.M)
    products = [g for g in grads if "np.dot" in g or "@" in g]
    assert products and all(" @ " not in g for g in products), grads
    # a family built in another's place and written whole has no name of its own: pre_z is h's buffer
    assert not re.search(r"^\s*pre_\w+ = ", text, re.M)


@pytest.mark.parametrize("key", SPECS)
def test_no_function_names_a_buffer_it_does_not_read(key):
    text = build(RNNSpec(**SPECS[key])).module
    for name in ("loss_and_grads", "_forward", "loss"):
        lines = _function(text, name).splitlines()
        for i, line in enumerate(lines):
            bound = re.fullmatch(r'\s*(\w+) = buf\["\1"\]\s*', line)
            if bound:
                # a read is the name outside a string: buf["dz rows"] and buf["dz_"] are other keys
                later = "\n".join(lines[i + 1 :])
                assert re.search(rf'(?<![\w"]){bound[1]}\b', later), (name, line)


@pytest.mark.parametrize("key", SPECS)
def test_the_views_made_with_the_buffers_are_views_of_them(key):
    m = _load(build(RNNSpec(**SPECS[key])).module)
    T = SPECS[key]["T"]
    xs = np.random.default_rng(1).standard_normal((T, 2, 3))
    code = m._new_buffers.__code__
    sizes = {name: 2 if name == "n_y" else 4 for name in code.co_varnames[2 : code.co_argcount]}  # after x, dtype
    buf = m._new_buffers(xs, xs.dtype, **sizes)
    views = {k: v for k, v in buf.items() if k.endswith(" rows") or k.endswith("_")}
    assert any(k.endswith(" rows") for k in views), list(buf)
    for key_, view in views.items():
        family = re.match(r"\w+?(?=_$|\[| rows)", key_)[0]  # "h[1:] rows", "dz rows", "h_"
        home = buf[family]
        for v in view if isinstance(view, list) else [view]:
            assert np.shares_memory(v, home) and v.base is not None, key_
    for key_, ones in buf.items():
        if key_.startswith("ones"):
            assert np.all(ones == 1) and ones.dtype == xs.dtype, key_


def test_the_sums_over_the_sequences_read_their_ones_from_the_set():
    text = build(RNNSpec(T=5)).module
    body = _function(text, "loss_and_grads")
    assert 'db = np.dot(buf["ones of T steps"], buf["dz rows"])' in body
    assert 'dh0 = np.dot(buf["ones of a step"], dh_[0])' in body
    assert "_column_sums" not in text  # no helper left that looks its ones up on every call
    # and they are the sums: one sequence and three, against sums NumPy takes itself
    m = _load(text)
    params = m.init_params(n_x=3, n_h=4, n_y=2, seed=0)
    rng = np.random.default_rng(2)
    for B in (1, 3):
        xs = rng.standard_normal((5, B, 3))
        _, grads = m.loss_and_grads(params, xs, rng.integers(0, 2, (5, B)))
        buf = m._SPARE["buffers"]
        np.testing.assert_allclose(grads["b"], buf["dz"].sum(axis=(0, 1)), rtol=1e-12)
        np.testing.assert_allclose(grads["h0"], buf["dz"][0].sum(axis=0) @ params["W"], rtol=1e-12)


def test_a_step_read_of_a_family_written_whole_goes_through_the_list_made_with_the_buffers():
    text = build(RNNSpec(T=5)).module
    body = _function(text, "loss_and_grads")
    assert re.findall(r"\*= (\S+)\n", body) == [f"fprime_[{k}]" for k in (4, 3, 2, 1, 0)]
    assert 'fprime_ = buf["fprime_"]' in body
    assert 'buf["fprime_"] = list(buf["fprime"])' in text


@pytest.mark.parametrize("key", SPECS)
def test_products_of_all_steps_rows_take_np_dot_for_few_rows_and_np_matmul_for_many(key):
    """np.dot has less call overhead (about 0.4 µs a product at 5 rows), np.matmul is the faster BLAS
    route for many rows: the module picks by the rows' count, once per set of buffers."""
    spec = RNNSpec(**SPECS[key])
    text = build(spec).module
    assert "np.matmul(" not in text  # no gates stacked on a third axis here: every such product picks
    assert 'buf["rows product"](' in text
    m = _load(text)
    params = m.init_params(3, 4, 2, seed=1)
    steps = spec.T if spec.mapping == "many-to-many" else 1
    for B, product in ((1, np.dot), (32 // spec.T, np.dot), (32 // spec.T + 1, np.matmul), (64, np.matmul)):
        rng = np.random.default_rng(B)
        xs = rng.standard_normal((spec.T, B, 3))
        if spec.output == "softmax":
            targets = rng.integers(0, 2, (steps, B))
        else:
            targets = rng.uniform(size=(B, 2) if spec.mapping == "many-to-one" else (steps, B, 2))
        E, grads = m.loss_and_grads(params, xs, targets)
        assert m._SPARE["buffers"]["rows product"] is product, (B, m._SPARE["buffers"]["rows product"])
        # either product gives the loss of the plain sum over the sequences, one at a time
        each = list(targets) if spec.mapping == "many-to-one" else list(np.moveaxis(targets, 1, 0))
        alone = [m.loss_and_grads(params, xs[:, b], each[b]) for b in range(B)]
        assert np.isclose(E, sum(e for e, _ in alone), rtol=1e-12), (B, E)
        # and the gradients, which the products back through V and into the inputs' weights make
        for name, g in grads.items():
            # dE/dx is each sequence's own; a parameter's gradient is the sum over the sequences
            parts = [gb[name] for _, gb in alone]
            each_g = np.stack(parts, axis=1) if name == "x" else sum(parts)
            assert np.allclose(g, each_g, rtol=1e-10, atol=1e-12), (B, name)
