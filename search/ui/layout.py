"""The page: header, status banner, the four tabs and the API (:func:`build_ui`), and :func:`launch`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from search.ui import api, json_api, tab_admin, tab_compare, tab_evaluate, tab_search
from search.ui.backend import Backend
from search.ui.context import PRIVATE, UiContext, proxy_trust, trusted_proxies
from search.ui.handlers import Handlers
from search.ui.lanes import Lanes

__all__ = ["build_ui", "launch", "CSS", "initial_choice"]

MAX_SESSIONS = 200  # Gradio sessions kept in memory (Gradio's default, 10,000, is ~1.5 GB of state)
EXTRA_THREADS = 32  # worker threads beyond the lanes' capacity: status, admin, evaluation, banner events
QUEUE_POLL_S = 0.02  # how often Gradio's idle queue looks for new events (its default, 1 ms: ~9% of a core)
PROGRESS_POLL_S = 0.05  # how often it sends pending progress updates (its default: 10 ms)
CSS = (Path(__file__).parent / "style.css").read_text(encoding="utf-8")
HEADER = ("<header class='vr-header'><h1 class='vr-h1'>ViRanker Search</h1><div class='vr-muted'>Tìm kiếm "
          "tiếng Việt: BM25 + e5 (hợp nhất) + mô hình xếp hạng lại ViRanker</div></header>")
#: Gradio's page template says ``<html lang="en">``; the header sets the document's language when it loads
#: (screen readers, spell checkers and translators read the live ``documentElement.lang``).
LANG_JS = "document.documentElement.lang = 'vi'; document.documentElement.setAttribute('xml:lang', 'vi');"


def initial_choice(backend: Backend, status: dict[str, str], default_pipeline: str = "auto") -> tuple[str, str]:
    """The Search tab's initial (mode, reranker): ``auto`` → ``rerank`` with the first available reranker when
    its model recommends itself as a default, else ``hybrid``; a pipeline name (``bm25``, ``hybrid+viranker``)
    picks that."""
    names = list(status)
    available = [n for n, s in status.items() if s.startswith("available")]
    reranker = available[0] if available else (names[0] if names else "viranker")
    mode = "rerank" if available and backend.reranker_recommended(reranker) else "hybrid"
    if default_pipeline and default_pipeline != "auto":
        first, _, rr_name = default_pipeline.partition("+")
        if rr_name:
            mode, reranker = "rerank", rr_name if rr_name in names else reranker
        elif first in tab_search.FIRST_STAGE_LABELS:
            mode = first
    return mode, reranker


def build_ui(backend: Backend, default_pipeline: str = "auto") -> gr.Blocks:
    """The Gradio Blocks app (not launched; call ``.queue(...)`` / ``.launch(...)``).

    ``default_pipeline``: the Search tab's initial pipeline — ``auto`` (``hybrid+<first available
    reranker>`` when its model recommends itself as a default, else ``hybrid``), or a name such as ``hybrid``,
    ``bm25`` or ``hybrid+viranker``."""
    handlers = Handlers(backend)
    status = backend.rerankers()
    mode, reranker = initial_choice(backend, status, default_pipeline)
    # delete_cache: Gradio's copies of uploaded files older than an hour go (the Admin tab deletes its own
    # at once); every 30 minutes
    with gr.Blocks(title="ViRanker Search", delete_cache=(1800, 3600)) as page:
        gr.HTML(HEADER, elem_id='page-header', js_on_load=LANG_JS)
        banner = gr.HTML(elem_id="status-banner")
        banner_timer = gr.Timer(2.0, active=False)
        # the API first, so the public names are taken before any (private) UI handler is named
        api.register(backend)
        ctx = UiContext(page, backend, handlers, banner, banner_timer, status,
                        available=[n for n, s in status.items() if s.startswith("available")],
                        systems=tab_compare.system_choices(list(status)), default_mode=mode,
                        default_reranker=reranker)
        with gr.Tabs(overflow_behavior="wrap"):  # every tab stays visible (no "…" menu hiding Admin)
            for tab in (tab_search, tab_compare, tab_evaluate, tab_admin):
                tab.build(ctx)

        def _banner():
            text, poll = handlers.banner()
            return text, gr.Timer(active=poll)

        page.load(_banner, None, [banner, banner_timer], **PRIVATE, queue=False)
        banner_timer.tick(_banner, None, [banner, banner_timer], **PRIVATE, queue=False)
    return page


def app_kwargs(backend: Backend) -> dict[str, Any]:
    """What Gradio's FastAPI app gets besides the UI: the JSON API's routes, the upload guard (only an
    admin uploads, with size and rate limits: :mod:`search.ui.upload_guard`) and ``<html lang="vi">`` in the
    HTML it serves (:mod:`search.ui.html_lang`)."""
    from starlette.middleware import Middleware

    from search.ui.html_lang import HtmlLang
    from search.ui.upload_guard import UploadGuard

    return {"routes": json_api.routes(backend),
            "middleware": [Middleware(UploadGuard, valid_token=lambda token: backend.auth.valid_token(token)),
                           Middleware(HtmlLang, lang="vi")]}


def slow_queue_poll(page: gr.Blocks, seconds: float = QUEUE_POLL_S, progress_s: float = PROGRESS_POLL_S) -> bool:
    """Make Gradio's queue look for new events every ``seconds`` (and for progress to send every
    ``progress_s``) instead of every 1 ms (10 ms).

    Gradio's ``Queue`` sleeps ``sleep_when_free`` between looks (0.001 s off Windows) and
    ``progress_update_sleep_when_free`` between progress sends (0.01 s): an idle app spends ~9% of a core
    waking its event loop, and under load those wake-ups take the GIL from the searches. A queued UI event
    then starts up to 20 ms later and a progress bar moves 20 times a second. → whether the queue had both
    attributes (a Gradio without them keeps its own defaults; ``tests/search/ui/test_queue_poll.py`` notices).
    """
    queue = getattr(page, "_queue", None)
    names = ("sleep_when_free", "progress_update_sleep_when_free")
    if queue is None or not all(hasattr(queue, n) for n in names):
        return False
    queue.sleep_when_free = max(float(queue.sleep_when_free), seconds)
    queue.progress_update_sleep_when_free = max(float(queue.progress_update_sleep_when_free), progress_s)
    return True


def launch(backend: Backend, host: str, port: int, concurrency: int | None = None, max_queue: int = 256,
           block: bool = True, quiet: bool = False, default_pipeline: str = "auto",
           before_serve: Callable[[], Any] | None = None, trusted: Sequence[str] | str | None = None,
           max_sessions: int = MAX_SESSIONS) -> gr.Blocks:
    """Build the UI, configure the queue, call ``before_serve()`` (``main`` starts the demo build there) and
    serve it (never ``share=True``) → the Blocks object.

    ``concurrency``: cheap (non-reranked) searches at once (default: the backend's lanes, 4); reranked ones
    have their own lane (``Backend(lanes=LaneConfig(rerank_limit=…))``).
    ``max_sessions``: Gradio sessions whose state is kept (least recently used dropped first). Each keeps a
    copy of every component's config (~0.1–0.2 MB), so this bounds the app's memory; a dropped browser tab
    keeps working but loses its state (an admin logs in again).
    ``trusted``: the reverse proxies whose ``X-Forwarded-For`` is honoured (default
    ``$VIRANKER_TRUSTED_PROXIES``; none: every client is keyed by its connection's address)."""
    if concurrency is not None and concurrency != backend.lanes.fast.limit:  # before any search runs
        backend.lanes = Lanes(replace(backend.lanes.config, fast_limit=max(1, concurrency)))
    page = build_ui(backend, default_pipeline)
    # The lanes (search.ui.lanes) bound the searches: the queue lets every event in that the lanes can
    # hold (running + waiting), so a cheap search never waits in Gradio's queue behind reranked ones.
    capacity = backend.lanes.capacity
    page.queue(default_concurrency_limit=capacity, max_size=max_queue)
    slow_queue_poll(page)
    if before_serve is not None:
        before_serve()
    with proxy_trust(trusted_proxies(trusted)):  # only while uvicorn's config is built
        page.launch(server_name=host, server_port=port, share=False, css=CSS, show_error=False, quiet=quiet,
                    prevent_thread_lock=True, footer_links=["api"], inbrowser=False, max_file_size="50mb",
                    max_threads=capacity + EXTRA_THREADS, app_kwargs=app_kwargs(backend),
                    state_session_capacity=max(1, max_sessions))
    from search import app_registry  # the CLI finds the app here while it holds the index's vectors

    app_registry.register(backend.index, page.local_url or f"http://{host}:{port}/")
    if block:
        try:
            page.block_thread()
        finally:
            app_registry.unregister(backend.index)
    return page
