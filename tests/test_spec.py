import pytest

from rnngen.spec import MAX_T, RNNSpec, SpecError, check_T


@pytest.mark.parametrize("value", [0, -3, "abc", "", MAX_T + 1, 2.5, True, None])
def test_bad_unroll_lengths_are_refused_with_the_allowed_range(value):
    with pytest.raises(SpecError, match=f"T must be a whole number from 1 to {MAX_T}"):
        check_T(value)


@pytest.mark.parametrize("value, expected", [(1, 1), ("7", 7), (MAX_T, MAX_T)])
def test_good_unroll_lengths(value, expected):
    assert check_T(value) == expected


def test_unknown_activation_names_the_valid_ones_and_the_closest():
    with pytest.raises(
        SpecError, match=r"unknown hidden activation 'tnah' \(did you mean 'tanh'\?\); choose one of: tanh"
    ):
        RNNSpec(T=5, hidden="tnah")


def test_name_and_digest_identify_the_spec():
    a, b = RNNSpec(T=5), RNNSpec(T=6)
    assert a.name == "rnn_tanh_softmax_xent_t5"
    assert a.digest() == RNNSpec(T=5).digest() != b.digest()
    assert a.cli_args() == "--T 5"


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        RNNSpec(T=5).T = 6
