"""The data of the training examples, made as a generated module takes it (time-major, NumPy only).

- ``binary_addition``: two n-bit numbers in, their sum out, bit by bit (seed 001, many-to-many);
- ``parity``: a bit string in, the parity of its ones out (seed 001, many-to-one);
- ``sentiment``: seed 004's three sentences over the words cat, mat, rat, and their labels;
- ``char_text``, ``CharVocab``, ``char_chunks``: a short text shipped with rnngen, its characters
  as ids, and its windows of T steps for training with the state carried from one to the next.

Everything random takes a ``seed`` and draws from ``np.random.default_rng(seed)``, so the data
of an example is the same on every run and every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

from rnngen.sequences import one_hot


@dataclass(frozen=True)
class Split:
    """Examples as a generated module takes them.

    Attributes:
        xs: the inputs, ``(T, B, n_x)``.
        targets: class indices, ``(T, B)`` for a target per step or ``(B,)`` for one per sequence.
        lengths: ``(B,)`` the real steps of each sequence, padding after them, where the
            sequences have different lengths; None where every one has T steps.
    """

    xs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None = None


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    """A whole number in low..high, else a one-line ValueError that gives the range."""
    whole = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not whole or value < low or (high is not None and value > high):
        allowed = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number {allowed}, got {value!r}")
    return int(value)


def _float_dtype(dtype: object) -> np.dtype:
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d.kind != "f":
        raise ValueError(f"dtype must be a float type (float32 or float64), got {d}")
    return d


def _counts(what: str, n_train: int, n_test: int, available: int) -> tuple[int, int]:
    n_train, n_test = _whole("n_train", n_train, 1), _whole("n_test", n_test, 0)
    if n_train + n_test > available:
        raise ValueError(f"{what} has {available} distinct examples; n_train + n_test = {n_train + n_test} is more")
    return n_train, n_test


def _bits(values: np.ndarray, T: int) -> np.ndarray:
    """``(T, B)`` the bits of each value, least significant first."""
    return (values[None, :] >> np.arange(T, dtype=np.int64)[:, None]) & 1


def binary_addition(
    n_bits: int = 8, n_train: int = 2000, n_test: int = 1000, seed: int = 0, dtype: object = np.float64
) -> tuple[Split, Split]:
    """Add two n-bit numbers bit by bit, least significant bit first (seed 001).

    At step t the network reads bit t of each operand and emits bit t of the sum: the carry is
    its state, one rule for every width, where an MLP reading all bits at once would have to
    learn each width's carries anew (seed 001's argument). There are
    ``T = n_bits + 1`` steps: the last reads zeros and emits the final carry.

    The held-out split shares no pair with the training split, not even swapped: the pairs
    ``{a, b}`` are drawn without replacement from the ``2^n (2^n + 1) / 2`` unordered pairs,
    and each is shown in a random order.

    Args:
        n_bits: the width of the operands, 1..30.
        n_train: how many training pairs.
        n_test: how many held-out pairs (0 for none).
        seed: the seed of the generator.
        dtype: the float dtype of ``xs``.

    Returns:
        ``(train, test)``, each a ``Split`` with ``xs`` ``(n_bits + 1, B, 2)``, the two operands'
        bits, and ``targets`` ``(n_bits + 1, B)``, the sum's bits as class indices 0/1 (for a
        softmax over two classes; ``one_hot(targets, 2)`` gives the rows).
    """
    n_bits = _whole("n_bits", n_bits, 1, 30)
    dtype = _float_dtype(dtype)
    N = 1 << n_bits
    n_train, n_test = _counts(f"{n_bits}-bit addition", n_train, n_test, N * (N + 1) // 2)
    rng = np.random.default_rng(seed)
    # unordered pair number k = hi (hi + 1) / 2 + lo with lo <= hi: a triangle, read back with isqrt
    picks = rng.choice(N * (N + 1) // 2, size=n_train + n_test, replace=False)
    hi = np.array([(math.isqrt(8 * int(k) + 1) - 1) // 2 for k in picks], dtype=np.int64)
    lo = picks.astype(np.int64) - hi * (hi + 1) // 2
    swap = rng.random(len(picks)) < 0.5
    a, b = np.where(swap, lo, hi), np.where(swap, hi, lo)
    T = n_bits + 1
    xs = np.stack([_bits(a, T), _bits(b, T)], axis=-1).astype(dtype)
    targets = _bits(a + b, T)
    train = Split(np.ascontiguousarray(xs[:, :n_train]), np.ascontiguousarray(targets[:, :n_train]))
    return train, Split(np.ascontiguousarray(xs[:, n_train:]), np.ascontiguousarray(targets[:, n_train:]))


def parity(
    n_bits: int = 8,
    n_train: int = 2000,
    n_test: int = 64,
    seed: int = 0,
    dtype: object = np.float64,
    min_bits: int = 1,
) -> tuple[Split, Split]:
    """The parity of the ones in a bit string, read one bit per step (seed 001).

    The held-out strings all have ``n_bits`` bits and are distinct. The training strings have
    lengths drawn evenly from ``min_bits..n_bits``, zeros after their last bit (which leaves
    the parity as it is, so a module with or without ``lengths`` reads the same target at step
    T): the short ones teach the recurrence one step at a time, and training succeeds from
    more initial weights than on full-length strings alone (``min_bits = n_bits``), where
    gradient descent often memorises its strings instead. Training strings are drawn
    independently (there are only two of length 1), so they may repeat; none, as padded to
    ``n_bits``, is a held-out string.

    Args:
        n_bits: the length T of the strings, 1..62.
        n_train: how many training strings.
        n_test: how many held-out strings, at most half of the ``2^n_bits`` (0 for none).
        seed: the seed of the generator.
        dtype: the float dtype of ``xs``.
        min_bits: the shortest training string, 1..n_bits.

    Returns:
        ``(train, test)``, each a ``Split`` with ``xs`` ``(n_bits, B, 1)``, the bits,
        ``targets`` ``(B,)``, 1 where the count of ones is odd (class indices, many-to-one),
        and ``lengths`` ``(B,)``, the bits of each string before its padding.
    """
    n_bits = _whole("n_bits", n_bits, 1, 62)
    min_bits = _whole("min_bits", min_bits, 1, n_bits)
    dtype = _float_dtype(dtype)
    n_train = _whole("n_train", n_train, 1)
    n_test = _whole("n_test", n_test, 0, 1 << (n_bits - 1))
    rng = np.random.default_rng(seed)
    held = rng.choice(1 << n_bits, size=n_test, replace=False).astype(np.int64)
    codes, lengths = np.empty(0, np.int64), np.empty(0, np.int64)
    while len(codes) < n_train:  # each round keeps at least a share 1 / (2 n_bits) of its draws
        n = rng.integers(min_bits, n_bits + 1, size=n_train)
        c = rng.integers(0, 1 << n_bits, size=n_train, dtype=np.int64) & ((np.int64(1) << n) - 1)
        keep = ~np.isin(c, held)
        codes, lengths = np.concatenate([codes, c[keep]]), np.concatenate([lengths, n[keep]])
    splits = []
    for c, n in ((codes[:n_train], lengths[:n_train]), (held, np.full(n_test, n_bits, np.int64))):
        bits = _bits(c, n_bits)
        splits.append(Split(bits[:, :, None].astype(dtype), bits.sum(axis=0) % 2, n))
    return splits[0], splits[1]


#: Seed 004's vocabulary, in the order of its one-hot vectors [100], [010], [001].
SENTIMENT_VOCAB = ("cat", "mat", "rat")
#: Seed 004's sentences and their labels.
SENTIMENT_SENTENCES = ("cat mat rat", "rat rat mat", "mat mat cat")
SENTIMENT_LABELS = (1, 1, 0)


@dataclass(frozen=True)
class Sentiment:
    """Seed 004's sentiment toy as arrays.

    Attributes:
        vocab: the words, in the order of their ids.
        sentences: the three sentences.
        ids: ``(3, 3)`` the words' ids, time-major (column b is sentence b).
        one_hot: ``(3, 3, 3)`` the same as one-hot rows, as seed 004 writes its x.
        labels: ``(3,)`` the labels 1, 1, 0 as integers; ``labels[:, None]`` is the target of
            a sigmoid output with binary cross-entropy, as in seed 004.
    """

    vocab: tuple[str, ...]
    sentences: tuple[str, ...]
    ids: np.ndarray
    one_hot: np.ndarray
    labels: np.ndarray


def sentiment(dtype: object = np.float64) -> Sentiment:
    """Seed 004's three sentences over cat, mat, rat, with their labels.

    Args:
        dtype: the float dtype of the one-hot rows.
    """
    dtype = _float_dtype(dtype)
    index = {w: i for i, w in enumerate(SENTIMENT_VOCAB)}
    ids = np.array([[index[w] for w in s.split()] for s in SENTIMENT_SENTENCES], dtype=np.int64).T
    return Sentiment(
        vocab=SENTIMENT_VOCAB,
        sentences=SENTIMENT_SENTENCES,
        ids=ids,
        one_hot=one_hot(ids, len(SENTIMENT_VOCAB), dtype),
        labels=np.array(SENTIMENT_LABELS, dtype=np.int64),
    )


#: The text shipped for the character-level example (in rnngen/data/).
CHAR_TEXT = "lighthouse.txt"


def char_text() -> str:
    """The text shipped with rnngen for the character-level example (8.5 KB of English prose written for it)."""
    return (resources.files("rnngen") / "data" / CHAR_TEXT).read_text(encoding="utf-8")


@dataclass(frozen=True)
class CharVocab:
    """The characters of a text, each with an id: its place in ``chars``.

    Attributes:
        chars: the distinct characters, sorted.
    """

    chars: str

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of the characters ``text`` uses."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        """How many characters: the ``n_x`` and ``n_y`` of a character-level module."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of ``text``, ``(len(text),)`` int64."""
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return np.array([index[c] for c in text], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"the character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """The text of a sequence of ids."""
        a = np.asarray(ids)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a flat sequence of whole numbers, got shape {a.shape} of {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.size):
            raise ValueError(f"ids must lie in 0..{self.size - 1}")
        return "".join(self.chars[i] for i in a.tolist())


def char_chunks(ids: np.ndarray, T: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a stream of ids into windows of T steps over B parallel tracks, for carried state.

    The stream is split into B tracks of equal length, one per batch column, and each track is
    walked T steps at a time, as the classic character-level loop walks its pointer: the
    targets are the inputs shifted by one character, and column b of window k + 1 continues
    exactly where column b of window k ended. So the final state of window k is the right
    initial state of window k + 1; start each pass over the windows from a zero state. The
    tail that does not fill a whole window is left out.

    Args:
        ids: the stream, ``(N,)`` whole numbers (``CharVocab.encode`` of a text).
        T: the steps per window (the module's T).
        B: the number of tracks (the batch).

    Returns:
        ``(xs, targets)``, each ``(K, T, B)`` int64: window k is ``xs[k]``, ``targets[k]``.
    """
    T, B = _whole("T", T, 1), _whole("B", B, 1)
    a = np.asarray(ids)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"ids must be a flat array of whole numbers, got shape {a.shape} of {a.dtype}")
    track = (len(a) - 1) // B  # each track needs one id more than it reads, for its last target
    K = track // T
    if K == 0:
        raise ValueError(f"{len(a)} ids are too few for one window of T = {T} steps over B = {B} tracks")
    starts = np.arange(B) * track
    steps = np.arange(K * T)
    where = starts[None, :] + steps[:, None]  # (K T, B): position of each input in the stream
    xs = a[where].astype(np.int64).reshape(K, T, B)
    targets = a[where + 1].astype(np.int64).reshape(K, T, B)
    return xs, targets
