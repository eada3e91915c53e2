"""search.significance: paired t-test / Wilcoxon on tiny hand-made inputs with known results."""

from __future__ import annotations

import json
import math

import pytest

from search.significance import compare_systems, main, paired_test


def _t4_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 4 degrees of freedom (closed form of its CDF)."""
    x = t / math.sqrt(1 + t * t / 4)
    cdf = 0.5 + 3 / 8 * x * (1 - t * t / (12 * (1 + t * t / 4)))
    return 2 * (1 - cdf)


def test_known_t_and_exact_wilcoxon():
    r = paired_test([0, 0, 0, 0, 0], [1, 2, 3, 4, 5], "m")
    # differences 1..5: mean 3, sample sd sqrt(2.5) -> t = 3 / (sqrt(2.5)/sqrt(5)) = 3*sqrt(2)
    assert r.n == 5 and r.mean_diff == pytest.approx(3.0)
    assert r.t_stat == pytest.approx(3 * math.sqrt(2))
    assert r.t_pvalue == pytest.approx(_t4_two_sided_p(3 * math.sqrt(2)), rel=1e-6)
    assert r.t_pvalue == pytest.approx(0.01324, abs=5e-5)
    # all 5 signed ranks positive: W- = 0, exact two-sided p = 2 / 2**5
    assert r.wilcoxon_stat == 0.0
    assert r.wilcoxon_pvalue == pytest.approx(2 / 32)
    assert (r.wins, r.losses, r.ties) == (5, 0, 0)


def test_direction_and_symmetry():
    a, b = [0.2, 0.5, 1.0, 0.0, 0.3], [0.1, 0.9, 1.0, 0.5, 0.2]
    ab, ba = paired_test(a, b), paired_test(b, a)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff) == pytest.approx((0.5 - 0.0 + 0.4 - 0.1 - 0.1) / 5)
    assert ab.t_pvalue == pytest.approx(ba.t_pvalue)
    assert ab.wilcoxon_pvalue == pytest.approx(ba.wilcoxon_pvalue)
    assert (ab.wins, ab.losses, ab.ties) == (2, 2, 1) == (ba.losses, ba.wins, ba.ties)


def test_zero_differences_dropped_by_wilcoxon():
    # one tie (dropped), five positive differences: same exact p as n=5 all positive
    r = paired_test([1, 0, 0, 0, 0, 0], [1, 1, 2, 3, 4, 5])
    assert r.n == 6 and r.ties == 1
    assert r.wilcoxon_pvalue == pytest.approx(2 / 32)


def test_identical_systems_and_degenerate_inputs():
    r = paired_test([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert r.mean_diff == 0.0 and r.t_pvalue == 1.0 and r.wilcoxon_pvalue == 1.0
    c = paired_test([0, 0, 0, 0], [1, 1, 1, 1])  # constant non-zero shift
    assert c.t_pvalue == 0.0 and math.isinf(c.t_stat) and c.wilcoxon_pvalue == pytest.approx(2 / 16)
    one = paired_test([0.0], [1.0])
    assert one.n == 1 and math.isnan(one.t_pvalue) and math.isnan(one.wilcoxon_pvalue)
    with pytest.raises(ValueError):
        paired_test([1, 2], [1])


def test_compare_systems_pairs_common_queries(tmp_path, capsys):
    a = {"q1": {"mrr@10": 0.0, "ndcg@10": 0.0}, "q2": {"mrr@10": 0.0, "ndcg@10": 0.0},
         "q3": {"mrr@10": 0.0, "ndcg@10": 1.0}, "q4": {"mrr@10": 0.0, "ndcg@10": 0.0},
         "q5": {"mrr@10": 0.0, "ndcg@10": 0.0}, "only_a": {"mrr@10": 1.0, "ndcg@10": 1.0}}
    b = {"q1": {"mrr@10": 1.0, "ndcg@10": 0.0}, "q2": {"mrr@10": 0.5, "ndcg@10": 0.0},
         "q3": {"mrr@10": 1.0, "ndcg@10": 1.0}, "q4": {"mrr@10": 1.0, "ndcg@10": 0.0},
         "q5": {"mrr@10": 0.25, "ndcg@10": 0.0}}
    res = compare_systems(a, b)
    assert set(res) == {"mrr@10", "ndcg@10"}
    assert res["mrr@10"].n == 5 and res["mrr@10"].mean_diff == pytest.approx(3.75 / 5)
    assert res["ndcg@10"].mean_diff == 0.0 and res["ndcg@10"].wilcoxon_pvalue == 1.0
    with pytest.raises(KeyError):
        compare_systems(a, {"q1": {"ndcg@10": 0.0}}, ["mrr@10"])
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert main([str(pa), str(pb), "--metric", "mrr@10"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out) == ["mrr@10"] and out["mrr@10"]["wins"] == 5
