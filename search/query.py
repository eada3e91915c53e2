"""Stage 1 of a search: validate, normalise, truncate and route the query; parse pipeline names.

:func:`prepare` turns what the user typed into a :class:`PreparedQuery`: normalized like the documents
(:func:`indexing.normalize.normalize`: NFC, unified tone marks, control / zero-width characters removed), cut
to ``max_chars`` / ``max_syllables`` with a note, and — when its diacritic level is in ``restore_levels`` —
routed: the index's :class:`~indexing.restorer.DiacriticRestorer` adds the missing marks, and the dense
retriever and the reranker get the restored text. Raises :class:`~search.errors.QueryError` subclasses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexing.normalize import normalize
from search.diacritics import diacritic_level
from search.errors import EmptyQuery, NoSearchableTerms, QueryError
from search.results import Note, NoteCode, ms_since

if TYPE_CHECKING:
    from indexing.restorer import DiacriticRestorer

__all__ = ["FIRST_STAGES", "MAX_QUERY_CHARS", "MAX_QUERY_SYLLABLES", "PreparedQuery", "prepare", "parse_pipeline"]

FIRST_STAGES = ("bm25", "dense", "hybrid")
MAX_QUERY_CHARS = 512
MAX_QUERY_SYLLABLES = 64
_TOKEN_RE = re.compile(r"\w+")
_RERANKER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class PreparedQuery:
    """A validated query and how to search it (see :func:`prepare`)."""

    typed: str  # as typed
    text: str  # normalized, cleaned, truncated
    level: str  # diacritic level of ``text``
    routed: bool  # searched without diacritics + restored
    searched: str  # text given to the dense retriever and the reranker
    notes: list[Note]
    timings_ms: dict[str, float]


def prepare(
    query: str,
    *,
    max_chars: int = MAX_QUERY_CHARS,
    max_syllables: int = MAX_QUERY_SYLLABLES,
    restore_levels: Sequence[str] = ("none", "partial"),
    restorer: DiacriticRestorer | None = None,
    as_typed: bool = False,
) -> PreparedQuery:
    """Validate, clean, truncate and route one query → :class:`PreparedQuery` (timings ``validate`` and
    ``diacritics``). ``as_typed`` switches routing off. Raises :class:`EmptyQuery`, :class:`NoSearchableTerms`
    or :class:`QueryError` (not a string)."""
    start = time.perf_counter()
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    notes: list[Note] = []
    text = normalize(query)
    if not text:
        raise EmptyQuery("empty query: type a few words to search for")
    if not _TOKEN_RE.search(text):
        raise NoSearchableTerms("the query has no letters or digits to search for")
    if len(text) > max_chars:
        cut = text[:max_chars]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut
        notes.append(Note.truncated(max_chars, "characters"))
    tokens = list(_TOKEN_RE.finditer(text))
    if len(tokens) > max_syllables:
        text = text[: tokens[max_syllables - 1].end()]
        notes.append(Note.truncated(max_syllables, "syllables"))
    timings = {"validate": ms_since(start)}
    start = time.perf_counter()
    level = diacritic_level(text)
    routed = not as_typed and level in restore_levels
    searched = text
    if routed and restorer is not None:
        searched = restorer.restore(text)
        if searched != text:
            notes.append(Note(NoteCode.RESTORED, {"query": searched}))
    timings["diacritics"] = ms_since(start)
    return PreparedQuery(query, text, level, routed, searched, notes, timings)


def parse_pipeline(name: str) -> tuple[str, str | None]:
    """``"hybrid+viranker"`` → ``("hybrid", "viranker")``; ``"bm25"`` → ``("bm25", None)``.

    Raises ValueError for unknown first stages or malformed names.
    """
    if not isinstance(name, str):
        raise ValueError(f"pipeline name must be a string, got {type(name).__name__}")
    first, plus, reranker = name.strip().lower().partition("+")
    if first not in FIRST_STAGES:
        raise ValueError(f"unknown pipeline {name!r}: use bm25, dense or hybrid, optionally +<reranker>")
    if plus and not _RERANKER_NAME_RE.match(reranker):
        raise ValueError(f"bad reranker name in pipeline {name!r}")
    return first, (reranker or None)
