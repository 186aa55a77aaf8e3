"""No name in a generated module has two meanings: every identifier the module uses, tried as a matrix name.

The identifiers come from the generated modules themselves (ast), not from a list: each is
either refused by ``check_names`` with one line, or gives a module whose loss, gradients and
forward values equal those of the module with the default names (``n_h == n_y``, so a weight
confused with another of the same shape would show).
"""

import ast
import types

import numpy as np
import pytest
from test_cli import assert_one_line_error, rnngen

from rnngen.network import network
from rnngen.pipeline import build
from rnngen.spec import RNNSpec, SpecError

SPECS = {
    "default": {},
    "row": {"notation": "row"},
    "sigmoid": {"hidden": "sigmoid"},
    "leaky_relu": {"hidden": "leaky_relu"},
    "custom": {"hidden": "x/(1+abs(x))"},
    "many_to_one": {"mapping": "many-to-one", "output": "identity", "loss": "squared_error"},
    "no_biases": {"hidden_bias": False, "output_bias": False, "output": "sigmoid", "loss": "binary_cross_entropy"},
    "layers": {"layers": 2, "input_grad": True},
    "bidirectional": {"bidirectional": True},
    "stacked": {"notation": "stacked", "layers": 2, "bidirectional": True},
    "truncated": {"truncate": 1, "layers": 2, "input_grad": True},  # the ages' families: dz1_a0, dh2_a1
}
SIZES = {"n_x": 3, "n_h": 4, "n_y": 4}  # n_h == n_y: W and V have the same shape
T, B = 2, 3


def _load(text: str, name: str):
    module = types.ModuleType(name)
    exec(compile(text, name, "exec"), module.__dict__)
    return module


def identifiers(text: str) -> set:
    """Every name the module text binds or reads: variables, arguments, functions, imports."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name)
    return found


_CACHE: dict = {}


def _reference(key: str):
    """The spec, its module with the default names, and the identifiers that are not a matrix name."""
    if key not in _CACHE:
        spec = RNNSpec(T=T, **SPECS[key])
        text = build(spec).module
        _CACHE[key] = spec, _load(text, spec.name), sorted(identifiers(text) - set(network(spec).params))
    return _CACHE[key]


def _problem(spec, m):
    rng = np.random.default_rng(1)
    params = m.init_params(**SIZES, seed=2)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}  # nonzero biases and h0
    xs = rng.standard_normal((T, B, SIZES["n_x"]))
    steps = (B,) if spec.mapping == "many-to-one" else (T, B)
    if spec.output == "softmax":
        targets = rng.integers(0, SIZES["n_y"], steps)
    elif spec.output == "sigmoid":
        targets = rng.uniform(0, 1, (*steps, SIZES["n_y"]))
    else:
        targets = rng.standard_normal((*steps, SIZES["n_y"]))
    return params, xs, targets


def _try(key: str, name: str, position: int) -> None:
    spec, reference, _ = _reference(key)
    names = list(spec.names)
    names[position] = name
    try:
        renamed_spec = RNNSpec(T=T, **SPECS[key], names=tuple(names))
    except SpecError as e:
        assert "\n" not in str(e) and name in str(e), str(e)
        return
    renamed = _load(build(renamed_spec).module, renamed_spec.name)
    params, xs, targets = _problem(spec, reference)
    rename = dict(zip(network(spec).params, network(renamed_spec).params))
    moved = {rename.get(k, k): v for k, v in params.items()}
    loss, grads = reference.loss_and_grads(params, xs, targets)
    loss2, grads2 = renamed.loss_and_grads(moved, xs, targets)
    assert loss2 == pytest.approx(loss, rel=1e-12), name
    assert sorted(grads2) == sorted([*moved, *(["x"] if spec.input_grad else [])])
    for k, g in grads.items():
        np.testing.assert_allclose(grads2[rename.get(k, k)], g, rtol=1e-12, atol=1e-14, err_msg=f"{name}: d{k}")
    assert renamed.loss(moved, xs, targets) == pytest.approx(loss, rel=1e-12), name
    out, out2 = reference.forward(params, xs), renamed.forward(moved, xs)
    for k in out:
        np.testing.assert_allclose(out2[k], out[k], rtol=1e-12, atol=1e-14, err_msg=f"{name}: forward {k}")


@pytest.mark.parametrize("key", SPECS)
def test_every_identifier_of_the_module_is_refused_or_harmless_as_a_matrix_name(key):
    # each identifier in one of the three places, in turn (the full run tries all three)
    for i, name in enumerate(_reference(key)[2]):
        _try(key, name, i % 3)


@pytest.mark.full
@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("key", SPECS)
def test_every_identifier_of_the_module_is_refused_or_harmless_in_every_place(key, position):
    for name in _reference(key)[2]:
        _try(key, name, position)


@pytest.mark.parametrize(
    "names, owner",
    [
        ("U,W,W_T", "derived from W"),  # the recurrent weight's transposed copy
        ("U,fprime,V", "per-step quantity"),  # the hoisted local Jacobians
        ("buf,W,V", "buffers"),
    ],
)
def test_the_names_of_the_issue_are_refused_with_one_line_and_nothing_written(tmp_path, names, owner):
    for unchecked in ((), ("--no-check",)):  # --no-check used to write the broken module
        result = rnngen("derive", "--T", "3", "--names", names, "--out", str(tmp_path / "out"), *unchecked)
        assert_one_line_error(result, "is used by rnngen itself", owner)
        assert not (tmp_path / "out").exists()


def test_a_name_like_another_matrix_s_gradient_or_derived_name_is_refused():
    for names, fragment in [("U,W,dW", "gradient of the parameter W"), ("U,W,h0_T", "derived from h0")]:
        with pytest.raises(SpecError, match=fragment):
            RNNSpec(T=2, names=names)
    assert RNNSpec(T=2, names="W_T,U,V").names == ("W_T", "U", "V")  # no matrix W: W_T is free


def test_every_family_and_every_name_derived_by_the_registry_is_refused():
    # a family added to the table, or a scratch the printer spells through names.py, is refused with no list to update
    from rnngen import names
    from rnngen.unroll import FAMILIES

    for family in FAMILIES:
        for taken in (family, names.step_scratch(family)):
            with pytest.raises(SpecError, match="is used by rnngen itself|is not allowed"):
                RNNSpec(T=2, names=("U", "W", taken))
    for taken in (names.transposed_copy("W"), names.gradient("W")):
        with pytest.raises(SpecError, match="is used by rnngen itself"):
            RNNSpec(T=2, names=("U", "W", taken))
    with pytest.raises(SpecError, match="is not allowed"):  # no matrix name ends with an underscore
        RNNSpec(T=2, names=("U", "W", names.step_views("V")))
