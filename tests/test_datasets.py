"""rnngen.datasets: the examples' data, decoded and checked with Python's own integers."""

import numpy as np
import pytest

from rnngen.datasets import (
    CharVocab,
    binary_addition,
    char_chunks,
    char_text,
    parity,
    sentiment,
)


def _number(bits):
    """An integer from its bits, least significant first, in Python ints."""
    return sum(int(bit) << t for t, bit in enumerate(bits))


@pytest.mark.parametrize("n_bits", [1, 3, 8, 30])
def test_binary_addition_targets_are_the_sums(n_bits):
    N = 2**n_bits
    n = min(300, N * (N + 1) // 2)  # all the unordered pairs of small widths
    train, test = binary_addition(n_bits, n_train=n - n // 2, n_test=n // 2, seed=1)
    for split in (train, test):
        T, B, two = split.xs.shape
        assert (T, two) == (n_bits + 1, 2) and split.targets.shape == (T, B)
        assert set(np.unique(split.xs)) <= {0.0, 1.0} and set(np.unique(split.targets)) <= {0, 1}
        assert (split.xs[-1] == 0).all()  # the last step reads zeros: it emits the carry
        for b in range(B):
            a, c = _number(split.xs[:, b, 0]), _number(split.xs[:, b, 1])
            assert a < 2**n_bits and c < 2**n_bits
            assert _number(split.targets[:, b]) == a + c


def test_binary_addition_held_out_pairs_are_new_even_swapped():
    train, test = binary_addition(4, n_train=100, n_test=36, seed=3)  # 136 = every unordered 4-bit pair

    def pairs(split):
        return [frozenset((_number(split.xs[:, b, 0]), _number(split.xs[:, b, 1]))) for b in range(split.xs.shape[1])]

    seen, held = pairs(train), pairs(test)
    assert len(set(seen)) == len(seen) and len(set(held)) == len(held)  # no repeats within a split
    assert not set(seen) & set(held)
    assert len(set(seen) | set(held)) == 136  # drawn from all of them
    orders = [_number(train.xs[:, b, 0]) < _number(train.xs[:, b, 1]) for b in range(100)]
    assert 20 < sum(orders) < 80  # both orders are shown


def test_binary_addition_is_seeded_and_typed():
    a, _ = binary_addition(8, 50, 10, seed=5, dtype=np.float32)
    b, _ = binary_addition(8, 50, 10, seed=5, dtype=np.float32)
    c, _ = binary_addition(8, 50, 10, seed=6)
    assert a.xs.dtype == np.float32 and c.xs.dtype == np.float64
    np.testing.assert_array_equal(a.xs, b.xs)
    assert not np.array_equal(a.xs, c.xs.astype(np.float32))


@pytest.mark.parametrize("n_bits, min_bits", [(1, 1), (5, 1), (5, 3), (6, 6), (12, 1)])
def test_parity_is_true_and_held_out_disjoint(n_bits, min_bits):
    n_test = min(64, 2 ** (n_bits - 1))
    train, test = parity(n_bits, n_train=300, n_test=n_test, seed=2, min_bits=min_bits)
    for split in (train, test):
        T, B, one = split.xs.shape
        assert (T, one) == (n_bits, 1) and split.targets.shape == split.lengths.shape == (B,)
        for b in range(B):
            bits = [int(v) for v in split.xs[:, b, 0]]
            n = int(split.lengths[b])
            assert min_bits <= n <= n_bits and not any(bits[n:])  # zeros after the string
            assert split.targets[b] == sum(bits[:n]) % 2
    assert train.xs.shape[1] == 300 and test.xs.shape[1] == n_test
    assert (test.lengths == n_bits).all()
    if min_bits < n_bits:  # every training length occurs
        assert set(train.lengths.tolist()) == set(range(min_bits, n_bits + 1))
    seen = {tuple(train.xs[:, b, 0]) for b in range(300)}
    held = {tuple(test.xs[:, b, 0]) for b in range(n_test)}
    assert len(held) == n_test and not seen & held


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: binary_addition(0), r"n_bits must be a whole number in 1..30, got 0"),
        (lambda: binary_addition(31), r"n_bits must be a whole number in 1..30"),
        (lambda: binary_addition(2, n_train=8, n_test=3), "2-bit addition has 10 distinct examples"),
        (lambda: binary_addition(8, n_train=0), "n_train must be a whole number >= 1"),
        (lambda: binary_addition(8, dtype=np.int32), "dtype must be a float type"),
        (lambda: parity(8, dtype="bits"), "dtype must be a float type"),
        (lambda: parity(3, n_test=5), r"n_test must be a whole number in 0..4, got 5"),
        (lambda: parity(63), r"n_bits must be a whole number in 1..62"),
        (lambda: parity(4, min_bits=5), r"min_bits must be a whole number in 1..4, got 5"),
        (lambda: char_chunks(np.arange(10), 5, 2), "10 ids are too few for one window of T = 5 steps over B = 2"),
        (lambda: char_chunks(np.arange(10), 0, 1), "T must be a whole number >= 1"),
        (lambda: char_chunks(np.ones(10), 2, 1), "ids must be a flat array of whole numbers"),
        (lambda: CharVocab("ab").encode("abc"), "the character 'c' is not in the vocabulary"),
        (lambda: CharVocab("ab").decode([0, 2]), r"ids must lie in 0..1"),
        (lambda: CharVocab.from_text(""), "text must be a non-empty string"),
    ],
)
def test_bad_input_says_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sentiment_is_seed_004():
    data = sentiment()
    assert data.vocab == ("cat", "mat", "rat")
    assert data.sentences == ("cat mat rat", "rat rat mat", "mat mat cat")
    assert data.labels.tolist() == [1, 1, 0]
    # seed 004's X column, sentence by sentence: cat [100], mat [010], rat [001]
    rows = {"cat": [1, 0, 0], "mat": [0, 1, 0], "rat": [0, 0, 1]}
    for b, sentence in enumerate(data.sentences):
        words = sentence.split()
        assert [data.vocab[i] for i in data.ids[:, b]] == words
        assert data.one_hot[:, b].tolist() == [rows[w] for w in words]
    assert data.ids.shape == (3, 3) and data.one_hot.shape == (3, 3, 3)


def test_the_text_ships_and_round_trips():
    text = char_text()
    assert 5_000 <= len(text.encode()) <= 20_000
    vocab = CharVocab.from_text(text)
    assert vocab.chars == "".join(sorted(set(text))) and vocab.size == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.max() == vocab.size - 1
    assert vocab.decode(ids) == text


@pytest.mark.parametrize("T, B", [(25, 1), (25, 4), (7, 3)])
def test_chunks_carry_each_track_on_and_targets_are_the_next_character(T, B):
    text = char_text()
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    xs, targets = char_chunks(ids, T, B)
    K = xs.shape[0]
    assert xs.shape == targets.shape == (K, T, B)
    track = (len(ids) - 1) // B
    assert K == track // T
    for b in range(B):
        walked = xs[:, :, b].reshape(-1)  # window after window, as the state is carried
        start = b * track
        np.testing.assert_array_equal(walked, ids[start : start + K * T])
        np.testing.assert_array_equal(targets[:, :, b].reshape(-1), ids[start + 1 : start + K * T + 1])
    if B > 1:  # the tracks cover different parts of the text
        assert not np.array_equal(xs[:, :, 0], xs[:, :, 1])
