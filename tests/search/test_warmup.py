"""search.warmup: a service is opened and exercised before its first visitor; warming never raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexing.passages import Passage
from search.warmup import SECOND_QUERY, WARM_QUERY, warm_service
from tests.app_testkit import HashEmbedder

PASSAGES = [Passage("hn", "hn", "Hà Nội", "Hà Nội là thủ đô của Việt Nam từ năm 1976.", "t"),
            Passage("sh", "sh", "Sông Hồng", "Sông Hồng chảy qua nhiều tỉnh miền Bắc.", "t"),
            Passage("ph", "ph", "Phở", "Phở là món ăn truyền thống.", "t")]


class WarmingEmbedder(HashEmbedder):
    """The hash embedder with an engine to warm, like e5's ONNX Runtime queries; records what it encoded."""

    def __init__(self) -> None:
        self.warmed: list[bool] = []
        self.queries: list[str] = []

    def warm(self, wait: bool = True) -> str:
        self.warmed.append(wait)
        return "test-engine"

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        self.queries += list(texts)
        return super().encode_queries(texts)


def _service(root: Path, embedder: HashEmbedder | None, vectors: bool = True):
    from indexing.build import build_generation
    from search.service import SearchService

    build_generation("w", PASSAGES, embedder if vectors else None, root=root, progress=False)
    return SearchService("w", root=root, check_interval=0.0, default_reranker=None,
                         embedder_loader=lambda name: embedder)


def test_warming_opens_every_stage_and_waits_for_the_query_engine(tmp_path: Path) -> None:
    emb = WarmingEmbedder()
    svc = _service(tmp_path, emb)
    assert svc.query_embedders() == []  # nothing loaded before
    steps = warm_service(svc)
    assert list(steps) == ["bm25", "hybrid", "query_engine", "hybrid_warm"]
    assert all(v >= 0 for v in steps.values())
    assert emb.warmed == [True] and svc.query_embedders() == [emb]
    assert emb.queries == [WARM_QUERY, SECOND_QUERY]  # the second search embeds on the warmed engine
    svc.close()


def test_a_bm25_only_index_is_warmed_without_an_embedder(tmp_path: Path) -> None:
    svc = _service(tmp_path, None, vectors=False)
    assert list(warm_service(svc)) == ["bm25"]
    svc.close()


def test_warming_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from search.service import SearchService

    caplog.set_level("INFO", logger="search.warmup")
    empty = SearchService("none", root=tmp_path, check_interval=0.0, default_reranker=None)
    assert warm_service(empty) == {}  # no index yet: the failed step is logged, not raised
    assert "warm-up step bm25 failed" in caplog.text
