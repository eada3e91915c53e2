"""Fusion math on hand-checked examples."""

from __future__ import annotations

import doctest

import pytest

from search import fusion
from search.fusion import fuse, rrf, weighted_minmax


def test_rrf_k60_hand_checked():
    bm25 = [("d1", 12.0), ("d2", 9.0), ("d3", 1.0)]
    dense = [("d3", 0.9), ("d1", 0.8)]
    fused = dict(rrf([bm25, dense]))
    assert fused["d1"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["d3"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d2"] == pytest.approx(1 / 62)
    assert [pid for pid, _ in rrf([bm25, dense])] == ["d1", "d3", "d2"]


def test_rrf_small_k_lets_one_list_top_hit_win():
    # d1 is first in one list only, d2 is second in both.
    lists = [["d1", "d2"], ["d3", "d2"]]
    assert rrf(lists, k=60)[0][0] == "d2"  # 2/62 > 1/61
    # Qdrant's default (k=2, score 1/(rank+1)) is our k=1: 1/2 vs 2/3 -> d2 still wins here …
    assert rrf(lists, k=1)[0][0] == "d2"
    # … but with d2 third in both lists the single top hit wins under k=1 and loses under k=60.
    lists = [["d1", "x", "d2"], ["d3", "y", "d2"]]
    assert rrf(lists, k=1)[0][0] == "d1"  # 1/2 > 2/4
    assert rrf(lists, k=60)[0][0] == "d2"  # 2/63 > 1/61


def test_rrf_weights_and_plain_ids():
    fused = dict(rrf([["a", "b"], ["b"]], k=10, weights=[2.0, 0.5]))
    assert fused["a"] == pytest.approx(2 / 11)
    assert fused["b"] == pytest.approx(2 / 12 + 0.5 / 11)


def test_rrf_duplicate_id_counts_once_at_best_rank():
    fused = dict(rrf([["a", "a", "b"]], k=1))
    assert fused["a"] == pytest.approx(1 / 2)
    assert fused["b"] == pytest.approx(1 / 4)


def test_rrf_ties_keep_first_seen_order():
    assert [p for p, _ in rrf([["a"], ["b"]])] == ["a", "b"]
    assert [p for p, _ in rrf([["b"], ["a"]])] == ["b", "a"]


def test_rrf_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        rrf([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="k must be"):
        rrf([["a"]], k=0)
    with pytest.raises(ValueError, match=">= 0"):
        rrf([["a"]], weights=[-1.0])
    assert rrf([]) == []
    assert rrf([[], []]) == []


def test_weighted_minmax_hand_checked():
    bm25 = [("a", 20.0), ("b", 15.0), ("c", 10.0)]  # scaled: a=1, b=0.5, c=0
    dense = [("c", 0.8), ("d", 0.6), ("a", 0.4)]  # scaled: c=1, d=0.5, a=0
    fused = dict(weighted_minmax([bm25, dense], weights=[0.3, 0.7]))
    assert fused["a"] == pytest.approx(0.3)
    assert fused["b"] == pytest.approx(0.15)
    assert fused["c"] == pytest.approx(0.7)
    assert fused["d"] == pytest.approx(0.35)
    assert [p for p, _ in weighted_minmax([bm25, dense], [0.3, 0.7])] == ["c", "d", "a", "b"]


def test_weighted_minmax_constant_scores_and_empty_lists():
    fused = dict(weighted_minmax([[("a", 3.0), ("b", 3.0)], []]))
    assert fused == {"a": 1.0, "b": 1.0}
    assert weighted_minmax([]) == []


def test_fuse_by_name():
    lists = [[("a", 1.0), ("b", 0.5)], [("b", 2.0)]]
    assert fuse("rrf", lists, k=1) == rrf(lists, k=1)
    assert fuse("minmax", lists, weights=[1, 1]) == weighted_minmax(lists, [1, 1])
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("borda", lists)


def test_doctests():
    assert doctest.testmod(fusion).failed == 0
