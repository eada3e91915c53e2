"""What a search returns: :class:`Hit`, :class:`SearchResult` and structured :class:`Note` objects.

Notes carry a :class:`NoteCode` and their parameters, so that each front end words them itself (the UI in
Vietnamese, :mod:`search.ui.messages`); ``str(note)`` is the English text the CLI and the JSON output show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Hit", "SearchResult", "Note", "NoteCode", "StageTrace", "Ranked", "ms_since"]

Ranked = list[tuple[str, float]]  # (passage id, score), best first


class NoteCode(StrEnum):
    """What a :class:`Note` says."""

    TRUNCATED_CHARS = "truncated_chars"  # params: limit
    TRUNCATED_SYLLABLES = "truncated_syllables"  # params: limit
    RESTORED = "restored"  # params: query (the restored query that was searched)
    RERANK_WINDOW = "rerank_window"  # params: top (ranks after it are first-stage order)


_ENGLISH = {
    NoteCode.TRUNCATED_CHARS: "query truncated to {limit} characters",
    NoteCode.TRUNCATED_SYLLABLES: "query truncated to {limit} syllables",
    NoteCode.RESTORED: "searched with diacritics restored: {query}",
    NoteCode.RERANK_WINDOW: "ranks after {top} are first-stage order (not reranked)",
}


@dataclass(frozen=True)
class Note:
    """One remark about a search: ``code`` says what, ``params`` the values (``{"limit": 64}``)."""

    code: NoteCode
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        """The English text (CLI, JSON)."""
        return _ENGLISH[self.code].format(**self.params)

    @classmethod
    def truncated(cls, limit: int, unit: str) -> Note:
        """The query was cut to ``limit`` ``unit`` (``"characters"`` or ``"syllables"``)."""
        code = NoteCode.TRUNCATED_CHARS if unit == "characters" else NoteCode.TRUNCATED_SYLLABLES
        return cls(code, {"limit": int(limit)})


@dataclass
class Hit:
    """One ranked passage with where it came from."""

    id: str
    doc_id: str
    title: str
    text: str
    score: float  # final score of the stage that produced the order
    rank: int  # 1-based final rank
    stage_ranks: dict[str, int] = field(default_factory=dict)  # {"bm25": 3, "dense": 1, "fusion": 1, "rerank": 2}
    stage_scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {"id": self.id, "doc_id": self.doc_id, "title": self.title, "text": self.text,
                "score": float(self.score), "rank": self.rank, "stage_ranks": dict(self.stage_ranks),
                "stage_scores": {k: float(v) for k, v in self.stage_scores.items()}}


@dataclass
class SearchResult:
    """What a search returns."""

    query: str  # as typed
    searched_query: str  # after diacritic restoration (== normalized query when none was needed)
    diacritics: str  # "full" | "partial" | "none"
    hits: list[Hit]
    timings_ms: dict[str, float]  # per stage, plus "total"
    pipeline: str
    notes: list[Note] = field(default_factory=list)  # e.g. Note(TRUNCATED_SYLLABLES, {"limit": 64})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (notes as their English text)."""
        return {"query": self.query, "searched_query": self.searched_query, "diacritics": self.diacritics,
                "pipeline": self.pipeline, "timings_ms": dict(self.timings_ms),
                "notes": [str(n) for n in self.notes], "hits": [h.to_dict() for h in self.hits]}


@dataclass
class StageTrace:
    """What each stage of one search did: per passage, its rank and score in each stage (``bm25``, ``dense``,
    ``fusion``, ``rerank``, plus extra signals such as ``rerank_raw``), and the stage timings in ms."""

    timings_ms: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, stage: str, ranked: Ranked) -> None:
        """Note the 1-based rank and the score of every passage of ``ranked`` in ``stage``."""
        for r, (pid, s) in enumerate(ranked, start=1):
            self.ranks.setdefault(pid, {})[stage] = r
            self.scores.setdefault(pid, {})[stage] = float(s)

    def time(self, stage: str, start: float) -> None:
        """``timings_ms[stage]`` = milliseconds since ``start``."""
        self.timings_ms[stage] = ms_since(start)


def ms_since(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` value), rounded to microseconds."""
    return round((time.perf_counter() - start) * 1000, 3)
