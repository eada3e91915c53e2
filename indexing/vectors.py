"""Dense vectors in Qdrant: one collection per index generation, cosine distance.

``VectorStore.open(location, collection)`` takes

- a local directory → an embedded engine, no server; one process per path (each generation has its own
  ``qdrant/`` path, so builders and readers never share one). A path that already holds vectors is opened
  with the engine that wrote it; a new one gets ``settings.vector_engine()`` (``VIRANKER_VECTOR_ENGINE``):
  ``edge`` → :class:`indexing.vectors_edge.EdgeVectorStore` (the Qdrant engine in-process, default) or
  ``local`` → ``qdrant-client``'s pure-Python *local mode*,
- ``":memory:"`` → in-process, nothing on disk (tests),
- an ``http(s)://`` URL → a Qdrant server (``QDRANT_URL``; ``QDRANT_API_KEY`` is used when set). The server is
  probed once with a short timeout, so a dead URL fails fast with :class:`VectorStoreUnavailable`.

Memory, local mode and server go through the same ``qdrant_client.QdrantClient`` calls; the edge engine
overrides the engine primitives (``_write``, ``_delete``, ``_query``, ...) and shares the rest (validation,
batching, progress, payloads). Point ids are ``uuid5`` of the passage
id (Qdrant ids must be ints or UUIDs); the payload keeps ``{"pid", "doc_id", "title"}`` and searches return
``pid``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexing import settings

__all__ = ["VectorStore", "VectorStoreUnavailable", "VectorServerUnreachable", "point_id", "POINT_NAMESPACE",
           "is_url", "path_engine"]

# Fixed namespace: the same passage id always maps to the same point id.
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://viranker.local/passage")


class VectorStoreUnavailable(RuntimeError):
    """Qdrant cannot be used (server not answering, path locked by another process, bad location)."""


class VectorServerUnreachable(VectorStoreUnavailable):
    """The Qdrant server at ``url`` (credentials stripped) did not answer the probe; ``cause``: the transport
    error (``"<ErrorClass>: <message>"``)."""

    def __init__(self, message: str, url: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.cause = cause


def point_id(pid: str) -> str:
    """Passage id → Qdrant point id (UUID5 string)."""
    return str(uuid.uuid5(POINT_NAMESPACE, pid))


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for ``http://`` / ``https://`` locations (server mode)."""
    return isinstance(location, str) and location.lower().startswith(("http://", "https://"))


def path_engine(path: str | os.PathLike[str]) -> str | None:
    """The embedded engine whose files are in ``path``: ``"edge"``, ``"local"`` or None (empty / new path)."""
    path = Path(path)
    if (path / "meta.json").is_file() or (path / "collection").is_dir():
        return "local"
    if path.is_dir() and any((sub / "edge_config.json").is_file() for sub in path.iterdir() if sub.is_dir()):
        return "edge"
    return None


def _describe(location: str | os.PathLike[str]) -> str:
    return str(location) if not is_url(location) else str(location).split("@")[-1]


class VectorStore:
    """One Qdrant collection. Create with :meth:`open`; call :meth:`close` (or use ``with``) when done."""

    engine = "qdrant-client"

    def __init__(self, client: Any, collection: str, location: str, mode: str) -> None:
        self.client = client
        self.collection = collection
        self.location = location
        self.mode = mode  # "memory" | "local" | "server"

    # ---- opening
    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        collection: str = "passages",
        *,
        api_key: str | None = None,
        timeout: float = 5.0,
    ) -> VectorStore:
        """Open Qdrant at ``location`` (path, ``":memory:"`` or URL; None → ``$QDRANT_URL``).

        Server mode is probed with ``timeout`` seconds; failures raise :class:`VectorStoreUnavailable`
        with the URL and the cause. A local path already opened by another process also raises it.
        A path is opened with :func:`path_engine`'s engine, a new one with ``settings.vector_engine()``.
        """
        from qdrant_client import QdrantClient

        if location is None:
            location = settings.qdrant_url()
            if location is None:
                raise VectorStoreUnavailable("no vector location given and QDRANT_URL is not set")
        if is_url(location):
            url = str(location)
            key = api_key if api_key is not None else settings.qdrant_api_key()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "api key over insecure connection" etc.
                    client = QdrantClient(
                        url=url, api_key=key, timeout=max(1, int(round(timeout))), check_compatibility=False
                    )
                client.get_collections()
            except Exception as err:  # noqa: BLE001 - any transport error means "not reachable"
                cause = f"{type(err).__name__}: {str(err).strip()[:300]}"
                raise VectorServerUnreachable(
                    f"Qdrant server at {_describe(url)} is not reachable or not a Qdrant server "
                    f"(timeout {timeout:g}s; {cause}). "
                    "Start the server, fix QDRANT_URL/QDRANT_API_KEY, "
                    "or unset QDRANT_URL to use local mode.", _describe(url), cause
                ) from err
            return cls(client, collection, url, "server")
        if str(location) == ":memory:":
            return cls(QdrantClient(location=":memory:"), collection, ":memory:", "memory")
        path = Path(location)
        if (path_engine(path) or settings.vector_engine()) == "edge":
            from indexing.vectors_edge import EdgeVectorStore

            return EdgeVectorStore.open_path(path, collection)
        path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as err:
            raise VectorStoreUnavailable(
                f"Qdrant local storage {path} is in use by another process ({err}). Local mode allows one "
                "process per path; use a Qdrant server (QDRANT_URL) to share vectors between processes."
            ) from err
        return cls(client, collection, str(path), "local")

    # ---- collection
    def exists(self) -> bool:
        """True when the collection exists."""
        return bool(self.client.collection_exists(self.collection))

    def create(self, dim: int, *, recreate: bool = False) -> None:
        """Create the collection (cosine, ``dim``); ``recreate`` drops an existing one first.

        An existing collection of another size raises ValueError unless ``recreate``.
        """
        from qdrant_client import models

        if self.exists():
            if not recreate:
                have = self.dim
                if have != dim:
                    raise ValueError(f"collection {self.collection!r} has dim {have}, not {dim}")
                return
            self.client.delete_collection(self.collection)
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=int(dim), distance=models.Distance.COSINE),
        )

    @property
    def dim(self) -> int:
        """Vector size of the collection."""
        info = self.client.get_collection(self.collection)
        return int(info.config.params.vectors.size)

    def delete_collection(self) -> None:
        """Drop the collection (no error when absent)."""
        if self.exists():
            self.client.delete_collection(self.collection)

    # ---- writing
    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]] | None = None,
        *,
        batch_size: int = 256,
        progress: bool = False,
        progress_callback: Callable[[str, int, int], None] | None = None,
    ) -> int:
        """Insert or replace points for passage ``ids`` → number written.

        ``payloads[i]`` is merged into ``{"pid": ids[i]}`` (build passes ``doc_id`` and ``title``).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"expected {len(ids)} vectors as a 2-d array, got shape {vectors.shape}")
        if payloads is not None and len(payloads) != len(ids):
            raise ValueError("payloads must have one entry per id")
        n = len(ids)
        bar = None
        if progress and n:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="qdrant", unit="vector", mininterval=1.0)
        try:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                batch_ids = list(ids[start:stop])
                pls = [
                    {**(payloads[i] if payloads is not None else {}), "pid": ids[i]}
                    for i in range(start, stop)
                ]
                self._write(batch_ids, vectors[start:stop], pls)
                if bar is not None:
                    bar.update(stop - start)
                if progress_callback is not None:
                    progress_callback("vectors", stop, n)
        finally:
            if bar is not None:
                bar.close()
        self._flush()
        return n

    def delete(self, ids: Sequence[str]) -> None:
        """Remove points for passage ``ids`` (unknown ids are ignored)."""
        if ids:
            self._delete([point_id(p) for p in ids])
            self._flush()

    # ---- engine primitives (qdrant-client; EdgeVectorStore overrides them)
    def _write(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Upsert one batch: passage ids, float32 rows, full payloads (``pid`` included)."""
        from qdrant_client import models

        self.client.upsert(
            self.collection,
            points=models.Batch(ids=[point_id(p) for p in ids], vectors=vectors.tolist(), payloads=payloads),
            wait=True,
        )

    def _delete(self, point_ids: list[str]) -> None:
        from qdrant_client import models

        self.client.delete(self.collection, points_selector=models.PointIdsList(points=point_ids))

    def _flush(self) -> None:
        """Make the writes so far durable (qdrant-client commits every request itself)."""

    def _query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        res = self.client.query_points(self.collection, query=vector.tolist(), limit=k, with_payload=["pid"])
        return [(p.payload["pid"], float(p.score)) for p in res.points]

    def _query_many(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        from qdrant_client import models

        reqs = [models.QueryRequest(query=v.tolist(), limit=k, with_payload=["pid"]) for v in vectors]
        res = self.client.query_batch_points(self.collection, requests=reqs)
        return [[(p.payload["pid"], float(p.score)) for p in r.points] for r in res]

    def _retrieve(self, point_ids: list[str]) -> list[tuple[str, np.ndarray]]:
        pts = self.client.retrieve(self.collection, ids=point_ids, with_payload=["pid"], with_vectors=True)
        return [(p.payload["pid"], np.asarray(p.vector, dtype=np.float32)) for p in pts]

    # ---- reading
    def search(self, vector: np.ndarray | Sequence[float], k: int = 10) -> list[tuple[str, float]]:
        """Nearest ``k`` passages by cosine similarity → ``[(pid, score)]``, best first."""
        if k <= 0:
            return []
        try:
            return self._query(np.asarray(vector, dtype=np.float32).reshape(-1), k)
        except Exception as err:
            if (outage := self._server_outage(err)) is not None:
                raise outage from err
            raise

    def search_many(self, vectors: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """:meth:`search` for each row of ``vectors`` in one request."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0 or k <= 0:
            return [[] for _ in range(len(vectors))]
        try:
            return self._query_many(vectors, k)
        except Exception as err:
            if (outage := self._server_outage(err)) is not None:
                raise outage from err
            raise

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors for passage ``ids`` → ``{pid: vector}`` (missing ids absent)."""
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 256):
            for pid, vec in self._retrieve([point_id(p) for p in ids[start : start + 256]]):
                out[pid] = vec
        return out

    def count(self) -> int:
        """Exact number of points in the collection."""
        return int(self.client.count(self.collection, exact=True).count)

    def index_status(self) -> dict[str, Any]:
        """How searches run: ``{"engine", "points", "indexed", "search"}`` (``search``: ``"exact"`` scan,
        ``"hnsw"`` or ``"server"``). Local and memory mode always scan."""
        search = "server" if self.mode == "server" else "exact"
        points = self.count() if self.exists() else 0
        return {"engine": self.engine, "points": points, "indexed": 0, "search": search}

    def optimize(self) -> bool:
        """Build the ANN index where the engine needs it done in-process → True when something was built.
        A server indexes in the background itself; local mode has no index: both return False."""
        return False

    def _server_outage(self, err: Exception) -> VectorStoreUnavailable | None:
        """``err`` from a query → :class:`VectorStoreUnavailable` when a Qdrant server failed, else None."""
        from qdrant_client.http.exceptions import ApiException

        if self.mode != "server" or not isinstance(err, ApiException):
            return None
        return VectorStoreUnavailable(
            f"Qdrant server at {_describe(self.location)} failed to answer a query on collection "
            f"{self.collection!r} ({type(err).__name__}: {str(err).strip()[:300]})"
        )

    def close(self) -> None:
        """Release the client (and the local-mode path lock)."""
        with contextlib.suppress(Exception):  # closing twice / at interpreter exit is harmless
            self.client.close()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(mode={self.mode!r}, location={_describe(self.location)!r}, "
                f"collection={self.collection!r})")
