"""Comparing ranked lists: overlap@k, Kendall's tau, rank movement, and one display score scale.

Everything here works on plain ranked lists of passage ids (best first), so it is independent of the
pipeline code and easy to test. The Compare tab of the app and the API use it.

- :func:`overlap_at_k` — share of the top-``k`` of two lists that they have in common.
- :func:`kendall_tau` — Kendall's tau-b (``scipy.stats.kendalltau``) between the ranks two lists give to
  the ids they *share*; ``None`` when they share fewer than two ids (tau is undefined then).
- :func:`rank_movement` — per id, how many places it moved between a "before" and an "after" list.
- :func:`movement_marker` — a short text marker (``▲3``, ``▼1``, ``=``, ``new``) for a movement.
- :func:`minmax` — map retrieval scores to ``[0, 1]`` (reranker logits go through
  :func:`reranker.backends.sigmoid`, the one logistic function) so that systems can be shown on one scale.
- :func:`pairwise_stats` — overlap@k and tau for every pair of systems.
- :func:`display_scores` — the hits of one result on that ``[0, 1]`` scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from reranker.backends import sigmoid

__all__ = [
    "overlap_at_k",
    "kendall_tau",
    "rank_movement",
    "movement_marker",
    "minmax",
    "PairStats",
    "pairwise_stats",
    "display_scores",
]


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k, in ``[0, 1]``.

    ``k`` is capped at the length of the longer list, so two identical lists shorter than ``k`` score 1.0.
    Two empty lists score 1.0 (they agree); one empty list scores 0.0.

    >>> overlap_at_k(["a", "b", "c"], ["c", "a", "x"], 3)
    0.6666666666666666
    """
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    top_a, top_b = list(a[:k]), list(b[:k])
    denom = min(k, max(len(top_a), len(top_b)))
    if denom == 0:
        return 1.0
    return len(set(top_a) & set(top_b)) / denom


def kendall_tau(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Kendall's tau-b between the orders ``a`` and ``b`` give to the ids present in both lists.

    Returns a float in ``[-1, 1]`` (1 = same relative order, -1 = reversed), or ``None`` when fewer than two
    ids are shared (the statistic is undefined). Ids found in only one list do not count; read the result
    together with :func:`overlap_at_k`.

    >>> kendall_tau(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> kendall_tau(["a", "b", "c"], ["c", "b", "a"])
    -1.0
    """
    rank_b = {doc: i for i, doc in enumerate(b)}
    shared = [doc for doc in dict.fromkeys(a) if doc in rank_b]
    if len(shared) < 2:
        return None
    ranks_a = list(range(len(shared)))
    ranks_b = [rank_b[doc] for doc in shared]
    tau = kendalltau(ranks_a, ranks_b).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def rank_movement(before: Sequence[str], after: Sequence[str]) -> dict[str, int | None]:
    """For each id in ``after``: ``before_rank - after_rank`` (positive = moved up), ``None`` if new.

    >>> rank_movement(["a", "b", "c"], ["c", "a", "z"])
    {'c': 2, 'a': -1, 'z': None}
    """
    pos = {doc: i for i, doc in enumerate(before)}
    return {doc: (pos[doc] - i if doc in pos else None) for i, doc in enumerate(after)}


def movement_marker(delta: int | None) -> str:
    """Movement → short marker: ``▲n`` (up n places), ``▼n`` (down), ``=`` (same), ``new`` (not before)."""
    if delta is None:
        return "new"
    if delta > 0:
        return f"▲{delta}"
    if delta < 0:
        return f"▼{-delta}"
    return "="


def minmax(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Min-max scale to ``[0, 1]``; a constant (or single-element) list maps to all ones."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 1e-12:
        return np.ones_like(arr)
    return (arr - lo) / (hi - lo)


@dataclass(frozen=True)
class PairStats:
    """Agreement between two systems' lists."""

    a: str
    b: str
    overlap: float  # overlap@k
    tau: float | None  # Kendall's tau-b on shared ids (None if < 2 shared)
    shared: int  # number of ids in both top-k lists
    k: int


def pairwise_stats(lists: Mapping[str, Sequence[str]], k: int) -> list[PairStats]:
    """overlap@k and Kendall's tau (on the top-k lists) for every unordered pair of systems, in input order."""
    out = []
    for (name_a, a), (name_b, b) in combinations(lists.items(), 2):
        top_a, top_b = list(a[:k]), list(b[:k])
        out.append(
            PairStats(
                a=name_a,
                b=name_b,
                overlap=overlap_at_k(top_a, top_b, k),
                tau=kendall_tau(top_a, top_b),
                shared=len(set(top_a) & set(top_b)),
                k=k,
            )
        )
    return out


def display_scores(hits: Sequence[Any]) -> list[float]:
    """Scores of a result's hits on one ``[0, 1]`` scale, in hit order.

    Hits scored by a reranker (``stage_scores["rerank_raw"]``, the logit) get ``sigmoid(logit)``, which is
    comparable across rerankers and queries. The others (retrieval-only pipelines, or ranks below the
    reranked window) get their retrieval score min-max scaled within this list.
    """
    out: list[float] = [0.0] * len(hits)
    plain: list[int] = []
    for i, hit in enumerate(hits):
        raw = (getattr(hit, "stage_scores", None) or {}).get("rerank_raw")
        if raw is not None:
            out[i] = float(sigmoid([raw])[0])
        else:
            plain.append(i)
    if plain:
        scaled = minmax([float(hits[i].score) for i in plain])
        for i, v in zip(plain, scaled, strict=True):
            out[i] = float(v)
    return out
