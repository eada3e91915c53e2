"""Incremental generations: the current generation copied cheaply and changed by k passages, in time ∝ k.

:func:`apply_change` writes a new generation from its parent (the serving one) and swaps ``CURRENT``, like
:func:`indexing.build.build_generation`, but without rebuilding anything:

1. ``passages.jsonl`` — the parent's lines streamed through (bytes; removed ids dropped), the added ones
   appended; its sha256 is computed on the way, so the fingerprint is that of a rebuild of the same passages;
2. ``bm25/`` — Whoosh's immutable segment files hard-linked, its small table of contents and config copied,
   then :meth:`indexing.bm25.BM25Index.apply` (deletions + one new segment);
3. ``embed`` — vectors of the added passages only, through the embedding cache (timed apart: model time);
4. ``vectors`` — the parent's local vector store copied (the qdrant-edge shard's segments are updated in
   place, so they cannot be shared between generations; a file copy is ~GB/s), then the removed points
   deleted and the added ones upserted;
5. ``restorer`` — the parent's ``diacritics.npz`` updated on its arrays (:func:`indexing.restorer_update.update_saved`);
6. ``manifest.json`` last, then ``CURRENT``.

A kill at any point leaves an incomplete generation (no manifest) that is never served and is removed by the
next change or build; the parent is only read. Vectors on a Qdrant server (one collection per generation) are
not copied here: :func:`incremental_possible` says no and the caller rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexing import generations as gens
from indexing import settings
from indexing.bm25 import DEFAULT_EXACT_BOOST, BM25Index
from indexing.embed_cache import EmbeddingCache, embed_with_cache
from indexing.embedders import PassageEmbedder
from indexing.passages import Passage
from indexing.restorer import RESTORER_FILE, DiacriticRestorer, restorer_text
from indexing.restorer_update import update_saved
from indexing.stages import (
    BM25_DIR,
    PASSAGES_FILE,
    BuildError,
    Progress,
    StageRun,
    build_settings,
    embedding_text,
    make_manifest,
    open_vectors,
    write_state,
)

__all__ = ["apply_change", "incremental_possible", "clone_bm25", "copy_passages"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_ID_PREFIX = b'{"id": '
_ID_END = b', "doc_id": '


def incremental_possible(manifest: dict[str, Any] | None, parent_dir: Path | None) -> bool:
    """Whether the parent generation can be changed incrementally: complete, with its BM25 and passages files,
    and vectors (if any) in a local path of this generation (not a server collection)."""
    if manifest is None or parent_dir is None:
        return False
    if not (parent_dir / PASSAGES_FILE).is_file() or not (parent_dir / manifest.get("bm25", {}).get("path", BM25_DIR)).is_dir():
        return False
    target = manifest.get("vectors")
    return target is None or (target.get("mode") == "local" and (parent_dir / target["path"]).is_dir())


def clone_bm25(src: Path, dst: Path) -> None:
    """A copy of the Whoosh directory ``src`` at ``dst``: segment files (written once, never changed) are
    hard-linked, the table of contents and the config copied (a writer replaces them), no lock file."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if not f.is_file() or "WRITELOCK" in f.name:
            continue
        if f.suffix in (".toc", ".json"):
            shutil.copy2(f, dst / f.name)
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:  # another file system, or no hard links: a copy is correct too
            shutil.copy2(f, dst / f.name)


def _line_id(line: bytes) -> str:
    """The passage id of one passages.jsonl line (written by ``Passage.to_json``: the id comes first)."""
    if line.startswith(_ID_PREFIX):
        end = line.find(_ID_END)
        if end > 0:
            return json.loads(line[len(_ID_PREFIX):end])
    return json.loads(line)["id"]


def copy_passages(src: Path, dst: Path, removed: set[str], added: Sequence[Passage]) -> tuple[str, int]:
    """``src`` without the lines of ``removed`` ids, plus ``added``, written to ``dst`` (temporary name, fsync,
    rename) → (sha256 of the new file, number of lines dropped)."""
    h = hashlib.sha256()
    dropped = 0
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        if not removed:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
        else:
            for line in fin:
                if line.strip() and _line_id(line) in removed:
                    dropped += 1
                    continue
                h.update(line)
                fout.write(line)
        for p in added:
            line = (p.to_json() + "\n").encode("utf-8")
            h.update(line)
            fout.write(line)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    return h.hexdigest(), dropped


def _documents_present(bm: BM25Index, doc_ids: set[str]) -> int:
    return len({p.doc_id for p in bm.find(doc_ids=doc_ids)})


def apply_change(
    index_name: str, root: str | os.PathLike[str] | None, manifest: dict[str, Any], *, added: Sequence[Passage],
    removed: Sequence[Passage], embedder: PassageEmbedder | None, operation: str, extra: dict[str, Any],
    progress: bool, report: Progress, batch_size: int = 64, cache: EmbeddingCache | None = None,
    keep: int | None = 5,
) -> dict[str, Any]:
    """A new generation = the current one minus ``removed`` plus ``added`` (the caller holds the index lock and
    has checked ids and the embedder) → its manifest; ``CURRENT`` is swapped. See the module docstring."""
    from indexing.build import drop_generation, publish

    t_start = time.perf_counter()
    index_dir = settings.index_dir(index_name, root)
    parent = manifest["generation"]
    parent_dir = gens.generation_path(index_dir, parent)
    for info in gens.list_generations(index_dir):  # leftovers of a killed change or build
        if info.status == "incomplete" and not info.is_current:
            drop_generation(index_name, info.name, root)
    gen, gen_dir = gens.new_generation(index_dir)
    bm_cfg = manifest["bm25"]
    target = manifest.get("vectors")
    state: dict[str, Any] = {"operation": operation, "incremental": True, "parent": parent, "stages": {},
                             "started_at": time.time()}
    if target is not None:
        state["vectors"] = target
    write_state(gen_dir, state)
    run = StageRun(gen_dir, state)
    removed_ids = {p.id for p in removed}

    t = time.perf_counter()
    passages_sha, dropped = copy_passages(parent_dir / PASSAGES_FILE, gen_dir / PASSAGES_FILE, removed_ids, added)
    if dropped != len(removed_ids):
        raise BuildError(f"{parent}'s passages.jsonl holds {dropped} of the {len(removed_ids)} passages to remove")
    report("passages", len(added), len(added))
    run.done("passages", time.perf_counter() - t)

    t = time.perf_counter()
    n_passages = int(manifest["counts"]["passages"]) - len(removed_ids) + len(added)
    affected = {p.doc_id for p in removed} | {p.doc_id for p in added}
    with BM25Index.open(parent_dir / bm_cfg.get("path", BM25_DIR)) as old_bm:
        docs_before = _documents_present(old_bm, affected)
    clone_bm25(parent_dir / bm_cfg.get("path", BM25_DIR), gen_dir / BM25_DIR)
    with BM25Index.open(gen_dir / BM25_DIR) as bm:
        bm.apply(added, removed_ids)
        report("bm25", len(added), len(added))
        if bm.doc_count() != n_passages:
            raise BuildError(f"BM25 index holds {bm.doc_count()} passages, expected {n_passages}")
        n_documents = int(manifest["counts"]["documents"]) - docs_before + _documents_present(bm, affected)
    run.done("bm25", time.perf_counter() - t)

    n_vectors = 0
    embed_info = manifest.get("embedder")
    if target is not None and embedder is not None and embed_info:
        t = time.perf_counter()
        vecs = embed_with_cache(embedder, [embedding_text(p) for p in added], embed_info["model_id"], batch_size,
                                progress, cache=cache if cache is not None else EmbeddingCache(settings.cache_path(root)),
                                progress_callback=report)
        run.done("embed", time.perf_counter() - t)
        t = time.perf_counter()
        shutil.copytree(parent_dir / target["path"], gen_dir / target["path"])
        run.seconds["vectors_copy"] = round(time.perf_counter() - t, 3)
        with open_vectors(target, gen_dir) as vs:
            vs.delete(sorted(removed_ids))
            vs.upsert([p.id for p in added], vecs, [{"doc_id": p.doc_id, "title": p.title} for p in added],
                      progress=progress, progress_callback=report)
            n_vectors = vs.count()
        if n_vectors != n_passages:
            raise BuildError(f"the vector store holds {n_vectors} vectors, expected {n_passages}")
        run.done("vectors", time.perf_counter() - t)

    t = time.perf_counter()
    report("restorer", 0, 1)
    if not (parent_dir / RESTORER_FILE).is_file():  # a generation from before the restorer stage
        DiacriticRestorer.for_generation(parent_dir)
    update_saved(parent_dir / RESTORER_FILE, gen_dir / RESTORER_FILE,
                 [restorer_text(p.title, p.text) for p in added], [restorer_text(p.title, p.text) for p in removed])
    report("restorer", 1, 1)
    run.done("restorer", time.perf_counter() - t)

    words = "words" in bm_cfg.get("fields", [])
    bm25_kw = {"words": words, "k1": bm_cfg.get("K1", 1.2), "b": bm_cfg.get("B", 0.75),
               "exact_boost": bm_cfg.get("exact_boost", DEFAULT_EXACT_BOOST)}
    settings_ = build_settings(embed_info and {"model_id": embed_info["model_id"], "dim": embed_info["dim"]},
                               **bm25_kw)
    fingerprint = hashlib.sha256(passages_sha.encode())
    fingerprint.update(json.dumps(settings_, sort_keys=True).encode())
    out = make_manifest(
        index_name=index_name, gen=gen, operation=operation, parent=parent, passages=None, n_vectors=n_vectors,
        passages_sha=passages_sha, fingerprint=fingerprint.hexdigest(), embed_info=embed_info, vectors=target,
        stage_seconds=run.seconds, build_seconds=time.perf_counter() - t_start,
        counts={"passages": n_passages, "documents": n_documents}, **bm25_kw)
    out["incremental"] = True
    out.update(extra)
    return publish(index_name, index_dir, gen, out, root=root, keep=keep, report=report)
