"""Admin edits use the index's own embedder, loaded only when a change embeds something (a delete does not)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexing.embedders import LazyEmbedder
from indexing.passages import Passage
from search.ui.backend import Backend
from tests.app_testkit import HashEmbedder

PASSAGES = [Passage(f"p{i}", f"d{i}", f"Tiêu đề {i}", f"Đoạn văn số {i} về Hà Nội và sông Hồng.", "t")
            for i in range(6)]


class OtherEmbedder(HashEmbedder):
    model_id = "test/other-64"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from indexing.build import build_generation

    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path))
    build_generation("ed", PASSAGES, HashEmbedder(), progress=False)
    return tmp_path


def test_a_delete_loads_no_model(home: Path) -> None:
    # The app's embedder is another model, and the index's ("test-hash") cannot be loaded by name at all:
    # the delete must go through without loading anything.
    backend = Backend("ed", embedder=OtherEmbedder(), demo_corpus=None, precomputed=Path(os.devnull))
    emb = backend.index_embedder()
    assert isinstance(emb, LazyEmbedder) and not emb.loaded and emb.model_id == HashEmbedder.model_id
    backend.admin_start_delete(["p1", "d2"])
    assert backend.job.wait(60)
    snap = backend.job.snapshot()
    assert not snap.get("failure"), snap
    assert not emb.loaded and backend.index_embedder() is emb  # kept for the next change, still not loaded
    from indexing.build import current_passages

    assert sorted(p.id for p in current_passages("ed")) == ["p0", "p3", "p4", "p5"]


def test_a_loaded_embedder_of_the_same_model_is_reused(home: Path) -> None:
    own = HashEmbedder()
    backend = Backend("ed", embedder=own, demo_corpus=None, precomputed=Path(os.devnull))
    assert backend.index_embedder() is own
