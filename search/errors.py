"""Typed errors of the search layer, for callers to dispatch on by class (never by message text).

No heavy imports: the UI imports this module eagerly.

Hierarchy (each also keeps the builtin base its callers used to catch):

- :class:`SearchError` — base of everything below.
- :class:`QueryError` (``ValueError``) — the query cannot be searched; :class:`EmptyQuery` (nothing but
  whitespace / control characters) and :class:`NoSearchableTerms` (no letters or digits) say why.
- :class:`ServiceError` (``RuntimeError``) — the service cannot search (closed, no generation built yet).
- :class:`VectorsUnavailable` (``ServiceError`` and ``ValueError``) — a dense/hybrid pipeline was asked for,
  but the index has no vectors or query embedder, or its vector store does not answer; BM25 still works.
  :class:`VectorStoreDown` when the vector store exists but does not answer (Qdrant server down, path held).
- :class:`RerankError` (``RuntimeError``) — a reranker returned unusable scores (wrong count).
- :class:`IndexNotReady` (``RuntimeError``) — the app's index has no serving generation yet;
  :class:`IndexBuildFailed` when its build failed (``failure``: the build job's failure record).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SearchError",
    "QueryError",
    "EmptyQuery",
    "NoSearchableTerms",
    "ServiceError",
    "VectorsUnavailable",
    "VectorStoreDown",
    "RerankError",
    "IndexNotReady",
    "IndexBuildFailed",
]


class SearchError(Exception):
    """Base class of the search layer's errors."""


class QueryError(SearchError, ValueError):
    """The query cannot be searched (empty, only whitespace/control characters, wrong type)."""


class EmptyQuery(QueryError):
    """Nothing is left of the query after cleaning (empty, whitespace or control characters only)."""


class NoSearchableTerms(QueryError):
    """The query has no letters or digits to search for (punctuation or symbols only)."""


class ServiceError(SearchError, RuntimeError):
    """The service cannot search (no index built yet, missing vectors for a dense pipeline, ...)."""


class VectorsUnavailable(ServiceError, ValueError):
    """A pipeline needs vectors the index cannot give now (none built, no query embedder, or the vector store
    does not answer). ``pipeline``: the pipeline asked for; ``reason``: why. A ``ValueError`` too, as the
    pipeline raised one before this class existed."""

    def __init__(self, message: str, pipeline: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.reason = reason


class VectorStoreDown(VectorsUnavailable):
    """The index has vectors, but its vector store does not answer now (the Qdrant server is down or
    unreachable, a local path is held by another process); ``reason``: the store's error (for admins: it may
    name the server)."""


class RerankError(SearchError, RuntimeError):
    """A reranker returned unusable scores (not one per passage)."""


class IndexNotReady(SearchError, RuntimeError):
    """The index has no serving generation yet (first build running, or nothing to build from)."""


class IndexBuildFailed(IndexNotReady):
    """The index has no serving generation because its build failed (``failure``: ``BuildJob.failure``)."""

    def __init__(self, message: str, failure: dict[str, Any]) -> None:
        super().__init__(message)
        self.failure = failure
