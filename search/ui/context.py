"""What every tab's ``build(ctx)`` gets (:class:`UiContext`), and the small input helpers tabs share."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search.ui.backend import MAX_TOP_K

if TYPE_CHECKING:
    import gradio as gr

    from search.ui.backend import Backend
    from search.ui.handlers import Handlers

__all__ = ["UiContext", "PRIVATE", "clamp_k", "client_key", "trusted_proxies", "proxy_trust",
           "TRUSTED_PROXIES_ENV"]

TRUSTED_PROXIES_ENV = "VIRANKER_TRUSTED_PROXIES"

PRIVATE = {"api_visibility": "private"}  # UI events are not part of the public API


@dataclass
class UiContext:
    """Shared by the tabs while the page is built.

    ``rerankers``: ``{name: status}`` (:meth:`Backend.rerankers`); ``available``: the names whose status says
    ``available``; ``systems``: every pipeline name Compare / Evaluate offer; ``default_mode`` /
    ``default_reranker``: the Search tab's initial choice; ``page``: the ``gr.Blocks`` (for ``page.load``
    events); ``banner`` / ``banner_timer``: the page-top status and its poll timer (tabs that start builds
    update them).
    """

    page: gr.Blocks
    backend: Backend
    handlers: Handlers
    banner: gr.HTML
    banner_timer: gr.Timer
    rerankers: dict[str, str]
    available: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)
    default_mode: str = "hybrid"
    default_reranker: str = "viranker"

    @property
    def reranker_names(self) -> list[str]:
        """Every reranker the page offers (available or not)."""
        return list(self.rerankers)


def clamp_k(top_k: Any, default: int = 10) -> int:
    """A top-k from the page or the API → an int in ``[1, MAX_TOP_K]`` (``default`` when unreadable)."""
    try:
        k = int(top_k)
    except (TypeError, ValueError):
        return default
    return max(1, min(MAX_TOP_K, k))


def client_key(request: Any) -> str:
    """A throttling key for the caller: the address of the connection (the ASGI scope's ``client``).

    Uvicorn rewrites that address from ``X-Forwarded-For`` only for connections from a trusted proxy, and
    :func:`proxy_trust` makes that list empty unless ``--trusted-proxy`` / ``$VIRANKER_TRUSTED_PROXIES`` name
    one; then the key is the right-most address in ``X-Forwarded-For`` that is not a trusted proxy. So a
    client cannot pick its own key by sending the header."""
    try:
        return str(request.client.host)
    except AttributeError:
        return "unknown"


def trusted_proxies(value: str | Sequence[str] | None = None) -> list[str]:
    """The trusted proxy addresses / networks: ``value`` (a comma-separated string or a list), else
    ``$VIRANKER_TRUSTED_PROXIES``; ``[]`` when none (``X-Forwarded-For`` is then ignored)."""
    if value is None:
        value = os.environ.get(TRUSTED_PROXIES_ENV, "")
    items = value.split(",") if isinstance(value, str) else [x for v in value for x in str(v).split(",")]
    return [x.strip() for x in items if x.strip()]


@contextmanager
def proxy_trust(proxies: Sequence[str]) -> Iterator[None]:
    """While the server is created: make uvicorn trust ``X-Forwarded-For`` only from ``proxies``.

    Gradio builds ``uvicorn.Config`` without ``forwarded_allow_ips``, so uvicorn reads
    ``$FORWARDED_ALLOW_IPS`` and defaults to ``127.0.0.1,::1`` — any local client (or a tunnel) could then
    forge its address. The variable is set for the duration of the block (the config reads it once, when it
    is built) and restored after."""
    old = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(proxies)  # "" trusts nobody
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = old
