"""Rank fusion: several ranked lists of passage ids → one fused ranked list.

Small pure functions, chosen by name through :data:`FUSIONS` / :func:`fuse` (bm25s style).
Every input list is a sequence of ``(id, score)`` pairs in rank order (best first); plain ids are
accepted too where scores are not needed (RRF). Every output is a list of ``(id, fused_score)``
pairs, best first; ties keep the order in which ids were first seen (first list first).

RRF and ``k``
-------------
Reciprocal Rank Fusion (Cormack, Clarke & Büttcher, SIGIR 2009) scores a document
``sum_i w_i / (k + rank_i)``. The constant ``k`` sets how much the very top of one list dominates. Our RRF
default is the paper's ``k = 60`` (also Elasticsearch's/OpenSearch's): rank 1 is worth 1/61 and rank 10 1/70,
so a passage that *both* retrievers place in their top 10 beats one that only one of them puts first —
agreement counts more than a single list's top hit. Qdrant's built-in fusion
(``qdrant_client.hybrid.fusion``) uses ``DEFAULT_RANKING_CONSTANT_K = 2`` with the score ``1 / (rank + k - 1)``,
i.e. ``1 / (rank + 1)`` — our ``k=1``: rank 1 is worth 1/2 and rank 10 1/11, so one retriever's top hit
almost always wins. Qdrant picked a tiny constant for short result lists inside one engine; 60 is the
well-tested choice when nothing is known about the retrievers.

Which fusion the pipeline uses (measured, not assumed)
------------------------------------------------------
On our development split (nanibot-qa *train* queries, 1,222; BM25 + multilingual-e5-small, top 100 each),
MRR@10 of ``hybrid`` was: RRF k=60 0.913, k=20 0.914, k=5 0.920, k=1 0.921; weighted min-max 0.5/0.5 0.934
(0.4/0.6 0.931, 0.6/0.4 0.932); with queries stripped of diacritics: RRF k=60 0.908, min-max 0.926. Here the
relevant passage is usually the clear top hit of at least one retriever, and rank-only fusion throws that
score margin away. So :class:`search.pipeline.Pipeline` defaults to :data:`DEFAULT_FUSION` = ``"minmax"`` with
equal weights (the convex combination that Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid
Retrieval", TOIS 2023, also found stronger than RRF); RRF stays available by name. The held-out sets agree
(see ``bench/dense_hybrid.py``).

``weighted_minmax`` is that score-based fusion: each list's scores are min-max scaled to ``[0, 1]`` and
summed with weights; a document missing from a list gets 0 from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["rrf", "weighted_minmax", "fuse", "FUSIONS", "RRF_K", "DEFAULT_FUSION", "DEFAULT_MINMAX_WEIGHTS"]

RRF_K = 60
DEFAULT_FUSION = "minmax"
DEFAULT_MINMAX_WEIGHTS = (0.5, 0.5)  # (bm25, dense)
RankedItem = str | tuple[str, float]


def _id_of(item: RankedItem) -> str:
    return item if isinstance(item, str) else item[0]


def _check_weights(weights: Sequence[float] | None, n_lists: int) -> list[float]:
    if weights is None:
        return [1.0] * n_lists
    weights = [float(w) for w in weights]
    if len(weights) != n_lists:
        raise ValueError(f"got {len(weights)} weights for {n_lists} lists")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {weights}")
    return weights


def _sorted(scores: dict[str, float]) -> list[tuple[str, float]]:
    # dicts keep insertion order and sorted() is stable: ties stay in first-seen order.
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def rrf(
    ranked_lists: Sequence[Sequence[RankedItem]],
    k: float = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal Rank Fusion.

    Args:
        ranked_lists: lists in rank order (best first) of ids or ``(id, score)`` pairs; scores are ignored.
            An id repeated inside one list counts only at its best rank.
        k: rank constant (> 0); 60 by default (see module docstring).
        weights: one weight >= 0 per list (default 1.0 each).

    Returns:
        ``[(id, sum_i weights[i] / (k + rank_i))]`` best first, rank 1-based.

    >>> rrf([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    weights = _check_weights(weights, len(ranked_lists))
    scores: dict[str, float] = {}
    for items, weight in zip(ranked_lists, weights, strict=True):
        seen: set[str] = set()
        for rank, item in enumerate(items, start=1):
            pid = _id_of(item)
            if pid in seen:
                continue
            seen.add(pid)
            scores[pid] = scores.get(pid, 0.0) + weight / (k + rank)
    return _sorted(scores)


def weighted_minmax(
    scored_lists: Sequence[Sequence[tuple[str, float]]],
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Weighted sum of min-max normalized scores.

    Args:
        scored_lists: lists of ``(id, score)`` pairs (higher score = better). In each list the scores are
            scaled to ``(s - min) / (max - min)``; a list whose scores are all equal gives 1.0 to each of its
            ids. An id missing from a list gets 0 from that list; a repeated id keeps its best score.
        weights: one weight >= 0 per list (default 1.0 each).

    Returns:
        ``[(id, sum_i weights[i] * scaled_i)]`` best first.

    >>> weighted_minmax([[("a", 10.0), ("b", 5.0), ("c", 0.0)], [("c", 0.9), ("a", 0.1)]], [0.5, 0.5])
    [('a', 0.5), ('c', 0.5), ('b', 0.25)]
    """
    weights = _check_weights(weights, len(scored_lists))
    scores: dict[str, float] = {}
    for items, weight in zip(scored_lists, weights, strict=True):
        best: dict[str, float] = {}
        for pid, score in items:
            score = float(score)
            if pid not in best or score > best[pid]:
                best[pid] = score
        if not best:
            continue
        lo, hi = min(best.values()), max(best.values())
        span = hi - lo
        for pid, score in best.items():
            scaled = 1.0 if span == 0 else (score - lo) / span
            scores[pid] = scores.get(pid, 0.0) + weight * scaled
    return _sorted(scores)


FUSIONS: dict[str, Callable[..., list[tuple[str, float]]]] = {
    "rrf": rrf,
    "minmax": weighted_minmax,
}


def fuse(name: str, lists: Sequence[Sequence[tuple[str, float]]], **kwargs) -> list[tuple[str, float]]:
    """Fuse ``lists`` with the method called ``name`` (``"rrf"`` or ``"minmax"``); kwargs go to the method."""
    try:
        method = FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; choose one of {sorted(FUSIONS)}") from None
    return method(lists, **kwargs)
