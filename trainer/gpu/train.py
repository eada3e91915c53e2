"""``python -m trainer.gpu.train``: the GPU run — start from the pack, mine, train under a deadline, export.

    pack --build_start--> gated start (== build_from_e5 restricted to the pack's vocabulary; checked against the
         reference logits the pack recorded)  --embed_rows + mine_negatives--> hard negatives (BM25 -> dense -> MMR)
         --Lightning (RerankerModule, bf16-mixed, max_time)--> trained model, learning curve on the pack's dev split
         --write_shards--> OUT/model-0000i-of-0000n.safetensors (fp16, no word table) + vocab_map.safetensors
                           + gpu_run.json (config, curve, gates, timings, mining stats, hashes)

Runs on CPU too (``--device cpu --tiny``: the tests). The run always exports: training is capped by Lightning's
``max_time`` and by ``trainer.deadline_seconds`` from process start, and an exception inside ``fit`` is recorded in
``gpu_run.json`` and the weights reached so far are exported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from trainer.gpu.data import (
    FOLD_SUFFIX,
    DevPairs,
    PackDataModule,
    TokenGroupDataset,
    embed_rows,
    mine_negatives,
    train_records,
)
from trainer.gpu.packio import Pack, PackError, load_pack
from trainer.module import FitScheduleToTime, RerankerModule

__all__ = ["rank_metrics", "GpuRerankerModule", "check_reference", "training_seconds", "run", "main"]

RUN_FILE = "gpu_run.json"


def rank_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int = 10) -> dict[str, float]:
    """Mean MRR@k / NDCG@k over the queries of ``run`` (torchmetrics' retrieval functions; binary relevance, the
    ideal ranking taken over the candidates)."""
    from torchmetrics.functional.retrieval import retrieval_normalized_dcg, retrieval_reciprocal_rank

    mrr, ndcg = [], []
    for q, docs in run.items():
        ids = list(docs)
        preds = torch.tensor([docs[d] for d in ids], dtype=torch.float64)
        target = torch.tensor([qrels.get(q, {}).get(d, 0) > 0 for d in ids])
        mrr.append(float(retrieval_reciprocal_rank(preds, target, top_k=k)))
        ndcg.append(float(retrieval_normalized_dcg(preds, target.long(), top_k=k)))
    n = max(1, len(mrr))
    return {f"mrr@{k}": sum(mrr) / n, f"ndcg@{k}": sum(ndcg) / n}


def _split_run(run: dict[str, dict[str, float]], dev: DevPairs) -> dict[str, dict[str, dict[str, float]]]:
    """A run over every dev query id -> {"": as written, "fold": folded, "<source>": as written, by source}."""
    out: dict[str, dict[str, dict[str, float]]] = {"": {}, "fold": {}}
    for q, docs in run.items():
        if q.endswith(FOLD_SUFFIX):
            out["fold"][q] = docs
        else:
            out[""][q] = docs
            out.setdefault(dev.source[q], {})[q] = docs
    return out


def dev_metrics(run: dict[str, dict[str, float]], dev: DevPairs) -> dict[str, float]:
    """``mrr@10``, ``ndcg@10``, ``mrr@10_fold``, ``mrr@10_<source>`` ... of one head's dev run."""
    out: dict[str, float] = {}
    for part, sub in _split_run(run, dev).items():
        if not sub:
            continue
        m = rank_metrics(dev.qrels, sub)
        if part == "":
            out.update({k: round(v, 5) for k, v in m.items()})
        else:
            out[f"mrr@10_{part}"] = round(m["mrr@10"], 5)
    return out


class GpuRerankerModule(RerankerModule):
    """:class:`trainer.module.RerankerModule` whose validation scores the pack's dev split (no pytrec_eval on the
    GPU machine) and appends a learning-curve row: steps, pairs seen, metrics per head, gate openings."""

    dev: DevPairs
    pairs_per_step: int = 0

    def attach(self, dev: DevPairs, pairs_per_step: int) -> GpuRerankerModule:
        """Set the dev pairs and the pairs per optimizer step (not ``__init__`` arguments: Lightning would store
        them among the hyper-parameters)."""
        self.dev, self.pairs_per_step = dev, int(pairs_per_step)
        self.curve: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        return self

    def on_validation_epoch_end(self) -> None:
        last = self.model.config.num_layers
        gates = self.model.gate_values()
        row: dict[str, Any] = {"step": int(self.global_step), "pairs_seen": int(self.global_step) * self.pairs_per_step,
                               "seconds": round(time.monotonic() - self.t0, 1)}
        for layer in sorted(self._val):
            m = dev_metrics({q: dict(d) for q, d in self._val[layer].items()}, self.dev)
            row.update(m if layer == last else {f"{k}_l{layer}": v for k, v in m.items()})
        row["gates_mean_abs"] = [round(float(x), 5) for x in gates.abs().mean(1)]
        for i, v in enumerate(row["gates_mean_abs"], start=1):
            self.log(f"gates/mean_abs_tanh_l{i}", v)
        if "mrr@10" in row:
            self.log("val/mrr@10", row["mrr@10"])
        self.curve.append(row)
        print("curve " + json.dumps(row), flush=True)


class StepPrinter(L.Callback):
    """One line every ``every`` optimizer steps: loss, learning rate, seconds per step, pairs per second."""

    def __init__(self, every: int, pairs_per_step: int) -> None:
        self.every, self.pairs_per_step = max(1, int(every)), int(pairs_per_step)
        self._t = time.monotonic()
        self._s = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every:
            return
        dt = time.monotonic() - self._t
        rate = (step - self._s) / dt if dt > 0 else 0.0
        self._t, self._s = time.monotonic(), step
        loss = trainer.callback_metrics.get("train/loss")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else 0.0
        print(f"step {step} loss {float(loss) if loss is not None else float('nan'):.4f} lr {lr:.2e} "
              f"steps/s {rate:.2f} pairs/s {rate * self.pairs_per_step:.0f}", flush=True)


def check_reference(model: torch.nn.Module, pack: Pack, device: torch.device) -> float:
    """Largest |start logit - the pack's build_from_e5 logit| over its reference pairs and common heads (fp32,
    no TF32)."""
    prev = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ids = torch.as_tensor(pack["ref_input_ids"]).to(device)
            mask = torch.as_tensor(pack["ref_attention_mask"]).to(device)
            exits = model.forward_exits(ids, mask)
        ref = torch.as_tensor(pack["ref_logits"])
        layers = [int(x) for x in pack.manifest["reference"]["layers"]]
        diffs = [float((exits[k].float().cpu() - ref[:, j]).abs().max()) for j, k in enumerate(layers) if k in exits]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
        model.train(was)
    if not diffs:
        raise PackError(f"no head of the model is among the pack's reference layers {layers}")
    return max(diffs)


def training_seconds(max_time: str, deadline_s: float, elapsed_s: float, reserve_s: float) -> float:
    """Lightning's ``max_time`` for fit: the config's ``DD:HH:MM:SS``, cut so that fit ends ``reserve_s`` before
    ``deadline_s`` (counted from process start, ``elapsed_s`` of it gone); at least 1 s."""
    d, h, m, s = (int(x) for x in max_time.split(":"))
    return max(1.0, min(((d * 24 + h) * 60 + m) * 60 + s, deadline_s - elapsed_s - reserve_s))


def _apply(cfg: dict, overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        node = cfg
        *parts, last = key.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value


def run(pack_dir: str | Path, config: str | Path, out: str | Path, shipped_dir: str | Path, device: str = "auto",
        tiny: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """The whole GPU run (see the module docstring) -> the content of ``gpu_run.json``."""
    from trainer.cli_fit import load_config
    from trainer.config import FitConfig
    from trainer.gpu.shards import MIB, write_shards
    from trainer.gpu.weights import build_start

    t0 = time.monotonic()
    phases: dict[str, float] = {}
    last = [t0]

    def mark(name: str) -> None:
        now = time.monotonic()
        phases[name], last[0] = round(now - last[0], 2), now
        print(f"phase {name}: {phases[name]} s (total {now - t0:.1f} s)", flush=True)

    cfg = load_config(config, [])
    if tiny:
        _apply(cfg, cfg.get("tiny") or {})
    cfg = load_config_from(cfg, overrides or [])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev_name = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dev = torch.device(dev_name)
    seed = int(cfg.get("seed", 13))
    L.seed_everything(seed, workers=True)
    tcfg, dcfg, mcfg, model_cfg = cfg["trainer"], cfg["data"], cfg["mine"], cfg["model"]

    pack = load_pack(pack_dir)
    model, table = build_start(pack, model_cfg, shipped_dir)
    model.to(dev)
    mark("load_pack_and_build_start")
    ref_diff = check_reference(model, pack, dev)
    print(f"reference check: max |logit - build_from_e5| = {ref_diff:.3g}", flush=True)
    if ref_diff > float(tcfg.get("reference_tolerance", 2e-3)):
        raise PackError(f"the start does not score as build_from_e5 did when packing (max |diff| {ref_diff:.3g})")
    torch.set_float32_matmul_precision("high")
    amp = dev.type == "cuda"
    is_dev = pack["q_dev"].astype(bool)
    rows, dev_rows = np.flatnonzero(~is_dev), np.flatnonzero(is_dev)
    limit = int(dcfg.get("limit_questions", 0) or 0)  # a smoke run on a real pack (CPU): the first N of each
    if limit:
        rows, dev_rows = rows[:limit], dev_rows[:limit]
    bs = int(mcfg.get("embed_batch_size", 512))
    used = np.unique(np.concatenate([pack["q_pos"][r] for r in rows] + [pack["q_cands"][rows].ravel()]))
    used = used[used >= 0]
    pvec = torch.zeros(len(pack["passages"]), model.config.hidden_size)
    pvec[torch.as_tensor(used)] = embed_rows(model, pack, "passage", used, dev, bs, amp)
    qvec = embed_rows(model, pack, "query", rows, dev, bs, amp)
    mark("embed")
    n_neg = int(dcfg["n_neg"])
    negs, mstats = mine_negatives(pack, rows, pvec, qvec, int(mcfg.get("n_mine", 10)), n_neg,
                                  float(mcfg.get("mmr_lambda", 0.7)), float(mcfg.get("dup_cosine", 0.95)), seed)
    mark("mine")
    mq, ml = int(model_cfg["max_query_length"]), int(model_cfg["max_length"])
    records = train_records(pack, rows, negs, dcfg.get("source_weights"))
    train_set = TokenGroupDataset(pack, records, n_neg, seed, float(dcfg.get("fold_prob", 0.25)),
                                  float(dcfg.get("fold_partial", 0.5)), bool(dcfg.get("match_ict_lengths", True)))
    dev_set = DevPairs(pack, dev_rows)
    dm = PackDataModule(train_set, dev_set, int(dcfg["batch_size"]), int(dcfg.get("eval_batch_size", 256)), mq, ml,
                        int(dcfg.get("bucket_multiplier", 50)), int(dcfg.get("num_workers", 0)), seed)
    pairs_per_step = int(dcfg["batch_size"]) * (1 + n_neg)
    max_steps = int(tcfg["max_steps"])
    module = GpuRerankerModule(model_config=model_cfg, model=model, total_steps=max_steps,
                               **FitConfig.from_sections(cfg).module_kwargs()).attach(dev_set, pairs_per_step)
    budget = training_seconds(str(tcfg.get("max_time", "00:00:06:00")), float(tcfg.get("deadline_seconds", 510)),
                              time.monotonic() - t0, float(tcfg.get("export_reserve_seconds", 40)))
    print(f"training budget: {budget:.0f} s", flush=True)
    precision = str(tcfg.get("precision", "bf16-mixed"))
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu", devices=1, precision=precision, max_steps=max_steps,
        max_time=timedelta(seconds=budget), val_check_interval=int(tcfg.get("val_check_interval", 200)),
        check_val_every_n_epoch=None, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=float(tcfg.get("gradient_clip_val", 1.0)),
        default_root_dir=tempfile.mkdtemp(prefix="gpu-train-"),
        callbacks=[FitScheduleToTime(max_steps, measure_after=min(20, max_steps), every=50,
                                     reserve_s=float(tcfg.get("reserve_seconds", 20))),
                   StepPrinter(int(tcfg.get("print_every_n_steps", 50)), pairs_per_step)],
    )
    first_stage = dev_metrics(dev_set.first_stage, dev_set)
    print("first stage (BM25 order) " + json.dumps(first_stage), flush=True)
    trainer.validate(module, dm, verbose=False)
    mark("validate_step0")
    fit_error = None
    try:
        trainer.fit(module, dm)
    except Exception:  # the run must still bring back what it trained
        fit_error = traceback.format_exc()
        print(fit_error, file=sys.stderr, flush=True)
    mark("fit")
    if not module.curve or module.curve[-1]["step"] != trainer.global_step:
        try:
            trainer.validate(module, dm, verbose=False)
        except Exception:  # e.g. after a CUDA error in fit: export anyway
            fit_error = (fit_error or "") + traceback.format_exc()
            print(traceback.format_exc(), file=sys.stderr, flush=True)
    mark("validate_final")
    model = module.model.float().cpu().eval()
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[
        str(cfg.get("export", {}).get("dtype", "float16"))]
    shards = write_shards(model.state_dict(), out, dtype, int(float(cfg.get("export", {}).get("shard_mib", 15)) * MIB),
                          exclude=("embeddings.word.weight",))
    from reranker.vocab import VocabMap

    VocabMap(torch.as_tensor(pack["vocab_old_ids"]), int(pack.manifest["vocab"]["old_vocab_size"])).save(out)
    mark("export")
    result = {
        "config": model.config.to_dict(), "fit_config": cfg, "tiny": tiny, "fit_error": fit_error,
        "global_step": int(trainer.global_step), "pairs_seen": int(trainer.global_step) * pairs_per_step,
        "train_questions": len(rows), "train_records": len(records), "dev_questions": len(dev_rows),
        "first_stage": first_stage, "curve": module.curve,
        "gates": [[round(float(x), 6) for x in r] for r in model.gate_values()],
        "mining": mstats, "reference_max_abs_diff": ref_diff, "word_table": table, "phases_seconds": phases,
        "seconds": round(time.monotonic() - t0, 1), "precision": precision, "shards": shards,
        "export_dtype": str(dtype).replace("torch.", ""),
        "pack": {"manifest_sha256": _manifest_sha(pack), "counts": pack.manifest["counts"],
                 "inputs_sha256": pack.manifest.get("recipe", {}).get("inputs_sha256", {})},
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version()},
    }
    (out / RUN_FILE).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"global_step": result["global_step"], "pairs_seen": result["pairs_seen"],
                      "final": module.curve[-1] if module.curve else None, "seconds": result["seconds"],
                      "fit_error": bool(fit_error)}), flush=True)
    return result


def load_config_from(cfg: dict, overrides: list[str]) -> dict:
    """``section.key=value`` overrides (YAML values) applied to a loaded config."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise SystemExit(f"override {item!r} is not of the form section.key=value")
        key, value = item.split("=", 1)
        _apply(cfg, {key: yaml.safe_load(value)})
    return cfg


def _manifest_sha(pack: Pack) -> str:
    from trainer.gpu.packio import MANIFEST, sha256_file

    return sha256_file(pack.root / MANIFEST)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.gpu.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default="var/gpu_pack")
    p.add_argument("--config", default="trainer/configs/viranker-gated-gpu.yaml")
    p.add_argument("--out", default=os.environ.get("OUT", "var/gpu_out"))
    p.add_argument("--shipped", default="assets/models/viranker-small", help="model dir with the word rows")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="apply the config's `tiny` section (CPU tests)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. trainer.max_time=00:00:04:00")
    a = p.parse_args(argv)
    run(a.pack, a.config, a.out, a.shipped, a.device, a.tiny, a.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
