"""The LightningModule that trains a ViRanker model of either architecture (``joint``: reranker.model.ViRanker,
``gated``: reranker.gated.GatedRanker) — loss, optimizer, schedule, logging.

The plain model lives in ``reranker/``; this module only adds training concerns:

- ``training_step``: groups of ``1 + n_neg`` pairs → logits of every scoring head (``forward_exits``) →
  a ranking loss per head (:mod:`trainer.losses`) → weighted sum (early exits trained jointly).
- ``validation_step`` / ``on_validation_epoch_end``: rerank fixed first-stage candidates, log MRR@10 and
  NDCG@10 per head (``search.metrics.evaluate``, pytrec_eval) and the first-stage baseline; for the gated
  architecture also the cross-attention gates, mean |tanh g| per layer (``gates/mean_abs_tanh_l{i}``).
- ``configure_optimizers``: AdamW or Lion (:mod:`trainer.optim`), linear warmup + cosine decay per step.

The model is built from ``model_config``: ``init`` = ``"e5"`` (multilingual-e5-small weights via
``reranker.e5_init.build_from_e5``), ``"random"`` (a fresh :class:`ViRankerConfig`, for tests) or a model
directory (``reranker.factory.load_model``); the remaining keys are :class:`ViRankerConfig` fields (``architecture``
included) plus
``freeze_word_embeddings``). The final ViRanker config is stored in every checkpoint
(``checkpoint["viranker_config"]``) so :mod:`trainer.export` needs neither e5 nor the YAML.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from reranker.config import ViRankerConfig
from reranker.factory import RerankerModel, create_model, load_model
from trainer.config import LOSS, OPTIM
from trainer.losses import get_loss, multi_exit_loss
from trainer.optim import build_optimizer, build_scheduler

__all__ = ["build_model", "ranking_metrics", "RerankerModule", "FitScheduleToTime"]

_MODEL_ONLY_KEYS = ("init", "freeze_word_embeddings")


def build_model(model_config: dict[str, Any]) -> RerankerModel:
    """``{"init": "e5"|"random"|<dir>, **ViRankerConfig fields, "freeze_word_embeddings": bool}`` → a model of
    ``architecture`` (default "joint")."""
    cfg = dict(model_config)
    init = str(cfg.pop("init", "e5"))
    freeze = bool(cfg.pop("freeze_word_embeddings", False))
    if "exit_layers" in cfg:
        cfg["exit_layers"] = tuple(cfg["exit_layers"] or ())
    if init == "e5":
        from reranker.e5_init import build_from_e5

        num_layers = cfg.pop("num_layers", None)
        rope = cfg.pop("rope", None)  # None: the architecture's default (joint: RoPE, gated: e5's positions)
        exits = cfg.pop("exit_layers", ())
        model = build_from_e5(num_layers=num_layers, rope=rope, exit_layers=exits, **cfg)
    elif init == "random":
        model = create_model(ViRankerConfig(**cfg))
    else:
        model = load_model(init, **cfg).train()
    if freeze:
        model.embeddings.word.weight.requires_grad_(False)
    return model


def ranking_metrics(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int = 10
) -> dict[str, float]:
    """Mean MRR@k and NDCG@k of ``run`` over the queries of ``run`` that have qrels (``search.metrics``,
    i.e. pytrec_eval)."""
    from search.metrics import evaluate

    judged = {q: qrels[q] for q in run if q in qrels}
    m = evaluate(judged, {q: run[q] for q in judged}, [f"mrr@{k}", f"ndcg@{k}"])
    return {f"mrr@{k}": float(m[f"mrr@{k}"]), f"ndcg@{k}": float(m[f"ndcg@{k}"])}


class RerankerModule(L.LightningModule):
    """Trains a ViRanker with a ranking loss over groups; see the module docstring."""

    def __init__(
        self,
        model_config: dict[str, Any],
        loss: str = LOSS.name,
        margin: float = LOSS.margin,
        temperature: float = LOSS.temperature,
        exit_weights: dict[int, float] | None = LOSS.exit_weights,
        optimizer: str = OPTIM.name,
        lr: float = OPTIM.lr,
        head_lr_scale: float = OPTIM.head_lr_scale,
        weight_decay: float = OPTIM.weight_decay,
        betas: tuple[float, float] | None = OPTIM.betas,
        warmup_steps: int | None = OPTIM.warmup_steps,
        warmup_ratio: float = OPTIM.warmup_ratio,
        total_steps: int | None = None,
        min_lr_ratio: float = OPTIM.min_lr_ratio,
        model: RerankerModel | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model if model is not None else build_model(model_config)
        kwargs = (
            {"margin": margin}
            if loss == "triplet"
            else {"temperature": temperature}
            if loss == "listwise"
            else {}
        )
        self.loss_fn = get_loss(loss, **kwargs)
        self.exit_weights = {int(k): float(v) for k, v in (exit_weights or {}).items()}
        self._val: dict[int, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))

    # ------------------------------------------------------------------ steps
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[int, torch.Tensor]:
        return self.model.forward_exits(input_ids, attention_mask)

    def _check_format(self, batch: dict[str, Any]) -> None:
        """A batch tokenized for the other architecture would be scored as garbage: refuse it."""
        fmt = batch.get("architecture")
        if fmt is not None and fmt != self.model.config.architecture:
            raise ValueError(f"batch was tokenized for {fmt!r}, the model is {self.model.config.architecture!r}")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._check_format(batch)
        g = int(batch["group_size"])
        exits = self(batch["input_ids"], batch["attention_mask"])
        scores = {layer: s.float().view(-1, g) for layer, s in exits.items()}
        total, per_layer = multi_exit_loss(scores, self.loss_fn, self.exit_weights)
        bsz = next(iter(scores.values())).shape[0]
        last = self.model.config.num_layers
        self.log("train/loss", total, prog_bar=True, batch_size=bsz)
        for layer, v in per_layer.items():
            self.log(f"train/loss_l{layer}", v, batch_size=bsz)
        top1 = (scores[last].argmax(dim=1) == 0).float().mean()
        self.log("train/acc", top1, prog_bar=True, batch_size=bsz)
        self.log("train/seq_len", float(batch["input_ids"].shape[1]), batch_size=bsz)
        return total

    def on_validation_epoch_start(self) -> None:
        self._val = defaultdict(lambda: defaultdict(dict))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._check_format(batch)
        exits = self(batch["input_ids"], batch["attention_mask"])
        for layer, s in exits.items():
            for qid, pid, v in zip(batch["qids"], batch["pids"], s.float().cpu().tolist(), strict=True):
                self._val[layer][qid][pid] = v

    def on_validation_epoch_end(self) -> None:
        gate_values = getattr(self.model, "gate_values", None)
        if callable(gate_values):  # how far each layer's cross-segment path has opened
            for i, row in enumerate(gate_values(), start=1):
                self.log(f"gates/mean_abs_tanh_l{i}", float(row.abs().mean()))
        dm = getattr(self.trainer, "datamodule", None)
        val_set = getattr(dm, "val_set", None)
        if val_set is None or not self._val:
            return
        last = self.model.config.num_layers
        for layer, run in self._val.items():
            m = ranking_metrics(val_set.qrels, {q: dict(d) for q, d in run.items()})
            suffix = "" if layer == last else f"_l{layer}"
            for name, v in m.items():
                self.log(f"val/{name}{suffix}", v, prog_bar=(layer == last and name == "mrr@10"))
        base = ranking_metrics(val_set.qrels, val_set.first_stage)
        for name, v in base.items():
            self.log(f"val/first_stage_{name}", v)

    # ------------------------------------------------------------------ optim
    def _total_steps(self) -> int:
        if self.hparams.total_steps:
            return int(self.hparams.total_steps)
        est = getattr(self.trainer, "estimated_stepping_batches", None)
        if est is None or not math.isfinite(est):
            raise ValueError("set total_steps (or trainer max_steps) for the LR schedule")
        return int(est)

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        opt = build_optimizer(
            h.optimizer, self.model, h.lr, h.weight_decay, tuple(h.betas) if h.betas else None,
            head_lr_scale=float(h.get("head_lr_scale", 1.0)),
        )
        total = self._total_steps()
        warmup = int(h.warmup_steps) if h.warmup_steps is not None else int(round(h.warmup_ratio * total))
        sched = build_scheduler(opt, warmup, total, h.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_train_start(self) -> None:
        """On resume the restored schedule keeps the old run's length; use this run's ``total_steps``."""
        if not self.hparams.total_steps:
            return
        for cfg in self.trainer.lr_scheduler_configs:
            for f in getattr(cfg.scheduler, "lr_lambdas", []):
                if hasattr(f, "total_steps"):
                    f.total_steps = max(f.warmup_steps + 1, int(self.hparams.total_steps))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cfg = self.model.config.to_dict()
        cfg["gradient_checkpointing"] = False
        checkpoint["viranker_config"] = cfg


class FitScheduleToTime(L.Callback):
    """Fits the warmup-cosine schedule into the run's wall-time budget (Lightning ``max_time``).

    After ``measure_after`` optimizer steps, and every ``every`` steps after that, the average seconds per
    step so far (validation included) and the Timer's remaining time (minus ``reserve_s`` for the final
    validation, checkpoint and export) give the number of steps that still fit; the schedule's
    ``total_steps`` is set to that (never above ``max_steps``), so the learning rate reaches its minimum
    when the time is up instead of being cut off mid-decay. Training stops when the schedule is done.
    """

    def __init__(
        self, max_steps: int, measure_after: int = 10, every: int = 25, reserve_s: float = 180.0
    ) -> None:
        self.max_steps = int(max_steps)
        self.measure_after = int(measure_after)
        self.every = int(every)
        self.reserve_s = float(reserve_s)
        self._t0 = 0.0
        self._step0 = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()
        self._step0 = trainer.global_step

    def _schedules(self, trainer: L.Trainer) -> list:
        out = []
        for cfg in trainer.lr_scheduler_configs:
            out += [f for f in getattr(cfg.scheduler, "lr_lambdas", []) if hasattr(f, "total_steps")]
        return out

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        done = step - self._step0
        scheds = self._schedules(trainer)
        if scheds and step >= max(s.total_steps for s in scheds):
            trainer.should_stop = True
            return
        if done < self.measure_after or (done - self.measure_after) % self.every:
            return
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining("train") if timer is not None else None
        if remaining is None or not scheds:
            return
        rate = (time.monotonic() - self._t0) / max(1, done)
        fit = step + int(max(0.0, remaining - self.reserve_s) / rate)
        total = max(step + 1, min(self.max_steps, fit))
        for s in scheds:
            s.total_steps = max(s.warmup_steps + 1, total)
        pl_module.log("train/planned_steps", float(total))
        pl_module.log("train/sec_per_step", rate)
