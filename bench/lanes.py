"""Lanes: how long a cheap search waits while reranked searches are in flight (issue 19).

    python bench/lanes.py [--home /tmp/vr-bench-home] [--url URL] [--reranked 24] [--probes 20]
        [--rerank-pipeline hybrid+viranker] [--probe-pipeline bm25] [--api gradio|json|both]

Starts ``python app.py`` on ``--home`` (the demo index is built there on the first run; or use ``--url`` for
an app already running on this machine), keeps ``--reranked`` reranked searches in flight (each client sends
the next as soon as its last one answered), and meanwhile sends ``--probes`` cheap searches one after the
other, through Gradio's API (``/gradio_api/call/search``, what ``gradio_client`` uses) and/or the JSON API
(``/api/v1/search``). Before the lanes, the cheap search queued behind the reranked ones (19.5 s instead of
0.27 s with 24 in flight). Prints the probe latencies (p50 / p95 / max ms), how many reranked searches
finished meanwhile, and the machine's load; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import gradio_call, load_queries, machine, percentiles, serve  # noqa: E402


def _search(http, url: str, api: str, query: str, pipeline: str) -> bool:
    """One search → ok?"""
    if api == "json":
        r = http.post(f"{url}api/v1/search", json={"query": query, "pipeline": pipeline, "top_k": 10}, timeout=300)
        return r.status_code == 200
    event, _ = gradio_call(http, url, "search", query, pipeline, 10, timeout=300.0)
    return event == "complete"


def measure(url: str, api: str, reranked: int, probes: int, rerank_pipeline: str, probe_pipeline: str) -> dict:
    """Probe latencies of ``probe_pipeline`` while ``reranked`` clients keep ``rerank_pipeline`` busy."""
    import httpx

    queries = load_queries()
    stop = threading.Event()
    done = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    started = threading.Barrier(reranked + 1)

    def heavy(i: int) -> None:
        with httpx.Client() as http:
            started.wait()
            n = i
            while not stop.is_set():
                ok = _search(http, url, api, queries[n % len(queries)], rerank_pipeline)
                n += reranked
                with lock:
                    done["ok" if ok else "errors"] += 1

    threads = [threading.Thread(target=heavy, args=(i,), daemon=True) for i in range(reranked)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(2.0)  # every reranked search is in flight (running or waiting in its lane)
    lat, errors = [], 0
    with httpx.Client() as http:
        for i in range(probes):
            t0 = time.perf_counter()
            ok = _search(http, url, api, queries[(7 * i + 3) % len(queries)], probe_pipeline)
            lat.append((time.perf_counter() - t0) * 1000)
            errors += not ok
    stop.set()
    for t in threads:
        t.join(timeout=300)
    return {"api": api, "reranked_in_flight": reranked, "probe_pipeline": probe_pipeline,
            "rerank_pipeline": rerank_pipeline, "probes": probes, "probe_errors": errors,
            "probe_ms": percentiles(lat), "reranked_done": done["ok"], "reranked_errors": done["errors"]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/lanes.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/vr-bench-home"))
    p.add_argument("--url", default=None, help="an app already running on this machine (else one is started)")
    p.add_argument("--reranked", type=int, default=24)
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--rerank-pipeline", default="hybrid+viranker")
    p.add_argument("--probe-pipeline", default="bm25")
    p.add_argument("--api", choices=("gradio", "json", "both"), default="both")
    args = p.parse_args(argv)
    apis = ["gradio", "json"] if args.api == "both" else [args.api]
    before = machine()
    ctx = nullcontext((args.url, None)) if args.url else serve(args.home)
    with ctx as (url, _):
        url = url if url.endswith("/") else url + "/"
        runs = [measure(url, api, args.reranked, args.probes, args.rerank_pipeline, args.probe_pipeline)
                for api in apis]
    for r in runs:
        print(f"{r['api']:>6}: {r['probe_pipeline']} p50 {r['probe_ms']['p50']:.0f} ms, p95 {r['probe_ms']['p95']:.0f} "
              f"ms, max {r['probe_ms']['max']:.0f} ms with {r['reranked_in_flight']} {r['rerank_pipeline']} in "
              f"flight ({r['reranked_done']} of them done meanwhile, {r['reranked_errors']} errors)")
    print(json.dumps({"bench": "lanes", "runs": runs, "machine_before": before, "machine_after": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
