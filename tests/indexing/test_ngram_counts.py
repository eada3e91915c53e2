"""indexing.ngram_counts (the restorer's sorted-array n-gram tables) and the restorer's vectorized Kneser-Ney
scoring against a plain dict implementation of the same formula."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from indexing.ngram_counts import NgramCounts, history_stats
from indexing.restorer import KN_DISCOUNT, DiacriticRestorer


def test_lookup_get_and_equality_match_the_dict() -> None:
    rng = np.random.default_rng(0)
    table = {int(k): int(c) for k, c in zip(rng.choice(10**9, 500, replace=False), rng.integers(1, 50, 500),
                                            strict=True)}
    t = NgramCounts.from_mapping(table)  # given in dict (unsorted) order
    assert bool((t.keys_[1:] > t.keys_[:-1]).all()) and len(t) == 500 and t == table
    probe = np.array(list(table)[:50] + [-5, 0, 10**9 + 7, 2**40])
    assert t.lookup(probe).tolist() == [table.get(int(k), 0) for k in probe]
    assert t.lookup(probe.reshape(6, 9)).shape == (6, 9)
    assert t.get(next(iter(table))) == table[next(iter(table))] and t.get(-1, 7) == 7
    assert dict(t.items()) == table and list(t.keys()) == sorted(table)
    empty = NgramCounts.from_mapping(None)
    assert not empty and empty.lookup(np.array([1, 2])).tolist() == [0, 0] and empty.get(3) == 0
    with pytest.raises(ValueError, match="duplicate"):
        NgramCounts(np.array([3, 1, 3]), np.array([1, 1, 1]))


def test_history_stats_are_totals_and_distinct_continuations() -> None:
    V = 7
    table = {a * V + b: (a + 1) * (b + 2) for a in range(V) for b in range(V) if (a * b) % 3 != 1}
    hist, totals, types = history_stats(NgramCounts.from_mapping(table), V)
    want_total, want_types = Counter(), Counter()
    for k, c in table.items():
        want_total[k // V] += c
        want_types[k // V] += 1
    assert hist.tolist() == sorted(want_total)
    assert totals.tolist() == [want_total[h] for h in hist.tolist()]
    assert types.tolist() == [want_types[h] for h in hist.tolist()]


def _dict_logp(r: DiacriticRestorer, u: int, v: int, w: int) -> float:
    """The interpolated Kneser-Ney trigram of the restorer, written out over dicts (the old implementation)."""
    V, D = r._V, KN_DISCOUNT
    bi, tri = dict(r.bigram.items()), dict(r.trigram.items())
    hc, ht, h2c, h2t, cont = Counter(), Counter(), Counter(), Counter(), Counter()
    for k, c in bi.items():
        hc[k // V] += c
        ht[k // V] += 1
        cont[k % V] += 1
    for k, c in tri.items():
        h2c[k // V] += c
        h2t[k // V] += 1
    p_c = ((cont[w] if w >= 0 else 0) + 1) / (sum(cont.values()) + V)
    n = hc.get(v, 0) if v >= 0 else 0
    p_bi = p_c if n == 0 else (max((bi.get(v * V + w, 0) if w >= 0 else 0) - D, 0.0) + D * ht[v] * p_c) / n
    if u < 0 or v < 0 or w < 0 or not tri:
        return math.log(p_bi)
    h = u * V + v
    n2 = h2c.get(h, 0)
    if n2 == 0:
        return math.log(p_bi)
    return math.log((max(tri.get(h * V + w, 0) - D, 0.0) + D * h2t[h] * p_bi) / n2)


@pytest.mark.parametrize("order", [2, 3])
def test_vectorized_kneser_ney_equals_the_dict_formula(order: int) -> None:
    r = DiacriticRestorer.from_texts(["Bóng đèn sáng.", "Bóng đèn tắt.", "Ngôi đền cổ.", "Hà Nội có nhiều hồ đẹp.",
                                      "Đèn đường ở Hà Nội sáng."], order=order, question_seed=False)
    ids = list(range(-1, r._V))
    u, v, w = (a.ravel() for a in np.meshgrid(ids, ids, ids, indexing="ij"))
    got = r._logp(u, v, w)
    want = np.array([_dict_logp(r, int(a), int(b), int(c)) for a, b, c in zip(u, v, w, strict=True)])
    np.testing.assert_array_equal(got, want)  # same operations in the same order: bit-identical


def test_a_saved_restorer_loads_sorted_tables_and_restores_the_same(tmp_path) -> None:
    r = DiacriticRestorer.from_texts(["Thủ đô của Việt Nam là Hà Nội.", "Hà Nội có nhiều hồ."])
    back = DiacriticRestorer.load(r.save(tmp_path / "d.npz"))
    assert back.bigram == r.bigram and back.trigram == r.trigram
    assert back.restore("Thu do cua Viet Nam la Ha Noi") == r.restore("Thu do cua Viet Nam la Ha Noi") == \
        "Thủ đô của Việt Nam là Hà Nội"
