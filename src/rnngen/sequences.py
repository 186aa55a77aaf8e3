"""Token sequences of different lengths, made into the arrays a generated module takes.

A generated module reads a batch time-major: token ids ``(T, B)`` with the ``(B,)`` lengths of
real steps (or a ``(T, B)`` boolean mask), its sequences padded after their last token unless
it was derived with ``--padding pre``. ``pad_sequences`` builds these from lists of ids, padding
and truncating to ``max_len`` as the many-to-one lecture (seed 003) shows::

    >>> ids, lengths = pad_sequences([[43, 96, 2, 78, 43], [11, 51, 9, 52, 6, 1, 75, 29]], max_len=7)
    >>> ids.T.tolist(), lengths.tolist()
    ([[43, 96, 2, 78, 43, 0, 0], [11, 51, 9, 52, 6, 1, 75]], [5, 7])

Every sequence keeps at least one token: a sequence with no real step has no last step to read
and no loss to count, so empty sequences and zero lengths are refused.

NumPy only, like ``rnngen.optim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SIDES = ("post", "pre")


def _side(name: str, value: object) -> str:
    if value not in _SIDES:
        raise ValueError(f"{name} must be 'post' or 'pre', got {value!r}")
    return value


def _whole(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _ids(b: int, seq: object) -> np.ndarray:
    """One sequence as a 1-D int64 array of ids >= 0, else a ValueError naming it."""
    if isinstance(seq, (str, bytes)):
        raise ValueError(f"sequences[{b}] is a string; give each sequence as a list of token ids")
    a = np.asarray(seq)
    if a.ndim != 1:
        raise ValueError(f"sequences[{b}] has shape {a.shape}; each sequence must be a flat list of token ids")
    if a.size == 0:
        raise ValueError(f"sequences[{b}] is empty; each sequence needs at least one token id")
    if a.dtype.kind not in "iu":
        raise ValueError(f"sequences[{b}] holds {a.dtype} values; token ids are whole numbers >= 0")
    if a.min() < 0:
        raise ValueError(f"sequences[{b}] holds the id {a.min()}; token ids are whole numbers >= 0")
    return a.astype(np.int64, copy=False)


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    max_len: int | None = None,
    *,
    padding: str = "post",
    truncating: str = "post",
    value: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad and truncate lists of token ids to one length, time-major.

    Args:
        sequences: the sequences, each a list (or 1-D array) of token ids >= 0, none empty
            (or a 2-D array, one sequence per row).
        max_len: the length T to pad and truncate to; default the longest sequence's length.
        padding: ``"post"`` puts the padding after each sequence's tokens, ``"pre"`` before
            (default ``"post"``, as seed 003 and the generated modules' default; some
            libraries default to ``"pre"``).
        truncating: ``"post"`` keeps the first ``max_len`` tokens of a longer sequence,
            ``"pre"`` the last ones (default ``"post"``, as seed 003).
        value: the id the padded steps hold (default 0). Padded steps are masked, so it only
            has to be a valid id.

    Returns:
        ``(ids, lengths)``: the ids ``(T, B)`` (int64), column b holding sequence b, and the
        number of real steps of each sequence after truncation, ``(B,)`` int64. Give the
        module ``lengths=lengths``, or ``mask=mask_from_lengths(lengths, T, padding)``.

    Raises:
        ValueError: no sequences, an empty sequence, an id that is not a whole number >= 0,
            ``max_len`` < 1, or a ``padding`` or ``truncating`` other than "post" or "pre".
    """
    padding, truncating = _side("padding", padding), _side("truncating", truncating)
    value = _whole("value", value, 0)
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        sequences = list(sequences)  # rows of equal length, one sequence each
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Sequence) or not sequences:
        raise ValueError("sequences must be a non-empty list of sequences of token ids")
    seqs = [_ids(b, s) for b, s in enumerate(sequences)]
    T = max(len(s) for s in seqs) if max_len is None else _whole("max_len", max_len, 1)
    ids = np.full((T, len(seqs)), value, dtype=np.int64)
    lengths = np.empty(len(seqs), dtype=np.int64)
    for b, s in enumerate(seqs):
        if len(s) > T:
            s = s[:T] if truncating == "post" else s[len(s) - T :]
        n = lengths[b] = len(s)
        if padding == "post":
            ids[:n, b] = s
        else:
            ids[T - n :, b] = s
    return ids, lengths


def mask_from_lengths(lengths: Sequence[int] | np.ndarray, T: int, padding: str = "post") -> np.ndarray:
    """The ``(T, B)`` boolean mask, true on real steps, of sequences with these lengths.

    Args:
        lengths: ``(B,)`` the number of real steps of each sequence, each in 1..T.
        T: the padded length.
        padding: where the padding is, ``"post"`` (after the tokens, the default) or ``"pre"``.

    Returns:
        ``mask`` with ``mask[t, b]`` true for the ``lengths[b]`` real steps of sequence b: its
        first ones with post-padding, its last ones with pre-padding.
    """
    padding = _side("padding", padding)
    T = _whole("T", T, 1)
    n = np.asarray(lengths)
    if n.ndim != 1 or n.size == 0 or n.dtype.kind not in "iu":
        raise ValueError(f"lengths must be a non-empty (B,) array of whole numbers, got shape {n.shape} of {n.dtype}")
    if n.min() < 1 or n.max() > T:
        bad = n[(n < 1) | (n > T)][0]
        raise ValueError(f"lengths must lie in 1..T = 1..{T}, got {bad}")
    t = np.arange(T)[:, None]
    return t < n if padding == "post" else t >= T - n


def one_hot(ids: np.ndarray | Sequence[int], n: int, dtype: type = np.float64) -> np.ndarray:
    """One-hot rows of token ids: shape ``ids.shape + (n,)``.

    Args:
        ids: token ids in 0..n-1, any shape (``(T, B)`` gives ``(T, B, n)``).
        n: the number of tokens (the vocabulary's size, the module's ``n_x``).
        dtype: the float dtype of the rows (default float64).
    """
    n = _whole("n", n, 1)
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"ids hold {a.dtype} values; token ids are whole numbers in 0..{n - 1}")
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"ids must lie in 0..{n - 1}, got {a.min() if a.min() < 0 else a.max()}")
    return np.eye(n, dtype=dtype)[a]
