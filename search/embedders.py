"""Re-export of :mod:`indexing.embedders` (embedders moved to the ground floor: indexing builds vectors with them,
and nothing in indexing may import search). New code imports ``indexing.embedders``."""

from __future__ import annotations

from indexing.embedders import (
    BGE_M3_ENV,
    BGE_M3_HUB_ID,
    DEFAULT_EMBEDDER,
    EMBEDDER_NAMES,
    MIN_VOCAB_SIZE,
    BGEM3Embedder,
    E5SmallEmbedder,
    Embedder,
    EmbedderMismatch,
    EmbedderUnavailable,
    LazyEmbedder,
    PassageEmbedder,
    SentenceTransformerEmbedder,
    e5_small_model_id,
    l2_normalize,
    load_embedder,
    same_model,
)

__all__ = [
    "BGE_M3_ENV",
    "BGE_M3_HUB_ID",
    "DEFAULT_EMBEDDER",
    "EMBEDDER_NAMES",
    "MIN_VOCAB_SIZE",
    "BGEM3Embedder",
    "E5SmallEmbedder",
    "Embedder",
    "EmbedderMismatch",
    "EmbedderUnavailable",
    "LazyEmbedder",
    "PassageEmbedder",
    "SentenceTransformerEmbedder",
    "e5_small_model_id",
    "l2_normalize",
    "load_embedder",
    "same_model",
]
