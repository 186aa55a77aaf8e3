"""The three verifications on the generated modules, and proof that each one can fail."""

import numpy as np
import pytest

from rnngen import verify


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_exact_oracle_agrees_to_1e_12(module, T):
    result = verify.exact_oracle(module(T))
    assert result.loss <= 1e-12
    assert max(result.grads.values()) <= verify.EXACT_TOLERANCE, result.grads


@pytest.mark.parametrize("T", [1, 5, 20])
def test_finite_differences_at_the_required_sizes(module, T):
    m = module(T)
    params, xs, targets = verify.random_problem(m, (4, 5, 3, 2))
    errors = verify.finite_differences(m, params, xs, targets)
    assert set(errors) == {"U", "W", "V", "b", "c", "h0"}
    assert max(errors.values()) <= verify.FD_TOLERANCE, errors


@pytest.mark.parametrize("T", [1, 5, 20])
def test_taylor_remainder_shrinks_with_slope_two(module, T):
    m = module(T)
    params, xs, targets = verify.random_problem(m, (4, 5, 3, 2))
    assert verify.taylor_test(m, params, xs, targets) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("T", [1, 3, 5])
def test_recursive_form_and_sum_over_paths_agree(built, T):
    differences = verify.forms_agree(built(T))
    assert max(differences.values()) <= 1e-12, differences


# The step's product with tanh'(z_2) (hoisted into fprime) is the line that goes missing.
SLIP = ("    dz_[1] *= fprime_[1]\n", "")


def test_every_check_catches_a_dropped_activation_derivative(built, tmp_path):
    """The classic hand-derivation slip: one step of the backward recursion forgets tanh'."""
    text = built(3).module
    assert SLIP[0] in text
    path = tmp_path / "broken.py"
    path.write_text(text.replace(*SLIP))
    broken = verify.load_module(path)
    params, xs, targets = verify.random_problem(broken, (4, 5, 3, 2))
    fd = verify.finite_differences(broken, params, xs, targets)
    assert fd["W"] > 1e-2 and fd["U"] > 1e-2 and fd["h0"] > 1e-2
    assert fd["V"] <= verify.FD_TOLERANCE  # V does not pass through the broken step
    assert verify.taylor_test(broken, params, xs, targets) == pytest.approx(1.0, abs=0.1)
    assert verify.exact_oracle(broken).grads["W"] > 1e-2
    assert not verify.check_module(broken).ok


def test_a_nan_anywhere_fails_the_check_and_is_named():
    # max() skips a nan that is not first: [1e-16, nan] would have passed
    fd = {"U": 1e-10, "W": float("nan")}
    report = verify.Report(T=2, fd=fd, taylor=2.0, forms={"U": 1e-16, "W": 1e-16})
    assert not report.ok and report.failures == ["finite differences nan (limit 1e-06): wrong gradient of W"]
    report = verify.Report(T=2, fd={"U": 1e-10, "W": 1e-10}, taylor=2.0, forms={"U": 1e-16, "W": float("nan")})
    assert not report.ok and report.failures == ["paths vs recursion nan (limit 1e-12)"]
    exact = verify.OracleResult(loss=1e-30, grads={"U": 1e-30, "W": float("nan")})
    assert verify.Report(T=2, fd={"U": 1e-10}, taylor=2.0, exact=exact).failures[0].startswith("exact oracle nan")


def test_the_two_forms_agree_for_an_explosive_activation():
    import warnings

    from rnngen.pipeline import build
    from rnngen.spec import RNNSpec

    # exp(exp(...)) drives a probability of the plain softmax to 0 at the usual point
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for the user's terminal either
        forms = verify.forms_agree(build(RNNSpec(T=3, hidden="exp(x)")))
    assert all(e <= verify.FORMS_TOLERANCE for e in forms.values()), forms


def test_check_module_reports_ok_for_a_generated_module(module, built):
    report = verify.check_module(module(5), exact=True, build=built(5))
    assert report.ok and report.exact is not None and report.forms is not None


def test_load_module_refuses_non_rnngen_files(tmp_path):
    path = tmp_path / "other.py"
    path.write_text("x = 1\n")
    with pytest.raises(verify.VerificationError, match="not an rnngen module"):
        verify.load_module(path)
    path.write_text("def (:\n")
    with pytest.raises(verify.VerificationError, match="cannot be imported: SyntaxError"):
        verify.load_module(path)


def test_relative_error_is_normwise():
    assert verify.relative_error(np.array([1.0, 1e-30]), np.array([1.0, 0.0])) < 1e-29
