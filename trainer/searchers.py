"""Lexical first stages over the negative pool for mining: the :class:`BM25Searcher` Protocol, the in-memory
:class:`Bm25sSearcher` (``bm25s``; tests and small pools) and :class:`ProjectBM25Searcher` (the project's own
Whoosh BM25, built once per pool)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from indexing.embed_cache import text_key
from trainer.pool import base_id

__all__ = ["BM25Searcher", "Bm25sSearcher", "ProjectBM25Searcher"]


class BM25Searcher(Protocol):
    """A lexical first stage over the negative pool: query → ``[(passage_id, score)]`` best first."""

    def search(self, query: str, k: int) -> list[tuple[str, float]]: ...


class Bm25sSearcher:
    """In-memory BM25 (``bm25s``) over normalized syllables of title + text; for tests and small pools."""

    def __init__(self, passages: Sequence[dict]) -> None:
        import bm25s

        from indexing.normalize import syllables

        self.ids = [str(p["_id"]) for p in passages]
        corpus = [syllables(f"{p.get('title', '')} {p['text']}") for p in passages]
        self._syllables = syllables
        self._retriever = bm25s.BM25()
        self._retriever.index(corpus, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        toks = self._syllables(query)
        if not toks:
            return []
        k = min(k, len(self.ids))
        docs, scores = self._retriever.retrieve([toks], k=k, show_progress=False)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


class ProjectBM25Searcher:
    """The project's Whoosh BM25 (``indexing.bm25``) over a generation built from the pool.

    The generation is built once with ``indexing.build.build_generation`` into ``index_root`` (BM25 only
    matters here; the dense side is read from precomputed vectors) and reused when already complete.
    Passage ids of split documents (``<id>#pN``) are mapped back to the pool id, best score kept.
    """

    def __init__(
        self, passages: Sequence[dict], index_name: str = "train-pool", root: str | None = None
    ) -> None:
        self._search = _open_project_bm25(passages, index_name=index_name, root=root)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        out: dict[str, float] = {}
        for pid, score in self._search(query, k * 2):
            base = base_id(pid)
            if base not in out:
                out[base] = float(score)
            if len(out) >= k:
                break
        return list(out.items())


def _open_project_bm25(passages: Sequence[dict], index_name: str, root: str | None) -> Callable:
    """Build (or reuse) the project's Whoosh BM25 index (:class:`indexing.bm25.BM25Index`) over ``passages``.

    The index lives in ``<home>/train/bm25-<index_name>`` with a fingerprint of the pool (ids + text keys);
    it is rebuilt when the pool changes. Only the lexical side is needed for mining (the dense side comes
    from precomputed vectors), so no Qdrant collection is built. Returns ``search(query, k)``.
    """
    from indexing.bm25 import BM25Index
    from indexing.passages import Passage
    from indexing.settings import home, validate_index_name

    path = home(root) / "train" / f"bm25-{validate_index_name(index_name)}"
    h = hashlib.sha1()
    for p in passages:
        h.update(f"{p['_id']}\t{text_key(str(p.get('title', '')) + chr(10) + str(p['text']))}\n".encode())
    fingerprint = h.hexdigest()
    stamp = path / "pool.sha1"
    if not (stamp.is_file() and stamp.read_text().strip() == fingerprint):
        items = [
            Passage(
                id=str(p["_id"]),
                doc_id=str(p["_id"]),
                title=str(p.get("title", "")),
                text=str(p["text"]),
                source="",
            )
            for p in passages
        ]
        index = BM25Index.build(path, items, progress=True)
        stamp.write_text(fingerprint + "\n")
    else:
        index = BM25Index.open(path)
    return index.search
