"""Optimizers and learning-rate schedules: AdamW, Lion, linear warmup + cosine decay.

- :class:`Lion` — EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
  ``u = sign(β1·m + (1−β1)·g)``, ``p ← p − lr·(u + λ·p)``, ``m ← β2·m + (1−β2)·g``. Defaults β = (0.9, 0.99).
  Use a learning rate ~3–10× smaller and a weight decay ~3–10× larger than for AdamW.
- :func:`warmup_cosine` — multiplier for ``LambdaLR``: 0 → 1 linearly over ``warmup_steps``, then cosine to
  ``min_ratio`` at ``total_steps``.
- :func:`param_groups` — weight decay on matrices only (no decay for biases, LayerNorm and embeddings);
  frozen parameters are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["Lion", "WarmupCosine", "warmup_cosine", "param_groups", "build_optimizer", "build_scheduler"]


class Lion(torch.optim.Optimizer):
    """Lion optimizer (sign of an interpolated momentum), decoupled weight decay."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid betas {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                if wd:
                    p.mul_(1.0 - lr * wd)
                update = m.mul(beta1).add_(grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                m.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return loss


class WarmupCosine:
    """LR multiplier at optimizer step ``s``: linear warmup to 1 over ``warmup_steps``, cosine decay to
    ``min_ratio`` at ``total_steps``, then flat. ``total_steps`` may be changed during training (e.g. by
    :class:`trainer.module.FitScheduleToTime`); being a plain object, it is saved in the scheduler state."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(self.warmup_steps + 1, int(total_steps))
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> WarmupCosine:
    """Shorthand for :class:`WarmupCosine`."""
    return WarmupCosine(warmup_steps, total_steps, min_ratio)


_NO_DECAY_TYPES = (nn.LayerNorm, nn.Embedding)


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                 head_lr_scale: float = 1.0) -> list[dict]:
    """Trainable parameters grouped as decayed (Linear weights) or not (biases, norms, embeddings), and as
    encoder or freshly initialized parameters — scoring heads (``heads.*``) and the gated architecture's
    cross-attention gates (``*.cross_gate``) — whose lr is ``lr * head_lr_scale``: a new head must grow its output
    scale quickly (and a gate must open) while the pretrained encoder should move slowly."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NO_DECAY_TYPES):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decayed = not (id(p) in no_decay or name.endswith("bias") or p.dim() < 2)
        is_head = name.startswith("heads.") or name.endswith(".cross_gate")
        buckets.setdefault((is_head, decayed), []).append(p)
    groups = []
    for (is_head, decayed), params in sorted(buckets.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        g: dict = {"params": params, "weight_decay": weight_decay if decayed else 0.0}
        if lr is not None:
            g["lr"] = lr * (head_lr_scale if is_head else 1.0)
        groups.append(g)
    return groups


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] | None = None,
    eps: float = 1e-8,
    head_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """``"adamw"`` (β default (0.9, 0.999)) or ``"lion"`` (β default (0.9, 0.99)) over :func:`param_groups`."""
    groups = param_groups(model, weight_decay, lr, head_lr_scale)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    name = name.lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas or (0.9, 0.999)), eps=eps)
    if name == "lion":
        return Lion(groups, lr=lr, betas=tuple(betas or (0.9, 0.99)))
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'lion'")


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :func:`warmup_cosine` (step it once per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps, min_ratio))
