"""What every tab's ``build(ctx)`` gets (:class:`UiContext`), and the small input helpers tabs share."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search.errors import QueryError
from search.ui.backend import MAX_TOP_K

if TYPE_CHECKING:
    import gradio as gr

    from search.ui.backend import Backend
    from search.ui.handlers import Handlers

__all__ = ["UiContext", "PRIVATE", "clamp_k", "read_query", "read_pipelines", "BadInput", "client_key", "trusted_proxies", "proxy_trust",
           "TRUSTED_PROXIES_ENV", "system_choices", "usable_rerankers", "metric_label"]

TRUSTED_PROXIES_ENV = "VIRANKER_TRUSTED_PROXIES"

PRIVATE = {"api_visibility": "private"}  # UI events are not part of the public API


@dataclass
class UiContext:
    """Shared by the tabs while the page is built.

    ``rerankers``: ``{name: status}`` (:meth:`Backend.rerankers`: ``RerankerStatus`` objects, state and reason
    code); ``available``: the names whose status is ``available``; ``systems``: every pipeline name Compare / Evaluate offer; ``default_mode`` /
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


class BadInput(QueryError):
    """An API argument has the wrong type or value (a non-string query, ``top_k=Infinity``, ...)."""


_SURROGATES = re.compile("[\ud800-\udfff]")


def read_query(query: Any) -> str:
    """A query from the page or an API → a str (lone UTF-16 surrogates, which no encoder accepts, become
    spaces like control characters). Raises :class:`BadInput` for a non-string."""
    if query is None:
        return ""
    if not isinstance(query, str):
        raise BadInput(f"query must be a string, got {type(query).__name__}")
    return _SURROGATES.sub(" ", query)


def clamp_k(top_k: Any, default: int = 10) -> int:
    """A top-k from the page or the API → an int in ``[1, MAX_TOP_K]`` (``default`` for None / empty).
    Raises :class:`BadInput` for anything that is not a finite number (``Infinity``, ``NaN``, ``"abc"``)."""
    if top_k is None or (isinstance(top_k, str) and not top_k.strip()):
        return default
    if isinstance(top_k, bool):
        raise BadInput("top_k must be a number")
    try:
        value = float(top_k)
    except (TypeError, ValueError):
        raise BadInput(f"top_k must be a number, got {type(top_k).__name__} {str(top_k)[:20]!r}") from None
    if not math.isfinite(value):
        raise BadInput(f"top_k must be a finite number 1..{MAX_TOP_K}, got {top_k!r}")
    return max(1, min(MAX_TOP_K, int(value)))


def read_pipelines(pipelines: Any) -> list[str] | None:
    """``pipelines`` from an API → a list of names (None for none): a string is one pipeline (or several,
    comma-separated), never split into characters. Raises :class:`BadInput` for other types."""
    if pipelines is None or pipelines == "" or pipelines == []:
        return None
    if isinstance(pipelines, str):
        names = [n.strip() for n in pipelines.split(",") if n.strip()]
    elif isinstance(pipelines, (list, tuple)) and all(isinstance(n, str) for n in pipelines):
        names = [n.strip() for n in pipelines if n.strip()]
    else:
        raise BadInput(f"pipelines must be a list of names or a string, got {type(pipelines).__name__}")
    return names or None


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


def system_choices(rerankers: Sequence[str]) -> list[str]:
    """Every pipeline name offered in Compare / Evaluate."""
    out = ["bm25", "dense", "hybrid"]
    for r in rerankers:
        out += [f"hybrid+{r}", f"bm25+{r}"]
    return out


def usable_rerankers(status: Mapping[str, str]) -> list[str]:
    """Reranker statuses (``Backend.rerankers()``: name → :class:`~reranker.availability.RerankerStatus`, or
    an old-style "available…" | "loaded…" | "unavailable: …" string) → the names that can run now."""
    from reranker.availability import as_status

    return [n for n, st in status.items() if as_status(st, n).usable]


def metric_label(metric: str) -> str:
    """A metric's key → its header in the tabs' tables (``ndcg@10`` → ``NDCG@10``, ``recall@100`` →
    ``Recall@100``): metric names stay as the literature writes them."""
    name, _, k = metric.partition("@")
    label = "Recall" if name == "recall" else name.upper()
    return f"{label}@{k}" if k else label
