"""Stage 3 of a search: rerank the first stage's top window with a cross-encoder, then blend.

- :class:`RerankerCache` / :func:`reranker_lookup` — rerankers by name (loaded on first use by
  :func:`reranker.backends.load_reranker`, or a fixed ``{name: Reranker}``);
- :func:`rerank_window` — score the top ``rerank_top`` passages with a
  :class:`~reranker.backends.Reranker`, order them by its logits, then blend: the model's learned blend
  (:mod:`search.blend`) when it ships one, else ``α · minmax(logits) + (1 − α) · minmax(first stage)`` with
  α from :func:`blend_weight`; the passages below the window keep the first stage's order;
- :func:`rerank_text` — what the reranker reads of a passage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from search.blend import LearnedBlend, blend_with_first_stage, candidate
from search.errors import RerankError
from search.query import PreparedQuery
from search.results import Ranked, StageTrace
from search.retrieval import field_scores

if TYPE_CHECKING:
    from indexing.bm25 import BM25Index
    from indexing.passages import Passage
    from reranker.backends import Reranker

__all__ = ["RerankerCache", "reranker_lookup", "rerank_window", "rerank_text", "blend_weight"]

RerankerSource = Mapping[str, "Reranker"] | Callable[[str], "Reranker"] | None


class RerankerCache:
    """Loads rerankers by name on first use (``loader``, default ``reranker.backends.load_reranker(name,
    **kw)``) and keeps them (thread-safe)."""

    def __init__(self, loader: Callable[[str], Reranker] | None = None, **kw: Any) -> None:
        self._loader = loader
        self._kw = kw
        self._models: dict[str, Reranker] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Reranker:
        with self._lock:
            if name not in self._models:
                if self._loader is not None:
                    self._models[name] = self._loader(name)
                else:
                    from reranker.backends import load_reranker

                    self._models[name] = load_reranker(name, **self._kw)
            return self._models[name]


def reranker_lookup(rerankers: RerankerSource) -> Callable[[str], Reranker]:
    """``name -> Reranker`` from a fixed mapping (unknown names raise KeyError), a loader callable (cached) or
    None (loaded by name, cached)."""
    if rerankers is None or callable(rerankers):
        return RerankerCache(rerankers)  # type: ignore[arg-type]
    fixed = dict(rerankers)

    def lookup(name: str) -> Reranker:
        if name not in fixed:
            raise KeyError(f"reranker {name!r} is not configured; have {sorted(fixed)}")
        return fixed[name]

    return lookup


def blend_weight(reranker: Reranker, fixed: float | None) -> float:
    """The reranker's weight in the blend: ``fixed`` when given, else the reranker's own ``blend`` attribute,
    else 1.0 (the reranker's order alone)."""
    if fixed is not None:
        return fixed
    own = getattr(reranker, "blend", None)
    return 1.0 if own is None else float(own)


def rerank_text(psg: Passage, with_title: bool = False) -> str:
    """The passage text the reranker reads (``title + " " + text`` with ``with_title``)."""
    if with_title and psg.title:
        return f"{psg.title} {psg.text}"
    return psg.text


def rerank_window(p: PreparedQuery, ranked: Ranked, reranker: Reranker, *, bm25: BM25Index, rerank_top: int,
                  depth: int, learned: LearnedBlend | None, alpha: float, with_title: bool, blend_features: bool,
                  field_query: str, trace: StageTrace, passages: dict[str, Passage]) -> Ranked:
    """Rerank the top ``rerank_top`` of ``ranked`` → the new full order (window reranked and blended, the rest
    as it was). Fetched passages are added to ``passages``; ranks, scores (``rerank``, ``rerank_raw``, and
    ``rerank_prob``, with a learned blend or ``blend_features`` ``bm25_exact`` / ``bm25_folded`` for ``field_query``) and the
    ``fetch`` / ``rerank`` / ``blend`` timings go into ``trace``. Raises :class:`RerankError` when the
    reranker returns the wrong number of scores."""
    window = ranked[:rerank_top]
    start = time.perf_counter()
    for psg in bm25.get([pid for pid, _ in window], missing="skip"):
        passages[psg.id] = psg
    trace.time("fetch", start)
    window = [(pid, s) for pid, s in window if pid in passages]
    texts = [rerank_text(passages[pid], with_title) for pid, _ in window]
    start = time.perf_counter()
    scores = reranker.rerank(p.searched, texts)
    trace.time("rerank", start)
    raw = np.asarray(scores.raw, dtype=np.float64).reshape(-1)
    norm = np.asarray(scores.normalized, dtype=np.float64).reshape(-1)
    if len(raw) != len(window):
        raise RerankError(f"reranker {getattr(reranker, 'name', '?')} returned {len(raw)} scores "
                          f"for {len(window)} passages")
    order = sorted(range(len(window)), key=lambda j: -raw[j])  # stable: ties keep first-stage order
    reranked = [(window[j][0], float(norm[j])) for j in order]
    if learned is not None or blend_features:
        field_scores(bm25, field_query, depth, [pid for pid, _ in window], trace)
    if learned is not None:
        start = time.perf_counter()
        cands = [candidate(pid, raw[j], trace.scores[pid], trace.ranks.get(pid, {}), passages[pid].text)
                 for j, (pid, _) in enumerate(window)]
        reranked = learned.rank(cands)
        trace.time("blend", start)
    elif alpha < 1.0:
        reranked = blend_with_first_stage(window, [(window[j][0], float(raw[j])) for j in order], alpha)
    trace.record("rerank", reranked)
    for j, (pid, _) in enumerate(window):
        trace.scores.setdefault(pid, {})["rerank_raw"] = float(raw[j])
        trace.scores[pid]["rerank_prob"] = float(norm[j])  # calibrated probability (RerankScores.normalized)
    seen = {pid for pid, _ in window}
    return reranked + [(pid, s) for pid, s in ranked if pid not in seen]
