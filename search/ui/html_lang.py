"""The page's language in the HTML the server sends: Gradio serves ``<html lang="en">`` whatever the content;
:class:`HtmlLang` (an ASGI middleware) rewrites the opening ``<html …>`` tag of every ``text/html`` response to
``lang="vi"``, so screen readers, translation prompts and search engines see Vietnamese before any script runs
(the header's ``js_on_load`` only fixes it after the page has loaded).

In: the wrapped ASGI app and the language code. Out: the same responses, with HTML bodies rewritten and their
``content-length`` corrected; other responses (JSON, files, streams) pass through untouched.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HtmlLang", "set_html_lang"]

_HTML_TAG = re.compile(rb"<html\b[^>]*>", re.IGNORECASE)
_LANG_ATTR = re.compile(rb"""\slang\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)


def set_html_lang(body: bytes, lang: str) -> bytes:
    """``body`` (an HTML document) → the same bytes with its first ``<html>`` tag carrying ``lang=<lang>``."""
    m = _HTML_TAG.search(body)
    if m is None:
        return body
    tag = m.group(0)
    value = f'lang="{lang}"'.encode()
    new = _LANG_ATTR.sub(b" " + value, tag, count=1) if _LANG_ATTR.search(tag) else tag[:5] + b" " + value + tag[5:]
    return body[: m.start()] + new + body[m.end():]


class HtmlLang:
    """ASGI middleware: ``text/html`` responses get ``<html lang=…>`` (see the module docstring)."""

    def __init__(self, app: Any, lang: str = "vi") -> None:
        self.app, self.lang = app, lang

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def _send(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict((k.lower(), v) for k, v in message.get("headers", []))
                is_html = headers.get(b"content-type", b"").startswith(b"text/html")
                if not is_html or b"content-encoding" in headers:
                    await send(message)
                    return
                start = message  # hold it: the body's length changes
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = set_html_lang(b"".join(chunks), self.lang)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, _send)
