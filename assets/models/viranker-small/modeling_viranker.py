"""AutoModelForSequenceClassification for ViRanker (trust_remote_code): needs the viranker-search package installed."""

from reranker.hf_model import ViRankerForSequenceClassification, ViRankerHFConfig

__all__ = ["ViRankerForSequenceClassification", "ViRankerHFConfig"]
