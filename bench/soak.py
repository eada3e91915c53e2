"""Soak: does the app's memory stay flat while new sessions keep coming? (issue 19)

    python bench/soak.py [--home /tmp/vr-bench-home] [--warmup 400] [--sessions 1000] [--queries 2]
        [--pipeline bm25] [--clients 8] [--app-arg=--max-sessions=256]

Starts ``python app.py`` on ``--home``; ``--clients`` threads open ``--warmup`` new Gradio sessions (each
sends ``--queries`` searches through ``/gradio_api/queue/join`` with its own ``session_hash``, as a browser
tab or ``gradio_client`` does), then the server's RSS is read (``/proc/<pid>/status``); then ``--sessions``
more new sessions, and RSS again. Before the fix each new session kept ~0.12–0.18 MB (Gradio's per-session
state holds a copy of every component's config, up to 10,000 sessions); ``--max-sessions`` bounds that
store. Prints RSS before / after warm-up / after the soak and the growth; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import load_queries, machine, serve  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fn_index(url: str, api_name: str) -> int:
    """The ``fn_index`` of the endpoint ``api_name`` in the page's config."""
    import httpx

    cfg = httpx.get(f"{url}config", timeout=30).json()
    for dep in cfg["dependencies"]:
        if dep.get("api_name") == api_name:
            return int(dep["id"])
    raise KeyError(api_name)


def session(http, url: str, fn: int, queries: list[str], pipeline: str) -> int:
    """One new session sending ``queries`` → how many answered."""
    sh = uuid.uuid4().hex[:11]
    ok = 0
    for q in queries:
        r = http.post(f"{url}gradio_api/queue/join", json={"data": [q, pipeline, 10], "fn_index": fn,
                                                           "session_hash": sh, "event_data": None}, timeout=60)
        r.raise_for_status()
        with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": sh}, timeout=120) as s:
            for line in s.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    ok += json.loads(line[5:]).get("success", False)
                    break
    return ok


def run_sessions(url: str, fn: int, n: int, clients: int, per_session: int, pipeline: str,
                 pool: list[str], offset: int) -> dict:
    """``n`` new sessions over ``clients`` threads → counts."""
    import httpx

    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0}

    def worker() -> None:
        with httpx.Client() as http:
            while True:
                with lock:
                    i = state["next"]
                    if i >= n:
                        return
                    state["next"] += 1
                qs = [pool[(offset + i * per_session + j) % len(pool)] for j in range(per_session)]
                try:
                    got = session(http, url, fn, qs, pipeline)
                except Exception:  # noqa: BLE001 - counted
                    got = 0
                with lock:
                    state["ok"] += got
                    state["errors"] += per_session - got

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sessions": n, "ok": state["ok"], "errors": state["errors"], "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/vr-bench-home"))
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--queries", type=int, default=2, help="searches per session")
    p.add_argument("--pipeline", default="bm25")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--app-arg", action="append", default=[], help="extra argument for app.py (repeatable)")
    args = p.parse_args(argv)
    pool = load_queries()
    before = machine()
    with serve(args.home, args=args.app_arg) as (url, proc):
        fn = fn_index(url, "search")
        rss0 = rss_mb(proc.pid)
        warm = run_sessions(url, fn, args.warmup, args.clients, args.queries, args.pipeline, pool, 0)
        time.sleep(1.0)
        rss1 = rss_mb(proc.pid)
        soak = run_sessions(url, fn, args.sessions, args.clients, args.queries, args.pipeline, pool, 50_000)
        time.sleep(1.0)
        rss2 = rss_mb(proc.pid)
    growth = rss2 - rss1
    print(f"RSS {rss0:.1f} MB at start, {rss1:.1f} MB after {args.warmup} warm-up sessions, {rss2:.1f} MB after "
          f"{args.sessions} more: {growth:+.1f} MB ({growth / max(1, args.sessions) * 1024:.1f} KB/session); "
          f"{soak['errors']} errors")
    print(json.dumps({"bench": "soak", "app_args": args.app_arg, "pipeline": args.pipeline,
                      "queries_per_session": args.queries, "warmup": warm, "soak": soak,
                      "rss_mb": {"start": round(rss0, 1), "after_warmup": round(rss1, 1), "after_soak": round(rss2, 1)},
                      "growth_mb": round(growth, 1), "machine_before": before, "machine_after": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
