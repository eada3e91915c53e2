"""A long-lived search service for the app: one index, always its ``CURRENT`` generation.

:class:`SearchService` opens the generation named by ``CURRENT`` (BM25 + Qdrant + diacritic restorer), loads
the query embedder and the rerankers lazily on first use, and re-opens when ``CURRENT`` changes (checked at
most every ``check_interval`` seconds). Searches that are running on the old generation finish on it; its
Qdrant local client and BM25 searcher are closed when the last of them is done. All methods are thread-safe
(Gradio serves requests from a thread pool).

Unavailable models never break the service: :meth:`SearchService.status` lists each reranker as available or
with its ``ModelUnavailable`` message, and searching with one raises that error for the caller to show.

An unavailable vector store never breaks it either: when Qdrant does not answer (``QDRANT_URL`` down, or a
local path held by another process) the generation is served BM25-only — ``pipelines()`` lists only
``bm25`` pipelines, dense/hybrid searches raise :class:`~search.errors.VectorsUnavailable` (a
:class:`ServiceError`, with Qdrant's error) at once instead of waiting on the server — and the vectors are
re-opened in the background every ``vector_retry_s`` seconds until the server answers again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from indexing.embedders import Embedder, LazyEmbedder
from search.errors import QueryError, ServiceError, VectorStoreDown, VectorsUnavailable
from search.pipeline import Pipeline, SearchResult, default_pipeline_for, parse_pipeline

__all__ = ["SearchService", "ServiceError", "VectorsUnavailable"]

if TYPE_CHECKING:
    from indexing.snapshot import IndexSnapshot
    from reranker.backends import Reranker, RerankScores

log = logging.getLogger(__name__)


class _LockedReranker:
    """Serializes calls to one reranker model (torch modules and tokenizers are not re-entrant)."""

    def __init__(self, model: Reranker) -> None:
        self.model = model
        self.name = getattr(model, "name", "?")
        # what the blend stage reads (search.pipeline.Pipeline.blend_for / learned_blend_for): the model's
        # recommended first-stage weight, its inference settings (a learned blend) and its model dir
        self.blend = getattr(model, "blend", None)
        self.settings = getattr(model, "settings", None)
        self.path = getattr(model, "path", None)
        self._lock = threading.Lock()

    def rerank(self, query: str, passages: Sequence[str]) -> RerankScores:
        with self._lock:
            return self.model.rerank(query, passages)


class _State:
    """One opened generation and its pipeline, with a count of searches using it.

    ``vector_error`` is set when its vector store is unavailable (BM25-only); ``retry_at`` is when to try
    re-opening it (``time.monotonic`` seconds).
    """

    def __init__(self, snapshot: IndexSnapshot, pipeline: Pipeline, vector_error: str | None = None) -> None:
        self.snapshot = snapshot
        self.pipeline = pipeline
        self.generation: str = snapshot.generation
        self.users = 0
        self.retired = False
        self.closed = False
        self.vector_error = vector_error
        self.retry_at = 0.0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.snapshot.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.exception("closing generation %s failed", self.generation)


class SearchService:
    """Search one index for the app.

    Args:
        index_name: the index under ``<root>/indexes/``.
        root: ViRanker home (default ``$VIRANKER_HOME`` or ``./var``).
        embedder: query embedder name when the manifest does not record one (default ``"e5-small"``).
        default_reranker: reranker used by :attr:`default_pipeline` when available (``hybrid+viranker``).
        check_interval: seconds between checks of ``CURRENT``.
        pipeline_kwargs: passed to :class:`~search.pipeline.Pipeline` (``depth``, ``rerank_top``, ``fusion``...).
        reranker_loader: ``name -> Reranker`` (default ``reranker.backends.load_reranker``); tests inject fakes.
        embedder_loader: ``name -> Embedder`` (default ``indexing.embedders.load_embedder``).
        vector_retry_s: seconds between background attempts to re-open an unavailable vector store.
    """

    def __init__(
        self,
        index_name: str,
        root: str | os.PathLike[str] | None = None,
        embedder: str = "e5-small",
        default_reranker: str | None = "viranker",
        *,
        check_interval: float = 1.0,
        pipeline_kwargs: dict[str, Any] | None = None,
        reranker_loader: Callable[[str], Reranker] | None = None,
        embedder_loader: Callable[[str], Embedder] | None = None,
        vector_retry_s: float = 30.0,
    ) -> None:
        from indexing import settings

        self.index_name = settings.validate_index_name(index_name)
        self.root = root
        self.index_dir = settings.index_dir(index_name, root)
        self.embedder_name = embedder
        self.default_reranker = default_reranker
        self.check_interval = check_interval
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self._reranker_loader = reranker_loader
        self._embedder_loader = embedder_loader
        self._lock = threading.RLock()
        self._state: _State | None = None
        self._checked = 0.0
        self._embedders: dict[tuple[str, str], LazyEmbedder] = {}
        self._rerankers: dict[str, _LockedReranker] = {}
        self._reranker_errors: dict[str, str] = {}
        self._recommendation: dict[str, bool] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._closed = False
        self.vector_retry_s = vector_retry_s
        self._retrying = False

    # ------------------------------------------------------------------------------------------ state
    def _embedder_for(self, manifest: dict[str, Any]) -> LazyEmbedder | None:
        """The (lazily loaded) query embedder of a generation's vectors, shared across generations."""
        info = manifest.get("embedder") or {}
        if not info or not manifest.get("vectors"):
            return None
        name = info.get("name") or self.embedder_name
        key = (name, info["model_id"])
        if key not in self._embedders:
            self._embedders[key] = LazyEmbedder(name, info["model_id"], int(info["dim"]), self._embedder_loader)
        return self._embedders[key]

    def _open(self, fallback: bool = True) -> _State:
        """Open CURRENT; when its vector store is unavailable and ``fallback``, open it BM25-only."""
        from indexing.build import open_generation
        from indexing.vectors import VectorStoreUnavailable

        vector_error = None
        try:
            snapshot = open_generation(self.index_name, root=self.root)
        except VectorStoreUnavailable as err:
            if not fallback:
                raise
            log.warning("vectors of index %s unavailable, serving BM25 only: %s", self.index_name, err)
            snapshot = open_generation(self.index_name, root=self.root, vectors=False)
            vector_error = str(err)
        try:
            embedder = self._embedder_for(snapshot.manifest) if vector_error is None else None
            pipeline = Pipeline.from_snapshot(snapshot, embedder, rerankers=self._get_reranker,
                                              **self.pipeline_kwargs)
        except BaseException:
            snapshot.close()
            raise
        log.info("opened %s generation %s", self.index_name, snapshot.generation)
        state = _State(snapshot, pipeline, vector_error)
        state.retry_at = time.monotonic() + self.vector_retry_s
        return state

    def _degrade(self, state: _State, err: Exception) -> None:
        """Mark ``state`` BM25-only after its vector store failed. Caller holds ``_lock``."""
        if state.vector_error is None:
            log.warning("vector store of %s failed, serving BM25 only: %s", self.index_name, err)
            state.vector_error = str(err)
            state.retry_at = time.monotonic() + self.vector_retry_s

    def _maybe_retry_vectors(self, state: _State) -> None:
        """Start a background re-open of a BM25-only state when its retry time came. Caller holds ``_lock``."""
        if state.vector_error is None or self._retrying or time.monotonic() < state.retry_at:
            return
        state.retry_at = time.monotonic() + self.vector_retry_s
        self._retrying = True
        threading.Thread(target=self._retry_vectors, args=(state,), daemon=True,
                         name=f"viranker-vectors-{self.index_name}").start()

    def _retry_vectors(self, state: _State) -> None:
        """Re-open the generation with its vectors; on success it replaces the BM25-only ``state``."""
        try:
            new = self._open(fallback=False)
        except Exception as err:  # noqa: BLE001 - still down: keep serving BM25, try again later
            log.info("vector store of %s still unavailable: %s", self.index_name, err)
            with self._lock:
                self._retrying = False
            return
        with self._lock:
            self._retrying = False
            if self._closed or self._state is not state or new.generation != state.generation:
                new.close()
                return
            self._state = new
            state.retired = True
            if state.users == 0:
                state.close()
        log.info("vector store of %s is back; dense pipelines re-enabled", self.index_name)

    def _current_state(self) -> _State:
        """The state for the generation in CURRENT (re-opened when it changed). Caller holds ``_lock``."""
        from indexing import generations as gens

        if self._closed:
            raise ServiceError("the search service is closed")
        now = time.monotonic()
        if self._state is not None and now - self._checked < self.check_interval:
            return self._state
        self._checked = now
        current = gens.current(self.index_dir)
        if current is None:
            if self._state is not None:
                return self._state  # CURRENT vanished (manual edit): keep serving what is open
            raise ServiceError(f"index {self.index_name!r} has no built generation yet in {self.index_dir}; "
                               "build it first (python -m indexing build ...)")
        if self._state is None or self._state.generation != current:
            new = self._open()
            old, self._state = self._state, new
            if old is not None:
                old.retired = True
                if old.users == 0:
                    old.close()
        return self._state

    @contextmanager
    def _lease(self):
        with self._lock:
            state = self._current_state()
            self._maybe_retry_vectors(state)
            state.users += 1
        try:
            yield state
        finally:
            with self._lock:
                state.users -= 1
                if state.retired and state.users == 0:
                    state.close()

    def refresh(self) -> str:
        """Check ``CURRENT`` now (re-opening if it changed) → the serving generation's name."""
        with self._lock:
            self._checked = 0.0
            return self._current_state().generation

    # -------------------------------------------------------------------------------------- models
    def _get_reranker(self, name: str) -> _LockedReranker:
        with self._lock:
            if name in self._rerankers:
                return self._rerankers[name]
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per model even when several requests ask at once
            with self._lock:
                if name in self._rerankers:
                    return self._rerankers[name]
            loader = self._reranker_loader
            if loader is None:
                from reranker.backends import load_reranker as loader
            from reranker.availability import status_from_error
            try:
                model = loader(name)
            except Exception as err:
                with self._lock:
                    self._reranker_errors[name] = status_from_error(err, name)  # keeps the reason's code
                raise
            with self._lock:
                self._reranker_errors.pop(name, None)
                return self._rerankers.setdefault(name, _LockedReranker(model))

    def add_reranker(self, name: str, model: Reranker) -> None:
        """Serve an already loaded reranker as ``name`` (``<first stage>+<name>`` pipelines; its status reads
        ``loaded``), e.g. one an analyst loaded from a model dir in the app; replaces a model of that name."""
        parse_pipeline(f"bm25+{name}")  # ValueError for a name no pipeline can carry
        with self._lock:
            self._rerankers[name] = _LockedReranker(model)
            self._reranker_errors.pop(name, None)

    def reranker_status(self) -> dict[str, str]:
        """``{name: "loaded" | "available: <dir>" | "unavailable: <reason>. <fix>"}`` (loads nothing)."""
        try:
            from reranker.backends import available_rerankers

            status = available_rerankers() if self._reranker_loader is None else {}
        except ImportError as err:  # pragma: no cover - reranker package missing
            status = {"viranker": f"unavailable: reranker package not importable ({err})"}
        with self._lock:
            for name in self._rerankers:
                status[name] = "loaded"
            status.update(self._reranker_errors)  # RerankerStatus: "unavailable: <reason>. <fix>" + code
        return status

    # ------------------------------------------------------------------------------------------- API
    @property
    def default_pipeline(self) -> str:
        """``hybrid+<default_reranker>`` when that reranker is available, recommended by its model
        (:func:`reranker.backends.recommended_by_default`) and the index has vectors; else the best first stage
        the index supports."""
        names = self.pipelines()
        reranker = self.default_reranker if f"hybrid+{self.default_reranker}" in names else None
        return default_pipeline_for(names, reranker, self._recommended)

    def _recommended(self, name: str) -> bool:
        """Whether reranker ``name`` recommends itself as the default (read once: model dirs do not change
        while serving); injected rerankers (tests, custom setups) are trusted."""
        if self._reranker_loader is not None:
            return True
        if name not in self._recommendation:
            from reranker.backends import recommended_by_default

            self._recommendation[name] = recommended_by_default(name)
        return self._recommendation[name]

    def pipelines(self) -> list[str]:
        """Pipeline names usable now: first stages the index supports, and ``+<reranker>`` for rerankers that
        are loaded or whose weights are present."""
        with self._lease() as state:
            first = state.pipeline.pipelines() if state.vector_error is None else ["bm25"]
        rerankers = [n for n, s in self.reranker_status().items() if s.startswith(("loaded", "available"))]
        return first + [f"{f}+{r}" for f in first for r in rerankers]

    def query_embedders(self) -> list[Embedder]:
        """The query embedders loaded so far (the real ones behind each generation's :class:`LazyEmbedder`)."""
        return [e.get() for e in list(self._embedders.values()) if e.loaded]

    def search(
        self, query: str, pipeline: str | None = None, top_k: int = 10, *, as_typed: bool = False
    ) -> SearchResult:
        """Search the current generation. Raises ``QueryError`` (bad query), ValueError (unknown pipeline),
        :class:`ServiceError` (no index; :class:`VectorsUnavailable`: no vectors), ``ModelUnavailable`` /
        ``EmbedderUnavailable``."""
        pipeline = pipeline or self.default_pipeline
        parse_pipeline(pipeline)
        with self._lease() as state:
            return self._search_on(state, query, pipeline, top_k, as_typed)

    def _search_on(self, state: _State, query: str, pipeline: str, top_k: int, as_typed: bool) -> SearchResult:
        """One search on a leased state; vector-store failures become :class:`VectorStoreDown`."""
        from indexing.vectors import VectorStoreUnavailable

        def unavailable(reason: str) -> VectorStoreDown:
            return VectorStoreDown(f"pipeline {pipeline!r} needs vectors, but the vector store is unavailable "
                                   f"({reason}); BM25 keeps serving: use the bm25 pipeline meanwhile",
                                   pipeline, reason)

        if parse_pipeline(pipeline)[0] != "bm25" and state.vector_error is not None:
            raise unavailable(state.vector_error)
        try:
            return state.pipeline.search(query, pipeline, top_k, as_typed=as_typed)
        except VectorStoreUnavailable as err:
            with self._lock:
                self._degrade(state, err)
            raise unavailable(str(err)) from err

    def compare(
        self, query: str, pipelines: Sequence[str], top_k: int = 10, *, as_typed: bool = False
    ) -> dict[str, SearchResult | Exception]:
        """Run ``query`` through each pipeline on the same generation → ``{pipeline: result or the error}``
        (a bad query raises ``QueryError`` once instead)."""
        out: dict[str, SearchResult | Exception] = {}
        with self._lease() as state:
            state.pipeline.prepare(query, as_typed)  # QueryError for everyone at once
            for name in pipelines:
                try:
                    out[name] = self._search_on(state, query, name, top_k, as_typed)
                except QueryError:
                    raise
                except Exception as err:  # noqa: BLE001 - one failing pipeline must not hide the others
                    out[name] = err
        return out

    def status(self) -> dict[str, Any]:
        """Index, generation, counts, embedder and reranker availability (for the Admin tab)."""
        info: dict[str, Any] = {"index": self.index_name, "index_dir": str(self.index_dir)}
        try:
            with self._lease() as state:
                manifest = state.snapshot.manifest
                info.update({
                    "generation": state.generation,
                    "counts": manifest.get("counts"),
                    "created": manifest.get("created"),
                    "embedder": manifest.get("embedder"),
                    "embedder_loaded": bool(state.pipeline.embedder is not None and state.pipeline.embedder.loaded),
                    "pipelines": state.pipeline.pipelines() if state.vector_error is None else ["bm25"],
                    "restorer": repr(state.pipeline.restorer),
                    "vector_error": state.vector_error,
                })
        except ServiceError as err:
            info["error"] = str(err)
        info["rerankers"] = self.reranker_status()
        return info

    @property
    def generation(self) -> str | None:
        """The generation being served (None before the first search / when no index exists)."""
        with self._lock:
            return self._state.generation if self._state is not None else None

    def close(self) -> None:
        """Close the open generation (its Qdrant client); the service cannot be used afterwards."""
        with self._lock:
            self._closed = True
            if self._state is not None:
                self._state.retired = True
                if self._state.users == 0:
                    self._state.close()
                self._state = None

    def __enter__(self) -> SearchService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SearchService(index={self.index_name!r}, generation={self.generation!r}, root={str(self.root)!r})"
