"""One place that turns a config into a model and a model dir into a loaded model, for every architecture.

    ViRankerConfig(architecture="joint" | "gated") --create_model--> ViRanker | GatedRanker
    model dir (config.json + model.safetensors)     --load_model-->   the class its config.json names

Everything that builds or loads a reranker (``reranker.e5_init``, ``reranker.inference``, ``trainer``) goes
through these two functions; a config.json without ``architecture`` (every dir written before it existed, e.g.
``assets/models/viranker-small``) is ``"joint"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reranker.config import ViRankerConfig
from reranker.gated import GatedRanker
from reranker.model import ViRanker

RerankerModel = ViRanker | GatedRanker
MODEL_CLASSES: dict[str, type[ViRanker] | type[GatedRanker]] = {"joint": ViRanker, "gated": GatedRanker}


def model_class(config: ViRankerConfig) -> type[ViRanker] | type[GatedRanker]:
    """The class that implements ``config.architecture``."""
    return MODEL_CLASSES[config.architecture]


def create_model(config: ViRankerConfig | dict[str, Any]) -> RerankerModel:
    """A freshly initialized model for ``config`` (a :class:`ViRankerConfig` or its dict form)."""
    if isinstance(config, dict):
        config = ViRankerConfig.from_dict(config)
    return model_class(config)(config)


def load_model(model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               **config_overrides: Any) -> RerankerModel:
    """Load a ``save_pretrained`` dir of either architecture (strict), in eval mode; ``config_overrides`` as in
    :meth:`reranker.model.PretrainedMixin.from_pretrained` (run-time fields only)."""
    config = ViRankerConfig.load(model_dir)
    if "architecture" in config_overrides and config_overrides["architecture"] != config.architecture:
        raise ValueError(f"{model_dir} holds a {config.architecture!r} model; architecture cannot be overridden")
    return model_class(config).from_pretrained(model_dir, device=device, dtype=dtype, **config_overrides)
