"""Copy-on-write edits of an index: :func:`add_passages` / :func:`delete_passages` write a new generation (the
current passages plus / minus the change) and swap ``CURRENT``.

By default the change is incremental (:func:`indexing.delta.apply_change`: the current generation copied
cheaply and changed by the k passages, time ∝ k); ``incremental=False`` — and vectors on a Qdrant server —
rebuild the whole generation through :func:`indexing.build.build_generation` (one shared
:func:`_rebuild_current`; vectors from the embedding cache). Both give the same index.
:func:`current_passages` / :func:`current_manifest` read what is served now."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from indexing import generations as gens
from indexing.bm25 import DEFAULT_EXACT_BOOST, BM25Index
from indexing.build import build_generation
from indexing.delta import apply_change, incremental_possible
from indexing.embedders import PassageEmbedder
from indexing.passages import Passage, iter_passages
from indexing.stages import (
    BM25_DIR,
    PASSAGES_FILE,
    BuildError,
    Progress,
    ProgressCallback,
    check_passages,
    index_dir_of,
)

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


def _incremental_parent(index_name: str, root: str | os.PathLike[str] | None,
                        manifest: dict[str, Any] | None, incremental: bool) -> Path | None:
    """The current generation's directory when the change can be incremental, else None (rebuild)."""
    if not incremental or manifest is None:
        return None
    path = gens.current_path(index_dir_of(index_name, root))
    return path if incremental_possible(manifest, path) else None


def _find(parent: Path, manifest: dict[str, Any], ids: set[str], doc_ids: set[str]) -> list[Passage]:
    """Current passages with one of ``ids`` or ``doc_ids`` (term lookups in the generation's BM25 index)."""
    with BM25Index.open(parent / manifest.get("bm25", {}).get("path", BM25_DIR)) as bm:
        return bm.find(ids=ids, doc_ids=doc_ids)


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
    incremental: bool = True,
) -> dict[str, Any]:
    """New generation = current passages + ``passages`` → its manifest.

    Ids that already exist (as passage or document ids) raise :class:`BuildError` unless ``replace=True``;
    then every old passage of a document in ``passages`` is replaced by the new version. When
    the index has vectors, ``embedder`` must be the same model (only new texts are embedded).
    ``incremental=False`` rebuilds the generation instead of changing a copy of the current one.
    """
    new = list(passages)
    check_passages(new)
    with gens.IndexLock(index_dir_of(index_name, root), timeout=lock_timeout):
        manifest = current_manifest(index_name, root)
        _check_embedder(manifest, embedder)
        new_ids = {p.id for p in new}
        new_docs = {p.doc_id for p in new}
        parent = _incremental_parent(index_name, root, manifest, incremental)
        if parent is not None:
            old = _find(parent, manifest or {}, new_ids, new_docs)
        else:
            old = current_passages(index_name, root)
        clash = [p for p in old if p.id in new_ids or p.doc_id in new_docs]
        if clash and not replace:
            raise BuildError(
                f"{len(clash)} passage(s) of these documents already in index {index_name!r}: "
                f"{[p.id for p in clash[:10]]}; use replace=True (--replace) to overwrite them"
            )
        change = {
            "added": len(new),
            "removed_old_versions": len(clash),
            "replaced_documents": len({p.doc_id for p in old if p.doc_id in new_docs}),
        }
        if parent is not None:
            return apply_change(index_name, root, manifest or {}, added=new, removed=clash, embedder=embedder,
                                operation="add", extra={"change": change, **(extra or {})}, progress=progress,
                                report=Progress(progress_callback))
        merged = [p for p in old if p.id not in new_ids and p.doc_id not in new_docs] + new
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
    incremental: bool = True,
) -> dict[str, Any]:
    """New generation = current passages minus ``ids`` → its manifest.

    Each id may be a passage id or a document id (then all its passages go). Ids matching nothing raise
    KeyError unless ``missing_ok``. Incrementally the remaining vectors are copied; with
    ``incremental=False`` (a rebuild) they come from the embedding cache, so ``embedder`` (the index's
    model) is only called for cache misses.
    """
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise ValueError("no ids to delete")
    with gens.IndexLock(index_dir_of(index_name, root), timeout=lock_timeout):
        manifest = current_manifest(index_name, root)
        if manifest is None:
            raise BuildError(f"index {index_name!r} has no current generation")
        _check_embedder(manifest, embedder)
        wanted_set = set(wanted)
        parent = _incremental_parent(index_name, root, manifest, incremental)
        if parent is not None:
            old = _find(parent, manifest, wanted_set, wanted_set)
        else:
            old = current_passages(index_name, root)
        matched = {i for p in old for i in (p.id, p.doc_id) if i in wanted_set}
        unknown = [i for i in wanted if i not in matched]
        if unknown and not missing_ok:
            raise KeyError(
                f"not in index {index_name!r}: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}"
            )
        if parent is not None:
            doomed = [p for p in old if p.id in wanted_set or p.doc_id in wanted_set]
            change = {"deleted": len(doomed), "unknown_ids": unknown[:100]}
            return apply_change(index_name, root, manifest, added=[], removed=doomed, embedder=embedder,
                                operation="delete", extra={"change": change}, progress=progress,
                                report=Progress(progress_callback))
        kept = [p for p in old if p.id not in wanted_set and p.doc_id not in wanted_set]
        change = {"deleted": len(old) - len(kept), "unknown_ids": unknown[:100]}
        return _rebuild_current(index_name, kept, embedder, root, manifest, operation="delete",
                                extra={"change": change}, progress=progress, progress_callback=progress_callback)
