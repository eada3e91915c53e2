"""Serving lanes: reranked searches and cheap (non-reranked) searches never wait for each other.

A search is *reranked* when a pipeline it runs has a ``+<reranker>`` stage (``hybrid+viranker``); a cross-
encoder then takes ~0.1–1 s of CPU per query, while ``bm25`` / ``dense`` / ``hybrid`` take milliseconds. With
one shared pool, 24 reranked searches in flight made a BM25 search wait ~20 s. Each :class:`Lane` has its
own ``limit`` of searches running at once and its own bound on how many may wait (``max_waiting``; more
are refused at once with :class:`LaneBusy` instead of piling up). Every search path takes a slot: the
Gradio events and ``gr.api`` endpoints (through :meth:`search.ui.backend.Backend.search` / ``compare``)
and the JSON API.

Threads wait on a lane, so the server's thread pool must hold every slot plus every waiter:
:meth:`Lanes.capacity` is what :func:`search.ui.layout.launch` sizes Gradio's event group and
``max_threads`` with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["LaneConfig", "Lane", "Lanes", "LaneBusy", "is_reranked"]


class LaneBusy(RuntimeError):
    """A lane's waiting room is full: the search is refused at once (try again shortly)."""

    def __init__(self, lane: str, waiting: int) -> None:
        super().__init__(f"the {lane} lane is full ({waiting} searches waiting); try again shortly")
        self.lane, self.waiting = lane, waiting


@dataclass(frozen=True)
class LaneConfig:
    """Slots per lane. ``rerank_limit`` reranked searches run at once (cross-encoders are CPU-bound and
    each model runs one batch at a time) and ``rerank_waiting`` more may wait; ``fast_limit`` /
    ``fast_waiting`` the same for BM25 / dense / hybrid."""

    rerank_limit: int = 2
    rerank_waiting: int = 62
    fast_limit: int = 4
    fast_waiting: int = 60


def is_reranked(pipeline: str | None) -> bool:
    """True for a pipeline name with a reranking stage (``<first>+<reranker>``)."""
    return "+" in (pipeline or "")


class Lane:
    """``limit`` concurrent holders, at most ``max_waiting`` threads waiting for a slot. Thread-safe."""

    def __init__(self, name: str, limit: int, max_waiting: int) -> None:
        self.name, self.limit, self.max_waiting = name, max(1, int(limit)), max(0, int(max_waiting))
        self._cv = threading.Condition()
        self.running = 0
        self.waiting = 0

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """Hold one slot for the ``with`` block. Raises :class:`LaneBusy` when ``max_waiting`` threads
        already wait (or the wait exceeds ``timeout`` seconds)."""
        with self._cv:
            if self.running >= self.limit:
                if self.waiting >= self.max_waiting:
                    raise LaneBusy(self.name, self.waiting)
                self.waiting += 1
                try:
                    if not self._cv.wait_for(lambda: self.running < self.limit, timeout):
                        raise LaneBusy(self.name, self.waiting)
                finally:
                    self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            with self._cv:
                self.running -= 1
                self._cv.notify()

    @property
    def capacity(self) -> int:
        """Slots plus waiting room."""
        return self.limit + self.max_waiting

    def stats(self) -> dict[str, int]:
        """``{"running", "waiting", "limit", "max_waiting"}`` now."""
        with self._cv:
            return {"running": self.running, "waiting": self.waiting, "limit": self.limit,
                    "max_waiting": self.max_waiting}


class Lanes:
    """The two lanes (``rerank`` and ``fast``) of one app."""

    def __init__(self, config: LaneConfig | None = None) -> None:
        self.config = config or LaneConfig()
        c = self.config
        self.rerank = Lane("rerank", c.rerank_limit, c.rerank_waiting)
        self.fast = Lane("fast", c.fast_limit, c.fast_waiting)

    def lane_for(self, pipelines: Iterable[str | None]) -> Lane:
        """The rerank lane when any of ``pipelines`` reranks, else the fast lane."""
        return self.rerank if any(is_reranked(p) for p in pipelines) else self.fast

    def slot(self, pipelines: Iterable[str | None], timeout: float | None = None):  # noqa: ANN201
        """A slot in the lane for ``pipelines`` (a context manager; see :meth:`Lane.slot`)."""
        return self.lane_for(list(pipelines)).slot(timeout)

    @property
    def capacity(self) -> int:
        """Threads that can be inside the lanes at once (running + waiting, both lanes)."""
        return self.rerank.capacity + self.fast.capacity

    def stats(self) -> dict[str, dict[str, int]]:
        """Both lanes' :meth:`Lane.stats`."""
        return {"rerank": self.rerank.stats(), "fast": self.fast.stats()}
