"""Evaluate a pipeline on a BEIR-layout dataset: index the corpus, run every query, score with pytrec_eval.

Usage::

    python -m search.eval DATASET_DIR --pipeline hybrid --json [--split test] [--strip-query-diacritics]
        [--run-out FILE] [--index-cache DIR] [--extra-corpus PATH --extra-limit N] [--embedder e5-small]

``DATASET_DIR`` holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``. Each corpus document is
one passage (no splitting, BEIR convention); ``--extra-corpus`` adds the first ``--extra-limit`` documents
of another JSONL(.gz) ``{"_id","title","text"}`` file as distractors. The index is built once with
:func:`indexing.build.build_generation` and cached under ``--index-cache`` (default
``$VIRANKER_HOME/eval-cache``) by a hash of the corpus bytes and the settings; vectors come from the shared
embedding cache. Every query of the split goes through :class:`search.pipeline.Pipeline`; the run is written
as a TREC run file (``--run-out``) with the pipeline's own scores (a document scores as its best passage:
BM25, cosine, fused or reranker score, whatever ranked it last), so runs can be fused by score later. The
metrics are computed on the ranking itself (ties in the scores cannot reorder it). With ``--json`` the LAST stdout line is one JSON
object with exactly the keys ``ndcg@3``, ``mrr@3``, ``ndcg@10``, ``mrr@10``, ``recall@100``, ``queries``,
``pipeline``; progress and details go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexing import settings
from indexing.beir import BeirDataset, load_beir, read_trec_run, write_trec_run
from indexing.normalize import fold, normalize
from search.metrics import DEFAULT_METRICS, evaluate, evaluate_per_query
from search.pipeline import (
    DEFAULT_PIPELINE,
    Pipeline,
    QueryError,
    SearchResult,
    default_pipeline_for,
    parse_pipeline,
)

__all__ = [
    "BeirDataset",
    "EvalReport",
    "load_beir",
    "open_eval_index",
    "run_eval",
    "write_trec_run",
    "read_trec_run",
    "main",
    "RESULT_KEYS",
]

if TYPE_CHECKING:
    from indexing.build import PrecomputedVectors
    from indexing.embedders import Embedder
    from indexing.snapshot import IndexSnapshot

RESULT_KEYS = ("ndcg@3", "mrr@3", "ndcg@10", "mrr@10", "recall@100", "queries", "pipeline")
RUN_DEPTH = 100
_CACHE_FORMAT = 1


# ------------------------------------------------------------------------------------------------ data
# BeirDataset, load_beir, write_trec_run and read_trec_run are indexing.beir's (the one reader of each format),
# re-exported here for the callers of search.eval.


# ----------------------------------------------------------------------------------------------- index
def _index_name(dataset: BeirDataset, model_id: str | None) -> str:
    from indexing.build import normalizer_info

    key = json.dumps({"format": _CACHE_FORMAT, "corpus": dataset.corpus_sha256, "embedder": model_id,
                      "normalizer": normalizer_info()["source_sha1"]}, sort_keys=True)
    return f"eval-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def _precomputed_vectors(dataset: BeirDataset, embedder: Embedder | None) -> PrecomputedVectors | None:
    """Vectors shipped in the dataset folder (``vectors-*.json`` + ``.npy``, see
    :class:`indexing.build.PrecomputedVectors`) for ``embedder``'s model, if any: they seed the embedding cache,
    so a bundled set is not embedded again."""
    if embedder is None:
        return None
    from indexing.build import BuildError, PrecomputedVectors

    for meta in sorted(Path(dataset.path).glob("vectors-*.json")):
        try:
            pre = PrecomputedVectors.load(meta)
        except (BuildError, OSError, ValueError) as err:
            print(f"{meta}: ignored ({err})", file=sys.stderr)
            continue
        if pre.model_id == getattr(embedder, "model_id", None):
            return pre
    return None


def open_eval_index(dataset: BeirDataset, embedder: Embedder | None, cache_dir: str | os.PathLike[str] | None = None,
                    progress: bool = True, progress_callback: Callable[[str, int, int], None] | None = None) -> IndexSnapshot:
    """The cached index of ``dataset`` (built when missing) → an open :class:`indexing.build.IndexSnapshot`.

    ``embedder`` None builds BM25 only (and reuses a cached index with vectors when there is one).
    ``progress_callback(stage, done, total)`` receives the build's stage progress (see
    :func:`indexing.build.build_generation`); ``progress`` only controls the console tqdm bars.
    """
    from indexing import generations as gens
    from indexing.build import build_generation, open_generation
    from indexing.embed_cache import EmbeddingCache

    root = Path(cache_dir) if cache_dir is not None else settings.home() / "eval-cache"
    names = [_index_name(dataset, embedder.model_id if embedder is not None else None)]
    if embedder is None:
        from indexing.embedders import e5_small_model_id

        names.insert(0, _index_name(dataset, e5_small_model_id()))
    with_vectors = embedder is not None  # BM25-only runs leave Qdrant closed (local mode: one process per path)
    for name in names:
        if gens.current(settings.index_dir(name, root)) is not None:
            return open_generation(name, root=root, vectors=with_vectors)
    name = names[-1]
    print(f"indexing {len(dataset.passages):,} passages into {root / 'indexes' / name}", file=sys.stderr)
    build_generation(name, dataset.passages, embedder, root=root, progress=progress,
                     cache=EmbeddingCache(settings.cache_path()), keep=1, progress_callback=progress_callback,
                     precomputed=_precomputed_vectors(dataset, embedder))
    return open_generation(name, root=root, vectors=with_vectors)


# ---------------------------------------------------------------------------------------------- runs
def _doc_ranking(result: SearchResult) -> list[str]:
    """Hits → document ids, best first, each document once (a split document counts at its best passage)."""
    return list(dict.fromkeys(h.doc_id for h in result.hits))


def _doc_scores(result: SearchResult) -> list[float]:
    """The scores of :func:`_doc_ranking`'s documents: each document's best (first) passage's own score."""
    best: dict[str, float] = {}
    for h in result.hits:
        best.setdefault(h.doc_id, float(h.score))
    return list(best.values())


@dataclass
class EvalReport:
    """What :func:`run_eval` measured."""

    metrics: dict[str, Any]  # the RESULT_KEYS
    per_query: dict[str, dict[str, float]]
    run: dict[str, list[str]]  # query id -> document ids, best first
    timings_ms: dict[str, dict[str, float]]  # stage -> {"p50", "p95", "mean"}
    searched: dict[str, str] = field(default_factory=dict)  # query id -> searched query (routed ones)
    levels: dict[str, int] = field(default_factory=dict)  # diacritic level -> number of queries
    seconds: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=dict)  # query id -> the run's own scores, same order


def _latency(results: Sequence[SearchResult]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.timings_ms.items():
            stages.setdefault(k, []).append(v)
    return {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(np.mean(v))}
            for k, v in stages.items()}


def run_eval(
    dataset: BeirDataset,
    pipeline_name: str,
    pipe: Pipeline,
    *,
    strip_diacritics: bool = False,
    as_typed: bool = False,
    depth: int = RUN_DEPTH,
    batch: int = 64,
    progress: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Run every query of ``dataset`` through ``pipe`` → :class:`EvalReport` (queries that fail validation
    get an empty ranking).

    ``progress`` shows a console tqdm bar; ``progress_callback(done, total)`` (queries) is called once before
    the first batch and after each batch — the way a UI follows the run (the app drives ``gr.Progress``
    from it; nothing patches tqdm)."""
    parse_pipeline(pipeline_name)
    start = time.perf_counter()
    qids = list(dataset.queries)
    texts = [dataset.queries[q] for q in qids]
    if strip_diacritics:
        texts = [fold(t) for t in texts]
    results: dict[str, SearchResult] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(qids), desc=f"eval {pipeline_name}", unit="query", mininterval=1.0)
    if progress_callback is not None:
        progress_callback(0, len(qids))
    for i in range(0, len(qids), batch):
        chunk_ids, chunk = qids[i:i + batch], texts[i:i + batch]
        try:
            for qid, res in zip(chunk_ids, pipe.search_many(chunk, pipeline_name, depth, as_typed=as_typed),
                                strict=True):
                results[qid] = res
        except QueryError:  # one bad query in the chunk: search them one by one
            for qid, text in zip(chunk_ids, chunk, strict=True):
                try:
                    results[qid] = pipe.search(text, pipeline_name, depth, as_typed=as_typed)
                except QueryError as err:
                    print(f"query {qid}: {err}; counted with no results", file=sys.stderr)
        if bar is not None:
            bar.update(len(chunk_ids))
        if progress_callback is not None:
            progress_callback(min(i + batch, len(qids)), len(qids))
    if bar is not None:
        bar.close()
    run = {q: _doc_ranking(results[q]) if q in results else [] for q in qids}
    own_scores = {q: _doc_scores(results[q]) if q in results else [] for q in qids}
    scored = {q: {d: float(len(docs) + 1 - r) for r, d in enumerate(docs, start=1)} for q, docs in run.items()}
    metrics = evaluate(dataset.qrels, scored, DEFAULT_METRICS)
    per_query = evaluate_per_query(dataset.qrels, scored, DEFAULT_METRICS)
    out: dict[str, Any] = {k: round(float(metrics[k]), 4) for k in DEFAULT_METRICS}
    out["queries"] = int(metrics["queries"])
    out["pipeline"] = pipeline_name
    levels: dict[str, int] = {}
    for r in results.values():
        levels[r.diacritics] = levels.get(r.diacritics, 0) + 1
    searched = {q: r.searched_query for q, r in results.items() if r.searched_query != normalize(r.query)}
    return EvalReport(out, per_query, run, _latency(list(results.values())), searched, levels,
                      time.perf_counter() - start, own_scores)


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--pipeline", default="hybrid",
                   help="bm25 | dense | hybrid | <first>+<reranker> | default (the app's default pipeline: "
                        "hybrid+viranker when the shipped model recommends itself, else hybrid; the JSON names it)")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (last stdout line)")
    p.add_argument("--strip-query-diacritics", action="store_true",
                   help="remove the queries' diacritics (indexing.normalize.fold) before searching")
    p.add_argument("--as-typed", action="store_true", help="no diacritic routing/restoration")
    p.add_argument("--run-out", type=Path, help="write the TREC run file here (the pipeline's own scores)")
    p.add_argument("--per-query-out", type=Path, help="write per-query metrics (JSON) here")
    p.add_argument("--report-out", type=Path, help="write metrics, latency and routing details (JSON) here")
    p.add_argument("--index-cache", type=Path, help="index cache dir (default $VIRANKER_HOME/eval-cache)")
    p.add_argument("--extra-corpus", type=Path, help="JSONL(.gz) of distractor documents {_id,title,text}")
    p.add_argument("--extra-limit", type=int, help="use the first N distractors")
    p.add_argument("--embedder", default="e5-small", help="e5-small | bge-m3[:PATH] | st:PATH (default e5-small)")
    p.add_argument("--depth", type=int, default=100, help="candidates per retriever (default 100)")
    p.add_argument("--rerank-top", type=int, default=20, help="candidates the reranker scores (default 20)")
    p.add_argument("--rerank-blend", type=float, default=None,
                   help="reranker weight in a min-max blend with the first stage over the reranked window "
                        "(0..1; default: the pipeline's default)")
    p.add_argument("--fusion", default="minmax", choices=["minmax", "rrf"],
                   help="hybrid fusion: weighted min-max (default, 0.5/0.5) or RRF")
    p.add_argument("--fusion-weights", type=float, nargs=2, metavar=("BM25", "DENSE"))
    p.add_argument("--rrf-k", type=float, default=60.0, help="RRF constant (with --fusion rrf; default 60)")
    p.add_argument("--routed-bm25", default="restored", choices=["folded", "restored"],
                   help="BM25 for queries without diacritics: restored query on both fields (default) or the "
                   "typed query on the folded field")
    p.add_argument("--limit", type=int, help="evaluate only the first N queries (smoke tests)")
    p.add_argument("--sample", type=int, help="evaluate a seeded random sample of N queries (costly pipelines)")
    p.add_argument("--seed", type=int, default=13, help="seed of --sample (default 13)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pipeline == DEFAULT_PIPELINE:
        from reranker.backends import recommended_by_default

        args.pipeline = default_pipeline_for(["bm25", "dense", "hybrid"], "viranker", recommended_by_default)
        print(f"--pipeline default = {args.pipeline}", file=sys.stderr)
    try:
        first, reranker_name = parse_pipeline(args.pipeline)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.extra_limit is not None and args.extra_corpus is None:
        print("error: --extra-limit needs --extra-corpus", file=sys.stderr)
        return 2
    progress = not args.no_progress
    try:
        dataset = load_beir(args.dataset, args.split, args.extra_corpus, args.extra_limit)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.sample is not None and args.sample < len(dataset.queries):
        import random

        keep = sorted(random.Random(args.seed).sample(sorted(dataset.queries), args.sample))
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    if args.limit is not None:
        keep = list(dataset.queries)[: args.limit]
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    embedder = None
    if first in ("dense", "hybrid"):
        from indexing.embedders import EmbedderUnavailable, load_embedder

        try:
            embedder = load_embedder(args.embedder)
        except (EmbedderUnavailable, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    reranker = None
    if reranker_name:
        from reranker.backends import ModelUnavailable, load_reranker

        try:
            reranker = load_reranker(reranker_name)
        except (ModelUnavailable, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    fusion_kwargs: dict[str, Any] = {}
    if args.fusion == "rrf":
        fusion_kwargs["k"] = args.rrf_k
    if args.fusion_weights:
        fusion_kwargs["weights"] = list(args.fusion_weights)
    print(f"{dataset.path.name}/{args.split}: {len(dataset.queries)} queries, {len(dataset.passages):,} passages "
          f"({dataset.extra:,} distractors)", file=sys.stderr)
    with open_eval_index(dataset, embedder, args.index_cache, progress) as snap:
        pipe = Pipeline.from_snapshot(
            snap, embedder, rerankers={reranker_name: reranker} if reranker else {}, depth=args.depth,
            rerank_top=args.rerank_top, fusion=args.fusion, fusion_kwargs=fusion_kwargs,
            **({} if args.rerank_blend is None else {"rerank_blend": args.rerank_blend}),
            routed_bm25=args.routed_bm25,
        )
        report = run_eval(dataset, args.pipeline, pipe, strip_diacritics=args.strip_query_diacritics,
                          as_typed=args.as_typed, progress=progress)
    tag = args.pipeline + ("-stripped" if args.strip_query_diacritics else "")
    if args.run_out:
        write_trec_run(args.run_out, report.run, tag, report.scores)
    if args.per_query_out:
        args.per_query_out.parent.mkdir(parents=True, exist_ok=True)
        args.per_query_out.write_text(json.dumps(report.per_query, indent=1) + "\n", encoding="utf-8")
    if args.report_out:
        args.report_out.parent.mkdir(parents=True, exist_ok=True)
        args.report_out.write_text(json.dumps({
            "metrics": report.metrics, "latency_ms": report.timings_ms, "levels": report.levels,
            "seconds": round(report.seconds, 2), "strip_query_diacritics": args.strip_query_diacritics,
            "as_typed": args.as_typed, "dataset": str(dataset.path), "split": args.split,
            "passages": len(dataset.passages), "distractors": dataset.extra,
            "embedder": getattr(embedder, "model_id", None), "searched": report.searched,
        }, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lat = report.timings_ms.get("total", {})
    print(f"{args.pipeline}: {report.seconds:.1f}s, latency p50 {lat.get('p50', 0):.1f} ms / "
          f"p95 {lat.get('p95', 0):.1f} ms; diacritic levels {report.levels}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: report.metrics[k] for k in RESULT_KEYS}))
    else:
        for k in RESULT_KEYS:
            print(f"{k:>11}  {report.metrics[k]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
