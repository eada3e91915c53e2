"""``python -m trainer {mine,candidates,fit,export}`` — the training command line.

- ``mine``: ICT triplets from a paragraph pool + BEIR train qrels → hard negatives → FlagEmbedding JSONL.
- ``candidates``: a dev BEIR set → first-stage top-k candidates JSONL (cheap validation during ``fit``).
- ``fit``: Lightning training from a YAML config (``--config``) with ``section.key=value`` overrides.
- ``export``: a Lightning checkpoint → a ``from_pretrained`` directory with a model card.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from indexing.beir import read_qrels
from indexing.jsonl import write_jsonl
from indexing.settings import REPO_ROOT

# A JSONL file blocks all its passages; a BEIR dir blocks the passages its qrels/test.tsv names.
DEFAULT_BLOCK_CORPORA = [
    "assets/demo/corpus.jsonl",
    "assets/benchmarks/nanibot-qa-test",
    "assets/benchmarks/xquad-vi",
]
DEFAULT_BLOCK_IDS = ["assets/demo/wiki_ids.txt"]


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


# ---------------------------------------------------------------------------------------------- mine
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
        block.ids.update(_resolve(f).read_text(encoding="utf-8").split())
    for f in args.block_corpus if args.block_corpus is not None else DEFAULT_BLOCK_CORPORA:
        block.add_records(_blocked_records(_resolve(f), read_jsonl))
    pool_all = list(read_jsonl(_resolve(args.pool)))
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
            _resolve(d), args.beir_split, args.beir_prefix or None, source=f"{Path(d).name}-{args.beir_split}"
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
                _resolve(args.pool_vectors), embed_passages=embed_p, model_id=model_id
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
    out = _resolve(args.out) if not Path(args.out).is_absolute() else Path(args.out)
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

    beir = _resolve(args.beir)
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
    out = _resolve(args.out) if not Path(args.out).is_absolute() else Path(args.out)
    write_jsonl(out, out_recs)
    n_pairs = sum(len(r["candidates"]) for r in out_recs)
    print(f"wrote {len(out_recs)} queries / {n_pairs} pairs to {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- fit
def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """YAML config + ``section.key=value`` overrides (values parsed as YAML) → dict."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for item in overrides or []:
        if "=" not in item:
            raise SystemExit(f"override {item!r} is not of the form section.key=value")
        key, value = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SystemExit(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return cfg


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train a ViRanker with Lightning from a YAML config")
    p.add_argument("--config", required=True, help="e.g. trainer/configs/viranker-small-cpu.yaml")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/checkpoints/last.ckpt")
    p.add_argument("--no-export", action="store_true", help="skip exporting at the end")
    p.add_argument("overrides", nargs="*", help="section.key=value (YAML values), e.g. optim.lr=3e-5")


def _cmd_fit(args: argparse.Namespace) -> int:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from trainer.data import RerankDataModule
    from trainer.module import FitScheduleToTime, RerankerModule

    cfg = load_config(args.config, args.overrides)
    tcfg = dict(cfg.get("trainer", {}))
    run_dir = _resolve_out(tcfg.pop("run_dir", "runs/viranker"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        __import__("yaml").safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    L.seed_everything(int(cfg.get("seed", 13)), workers=True)
    threads = tcfg.pop("threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    max_steps = int(tcfg.pop("max_steps"))
    max_time = tcfg.pop("max_time", None)
    fit_to_time = bool(tcfg.pop("fit_schedule_to_time", True)) and max_time is not None
    ckpt_every = int(tcfg.pop("checkpoint_every_n_steps", 50))
    gpu = torch.cuda.is_available()
    precision = tcfg.pop("precision", "auto")
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"

    data_cfg = dict(cfg.get("data", {}))
    data_cfg["train_files"] = [str(_resolve(f)) for f in data_cfg.get("train_files", [])]
    if data_cfg.get("val_candidates"):
        data_cfg["val_candidates"] = str(_resolve(data_cfg["val_candidates"]))
    model_cfg = dict(cfg.get("model", {}))
    data_cfg.setdefault("max_query_length", model_cfg.get("max_query_length", 32))
    data_cfg.setdefault("max_length", model_cfg.get("max_length", 192))
    loss_cfg = dict(cfg.get("loss", {}))
    optim_cfg = dict(cfg.get("optim", {}))
    module = RerankerModule(
        model_config=model_cfg,
        loss=loss_cfg.get("name", "triplet"),
        margin=float(loss_cfg.get("margin", 1.0)),
        temperature=float(loss_cfg.get("temperature", 1.0)),
        exit_weights=loss_cfg.get("exit_weights"),
        optimizer=optim_cfg.get("name", "adamw"),
        lr=float(optim_cfg.get("lr", 5e-5)),
        head_lr_scale=float(optim_cfg.get("head_lr_scale", 1.0)),
        weight_decay=float(optim_cfg.get("weight_decay", 0.01)),
        betas=optim_cfg.get("betas"),
        warmup_steps=optim_cfg.get("warmup_steps"),
        warmup_ratio=float(optim_cfg.get("warmup_ratio", 0.06)),
        total_steps=max_steps,
        min_lr_ratio=float(optim_cfg.get("min_lr_ratio", 0.0)),
    )
    data_cfg.setdefault("architecture", module.model.config.architecture)  # the pair format follows the model
    dm = RerankDataModule(**data_cfg, seed=int(cfg.get("seed", 13)))
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="step-{step}",
            save_last=True,
            save_top_k=1,
            monitor="step",
            mode="max",
            every_n_train_steps=ckpt_every,
        ),
        LearningRateMonitor(logging_interval="step"),
    ]
    if fit_to_time:
        callbacks.append(FitScheduleToTime(max_steps, reserve_s=float(tcfg.pop("reserve_seconds", 180))))
    else:
        tcfg.pop("reserve_seconds", None)
    loggers: list = [CSVLogger(str(run_dir), name="logs")]  # logs/version_N: a resume gets a new N
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run_dir), name="tb"))
    except (ImportError, ModuleNotFoundError):
        pass
    has_val = bool(data_cfg.get("val_candidates"))
    val_every = tcfg.pop("val_check_interval", 100)
    trainer = L.Trainer(
        max_steps=max_steps,
        max_time=max_time,
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision=precision,
        gradient_clip_val=float(tcfg.pop("gradient_clip_val", 1.0)),
        val_check_interval=val_every if has_val else None,
        check_val_every_n_epoch=None if has_val else 1,
        limit_val_batches=tcfg.pop("limit_val_batches", None) if has_val else 0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=str(run_dir),
        **tcfg,
    )
    ckpt_path = None
    if args.resume:
        last = ckpt_dir / "last.ckpt"
        if not last.is_file():
            raise SystemExit(f"--resume: no {last}")
        ckpt_path = str(last)
    t0 = time.time()
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    final = ckpt_dir / "final.ckpt"
    trainer.save_checkpoint(str(final))
    metrics: dict = {}
    if has_val:
        res = trainer.validate(module, dm, verbose=False)
        metrics = {k: float(v) for k, v in (res[0] if res else {}).items()}
    summary = {
        "command": "python -m trainer " + " ".join(args.argv),
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "wall_seconds": round(time.time() - t0, 1),
        "metrics": metrics,
        "precision": precision,
        "device": torch.cuda.get_device_name(0)
        if gpu
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)",
        "train_records": len(dm.train_set) if dm.train_set is not None else None,
        "config": cfg,
    }
    (run_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(
        json.dumps({k: summary[k] for k in ("global_step", "wall_seconds", "metrics")}, indent=2),
        file=sys.stderr,
    )
    out_dir = (cfg.get("export") or {}).get("out_dir")
    if out_dir and not args.no_export:
        ex = cfg.get("export") or {}
        _run_export(final, _resolve_out(out_dir), ex.get("vocab_corpus"), ex.get("dtype", "float16"))
    return 0


# ---------------------------------------------------------------------------------------------- export
DEFAULT_VOCAB_CORPORA = ["/work/shared/data/viwiki/paragraphs.jsonl.gz", "assets/demo/corpus.jsonl"]


def _resolve_out(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint → vocabulary-pruned fp16 from_pretrained dir + model card")
    p.add_argument("ckpt", help="a trainer checkpoint (e.g. runs/<run>/checkpoints/final.ckpt)")
    p.add_argument("out_dir", help="e.g. assets/models/viranker-small")
    p.add_argument(
        "--vocab-corpus",
        action="append",
        default=None,
        help="JSONL(.gz) whose texts decide the kept vocabulary (repeatable; default: viwiki "
        "paragraphs + demo corpus + the run's training files); 'none' = no pruning",
    )
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])


def _cmd_export(args: argparse.Namespace) -> int:
    _run_export(Path(args.ckpt), _resolve_out(args.out_dir), args.vocab_corpus, args.dtype)
    return 0


def _run_export(ckpt: Path, out_dir: Path, vocab_corpus: list[str] | None, dtype: str) -> None:
    from trainer.export import export_model, iter_corpus_texts, load_checkpoint_model, write_model_card

    model, meta = load_checkpoint_model(ckpt)
    run_dir = ckpt.parent.parent
    summary = (
        json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        if (run_dir / "summary.json").is_file()
        else {}
    )
    cfg = summary.get("config", {})
    data_cfg = cfg.get("data", {})
    train_files = [str(_resolve(f)) for f in data_cfg.get("train_files", [])]
    if vocab_corpus and [v.lower() for v in vocab_corpus] == ["none"]:
        vocab_texts = None
    else:
        files = [_resolve(f) for f in (vocab_corpus or DEFAULT_VOCAB_CORPORA + train_files)]
        files = [f for f in files if f.is_file()]
        if not files:
            raise SystemExit("export: none of the vocabulary corpora exist; pass --vocab-corpus or 'none'")
        print(f"collecting vocabulary from {', '.join(map(str, files))}", file=sys.stderr)
        vocab_texts = iter_corpus_texts(files)
    info = export_model(model, out_dir, vocab_texts=vocab_texts, dtype=dtype)
    mine_cmds = []
    for f in train_files:
        m = Path(f + ".meta.json")
        if m.is_file():
            mine_cmds.append(json.loads(m.read_text(encoding="utf-8")).get("command", ""))
    val = data_cfg.get("val_candidates")
    card = {
        "name": out_dir.name,
        "config": model.config.to_dict(),
        "export": info,
        "train": {
            "global_step": meta.get("global_step"),
            "epoch": meta.get("epoch"),
            "batch_size": data_cfg.get("batch_size"),
            "n_neg": data_cfg.get("n_neg"),
            "loss": (meta.get("hyper_parameters") or {}).get("loss"),
            "optimizer": (meta.get("hyper_parameters") or {}).get("optimizer"),
            "lr": (meta.get("hyper_parameters") or {}).get("lr"),
            "wall_time": f"{summary['wall_seconds'] / 60:.1f} min" if "wall_seconds" in summary else "?",
        },
        "hardware": summary.get("device"),
        "data": {
            "description": "inverse-cloze (sentence → rest of its paragraph) triplets from Vietnamese Wikipedia "
            "paragraphs outside the demo corpus, plus nanibot-qa train questions; 3 hybrid hard "
            "negatives each; 25% of queries with diacritics stripped (all or some syllables)",
            "train_files": [
                str(Path(f).relative_to(REPO_ROOT)) if f.startswith(str(REPO_ROOT)) else f
                for f in train_files
            ],
            "records": summary.get("train_records"),
        },
        "validation_note": f"Candidates: `{val}` (BM25 top-k of the nanibot-qa test split over its own corpus, "
        "queries whose positive is among them)."
        if val
        else "",
        "metrics": summary.get("metrics", {}),
        "commands": {
            **{f"mine{i}": c for i, c in enumerate(mine_cmds)},
            "fit": summary.get("command", "python -m trainer fit --config <config>"),
            "export": f"python -m trainer export {ckpt.relative_to(REPO_ROOT) if str(ckpt).startswith(str(REPO_ROOT)) else ckpt} "
            f"{out_dir.relative_to(REPO_ROOT) if str(out_dir).startswith(str(REPO_ROOT)) else out_dir}",
        },
    }
    write_model_card(out_dir, card)
    print(
        f"exported {out_dir}: vocab {info['vocab_size']} / {info['vocab_size_before']}, {info['dtype']}, "
        f"{info['weights_bytes'] / 1e6:.1f} MB",
        file=sys.stderr,
    )


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_mine(sub)
    _add_candidates(sub)
    _add_fit(sub)
    _add_export(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return {"mine": _cmd_mine, "candidates": _cmd_candidates, "fit": _cmd_fit, "export": _cmd_export}[
        args.cmd
    ](args)


if __name__ == "__main__":
    sys.exit(main())
