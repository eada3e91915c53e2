"""Bounded load test of a running ViRanker app, through its HTTP API, on this machine only.

    python app.py --admin-password PW &                      # the app under test
    python bench/load_test.py [--url http://127.0.0.1:7860/] [--clients 50] [--queries 500]
        [--pipeline hybrid+viranker] [--top-k 10] [--rebuild --admin-password PW] [--json]

``--clients`` threads, each with its own ``gradio_client.Client``, send ``--queries`` searches in total (the
example queries and the bundled dev-set questions, cycled) to ``/search`` with reranking on by default, and
the script reports errors, latency percentiles (p50/p95/p99, as seen by the client: queueing included) and
throughput (QPS). With ``--rebuild`` it also starts an index rebuild through ``/admin_rebuild`` once a
quarter of the queries are done, and reports whether searches kept succeeding while it ran.

Bounded on purpose: only loopback URLs (127.0.0.1, ::1, localhost) are accepted, at most 200 clients and
20,000 queries, and every request has a timeout. The app's queue (``--concurrency`` in ``app.py``, default
4 events at once; ``--max-queue`` 256) decides how many searches run at the same time; the rest wait in the
queue, which is what the p95 latency shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_CLIENTS = 200
MAX_QUERIES = 20_000


def load_queries(limit: int = 2000) -> list[str]:
    """Example queries + bundled dev-set questions (without ``#`` comments), de-duplicated."""
    out: list[str] = []
    ex = ROOT / "assets" / "demo" / "examples.txt"
    if ex.is_file():
        out += [s.strip() for s in ex.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]
    for qfile in sorted((ROOT / "assets" / "benchmarks").glob("*/queries.jsonl")):
        with open(qfile, encoding="utf-8") as fh:
            for line in fh:
                try:
                    text = json.loads(line).get("text")
                except ValueError:
                    continue
                if text:
                    out.append(text)
    out = list(dict.fromkeys(out))[:limit]
    if not out:
        raise SystemExit("no queries found under assets/")
    return out


def check_url(url: str) -> str:
    """Refuse anything but a loopback http(s) URL → the URL with a trailing slash."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or (parsed.hostname or "") not in LOOPBACK:
        raise SystemExit(f"refusing {url!r}: the load test only targets this machine (127.0.0.1 / localhost)")
    return url if url.endswith("/") else url + "/"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in ms (empty → zeros)."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def run(url: str, clients: int, queries: int, pipeline: str, top_k: int, timeout: float,
        rebuild_password: str | None = None) -> dict:
    """Run the load test → a summary dict (see the module docstring)."""
    from gradio_client import Client

    pool = load_queries()
    lock = threading.Lock()
    next_i = [0]
    latencies: list[float] = []
    during_rebuild: list[bool] = []
    errors: list[str] = []
    rebuild = {"requested": rebuild_password is not None, "started": None, "finished": None, "error": None,
               "generation_before": None, "generation_after": None}
    rebuilding = threading.Event()

    def take() -> int | None:
        with lock:
            if next_i[0] >= queries:
                return None
            next_i[0] += 1
            return next_i[0] - 1

    def worker(barrier: threading.Barrier) -> None:
        try:
            client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout}, analytics_enabled=False)
        except Exception as err:  # noqa: BLE001
            with lock:
                errors.append(f"connect: {type(err).__name__}: {err}")
            barrier.wait()
            return
        barrier.wait()
        while (i := take()) is not None:
            q = pool[i % len(pool)]
            t = time.perf_counter()
            try:
                job = client.submit(q, pipeline, top_k, api_name="/search")
                hits = job.result(timeout=timeout)
                if not isinstance(hits, list):
                    raise TypeError(f"unexpected result type {type(hits).__name__}")
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    during_rebuild.append(rebuilding.is_set())
            except Exception as err:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(err).__name__}: {str(err)[:200]}")

    def rebuilder() -> None:
        from gradio_client import Client as _Client

        c = _Client(url, verbose=False, analytics_enabled=False)
        while True:
            with lock:
                if next_i[0] >= queries // 4:
                    break
            time.sleep(0.2)
        try:
            rebuild["generation_before"] = c.predict(rebuild_password, api_name="/admin_status")["stats"]["generation"]
            c.predict(rebuild_password, api_name="/admin_rebuild")
            rebuild["started"] = time.perf_counter() - t0
            rebuilding.set()
            while True:
                time.sleep(1.0)
                st = c.predict(rebuild_password, api_name="/admin_status")
                if not st["build"]["running"]:
                    rebuild["error"] = st["build"].get("error")
                    rebuild["generation_after"] = st["stats"]["generation"]
                    break
        except Exception as err:  # noqa: BLE001
            rebuild["error"] = f"{type(err).__name__}: {err}"
        finally:
            rebuilding.clear()
            rebuild["finished"] = time.perf_counter() - t0

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=worker, args=(barrier,), daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()  # all clients connected: start the clock
    t0 = time.perf_counter()
    rb = threading.Thread(target=rebuilder, daemon=True) if rebuild_password else None
    if rb:
        rb.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if rb:
        rb.join(timeout=600)
    ok = len(latencies)
    in_rebuild = [ms for ms, r in zip(latencies, during_rebuild, strict=True) if r]
    summary = {
        "url": url, "clients": clients, "queries": queries, "pipeline": pipeline, "top_k": top_k,
        "ok": ok, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
        "seconds": round(wall, 2), "qps": round(ok / wall, 2) if wall > 0 else 0.0,
        "latency_ms": {k: round(v, 1) for k, v in percentiles(latencies).items()},
    }
    if rebuild_password:
        summary["rebuild"] = {**rebuild, "searches_during_rebuild": len(in_rebuild),
                              "latency_during_rebuild_ms": {k: round(v, 1) for k, v in percentiles(in_rebuild).items()}}
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/load_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--pipeline", default="hybrid+viranker", help="pipeline sent to /search (reranking on)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--rebuild", action="store_true", help="start a rebuild via /admin_rebuild during the run")
    p.add_argument("--admin-password", default=None, help="needed with --rebuild")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    url = check_url(args.url)
    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.queries <= MAX_QUERIES:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS} and --queries 1..{MAX_QUERIES}")
    if args.rebuild and not args.admin_password:
        raise SystemExit("--rebuild needs --admin-password")
    summary = run(url, args.clients, args.queries, args.pipeline, args.top_k, args.timeout,
                  args.admin_password if args.rebuild else None)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        lat = summary["latency_ms"]
        print(f"{summary['ok']}/{summary['queries']} ok, {summary['errors']} errors in {summary['seconds']} s "
              f"-> {summary['qps']} QPS; latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms "
              f"({summary['clients']} clients, {summary['pipeline']})")
        for e in summary["error_samples"]:
            print(f"  error: {e}")
        if "rebuild" in summary:
            rb = summary["rebuild"]
            print(f"rebuild: {rb['generation_before']} -> {rb['generation_after']} "
                  f"(error: {rb['error']}); {rb['searches_during_rebuild']} searches during it, p95 "
                  f"{rb['latency_during_rebuild_ms']['p95']} ms")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
