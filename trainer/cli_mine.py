"""``python -m trainer mine`` (hard-negative triplets) and ``python -m trainer candidates`` (first-stage
candidates of a dev set, for cheap validation during ``fit``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from indexing.beir import read_qrels
from indexing.jsonl import write_jsonl
from trainer.paths import resolve

# A JSONL file blocks all its passages; a BEIR dir blocks the passages its qrels/test.tsv names.
DEFAULT_BLOCK_CORPORA = [
    "assets/demo/corpus.jsonl",
    "assets/benchmarks/nanibot-qa-test",
    "assets/benchmarks/xquad-vi",
]
DEFAULT_BLOCK_IDS = ["assets/demo/wiki_ids.txt"]



def _add_mine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="build training triplets (ICT + BEIR train qrels, hybrid hard negatives)")
    p.add_argument(
        "--pool", required=True, help="paragraph pool JSONL {_id,title,text} (ICT source + negatives)"
    )
    p.add_argument(
        "--pool-sample",
        type=int,
        default=0,
        help="use a seeded random sample of this many pool paragraphs, drawn after blocking (0 = all)",
    )
    p.add_argument("--pool-vectors", help="precomputed e5 vectors of the pool (.npy with a .json sidecar)")
    p.add_argument("--out", required=True, help="output FlagEmbedding JSONL (appended to; resumable)")
    p.add_argument("--ict", type=int, default=8000, help="number of ICT pseudo-queries (0 = none)")
    p.add_argument(
        "--ict-remove-prob", type=float, default=0.9, help="P(held-out sentence removed from positive)"
    )
    p.add_argument(
        "--ict-min-syllables", type=int, default=6, help="shortest sentence used as a pseudo-query"
    )
    p.add_argument(
        "--beir",
        action="append",
        default=[],
        help="BEIR dir with train qrels (repeatable), e.g. /work/shared/data/nanibot-qa",
    )
    p.add_argument("--beir-split", default="train")
    p.add_argument(
        "--beir-prefix", default="nanibot-train-", help="only query ids with this prefix ('' = all)"
    )
    p.add_argument("--strategy", choices=["hybrid", "random"], default="hybrid")
    p.add_argument(
        "--bm25",
        choices=["project", "bm25s"],
        default="project",
        help="BM25 backend: the project's Whoosh index (default) or in-memory bm25s",
    )
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--n-neg", type=int, default=3)
    p.add_argument("--mmr-lambda", type=float, default=0.7)
    p.add_argument("--dup-cosine", type=float, default=0.95)
    p.add_argument("--dup-jaccard", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument(
        "--block-corpus",
        action="append",
        default=None,
        help=f"JSONL whose passages never enter training (default: {', '.join(DEFAULT_BLOCK_CORPORA)})",
    )
    p.add_argument(
        "--block-ids",
        action="append",
        default=None,
        help=f"file of passage ids never used (default: {', '.join(DEFAULT_BLOCK_IDS)})",
    )
    p.add_argument("--index-name", default="train-pool", help="index name of the pool's BM25 generation")
    p.add_argument("--no-progress", action="store_true")


def _blocked_records(path: Path, read_jsonl) -> list[dict]:
    """Records to block: all of a JSONL file, or the test-qrels passages of a BEIR dir."""
    if path.is_file():
        return list(read_jsonl(path))
    qrels = path / "qrels" / "test.tsv"
    if not qrels.is_file():
        raise SystemExit(f"--block-corpus {path}: neither a JSONL file nor a BEIR dir with qrels/test.tsv")
    ids = {d for docs in read_qrels(qrels, strict=False).values() for d in docs}
    return [r for r in read_jsonl(path / "corpus.jsonl") if str(r["_id"]) in ids]


def _cmd_mine(args: argparse.Namespace) -> int:
    from trainer.ict import make_ict_examples
    from trainer.mine import (
        Blocklist,
        Bm25sSearcher,
        MinerConfig,
        MiningQuery,
        NegativeMiner,
        ProjectBM25Searcher,
        VectorTable,
        load_beir_train_queries,
        load_e5_functions,
        mine_to_jsonl,
        read_jsonl,
        sample_pool,
    )

    t0 = time.time()
    for d in args.beir:
        if "xquad" in Path(d).name.lower() or args.beir_split == "test":
            raise SystemExit(f"refusing to train on an evaluation set: {d} split {args.beir_split}")
    block = Blocklist()
    for f in args.block_ids if args.block_ids is not None else DEFAULT_BLOCK_IDS:
        block.ids.update(resolve(f).read_text(encoding="utf-8").split())
    for f in args.block_corpus if args.block_corpus is not None else DEFAULT_BLOCK_CORPORA:
        block.add_records(_blocked_records(resolve(f), read_jsonl))
    pool_all = list(read_jsonl(resolve(args.pool)))
    pool = [p for p in pool_all if not block.blocks(str(p["_id"]), str(p["text"]))]
    n_unblocked = len(pool)
    pool = sample_pool(pool, args.pool_sample, args.seed)
    print(
        f"pool: {len(pool)} paragraphs of {n_unblocked} ({len(pool_all) - n_unblocked} blocked as demo/eval passages)",
        file=sys.stderr,
    )

    queries: list[MiningQuery] = []
    if args.ict > 0:
        ict = make_ict_examples(
            pool,
            args.ict,
            seed=args.seed,
            remove_prob=args.ict_remove_prob,
            min_query_syllables=args.ict_min_syllables,
        )
        queries += [MiningQuery(e.query_id, e.query, (e.positive,), (e.passage_id,), "ict") for e in ict]
        print(f"ict: {len(ict)} pseudo-queries", file=sys.stderr)
    neg_pool = {str(p["_id"]): p for p in pool}
    for d in args.beir:
        qs, used = load_beir_train_queries(
            resolve(d), args.beir_split, args.beir_prefix or None, source=f"{Path(d).name}-{args.beir_split}"
        )
        if any(q.query_id.startswith("nanibot-test") for q in qs):
            raise SystemExit("refusing nanibot test queries")
        bad = {pid for pid, r in used.items() if block.blocks(pid, str(r["text"]))}
        kept = [q for q in qs if not bad & set(q.positive_ids)]
        for pid, r in used.items():
            if pid not in bad:
                neg_pool.setdefault(pid, r)
        print(
            f"{d}: {len(kept)} train queries ({len(qs) - len(kept)} dropped: positive is a demo/eval passage)",
            file=sys.stderr,
        )
        queries += kept

    cfg = MinerConfig(
        strategy=args.strategy,
        top_k=args.top_k,
        n_neg=args.n_neg,
        mmr_lambda=args.mmr_lambda,
        dup_cosine=args.dup_cosine,
        dup_jaccard=args.dup_jaccard,
        seed=args.seed,
    )
    pool_list = list(neg_pool.values())
    embed_q = bm25 = vectors = None
    model_id = None
    if cfg.strategy == "hybrid":
        embed_q, embed_p, model_id = load_e5_functions("e5-small")
        if args.pool_vectors:
            vectors = VectorTable.from_files(
                resolve(args.pool_vectors), embed_passages=embed_p, model_id=model_id
            )
        else:
            vectors = VectorTable([], __import__("numpy").zeros((0, 384), "float32"), embed_passages=embed_p)
        missing = [p["text"] for p in pool_list if p["text"] not in vectors]
        if missing:
            from tqdm.auto import tqdm

            print(f"embedding {len(missing)} pool passages without precomputed vectors", file=sys.stderr)
            with tqdm(total=len(missing), desc="embed pool", unit="passage", disable=args.no_progress) as bar:
                for i in range(0, len(missing), 64):
                    vectors.get(missing[i : i + 64])
                    bar.update(len(missing[i : i + 64]))
        print("building BM25 over the negative pool ...", file=sys.stderr)
        bm25 = (
            Bm25sSearcher(pool_list)
            if args.bm25 == "bm25s"
            else ProjectBM25Searcher(pool_list, index_name=args.index_name)
        )
    miner = NegativeMiner(pool_list, bm25, vectors, cfg)
    out = resolve(args.out) if not Path(args.out).is_absolute() else Path(args.out)
    stats = mine_to_jsonl(miner, queries, out, embed_queries=embed_q, progress=not args.no_progress)
    meta = {
        "command": "python -m trainer " + " ".join(args.argv),
        "pool": str(args.pool),
        "pool_size": len(pool_list),
        "queries": len(queries),
        "sources": {s: sum(q.source == s for q in queries) for s in sorted({q.source for q in queries})},
        "miner": vars(cfg),
        "embedder": model_id,
        "bm25": args.bm25 if cfg.strategy == "hybrid" else None,
        "stats": vars(stats),
        "seconds": round(time.time() - t0, 1),
    }
    Path(str(out) + ".meta.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(stats.summary(), file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- candidates
def _add_candidates(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("candidates", help="first-stage top-k candidates of a dev BEIR set (for validation)")
    p.add_argument(
        "--beir", default="assets/benchmarks/nanibot-qa-test", help="BEIR dir (corpus, queries, qrels)"
    )
    p.add_argument("--split", default="test", help="qrels file name without .tsv")
    p.add_argument("--k", type=int, default=8, help="candidates per query")
    p.add_argument("--max-queries", type=int, default=32, help="sampled queries (seeded); 0 = all")
    p.add_argument(
        "--all-queries",
        action="store_true",
        help="keep queries whose positive is not in the top k (default: drop them; they cannot move)",
    )
    p.add_argument("--bm25", choices=["project", "bm25s"], default="project")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", required=True)


def _cmd_candidates(args: argparse.Namespace) -> int:
    import random
    import tempfile

    from trainer.mine import Bm25sSearcher, load_beir_train_queries, read_jsonl

    beir = resolve(args.beir)
    queries, _ = load_beir_train_queries(beir, args.split)
    corpus = list(read_jsonl(beir / "corpus.jsonl"))
    by_id = {str(r["_id"]): r for r in corpus}
    with tempfile.TemporaryDirectory() as tmp:
        if args.bm25 == "bm25s":
            search = Bm25sSearcher(corpus).search
        else:
            from trainer.mine import ProjectBM25Searcher

            search = ProjectBM25Searcher(corpus, index_name="dev-candidates", root=tmp).search
        rng = random.Random(args.seed)
        order = list(range(len(queries)))
        rng.shuffle(order)
        out_recs = []
        for i in order:
            q = queries[i]
            hits = search(q.query, args.k)
            if not args.all_queries and not set(q.positive_ids) & {h[0] for h in hits}:
                continue
            out_recs.append(
                {
                    "query_id": q.query_id,
                    "query": q.query,
                    "positives": list(q.positive_ids),
                    "candidates": [{"id": h, "text": by_id[h]["text"], "score": s} for h, s in hits],
                }
            )
            if args.max_queries and len(out_recs) >= args.max_queries:
                break
    out = resolve(args.out) if not Path(args.out).is_absolute() else Path(args.out)
    write_jsonl(out, out_recs)
    n_pairs = sum(len(r["candidates"]) for r in out_recs)
    print(f"wrote {len(out_recs)} queries / {n_pairs} pairs to {out}", file=sys.stderr)
    return 0
