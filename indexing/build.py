"""Build index generations: passages → BM25 + Qdrant + manifest, then swap ``CURRENT``.

:func:`build_generation` is the one place that writes an index. Stages, each recorded in the generation's
``build_state.json`` so an interrupted build can be resumed:

1. ``passages`` — ``passages.jsonl`` (the source of truth for later add/delete/rebuilds),
2. ``bm25``     — the Whoosh index in ``bm25/``,
3. ``vectors``  — only with an embedder: vectors from the embedding cache (misses are embedded and cached
   batch by batch), upserted to Qdrant (``qdrant/`` local path, or collection ``<index>__<gen>`` on
   ``QDRANT_URL``),
4. ``restorer`` — the diacritic restorer (:mod:`indexing.restorer`, ``diacritics.npz``) learned from the
   passages, so the first query typed without diacritics does not pay for building it,
5. ``manifest.json`` (written last: the generation becomes complete), then ``CURRENT`` is swapped.

An exception anywhere before step 5 leaves ``CURRENT`` (and the serving generation) untouched. A rerun with
``resume=True`` picks up an incomplete generation built from the same passages and settings, skipping its
finished stages (and, thanks to the cache, already embedded texts); other incomplete generations are removed.
With vectors on a Qdrant server (``QDRANT_URL``), the server is probed first (a 2 s ``get_collections``,
:func:`indexing.stages.check_vector_target`): an unreachable one fails the build with
:class:`~indexing.vectors.VectorServerUnreachable` before the passage and BM25 stages.

:func:`add_passages` / :func:`delete_passages` are copy-on-write: a new generation, by default the current one
copied cheaply and changed by the k passages (:mod:`indexing.delta`, time ∝ k), or with ``incremental=False``
the current passages plus/minus the change through :func:`build_generation`.

Where each piece lives: the stage functions and the generation's file names in :mod:`indexing.stages`,
precomputed vectors in :mod:`indexing.precomputed`, add/delete in :mod:`indexing.edits`, the read side
(:func:`open_generation`) in :mod:`indexing.snapshot`; this module composes the build and re-exports them.
"""


from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from indexing import generations as gens
from indexing import settings
from indexing.bm25 import DEFAULT_EXACT_BOOST
from indexing.embed_cache import EmbeddingCache
from indexing.embedders import PassageEmbedder as Embedder
from indexing.passages import Passage
from indexing.precomputed import PrecomputedVectors, save_precomputed
from indexing.snapshot import IndexSnapshot, open_generation
from indexing.stages import (
    BM25_DIR,
    EMBEDDING_TEXT_RULE,
    LOCAL_COLLECTION,
    MANIFEST_FORMAT,
    PASSAGES_FILE,
    QDRANT_DIR,
    STATE_FILE,
    BuildError,
    Progress,
    ProgressCallback,
    StageRun,
    build_settings,
    check_passages,
    check_vector_target,
    embedding_text,
    fingerprint_of,
    index_dir_of,
    make_manifest,
    normalizer_info,
    open_vectors,
    read_state,
    stage_bm25,
    stage_passages,
    stage_restorer,
    stage_vectors,
    strip_credentials,  # noqa: F401 - re-exported (old import path)
    vector_target,
    write_state,
)
from indexing.vectors import VectorStoreUnavailable

__all__ = [
    "BuildError",
    "PrecomputedVectors",
    "IndexSnapshot",
    "EMBEDDING_TEXT_RULE",
    "embedding_text",
    "build_generation",
    "open_generation",
    "drop_generation",
    "cleanup",
    "normalizer_info",
    "save_precomputed",
    # file names of a generation (indexing.stages)
    "MANIFEST_FORMAT",
    "STATE_FILE",
    "PASSAGES_FILE",
    "BM25_DIR",
    "QDRANT_DIR",
    "LOCAL_COLLECTION",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- build
def build_generation(
    index_name: str,
    passages: Iterable[Passage],
    embedder: Embedder | None = None,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    resume: bool = True,
    *,
    precomputed: PrecomputedVectors | None = None,
    progress_callback: ProgressCallback | None = None,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    words: bool = False,
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
    exact_boost: float = DEFAULT_EXACT_BOOST,
    keep: int | None = 5,
    lock_timeout: float | None = 0.0,
    operation: str = "build",
    extra: dict[str, Any] | None = None,
    embedder_name: str | None = None,
) -> dict[str, Any]:
    """Write a complete generation of ``index_name`` from ``passages`` and make it current → its manifest.

    ``root`` is the ViRanker home (default ``settings.home()``); the index lives in
    ``<root>/indexes/<index_name>``. ``embedder`` (``.model_id``, ``.dim``, ``.encode_passages``) adds
    vectors; None builds BM25 only. ``precomputed`` seeds the embedding cache first. ``keep`` prunes complete
    generations beyond the newest ``keep`` after the swap (None keeps all). ``lock_timeout`` is how long to
    wait for another builder of the same index (:class:`~indexing.generations.IndexBusy` after that).
    ``extra`` is merged into the manifest (e.g. the ingest report). ``embedder_name`` (default
    ``embedder.name`` if it has one) is recorded so that add/delete can load the same embedder. Progress: tqdm bars when ``progress``,
    and ``progress_callback(stage, done, total)`` for stages ``passages``, ``bm25``, ``embed``,
    ``vectors``, ``hnsw`` (builds of at least :func:`indexing.settings.hnsw_min_passages` passages),
    ``manifest``.
    """
    t_start = time.perf_counter()
    passages = list(passages)
    check_passages(passages)
    report = Progress(progress_callback)
    index_dir = index_dir_of(index_name, root)
    index_dir.mkdir(parents=True, exist_ok=True)
    embed_info = None
    if embedder is not None:
        embed_info = {
            "model_id": str(embedder.model_id),
            "dim": int(embedder.dim),
            "name": embedder_name or getattr(embedder, "name", None),
        }
    build_settings_ = build_settings(embed_info, words=words, k1=bm25_k1, b=bm25_b, exact_boost=exact_boost)
    fingerprint, passages_sha = fingerprint_of(passages, build_settings_)

    with gens.IndexLock(index_dir, timeout=lock_timeout):
        gen, gen_dir, state = _pick_generation(index_name, index_dir, root, fingerprint, resume)
        run = StageRun(gen_dir, state)
        if embed_info is not None and "vectors" not in state:
            state["vectors"] = vector_target(index_name, gen, gen_dir)
            write_state(gen_dir, state)
        if embed_info is not None and run.todo("vectors"):
            check_vector_target(state["vectors"])  # an unreachable Qdrant server fails before passages/BM25
        bm25_kw = {"words": words, "k1": bm25_k1, "b": bm25_b, "exact_boost": exact_boost}

        if run.todo("passages"):
            t = time.perf_counter()
            stage_passages(gen_dir, passages, report)
            run.done("passages", time.perf_counter() - t)
        if run.todo("bm25"):
            t = time.perf_counter()
            stage_bm25(gen_dir, passages, report, progress=progress, **bm25_kw)
            run.done("bm25", time.perf_counter() - t)
        n_vectors = 0
        if embedder is not None and embed_info is not None:
            n_vectors = len(passages)  # a resumed build already stored (and counted) them
            if run.todo("vectors"):
                t = time.perf_counter()
                n_vectors = stage_vectors(
                    gen_dir, passages, report, embedder=embedder, embed_info=embed_info, target=state["vectors"],
                    cache=cache if cache is not None else EmbeddingCache(settings.cache_path(root)),
                    precomputed=precomputed, batch_size=batch_size, progress=progress)
                run.done("vectors", time.perf_counter() - t)
        if run.todo("restorer"):
            t = time.perf_counter()
            stage_restorer(gen_dir, passages, report)
            run.done("restorer", time.perf_counter() - t)

        # the manifest (last: it makes the generation complete), then CURRENT
        manifest = make_manifest(
            index_name=index_name, gen=gen, operation=operation, parent=gens.current(index_dir), passages=passages,
            n_vectors=n_vectors, passages_sha=passages_sha, fingerprint=fingerprint, embed_info=embed_info,
            vectors=state.get("vectors"), stage_seconds=run.seconds, build_seconds=time.perf_counter() - t_start,
            **bm25_kw)
        if extra:
            manifest.update(extra)
        return publish(index_name, index_dir, gen, manifest, root=root, keep=keep, report=report)


def publish(
    index_name: str, index_dir: Path, gen: str, manifest: dict[str, Any], *, root: str | os.PathLike[str] | None,
    keep: int | None, report: Any,
) -> dict[str, Any]:
    """The last steps of every new generation (a build or an incremental change): write ``manifest.json``
    (a generation without it is incomplete), swap ``CURRENT`` to it, then prune to ``keep`` generations
    (housekeeping: a failure there is logged, the new generation stays live) → the manifest."""
    gens.write_manifest(index_dir, gen, manifest)
    report("manifest", 1, 1)
    gens.switch(index_dir, gen)
    if keep is not None:
        try:
            cleanup(index_name, root, keep=keep)
        except Exception:  # noqa: BLE001 - pruning is housekeeping; the new generation is live
            log.exception("pruning old generations of %s failed", index_name)
    return manifest


def _pick_generation(
    index_name: str, index_dir: Path, root: str | os.PathLike[str] | None, fingerprint: str, resume: bool
) -> tuple[str, Path, dict[str, Any]]:
    """Resume the incomplete generation with this fingerprint, or start a new one; drop other incomplete ones."""
    target = None
    incomplete = [g for g in gens.list_generations(index_dir) if g.status == "incomplete"]
    if resume:
        for info in reversed(incomplete):
            if read_state(info.path).get("fingerprint") == fingerprint:
                target = info
                break
    for info in incomplete:
        if target is None or info.name != target.name:
            drop_generation(index_name, info.name, root)
    if target is not None:
        state = read_state(target.path)
        log.info("resuming generation %s (done: %s)", target.name, sorted(state.get("stages", {})))
        return target.name, target.path, state
    gen, gen_dir = gens.new_generation(index_dir)
    state = {"fingerprint": fingerprint, "stages": {}, "started_at": time.time()}
    write_state(gen_dir, state)
    return gen, gen_dir, state


# ------------------------------------------------------------------------------------------ generations
def drop_generation(index_name: str, gen: str, root: str | os.PathLike[str] | None = None) -> None:
    """Delete a generation (never the current one), including its server-mode Qdrant collection."""
    index_dir = index_dir_of(index_name, root)
    gen_dir = gens.generation_path(index_dir, gen)
    with gens.IndexLock(index_dir, timeout=30):
        if gen == gens.current(index_dir):
            raise gens.GenerationError(f"generation {gen!r} is the current one; switch before deleting it")
        manifest = gens.read_manifest(index_dir, gen) if gen_dir.is_dir() else None
        target = (manifest or {}).get("vectors") or read_state(gen_dir).get("vectors") or {}
        if target.get("mode") == "server":
            try:
                with open_vectors(target, gen_dir) as vs:
                    vs.delete_collection()
            except VectorStoreUnavailable as err:
                log.warning("could not drop Qdrant collection %s: %s", target.get("collection"), err)
        gens.delete_generation(index_dir, gen)


def cleanup(
    index_name: str, root: str | os.PathLike[str] | None = None, keep: int | None = None
) -> list[str]:
    """Remove incomplete generations, and complete ones beyond the newest ``keep`` → deleted names."""
    index_dir = index_dir_of(index_name, root)
    deleted: list[str] = []
    with gens.IndexLock(index_dir, timeout=30):
        infos = gens.list_generations(index_dir)
        for info in infos:
            if info.status == "incomplete" and not info.is_current:
                drop_generation(index_name, info.name, root)
                deleted.append(info.name)
        if keep is not None:
            complete = [g for g in infos if g.status == "complete"]
            for info in complete[: max(0, len(complete) - keep)]:
                if not info.is_current:
                    drop_generation(index_name, info.name, root)
                    deleted.append(info.name)
    return deleted


_EDITS = ("add_passages", "delete_passages", "current_passages", "current_manifest")


def __getattr__(name: str) -> Any:
    """The old import path of :mod:`indexing.edits` (which imports this module, so it is loaded on first use)."""
    if name in _EDITS:
        from indexing import edits

        return getattr(edits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
