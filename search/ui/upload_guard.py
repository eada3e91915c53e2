"""Who may upload files: only a logged-in admin, within a size and a rate limit per client.

Gradio's ``POST /gradio_api/upload`` stores any file anyone sends in its temp folder (issue 19: 10 MB
from nobody → 200, kept forever). :class:`UploadGuard` is an ASGI middleware in front of Gradio's app that
answers that route itself unless

- the request carries the admin session cookie (:data:`COOKIE`: the session token the Admin tab's login
  issues, set in the browser by the login event and cleared by logout; checked with
  :meth:`indexing.admin.AdminAuth.valid_token`) → else **403**;
- its ``Content-Length`` is at most ``max_bytes`` (default the 50 MB upload limit + 1 MB of multipart
  framing) → else **413** (a chunked body is counted as it streams and cut at the limit);
- the client (its connection's address, :func:`search.ui.context.client_key`'s rule) sent fewer than
  ``per_minute`` uploads in the last 60 s → else **429**.

So the Evaluate tab's BEIR-zip upload is an admin feature too. Files that pass are deleted by the Admin
tab once ingested or refused; Gradio's ``delete_cache`` removes anything else after an hour.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from indexing.admin import MAX_UPLOAD_BYTES

__all__ = ["UploadGuard", "COOKIE", "set_cookie_js", "clear_cookie_js", "delete_temp_uploads"]

COOKIE = "viranker_admin"
UPLOAD_PATHS = ("/gradio_api/upload", "/gradio_api/upload/")
# the login event's js: put the session token (its output) in a same-site cookie for the upload requests
set_cookie_js = (f"(token) => {{ if (token) document.cookie = '{COOKIE}=' + token + '; path=/; SameSite=Strict'; "
                 "return ''; }")
clear_cookie_js = f"() => {{ document.cookie = '{COOKIE}=; path=/; max-age=0; SameSite=Strict'; return []; }}"


def delete_temp_uploads(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Delete the files among ``paths`` that lie in Gradio's upload folder (never anything else) → how many;
    their per-upload sub-folder goes too when it is left empty."""
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder()).resolve()
    n = 0
    for p in paths:
        path = Path(p).resolve()
        if root not in path.parents or not path.is_file():
            continue
        path.unlink(missing_ok=True)
        n += 1
        with contextlib.suppress(OSError):
            if path.parent != root:
                path.parent.rmdir()  # only when empty
    return n


class UploadGuard:
    """ASGI middleware: refuse uploads from non-admins, over ``max_bytes``, or over ``per_minute``."""

    def __init__(self, app: Any, valid_token: Callable[[str | None], bool], *,
                 max_bytes: int = MAX_UPLOAD_BYTES + 2**20, per_minute: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.valid_token = app, valid_token
        self.max_bytes, self.per_minute, self._clock = max_bytes, per_minute, clock
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in UPLOAD_PATHS:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _reply(send, *refusal)
        received = 0

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge(received)
            return message

        try:
            await self.app(scope, capped_receive, send)
        except UploadTooLarge:
            await _reply(send, 413, f"upload over {self.max_bytes:,} bytes")

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, reason) when the upload is refused, else None (and the upload is counted)."""
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no login
            cookie = SimpleCookie()
        token = cookie[COOKIE].value if COOKIE in cookie else None
        if not self.valid_token(token):
            return 403, "uploads need an admin login (Admin tab)"
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return 400, "bad Content-Length"
        if length > self.max_bytes:
            return 413, f"upload over {self.max_bytes:,} bytes"
        client = (scope.get("client") or ("?", 0))[0]
        now = self._clock()
        with self._lock:
            recent = self._recent.setdefault(client, deque())
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= self.per_minute:
                return 429, f"more than {self.per_minute} uploads a minute"
            recent.append(now)
            if len(self._recent) > 10_000:  # bounded: forget idle clients
                for key in [k for k, v in self._recent.items() if not v]:
                    del self._recent[key]
        return None


class UploadTooLarge(Exception):
    """The streamed body passed the limit."""


async def _reply(send: Callable, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
