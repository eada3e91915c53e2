"""Dense vectors in the Qdrant engine run in-process (``qdrant-edge-py``): the embedded default.

``qdrant-edge-py`` is the Qdrant server's own segment / WAL / HNSW code (Rust) behind a Python binding, with
no server and no background threads. Compared with ``qdrant-client``'s local mode (pure Python, every point
unpickled into memory on open, one SQLite transaction per point) it opens a collection by mapping its segment
files, upserts in batches through its write-ahead log and scans vectors with SIMD (numbers in
docs/scaling.md).

Layout: a vector path holds one *shard* directory per collection, ``<path>/<collection>/`` (with
``edge_config.json``, ``segments/``, ``wal/``), so the same path and collection names as local mode work
(the build's ``qdrant/`` + ``passages``). Points, ids (``uuid5`` of the passage id) and payloads
(``{"pid", "doc_id", "title"}``) are those of :class:`indexing.vectors.VectorStore`.

Search: a freshly written shard has plain (unindexed) segments, and every query is an **exact** scan of them;
:meth:`EdgeVectorStore.optimize` runs Qdrant's optimizers in-process, which build an HNSW graph for segments
above the indexing threshold (queries then use HNSW there and exact search elsewhere). The build does not
call it: exact search is fast enough at 10^5 passages (docs/scaling.md), and HNSW at that size costs minutes of
CPU. Edge also supports scalar / product / binary quantization, not used here.

Concurrency: the WAL is locked by the process that loads the shard, so, as in local mode, one process per
path; a second load raises :class:`VectorStoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from indexing.vectors import VectorStore, VectorStoreUnavailable, point_id

__all__ = ["EdgeVectorStore", "EDGE_CONFIG_FILE", "HNSW_M", "HNSW_EF_CONSTRUCT"]

EDGE_CONFIG_FILE = "edge_config.json"
HNSW_M = 16  # Qdrant's defaults
HNSW_EF_CONSTRUCT = 100


def _edge() -> Any:
    """The ``qdrant_edge`` module, or :class:`VectorStoreUnavailable` saying how to install it."""
    try:
        import qdrant_edge
    except ImportError as err:
        raise VectorStoreUnavailable(
            f"the qdrant-edge-py package is not importable ({err}): pip install qdrant-edge-py==0.9.0, "
            "or set VIRANKER_VECTOR_ENGINE=local to use qdrant-client's local mode"
        ) from err
    return qdrant_edge


class EdgeVectorStore(VectorStore):
    """One collection as a ``qdrant_edge.EdgeShard`` under ``<path>/<collection>/``.

    Open with :meth:`VectorStore.open` (a path; the engine is chosen there) or :meth:`open_path`.
    """

    engine = "qdrant-edge"

    def __init__(self, path: Path, collection: str, shard: Any | None) -> None:
        super().__init__(None, collection, str(path), "local")
        self.shard_dir = path / collection
        self._shard = shard

    @classmethod
    def open_path(cls, path: str | Path, collection: str = "passages") -> EdgeVectorStore:
        """Open (or prepare) ``collection`` under ``path``; an existing shard is loaded now, so a shard
        held by another process raises :class:`VectorStoreUnavailable` here, as local mode does."""
        qe = _edge()
        path = Path(path)
        if "/" in collection or collection in ("", ".", ".."):
            raise ValueError(f"invalid collection name {collection!r}")
        path.mkdir(parents=True, exist_ok=True)
        shard_dir = path / collection
        shard = None
        if (shard_dir / EDGE_CONFIG_FILE).is_file():
            try:
                shard = qe.EdgeShard.load(str(shard_dir))
            except Exception as err:  # noqa: BLE001 - the binding raises bare Exception for every failure
                raise VectorStoreUnavailable(
                    f"Qdrant edge shard {shard_dir} cannot be opened: in use by another process (one process "
                    f"per path) or unreadable ({str(err).strip()[:300]}). Use a Qdrant server (QDRANT_URL) to "
                    "share vectors between processes."
                ) from err
        return cls(path, collection, shard)

    # ---- collection
    def exists(self) -> bool:
        """True when the shard exists (it was created or loaded)."""
        return self._shard is not None

    def create(
        self, dim: int, *, recreate: bool = False, indexing_threshold_kb: int | None = None,
        indexing_threads: int = 0,
    ) -> None:
        """Create the shard (cosine, ``dim``); ``recreate`` drops an existing one first.

        An existing shard of another size raises ValueError unless ``recreate``. ``indexing_threshold_kb``:
        segments above this many KB of vectors get an HNSW graph when :meth:`optimize` runs (None: Qdrant's
        default, 10,000 KB ≈ 6.5k vectors of 384 floats); ``indexing_threads``: threads for that build
        (0 = all cores).
        """
        qe = _edge()
        if self.exists():
            if not recreate:
                if self.dim != dim:
                    raise ValueError(f"collection {self.collection!r} has dim {self.dim}, not {dim}")
                return
            self.delete_collection()
        shutil.rmtree(self.shard_dir, ignore_errors=True)  # leftovers of a create that died half-way
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=int(dim), distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000,
                                           max_indexing_threads=int(indexing_threads)),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb),
        )
        self._shard = qe.EdgeShard.create(str(self.shard_dir), config)

    @property
    def dim(self) -> int:
        """Vector size of the collection (from the shard's ``edge_config.json``)."""
        config = json.loads((self.shard_dir / EDGE_CONFIG_FILE).read_text(encoding="utf-8"))
        return int(config["vectors"][""]["size"])

    def delete_collection(self) -> None:
        """Close and remove the shard directory (no error when absent)."""
        self.close()
        shutil.rmtree(self.shard_dir, ignore_errors=True)

    # ---- engine primitives
    def _live(self) -> Any:
        if self._shard is None:
            raise ValueError(f"collection {self.collection!r} does not exist in {self.location}; create() it first")
        return self._shard

    def _write(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        qe = _edge()
        rows = vectors.tolist()
        points = [qe.Point(point_id(pid), rows[i], payloads[i]) for i, pid in enumerate(ids)]
        self._live().update(qe.UpdateOperation.upsert_points(points))

    def _delete(self, point_ids: list[str]) -> None:
        self._live().update(_edge().UpdateOperation.delete_points(point_ids))

    def _flush(self) -> None:
        """Write the segments to disk (the WAL already holds every update; this bounds its replay)."""
        self._live().flush()

    def _request(self, vector: np.ndarray, k: int) -> Any:
        qe = _edge()
        return qe.QueryRequest(limit=k, query=qe.Query.Nearest(vector.tolist()), with_payload=["pid"])

    def _query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        return [(p.payload["pid"], float(p.score)) for p in self._live().query(self._request(vector, k))]

    def _query_many(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        batch = _edge().QueryBatchRequest([self._request(v, k) for v in vectors])
        return [[(p.payload["pid"], float(p.score)) for p in r] for r in self._live().query_batch(batch)]

    def _retrieve(self, point_ids: list[str]) -> list[tuple[str, np.ndarray]]:
        recs = self._live().retrieve(point_ids, with_payload=["pid"], with_vector=True)
        return [(r.payload["pid"], np.asarray(r.vector, dtype=np.float32)) for r in recs]

    # ---- state
    def count(self) -> int:
        """Exact number of points in the collection."""
        return int(self._live().count(_edge().CountRequest(exact=True)))

    def index_status(self) -> dict[str, Any]:
        """``{"engine", "points", "indexed", "search"}``: ``search`` is ``"hnsw"`` once every point is in an
        HNSW graph, ``"exact"`` while none is, ``"mixed"`` in between."""
        if self._shard is None:
            return {"engine": self.engine, "points": 0, "indexed": 0, "search": "exact"}
        info = self._shard.info()
        points, indexed = int(info.points_count), int(info.indexed_vectors_count)
        search = "exact" if indexed == 0 else "hnsw" if indexed >= points else "mixed"
        return {"engine": self.engine, "points": points, "indexed": indexed, "search": search}

    def optimize(self) -> bool:
        """Run Qdrant's segment optimizers now (blocking; merges segments, builds HNSW above the indexing
        threshold, vacuums deletions) → True when a segment changed. Minutes of CPU at 10^5 points."""
        return bool(self._live().optimize())

    def close(self) -> None:
        """Flush and release the shard (and its WAL lock); closing twice is harmless."""
        shard, self._shard = self._shard, None
        if shard is not None:
            with contextlib.suppress(Exception):
                shard.flush()
            with contextlib.suppress(Exception):
                shard.close()
