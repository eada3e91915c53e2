"""How index cost grows with corpus size: BM25 (Whoosh) and Qdrant local mode, 1k → 20k passages.

    OMP_NUM_THREADS=2 python bench/scaling.py [--data /work/shared/data] [--sizes 1000,2000,5000,10000,20000]
        [--queries 200] [--dim 384] [--out var/bench/scaling.json] [--keep-dir DIR]

Passages: the first N paragraphs of ``viwiki/paragraphs.jsonl.gz`` (file order; one passage per paragraph,
title and text through :func:`indexing.normalize.normalize` as ingestion does). Each size is built from
scratch in its own temporary directory with the product classes:

- BM25: :meth:`indexing.bm25.BM25Index.build` (Whoosh, ``exact`` + ``folded`` fields) — build wall time and
  process CPU time; query latency of :meth:`BM25Index.search` (k=100, both fields, the pipeline's depth) over
  ``--queries`` real questions (XQuAD-vi + nanibot-qa test, ``assets/benchmarks``), one at a time, each query
  once after 20 warm-up queries (so posting lists are read from disk the first time, as in serving); wall
  time, and the process CPU time per query (robust to a busy shared machine);
- dense: :class:`indexing.vectors.VectorStore` in Qdrant *local mode* (a path, no server) — upsert time and
  query latency (k=100). Vectors are **random unit vectors of dimension ``--dim``** (384 = e5-small), so the
  numbers are Qdrant's own cost, without the embedding model (query embedding time is measured separately
  by ``bench/e2e_latency.py``);
- disk: bytes of the BM25 directory and of the Qdrant directory.

Re-opening, in a fresh process: the time to open the built Qdrant path and answer one query (local mode
unpickles every point into memory: what an app start or a generation swap pays) and the RSS it adds; the same
for BM25.

Growth models: for every metric a least-squares line ``y = a + b·N`` (and its R²) and a power law
``y = c·N^k`` (fitted in log-log; ``k`` = 1 is linear, > 1 superlinear) are fitted over the sizes, and both are
projected to 50k / 100k / 1M passages (extrapolations, see docs/scaling.md). Output: a markdown table on stdout, the JSON file, and a final JSON line on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing.admin import dir_size  # noqa: E402
from indexing.bm25 import BM25Index  # noqa: E402
from indexing.corpus import Passage  # noqa: E402
from indexing.normalize import normalize  # noqa: E402
from indexing.vectors import VectorStore  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
BENCH_QUERIES = (REPO / "assets" / "benchmarks" / "xquad-vi" / "queries.jsonl",
                 REPO / "assets" / "benchmarks" / "nanibot-qa-test" / "queries.jsonl")
WARMUP = 20
DEPTH = 100
PROJECT_TO = (50_000, 100_000, 1_000_000)
METRICS = ("bm25_build_s", "bm25_build_cpu_s", "bm25_p50_ms", "bm25_p95_ms", "bm25_cpu_p50_ms", "qdrant_upsert_s",
           "qdrant_upsert_cpu_s", "qdrant_open_s", "dense_p50_ms", "dense_p95_ms", "dense_cpu_p50_ms", "bm25_mb",
           "qdrant_mb", "qdrant_open_rss_mb")


def read_paragraphs(path: Path, n: int) -> list[Passage]:
    """The first ``n`` paragraphs of a BEIR-style ``.jsonl.gz`` corpus as normalized passages."""
    out: list[Passage] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            text = normalize(str(row.get("text") or ""))
            if text:
                pid = str(row["_id"])
                out.append(Passage(pid, pid, normalize(str(row.get("title") or "")), text, path.name))
            if len(out) >= n:
                break
    if len(out) < n:
        raise SystemExit(f"{path} has only {len(out)} paragraphs; asked for {n}")
    return out


def read_queries(limit: int) -> list[str]:
    """Real questions from the shipped benchmark copies (XQuAD-vi first, then nanibot-qa test)."""
    out: list[str] = []
    for f in BENCH_QUERIES:
        with open(f, encoding="utf-8") as fh:
            out += [json.loads(line)["text"] for line in fh if line.strip()]
    if len(out) < limit + WARMUP:
        raise SystemExit(f"only {len(out)} queries in {BENCH_QUERIES}")
    # Interleave the two sets so both kinds of question are measured.
    xq, nb = out[:-243], out[-243:]
    mixed = [q for pair in zip(xq, nb, strict=False) for q in pair] + xq[len(nb):]
    return mixed[: limit + WARMUP]


def percentiles(ms: list[float]) -> tuple[float, float]:
    """(p50, p95) of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    return round(float(np.percentile(a, 50)), 3), round(float(np.percentile(a, 95)), 3)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors (float32)."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def measure(passages: list[Passage], queries: list[str], dim: int, workdir: Path) -> dict[str, float]:
    """Build BM25 + Qdrant local for ``passages`` under ``workdir`` and time them."""
    row: dict[str, float] = {"passages": len(passages)}
    # ---- BM25
    t, c = time.perf_counter(), time.process_time()
    bm = BM25Index.build(workdir / "bm25", passages)
    row["bm25_build_s"] = round(time.perf_counter() - t, 3)
    row["bm25_build_cpu_s"] = round(time.process_time() - c, 3)
    try:
        for q in queries[:WARMUP]:
            bm.search(q, DEPTH, field="both")
        lat, cpu = [], []
        for q in queries[WARMUP:]:
            t, c = time.perf_counter(), time.process_time()
            bm.search(q, DEPTH, field="both")
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        row["bm25_p50_ms"], row["bm25_p95_ms"] = percentiles(lat)
        row["bm25_cpu_p50_ms"] = percentiles(cpu)[0]
    finally:
        bm.close()
    row["bm25_mb"] = round(dir_size(workdir / "bm25") / 2**20, 2)
    # ---- Qdrant local mode, random unit vectors
    vecs = unit_vectors(len(passages), dim, seed=0)
    qvecs = unit_vectors(len(queries), dim, seed=1)
    with VectorStore.open(workdir / "qdrant", "passages") as vs:
        vs.create(dim, recreate=True)
        t, c = time.perf_counter(), time.process_time()
        vs.upsert([p.id for p in passages], vecs, [{"doc_id": p.doc_id, "title": p.title} for p in passages])
        row["qdrant_upsert_s"] = round(time.perf_counter() - t, 3)
        row["qdrant_upsert_cpu_s"] = round(time.process_time() - c, 3)
        assert vs.count() == len(passages)
        for v in qvecs[:WARMUP]:
            vs.search(v, DEPTH)
        lat, cpu = [], []
        for v in qvecs[WARMUP:]:
            t, c = time.perf_counter(), time.process_time()
            vs.search(v, DEPTH)
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        row["dense_p50_ms"], row["dense_p95_ms"] = percentiles(lat)
        row["dense_cpu_p50_ms"] = percentiles(cpu)[0]
    row["qdrant_mb"] = round(dir_size(workdir / "qdrant") / 2**20, 2)
    row.update(reopen(workdir, queries[0], dim))
    return row


_REOPEN = """
import json, sys, time
import numpy as np, psutil
from indexing.bm25 import BM25Index
from indexing.vectors import VectorStore
from indexing.normalize import syllables
work, query, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
syllables(query)  # lazy imports (underthesea, Qdrant local mode) happen here, outside the timing
with VectorStore.open(":memory:", "warm") as warm:
    warm.create(dim)
    warm.search(np.ones(dim, dtype=np.float32), 1)
proc = psutil.Process()
rss0 = proc.memory_info().rss
t = time.perf_counter()
vs = VectorStore.open(work + "/qdrant", "passages")
vs.search(np.ones(dim, dtype=np.float32) / dim**0.5, 100)
out = {"qdrant_open_s": round(time.perf_counter() - t, 3), "qdrant_open_rss_mb": round((proc.memory_info().rss - rss0) / 2**20, 1)}
rss0 = proc.memory_info().rss
t = time.perf_counter()
bm = BM25Index.open(work + "/bm25")
bm.search(query, 100, field="both")
out["bm25_open_s"] = round(time.perf_counter() - t, 3)
out["bm25_open_rss_mb"] = round((proc.memory_info().rss - rss0) / 2**20, 1)
print(json.dumps(out))
"""


def reopen(workdir: Path, query: str, dim: int) -> dict[str, float]:
    """Open the built indexes in a fresh process (imports done first, not timed) → open time and RSS added."""
    import subprocess

    res = subprocess.run([sys.executable, "-c", _REOPEN, str(workdir), query, str(dim)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2)) or 1e-12
    return round(1 - float(np.sum((y - pred) ** 2)) / ss_tot, 4)


def fit_lines(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Least-squares ``y = a + b·N`` per metric → ``{metric: {a, b_per_1k, r2, <N>: projection}}``."""
    n = np.asarray([r["passages"] for r in rows], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for m in METRICS:
        y = np.asarray([r[m] for r in rows], dtype=np.float64)
        b, a = np.polyfit(n, y, 1)
        out[m] = {"a": round(float(a), 4), "b_per_1k": round(float(b) * 1000, 5), "r2": _r2(y, a + b * n)}
        for target in PROJECT_TO:
            out[m][str(target)] = round(float(a + b * target), 2)
    return out


def fit_powers(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Least-squares ``log y = log c + k·log N`` per metric (growth exponent ``k``: 1 = linear) → projections."""
    n = np.asarray([r["passages"] for r in rows], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for m in METRICS:
        y = np.asarray([r[m] for r in rows], dtype=np.float64)
        if np.any(y <= 0):
            continue
        k, logc = np.polyfit(np.log(n), np.log(y), 1)
        out[m] = {"k": round(float(k), 3), "c": float(np.exp(logc)), "r2_log": _r2(np.log(y), logc + k * np.log(n))}
        for target in PROJECT_TO:
            out[m][str(target)] = round(float(np.exp(logc) * target**k), 2)
    return out


def markdown(rows: list[dict[str, float]], fits: dict[str, dict[str, float]],
             powers: dict[str, dict[str, float]]) -> str:
    """The measurements and the fitted growth models as markdown tables."""
    head = ("| passages | BM25 build s (CPU s) | BM25 p50 / p95 ms (CPU p50) | Qdrant upsert s (CPU s) "
            "| dense p50 / p95 ms (CPU p50) | BM25 MB | Qdrant MB |")
    lines = [head, "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['passages']:,} | {r['bm25_build_s']:.2f} ({r['bm25_build_cpu_s']:.2f}) "
            f"| {r['bm25_p50_ms']:.2f} / {r['bm25_p95_ms']:.2f} ({r['bm25_cpu_p50_ms']:.2f}) "
            f"| {r['qdrant_upsert_s']:.2f} ({r['qdrant_upsert_cpu_s']:.2f}) "
            f"| {r['dense_p50_ms']:.2f} / {r['dense_p95_ms']:.2f} ({r['dense_cpu_p50_ms']:.2f}) "
            f"| {r['bm25_mb']:.1f} | {r['qdrant_mb']:.1f} |"
        )
    lines += ["", "| passages | Qdrant local open + 1st query s | RSS it adds MiB | BM25 open + 1st query s "
              "| RSS it adds MiB |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['passages']:,} | {r['qdrant_open_s']:.2f} | {r['qdrant_open_rss_mb']:.0f} "
                     f"| {r['bm25_open_s']:.2f} | {r['bm25_open_rss_mb']:.0f} |")
    lines += ["", "| metric | a (intercept) | b per 1k passages | R² | " + " | ".join(f"{t:,}" for t in PROJECT_TO)
              + " |", "|---|---:|---:|---:|" + "---:|" * len(PROJECT_TO)]
    for m, f in fits.items():
        lines.append(f"| {m} | {f['a']} | {f['b_per_1k']} | {f['r2']} | "
                     + " | ".join(f"{f[str(t)]:,}" for t in PROJECT_TO) + " |")
    lines += ["", "| metric | exponent k (y ∝ N^k) | R² (log) | " + " | ".join(f"{t:,}" for t in PROJECT_TO) + " |",
              "|---|---:|---:|" + "---:|" * len(PROJECT_TO)]
    for m, f in powers.items():
        lines.append(f"| {m} | {f['k']} | {f['r2_log']} | " + " | ".join(f"{f[str(t)]:,}" for t in PROJECT_TO) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (holds viwiki/)")
    ap.add_argument("--sizes", default="1000,2000,5000,10000,20000", help="comma-separated passage counts")
    ap.add_argument("--queries", type=int, default=200, help="measured queries per size (after 20 warm-up)")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (384 = multilingual-e5-small)")
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "scaling.json")
    ap.add_argument("--keep-dir", type=Path, default=None, help="build here and keep the indexes (default: tmp)")
    args = ap.parse_args(argv)

    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    t = time.perf_counter()
    passages = read_paragraphs(args.data / "viwiki" / "paragraphs.jsonl.gz", max(sizes))
    read_s = round(time.perf_counter() - t, 2)
    queries = read_queries(args.queries)
    print(f"read {len(passages):,} paragraphs in {read_s}s (normalize included); {len(queries) - WARMUP} queries "
          f"+ {WARMUP} warm-up; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", file=sys.stderr)
    rows = []
    base = args.keep_dir or Path(tempfile.mkdtemp(prefix="viranker-scaling-"))
    try:
        for n in sizes:
            work = base / f"n{n}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            row = measure(passages[:n], queries, args.dim, work)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        if args.keep_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    fits = fit_lines(rows) if len(rows) >= 2 else {}
    powers = fit_powers(rows) if len(rows) >= 2 else {}
    print(markdown(rows, fits, powers))
    result = {
        "bench": "scaling",
        "corpus": "viwiki/paragraphs.jsonl.gz (first N paragraphs)",
        "dense_vectors": f"random unit vectors, dim {args.dim} (Qdrant cost only, no embedding)",
        "qdrant_mode": "local (embedded, path)",
        "depth": DEPTH,
        "queries": len(queries) - WARMUP,
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(),
        "read_normalize_s": read_s,
        "rows": rows,
        "fit_linear": fits,
        "fit_power": powers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
