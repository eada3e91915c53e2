"""Retrieval metrics with ``pytrec_eval`` (trec_eval's own code): nDCG@k, MRR@k, Recall@k.

``qrels``: ``{query_id: {doc_id: relevance}}``; ``run``: ``{query_id: {doc_id: score}}`` (higher = better).

- nDCG@k is trec_eval's ``ndcg_cut.k``; Recall@k is ``recall.k``.
- MRR@k: trec_eval's ``recip_rank`` has no cut-off, so each run is first truncated to its top ``k`` documents
  (ordered like trec_eval: score descending, ties by doc id descending) and then scored with ``recip_rank``.
- Every query of ``qrels`` that has a relevant document counts; a query missing from the run scores 0 (plain
  ``pytrec_eval`` would silently skip it, inflating the mean).

Per-query values (:func:`evaluate_per_query`) feed the UI's win/loss view and paired comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytrec_eval

__all__ = ["DEFAULT_METRICS", "evaluate", "evaluate_per_query", "parse_metric", "truncate_run"]

DEFAULT_METRICS = ("ndcg@3", "mrr@3", "ndcg@10", "mrr@10", "recall@100")

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; supported: ndcg, mrr, recall (ValueError otherwise)."""
    kind, at, k = name.lower().partition("@")
    if kind not in ("ndcg", "mrr", "recall") or not at or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {name!r}; use ndcg@K, mrr@K or recall@K")
    return kind, int(k)


def truncate_run(run: Run, k: int) -> dict[str, dict[str, float]]:
    """Each query's top ``k`` documents in trec_eval order (score desc, then doc id desc)."""
    out = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
        out[qid] = {d: float(s) for d, s in ranked}
    return out


def evaluate_per_query(
    qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """``{query_id: {metric: value}}`` for every query of ``qrels`` with at least one relevant document."""
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(int(r) > 0 for r in docs.values())}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
    parsed = [(m, *parse_metric(m)) for m in metrics]
    per_query: dict[str, dict[str, float]] = {q: {m: 0.0 for m in metrics} for q in qrels}
    plain: dict[str, str] = {}  # trec_eval measure key -> our metric name
    for name, kind, k in parsed:
        if kind == "ndcg":
            plain[f"ndcg_cut_{k}"] = name
        elif kind == "recall":
            plain[f"recall_{k}"] = name
    if plain and run:
        measures = {f"ndcg_cut.{k}" for _, kind, k in parsed if kind == "ndcg"}
        measures |= {f"recall.{k}" for _, kind, k in parsed if kind == "recall"}
        results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        for qid, values in results.items():
            for key, name in plain.items():
                if key in values:
                    per_query[qid][name] = float(values[key])
    for name, kind, k in parsed:
        if kind != "mrr" or not run:
            continue
        results = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncate_run(run, k))
        for qid, values in results.items():
            per_query[qid][name] = float(values["recip_rank"])
    return per_query


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries, plus ``"queries"`` (how many were averaged).

    >>> evaluate({"q": {"d1": 1}}, {"q": {"d2": 2.0, "d1": 1.0}}, ["mrr@10", "ndcg@1"])
    {'mrr@10': 0.5, 'ndcg@1': 0.0, 'queries': 1}
    """
    per_query = evaluate_per_query(qrels, run, metrics)
    n = len(per_query)
    out: dict[str, float] = {m: (sum(v[m] for v in per_query.values()) / n if n else 0.0) for m in metrics}
    out["queries"] = n
    return out
