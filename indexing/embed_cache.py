"""Embedding cache: ``(model_id, sha1(normalized text)) → float32 vector`` in SQLite.

The database (default ``$VIRANKER_HOME/cache/embeddings.sqlite``) runs in WAL mode with a busy timeout, so
several processes (a builder, the app, a benchmark) can read and write it at once. Vectors are stored as
raw little-endian float32 bytes with their dimension; a row whose size does not match is treated as a miss.

Keys hash the text *as given*: callers pass normalized text (``Passage.text`` already is), and the same
string is what gets embedded, so a hit is always the vector of exactly that string.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from indexing import settings
from indexing.embedders import PassageEmbedder

# the old name of what indexing needs from an embedder (one Protocol, defined in indexing.embedders)
Embedder = PassageEmbedder

__all__ = ["Embedder", "EmbeddingCache", "text_key", "embed_with_cache"]


def text_key(text: str) -> str:
    """Cache key of one (normalized) text: hex sha1 of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id TEXT NOT NULL,
    key      TEXT NOT NULL,
    dim      INTEGER NOT NULL,
    vec      BLOB NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID
"""


class EmbeddingCache:
    """SQLite-backed vector cache; safe across processes (WAL) and threads (one connection per thread)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else settings.cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        con = self._con()
        with con:
            con.execute(_SCHEMA)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            self._local.con = con
        return con

    def get_many(self, model_id: str, texts: Sequence[str], dim: int | None = None) -> dict[int, np.ndarray]:
        """Cached vectors for ``texts`` → ``{index in texts: vector}`` (misses are absent).

        With ``dim`` given, rows of another dimension count as misses.
        """
        keys = [text_key(t) for t in texts]
        by_key: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            by_key.setdefault(k, []).append(i)
        found: dict[int, np.ndarray] = {}
        unique = list(by_key)
        con = self._con()
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = con.execute(
                f"SELECT key, dim, vec FROM embeddings WHERE model_id = ? AND key IN ({marks})",
                [model_id, *chunk],
            ).fetchall()
            for key, row_dim, blob in rows:
                if (dim is not None and row_dim != dim) or len(blob) != 4 * row_dim:
                    continue
                vec = np.frombuffer(blob, dtype="<f4")
                for i in by_key[key]:
                    found[i] = vec
        return found

    def put_many(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> int:
        """Store ``vectors[i]`` for ``texts[i]`` (replacing old rows) in one transaction → rows written."""
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"expected {len(texts)} vectors as a 2-d array, got shape {vectors.shape}")
        dim = int(vectors.shape[1])
        rows = [(model_id, text_key(t), dim, vectors[i].tobytes()) for i, t in enumerate(texts)]
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT OR REPLACE INTO embeddings (model_id, key, dim, vec) VALUES (?, ?, ?, ?)", rows
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(rows)

    def count(self, model_id: str | None = None) -> int:
        """Rows in the cache (for one model when ``model_id`` is given)."""
        con = self._con()
        if model_id is None:
            return int(con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        return int(
            con.execute("SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (model_id,)).fetchone()[0]
        )

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def embed_with_cache(
    embedder: PassageEmbedder,
    texts: Sequence[str],
    model_id: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    *,
    cache: EmbeddingCache | None = None,
    progress_callback: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """Vectors for ``texts`` → float32 ``(n, dim)``; only cache misses are embedded (each distinct text once).

    New vectors are stored after every batch, so an interrupted run resumes where it stopped. ``model_id``
    defaults to ``embedder.model_id``. ``progress`` shows a tqdm bar over the misses;
    ``progress_callback("embed", done, total)`` counts all texts (hits included).
    """
    model_id = model_id or embedder.model_id
    dim = int(embedder.dim)
    cache = cache if cache is not None else EmbeddingCache()
    n = len(texts)
    out = np.zeros((n, dim), dtype=np.float32)
    hits = cache.get_many(model_id, texts, dim=dim)
    for i, v in hits.items():
        out[i] = v
    # Distinct missing texts, each embedded once.
    todo: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if i not in hits:
            todo.setdefault(t, []).append(i)
    miss_texts = list(todo)
    done = n - sum(len(v) for v in todo.values())
    if progress_callback is not None:
        progress_callback("embed", done, n)
    bar = None
    if progress and miss_texts:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(miss_texts), desc=f"embed ({len(hits):,} cached)", unit="text", mininterval=1.0)
    try:
        for start in range(0, len(miss_texts), batch_size):
            batch = miss_texts[start : start + batch_size]
            vecs = np.asarray(embedder.encode_passages(list(batch)), dtype=np.float32)
            if vecs.shape != (len(batch), dim):
                raise ValueError(
                    f"embedder {model_id!r} returned shape {vecs.shape} for {len(batch)} texts (expected dim {dim})"
                )
            if not np.all(np.isfinite(vecs)):
                raise ValueError(f"embedder {model_id!r} returned non-finite values")
            cache.put_many(model_id, batch, vecs)
            for t, v in zip(batch, vecs, strict=True):
                for i in todo[t]:
                    out[i] = v
                done += len(todo[t])
            if bar is not None:
                bar.update(len(batch))
            if progress_callback is not None:
                progress_callback("embed", done, n)
    finally:
        if bar is not None:
            bar.close()
    return out
