"""AutoConfig for ViRanker (trust_remote_code): needs the viranker-search package installed."""

from reranker.hf_model import ViRankerHFConfig

__all__ = ["ViRankerHFConfig"]
