"""The stages of a build, each a function over one generation directory, and what they share.

:func:`indexing.build.build_generation` composes them: :func:`stage_passages` (``passages.jsonl``),
:func:`stage_bm25` (``bm25/``), :func:`stage_vectors` (the embedding cache → Qdrant), :func:`stage_restorer`
(``diacritics.npz``), then :func:`make_manifest`. Each stage's completion is recorded in ``build_state.json``
(:func:`read_state` / :func:`write_state`) so that an interrupted build resumes after its last finished stage.
Also here: the generation's file names, :class:`BuildError`, :func:`embedding_text` (what is embedded for a
passage), where vectors live (:func:`vector_target` / :func:`open_vectors`) and :func:`normalizer_info`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing import generations as gens
from indexing import settings
from indexing.bm25 import BM25Index
from indexing.embed_cache import EmbeddingCache, embed_with_cache
from indexing.embedders import PassageEmbedder
from indexing.passages import Passage, write_passages
from indexing.restorer import RESTORER_FILE, DiacriticRestorer, restorer_text
from indexing.vectors import VectorStore

if TYPE_CHECKING:
    from indexing.precomputed import PrecomputedVectors

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


def index_dir_of(index_name: str, root: str | os.PathLike[str] | None) -> Path:
    return settings.index_dir(index_name, root)


def strip_credentials(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def vector_target(index_name: str, gen: str, gen_dir: Path) -> dict[str, Any]:
    """Where a generation's vectors live: local path inside it, or a server collection."""
    url = settings.qdrant_url()
    if url:
        return {"mode": "server", "url": strip_credentials(url), "collection": f"{index_name}__{gen}"}
    return {"mode": "local", "path": QDRANT_DIR, "collection": LOCAL_COLLECTION}


def open_vectors(target: dict[str, Any], gen_dir: Path) -> VectorStore:
    if target["mode"] == "server":
        url = settings.qdrant_url() or target["url"]
        return VectorStore.open(url, target["collection"])
    return VectorStore.open(gen_dir / target["path"], target["collection"])


def check_vector_target(target: dict[str, Any], timeout: float = 2.0) -> None:
    """Fail fast when a server-mode ``target`` (:func:`vector_target`) does not answer: one cheap probe
    (``get_collections``, ``timeout`` seconds) before any expensive stage. Raises
    :class:`~indexing.vectors.VectorServerUnreachable` with the URL and the cause; local targets pass."""
    if target.get("mode") != "server":
        return
    VectorStore.open(settings.qdrant_url() or target["url"], target["collection"], timeout=timeout).close()


def read_state(gen_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((gen_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_state(gen_dir: Path, state: dict[str, Any]) -> None:
    gens.atomic_write_text(gen_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def fingerprint_of(passages: Sequence[Passage], settings_: dict[str, Any]) -> tuple[str, str]:
    """(fingerprint of passages + settings, sha256 of the passages.jsonl content)."""
    h = hashlib.sha256()
    for p in passages:
        h.update(p.to_json().encode("utf-8"))
        h.update(b"\n")
    passages_sha = h.hexdigest()
    f = hashlib.sha256(passages_sha.encode())
    f.update(json.dumps(settings_, sort_keys=True).encode())
    return f.hexdigest(), passages_sha


def build_settings(embed_info: dict[str, Any] | None, *, words: bool, k1: float, b: float,
                   exact_boost: float) -> dict[str, Any]:
    """What, besides the passages, makes two generations the same index (part of the fingerprint)."""
    return {
        "embedder": None if embed_info is None else {"model_id": embed_info["model_id"], "dim": embed_info["dim"]},
        "words": words,
        "bm25": {"K1": k1, "B": b, "exact_boost": exact_boost},
        "normalizer": normalizer_info()["source_sha1"],
        "qdrant": settings.qdrant_url() and strip_credentials(settings.qdrant_url() or ""),
    }


def check_passages(passages: Sequence[Passage]) -> None:
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


class Progress:
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



# ------------------------------------------------------------------------------------------------ stages
@dataclass
class StageRun:
    """One build's stage bookkeeping in ``gen_dir``: which stages are done, and their seconds (both persisted in
    ``build_state.json`` after every stage)."""

    gen_dir: Path
    state: dict[str, Any]

    def __post_init__(self) -> None:
        self.seconds: dict[str, float] = dict(self.state.get("stage_seconds", {}))
        self.stages: dict[str, bool] = self.state.setdefault("stages", {})

    def todo(self, stage: str) -> bool:
        """Whether ``stage`` still has to run (an interrupted build skips what it finished)."""
        return not self.stages.get(stage)

    def done(self, stage: str, seconds: float) -> None:
        """Record ``stage`` as finished after ``seconds`` (written to disk at once)."""
        self.stages[stage] = True
        self.seconds[stage] = round(seconds, 3)
        self.state["stage_seconds"] = self.seconds
        write_state(self.gen_dir, self.state)


def stage_passages(gen_dir: Path, passages: Sequence[Passage], report: Progress) -> None:
    """1. ``passages.jsonl`` (written to a temporary name, then renamed)."""
    tmp = gen_dir / (PASSAGES_FILE + ".tmp")
    write_passages(tmp, passages)
    os.replace(tmp, gen_dir / PASSAGES_FILE)
    report("passages", len(passages), len(passages))


def stage_bm25(gen_dir: Path, passages: Sequence[Passage], report: Progress, *, words: bool, k1: float, b: float,
               exact_boost: float, progress: bool) -> None:
    """2. The Whoosh index in ``bm25/``; BuildError when it does not hold every passage."""
    bm = BM25Index.build(gen_dir / BM25_DIR, passages, words=words, k1=k1, b=b, exact_boost=exact_boost,
                         progress=progress, progress_callback=report)
    try:
        got = bm.doc_count()
    finally:
        bm.close()
    if got != len(passages):
        raise BuildError(f"BM25 index holds {got} passages, expected {len(passages)}")


def stage_vectors(
    gen_dir: Path, passages: Sequence[Passage], report: Progress, *, embedder: PassageEmbedder,
    embed_info: dict[str, Any], target: dict[str, Any], cache: EmbeddingCache,
    precomputed: PrecomputedVectors | None, batch_size: int, progress: bool,
) -> int:
    """3. Vectors from the embedding cache (``precomputed`` seeds it; misses are embedded and cached) upserted
    to Qdrant at ``target`` → the number of vectors stored; BuildError when it is not one per passage."""
    if precomputed is not None:
        seeded = precomputed.seed(cache, passages, embed_info["model_id"], embed_info["dim"])
        log.info("seeded %d vectors from %s", seeded, precomputed.vectors_path)
    texts = [embedding_text(p) for p in passages]
    vecs = embed_with_cache(embedder, texts, embed_info["model_id"], batch_size, progress, cache=cache,
                            progress_callback=report)
    if target["mode"] == "local":
        shutil.rmtree(gen_dir / target["path"], ignore_errors=True)
    with open_vectors(target, gen_dir) as vs:
        vs.create(embed_info["dim"], recreate=True)
        vs.upsert([p.id for p in passages], vecs, [{"doc_id": p.doc_id, "title": p.title} for p in passages],
                  progress=progress, progress_callback=report)
        n_vectors = vs.count()
        if n_vectors == len(passages):
            build_ann_graph(vs, target, len(passages), report)
    if n_vectors != len(passages):
        raise BuildError(f"Qdrant holds {n_vectors} vectors, expected {len(passages)}")
    return n_vectors


def build_ann_graph(vs: Any, target: dict[str, Any], n: int, report: Progress) -> bool:
    """3b. An HNSW graph for the embedded engine when the build holds at least
    :func:`indexing.settings.hnsw_min_passages` passages (stage ``hnsw``; the engine has no background optimizer,
    so without it every query is an exact scan; a Qdrant server indexes on its own) → whether it ran."""
    from indexing.settings import hnsw_min_passages

    least = hnsw_min_passages()
    if target.get("mode") != "local" or least is None or n < least:
        return False
    report("hnsw", 0, 1)
    vs.optimize()
    report("hnsw", 1, 1)
    return True


def stage_restorer(gen_dir: Path, passages: Sequence[Passage], report: Progress) -> None:
    """4. The diacritic restorer learned from the passages (a per-generation artifact the search side loads)."""
    report("restorer", 0, 1)
    restorer = DiacriticRestorer.from_texts(restorer_text(p.title, p.text) for p in passages)
    restorer.save(gen_dir / RESTORER_FILE)
    report("restorer", 1, 1)


def make_manifest(
    *, index_name: str, gen: str, operation: str, parent: str | None, passages: Sequence[Passage] | None,
    n_vectors: int, passages_sha: str, fingerprint: str, embed_info: dict[str, Any] | None,
    vectors: dict[str, Any] | None, stage_seconds: dict[str, float], build_seconds: float, words: bool,
    k1: float, b: float, exact_boost: float, counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """5. The generation's ``manifest.json`` content (written last: it makes the generation complete).
    ``counts`` (``passages``, ``documents``) replaces counting ``passages`` (None then: an incremental edit)."""
    now = time.time()
    bm25_s = stage_seconds.get("bm25") or 0.0
    if counts is None:
        counts = {"passages": len(passages or ()), "documents": len({p.doc_id for p in passages or ()})}
    return {
        "format": MANIFEST_FORMAT,
        "index": index_name,
        "generation": gen,
        "operation": operation,
        "parent": parent,
        "created_at": now,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "build_seconds": round(build_seconds, 3),
        "stage_seconds": stage_seconds,
        "bm25_passages_per_s": round(len(passages) / bm25_s, 1) if bm25_s and passages is not None else None,
        "counts": {"passages": counts["passages"], "documents": counts["documents"], "vectors": n_vectors},
        "passages_sha256": passages_sha,
        "fingerprint": fingerprint,
        "embedder": embed_info,
        "embedding_text": EMBEDDING_TEXT_RULE if embed_info else None,
        "vectors": vectors if embed_info else None,
        "bm25": {
            "path": BM25_DIR,
            "K1": k1,
            "B": b,
            "exact_boost": exact_boost,
            "fields": ["exact", "folded"] + (["words"] if words else []),
        },
        "normalizer": normalizer_info(),
    }
