"""Incremental updates of the diacritic restorer's counts (:meth:`indexing.restorer.DiacriticRestorer.update`,
:func:`update_saved`): the changed texts are counted and the n-gram tables re-keyed with numpy, so a change
of k passages never re-reads the corpus (which is most of a build's restorer time)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from indexing.normalize import normalize
from indexing.restorer import _FORMAT_VERSION, _segments

__all__ = ["update_saved", "updated_tables"]


def update_saved(src: str | Path, dst: str | Path, added: Iterable[str] = (), removed: Iterable[str] = ()) -> Path:
    """:meth:`DiacriticRestorer.update` from the model saved at ``src`` to ``dst`` → ``dst``, on the saved arrays
    (no dictionaries, no model built: the cost is the changed texts plus vectorized passes over the tables).
    Written uncompressed (:meth:`DiacriticRestorer.load` reads both): compressing is most of a save's time."""
    with np.load(Path(src), allow_pickle=False) as data:
        version = data["version"]
        if int(version[0]) != _FORMAT_VERSION:
            raise ValueError(f"{src}: restorer format {int(version[0])}, expected {_FORMAT_VERSION}")
        tables = {"vocab": data["vocab"].tolist(), "unigram": data["unigram"],
                  "bigram": (data["bigram_keys"], data["bigram_counts"]),
                  "trigram": (data["trigram_keys"], data["trigram_counts"])}
    t = updated_tables(tables, added, removed, 3 if len(tables["trigram"][0]) else 2)
    dst = Path(dst)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
    np.savez(tmp, version=version, vocab=np.array(t["vocab"], dtype=str), unigram=t["unigram"],
             bigram_keys=t["bigram"][0], bigram_counts=t["bigram"][1], trigram_keys=t["trigram"][0],
             trigram_counts=t["trigram"][1])
    tmp.replace(dst)
    return dst


def updated_tables(tables: dict, added: Iterable[str], removed: Iterable[str], order: int) -> dict:
    """The counting of :meth:`DiacriticRestorer.update` on arrays: ``tables`` = ``vocab`` (list), ``unigram``,
    ``bigram``/``trigram`` = (keys, counts) over ``len(vocab)`` → the same for the changed corpus."""
    vocab: list[str] = tables["vocab"]
    V = len(vocab)
    index = {w: i for i, w in enumerate(vocab)}
    delta: dict[int, Counter[tuple[int, ...]]] = {1: Counter(), 2: Counter(), 3: Counter()}
    for sign, texts in ((1, added), (-1, removed)):
        for text in texts:
            for run in _segments(normalize(text).lower()):
                ids = [0] + [index.setdefault(s, len(index)) for s in run] + [1]
                for n in range(1, order + 1):
                    grams = zip(*(ids[i:] for i in range(n)), strict=False)
                    if n == 1:
                        grams = ((i,) for i in ids[1:-1])
                    for key in grams:
                        delta[n][key] += sign
    V1 = len(index)
    unigram = np.zeros(V1, dtype=np.int64)
    unigram[:V] = tables["unigram"]
    for (i,), c in delta[1].items():
        unigram[i] += c
    if (unigram < 0).any():
        raise ValueError("removed text was never counted (a syllable count would go below zero)")
    keep = unigram > 0
    keep[:2] = True
    remap = np.cumsum(keep) - 1  # id after dropping the forms no longer seen
    V2 = int(keep.sum())

    def rekey(keys: np.ndarray, vals: np.ndarray, d: Counter[tuple[int, ...]], n: int) -> tuple[np.ndarray, np.ndarray]:
        digits = _decode(keys, V, n)
        keys = _encode(digits, V1)
        if d:
            dk = _encode([np.array([g[j] for g in d], dtype=np.int64) for j in range(n)], V1)
            keys, inverse = np.unique(np.concatenate([keys, dk]), return_inverse=True)
            vals = np.bincount(inverse, weights=np.concatenate([vals, np.fromiter(d.values(), dtype=np.int64)]),
                               minlength=len(keys)).round().astype(np.int64)
            if (vals < 0).any():
                raise ValueError("removed text was never counted (an n-gram count would go below zero)")
            keys, vals = keys[vals > 0], vals[vals > 0]
        if V2 != V1:
            keys = _encode([remap[x] for x in _decode(keys, V1, n)], V2)
        return keys, vals.astype(np.int64)

    return {"vocab": [w for w, i in index.items() if keep[i]], "unigram": unigram[keep],
            "bigram": rekey(*tables["bigram"], delta[2], 2),
            "trigram": rekey(*tables["trigram"], delta[3], 3) if order == 3 else
            (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))}


def _decode(keys: np.ndarray, base: int, n: int) -> list[np.ndarray]:
    """Table keys → ``n`` arrays of vocabulary ids, most significant first."""
    digits = []
    keys = np.asarray(keys, dtype=np.int64)
    for _ in range(n):
        keys, d = np.divmod(keys, base)
        digits.append(d)
    return digits[::-1]


def _encode(digits: list[np.ndarray], base: int) -> np.ndarray:
    """Vocabulary ids (most significant first) → the n-gram table keys (``a*V+b``, ``(a*V+b)*V+c``)."""
    key = np.zeros_like(digits[0], dtype=np.int64)
    for d in digits:
        key = key * base + d
    return key
