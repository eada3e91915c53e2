"""The Gradio app, by tab: Search, Compare, Evaluate and Admin, plus a small HTTP API.

``from search.ui import Backend, Handlers, build_ui, launch`` (what ``app.py`` re-exports). Names are
imported on first use (PEP 562), so ``search.ui.render`` or ``search.ui.messages`` can be used without
importing Gradio.

Modules:

- :mod:`search.ui.backend` — :class:`Backend`, the read side: index state, the search service, status,
  benchmarks, document metadata (no Gradio);
- :mod:`search.ui.admin_ops` — :class:`AdminOps`, the write side mixed into :class:`Backend`: demo build,
  uploads, rebuild, delete, rollback / switch;
- :mod:`search.ui.messages` — the Vietnamese messages: errors by class, notes by code, the status banner;
- :mod:`search.ui.benchmarks` — bundled BEIR dev sets, example questions, one-query metrics;
- :mod:`search.ui.tab_search`, :mod:`~search.ui.tab_compare`, :mod:`~search.ui.tab_evaluate`,
  :mod:`~search.ui.tab_admin` — one tab each: its handlers (plain methods) and ``build(ctx)`` (layout and
  events); no tab imports another;
- :mod:`search.ui.handlers` — :class:`Handlers`, all tabs' handlers on one object;
- :mod:`search.ui.api` — the public ``gr.api`` endpoints;
- :mod:`search.ui.layout` — :func:`build_ui` and :func:`launch`; :mod:`search.ui.render` — HTML;
  ``style.css`` — the page's CSS.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Backend", "Handlers", "build_ui", "launch"]

_WHERE = {"Backend": "search.ui.backend", "Handlers": "search.ui.handlers", "build_ui": "search.ui.layout",
          "launch": "search.ui.layout"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
