"""The public HTTP API (``gr.api`` endpoints): search, compare, status and the admin actions.

The functions are typed, so Gradio derives each endpoint's schema from the hints; their docstrings are the
endpoints' descriptions. Admin endpoints check the password server-side with the Admin tab's throttling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

from indexing.admin import BuildBusy, NothingToRetry
from search.compare import display_scores
from search.errors import EmptyQuery
from search.ui.backend import MAX_COMPARE
from search.ui.context import BadInput, clamp_k, client_key, read_pipelines, read_query
from search.ui.messages import admin_failed, auth_message, friendly_error
from search.ui.tab_compare import compare_systems, default_compare_systems

if TYPE_CHECKING:
    from search.results import SearchResult
    from search.ui.backend import Backend

__all__ = ["make_api", "hits_json", "compare_json", "default_pipelines", "register"]


def hits_json(result: SearchResult) -> list[dict[str, Any]]:
    """A result's hits as the API's JSON list (score on the normalized 0–1 display scale too)."""
    norm = display_scores(result.hits)
    return [
        {"id": h.id, "title": h.title, "text": h.text, "score": float(h.score), "rank": int(h.rank),
         "doc_id": h.doc_id, "normalized_score": round(float(n), 6)}
        for h, n in zip(result.hits, norm, strict=True)
    ]


def default_pipelines(backend: Backend) -> list[str]:
    """The Compare tab's default pipelines for the rerankers available now."""
    status = backend.rerankers()
    avail = [n for n, v in status.items() if v.startswith(("available", "loaded"))]
    return default_compare_systems(list(status), avail)


def compare_json(backend: Backend, query: str, pipelines: list[str], top_k: int) -> dict[str, Any]:
    """Run ``pipelines`` (at most :data:`MAX_COMPARE`, duplicates dropped) on one generation → the
    ``/compare`` JSON (see :func:`make_api`)."""
    names = list(dict.fromkeys(pipelines))[:MAX_COMPARE]
    out = compare_systems(backend, query, names, top_k)
    return {
        "results": {n: hits_json(r) for n, r in out["results"].items()},
        "unavailable": out["errors"],
        "agreement": [{"a": s.a, "b": s.b, "overlap": s.overlap, "tau": s.tau, "shared": s.shared}
                      for s in out["stats"]],
        "timings_ms": {n: r.timings_ms.get("total") for n, r in out["results"].items()},
        "searched_query": {n: r.searched_query for n, r in out["results"].items()},
    }


def make_api(backend: Backend) -> dict[str, Callable[..., Any]]:
    """The public API functions by endpoint name."""
    def _read(query: Any) -> str:
        """The query as a str, or a ``gr.Error`` (non-string, empty)."""
        try:
            q = read_query(query)
        except BadInput as err:
            raise gr.Error(friendly_error(err), print_exception=False) from None
        if not q.strip():
            raise gr.Error(friendly_error(EmptyQuery("empty query")), print_exception=False)
        return q

    def _admin_call(password: str, request: gr.Request | None, action_name: str, action: Callable[[], Any],
                    refused: tuple[type[BaseException], ...] = (Exception,)) -> Any:
        """Check the admin password (refusals worded by :func:`auth_message`), then ``action()``; an exception
        in ``refused`` becomes a ``gr.Error`` :func:`admin_failed` ``(action_name, error)`` (no traceback)."""
        res = backend.auth.check(client_key(request), password if isinstance(password, str) else None)
        if not res.ok:
            raise gr.Error(auth_message(res), print_exception=False)
        try:
            return action()
        except refused as err:
            raise gr.Error(admin_failed(action_name, err), print_exception=False) from None

    def search(query: str, pipeline: str = "", top_k: int = 10) -> list[dict]:
        """Search the index with ``pipeline`` (bm25, dense, hybrid, <first stage>+<reranker>; empty: the
        service's default, hybrid+viranker when its weights are present). Returns [{"id", "title", "text",
        "score", "rank", "doc_id", "normalized_score"}], best first."""
        q = _read(query)
        try:
            if pipeline is not None and not isinstance(pipeline, str):
                raise BadInput(f"pipeline must be a string, got {type(pipeline).__name__}")
            res = backend.search(q, pipeline or None, clamp_k(top_k))
        except Exception as err:  # noqa: BLE001 - clients get the friendly message, not a traceback
            raise gr.Error(friendly_error(err), print_exception=False) from None
        return hits_json(res)

    def compare(query: str, pipelines: list[str] | None = None, top_k: int = 10) -> dict:
        """Run several pipelines (default: the Compare tab's; one string is one pipeline, or several
        comma-separated). Returns {"results": {pipeline: [hits]}, "unavailable": {pipeline: reason},
        "agreement": [{"a","b","overlap","tau","shared"}], "timings_ms": {pipeline: total ms},
        "searched_query": {pipeline: query after restoration}}."""
        q = _read(query)
        try:
            names = read_pipelines(pipelines) or default_pipelines(backend)
            return compare_json(backend, q, names, clamp_k(top_k))
        except Exception as err:  # noqa: BLE001
            raise gr.Error(friendly_error(err), print_exception=False) from None

    def status() -> dict:
        """Index status for anyone: {"index", "ready", "generation", "building", "stage", "done", "total",
        "build_failed", "failure": {"stage", "error_type", "message", "attempt", "hint"} | null, "message"}.
        No server paths; admins get the full error from /admin_status."""
        return backend.public_status()

    def admin_status(password: str, request: gr.Request) -> dict:
        """Admin: index statistics (with ``vector_store``: the vector store's error when it does not answer,
        and ``rerankers``: each model's status with its dir), generations and build progress, with the full
        failure of the last build (password required)."""
        def run() -> dict:
            snap = backend.job.snapshot()
            snap.pop("result", None)
            stats = backend.admin_stats()
            return {"stats": stats, "generations": backend.admin_generations(), "build": snap,
                    "failure": snap.get("failure"), "rerankers": stats.get("rerankers")}

        return _admin_call(password, request, "status", run, refused=())

    def admin_retry_build(password: str, request: gr.Request) -> dict:
        """Admin: start the failed build (e.g. the first-start demo build) again in the background; poll
        /status or /admin_status (password required)."""
        return _admin_call(password, request, "retry", lambda: {"started": backend.admin_retry_build()},
                           refused=(BuildBusy, NothingToRetry))

    def admin_rollback(password: str, request: gr.Request) -> dict:
        """Admin: serve the previous complete generation (password required)."""
        return _admin_call(password, request, "rollback", lambda: {"generation": backend.admin_rollback()})

    def admin_rebuild(password: str, request: gr.Request) -> dict:
        """Admin: rebuild the current passages into a new generation in the background (password required)."""
        return _admin_call(password, request, "rebuild", lambda: {"started": backend.admin_start_rebuild()})

    def admin_delete(password: str, ids: list[str], request: gr.Request) -> dict:
        """Admin: delete passages/documents by id in a background rebuild (password required)."""
        return _admin_call(password, request, "delete",
                           lambda: {"started": backend.admin_start_delete(list(ids or []))})

    return {"search": search, "compare": compare, "status": status, "admin_status": admin_status,
            "admin_rollback": admin_rollback, "admin_rebuild": admin_rebuild, "admin_delete": admin_delete,
            "admin_retry_build": admin_retry_build}


def register(backend: Backend) -> None:
    """Register the endpoints on the ``gr.Blocks`` being built (before any UI event, so the public names
    are taken first)."""
    api = make_api(backend)
    gr.api(api["search"], api_name="search", concurrency_id="search")
    gr.api(api["compare"], api_name="compare", concurrency_id="search")
    gr.api(api["status"], api_name="status", concurrency_limit=None, concurrency_id="status")
    for name in ("admin_status", "admin_rollback", "admin_rebuild", "admin_delete", "admin_retry_build"):
        gr.api(api[name], api_name=name, concurrency_limit=1, concurrency_id="admin")
