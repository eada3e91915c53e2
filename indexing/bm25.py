"""Lexical index: Whoosh on disk, BM25 over Vietnamese syllables with and without diacritics.

Schema (one Whoosh document per :class:`~indexing.corpus.Passage`):

=========  =====================================================================================
``id``     passage id (unique, stored, sortable column for fast docnum → id)
``doc_id`` document id (stored, searchable as an exact term)
``title``, ``text``, ``source``  stored only (raw normalized text; escaping is the UI's job)
``exact``  ``normalize.syllables(title + text)`` — diacritics kept
``folded`` ``normalize.folded_syllables(title + text)`` — diacritics removed
``words``  optional: ``normalize.words(title + text)`` (underthesea word segmentation; benchmark variant)
=========  =====================================================================================

The analyzers are Whoosh :class:`~whoosh.analysis.Tokenizer` subclasses that call the normalize module,
and queries are tokenized by the very same analyzer objects, so documents and queries cannot drift apart.

A query is an OR of its syllables on ``exact`` (boost ``exact_boost``, default 2.0) plus an OR of its
folded syllables on ``folded``. A passage that matches with the right diacritics scores on both fields and
so outranks one that matches only without them, while a query typed without diacritics still finds its
passage through ``folded``. Scoring is Whoosh's per-field BM25 (``BM25F`` model) with Lucene's
non-negative IDF ``log(1 + (N - df + 0.5) / (df + 0.5))`` instead of Whoosh's ``log(N / (df + 1)) + 1``,
which over-weights very frequent syllables such as ``của``/``và``/``là``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from math import log
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import index as whoosh_index
from whoosh import query as wq
from whoosh.analysis import Token, Tokenizer
from whoosh.fields import ID, STORED, TEXT, Schema
from whoosh.reading import TermNotFound
from whoosh.scoring import BM25F

from indexing import normalize as _normalize
from indexing.passages import Passage

__all__ = [
    "NormalizeTokenizer",
    "LuceneBM25F",
    "PostingScorer",
    "BM25Config",
    "BM25Index",
    "make_schema",
    "FIELDS",
    "DEFAULT_EXACT_BOOST",
]

DEFAULT_EXACT_BOOST = 2.0
FIELDS = ("exact", "folded", "both", "auto", "words")
CONFIG_FILE = "viranker_bm25.json"
INDEX_NAME = "MAIN"
_TOKEN_FUNCTIONS = {"exact": "syllables", "folded": "folded_syllables", "words": "words"}


# --------------------------------------------------------------------------------------------- analysis
class NormalizeTokenizer(Tokenizer):
    """Whoosh tokenizer whose tokens are ``indexing.normalize.<function>(text)``.

    ``kind`` is ``"exact"`` (:func:`~indexing.normalize.syllables`), ``"folded"``
    (:func:`~indexing.normalize.folded_syllables`) or ``"words"`` (:func:`~indexing.normalize.words`). Only
    ``kind`` is pickled into the index schema; the function is looked up at call time, so the index always
    uses the code's current normalizer (the manifest records which one built it).
    """

    def __init__(self, kind: str) -> None:
        if kind not in _TOKEN_FUNCTIONS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(_TOKEN_FUNCTIONS)}")
        self.kind = kind

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NormalizeTokenizer) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.kind))

    def tokens(self, value: str) -> list[str]:
        """Plain token strings for ``value`` (what the index stores for this field)."""
        return getattr(_normalize, _TOKEN_FUNCTIONS[self.kind])(value)

    def __call__(
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        **kwargs: Any,
    ):
        """Yield one reused :class:`whoosh.analysis.Token` per token (Whoosh's tokenizer protocol).

        Character offsets are not tracked (``chars`` is ignored): the fields store frequencies only.
        """
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        items = self.tokens(value) if tokenize else [value]
        for pos, text in enumerate(items):
            t.text = text
            t.boost = 1.0
            t.stopped = False
            if keeporiginal:
                t.original = text
            if positions:
                t.pos = start_pos + pos
            yield t


def make_schema(words: bool = False) -> Schema:
    """The Whoosh schema described in the module docstring (``words=True`` adds the ``words`` field)."""
    fields: dict[str, Any] = {
        "id": ID(unique=True, stored=True, sortable=True),
        "doc_id": ID(stored=True),
        "title": STORED(),
        "text": STORED(),
        "source": STORED(),
        "exact": TEXT(analyzer=NormalizeTokenizer("exact"), phrase=False),
        "folded": TEXT(analyzer=NormalizeTokenizer("folded"), phrase=False),
    }
    if words:
        fields["words"] = TEXT(analyzer=NormalizeTokenizer("words"), phrase=False)
    return Schema(**fields)


# ---------------------------------------------------------------------------------------------- scoring
class LuceneBM25F(BM25F):
    """Whoosh BM25F with Lucene/bm25s' IDF ``log(1 + (N - df + 0.5) / (df + 0.5))``."""

    def idf(self, searcher: Any, fieldname: str, text: str) -> float:
        parent = searcher.get_parent()
        df = parent.doc_frequency(fieldname, text)
        n = parent.doc_count_all()
        return log(1.0 + (n - df + 0.5) / (df + 0.5))


class PostingScorer:
    """Vectorized BM25F over one Whoosh searcher: the same formula as :class:`LuceneBM25F`, computed with numpy.

    Whoosh's matcher tree scores document by document in Python, which costs seconds per query once frequent
    syllables (``là``, ``của``, ``người``...) match most of a 10k+ passage collection. This scorer reads each
    query term's posting list from the Whoosh segment once (block by block, cached), and scores all matching
    documents at once with the same inputs Whoosh uses: Lucene IDF from ``doc_frequency``/``doc_count_all``,
    Whoosh's stored (byte-quantized) field lengths, ``avg_field_length``, and query-term boosts. Deleted
    documents are skipped. Results equal Whoosh's own ``searcher.search`` (tested), ties broken by docnum.
    """

    def __init__(self, searcher: Any, k1: float, b: float, cache_postings: int = 8_000_000) -> None:
        self.searcher = searcher
        self.k1, self.b = float(k1), float(b)
        reader = searcher.reader()
        self.n_all = reader.doc_count_all()
        self.leaves = reader.leaf_readers()
        self._lengths: dict[str, np.ndarray] = {}
        self._avg: dict[str, float] = {}
        self._postings: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached = 0
        self._budget = cache_postings
        self._live: np.ndarray | None = None
        if reader.has_deletions():
            live = np.ones(self.n_all, dtype=bool)
            for leaf, offset in self.leaves:
                for d in range(leaf.doc_count_all()):
                    if leaf.is_deleted(d):
                        live[offset + d] = False
            self._live = live

    def lengths(self, field: str) -> np.ndarray:
        """Stored length of ``field`` for every docnum (float64)."""
        arr = self._lengths.get(field)
        if arr is None:
            arr = np.zeros(self.n_all, dtype=np.float64)
            for leaf, offset in self.leaves:
                dfl = leaf.doc_field_length
                for d in range(leaf.doc_count_all()):
                    arr[offset + d] = dfl(d, field) or 0
            self._lengths[field] = arr
            self._avg[field] = self.searcher.avg_field_length(field) or 1.0
        return arr

    def postings(self, field: str, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(global docnums int32, term frequencies float32) of one term; empty arrays when absent."""
        key = (field, text)
        hit = self._postings.get(key)
        if hit is not None:
            self._postings.move_to_end(key)
            return hit
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
            out = (np.concatenate(ids_parts), np.concatenate(tf_parts))
        else:
            out = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))
        n = len(out[0])
        if n <= self._budget:
            self._postings[key] = out
            self._cached += n
            while self._cached > self._budget and self._postings:
                _, (old, _) = self._postings.popitem(last=False)
                self._cached -= len(old)
        return out

    def idf(self, field: str, text: str) -> float:
        """Lucene IDF, from the searcher (Whoosh caches it)."""
        return self.searcher.idf(field, text)

    def top_k(self, terms: Sequence[tuple[str, str, float]], k: int) -> list[tuple[int, float]]:
        """``terms`` = [(field, text, boost)] OR-ed → best ``k`` (docnum, score)."""
        scores = np.zeros(self.n_all, dtype=np.float64)
        matched = np.zeros(self.n_all, dtype=bool)
        k1, b = self.k1, self.b
        for field, text, boost in terms:
            ids, tf = self.postings(field, text)
            if not len(ids):
                continue
            lengths = self.lengths(field)
            norm = k1 * ((1.0 - b) + b * lengths[ids] / self._avg[field])
            tf64 = tf.astype(np.float64)
            scores[ids] += boost * self.idf(field, text) * (tf64 * (k1 + 1.0)) / (tf64 + norm)
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


class BM25Config(dict):
    """Search settings stored next to the index (``viranker_bm25.json``): K1, B, exact_boost, fields."""

    DEFAULTS: dict[str, Any] = {"version": 1, "K1": 1.2, "B": 0.75, "exact_boost": DEFAULT_EXACT_BOOST}

    @classmethod
    def load(cls, path: Path) -> BM25Config:
        cfg = cls(cls.DEFAULTS)
        f = path / CONFIG_FILE
        if f.is_file():
            cfg.update(json.loads(f.read_text(encoding="utf-8")))
        return cfg

    def save(self, path: Path) -> None:
        (path / CONFIG_FILE).write_text(json.dumps(dict(self), indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ index
def _combined(p: Passage) -> str:
    return f"{p.title}\n{p.text}" if p.title else p.text


class BM25Index:
    """A Whoosh BM25 index in one directory. Build with :meth:`build`, open with :meth:`open`.

    One searcher is kept per instance and reused; it is refreshed after this instance writes, and
    re-checked against the directory at most every ``refresh_interval`` seconds. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str], *, refresh_interval: float = 2.0) -> None:
        self.path = Path(path)
        if not whoosh_index.exists_in(self.path, indexname=INDEX_NAME):
            raise FileNotFoundError(f"no BM25 index in {self.path}")
        self._ix = whoosh_index.open_dir(self.path, indexname=INDEX_NAME)
        self.config = BM25Config.load(self.path)
        self.has_words = "words" in self._ix.schema.names()
        self._weighting = LuceneBM25F(B=float(self.config["B"]), K1=float(self.config["K1"]))
        self._lock = threading.RLock()
        self._searcher = self._ix.searcher(weighting=self._weighting)
        self._scorer: PostingScorer | None = None
        self._refresh_interval = refresh_interval
        self._checked = time.monotonic()

    # ---- construction
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BM25Index:
        """Open an existing index directory."""
        return cls(path)

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        passages: Iterable[Passage],
        *,
        words: bool = False,
        k1: float = 1.2,
        b: float = 0.75,
        exact_boost: float = DEFAULT_EXACT_BOOST,
        limitmb: int = 256,
        total: int | None = None,
        progress: bool = False,
        progress_callback: Callable[[str, int, int], None] | None = None,
        overwrite: bool = True,
    ) -> BM25Index:
        """Create an index at ``path`` from ``passages`` (bulk: one writer, procs=1, large ``limitmb``).

        ``overwrite`` removes an existing directory first. ``progress`` shows a tqdm bar;
        ``progress_callback("bm25", done, total)`` is called every 1,000 passages and at the end.
        """
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} exists")
            shutil.rmtree(path)
        path.mkdir(parents=True)
        BM25Config(
            {**BM25Config.DEFAULTS, "K1": k1, "B": b, "exact_boost": exact_boost, "words": words}
        ).save(path)
        ix = whoosh_index.create_in(path, make_schema(words), indexname=INDEX_NAME)
        if total is None and isinstance(passages, Sequence):
            total = len(passages)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="bm25", unit="passage", mininterval=1.0)
        writer = ix.writer(procs=1, limitmb=limitmb)
        n = 0
        try:
            for p in passages:
                combined = _combined(p)
                doc = {
                    "id": p.id,
                    "doc_id": p.doc_id,
                    "title": p.title,
                    "text": p.text,
                    "source": p.source,
                    "exact": combined,
                    "folded": combined,
                }
                if words:
                    doc["words"] = combined
                writer.add_document(**doc)
                n += 1
                if n % 1000 == 0:
                    if bar is not None:
                        bar.update(1000)
                    if progress_callback is not None:
                        progress_callback("bm25", n, total or n)
            writer.commit()
        except BaseException:
            writer.cancel()
            raise
        finally:
            if bar is not None:
                bar.update(n % 1000)
                bar.close()
        if progress_callback is not None:
            progress_callback("bm25", n, total or n)
        ix.close()
        return cls(path)

    def add(self, passages: Iterable[Passage]) -> int:
        """Add or replace (by id) passages in place → number written. Generations use :meth:`build`."""
        n = 0
        with self._lock:
            writer = self._ix.writer()
            try:
                for p in passages:
                    combined = _combined(p)
                    doc = dict(
                        id=p.id,
                        doc_id=p.doc_id,
                        title=p.title,
                        text=p.text,
                        source=p.source,
                        exact=combined,
                        folded=combined,
                    )
                    if self.has_words:
                        doc["words"] = combined
                    writer.update_document(**doc)
                    n += 1
                writer.commit()
            except BaseException:
                writer.cancel()
                raise
            self.refresh(force=True)
        return n

    # ---- reading
    def refresh(self, force: bool = False) -> bool:
        """Reload the searcher if the on-disk index changed → True when reloaded."""
        with self._lock:
            self._checked = time.monotonic()
            if force or not self._searcher.up_to_date():
                self._searcher = self._searcher.refresh()
                self._scorer = None
                return True
            return False

    def _current_searcher(self):
        if time.monotonic() - self._checked > self._refresh_interval:
            self.refresh()
        return self._searcher

    def analyze(self, text: str, field: str) -> list[str]:
        """Tokens of ``text`` for index field ``field`` (``exact``/``folded``/``words``), via the index analyzer."""
        return [t.text for t in self._ix.schema[field].analyzer(text, mode="query")]

    def resolve_field(self, query: str, field: str) -> str:
        """``"auto"`` → ``"both"`` when the query carries any diacritic, else ``"folded"``; others unchanged."""
        if field not in FIELDS:
            raise ValueError(f"field must be one of {FIELDS}, got {field!r}")
        if field != "auto":
            return field
        exact = self.analyze(query, "exact")
        return "both" if any(_normalize.has_diacritics(t) for t in exact) else "folded"

    def query_terms(
        self, query: str, field: str = "both", exact_boost: float | None = None
    ) -> list[tuple[str, str, float]]:
        """``query`` → its OR-ed terms ``[(field, token, boost)]`` (distinct tokens). See :meth:`search`."""
        field = self.resolve_field(query, field)
        if field == "words" and not self.has_words:
            raise ValueError("this index was built without the 'words' field (BM25Index.build(words=True))")
        boost = float(self.config["exact_boost"] if exact_boost is None else exact_boost)
        terms: list[tuple[str, str, float]] = []
        if field in ("exact", "both"):
            terms += [("exact", t, boost) for t in dict.fromkeys(self.analyze(query, "exact"))]
        if field in ("folded", "both"):
            terms += [("folded", t, 1.0) for t in dict.fromkeys(self.analyze(query, "folded"))]
        if field == "words":
            terms += [("words", t, 1.0) for t in dict.fromkeys(self.analyze(query, "words"))]
        return terms

    def build_query(
        self, query: str, field: str = "both", exact_boost: float | None = None
    ) -> wq.Query | None:
        """The equivalent Whoosh query object (None when the query has no tokens)."""
        terms = self.query_terms(query, field, exact_boost)
        return wq.Or([wq.Term(f, t, boost=bst) for f, t, bst in terms]) if terms else None

    def search(
        self,
        query: str,
        k: int = 10,
        field: str = "both",
        exact_boost: float | None = None,
        engine: str = "numpy",
    ) -> list[tuple[str, float]]:
        """Top ``k`` passages for ``query`` → ``[(passage_id, bm25_score)]``, best first.

        ``field``: ``"both"`` (default; exact boosted + folded), ``"exact"`` (diacritics must match),
        ``"folded"`` (diacritics ignored; the diacritics router uses it for queries typed without marks),
        ``"auto"`` (``"folded"`` when the query has no diacritic at all, else ``"both"``: in a query typed
        without marks, exact matches on plain syllables such as ``do``/``ban`` are noise, not evidence),
        ``"words"`` (word-segmented variant, only if built with ``words=True``).
        ``engine``: ``"numpy"`` (default, :class:`PostingScorer`) or ``"whoosh"`` (Whoosh's own matcher
        and collector; same scores, much slower on large collections).
        """
        if engine not in ("numpy", "whoosh"):
            raise ValueError(f"engine must be 'numpy' or 'whoosh', got {engine!r}")
        terms = self.query_terms(query, field, exact_boost)
        if not terms or k <= 0:
            return []
        with self._lock:
            s = self._current_searcher()
            ids = s.reader().column_reader("id")
            if engine == "whoosh":
                q = wq.Or([wq.Term(f, t, boost=bst) for f, t, bst in terms])
                return [(ids[docnum], float(score)) for score, docnum in s.search(q, limit=k).top_n]
            if self._scorer is None:
                self._scorer = PostingScorer(s, float(self.config["K1"]), float(self.config["B"]))
            return [(ids[docnum], score) for docnum, score in self._scorer.top_k(terms, k)]

    def get(self, ids: Sequence[str], missing: str = "error") -> list[Passage]:
        """Stored passages for ``ids`` in the given order.

        ``missing="error"`` raises KeyError naming unknown ids; ``"skip"`` leaves them out.
        """
        out: list[Passage] = []
        unknown: list[str] = []
        with self._lock:
            s = self._current_searcher()
            for pid in ids:
                d = s.document(id=pid)
                if d is None:
                    unknown.append(pid)
                    continue
                out.append(
                    Passage(d["id"], d["doc_id"], d.get("title", ""), d.get("text", ""), d.get("source", ""))
                )
        if unknown and missing == "error":
            raise KeyError(f"unknown passage id(s): {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
        return out

    def doc_count(self) -> int:
        """Number of (undeleted) passages."""
        with self._lock:
            return self._current_searcher().doc_count()

    def __len__(self) -> int:
        return self.doc_count()

    def close(self) -> None:
        """Close the searcher and index (the object is unusable afterwards)."""
        with self._lock:
            self._searcher.close()
            self._ix.close()

    def __enter__(self) -> BM25Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
