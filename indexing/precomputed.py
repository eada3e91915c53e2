"""Vectors shipped with a dataset or the app (``<prefix>.npy`` + ``<prefix>.json``) that seed the embedding cache,
so a bundled corpus is not embedded again: :class:`PrecomputedVectors` (read, check, seed) and
:func:`save_precomputed` (write). Rows are keyed by passage id and, optionally, by the sha1 of the passage's
:func:`~indexing.stages.embedding_text`, so a passage whose text changed never gets a stale vector."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.embed_cache import EmbeddingCache, text_key
from indexing.passages import Passage
from indexing.stages import EMBEDDING_TEXT_RULE, BuildError, embedding_text

__all__ = ["PrecomputedVectors", "save_precomputed", "embedding_text", "EMBEDDING_TEXT_RULE"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecomputedVectors:
    """Vectors shipped with the app (e.g. ``assets/demo/e5-small.vectors.npy``) to seed the embedding cache.

    The metadata JSON next to the ``.npy`` holds ``model_id``, ``dim``, ``sha256`` (of the .npy file),
    ``ids`` (passage ids, one per row) and optionally ``text_sha1`` (``text_key(embedding_text(p))`` per
    row; rows whose passage text changed since are then skipped instead of seeding a stale vector).
    """

    vectors_path: Path
    ids: list[str]
    model_id: str
    sha256: str | None = None
    text_sha1: list[str] | None = None

    @classmethod
    def load(cls, meta_path: str | os.PathLike[str]) -> PrecomputedVectors:
        """Read the metadata JSON (paths in it are relative to its folder)."""
        meta_path = Path(meta_path)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key in ("vectors", "ids", "model_id"):
            if key not in meta:
                raise BuildError(f"{meta_path}: precomputed-vector metadata lacks {key!r}")
        return cls(
            vectors_path=(meta_path.parent / meta["vectors"]).resolve(),
            ids=[str(i) for i in meta["ids"]],
            model_id=str(meta["model_id"]),
            sha256=meta.get("sha256"),
            text_sha1=meta.get("text_sha1"),
        )

    def array(self) -> np.ndarray:
        """The vectors, after checking the sha256 and the row count."""
        if self.sha256:
            h = hashlib.sha256()
            with open(self.vectors_path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != self.sha256:
                raise BuildError(
                    f"{self.vectors_path}: sha256 {h.hexdigest()} does not match the metadata ({self.sha256}); "
                    "the file is corrupted or from another build"
                )
        arr = np.load(self.vectors_path, allow_pickle=False)
        if arr.ndim != 2 or arr.shape[0] != len(self.ids):
            raise BuildError(f"{self.vectors_path}: shape {arr.shape} does not match {len(self.ids)} ids")
        return np.asarray(arr, dtype=np.float32)

    def seed(self, cache: EmbeddingCache, passages: Sequence[Passage], model_id: str, dim: int) -> int:
        """Put the vectors of ``passages`` found here into ``cache`` → rows seeded (0 on model mismatch)."""
        if model_id != self.model_id:
            log.warning("precomputed vectors are for %r, not %r; ignoring them", self.model_id, model_id)
            return 0
        arr = self.array()
        if arr.shape[1] != dim:
            log.warning("precomputed vectors have dim %d, embedder has %d; ignoring them", arr.shape[1], dim)
            return 0
        row = {pid: i for i, pid in enumerate(self.ids)}
        texts: list[str] = []
        rows: list[int] = []
        for p in passages:
            i = row.get(p.id)
            if i is None:
                continue
            t = embedding_text(p)
            if self.text_sha1 is not None and self.text_sha1[i] != text_key(t):
                continue
            texts.append(t)
            rows.append(i)
        if texts:
            cache.put_many(model_id, texts, arr[rows])
        return len(texts)


def save_precomputed(
    prefix: str | os.PathLike[str], passages: Sequence[Passage], vectors: np.ndarray, model_id: str
) -> Path:
    """Write ``<prefix>.npy`` and ``<prefix>.json`` (see :class:`PrecomputedVectors`) → the JSON path."""
    prefix = Path(prefix)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(passages):
        raise ValueError("one vector per passage expected")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    npy = prefix.with_name(prefix.name + ".npy")
    np.save(npy, vectors, allow_pickle=False)
    meta = {
        "model_id": model_id,
        "dim": int(vectors.shape[1]),
        "vectors": npy.name,
        "sha256": hashlib.sha256(npy.read_bytes()).hexdigest(),
        "embedding_text": EMBEDDING_TEXT_RULE,
        "ids": [p.id for p in passages],
        "text_sha1": [text_key(embedding_text(p)) for p in passages],
    }
    out = prefix.with_name(prefix.name + ".json")
    out.write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
