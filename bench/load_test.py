"""Bounded load test of a ViRanker app on this machine, through its JSON API (default) or Gradio's API.

    python bench/load_test.py [--home /tmp/vr-bench-home | --url http://127.0.0.1:7860/] [--clients 50]
        [--queries 500] [--pipeline hybrid] [--api json|gradio] [--top-k 10] [--server-pid PID]
        [--rebuild --admin-password PW]

Without ``--url`` it starts ``python app.py`` on ``--home`` (the first run builds the demo index there).
``--clients`` threads send ``--queries`` searches in total (the example queries and the bundled dev-set
questions, cycled) to ``/api/v1/search`` (``--api json``: one HTTP request per search, outside Gradio's
queue) or ``/search`` (``--api gradio``: ``gradio_client``, through the queue), and the script reports
errors, latency percentiles (p50/p95/p99 as the client sees them, waiting included) and throughput
(searches/s), with the CPU the clients used (``client_cpu_s``: they share this machine's cores with the app,
so the JSON clients use the standard library's ``http.client``, not httpx) and, when the app's process is
known (started here, or ``--server-pid``), its CPU per search (``server_cpu_ms_per_search``). With ``--rebuild`` it also starts an index rebuild through ``/admin_rebuild`` once a quarter
of the queries are done, and reports whether searches kept succeeding while it ran. The last line printed
is one JSON object (``--json``: only that line).

Bounded on purpose: only loopback URLs (127.0.0.1, ::1, localhost) are accepted, at most 200 clients and
20,000 queries, and every request has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import load_queries, machine, percentiles, serve  # noqa: E402

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_CLIENTS = 200
MAX_QUERIES = 20_000


def check_url(url: str) -> str:
    """Refuse anything but a loopback http(s) URL → the URL with a trailing slash."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or (parsed.hostname or "") not in LOOPBACK:
        raise SystemExit(f"refusing {url!r}: the load test only targets this machine (127.0.0.1 / localhost)")
    return url if url.endswith("/") else url + "/"


class _JsonClient:
    """``/api/v1/search`` over one keep-alive HTTP/1.1 connection (the JSON API's client).

    The standard library's ``http.client``: the clients share this machine's cores with the app, and httpx
    spends ~5 ms of CPU per request where this spends well under one, so the test measures the server."""

    def __init__(self, url: str, timeout: float) -> None:
        from http.client import HTTPConnection, HTTPSConnection

        parsed = urlparse(url)
        self.path = parsed.path.rstrip("/") + "/api/v1/search"
        conn = HTTPSConnection if parsed.scheme == "https" else HTTPConnection
        self.conn = conn(parsed.hostname, parsed.port, timeout=timeout)

    def search(self, query: str, pipeline: str, top_k: int) -> list:
        body = json.dumps({"query": query, "pipeline": pipeline, "top_k": top_k}).encode()
        try:
            self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
        except OSError:
            self.conn.close()  # reconnects on the next request
            raise
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200].decode('utf-8', 'replace')}")
        return json.loads(data)["hits"]


class _GradioClient:
    """``/search`` through ``gradio_client`` (Gradio's queue)."""

    def __init__(self, url: str, timeout: float) -> None:
        from gradio_client import Client

        self.timeout = timeout
        self.client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout}, analytics_enabled=False)

    def search(self, query: str, pipeline: str, top_k: int) -> list:
        return self.client.submit(query, pipeline, top_k, api_name="/search").result(timeout=self.timeout)


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc); None without."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, clients: int, queries: int, pipeline: str, top_k: int, timeout: float,
        rebuild_password: str | None = None, api: str = "json", server_pid: int | None = None) -> dict:
    """Run the load test → a summary dict (see the module docstring). ``server_pid``: the app's process, for
    ``server_cpu_ms_per_search`` (its CPU over the timed window ÷ the searches)."""

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
            client = (_JsonClient if api == "json" else _GradioClient)(url, timeout)
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
                hits = client.search(q, pipeline, top_k)
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
    t0, client0, server0 = time.perf_counter(), os.times(), process_cpu_s(server_pid)
    rb = threading.Thread(target=rebuilder, daemon=True) if rebuild_password else None
    if rb:
        rb.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    client1, server1 = os.times(), process_cpu_s(server_pid)
    if rb:
        rb.join(timeout=600)
    ok = len(latencies)
    in_rebuild = [ms for ms, r in zip(latencies, during_rebuild, strict=True) if r]
    summary = {
        "bench": "load_test", "api": api, "url": url, "clients": clients, "queries": queries, "pipeline": pipeline,
        "top_k": top_k,
        "ok": ok, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
        "seconds": round(wall, 2), "qps": round(ok / wall, 2) if wall > 0 else 0.0,
        "latency_ms": percentiles(latencies),
        "client_cpu_s": round(client1.user + client1.system - client0.user - client0.system, 2),
        "server_cpu_ms_per_search": (round((server1 - server0) * 1000 / ok, 1)
                                     if ok and server0 is not None and server1 is not None else None),
    }
    if rebuild_password:
        summary["rebuild"] = {**rebuild, "searches_during_rebuild": len(in_rebuild),
                              "latency_during_rebuild_ms": percentiles(in_rebuild)}
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/load_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="an app already running on this machine (else one is started)")
    p.add_argument("--home", type=Path, default=Path("/tmp/vr-bench-home"), help="VIRANKER_HOME of the started app")
    p.add_argument("--api", choices=("json", "gradio"), default="json")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--pipeline", default="hybrid", help="pipeline of every search (default hybrid)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--rebuild", action="store_true", help="start a rebuild via /admin_rebuild during the run")
    p.add_argument("--admin-password", default=None, help="needed with --rebuild")
    p.add_argument("--server-pid", type=int, default=None,
                   help="with --url: the app's process id, for its CPU per search (started apps: known)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.queries <= MAX_QUERIES:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS} and --queries 1..{MAX_QUERIES}")
    if args.rebuild and not args.admin_password:
        raise SystemExit("--rebuild needs --admin-password")
    before = machine()
    app_args = ["--admin-password", args.admin_password] if args.rebuild and not args.url else []
    ctx = nullcontext((check_url(args.url), None)) if args.url else serve(args.home, args=app_args)
    with ctx as (url, proc):
        summary = run(url, args.clients, args.queries, args.pipeline, args.top_k, args.timeout,
                      args.admin_password if args.rebuild else None, api=args.api,
                      server_pid=proc.pid if proc is not None else args.server_pid)
    summary.update(machine_before=before, machine_after=machine())
    if not args.json:
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
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
