"""Lexical index: Whoosh on disk, BM25 over Vietnamese syllables with and without diacritics.

Schema (one Whoosh document per :class:`~indexing.passages.Passage`):

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
passage through ``folded``. Scoring is per-field BM25 with Lucene's non-negative IDF
``log(1 + (N - df + 0.5) / (df + 0.5))`` instead of Whoosh's ``log(N / (df + 1)) + 1``, which over-weights very
frequent syllables such as ``của``/``và``/``là``; it is computed over the postings with numpy in
:mod:`indexing.bm25_scoring`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.analysis import Token, Tokenizer
from whoosh.fields import ID, STORED, TEXT, Schema

from indexing import normalize as _normalize
from indexing.bm25_build import default_procs, write_documents
from indexing.bm25_edit import LIVE_LENGTHS_KEY, apply_edit, live_docnums
from indexing.bm25_scoring import PostingScorer
from indexing.normalize import _fold_token
from indexing.passages import Passage

__all__ = [
    "NormalizeTokenizer",
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
        """Plain token strings for ``value`` (what the index stores for this field).

        ``exact``/``folded`` share one normalization of ``value`` (:func:`_syllables`, the last few values
        cached): a document's two fields, a query's two fields and an edit's length check each analyze the
        same text twice, and ``folded_syllables(v)`` is ``[fold(s) for s in syllables(v)]`` by definition.
        """
        if self.kind == "words":
            return _normalize.words(value)
        syllables = _syllables(value)
        return list(syllables) if self.kind == "exact" else [_fold_token(s) for s in syllables]

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


@lru_cache(maxsize=8)
def _syllables(value: str) -> tuple[str, ...]:
    """:func:`indexing.normalize.syllables` of ``value`` (immutable, cached for the next field's analysis)."""
    return tuple(_normalize.syllables(value))


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


# ---------------------------------------------------------------------------------------------- config
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


def _document(p: Passage, words: bool) -> dict[str, str]:
    """The Whoosh fields of one passage (the analyzers tokenize ``exact``/``folded``/``words``)."""
    combined = _combined(p)
    doc = {"id": p.id, "doc_id": p.doc_id, "title": p.title, "text": p.text, "source": p.source,
           "exact": combined, "folded": combined}
    if words:
        doc["words"] = combined
    return doc


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
        self._schema = self._ix.schema  # FileIndex.schema re-reads the table of contents from disk on every use
        self.has_words = "words" in self._schema.names()
        self._lock = threading.RLock()
        self._searcher = self._ix.searcher()  # scoring is PostingScorer's; the searcher reads postings
        self._scorer: PostingScorer | None = None
        self._ids: Any = None  # the searcher's "id" column reader (reading its offsets costs ∝ the index)
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
        limitmb: float = 256,
        procs: int | None = None,
        compact_pool: bool = True,
        total: int | None = None,
        progress: bool = False,
        progress_callback: Callable[[str, int, int], None] | None = None,
        overwrite: bool = True,
    ) -> BM25Index:
        """Create an index at ``path`` from ``passages`` (bulk: :func:`indexing.bm25_build.write_documents`).

        ``procs``: processes writing contiguous parts of the passages in parallel, segments in input order
        (same ids, scores and ties as one writer; :mod:`indexing.bm25_build`); ``None`` picks
        :func:`~indexing.bm25_build.default_procs` (2 on a multi-core machine from 10,000 passages, else 1).
        ``compact_pool``: :class:`~indexing.bm25_pool.CompactPostingPool` (never spilled; a new segment when
        one process's pool passes ``limitmb``); ``False`` with ``procs=1`` is the single Whoosh writer and
        pool as before (``limitmb`` then bounds Whoosh's pool, which spills sorted runs to disk).
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
        if (procs is None or procs > 1) and not isinstance(passages, Sequence):
            passages = list(passages)  # counted, to cut into contiguous parts
        if procs is None:
            procs = default_procs(len(passages))  # type: ignore[arg-type]
        if total is None and isinstance(passages, Sequence):
            total = len(passages)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="bm25", unit="passage", mininterval=1.0)
        done = [0, 0]  # passages added, passages reported

        def tick(k: int) -> None:
            done[0] += k
            if done[0] - done[1] >= 1000:
                if bar is not None:
                    bar.update(done[0] - done[1])
                done[1] = done[0]
                if progress_callback is not None:
                    progress_callback("bm25", done[0], total or done[0])

        n_docs = len(passages) if isinstance(passages, Sequence) else None
        docs = (_document(p, words) for p in passages)
        try:
            n = write_documents(ix, docs, procs=procs, limitmb=limitmb, compact=compact_pool, n_docs=n_docs,
                                tick=tick)
        finally:
            if bar is not None:
                bar.update(done[0] - done[1])
                bar.close()
        if progress_callback is not None:
            progress_callback("bm25", n, total or n)
        with ix.reader() as reader:  # exact totals (summed over the parts' segments); edits keep them so
            cfg = BM25Config.load(path)
            cfg[LIVE_LENGTHS_KEY] = {f: int(reader.field_length(f)) for f in ix.schema.scorable_names()}
            cfg.save(path)
        ix.close()
        return cls(path)

    def add(self, passages: Iterable[Passage]) -> int:
        """Add or replace (by id) passages in place → number written (see :meth:`apply`)."""
        new = list(passages)
        self.apply(new, [p.id for p in new])
        return len(new)

    def apply(self, added: Sequence[Passage] = (), delete_ids: Iterable[str] = ()) -> int:
        """Edit the index in place: delete the passages whose id is in ``delete_ids``, then add ``added`` as a
        new segment (:func:`indexing.bm25_edit.apply_edit`: time ∝ the change; scores stay those of a rebuild
        of the same passages in the same order) → number of passages deleted."""
        docs = [_document(p, self.has_words) for p in added]
        with self._lock:
            deleted, totals = apply_edit(self._ix, docs, delete_ids, self._field_lengths,
                                         self.config.get(LIVE_LENGTHS_KEY))
            self.config[LIVE_LENGTHS_KEY] = totals
            self.config.save(self.path)
            self.refresh(force=True)
        return deleted

    def _field_lengths(self, stored: dict[str, Any]) -> dict[str, int]:
        """Exact token count of each scored field of one stored document (what Whoosh counted at indexing)."""
        combined = _combined(Passage(stored["id"], stored.get("doc_id", ""), stored.get("title", ""),
                                     stored.get("text", ""), stored.get("source", "")))
        return {f: len(self._schema[f].analyzer.tokens(combined)) for f in self._schema.scorable_names()}

    def find(self, ids: Iterable[str] = (), doc_ids: Iterable[str] = ()) -> list[Passage]:
        """Live passages whose id is in ``ids`` or whose document id is in ``doc_ids``, in index order (each
        once; unknown values are ignored). Term lookups: time ∝ the answer, not the index."""
        with self._lock:
            s = self._current_searcher()
            r = s.reader()
            docnums = sorted(set(live_docnums(r, "id", ids)) | set(live_docnums(r, "doc_id", doc_ids)))
            out = []
            for d in docnums:
                f = r.stored_fields(d)
                out.append(Passage(f["id"], f["doc_id"], f.get("title", ""), f.get("text", ""), f.get("source", "")))
            return out

    # ---- reading
    def refresh(self, force: bool = False) -> bool:
        """Reload the searcher if the on-disk index changed → True when reloaded.

        A new searcher is opened from the table of contents (not ``Searcher.refresh()``, which reuses segment
        readers by segment id and so misses deletions added to a segment it already has open)."""
        with self._lock:
            self._checked = time.monotonic()
            if force or not self._searcher.up_to_date():
                old, self._searcher = self._searcher, self._ix.searcher()
                old.close()
                self.config = BM25Config.load(self.path)
                self._schema = self._searcher.schema
                self._scorer = self._ids = None
                return True
            return False

    def _current_searcher(self):
        if time.monotonic() - self._checked > self._refresh_interval:
            self.refresh()
        return self._searcher

    def analyze(self, text: str, field: str) -> list[str]:
        """Tokens of ``text`` for index field ``field`` (``exact``/``folded``/``words``), via the index analyzer."""
        return [t.text for t in self._schema[field].analyzer(text, mode="query")]

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

    def search(
        self,
        query: str,
        k: int = 10,
        field: str = "both",
        exact_boost: float | None = None,
    ) -> list[tuple[str, float]]:
        """Top ``k`` passages for ``query`` → ``[(passage_id, bm25_score)]``, best first.

        ``field``: ``"both"`` (default; exact boosted + folded), ``"exact"`` (diacritics must match),
        ``"folded"`` (diacritics ignored; the diacritics router uses it for queries typed without marks),
        ``"auto"`` (``"folded"`` when the query has no diacritic at all, else ``"both"``: in a query typed
        without marks, exact matches on plain syllables such as ``do``/``ban`` are noise, not evidence),
        ``"words"`` (word-segmented variant, only if built with ``words=True``). Scored by
        :class:`~indexing.bm25_scoring.PostingScorer` (equal to Whoosh's own BM25F with Lucene IDF, the test
        oracle in ``tests/comparison/``).
        """
        terms = self.query_terms(query, field, exact_boost)
        if not terms or k <= 0:
            return []
        with self._lock:
            s = self._current_searcher()
            if self._ids is None:
                self._ids = s.reader().column_reader("id")
            ids = self._ids
            if self._scorer is None:
                self._scorer = PostingScorer(s, float(self.config["K1"]), float(self.config["B"]),
                                             live_lengths=self.config.get(LIVE_LENGTHS_KEY))
            return [(ids[docnum], score) for docnum, score in self._scorer.top_k(terms, k)]

    def get(self, ids: Sequence[str], missing: str = "error") -> list[Passage]:
        """Stored passages for ``ids`` in the given order.

        ``missing="error"`` raises KeyError naming unknown ids; ``"skip"`` leaves them out.
        """
        out: list[Passage] = []
        unknown: list[str] = []
        with self._lock:
            r = self._current_searcher().reader()
            for pid in ids:
                live = live_docnums(r, "id", (pid,))  # a term lookup (Searcher.document runs a whole query)
                if not live:
                    unknown.append(pid)
                    continue
                d = r.stored_fields(live[0])
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
