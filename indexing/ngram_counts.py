"""N-gram counts as two sorted numpy arrays: the diacritic restorer's tables without Python dicts.

A restorer built from all of viwiki holds 1.2M bigrams and 4.1M trigrams. As ``dict[int, int]`` they took
~600 MB and ~10 s to load; as sorted ``int64`` keys + counts they take 16 bytes each, load as the arrays
saved, and are looked up many keys at a time (:meth:`NgramCounts.lookup`, one :func:`numpy.searchsorted`).

Keys are what :class:`indexing.restorer.DiacriticRestorer` uses: ``a*V+b`` (bigrams) and ``(a*V+b)*V+c``
(trigrams) over vocabulary ids. :func:`history_stats` gives, per history (``key // V``), the total count and the
number of distinct continuations — Kneser-Ney's back-off mass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

__all__ = ["NgramCounts", "history_stats"]


class NgramCounts:
    """Read-only ``key -> count`` over sorted unique int64 keys (in: keys and counts in any order, or a
    mapping via :meth:`from_mapping`; duplicate keys raise ValueError)."""

    __slots__ = ("keys_", "counts")

    def __init__(self, keys: np.ndarray, counts: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        counts = np.asarray(counts, dtype=np.int64).ravel()
        if keys.shape != counts.shape:
            raise ValueError(f"{keys.size} keys but {counts.size} counts")
        if keys.size > 1 and not bool((keys[1:] > keys[:-1]).all()):
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
            if bool((keys[1:] == keys[:-1]).any()):
                raise ValueError("duplicate n-gram keys")
        self.keys_, self.counts = keys, counts

    @classmethod
    def from_mapping(cls, table: Mapping[int, int] | NgramCounts | None) -> NgramCounts:
        """A dict (or None: empty) → counts; an :class:`NgramCounts` is returned as is."""
        if isinstance(table, NgramCounts):
            return table
        table = table or {}
        return cls(np.fromiter(table.keys(), dtype=np.int64, count=len(table)),
                   np.fromiter(table.values(), dtype=np.int64, count=len(table)))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Counts of ``keys`` (any shape, int64), 0 for keys not present."""
        keys = np.asarray(keys, dtype=np.int64)
        if self.keys_.size == 0:
            return np.zeros(keys.shape, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys_, keys), self.keys_.size - 1)
        return np.where(self.keys_[pos] == keys, self.counts[pos], 0)

    def get(self, key: int, default: int = 0) -> int:
        """One key's count (``default`` when absent)."""
        pos = int(np.searchsorted(self.keys_, key))
        return int(self.counts[pos]) if pos < self.keys_.size and self.keys_[pos] == key else default

    def keys(self) -> Iterator[int]:
        return iter(self.keys_.tolist())

    def values(self) -> Iterator[int]:
        return iter(self.counts.tolist())

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(self.keys_.tolist(), self.counts.tolist(), strict=True)

    def __len__(self) -> int:
        return int(self.keys_.size)

    def __bool__(self) -> bool:
        return self.keys_.size > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            other = NgramCounts.from_mapping(other)
        if not isinstance(other, NgramCounts):
            return NotImplemented
        return bool(np.array_equal(self.keys_, other.keys_) and np.array_equal(self.counts, other.counts))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NgramCounts({len(self)} keys)"


def history_stats(table: NgramCounts, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per history ``h = key // base`` of ``table``: (the sorted distinct histories, their total counts, their
    numbers of distinct continuations), all int64. The keys are sorted, so each history's keys are adjacent."""
    hist = table.keys_ // base
    if hist.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    starts = np.flatnonzero(np.r_[True, hist[1:] != hist[:-1]])
    totals = np.add.reduceat(table.counts, starts)
    types = np.diff(np.r_[starts, hist.size])
    return hist[starts], totals.astype(np.int64), types.astype(np.int64)
