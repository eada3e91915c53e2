"""The training configuration's loss and optimizer sections, each default written once.

``python -m trainer fit`` reads them from the YAML config (:meth:`FitConfig.from_sections`) and
:class:`trainer.module.RerankerModule` takes its keyword defaults from them, so the two cannot drift apart. The
YAML's ``trainer`` section is Lightning's (``L.Trainer`` keywords plus a few of ours, see ``trainer/cli_fit.py``),
``data`` is :class:`trainer.data.RerankDataModule`'s keywords and ``model`` is :class:`reranker.config.ViRankerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["LossConfig", "OptimConfig", "FitConfig", "LOSS", "OPTIM"]


def _from_dict(cls: type, section: str, values: dict[str, Any] | None) -> Any:
    """``cls(**values)`` with YAML names mapped to fields; an unknown key raises ValueError naming it."""
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    renamed = values
    unknown = sorted(set(renamed) - names)
    if unknown:
        raise ValueError(f"config section {section!r}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**renamed)


@dataclass(frozen=True)
class LossConfig:
    """``loss:`` — the ranking loss (:func:`trainer.losses.get_loss`) and the weight of each early exit."""

    name: str = "triplet"  # triplet | listwise | ...
    margin: float = 1.0  # triplet only
    temperature: float = 1.0  # listwise only
    exit_weights: dict[int, float] | None = None  # {layer: weight}; None = the last layer only

    def __post_init__(self) -> None:
        object.__setattr__(self, "margin", float(self.margin))
        object.__setattr__(self, "temperature", float(self.temperature))

    def module_kwargs(self) -> dict[str, Any]:
        """The :class:`~trainer.module.RerankerModule` keywords of this section."""
        return {"loss": self.name, "margin": self.margin, "temperature": self.temperature,
                "exit_weights": self.exit_weights}


@dataclass(frozen=True)
class OptimConfig:
    """``optim:`` — the optimizer (:mod:`trainer.optim`) and its warm-up + cosine schedule."""

    name: str = "adamw"  # adamw | lion
    lr: float = 5e-5
    head_lr_scale: float = 1.0  # scoring heads (new parameters) learn this many times faster
    weight_decay: float = 0.01
    betas: tuple[float, float] | None = None
    warmup_steps: int | None = None  # None: warmup_ratio of the total steps
    warmup_ratio: float = 0.06
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lr", "head_lr_scale", "weight_decay", "warmup_ratio", "min_lr_ratio"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def module_kwargs(self) -> dict[str, Any]:
        """The :class:`~trainer.module.RerankerModule` keywords of this section."""
        return {"optimizer": self.name, "lr": self.lr, "head_lr_scale": self.head_lr_scale,
                "weight_decay": self.weight_decay, "betas": self.betas, "warmup_steps": self.warmup_steps,
                "warmup_ratio": self.warmup_ratio, "min_lr_ratio": self.min_lr_ratio}


@dataclass(frozen=True)
class FitConfig:
    """The loss and optimizer sections of a training config."""

    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_sections(cls, cfg: dict[str, Any]) -> FitConfig:
        """A loaded YAML config (``loss:`` and ``optim:`` sections, both optional) → FitConfig."""
        return cls(_from_dict(LossConfig, "loss", cfg.get("loss")), _from_dict(OptimConfig, "optim", cfg.get("optim")))

    def module_kwargs(self) -> dict[str, Any]:
        """Every :class:`~trainer.module.RerankerModule` keyword these sections set."""
        return {**self.loss.module_kwargs(), **self.optim.module_kwargs()}


LOSS, OPTIM = LossConfig(), OptimConfig()  # the defaults, for RerankerModule's signature
