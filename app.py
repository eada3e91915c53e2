"""ViRanker Search — the Gradio app: Search, Compare, Evaluate and Admin tabs, plus a small HTTP API.

    python app.py [--host 127.0.0.1] [--port 7860] [--index demo] [--admin-password PW] [--trusted-proxy ADDR]

On a fresh machine the ``demo`` index is missing: the app starts serving at once and builds it in a
background thread from ``assets/demo/corpus.jsonl`` (precomputed e5-small vectors from ``assets/demo`` seed
the embedding cache when present); progress is printed in the console and shown on the page. Searches work
on the serving generation while any build runs: builds write a new generation and swap ``CURRENT``
atomically, and the search service re-opens when it changes. When the index is already there, the service is
opened and exercised in the background as the server starts (:mod:`search.warmup`: the generation, the query
embedder, e5's ONNX query graph), so the first visitors do not each wait for it.

API (``gradio_client.Client(url).predict(..., api_name=...)``):

- ``/search(query, pipeline="", top_k=10)`` → ``[{"id", "title", "text", "score", "rank"}, ...]`` (empty
  pipeline: the service default, ``hybrid+viranker`` when its weights are present, else ``hybrid``)
- ``/compare(query, pipelines=None, top_k=10)`` → ``{"results": {system: [hit, ...]}, "unavailable":
  {system: reason}, "agreement": [{"a", "b", "overlap", "tau"}], "timings_ms": {system: ms}}``
- ``/status()`` → ``{"ready", "generation", "building", "stage", "build_failed", "failure", "message", ...}``
  for anyone: whether the index serves, the build's progress, and when the build failed its stage, error
  class, a short message (no server paths) and what to do.
- ``/admin_status(password)``, ``/admin_rollback(password)``, ``/admin_rebuild(password)``,
  ``/admin_delete(password, ids)``, ``/admin_retry_build(password)``: admin actions; the password is checked
  server-side with the same throttling as the Admin tab (per connection address, exponential back-off capped
  at 30 s: at most 5 checks a minute per address, no lockout; ``X-Forwarded-For`` counts only from a
  ``--trusted-proxy``). Rebuild, delete and retry run in the background
  (poll ``/admin_status``).

A failed build is never a silent empty index: the page banner and every search say which stage failed
and how (error class + short message), the Admin tab has a retry button, and the next start of the app
resumes an unfinished demo build (the serving generation, if any, keeps serving meanwhile). Progress
reaches the page through callbacks only (``BuildJob.progress``, ``search.eval.run_eval(progress_callback=)``);
nothing patches tqdm, so the console bars of a build running in the background keep working.

UI event handlers are registered with ``api_visibility="private"`` so they are not part of the API; the
admin handlers additionally check a server-side session token on every call.

Concurrency: searches run in two lanes (``search/ui/lanes.py``): reranked ones (2 at once, 62 more may
wait) and cheap ones — bm25, dense, hybrid — (``--concurrency``, default 4 at once, 60 may wait), so a BM25
search never queues behind reranking; a search whose lane is full is refused at once ("server busy").
Evaluation and admin actions run one at a time (their own concurrency groups), and requests beyond the queue
size (``--max-queue``, default 256) are refused quickly instead of piling up. Programs can skip Gradio's queue
entirely with the JSON API (``/api/v1/search``, ``/api/v1/compare``, ``/api/v1/status``; README).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The app lives in search/ui/ (one module per tab); these names stay importable from ``app``.
from indexing.admin import PasswordFileError, admin_password  # noqa: E402
from search.errors import IndexBuildFailed, IndexNotReady  # noqa: E402
from search.ui.api import hits_json, make_api  # noqa: E402
from search.ui.backend import DEFAULT_EMBEDDER, DEFAULT_INDEX, Backend, find_precomputed  # noqa: E402
from search.ui.benchmarks import Benchmark, bundled_benchmarks, load_examples, single_query_metrics  # noqa: E402
from search.ui.context import client_key  # noqa: E402
from search.ui.handlers import Handlers  # noqa: E402
from search.ui.layout import CSS, MAX_SESSIONS, build_ui, launch  # noqa: E402
from search.ui.messages import banner_html, friendly_error, note_vi  # noqa: E402
from search.ui.tab_compare import compare_systems, default_compare_systems, system_choices  # noqa: E402
from search.ui.tab_evaluate import EvaluationRun, render_evaluation, run_evaluation  # noqa: E402
from search.ui.tab_search import MODE_CHOICES, pipeline_name  # noqa: E402

__all__ = [
    "Backend", "Handlers", "build_ui", "launch", "parse_args", "main", "IndexNotReady", "IndexBuildFailed",
    "banner_html", "friendly_error", "note_vi", "load_examples", "find_precomputed", "Benchmark",
    "bundled_benchmarks", "single_query_metrics", "client_key", "compare_systems", "default_compare_systems",
    "system_choices", "EvaluationRun", "run_evaluation", "render_evaluation", "make_api", "hits_json",
    "pipeline_name", "MODE_CHOICES", "CSS",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python app.py", description="ViRanker Search web app (Gradio).")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--index", default=DEFAULT_INDEX, help="index name under $VIRANKER_HOME/indexes (default demo)")
    p.add_argument("--admin-password", default=None,
                   help="admin password (visible to local users in `ps`: prefer $VIRANKER_ADMIN_PASSWORD_FILE, a "
                        "file whose first line is the password; else $VIRANKER_ADMIN_PASSWORD; without one admin "
                        "is disabled)")
    p.add_argument("--trusted-proxy", action="append", default=None, metavar="ADDR",
                   help="a reverse proxy (address or network) whose X-Forwarded-For is honoured; repeatable "
                        "(default $VIRANKER_TRUSTED_PROXIES; none: clients are keyed by their connection's address)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="cheap (bm25/dense/hybrid) searches run at once (default 4); reranked ones have their "
                        "own lane of 2")
    p.add_argument("--max-queue", type=int, default=256, help="queued events before new ones are refused")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                   help=f"Gradio sessions whose state stays in memory, least recently used dropped first (default "
                        f"{MAX_SESSIONS}; bounds memory: ~0.15 MB each)")
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                   help="passage embedder for builds (default e5-small; 'none' builds BM25 only)")
    p.add_argument("--no-build", action="store_true", help="do not build the demo index when it is missing")
    p.add_argument("--default-pipeline", default="auto",
                   help="Search tab's initial pipeline: auto (hybrid+<available reranker>, else hybrid), bm25, "
                        "dense, hybrid or <first>+<reranker>")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python app.py``."""
    args = parse_args(argv)
    try:
        password = admin_password(args.admin_password)
    except PasswordFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    backend = Backend(args.index, admin_password=password, embedder_name=args.embedder,
                      echo=lambda line: print(line, file=sys.stderr, flush=True))

    def start_build() -> None:  # after the UI is built (an extra; progress never patches tqdm anyway)
        if not args.no_build and backend.ensure_index():
            print(f"index {args.index!r} needs its demo build: building it in the background (progress below "
                  "and on the page)", file=sys.stderr, flush=True)
        elif backend.current_generation() is not None:  # open the index while the server starts
            threading.Thread(target=warm, name="viranker-warm", daemon=True).start()

    def warm() -> None:
        steps = backend.warm()
        print(f"search service warmed ({', '.join(f'{k} {v:.2f} s' for k, v in steps.items()) or 'nothing to warm'})",
              file=sys.stderr, flush=True)

    if not backend.auth.enabled:
        print("admin disabled: set --admin-password or VIRANKER_ADMIN_PASSWORD to enable it", file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # SIGTERM → KeyboardInterrupt in the main thread: Gradio closes the server and main returns 0
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    launch(backend, args.host, args.port, args.concurrency, args.max_queue, default_pipeline=args.default_pipeline,
           before_serve=start_build, trusted=args.trusted_proxy, max_sessions=args.max_sessions)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
