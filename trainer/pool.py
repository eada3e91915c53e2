"""The negative pool's pieces for mining: which passages belong together (:func:`group_of`), near-duplicate
tests (:func:`shingles`, :func:`jaccard`), the :class:`Blocklist` of passages that must never reach training data,
the :class:`VectorTable` of pool vectors by text key, and :func:`sample_pool`."""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexing.embed_cache import text_key
from indexing.embedders import same_model

__all__ = ["Blocklist", "VectorTable", "base_id", "group_of", "jaccard", "sample_pool", "shingles", "text_key"]

_WORD_RE = re.compile(r"\w+")
_VIWIKI_ID_RE = re.compile(r"^(vw-[0-9a-f]+)-\d+$")
_SPLIT_ID_RE = re.compile(r"#p\d+$")


def base_id(passage_id: str) -> str:
    """The pool id of a passage: ``<id>#p<N>`` (a split document's passage) → ``<id>``; others unchanged."""
    return _SPLIT_ID_RE.sub("", passage_id)


def group_of(passage_id: str) -> str:
    """Passage id → the document group whose members never serve as each other's negatives.

    ``<doc>#pN`` → ``<doc>``; viwiki paragraph ids ``vw-<article>-<NNNN>`` → ``vw-<article>`` (paragraphs of one
    article often answer each other's questions); anything else is its own group.
    """
    base = base_id(passage_id)
    m = _VIWIKI_ID_RE.match(base)
    return m.group(1) if m else base


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """Lower-cased syllable ``n``-grams of ``text`` (the near-duplicate fingerprint)."""
    syl = _WORD_RE.findall(text.lower())
    if len(syl) < n:
        return frozenset([" ".join(syl)]) if syl else frozenset()
    return frozenset(" ".join(syl[i : i + n]) for i in range(len(syl) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two shingle sets (0 when both are empty)."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def sample_pool(records: Sequence[dict], n: int, seed: int) -> list[dict]:
    """``n`` records drawn without replacement by a seeded RNG, in their original order (all if ``n`` <= 0)."""
    if n <= 0 or n >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


class VectorTable:
    """Passage vectors by text key (sha1 of the text): precomputed rows, plus ones embedded on demand.

    ``embed_passages`` (texts → L2-normalized ``(n, dim)`` float32) fills in texts that are missing.
    """

    def __init__(
        self, keys: Sequence[str], vectors: np.ndarray, embed_passages: Callable | None = None
    ) -> None:
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        self._row = {k: i for i, k in enumerate(keys)}
        self._vectors = np.asarray(vectors, dtype=np.float32)
        self._extra: dict[str, np.ndarray] = {}
        self._embed = embed_passages

    @classmethod
    def from_files(
        cls,
        npy: str | os.PathLike[str],
        sidecar: str | os.PathLike[str] | None = None,
        embed_passages: Callable | None = None,
        model_id: str | None = None,
    ) -> VectorTable:
        """Load ``X.npy`` + ``X.json`` (``{"model_id", "keys": [...]}``); checks the model id if given."""
        npy = Path(npy)
        sidecar = Path(sidecar) if sidecar else npy.with_suffix(".json")
        if not npy.is_file() or not sidecar.is_file():
            raise FileNotFoundError(f"precomputed vectors need both {npy} and {sidecar}")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if model_id and meta.get("model_id") and not same_model(str(meta["model_id"]), model_id):
            raise ValueError(f"{sidecar}: vectors are from {meta.get('model_id')!r}, expected {model_id!r}")
        vecs = np.load(npy).astype(np.float32)
        return cls(meta["keys"], vecs, embed_passages)

    def get_available(self, texts: Sequence[str]) -> np.ndarray:
        """The stored rows of those ``texts`` that have one (never embeds); ``(m, dim)`` with m <= n."""
        rows = []
        for t in texts:
            k = text_key(t)
            if k in self._row:
                rows.append(self._vectors[self._row[k]])
            elif k in self._extra:
                rows.append(self._extra[k])
        return np.stack(rows) if rows else np.zeros((0, self._vectors.shape[1]), np.float32)

    def __contains__(self, text: str) -> bool:
        k = text_key(text)
        return k in self._row or k in self._extra

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → ``(n, dim)`` float32 rows, embedding (once) the texts that have no stored vector."""
        missing = [
            t for t in dict.fromkeys(texts) if text_key(t) not in self._row and text_key(t) not in self._extra
        ]
        if missing:
            if self._embed is None:
                raise KeyError(
                    f"{len(missing)} passage texts have no precomputed vector and no embedder was given"
                )
            vecs = np.asarray(self._embed(missing), dtype=np.float32)
            for t, v in zip(missing, vecs, strict=True):
                self._extra[text_key(t)] = v
        out = []
        for t in texts:
            k = text_key(t)
            out.append(self._vectors[self._row[k]] if k in self._row else self._extra[k])
        return np.stack(out) if out else np.zeros((0, self._vectors.shape[1]), np.float32)


@dataclass
class Blocklist:
    """Passages that must never appear in training data (demo corpus, evaluation sets), by id, text or near-dup.

    Near-duplicates are found through an inverted index on syllable 5-shingles: a text is blocked when a
    blocked text shares at least ``min_containment`` of the smaller shingle set.
    """

    ids: set[str] = field(default_factory=set)
    min_containment: float = 0.5
    n: int = 5
    _keys: set[str] = field(default_factory=set)
    _index: dict[str, list[int]] = field(default_factory=dict)
    _sizes: list[int] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        self._keys.add(text_key(text))
        sh = shingles(text, self.n)
        doc = len(self._sizes)
        self._sizes.append(len(sh))
        for s in sh:
            self._index.setdefault(s, []).append(doc)

    def add_records(self, records: Iterable[dict]) -> None:
        for r in records:
            self.ids.add(str(r["_id"]))
            self.add_text(str(r.get("text", "")))

    def blocks(self, passage_id: str, text: str) -> bool:
        """True when the passage is blocked by id, exact text, or near-duplicate text."""
        if (
            passage_id in self.ids
            or base_id(passage_id) in self.ids
            or text_key(text) in self._keys
        ):
            return True
        sh = shingles(text, self.n)
        if not sh:
            return False
        counts: dict[int, int] = {}
        for s in sh:
            for d in self._index.get(s, ()):
                counts[d] = counts.get(d, 0) + 1
        return any(
            c / max(1, min(len(sh), self._sizes[d])) >= self.min_containment for d, c in counts.items()
        )
