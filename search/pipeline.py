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

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from indexing.embedders import same_model
from indexing.restorer import DiacriticRestorer
from search.blend import LearnedBlend, blend_with_first_stage, learned_blend_of
from search.errors import QueryError, VectorsUnavailable
from search.fusion import DEFAULT_FUSION, DEFAULT_MINMAX_WEIGHTS, FUSIONS
from search.query import (
    FIRST_STAGES,
    MAX_QUERY_CHARS,
    MAX_QUERY_SYLLABLES,
    PreparedQuery,
    parse_pipeline,
    prepare,
)
from search.rerank import RerankerSource, blend_weight, rerank_text, rerank_window, reranker_lookup
from search.results import Hit, Note, NoteCode, SearchResult, StageTrace, ms_since
from search.retrieval import FINAL_STAGE, QUERY_CACHE_SIZE, QueryVectors, first_stage

if TYPE_CHECKING:
    from indexing.bm25 import BM25Index
    from indexing.embedders import Embedder
    from indexing.passages import Passage
    from indexing.snapshot import IndexSnapshot
    from indexing.vectors import VectorStore
    from reranker.backends import Reranker

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
    "PipelineConfig",
    "PreparedQuery",
    "parse_pipeline",
    "same_model",
    "FIRST_STAGES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_SYLLABLES",
]


@dataclass
class PipelineConfig:
    """How a :class:`Pipeline` searches (every field is also a keyword argument of :class:`Pipeline`).

    Args:
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
        max_query_chars / max_query_syllables: where long queries are cut (with a note).
        query_cache_size: how many query vectors the LRU keeps.

    Raises ValueError for values out of range.
    """

    depth: int = 100
    rerank_top: int = 20
    fusion: str = DEFAULT_FUSION
    fusion_kwargs: dict[str, Any] = field(default_factory=dict)
    restore_levels: tuple[str, ...] = ("none", "partial")
    routed_bm25: str = "restored"
    rerank_with_title: bool = False
    rerank_blend: float | None = None
    blend_features: bool = False
    max_query_chars: int = MAX_QUERY_CHARS
    max_query_syllables: int = MAX_QUERY_SYLLABLES
    query_cache_size: int = QUERY_CACHE_SIZE

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {sorted(FUSIONS)}")
        if self.routed_bm25 not in ("folded", "restored"):
            raise ValueError("routed_bm25 must be 'folded' or 'restored'")
        if self.depth < 1 or self.rerank_top < 1:
            raise ValueError("depth and rerank_top must be >= 1")
        if self.rerank_blend is not None and not 0.0 <= float(self.rerank_blend) <= 1.0:
            raise ValueError(f"rerank_blend must be in [0, 1], got {self.rerank_blend}")
        self.rerank_blend = None if self.rerank_blend is None else float(self.rerank_blend)
        self.fusion_kwargs = dict(self.fusion_kwargs or {})
        self.restore_levels = tuple(self.restore_levels)

    def fusion_arguments(self) -> dict[str, Any]:
        """The keyword arguments :func:`search.fusion.fuse` gets: ``fusion_kwargs``, with min-max's default
        weights (0.5/0.5) when none are given."""
        kw = dict(self.fusion_kwargs)
        if self.fusion == "minmax" and "weights" not in kw:
            kw["weights"] = list(DEFAULT_MINMAX_WEIGHTS)
        return kw


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(PipelineConfig))


class Pipeline:
    """Retrieval + fusion + reranking over one index generation.

    Args:
        bm25: an :class:`indexing.bm25.BM25Index` (also the passage store: titles and texts come from it).
        vectors: an :class:`indexing.vectors.VectorStore` (needed for ``dense`` / ``hybrid``).
        embedder: query encoder matching the vectors (:class:`indexing.embedders.Embedder`).
        rerankers: ``{name: Reranker}``, or a callable ``name -> Reranker`` (may raise
            ``reranker.backends.ModelUnavailable``); default: loaded by name on first use.
        restorer: the index's :class:`DiacriticRestorer` (None: routed queries are not restored, only
            searched on the folded BM25 field).
        config: a :class:`PipelineConfig`; keyword arguments named like its fields override it
            (``Pipeline(bm25, depth=8, rerank_top=3)``). ``pipe.depth`` etc. read ``pipe.config``.
        query_cache: the query-vector LRU (text → vector); pass one ``OrderedDict`` to several pipelines over
            the same embedder to share it (benchmarks).
    """

    def __init__(
        self,
        bm25: BM25Index | None = None,
        vectors: VectorStore | None = None,
        embedder: Embedder | None = None,
        rerankers: RerankerSource = None,
        restorer: DiacriticRestorer | None = None,
        config: PipelineConfig | None = None,
        *,
        query_cache: OrderedDict[str, np.ndarray] | None = None,
        **overrides: Any,
    ) -> None:
        if bm25 is None:
            raise ValueError("a BM25 index is required (it also stores the passages)")
        unknown = set(overrides) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown Pipeline argument(s): {sorted(unknown)}")
        self.config = dataclasses.replace(config or PipelineConfig(), **overrides)
        self.bm25 = bm25
        self.vectors = vectors
        self.embedder = embedder
        self.restorer = restorer
        self._get_reranker = reranker_lookup(rerankers)
        self._learned: dict[int, LearnedBlend | None] = {}
        self._query_vectors = QueryVectors(embedder, query_cache, self.config.query_cache_size)
        self._fusion_kwargs = self.config.fusion_arguments()

    def __getattr__(self, name: str) -> Any:
        """The configuration's fields, under their old attribute names (``pipe.rerank_top``)."""
        if name in _CONFIG_FIELDS:
            return getattr(self.__dict__["config"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def fusion_kwargs(self) -> dict[str, Any]:
        """The fusion's keyword arguments as used (:meth:`PipelineConfig.fusion_arguments`)."""
        return self._fusion_kwargs

    @property
    def _qcache(self) -> OrderedDict[str, np.ndarray]:
        """The query-vector LRU (benchmarks clear it between timed runs)."""
        return self._query_vectors.cache

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_snapshot(cls, snapshot: IndexSnapshot, embedder: Embedder | None = None, **kw: Any) -> Pipeline:
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

    # ----------------------------------------------------------------------------------------- search
    def prepare(self, query: str, as_typed: bool = False) -> PreparedQuery:
        """Validate, clean and route one query (:func:`search.query.prepare`; raises :class:`QueryError`)."""
        cfg = self.config
        return prepare(query, max_chars=cfg.max_query_chars, max_syllables=cfg.max_query_syllables,
                       restore_levels=cfg.restore_levels, restorer=self.restorer, as_typed=as_typed)

    def search(self, query: str, pipeline: str = "hybrid", top_k: int = 10, *, as_typed: bool = False) -> SearchResult:
        """Run ``pipeline`` for ``query`` → the top ``top_k`` hits.

        Raises :class:`QueryError` (bad query), ValueError (unknown pipeline), :class:`VectorsUnavailable` (a
        ValueError too: dense without vectors), and whatever loading the reranker raises (``ModelUnavailable``
        when its weights are missing).
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
            embed_ms = ms_since(start) / len(prepared)
        items: Any = range(len(prepared))
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc=pipeline, unit="query", mininterval=1.0)
        return [self._run(prepared[i], vectors[i], embed_ms, first, reranker, pipeline, top_k) for i in items]

    def _run(self, p: PreparedQuery, vec: np.ndarray | None, embed_ms: float, first: str,
             reranker: Reranker | None, pipeline: str, top_k: int) -> SearchResult:
        """One prepared query through first stage → rerank window → hits."""
        cfg = self.config
        t_total = time.perf_counter()
        trace = StageTrace(dict(p.timings_ms))
        depth = max(cfg.depth, top_k)
        ranked = first_stage(first, p, vec, embed_ms, depth, bm25=self.bm25, vectors=self.vectors,
                             lock=self._query_vectors.lock, fusion=cfg.fusion, fusion_kwargs=self._fusion_kwargs,
                             routed_bm25=cfg.routed_bm25, has_restorer=self.restorer is not None, trace=trace)
        final_stage = FINAL_STAGE[first]
        passages: dict[str, Passage] = {}
        if reranker is not None and ranked:
            ranked = rerank_window(
                p, ranked, reranker, bm25=self.bm25, rerank_top=cfg.rerank_top, depth=depth,
                learned=self.learned_blend_for(reranker), alpha=self.blend_for(reranker),
                with_title=cfg.rerank_with_title, blend_features=cfg.blend_features,
                field_query=p.searched if p.routed and self.restorer is not None else p.text,
                trace=trace, passages=passages)
            final_stage = "rerank"
        hits = self._hits(ranked[:top_k], passages, trace)
        timings = trace.timings_ms
        timings["total"] = round(sum(p.timings_ms.values()) + timings.get("embed", 0.0) + ms_since(t_total), 3)
        notes = list(p.notes)
        if final_stage == "rerank" and len(ranked) > cfg.rerank_top and top_k > cfg.rerank_top:
            notes.append(Note(NoteCode.RERANK_WINDOW, {"top": cfg.rerank_top}))
        return SearchResult(p.typed, p.searched, p.level, hits, timings, pipeline, notes)

    def _hits(self, top: list[tuple[str, float]], passages: dict[str, Passage], trace: StageTrace) -> list[Hit]:
        """The final ``top`` as :class:`Hit` objects (passages not fetched yet are fetched now; one missing
        from BM25 — an inconsistent generation — is skipped)."""
        missing = [pid for pid, _ in top if pid not in passages]
        if missing:
            start = time.perf_counter()
            for psg in self.bm25.get(missing, missing="skip"):
                passages[psg.id] = psg
            trace.timings_ms["fetch"] = round(trace.timings_ms.get("fetch", 0.0) + ms_since(start), 3)
        hits: list[Hit] = []
        for pid, score in top:
            psg = passages.get(pid)
            if psg is None:
                continue
            hits.append(Hit(psg.id, psg.doc_id, psg.title, psg.text, float(score), len(hits) + 1,
                            trace.ranks.get(pid, {}), trace.scores.get(pid, {})))
        return hits

    # ------------------------------------------------------------------------------------------ blend
    def learned_blend_for(self, reranker: Reranker) -> LearnedBlend | None:
        """The reranker's learned blend (loaded once per reranker), or None: when the pipeline was given a
        fixed ``rerank_blend``, or the model ships none. A blend that names files it cannot load raises
        :class:`search.blend.BlendError` (never silently ignored)."""
        if self.config.rerank_blend is not None:
            return None
        key = id(reranker)
        if key not in self._learned:
            self._learned[key] = learned_blend_of(reranker)
        return self._learned[key]

    def blend_for(self, reranker: Reranker) -> float:
        """The reranker weight used with ``reranker`` (:func:`search.rerank.blend_weight`): the pipeline's
        ``rerank_blend``, else the reranker's own ``blend`` attribute, else 1.0."""
        return blend_weight(reranker, self.config.rerank_blend)

    def _rerank_text(self, psg: Passage) -> str:
        return rerank_text(psg, self.config.rerank_with_title)


DEFAULT_PIPELINE = "default"  # the app's default, by name (search.eval --pipeline default)


def default_pipeline_for(available: Sequence[str], reranker: str | None,
                         recommended: Callable[[str], bool]) -> str:
    """The app's default pipeline: ``hybrid+<reranker>`` when the index has vectors and the reranker recommends
    itself (``recommended(name)``, e.g. :func:`reranker.backends.recommended_by_default`: its model beat the first
    stage on held-out data); else the best first stage in ``available`` (``hybrid`` or ``bm25``)."""
    if reranker and "hybrid" in available and recommended(reranker):
        return f"hybrid+{reranker}"
    return "hybrid" if "hybrid" in available else "bm25"
