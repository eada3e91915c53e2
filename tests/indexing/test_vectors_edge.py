"""The qdrant-edge engine behind VectorStore: engine choice, parity with local mode, HNSW, locking, kill -9."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from indexing import settings
from indexing.vectors import VectorStore, VectorStoreUnavailable, path_engine
from indexing.vectors_edge import EdgeVectorStore


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(path: Path, n: int = 50, dim: int = 8) -> np.ndarray:
    vecs = _unit(n, dim)
    with VectorStore.open(path, "passages") as vs:
        vs.create(dim)
        vs.upsert([f"p{i}" for i in range(n)], vecs, [{"doc_id": f"d{i}", "title": "t"} for i in range(n)])
    return vecs


def test_engine_setting_picks_new_paths_and_existing_paths_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIRANKER_VECTOR_ENGINE", raising=False)
    assert settings.vector_engine() == "edge"  # the default
    _fill(tmp_path / "e")
    monkeypatch.setenv("VIRANKER_VECTOR_ENGINE", "local")
    _fill(tmp_path / "l")
    assert path_engine(tmp_path / "e") == "edge" and path_engine(tmp_path / "l") == "local"
    assert path_engine(tmp_path / "new") is None
    with VectorStore.open(tmp_path / "e", "passages") as vs:  # setting says local, the files say edge
        assert isinstance(vs, EdgeVectorStore) and vs.engine == "qdrant-edge" and vs.count() == 50
    monkeypatch.setenv("VIRANKER_VECTOR_ENGINE", "edge")
    with VectorStore.open(tmp_path / "l", "passages") as vs:
        assert not isinstance(vs, EdgeVectorStore) and vs.engine == "qdrant-client" and vs.count() == 50
    monkeypatch.setenv("VIRANKER_VECTOR_ENGINE", "qdrnt")
    with pytest.raises(ValueError, match="VIRANKER_VECTOR_ENGINE"):
        VectorStore.open(tmp_path / "other", "passages")


def test_same_answers_as_local_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vecs = _unit(300, 16, seed=3)
    queries = _unit(20, 16, seed=4)
    answers = {}
    for engine in ("edge", "local"):
        monkeypatch.setenv("VIRANKER_VECTOR_ENGINE", engine)
        with VectorStore.open(tmp_path / engine, "passages") as vs:
            vs.create(16)
            vs.upsert([f"p{i}" for i in range(300)], vecs, [{"doc_id": "d", "title": "t"}] * 300, batch_size=64)
            vs.delete([f"p{i}" for i in range(0, 300, 7)])
            answers[engine] = (vs.search_many(queries, k=10), vs.count(), vs.get_vectors(["p1", "p7"]))
    (edge_hits, edge_n, edge_vec), (local_hits, local_n, local_vec) = answers["edge"], answers["local"]
    assert edge_n == local_n == 300 - len(range(0, 300, 7))
    assert [[p for p, _ in h] for h in edge_hits] == [[p for p, _ in h] for h in local_hits]
    assert np.allclose([s for h in edge_hits for _, s in h], [s for h in local_hits for _, s in h], atol=1e-5)
    assert list(edge_vec) == list(local_vec) == ["p1"] and np.allclose(edge_vec["p1"], local_vec["p1"], atol=1e-6)


def test_optimize_builds_hnsw_and_later_points_are_searched_exactly(tmp_path: Path) -> None:
    vecs = _unit(2000, 16, seed=5)
    with EdgeVectorStore.open_path(tmp_path / "v", "passages") as vs:
        vs.create(16, indexing_threshold_kb=1, indexing_threads=1)
        vs.upsert([f"p{i}" for i in range(2000)], vecs)
        assert vs.index_status() == {"engine": "qdrant-edge", "points": 2000, "indexed": 0, "search": "exact"}
        assert vs.optimize() is True
        assert vs.index_status()["search"] == "hnsw"
        assert vs.search(vecs[42], k=1)[0][0] == "p42"
        vs.upsert(["late"], _unit(1, 16, seed=9))  # goes to a new plain segment, scanned exactly
        assert vs.index_status()["search"] == "mixed"
        assert vs.search(_unit(1, 16, seed=9)[0], k=1)[0][0] == "late"
    with VectorStore.open(tmp_path / "v", "passages") as again:  # the graph is on disk
        assert again.index_status()["indexed"] == 2000 and again.count() == 2001


def test_create_recreate_and_delete_collection(tmp_path: Path) -> None:
    with EdgeVectorStore.open_path(tmp_path / "v", "c") as vs:
        assert not vs.exists() and vs.index_status()["points"] == 0
        with pytest.raises(ValueError, match="create"):
            vs.count()
        vs.create(4)
        vs.upsert(["a"], _unit(1, 4))
        vs.create(4)  # same size: kept
        assert vs.count() == 1 and vs.dim == 4
        vs.create(8, recreate=True)
        assert vs.count() == 0 and vs.dim == 8
        vs.delete_collection()
        assert not vs.exists() and not (tmp_path / "v" / "c").exists()
    with pytest.raises(ValueError, match="collection name"):
        EdgeVectorStore.open_path(tmp_path / "v", "../x")


def _hold(path: str, ready: mp.Event, release: mp.Event) -> None:
    with VectorStore.open(path, "passages"):
        ready.set()
        release.wait(30)


def test_a_shard_held_by_another_process_is_unavailable(tmp_path: Path) -> None:
    _fill(tmp_path / "v")
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "v"), ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with pytest.raises(VectorStoreUnavailable, match="another process"):
            VectorStore.open(tmp_path / "v", "passages")
    finally:
        release.set()
        proc.join(30)
    with VectorStore.open(tmp_path / "v", "passages") as vs:  # released with the process
        assert vs.count() == 50


def _write_then_hang(path: str, done: mp.Event) -> None:
    vecs = _unit(3000, 8, seed=1)
    with VectorStore.open(path, "passages") as vs:
        vs.create(8)
        vs.upsert([f"p{i}" for i in range(1000)], vecs[:1000])  # returned: durable
        done.set()
        while True:  # keep writing until killed
            vs.upsert([f"q{i}" for i in range(2000)], vecs[1000:])


def test_kill_9_mid_upsert_keeps_what_was_written(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    proc = ctx.Process(target=_write_then_hang, args=(str(tmp_path / "v"), done))
    proc.start()
    assert done.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    with VectorStore.open(tmp_path / "v", "passages") as vs:  # the WAL lock died with the process
        n = vs.count()
        # The first upsert is all there; of the killed one, whole requests of 256 points (upsert's batch).
        assert n >= 1000 and ((n - 1000) % 256 == 0 or n == 3000), n
        assert vs.search(_unit(3000, 8, seed=1)[5], k=1)[0][0] == "p5"
        vs.upsert(["after"], _unit(1, 8, seed=2))
        assert vs.count() == n + 1
