"""Stage 2 of a search: the first stage — BM25, dense, or both fused — and the query-vector cache.

- :func:`bm25_candidates` — BM25 on the field(s) the query's routing asks for;
- :func:`dense_candidates` — a cosine search of the vector store (calls kept serial: Qdrant local mode is one
  in-process engine);
- :func:`first_stage` — the named first stage (``bm25`` / ``dense`` / ``hybrid``) with fusion
  (:mod:`search.fusion`), recorded in a :class:`~search.results.StageTrace`;
- :func:`field_scores` — BM25 on the exact and the folded field alone (the learned blend's extra signals);
- :class:`QueryVectors` — an LRU of query vectors (Compare runs one query through several pipelines).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from search.fusion import fuse
from search.query import PreparedQuery
from search.results import Ranked, StageTrace

if TYPE_CHECKING:
    from indexing.bm25 import BM25Index
    from indexing.embedders import Embedder
    from indexing.vectors import VectorStore

__all__ = ["QUERY_CACHE_SIZE", "QueryVectors", "bm25_candidates", "dense_candidates", "first_stage",
           "field_scores", "FINAL_STAGE"]

QUERY_CACHE_SIZE = 512
FINAL_STAGE = {"bm25": "bm25", "dense": "dense", "hybrid": "fusion"}  # the stage whose order a first stage ends with


class QueryVectors:
    """Query vectors of ``embedder``, the last ``size`` kept (text → vector). ``cache`` may be shared by several
    pipelines over the same embedder (benchmarks). ``lock`` also serializes the vector store's searches."""

    def __init__(self, embedder: Embedder | None, cache: OrderedDict[str, np.ndarray] | None = None,
                 size: int = QUERY_CACHE_SIZE) -> None:
        self.embedder = embedder
        self.cache: OrderedDict[str, np.ndarray] = cache if cache is not None else OrderedDict()
        self.size = size
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        """One vector per text (cached ones reused; the others encoded in one batch)."""
        with self.lock:
            cached = [self.cache.get(t) for t in texts]
        todo = [t for t, v in zip(texts, cached, strict=True) if v is None]
        if todo:
            unique = list(dict.fromkeys(todo))
            new = np.asarray(self.embedder.encode_queries(unique), dtype=np.float32)
            fresh = dict(zip(unique, new, strict=True))
            with self.lock:
                for t, v in fresh.items():
                    self.cache[t] = v
                    self.cache.move_to_end(t)
                while len(self.cache) > self.size:
                    self.cache.popitem(last=False)
            cached = [v if v is not None else fresh[t] for t, v in zip(texts, cached, strict=True)]
        return cached


def bm25_candidates(bm25: BM25Index, p: PreparedQuery, k: int, *, routed_bm25: str = "restored",
                    has_restorer: bool = False) -> Ranked:
    """The top ``k`` by BM25: a query typed with its marks on both fields; a routed one restored on both fields
    (``routed_bm25="restored"`` with a restorer) or as typed on the folded field."""
    if not p.routed:
        return bm25.search(p.text, k, field="both")
    if routed_bm25 == "restored" and has_restorer:
        return bm25.search(p.searched, k, field="both")
    return bm25.search(p.text, k, field="folded")


def dense_candidates(vectors: VectorStore, vec: np.ndarray, k: int, lock: threading.Lock) -> Ranked:
    """The top ``k`` by cosine similarity to ``vec`` (under ``lock``: one in-process Qdrant engine)."""
    with lock:
        return vectors.search(vec, k)


def first_stage(first: str, p: PreparedQuery, vec: np.ndarray | None, embed_ms: float, depth: int, *,
                bm25: BM25Index, vectors: VectorStore | None, lock: threading.Lock, fusion: str,
                fusion_kwargs: Mapping[str, Any], routed_bm25: str, has_restorer: bool,
                trace: StageTrace) -> Ranked:
    """The ``first`` stage's top ``depth`` (``bm25``, ``dense`` or ``hybrid`` = both fused); each list and
    its timing go into ``trace`` (``embed_ms``: this query's share of the batch's embedding time)."""
    lists = []
    if first in ("bm25", "hybrid"):
        start = time.perf_counter()
        bm = bm25_candidates(bm25, p, depth, routed_bm25=routed_bm25, has_restorer=has_restorer)
        trace.time("bm25", start)
        trace.record("bm25", bm)
        lists.append(bm)
    if first in ("dense", "hybrid"):
        trace.timings_ms["embed"] = round(embed_ms, 3)
        start = time.perf_counter()
        dn = dense_candidates(vectors, vec, depth, lock)
        trace.time("dense", start)
        trace.record("dense", dn)
        lists.append(dn)
    if first != "hybrid":
        return lists[0]
    start = time.perf_counter()
    ranked = fuse(fusion, lists, **fusion_kwargs)[:depth]
    trace.time("fusion", start)
    trace.record("fusion", ranked)
    return ranked


def field_scores(bm25: BM25Index, query: str, depth: int, ids: list[str], trace: StageTrace) -> None:
    """BM25 on the exact and on the folded field alone (what the default ``both`` search mixes), for ``ids``:
    ``trace.scores[id]["bm25_exact" | "bm25_folded"]`` where the field ranks the passage in its top ``depth``."""
    wanted = set(ids)
    for field_name in ("exact", "folded"):
        for pid, score in bm25.search(query, depth, field=field_name):
            if pid in wanted:
                trace.scores.setdefault(pid, {})[f"bm25_{field_name}"] = float(score)
