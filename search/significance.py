"""Paired significance of two systems from per-query metric values.

``a`` and ``b`` are ``{query_id: {metric: value}}`` (what :func:`search.metrics.evaluate_per_query` and
``python -m search.eval --per-query-out`` give). Only queries present in both count. The difference is
``b - a`` (positive: ``b`` is better). Tests (scipy): the paired t-test (``scipy.stats.ttest_rel``) and the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped — ``zero_method="wilcox"``,
two-sided). With no non-zero difference both p-values are 1.0 (nothing to distinguish); with fewer than two
paired queries they are NaN.

    python -m search.significance A_per_query.json B_per_query.json [--metric mrr@10 ...]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PairedResult", "paired_test", "compare_systems", "main"]

PerQuery = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class PairedResult:
    metric: str
    n: int  # paired queries
    mean_a: float
    mean_b: float
    mean_diff: float  # mean of (b - a)
    t_stat: float
    t_pvalue: float
    wilcoxon_stat: float
    wilcoxon_pvalue: float
    wins: int  # queries where b > a
    losses: int  # queries where b < a
    ties: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def paired_test(a: Sequence[float], b: Sequence[float], metric: str = "") -> PairedResult:
    """Paired t-test and Wilcoxon signed-rank test of ``b`` vs ``a`` (same queries, same order)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need two equal-length 1-d sequences, got {x.shape} and {y.shape}")
    n = int(x.size)
    d = y - x
    nz = d[np.abs(d) > 1e-12]
    wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    nan = float("nan")
    if n < 2:
        t, tp, w, wp = nan, nan, nan, nan
    elif nz.size == 0:
        t, tp, w, wp = 0.0, 1.0, 0.0, 1.0
    else:
        if np.allclose(d, d[0]):  # constant non-zero difference: t is infinite, p = 0
            t, tp = math.copysign(math.inf, float(d[0])), 0.0
        else:
            tr = stats.ttest_rel(y, x)
            t, tp = float(tr.statistic), float(tr.pvalue)
        wr = stats.wilcoxon(y, x, zero_method="wilcox", alternative="two-sided")
        w, wp = float(wr.statistic), float(wr.pvalue)
    return PairedResult(metric, n, float(x.mean()) if n else nan, float(y.mean()) if n else nan,
                        float(d.mean()) if n else nan, t, tp, w, wp, wins, losses, n - wins - losses)


def compare_systems(a: PerQuery, b: PerQuery, metrics: Sequence[str] | None = None) -> dict[str, PairedResult]:
    """``{metric: PairedResult}`` of system ``b`` vs ``a`` over their common queries (sorted by id)."""
    qids = sorted(set(a) & set(b))
    if metrics is None:
        metrics = sorted({m for q in qids for m in a[q]} & {m for q in qids for m in b[q]})
    out = {}
    for m in metrics:
        missing = [q for q in qids if m not in a[q] or m not in b[q]]
        if missing:
            raise KeyError(f"metric {m!r} missing for {len(missing)} queries, e.g. {missing[:3]}")
        out[m] = paired_test([a[q][m] for q in qids], [b[q][m] for q in qids], m)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.significance", description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="per-query JSON of the baseline system")
    p.add_argument("b", help="per-query JSON of the system compared with it")
    p.add_argument("--metric", action="append", help="metric(s) to test (default: all common ones)")
    args = p.parse_args(argv)
    with open(args.a, encoding="utf-8") as fa, open(args.b, encoding="utf-8") as fb:
        res = compare_systems(json.load(fa), json.load(fb), args.metric)
    print(json.dumps({m: r.as_dict() for m, r in res.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
