"""Copy-on-write edits of an index: :func:`add_passages` / :func:`delete_passages` write a new generation (the
current passages plus / minus the change) through :func:`indexing.build.build_generation`, one shared
:func:`_rebuild_current`; :func:`current_passages` / :func:`current_manifest` read what is served now."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from indexing import generations as gens
from indexing.bm25 import DEFAULT_EXACT_BOOST
from indexing.build import build_generation
from indexing.embedders import PassageEmbedder
from indexing.passages import Passage, iter_passages
from indexing.stages import PASSAGES_FILE, BuildError, ProgressCallback, check_passages, index_dir_of

__all__ = ["add_passages", "delete_passages", "current_passages", "current_manifest"]


def current_passages(index_name: str, root: str | os.PathLike[str] | None = None) -> list[Passage]:
    """Passages of the current generation (empty list when the index has none)."""
    path = gens.current_path(index_dir_of(index_name, root))
    if path is None:
        return []
    return list(iter_passages(path / PASSAGES_FILE))


def current_manifest(index_name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Manifest of the current generation, or None when the index has none."""
    index_dir = index_dir_of(index_name, root)
    gen = gens.current(index_dir)
    return gens.read_manifest(index_dir, gen) if gen else None


def _check_embedder(manifest: dict[str, Any] | None, embedder: PassageEmbedder | None) -> None:
    want = (manifest or {}).get("embedder")
    if want and embedder is None:
        raise BuildError(
            f"index has vectors from {want['model_id']!r}; pass the same embedder (e.g. --embedder "
            f"{want.get('name') or want['model_id']}) so new/changed passages get vectors"
        )
    if want and embedder is not None and str(embedder.model_id) != want["model_id"]:
        raise BuildError(
            f"index vectors come from {want['model_id']!r} but the embedder is {embedder.model_id!r}; "
            "use the same model, or rebuild the index with `build`"
        )


def _rebuild_current(
    index_name: str, passages: Sequence[Passage], embedder: PassageEmbedder | None,
    root: str | os.PathLike[str] | None, manifest: dict[str, Any] | None, *, operation: str,
    extra: dict[str, Any], progress: bool, progress_callback: ProgressCallback | None,
) -> dict[str, Any]:
    """A new generation of ``passages`` with the current one's BM25 settings and embedder name (the caller
    holds the index lock; ``build_generation`` takes it again, re-entrantly) → its manifest."""
    bm = (manifest or {}).get("bm25") or {}
    return build_generation(
        index_name,
        passages,
        embedder,
        root,
        progress,
        True,
        progress_callback=progress_callback,
        operation=operation,
        extra=extra,
        words="words" in bm.get("fields", []),
        bm25_k1=bm.get("K1", 1.2),
        bm25_b=bm.get("B", 0.75),
        exact_boost=bm.get("exact_boost", DEFAULT_EXACT_BOOST),
        embedder_name=((manifest or {}).get("embedder") or {}).get("name"),
    )


def add_passages(
    index_name: str,
    passages: Iterable[Passage],
    embedder: PassageEmbedder | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    lock_timeout: float | None = 0.0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """New generation = current passages + ``passages`` → its manifest.

    Ids that already exist (as passage or document ids) raise :class:`BuildError` unless ``replace=True``;
    then every old passage of a document in ``passages`` is replaced by the new version. When
    the index has vectors, ``embedder`` must be the same model (only new texts are embedded).
    """
    new = list(passages)
    check_passages(new)
    with gens.IndexLock(index_dir_of(index_name, root), timeout=lock_timeout):
        manifest = current_manifest(index_name, root)
        _check_embedder(manifest, embedder)
        old = current_passages(index_name, root)
        new_ids = {p.id for p in new}
        new_docs = {p.doc_id for p in new}
        clash = [p.id for p in old if p.id in new_ids or p.doc_id in new_docs]
        if clash and not replace:
            raise BuildError(
                f"{len(clash)} passage(s) of these documents already in index {index_name!r}: {clash[:10]}; "
                "use replace=True (--replace) to overwrite them"
            )
        merged = [p for p in old if p.id not in new_ids and p.doc_id not in new_docs] + new
        change = {
            "added": len(new),
            "removed_old_versions": len(clash),
            "replaced_documents": len({p.doc_id for p in old if p.doc_id in new_docs}),
        }
        return _rebuild_current(index_name, merged, embedder, root, manifest, operation="add",
                                extra={"change": change, **(extra or {})}, progress=progress,
                                progress_callback=progress_callback)


def delete_passages(
    index_name: str,
    ids: Iterable[str],
    embedder: PassageEmbedder | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    missing_ok: bool = False,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    lock_timeout: float | None = 0.0,
) -> dict[str, Any]:
    """New generation = current passages minus ``ids`` → its manifest.

    Each id may be a passage id or a document id (then all its passages go). Ids matching nothing raise
    KeyError unless ``missing_ok``. Vectors of the remaining passages come from the embedding cache, so
    ``embedder`` (the index's model) is only called for cache misses.
    """
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise ValueError("no ids to delete")
    with gens.IndexLock(index_dir_of(index_name, root), timeout=lock_timeout):
        manifest = current_manifest(index_name, root)
        if manifest is None:
            raise BuildError(f"index {index_name!r} has no current generation")
        _check_embedder(manifest, embedder)
        old = current_passages(index_name, root)
        wanted_set = set(wanted)
        matched = {i for p in old for i in (p.id, p.doc_id) if i in wanted_set}
        unknown = [i for i in wanted if i not in matched]
        if unknown and not missing_ok:
            raise KeyError(
                f"not in index {index_name!r}: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}"
            )
        kept = [p for p in old if p.id not in wanted_set and p.doc_id not in wanted_set]
        change = {"deleted": len(old) - len(kept), "unknown_ids": unknown[:100]}
        return _rebuild_current(index_name, kept, embedder, root, manifest, operation="delete",
                                extra={"change": change}, progress=progress, progress_callback=progress_callback)
