"""Qdrant vector store (memory, local path, server configuration) and the SQLite embedding cache."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

from indexing.embed_cache import Embedder, EmbeddingCache, embed_with_cache, text_key
from indexing.vectors import VectorStore, VectorStoreUnavailable, is_url, point_id


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class CountingEmbedder:
    """Tiny deterministic embedder: a hashed bag of characters; counts the texts it embeds."""

    model_id = "fake/chars-8"
    dim = 8

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


# ------------------------------------------------------------------------------------------------ qdrant
@pytest.mark.parametrize("where", ["memory", "path"])
def test_round_trip(tmp_path: Path, where: str) -> None:
    location = ":memory:" if where == "memory" else tmp_path / "qdrant"
    ids = [f"d{i}#p1" for i in range(40)]
    vecs = _unit(40, 16)
    with VectorStore.open(location, "passages") as vs:
        assert not vs.exists()
        vs.create(16)
        assert (
            vs.upsert(ids, vecs, [{"doc_id": f"d{i}", "title": "t"} for i in range(40)], batch_size=16) == 40
        )
        assert vs.count() == 40 and vs.dim == 16
        hits = vs.search(vecs[7], k=3)
        assert hits[0][0] == "d7#p1" and hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [h[0][0] for h in vs.search_many(vecs[:3], k=1)] == ids[:3]
        got = vs.get_vectors(["d3#p1", "missing"])
        assert list(got) == ["d3#p1"] and np.allclose(got["d3#p1"], vecs[3], atol=1e-5)
        vs.upsert(["d3#p1"], vecs[4:5])  # upsert replaces, count unchanged
        assert vs.count() == 40 and vs.search(vecs[4], k=2)[1][1] == pytest.approx(1.0, abs=1e-4)
        vs.delete(["d0#p1"])
        assert vs.count() == 39
        with pytest.raises(ValueError, match="dim"):
            vs.create(8)
    if where == "path":  # persisted: a new client on the same path sees the points
        with VectorStore.open(location, "passages") as again:
            assert again.count() == 39 and again.search(vecs[9], k=1)[0][0] == "d9#p1"


def test_point_ids_are_stable_uuids() -> None:
    assert point_id("a#p1") == point_id("a#p1") != point_id("a#p2")
    assert len(point_id("x")) == 36


def test_local_path_is_single_process(tmp_path: Path) -> None:
    with VectorStore.open(tmp_path / "q", "c") as vs:
        vs.create(4)
        with pytest.raises(VectorStoreUnavailable, match="one process per path"):
            VectorStore.open(tmp_path / "q", "c")


def test_dead_server_fails_fast_with_a_clear_error() -> None:
    t = time.monotonic()
    with pytest.raises(VectorStoreUnavailable) as err:
        VectorStore.open("http://127.0.0.1:9", "x", timeout=2)
    assert time.monotonic() - t < 10
    assert "127.0.0.1:9" in str(err.value) and "QDRANT_URL" in str(err.value)


def test_qdrant_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexing import settings

    monkeypatch.setenv("QDRANT_URL", " http://127.0.0.1:9 ")
    monkeypatch.setenv("QDRANT_API_KEY", "secret")
    assert settings.qdrant_url() == "http://127.0.0.1:9" and settings.qdrant_api_key() == "secret"
    assert is_url(settings.qdrant_url()) and not is_url("/var/qdrant") and not is_url(":memory:")
    with pytest.raises(VectorStoreUnavailable, match="127.0.0.1:9"):
        VectorStore.open(None, "x", timeout=1)
    monkeypatch.delenv("QDRANT_URL")
    assert settings.qdrant_url() is None
    with pytest.raises(VectorStoreUnavailable, match="QDRANT_URL is not set"):
        VectorStore.open(None, "x")


# ------------------------------------------------------------------------------------------ embed cache
def test_cache_get_put_and_dimension_check(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    vecs = _unit(3, 8)
    cache.put_many("m", ["một", "hai", "ba"], vecs)
    got = cache.get_many("m", ["ba", "bốn", "một", "ba"])
    assert sorted(got) == [0, 2, 3] and np.array_equal(got[0], vecs[2]) and np.array_equal(got[2], vecs[0])
    assert cache.get_many("other-model", ["một"]) == {}
    assert cache.get_many("m", ["một"], dim=16) == {}  # a different size is a miss
    assert cache.count("m") == 3 and cache.count() == 3
    assert text_key("một") == text_key("một") != text_key("mot")
    with pytest.raises(ValueError):
        cache.put_many("m", ["x"], vecs)


def test_embed_with_cache_embeds_only_misses(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = CountingEmbedder()
    assert isinstance(emb, Embedder)
    first = embed_with_cache(emb, ["a", "b", "a"], batch_size=1, cache=cache)
    assert emb.seen == ["a", "b"]  # duplicates embedded once
    calls: list[tuple[str, int, int]] = []
    second = embed_with_cache(
        emb, ["b", "c", "a"], batch_size=8, cache=cache, progress_callback=lambda *a: calls.append(a)
    )
    assert emb.seen == ["a", "b", "c"]
    assert np.array_equal(second[0], first[1]) and np.array_equal(second[2], first[0])
    assert calls[0] == ("embed", 2, 3) and calls[-1] == ("embed", 3, 3)
    assert second.dtype == np.float32 and second.shape == (3, 8)


def test_embed_with_cache_rejects_bad_embedder_output(tmp_path: Path) -> None:
    class Broken(CountingEmbedder):
        def encode_passages(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 3), dtype=np.float32)

    with pytest.raises(ValueError, match="shape"):
        embed_with_cache(Broken(), ["x"], cache=EmbeddingCache(tmp_path / "c.sqlite"))


def _writer(path: str, worker: int, n: int) -> None:
    cache = EmbeddingCache(path)
    for i in range(n):
        cache.put_many("m", [f"w{worker}-{i}"], np.full((1, 4), worker, dtype=np.float32))


def test_cache_is_safe_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    EmbeddingCache(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = EmbeddingCache(path)
    assert cache.count("m") == 120
    assert cache.get_many("m", ["w2-39"])[0][0] == 2.0
