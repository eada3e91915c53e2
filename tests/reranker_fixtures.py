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


@pytest.fixture(scope="session")
def xlmr_tokenizer():
    """The bundled XLM-R tokenizer (250,002 pieces)."""
    return _xlmr_tokenizer()


@pytest.fixture(scope="session")
def e5_absolute_model():
    """12-layer e5-small ViRanker with absolute positions (rope=False), eval mode. Do not mutate."""
    return _e5_absolute_model()


__all__ = ["VI_TEXTS", "xlmr_tokenizer", "e5_absolute_model"]
