"""rnngen.sequences: padding and truncating token ids (seed 003), lengths, masks and one-hot rows."""

import numpy as np
import pytest

from rnngen.sequences import mask_from_lengths, one_hot, pad_sequences

S1 = [43, 96, 2, 78, 43]
S2 = [11, 51, 9, 52, 6, 1, 75, 29]


def test_seed_003_pads_and_truncates_to_max_len():
    ids, lengths = pad_sequences([S1, S2], max_len=7)
    assert ids.shape == (7, 2) and ids.dtype == np.int64  # time-major
    assert ids[:, 0].tolist() == [43, 96, 2, 78, 43, 0, 0]  # s1p, after padding
    assert ids[:, 1].tolist() == [11, 51, 9, 52, 6, 1, 75]  # s2p, after truncation
    assert lengths.tolist() == [5, 7]


@pytest.mark.parametrize(
    "padding, truncating, first, second",
    [
        ("post", "post", [43, 96, 2, 78, 43, 0, 0], [11, 51, 9, 52, 6, 1, 75]),
        ("pre", "post", [0, 0, 43, 96, 2, 78, 43], [11, 51, 9, 52, 6, 1, 75]),
        ("post", "pre", [43, 96, 2, 78, 43, 0, 0], [51, 9, 52, 6, 1, 75, 29]),
        ("pre", "pre", [0, 0, 43, 96, 2, 78, 43], [51, 9, 52, 6, 1, 75, 29]),
    ],
)
def test_padding_and_truncating_sides(padding, truncating, first, second):
    ids, lengths = pad_sequences([S1, S2], 7, padding=padding, truncating=truncating)
    assert ids.T.tolist() == [first, second]
    assert lengths.tolist() == [5, 7]


def test_default_length_is_the_longest_and_value_fills():
    ids, lengths = pad_sequences([[1], [2, 3], [4, 5, 6]], value=9)
    assert ids.T.tolist() == [[1, 9, 9], [2, 3, 9], [4, 5, 6]]
    assert lengths.tolist() == [1, 2, 3]


def test_accepts_arrays_and_rows_of_a_2d_array():
    ids, lengths = pad_sequences([np.array(S1, dtype=np.int32), np.array(S2, dtype=np.uint8)], 6)
    assert ids[:, 1].tolist() == S2[:6] and ids.dtype == np.int64
    ids, lengths = pad_sequences(np.array([[1, 2], [3, 4], [5, 6]]))
    assert ids.tolist() == [[1, 3, 5], [2, 4, 6]] and lengths.tolist() == [2, 2, 2]


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("truncating", ["post", "pre"])
def test_round_trip_through_the_mask(padding, truncating):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, size=n).tolist() for n in (1, 4, 9, 6, 12)]
    T = 8
    ids, lengths = pad_sequences(seqs, T, padding=padding, truncating=truncating)
    mask = mask_from_lengths(lengths, T, padding)
    for b, s in enumerate(seqs):
        kept = s if len(s) <= T else (s[:T] if truncating == "post" else s[-T:])
        assert ids[mask[:, b], b].tolist() == kept  # the real steps, in order
        assert (ids[~mask[:, b], b] == 0).all()  # the rest is padding


@pytest.mark.parametrize(
    "padding, expected",
    [
        ("post", [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]]),
        ("pre", [[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]]),
    ],
)
def test_mask_from_lengths(padding, expected):
    mask = mask_from_lengths(np.array([1, 2, 3]), 4, padding)
    assert mask.dtype == bool and mask.shape == (4, 3)
    assert mask.astype(int).tolist() == expected
    assert mask.sum(axis=0).tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pad_sequences([S1, [3, -1]]), r"sequences\[1\] holds the id -1; token ids are whole numbers >= 0"),
        (lambda: pad_sequences([S1, [1.5, 2.0]]), r"sequences\[1\] holds float64 values"),
        (lambda: pad_sequences([S1, []]), r"sequences\[1\] is empty"),
        (lambda: pad_sequences([S1, [[1, 2]]]), r"sequences\[1\] has shape \(1, 2\)"),
        (lambda: pad_sequences(["cat mat"]), r"sequences\[0\] is a string"),
        (lambda: pad_sequences([]), "sequences must be a non-empty list"),
        (lambda: pad_sequences([S1], max_len=0), "max_len must be a whole number >= 1, got 0"),
        (lambda: pad_sequences([S1], max_len=2.5), "max_len must be a whole number >= 1"),
        (lambda: pad_sequences([S1], padding="left"), "padding must be 'post' or 'pre', got 'left'"),
        (lambda: pad_sequences([S1], truncating="end"), "truncating must be 'post' or 'pre'"),
        (lambda: pad_sequences([S1], value=-1), "value must be a whole number >= 0"),
        (lambda: mask_from_lengths([2, 0], 3), r"lengths must lie in 1..T = 1..3, got 0"),
        (lambda: mask_from_lengths([2, 4], 3), r"lengths must lie in 1..T = 1..3, got 4"),
        (lambda: mask_from_lengths([2.0], 3), r"lengths must be a non-empty \(B,\) array of whole numbers"),
        (lambda: mask_from_lengths([[2]], 3), r"lengths must be a non-empty \(B,\) array"),
        (lambda: mask_from_lengths([2], 0), "T must be a whole number >= 1"),
        (lambda: mask_from_lengths([2], 3, "both"), "padding must be 'post' or 'pre'"),
        (lambda: one_hot([0, 3], 3), r"ids must lie in 0..2, got 3"),
        (lambda: one_hot([0.0], 3), "ids hold float64 values"),
    ],
)
def test_bad_input_says_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_one_hot():
    ids, _ = pad_sequences([[0, 2], [1]])
    rows = one_hot(ids, 3, dtype=np.float32)
    assert rows.shape == (2, 2, 3) and rows.dtype == np.float32
    assert rows.argmax(axis=-1).tolist() == ids.tolist()
    assert (rows.sum(axis=-1) == 1).all()
