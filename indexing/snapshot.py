"""The read side of an index: :func:`open_generation` → :class:`IndexSnapshot` (manifest, BM25, vectors), what
``search/service.py`` and the evaluation open."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexing import generations as gens
from indexing.bm25 import BM25Index
from indexing.stages import BM25_DIR, index_dir_of, open_vectors
from indexing.vectors import VectorStore

__all__ = ["IndexSnapshot", "open_generation"]


@dataclass
class IndexSnapshot:
    """One opened generation: its manifest, BM25 index, and (if built with an embedder) vector store."""

    index_name: str
    generation: str
    path: Path
    manifest: dict[str, Any]
    bm25: BM25Index
    vectors: VectorStore | None = None
    _watcher: gens.CurrentWatcher | None = field(default=None, repr=False)

    def is_stale(self) -> bool:
        """True when ``CURRENT`` now names another generation (re-open with :func:`open_generation`)."""
        return self._watcher is not None and self._watcher.changed()

    def close(self) -> None:
        """Close the BM25 searcher and release the Qdrant client / local path."""
        self.bm25.close()
        if self.vectors is not None:
            self.vectors.close()

    def __enter__(self) -> IndexSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_generation(
    index_name: str,
    root: str | os.PathLike[str] | None = None,
    generation: str | None = None,
    *,
    vectors: bool = True,
) -> IndexSnapshot:
    """Open the current (or the named, complete) generation for searching.

    Raises :class:`~indexing.generations.GenerationError` when the index has no complete generation.
    """
    index_dir = index_dir_of(index_name, root)
    watcher = gens.CurrentWatcher(index_dir)
    gen = generation or watcher.current
    if gen is None:
        raise gens.GenerationError(
            f"index {index_name!r} has no current generation in {index_dir}; build it first"
        )
    manifest = gens.read_manifest(index_dir, gen)
    if manifest is None:
        raise gens.GenerationError(f"generation {gen!r} of {index_name!r} is incomplete")
    gen_dir = gens.generation_path(index_dir, gen)
    bm = BM25Index.open(gen_dir / manifest.get("bm25", {}).get("path", BM25_DIR))
    vs = None
    if vectors and manifest.get("vectors"):
        try:
            vs = open_vectors(manifest["vectors"], gen_dir)
        except BaseException:
            bm.close()
            raise
    return IndexSnapshot(index_name, gen, gen_dir, manifest, bm, vs, watcher if generation is None else None)
