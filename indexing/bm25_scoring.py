"""BM25 scoring over a Whoosh index's postings, vectorized with numpy: :class:`PostingScorer` and
:func:`lucene_idf` (the pure functions and the one class bm25s keeps apart from the index code).

Per field and term: ``boost · idf · tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))``, summed over the OR-ed
query terms, with Lucene's non-negative IDF (Whoosh's own ``log(N/(df+1)) + 1`` over-weights very frequent
syllables such as ``của``/``và``/``là``). The Whoosh ``BM25F`` model with this IDF is the test oracle
(``tests/comparison/``); production never runs Whoosh's per-document matcher.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from math import log
from typing import Any

import numpy as np
from whoosh.reading import TermNotFound
from whoosh.util.numeric import byte_to_length

__all__ = ["PostingScorer", "lucene_idf", "leaf_field_lengths"]

_LENGTH_OF_BYTE = np.array([0] + [byte_to_length(i) for i in range(1, 256)], dtype=np.float64)


def lucene_idf(n_docs: int, df: int) -> float:
    """Lucene/bm25s IDF ``log(1 + (N - df + 0.5) / (df + 0.5))`` (never negative)."""
    return log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def leaf_field_lengths(leaf: Any, field: str) -> np.ndarray:
    """Stored length of ``field`` for every docnum of one segment reader (float64), what
    ``leaf.doc_field_length(d, field) or 0`` gives document by document.

    Whoosh's W3 codec keeps the lengths as one byte per document in a column; read in one piece and decoded
    through a 256-entry table it takes ~1 ms per field at 118k passages where the per-document loop took
    ~0.2 s (paid by the first query after every open or edit). A reader without that column layout gets the
    per-document loop."""
    n = leaf.doc_count_all()
    column = _length_column(leaf, field)
    if column is not None:
        raw = np.frombuffer(column._dbfile.get(column._basepos, min(column._count, n)), dtype=np.uint8)
        out = np.zeros(n, dtype=np.float64)
        out[: raw.size] = _LENGTH_OF_BYTE[raw]
        return out
    return np.array([leaf.doc_field_length(d, field) or 0 for d in range(n)], dtype=np.float64)


def _length_column(leaf: Any, field: str) -> Any | None:
    """The W3 per-document reader's one-byte length column of ``field``, or None when not laid out so."""
    from whoosh.codec.whoosh3 import LENGTHS_COLUMN, _lenfield

    get = getattr(getattr(leaf, "_perdoc", None), "_cached_reader", None)
    column = get(_lenfield(field), LENGTHS_COLUMN) if get is not None else None
    if column is None or getattr(column, "_typecode", None) != "B" or getattr(column, "_fixedlen", None) != 1:
        return None
    return column if all(hasattr(column, a) for a in ("_dbfile", "_basepos", "_count")) else None


def _deleted_docnums(leaf: Any) -> np.ndarray:
    """Deleted docnums of one segment reader (int64)."""
    deleted = getattr(getattr(leaf, "_perdoc", None), "deleted_docs", None)
    if deleted is not None:
        return np.fromiter(deleted(), dtype=np.int64)
    return np.array([d for d in range(leaf.doc_count_all()) if leaf.is_deleted(d)], dtype=np.int64)


class PostingScorer:
    """Vectorized BM25F over one Whoosh searcher (per-field BM25 with :func:`lucene_idf`), computed with numpy.

    Whoosh's matcher tree scores document by document in Python, which costs seconds per query once frequent
    syllables (``là``, ``của``, ``người``...) match most of a 10k+ passage collection. This scorer reads each
    query term's posting list from the Whoosh segment once (block by block, cached), and scores all matching
    documents at once with the same inputs Whoosh uses: Lucene IDF from ``doc_frequency``/``doc_count_all``,
    Whoosh's stored (byte-quantized) field lengths, ``avg_field_length``, and query-term boosts. Deleted
    documents are skipped and left out of N, df and the average length (``live_lengths``: the exact live
    field-length totals an edited index records, :mod:`indexing.bm25_edit`), so an edited index scores as a
    rebuild of its live passages. Without deletions, results equal Whoosh's own ``searcher.search`` with a
    Lucene-IDF ``BM25F`` weighting (the oracle in ``tests/comparison/``), ties broken by docnum.
    """

    def __init__(self, searcher: Any, k1: float, b: float, cache_postings: int = 8_000_000,
                 live_lengths: dict[str, int] | None = None) -> None:
        self.searcher = searcher
        self.live_lengths = live_lengths
        self.k1, self.b = float(k1), float(b)
        reader = searcher.reader()
        self.n_all = reader.doc_count_all()
        self.n_live = reader.doc_count()
        self.leaves = reader.leaf_readers()
        self._lengths: dict[str, np.ndarray] = {}
        self._avg: dict[str, float] = {}
        self._postings: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached = 0
        self._budget = cache_postings
        self._live: np.ndarray | None = None
        self._idf: dict[tuple[str, str], float] = {}
        if reader.has_deletions():
            live = np.ones(self.n_all, dtype=bool)
            for leaf, offset in self.leaves:
                gone = _deleted_docnums(leaf)
                live[offset + gone] = False
            self._live = live

    def lengths(self, field: str) -> np.ndarray:
        """Stored length of ``field`` for every docnum (float64)."""
        arr = self._lengths.get(field)
        if arr is None:
            arr = np.zeros(self.n_all, dtype=np.float64)
            for leaf, offset in self.leaves:
                arr[offset : offset + leaf.doc_count_all()] = leaf_field_lengths(leaf, field)
            self._lengths[field] = arr
            if self.live_lengths is not None and field in self.live_lengths:
                self._avg[field] = self.live_lengths[field] / (self.n_live or 1) or 1.0
            else:
                self._avg[field] = self.searcher.avg_field_length(field) or 1.0
        return arr

    def postings(self, field: str, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(global docnums int32, term frequencies float32) of one term, read from the segments (not cached:
        :meth:`weights` caches what scoring needs); empty arrays when absent."""
        ids_parts: list[np.ndarray] = []
        tf_parts: list[np.ndarray] = []
        for leaf, offset in self.leaves:
            try:
                m = leaf.postings(field, text)
            except TermNotFound:
                continue
            m = getattr(m, "child", m)  # FilterMatcher (deletions) → raw matcher; _live masks instead
            ids, tfs = _read_postings(m)
            ids_parts.append(ids + offset)
            tf_parts.append(tfs)
        if ids_parts:
            return np.concatenate(ids_parts), np.concatenate(tf_parts)
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)

    def weights(self, field: str, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(docnums, BM25 contribution of the term to each, before the query's boost: ``idf · tf·(k1+1) / (tf +
        k1·(1 − b + b·len/avg_len))``, float64) — what a query adds up, computed once per term and cached (up to
        ``cache_postings`` postings, least recently used dropped first)."""
        key = (field, text)
        hit = self._postings.get(key)
        if hit is not None:
            self._postings.move_to_end(key)
            return hit
        ids, tf = self.postings(field, text)
        idf = self._term_idf(field, text, ids)
        if len(ids):
            lengths = self.lengths(field)
            norm = self.k1 * ((1.0 - self.b) + self.b * lengths[ids] / self._avg[field])
            tf64 = tf.astype(np.float64)
            out = (ids, idf * (tf64 * (self.k1 + 1.0)) / (tf64 + norm))
        else:
            out = (ids, np.zeros(0, dtype=np.float64))
        n = len(ids)
        if n <= self._budget:
            self._postings[key] = out
            self._cached += n
            while self._cached > self._budget and self._postings:
                _, (old, _) = self._postings.popitem(last=False)
                self._cached -= len(old)
        return out

    def idf(self, field: str, text: str) -> float:
        """:func:`lucene_idf` of one term over the live documents (cached per scorer). Whoosh's own document
        frequency and count still include deleted documents until their segment is merged, so with deletions
        both are counted here (the postings are read anyway)."""
        idf = self._idf.get((field, text))
        return idf if idf is not None else self._term_idf(field, text, None)

    def _term_idf(self, field: str, text: str, ids: np.ndarray | None) -> float:
        key = (field, text)
        idf = self._idf.get(key)
        if idf is None:
            if self._live is None:
                n, df = self.searcher.doc_count_all(), self.searcher.doc_frequency(field, text)
            else:
                ids = self.postings(field, text)[0] if ids is None else ids
                n, df = self.n_live, int(self._live[ids].sum())
            idf = self._idf[key] = lucene_idf(n, df)
        return idf

    def top_k(self, terms: Sequence[tuple[str, str, float]], k: int) -> list[tuple[int, float]]:
        """``terms`` = [(field, text, boost)] OR-ed → best ``k`` (docnum, score)."""
        scores = np.zeros(self.n_all, dtype=np.float64)
        matched = np.zeros(self.n_all, dtype=bool)
        for field, text, boost in terms:
            ids, w = self.weights(field, text)
            if not len(ids):
                continue
            scores[ids] += boost * w if boost != 1.0 else w
            matched[ids] = True
        if self._live is not None:
            matched &= self._live
        cand = np.flatnonzero(matched)
        if not len(cand):
            return []
        if len(cand) > k:
            part = np.argpartition(-scores[cand], k - 1)[:k]
            kth = scores[cand[part]].min()
            cand = cand[scores[cand] >= kth]  # keep ties at the boundary, then sort deterministically
        order = np.lexsort((cand, -scores[cand]))[:k]
        return [(int(cand[i]), float(scores[cand[i]])) for i in order]


def _read_postings(m: Any) -> tuple[np.ndarray, np.ndarray]:
    """All (docnum, weight) postings of a leaf matcher: block-wise for Whoosh's W3 codec, else one by one."""
    ids_parts: list[np.ndarray] = []
    w_parts: list[np.ndarray] = []
    if all(hasattr(m, a) for a in ("_read_ids", "_read_weights", "_next_block", "_atend", "_blocklength")):
        while not m._atend:
            if m._blocklength:
                m._read_ids()
                m._read_weights()
                ids_parts.append(np.asarray(m._ids, dtype=np.int32))
                w_parts.append(np.asarray(m._weights, dtype=np.float32))
            m._next_block()
    else:  # pragma: no cover - other codecs
        ids, ws = [], []
        while m.is_active():
            ids.append(m.id())
            ws.append(m.weight())
            m.next()
        ids_parts.append(np.asarray(ids, dtype=np.int32))
        w_parts.append(np.asarray(ws, dtype=np.float32))
    if not ids_parts:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    return np.concatenate(ids_parts), np.concatenate(w_parts)
