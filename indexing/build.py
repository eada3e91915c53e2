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

:func:`add_passages` / :func:`delete_passages` are copy-on-write: the current passages plus/minus the change
go through :func:`build_generation` as a new generation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexing import generations as gens
from indexing import settings
from indexing.bm25 import DEFAULT_EXACT_BOOST, BM25Index
from indexing.embed_cache import Embedder, EmbeddingCache, embed_with_cache, text_key
from indexing.passages import Passage, iter_passages, write_passages
from indexing.restorer import RESTORER_FILE, DiacriticRestorer, restorer_text
from indexing.vectors import VectorStore, VectorStoreUnavailable

__all__ = [
    "BuildError",
    "PrecomputedVectors",
    "IndexSnapshot",
    "EMBEDDING_TEXT_RULE",
    "embedding_text",
    "build_generation",
    "add_passages",
    "delete_passages",
    "current_passages",
    "current_manifest",
    "open_generation",
    "drop_generation",
    "cleanup",
    "normalizer_info",
    "save_precomputed",
]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
STATE_FILE = "build_state.json"
PASSAGES_FILE = "passages.jsonl"
BM25_DIR = "bm25"
QDRANT_DIR = "qdrant"
LOCAL_COLLECTION = "passages"
EMBEDDING_TEXT_RULE = "title + ' ' + text (text only when the title is empty)"

ProgressCallback = Callable[[str, int, int], None]


class BuildError(RuntimeError):
    """A build that cannot proceed (bad passages, missing embedder, count mismatch after writing)."""


def embedding_text(p: Passage) -> str:
    """The string embedded for a passage (BEIR convention: title, a space, then the text)."""
    return f"{p.title} {p.text}" if p.title else p.text


def normalizer_info() -> dict[str, Any]:
    """Which normalizer built an index: module source hash and underthesea version (rebuild when they change)."""
    from importlib import metadata

    from indexing import normalize

    src = Path(normalize.__file__).read_bytes()
    try:
        ut = metadata.version("underthesea")
    except metadata.PackageNotFoundError:  # pragma: no cover - it is a hard dependency
        ut = None
    return {
        "module": "indexing.normalize",
        "source_sha1": hashlib.sha1(src).hexdigest(),
        "underthesea": ut,
        "exact_field": "normalize.syllables(title + '\\n' + text)",
        "folded_field": "normalize.folded_syllables(title + '\\n' + text)",
    }


# ------------------------------------------------------------------------------------ precomputed vectors
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


# ---------------------------------------------------------------------------------------------- helpers
def _index_dir(index_name: str, root: str | os.PathLike[str] | None) -> Path:
    return settings.index_dir(index_name, root)


def _strip_credentials(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def _vector_target(index_name: str, gen: str, gen_dir: Path) -> dict[str, Any]:
    """Where a generation's vectors live: local path inside it, or a server collection."""
    url = settings.qdrant_url()
    if url:
        return {"mode": "server", "url": _strip_credentials(url), "collection": f"{index_name}__{gen}"}
    return {"mode": "local", "path": QDRANT_DIR, "collection": LOCAL_COLLECTION}


def _open_vectors(target: dict[str, Any], gen_dir: Path) -> VectorStore:
    if target["mode"] == "server":
        url = settings.qdrant_url() or target["url"]
        return VectorStore.open(url, target["collection"])
    return VectorStore.open(gen_dir / target["path"], target["collection"])


def _read_state(gen_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((gen_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(gen_dir: Path, state: dict[str, Any]) -> None:
    gens.atomic_write_text(gen_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _fingerprint(passages: Sequence[Passage], settings_: dict[str, Any]) -> tuple[str, str]:
    """(fingerprint of passages + settings, sha256 of the passages.jsonl content)."""
    h = hashlib.sha256()
    for p in passages:
        h.update(p.to_json().encode("utf-8"))
        h.update(b"\n")
    passages_sha = h.hexdigest()
    f = hashlib.sha256(passages_sha.encode())
    f.update(json.dumps(settings_, sort_keys=True).encode())
    return f.hexdigest(), passages_sha


def _check_passages(passages: Sequence[Passage]) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for p in passages:
        if not isinstance(p, Passage):
            raise BuildError(f"expected Passage objects, got {type(p).__name__}")
        if p.id in seen:
            dups.append(p.id)
        seen.add(p.id)
    if dups:
        raise BuildError(f"duplicate passage ids: {dups[:10]}{' ...' if len(dups) > 10 else ''}")


def drop_generation(index_name: str, gen: str, root: str | os.PathLike[str] | None = None) -> None:
    """Delete a generation (never the current one), including its server-mode Qdrant collection."""
    index_dir = _index_dir(index_name, root)
    gen_dir = gens.generation_path(index_dir, gen)
    with gens.IndexLock(index_dir, timeout=30):
        if gen == gens.current(index_dir):
            raise gens.GenerationError(f"generation {gen!r} is the current one; switch before deleting it")
        manifest = gens.read_manifest(index_dir, gen) if gen_dir.is_dir() else None
        target = (manifest or {}).get("vectors") or _read_state(gen_dir).get("vectors") or {}
        if target.get("mode") == "server":
            try:
                with _open_vectors(target, gen_dir) as vs:
                    vs.delete_collection()
            except VectorStoreUnavailable as err:
                log.warning("could not drop Qdrant collection %s: %s", target.get("collection"), err)
        gens.delete_generation(index_dir, gen)


def cleanup(
    index_name: str, root: str | os.PathLike[str] | None = None, keep: int | None = None
) -> list[str]:
    """Remove incomplete generations, and complete ones beyond the newest ``keep`` → deleted names."""
    index_dir = _index_dir(index_name, root)
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


class _Progress:
    """Fan-out of stage progress to an optional callback; never lets a UI callback break a build."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.callback is None:
            return
        try:
            self.callback(stage, int(done), int(total))
        except Exception:  # noqa: BLE001
            log.exception("progress callback failed (ignored)")


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
    ``vectors``, ``manifest``.
    """
    t_start = time.perf_counter()
    passages = list(passages)
    _check_passages(passages)
    report = _Progress(progress_callback)
    index_dir = _index_dir(index_name, root)
    index_dir.mkdir(parents=True, exist_ok=True)
    embed_info = None
    if embedder is not None:
        embed_info = {
            "model_id": str(embedder.model_id),
            "dim": int(embedder.dim),
            "name": embedder_name or getattr(embedder, "name", None),
        }
    build_settings = {
        "embedder": None
        if embed_info is None
        else {"model_id": embed_info["model_id"], "dim": embed_info["dim"]},
        "words": words,
        "bm25": {"K1": bm25_k1, "B": bm25_b, "exact_boost": exact_boost},
        "normalizer": normalizer_info()["source_sha1"],
        "qdrant": settings.qdrant_url() and _strip_credentials(settings.qdrant_url() or ""),
    }
    fingerprint, passages_sha = _fingerprint(passages, build_settings)

    with gens.IndexLock(index_dir, timeout=lock_timeout):
        gen, gen_dir, state = _pick_generation(index_name, index_dir, root, fingerprint, resume)
        stage_seconds: dict[str, float] = dict(state.get("stage_seconds", {}))
        if embed_info is not None and "vectors" not in state:
            state["vectors"] = _vector_target(index_name, gen, gen_dir)
            _write_state(gen_dir, state)

        def done(stage: str, seconds: float) -> None:
            state.setdefault("stages", {})[stage] = True
            stage_seconds[stage] = round(seconds, 3)
            state["stage_seconds"] = stage_seconds
            _write_state(gen_dir, state)

        stages = state.setdefault("stages", {})
        # 1. passages.jsonl
        if not stages.get("passages"):
            t = time.perf_counter()
            tmp = gen_dir / (PASSAGES_FILE + ".tmp")
            write_passages(tmp, passages)
            os.replace(tmp, gen_dir / PASSAGES_FILE)
            report("passages", len(passages), len(passages))
            done("passages", time.perf_counter() - t)

        # 2. BM25
        if not stages.get("bm25"):
            t = time.perf_counter()
            bm = BM25Index.build(
                gen_dir / BM25_DIR,
                passages,
                words=words,
                k1=bm25_k1,
                b=bm25_b,
                exact_boost=exact_boost,
                progress=progress,
                progress_callback=report,
            )
            try:
                got = bm.doc_count()
            finally:
                bm.close()
            if got != len(passages):
                raise BuildError(f"BM25 index holds {got} passages, expected {len(passages)}")
            done("bm25", time.perf_counter() - t)

        # 3. vectors
        n_vectors = 0
        if embedder is not None and not stages.get("vectors"):
            t = time.perf_counter()
            cache = cache if cache is not None else EmbeddingCache(settings.cache_path(root))
            if precomputed is not None:
                seeded = precomputed.seed(cache, passages, embed_info["model_id"], embed_info["dim"])
                log.info("seeded %d vectors from %s", seeded, precomputed.vectors_path)
            texts = [embedding_text(p) for p in passages]
            vecs = embed_with_cache(
                embedder,
                texts,
                embed_info["model_id"],
                batch_size,
                progress,
                cache=cache,
                progress_callback=report,
            )
            target = state["vectors"]
            if target["mode"] == "local":
                shutil.rmtree(gen_dir / target["path"], ignore_errors=True)
            with _open_vectors(target, gen_dir) as vs:
                vs.create(embed_info["dim"], recreate=True)
                vs.upsert(
                    [p.id for p in passages],
                    vecs,
                    [{"doc_id": p.doc_id, "title": p.title} for p in passages],
                    progress=progress,
                    progress_callback=report,
                )
                n_vectors = vs.count()
            if n_vectors != len(passages):
                raise BuildError(f"Qdrant holds {n_vectors} vectors, expected {len(passages)}")
            done("vectors", time.perf_counter() - t)
        elif embedder is not None:
            n_vectors = len(passages)

        # 4. diacritic restorer: a per-generation artifact the search side loads (indexing.restorer)
        if not stages.get("restorer"):
            t = time.perf_counter()
            report("restorer", 0, 1)
            restorer = DiacriticRestorer.from_texts(restorer_text(p.title, p.text) for p in passages)
            restorer.save(gen_dir / RESTORER_FILE)
            report("restorer", 1, 1)
            done("restorer", time.perf_counter() - t)

        # 5. manifest (last), then CURRENT
        previous = gens.current(index_dir)
        now = time.time()
        bm25_s = stage_seconds.get("bm25") or 0.0
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "index": index_name,
            "generation": gen,
            "operation": operation,
            "parent": previous,
            "created_at": now,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "build_seconds": round(time.perf_counter() - t_start, 3),
            "stage_seconds": stage_seconds,
            "bm25_passages_per_s": round(len(passages) / bm25_s, 1) if bm25_s else None,
            "counts": {
                "passages": len(passages),
                "documents": len({p.doc_id for p in passages}),
                "vectors": n_vectors,
            },
            "passages_sha256": passages_sha,
            "fingerprint": fingerprint,
            "embedder": embed_info,
            "embedding_text": EMBEDDING_TEXT_RULE if embed_info else None,
            "vectors": state.get("vectors") if embed_info else None,
            "bm25": {
                "path": BM25_DIR,
                "K1": bm25_k1,
                "B": bm25_b,
                "exact_boost": exact_boost,
                "fields": ["exact", "folded"] + (["words"] if words else []),
            },
            "normalizer": normalizer_info(),
        }
        if extra:
            manifest.update(extra)
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
            if _read_state(info.path).get("fingerprint") == fingerprint:
                target = info
                break
    for info in incomplete:
        if target is None or info.name != target.name:
            drop_generation(index_name, info.name, root)
    if target is not None:
        state = _read_state(target.path)
        log.info("resuming generation %s (done: %s)", target.name, sorted(state.get("stages", {})))
        return target.name, target.path, state
    gen, gen_dir = gens.new_generation(index_dir)
    state = {"fingerprint": fingerprint, "stages": {}, "started_at": time.time()}
    _write_state(gen_dir, state)
    return gen, gen_dir, state


# --------------------------------------------------------------------------------------- copy-on-write
def current_passages(index_name: str, root: str | os.PathLike[str] | None = None) -> list[Passage]:
    """Passages of the current generation (empty list when the index has none)."""
    path = gens.current_path(_index_dir(index_name, root))
    if path is None:
        return []
    return list(iter_passages(path / PASSAGES_FILE))


def current_manifest(index_name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Manifest of the current generation, or None when the index has none."""
    index_dir = _index_dir(index_name, root)
    gen = gens.current(index_dir)
    return gens.read_manifest(index_dir, gen) if gen else None


def _check_embedder(manifest: dict[str, Any] | None, embedder: Embedder | None) -> None:
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


def _cow_kwargs(manifest: dict[str, Any] | None) -> dict[str, Any]:
    bm = (manifest or {}).get("bm25") or {}
    return {
        "words": "words" in bm.get("fields", []),
        "bm25_k1": bm.get("K1", 1.2),
        "bm25_b": bm.get("B", 0.75),
        "exact_boost": bm.get("exact_boost", DEFAULT_EXACT_BOOST),
    }


def add_passages(
    index_name: str,
    passages: Iterable[Passage],
    embedder: Embedder | None = None,
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
    _check_passages(new)
    index_dir = _index_dir(index_name, root)
    with gens.IndexLock(index_dir, timeout=lock_timeout):
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
        return build_generation(
            index_name,
            merged,
            embedder,
            root,
            progress,
            True,
            progress_callback=progress_callback,
            operation="add",
            extra={"change": change, **(extra or {})},
            **_cow_kwargs(manifest),
            embedder_name=((manifest or {}).get("embedder") or {}).get("name"),
        )


def delete_passages(
    index_name: str,
    ids: Iterable[str],
    embedder: Embedder | None = None,
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
    index_dir = _index_dir(index_name, root)
    with gens.IndexLock(index_dir, timeout=lock_timeout):
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
        return build_generation(
            index_name,
            kept,
            embedder,
            root,
            progress,
            True,
            progress_callback=progress_callback,
            operation="delete",
            extra={"change": change},
            **_cow_kwargs(manifest),
            embedder_name=((manifest or {}).get("embedder") or {}).get("name"),
        )


# --------------------------------------------------------------------------------------------- reading
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
    index_dir = _index_dir(index_name, root)
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
            vs = _open_vectors(manifest["vectors"], gen_dir)
        except BaseException:
            bm.close()
            raise
    return IndexSnapshot(index_name, gen, gen_dir, manifest, bm, vs, watcher if generation is None else None)
