"""``python -m trainer export``: a Lightning checkpoint → a vocabulary-pruned ``from_pretrained`` directory with
a model card (:mod:`trainer.export` does the work).

To ship it small afterwards: ``python -m reranker.compact OUT_DIR`` stores frozen e5 word embeddings as e5's own
Q4_0 blocks and drops the layers past the deepest head its ``inference.json`` serves (exact; :mod:`reranker.compact`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexing.settings import REPO_ROOT
from trainer.paths import resolve, resolve_out

DEFAULT_VOCAB_CORPORA = ["/work/shared/data/viwiki/paragraphs.jsonl.gz", "assets/demo/corpus.jsonl"]


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
    run_export(Path(args.ckpt), resolve_out(args.out_dir), args.vocab_corpus, args.dtype)
    return 0


def run_export(ckpt: Path, out_dir: Path, vocab_corpus: list[str] | None, dtype: str) -> None:
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
    train_files = [str(resolve(f)) for f in data_cfg.get("train_files", [])]
    if vocab_corpus and [v.lower() for v in vocab_corpus] == ["none"]:
        vocab_texts = None
    else:
        files = [resolve(f) for f in (vocab_corpus or DEFAULT_VOCAB_CORPORA + train_files)]
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
