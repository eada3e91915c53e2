"""A plain JSON HTTP API beside the UI: ``/api/v1/search``, ``/api/v1/compare``, ``/api/v1/status``.

FastAPI routes on Gradio's own app (:func:`routes`, handed to ``launch(app_kwargs={"routes": ...})``), so
they are served by the same server and port as the page, but **outside Gradio's queue**: no session, no
server-sent events, one request → one JSON answer. Each request runs in the search's lane
(:mod:`search.ui.lanes`) on a bounded pool of worker threads of its own (one ``anyio.CapacityLimiter`` per
lane, the lane's size), so a reranked request never takes a thread a cheap one needs, and a request whose
lane is full is refused at once (503, ``Retry-After: 1``) instead of piling up.

Requests (GET query parameters or a POST JSON body; same names):

- ``/api/v1/search``: ``query`` (str), ``pipeline`` (str, default: the service's), ``top_k`` (1..50, default
  10) → ``{"query", "searched_query", "pipeline", "hits": [{"id", "title", "text", "score", "rank",
  "doc_id", "normalized_score"}], "timings_ms", "notes"}``;
- ``/api/v1/compare``: ``query``, ``pipelines`` (a list, or one string: ``"bm25"`` or ``"bm25,hybrid"``),
  ``top_k`` → ``{"results": {pipeline: [hit]}, "unavailable": {pipeline: reason}, "agreement": [...],
  "timings_ms": {...}, "searched_query": {...}}`` (as the ``/compare`` gr.api endpoint);
- ``/api/v1/status`` (GET) → what the ``/status`` endpoint returns, with ``"rerankers": {name: {"state":
  "available" | "loaded" | "unavailable", "code": <reason code> | null, "message": <Vietnamese>}}`` (the
  codes of :class:`reranker.availability.UnavailableReason`; no server paths).

Errors: ``{"error": {"type": <class>, "message": <Vietnamese message>}}`` with 400 (bad input: empty or
non-string query, ``top_k`` not a finite number, unknown pipeline), 503 (index not ready, vectors or model
unavailable, lane full) or 500 (anything else; no traceback).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from search.errors import IndexNotReady, QueryError, ServiceError
from search.ui.context import clamp_k, read_pipelines, read_query
from search.ui.lanes import Lane, LaneBusy

if TYPE_CHECKING:
    from search.ui.backend import Backend

__all__ = ["routes", "PREFIX", "JsonApi"]

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024


class JsonApi:
    """The routes' handlers over one :class:`~search.ui.backend.Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._pending: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ plumbing
    def _limiter(self, lane: Lane) -> anyio.CapacityLimiter:
        """The lane's worker-thread limiter (created in the event loop on first use)."""
        lim = self._limiters.get(lane.name)
        if lim is None:
            lim = self._limiters[lane.name] = anyio.CapacityLimiter(lane.limit)
        return lim

    async def _run(self, lane: Lane, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the lane's worker threads; refused with :class:`LaneBusy` when as many requests
        as the lane holds (running + waiting) are already pending."""
        pending = self._pending.get(lane.name, 0)
        if pending >= lane.capacity:
            raise LaneBusy(lane.name, pending)
        self._pending[lane.name] = pending + 1
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter(lane))
        finally:
            self._pending[lane.name] -= 1

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        """GET query parameters, or a POST JSON object (at most 64 KiB)."""
        if request.method == "GET":
            return dict(request.query_params)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"the request body is over {MAX_BODY_BYTES:,} bytes")
        try:
            data = json.loads(body or b"{}")
        except ValueError as err:
            raise BadRequest(f"the body is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    # ----------------------------------------------------------------------------------------- endpoints
    async def search(self, request: Request) -> JSONResponse:
        """``/api/v1/search`` (see the module docstring)."""
        from search.ui.api import hits_json

        async def run() -> dict[str, Any]:
            p = await self._params(request)
            query, k = _nonempty(read_query(p.get("query"))), clamp_k(p.get("top_k"))
            pipeline = p.get("pipeline") or None
            if pipeline is not None and not isinstance(pipeline, str):
                raise BadRequest(f"pipeline must be a string, got {type(pipeline).__name__}")
            svc = self.backend.service()
            lane = self.backend.lanes.lane_for([pipeline or getattr(svc, "default_pipeline", None)])
            res = await self._run(lane, self.backend.search, query, pipeline, k)
            return {"query": res.query, "searched_query": res.searched_query, "pipeline": res.pipeline,
                    "hits": hits_json(res), "timings_ms": dict(res.timings_ms), "notes": [str(n) for n in res.notes]}

        return await _answer(run)

    async def compare(self, request: Request) -> JSONResponse:
        """``/api/v1/compare`` (see the module docstring)."""
        from search.ui.api import compare_json, default_pipelines

        async def run() -> dict[str, Any]:
            p = await self._params(request)
            query, k = _nonempty(read_query(p.get("query"))), clamp_k(p.get("top_k"))
            names = read_pipelines(p.get("pipelines")) or default_pipelines(self.backend)
            lane = self.backend.lanes.lane_for(names)
            return await self._run(lane, compare_json, self.backend, query, names, k)

        return await _answer(run)

    async def status(self, request: Request) -> JSONResponse:
        """``/api/v1/status``: the public status (no server paths)."""
        return await _answer(lambda: anyio.to_thread.run_sync(self.backend.public_status))


class BadRequest(QueryError):
    """The request itself is malformed (not JSON, too large, a field of the wrong type)."""


def _nonempty(query: str) -> str:
    if not query.strip():
        from search.errors import EmptyQuery

        raise EmptyQuery("empty query")
    return query


def _status_code(err: BaseException) -> int:
    """400 for the caller's mistakes, 503 for "not now", 500 otherwise."""
    from indexing.embedders import EmbedderUnavailable
    from reranker.backends import ModelUnavailable

    if isinstance(err, (LaneBusy, IndexNotReady, ServiceError, ModelUnavailable, EmbedderUnavailable)):
        return 503
    if isinstance(err, ValueError):  # QueryError, BadInput, unknown pipeline
        return 400
    return 500


async def _answer(run: Any) -> JSONResponse:
    """Await ``run()`` → 200 with its JSON, or the error as ``{"error": {"type", "message"}}``."""
    from search.ui.messages import friendly_error

    try:
        return JSONResponse(await run())
    except Exception as err:  # noqa: BLE001 - every error becomes a JSON answer, never a traceback
        code = _status_code(err)
        headers = {"Retry-After": "1"} if isinstance(err, LaneBusy) else None
        return JSONResponse({"error": {"type": type(err).__name__, "message": friendly_error(err)}},
                            status_code=code, headers=headers)


def routes(backend: Backend) -> list[APIRoute]:
    """The JSON API's routes for ``backend`` (for ``FastAPI(routes=...)``)."""
    api = JsonApi(backend)
    return [
        APIRoute(f"{PREFIX}/search", api.search, methods=["GET", "POST"], include_in_schema=True),
        APIRoute(f"{PREFIX}/compare", api.compare, methods=["GET", "POST"], include_in_schema=True),
        APIRoute(f"{PREFIX}/status", api.status, methods=["GET"], include_in_schema=True),
    ]
