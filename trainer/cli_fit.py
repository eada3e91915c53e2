"""``python -m trainer fit``: Lightning training from a YAML config with ``section.key=value`` overrides. The
``loss``/``optim`` sections are :class:`trainer.config.FitConfig` (defaults written once, shared with
:class:`trainer.module.RerankerModule`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from trainer.cli_export import run_export
from trainer.config import FitConfig
from trainer.paths import resolve, resolve_out


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
    run_dir = resolve_out(tcfg.pop("run_dir", "runs/viranker"))
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
    data_cfg["train_files"] = [str(resolve(f)) for f in data_cfg.get("train_files", [])]
    if data_cfg.get("val_candidates"):
        data_cfg["val_candidates"] = str(resolve(data_cfg["val_candidates"]))
    model_cfg = dict(cfg.get("model", {}))
    data_cfg.setdefault("max_query_length", model_cfg.get("max_query_length", 32))
    data_cfg.setdefault("max_length", model_cfg.get("max_length", 192))
    try:
        fit_cfg = FitConfig.from_sections(cfg)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"{args.config}: {err}") from None
    module = RerankerModule(model_config=model_cfg, total_steps=max_steps, **fit_cfg.module_kwargs())
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
        run_export(final, resolve_out(out_dir), ex.get("vocab_corpus"), ex.get("dtype", "float16"))
    return 0
