"""The Python API: rnngen.derive takes what `rnngen derive` takes, rnngen.load imports a generated module."""

import dataclasses
import inspect
import subprocess
import sys

import click
import numpy as np
import pytest

import rnngen
from rnngen import api, cli, verify
from rnngen.spec import RNNSpec, check_names

#: The CLI's `--out` writes into generated/ by default; in Python nothing is written unless asked.
DEFAULTS_THAT_DIFFER = {"out": ("generated", None)}


def _derive_options():
    return [p for p in cli.cli.commands["derive"].params if p.name not in cli.OUTPUT_PARAMS]


def test_every_derive_option_is_a_keyword_of_the_same_meaning():
    command = cli.cli.commands["derive"]
    context = click.Context(command)
    signature = inspect.signature(rnngen.derive)
    spec_defaults = {f.name: f.default for f in dataclasses.fields(RNNSpec)}
    names = set()
    for param in _derive_options():
        names.add(param.name)
        default = param.get_default(context)
        assert param.name in signature.parameters, f"rnngen.derive lacks {param.name}= for {param.opts[0]}"
        keyword = signature.parameters[param.name]
        if param.name == "T":
            # optional in both: a --preset (preset=) gives its seed's T, and either says when neither is given
            assert not param.required and keyword.default is None
            continue
        assert keyword.kind is inspect.Parameter.KEYWORD_ONLY, param.name
        assert keyword.annotation is not inspect.Parameter.empty, param.name  # typed: an IDE lists them
        cli_default, api_default = DEFAULTS_THAT_DIFFER.get(param.name, (default, default))
        if param.name == "names":
            assert check_names(default) == check_names(keyword.default) == spec_defaults["names"]
            continue
        assert default == cli_default and keyword.default == api_default, param.name
        if param.name in spec_defaults:
            assert default == spec_defaults[param.name], param.name
    assert set(signature.parameters) - names == {"progress"}  # the API's one extra: a progress callback


def test_derive_writes_the_same_files_as_the_command(tmp_path):
    d = rnngen.derive(T=2, hidden="sigmoid", out=tmp_path / "api", markdown=True, exact=True)
    assert d.report.ok and d.report.exact is not None
    cmd = [sys.executable, "-m", "rnngen", "derive", "--T", "2", "--hidden", "sigmoid", "--markdown", "--no-check"]
    assert subprocess.run([*cmd, "--out", str(tmp_path / "cli")], capture_output=True).returncode == 0
    written = sorted(p.name for p in (tmp_path / "api").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in d.written)
    for name in written:
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()


def test_derive_writes_nothing_when_the_check_fails(tmp_path, monkeypatch):
    def failing(build, exact=False, **kwargs):
        return verify.Report(T=build.spec.T, fd={"U": 1e-2}, taylor=1.0)

    monkeypatch.setattr(api, "check_build", failing)
    with pytest.raises(api.CheckFailed, match="finite differences 1.0e-02") as caught:
        rnngen.derive(T=2, out=tmp_path)
    assert isinstance(caught.value, rnngen.VerificationError) and not caught.value.report.ok
    assert list(tmp_path.iterdir()) == []
    assert rnngen.derive(T=2, out=tmp_path, check=False).report is None  # check=False: written unverified
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".py", ".tex"]


def test_progress_reports_each_stage_and_each_check(tmp_path):
    # needs verify's check_build(..., progress=) (the "module" helper's change)
    lines = []
    rnngen.derive(T=2, out=tmp_path, exact=True, progress=lines.append)
    assert lines[0].startswith("deriving rnn_tanh_softmax_xent_t2") and lines[-1] == f"writing into {tmp_path}"
    checking = lines.index("checking the gradients (and the exact oracle)")
    assert len(lines) - checking > 2  # verify's own lines come between checking and writing


def test_the_errors_users_catch_are_exported():
    with pytest.raises(rnngen.SpecError, match="T must be a whole number"):
        rnngen.derive(T=0)
    with pytest.raises(rnngen.SpecError, match="did you mean 'tanh'"):
        rnngen.derive(T=2, hidden="tahn")
    with pytest.raises(ValueError, match="give out"):
        rnngen.derive(T=2, markdown=True)
    assert {"SpecError", "VerificationError", "OutputError", "derive", "load"} <= set(rnngen.__all__)


def test_load_imports_a_generated_module_from_any_path(tmp_path):
    d = rnngen.derive(T=3, out=tmp_path / "some" / "where", latex=False, check=False)
    (path,) = d.written
    before = set(sys.modules)
    module = rnngen.load(path)
    assert module.__name__ == "rnn_tanh_softmax_xent_t3" and module.__file__ == str(path)
    assert set(sys.modules) == before  # the caller's namespace is left alone
    params = module.init_params(n_x=3, n_h=4, n_y=2, seed=0)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((3, 2, 3))
    targets = rng.integers(0, 2, size=(3, 2))
    loss, grads = module.loss_and_grads(params, xs, targets)
    ref_loss, ref_grads = d.module().loss_and_grads(params, xs, targets)  # the same text, imported from memory
    assert loss == ref_loss and all(np.array_equal(grads[k], ref_grads[k]) for k in ref_grads)


def test_load_refuses_what_is_not_a_generated_module(tmp_path):
    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    with pytest.raises(ValueError, match="other.py is not a module generated by rnngen"):
        rnngen.load(other)
    with pytest.raises(FileNotFoundError, match="missing.py does not exist"):
        rnngen.load(tmp_path / "missing.py")
