"""The pack's training questions and their BM25 candidates (CPU side: underthesea, Whoosh).

The same sources and exclusions as ``python -m trainer mine`` (:mod:`trainer.cli_mine`): a seeded sample of the
viwiki paragraph pool drawn after blocking the demo corpus, the evaluation sets and the hard dev sets' passages
(by id, exact text and near-duplicate text), one inverse-cloze question per sampled paragraph
(:func:`trainer.ict.make_ict_examples`) and the Nanibot **train** questions whose positive is not blocked.
XQuAD-vi and test splits are refused.

The held-back dev split is chosen **by document group** (:func:`trainer.pool.group_of`: a viwiki article, a
Nanibot paragraph), so no dev question shares its positive's group with a training question (Nanibot has 8-9
questions per paragraph; a split by question would leak them, docs/benchmarks.md "Learned blend").

BM25 (``bm25s`` over normalized syllables, or the project's Whoosh index: :mod:`trainer.searchers`) runs once per
question; hits are appended to a JSONL in the work dir, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainer.paths import resolve

__all__ = ["Question", "Sources", "collect_sources", "stale_inputs", "split_dev", "bm25_hits", "train_candidates",
           "default_block_corpora", "default_block_ids", "default_hard_sets"]

HARD_SET_CORPORA = ["var/devsets/nanibot-test-hard/corpus.jsonl", "var/devsets/xquad-vi-hard/corpus.jsonl"]
HARD_SET_IDS = ["var/train/hard_distractor_ids.txt"]


@dataclass(frozen=True)
class Question:
    """A training / dev question: its text, positive pool ids and, for inverse-cloze, the positive's text (the
    paragraph without the question's sentence when ``removed``)."""

    qid: str
    text: str
    positive_ids: tuple[str, ...]
    source: str
    positive_text: str | None = None  # ICT only
    removed: bool = False  # ICT: the sentence was cut out of the positive


@dataclass
class Sources:
    pool: list[dict]  # {_id, title, text}: the sampled paragraphs + the Nanibot train positives
    questions: list[Question]
    counts: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # path -> sha256 of the small inputs (block lists, hard sets)


def default_block_corpora() -> list[str]:
    """``trainer mine``'s defaults: the demo corpus and the evaluation sets' test passages (id, text, near-dup)."""
    from trainer.cli_mine import DEFAULT_BLOCK_CORPORA

    return list(DEFAULT_BLOCK_CORPORA)


def default_block_ids() -> list[str]:
    """``trainer mine``'s default id lists + the hard dev sets' distractor ids where they exist."""
    from trainer.cli_mine import DEFAULT_BLOCK_IDS

    return [*DEFAULT_BLOCK_IDS, *(p for p in HARD_SET_IDS if resolve(p).is_file())]


def default_hard_sets() -> list[str]:
    """The hard dev sets' corpora that exist: every passage of theirs is blocked by id (their distractors, also
    when the sets grow), except the training split's paragraphs that Nanibot's hard set carries."""
    return [p for p in HARD_SET_CORPORA if resolve(p).is_file()]


def _sha256(path: Path) -> str:
    from trainer.gpu.packio import sha256_file

    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(path)}\t{sha256_file(p)}\n".encode())
        return h.hexdigest()
    return sha256_file(path)


def collect_sources(pool_path: str, pool_sample: int, beir_dirs: Sequence[str], beir_prefix: str,
                    block_corpora: Sequence[str], block_ids: Sequence[str], seed: int = 13,
                    ict: int = 0, ict_cache: Path | None = None, ict_rounds: int = 1,
                    hard_sets: Sequence[str] = ()) -> Sources:
    """Pool + questions, blocked as ``trainer mine`` blocks them. ``ict`` caps the inverse-cloze questions
    per round (0 = one per sampled paragraph that has an eligible sentence); each of ``ict_rounds`` rounds draws
    another sentence per paragraph (seed + round; a sentence drawn twice counts once). ``ict_cache``: JSONL reused when its
    fingerprint (pool ids, seed) matches (sentence splitting is the slow part). ``hard_sets``: corpora whose
    passages are blocked by id, but for the training questions' own positives."""
    from trainer.cli_mine import _blocked_records  # noqa: PLC2701 - trainer mine's own blocking rule
    from trainer.ict import make_ict_examples
    from trainer.mine import Blocklist, load_beir_train_queries, read_jsonl, sample_pool

    for d in beir_dirs:
        if "xquad" in Path(d).name.lower():
            raise SystemExit(f"refusing to train on an evaluation set: {d}")
    inputs: dict[str, str] = {}
    beir = []
    for d in beir_dirs:
        qs, used = load_beir_train_queries(resolve(d), "train", beir_prefix or None, source=f"{Path(d).name}-train")
        if any(q.query_id.startswith("nanibot-test") for q in qs):
            raise SystemExit("refusing nanibot test queries")
        beir.append((d, qs, used))
        inputs[f"{d}/qrels/train.tsv"] = _sha256(resolve(d) / "qrels" / "train.tsv")
    train_pos = {pid for _, _, used in beir for pid in used}
    block = Blocklist()
    for f in hard_sets:
        p = resolve(f)
        block.ids.update(str(r["_id"]) for r in read_jsonl(p) if str(r["_id"]) not in train_pos)
        inputs[f] = _sha256(p)
    for f in block_ids:
        p = resolve(f)
        block.ids.update(p.read_text(encoding="utf-8").split())
        inputs[f] = _sha256(p)
    for f in block_corpora:
        p = resolve(f)
        block.add_records(_blocked_records(p, read_jsonl))
        inputs[f] = _sha256(p)
    pool_all = list(read_jsonl(resolve(pool_path)))
    unblocked = [p for p in pool_all if not block.blocks(str(p["_id"]), str(p["text"]))]
    pool = sample_pool(unblocked, pool_sample, seed)
    print(f"pool: {len(pool)} paragraphs of {len(unblocked)} ({len(pool_all) - len(unblocked)} blocked)",
          file=sys.stderr)
    fingerprint = hashlib.sha1(f"{seed}:{ict}:{ict_rounds}:".encode() + "\n".join(str(p["_id"]) for p in pool).encode()).hexdigest()
    examples = None
    if ict_cache is not None and ict_cache.is_file():
        lines = ict_cache.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]).get("fingerprint") == fingerprint:
            examples = [json.loads(x) for x in lines[1:]]
    if examples is None:
        examples, seen = [], set()
        for r in range(max(1, ict_rounds)):
            for e in make_ict_examples(pool, ict or None, seed=seed + r, remove_prob=0.9, min_query_syllables=6):
                if e.query_id not in seen:
                    seen.add(e.query_id)
                    examples.append({"qid": e.query_id, "query": e.query, "positive": e.positive,
                                     "pid": e.passage_id, "removed": e.removed})
        if ict_cache is not None:
            ict_cache.parent.mkdir(parents=True, exist_ok=True)
            ict_cache.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in
                                           [{"fingerprint": fingerprint}, *examples]) + "\n", encoding="utf-8")
    questions = [Question(e["qid"], e["query"], (e["pid"],), "ict", e["positive"], bool(e["removed"]))
                 for e in examples]
    counts = {"pool_unblocked": len(unblocked), "pool_blocked": len(pool_all) - len(unblocked),
              "pool_sample": len(pool), "ict": len(questions)}
    by_id = {str(p["_id"]): p for p in pool}
    for d, qs, used in beir:
        bad = {pid for pid, r in used.items() if block.blocks(pid, str(r["text"]))}
        kept = [q for q in qs if not bad & set(q.positive_ids)]
        for pid, r in used.items():
            if pid not in bad:
                by_id.setdefault(pid, r)
        questions += [Question(q.query_id, q.query, tuple(q.positive_ids), q.source) for q in kept]
        counts[f"{Path(d).name}-train"] = len(kept)
        counts[f"{Path(d).name}-train_dropped_blocked"] = len(qs) - len(kept)
    return Sources(list(by_id.values()), questions, counts, inputs)


def stale_inputs(inputs_sha256: dict[str, str]) -> list[str]:
    """The recorded inputs (block lists, hard-set corpora, train qrels) that changed or vanished since the pack was
    built: a pack built before the hard dev sets grew did not block their new distractors."""
    stale = []
    for name, sha in inputs_sha256.items():
        p = resolve(name)
        if not p.exists() or _sha256(p) != sha:
            stale.append(name)
    return stale


def split_dev(questions: Sequence[Question], dev_counts: dict[str, int], seed: int = 13) -> set[str]:
    """Question ids of the dev split: whole document groups (of the first positive), drawn in a seeded order per
    source until each source has ``dev_counts[source]`` questions; every question on a drawn group is dev."""
    from trainer.pool import group_of

    by_group: dict[str, list[Question]] = {}
    for q in questions:
        for pid in q.positive_ids:
            by_group.setdefault(group_of(pid), []).append(q)
    groups = sorted(by_group)
    random.Random(seed).shuffle(groups)
    dev: set[str] = set()
    have = dict.fromkeys(dev_counts, 0)
    for g in groups:
        members = by_group[g]
        src = members[0].source
        if src not in dev_counts or have[src] >= dev_counts[src]:
            continue
        for q in members:
            if q.qid not in dev:
                dev.add(q.qid)
                have[q.source] = have.get(q.source, 0) + 1
    # a question with a positive in a dev group is dev too (multi-positive questions)
    dev_groups = {group_of(p) for q in questions if q.qid in dev for p in q.positive_ids}
    dev |= {q.qid for q in questions if any(group_of(p) in dev_groups for p in q.positive_ids)}
    return dev


def bm25_hits(questions: Sequence[Question], pool: Sequence[dict], k: int, cache: Path, index_root: Path,
              backend: str = "bm25s", progress: bool = True) -> dict[str, list[tuple[str, float]]]:
    """BM25 top ``k + 4 * positives + 10`` of every question over ``pool``, resumable through ``cache``
    (JSONL ``{"query_id", "hits": [[pid, score], ...]}``; a cut-off last line is redone). ``backend``: "bm25s"
    (in memory, ~2 ms a query over 20k paragraphs here) or "project" (the app's Whoosh index with exact + folded
    fields, ~30x slower), as ``python -m trainer mine --bm25``."""
    from tqdm.auto import tqdm

    from trainer.mine import _repair_tail, done_query_ids  # noqa: PLC2701 - the miner's own crash repair
    from trainer.searchers import Bm25sSearcher, ProjectBM25Searcher

    cache.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(cache)
    done = done_query_ids(cache)
    todo = [q for q in questions if q.qid not in done]
    if todo:
        searcher = (Bm25sSearcher(pool) if backend == "bm25s"
                    else ProjectBM25Searcher(pool, index_name="gpu-pack", root=str(index_root)))
        with open(cache, "a", encoding="utf-8") as f, tqdm(total=len(todo), desc="bm25", unit="q",
                                                           disable=not progress) as bar:
            for q in todo:
                hits = searcher.search(q.text, k + 4 * len(q.positive_ids) + 10)
                f.write(json.dumps({"query_id": q.qid, "hits": [[p, round(s, 4)] for p, s in hits]},
                                   ensure_ascii=False) + "\n")
                bar.update(1)
    out: dict[str, list[tuple[str, float]]] = {}
    for line in cache.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[rec["query_id"]] = [(str(p), float(s)) for p, s in rec["hits"]]
    return out


def train_candidates(q: Question, hits: Sequence[tuple[str, float]], by_id: dict[str, dict], k: int,
                     dup_jaccard: float = 0.5) -> list[tuple[str, float]]:
    """A training question's BM25 hits without its positives, their document groups and near-duplicates of its
    positive texts (syllable-shingle Jaccard > ``dup_jaccard``), as :class:`trainer.mine.NegativeMiner` filters
    them before the dense step; at most ``k``."""
    from trainer.pool import group_of, jaccard, shingles

    ids = set(q.positive_ids)
    groups = {group_of(i) for i in ids}
    pos_texts = [q.positive_text] if q.positive_text else [by_id[i]["text"] for i in q.positive_ids if i in by_id]
    pos_sh = [shingles(t) for t in pos_texts]
    out: list[tuple[str, float]] = []
    for pid, score in hits:
        if pid not in by_id or pid in ids or group_of(pid) in groups or any(pid == o for o, _ in out):
            continue
        if any(jaccard(shingles(by_id[pid]["text"]), p) > dup_jaccard for p in pos_sh):
            continue
        out.append((pid, score))
        if len(out) >= k:
            break
    return out
