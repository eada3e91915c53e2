"""What every tab's ``build(ctx)`` gets (:class:`UiContext`), and the small input helpers tabs share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search.ui.backend import MAX_TOP_K

if TYPE_CHECKING:
    import gradio as gr

    from search.ui.backend import Backend
    from search.ui.handlers import Handlers

__all__ = ["UiContext", "PRIVATE", "clamp_k", "client_key"]

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
    """A throttling key for the caller (its IP address)."""
    try:
        return str(request.client.host)
    except AttributeError:
        return "unknown"
