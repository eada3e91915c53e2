"""build_generation / add / delete: complete generations, atomic swap, crash safety, resume, precomputed vectors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from indexing import generations as gens
from indexing import settings
from indexing.build import (
    BuildError,
    PrecomputedVectors,
    add_passages,
    build_generation,
    cleanup,
    current_passages,
    delete_passages,
    embedding_text,
    open_generation,
    save_precomputed,
)
from indexing.corpus import Passage
from indexing.embed_cache import EmbeddingCache
from indexing.normalize import folded_syllables
from indexing.vectors import VectorStoreUnavailable
from tests.lock_holder import lock_held_elsewhere

PASSAGES = [
    Passage("hn", "hn", "Hà Nội", "Hà Nội là thủ đô của Việt Nam.", "a"),
    Passage("hcm", "hcm", "Sài Gòn", "Thành phố Hồ Chí Minh là thành phố đông dân nhất.", "a"),
    Passage("pho#p1", "pho", "Phở", "Phở là món ăn truyền thống.", "a"),
    Passage("pho#p2", "pho", "Phở", "Nước dùng phở được ninh từ xương bò.", "a"),
    Passage("hue", "hue", "Huế", "Huế là cố đô của triều Nguyễn.", "b"),
]


class FakeEmbedder:
    """Hashed bag of folded syllables (dim 32), L2-normalized; optionally fails after ``fail_after`` calls."""

    model_id = "fake/bag-32"
    dim = 32
    name = "fake"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.texts: list[str] = []
        self.fail_after = fail_after

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for s in folded_syllables(text):
            v[sum(map(ord, s)) % self.dim] += 1.0
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("embedder crashed")
        self.calls += 1
        self.texts += texts
        return np.stack([self._vec(t) for t in texts])


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _answers(name: str, home: Path) -> tuple[list, list]:
    with open_generation(name, home) as snap:
        emb = FakeEmbedder()
        lex = snap.bm25.search("thủ đô Việt Nam", k=3)
        dense = snap.vectors.search(emb._vec("thủ đô Việt Nam"), k=3) if snap.vectors else []
        return lex, dense


def test_build_writes_a_complete_generation(home: Path) -> None:
    stages: list[str] = []
    m = build_generation(
        "demo",
        PASSAGES,
        FakeEmbedder(),
        home,
        progress=False,
        progress_callback=lambda s, d, t: stages.append(s),
    )
    idx = settings.index_dir("demo", home)
    gen = m["generation"]
    assert gens.current(idx) == gen and gens.is_complete(idx, gen)
    gdir = gens.generation_path(idx, gen)
    assert {p.name for p in gdir.iterdir()} >= {
        "manifest.json", "passages.jsonl", "bm25", "qdrant", "diacritics.npz"
    }
    assert m["counts"] == {"passages": 5, "documents": 4, "vectors": 5}
    assert m["embedder"] == {"model_id": "fake/bag-32", "dim": 32, "name": "fake"}
    assert m["vectors"] == {"mode": "local", "path": "qdrant", "collection": "passages"}
    assert m["normalizer"]["module"] == "indexing.normalize" and m["build_seconds"] > 0
    assert json.loads((gdir / "manifest.json").read_text())["generation"] == gen
    assert {"passages", "bm25", "embed", "vectors", "restorer", "manifest"} <= set(stages)
    assert "restorer" in m["stage_seconds"]
    lex, dense = _answers("demo", home)
    assert lex[0][0] == "hn" and dense[0][0] == "hn"
    assert current_passages("demo", home) == PASSAGES
    assert (home / "cache" / "embeddings.sqlite").is_file()


def test_bm25_only_build(home: Path) -> None:
    m = build_generation("lex", PASSAGES, None, home, progress=False)
    assert m["embedder"] is None and m["vectors"] is None and m["counts"]["vectors"] == 0
    with open_generation("lex", home) as snap:
        assert snap.vectors is None and snap.bm25.search("pho bo", k=1)[0][0] == "pho#p2"


def test_crash_mid_build_leaves_current_untouched_and_resumes(home: Path) -> None:
    build_generation("demo", PASSAGES[:3], FakeEmbedder(), home, progress=False)
    idx = settings.index_dir("demo", home)
    before_gen = gens.current(idx)
    before = _answers("demo", home)
    extra = [Passage(f"x{i}", f"x{i}", "", f"đoạn văn thêm số {i} về Đà Nẵng", "c") for i in range(6)]
    crashing = FakeEmbedder(fail_after=1)
    with pytest.raises(RuntimeError, match="crashed"):
        build_generation("demo", PASSAGES + extra, crashing, home, progress=False, batch_size=2)
    assert gens.current(idx) == before_gen
    assert _answers("demo", home) == before  # the old generation answers identically
    [incomplete] = [g for g in gens.list_generations(idx) if g.status == "incomplete"]
    # Rerun: resumes the same generation; cached vectors (first batch) are not embedded again.
    ok = FakeEmbedder()
    m = build_generation("demo", PASSAGES + extra, ok, home, progress=False, batch_size=2)
    assert m["generation"] == incomplete.name and gens.current(idx) == incomplete.name
    assert len(ok.texts) == len(PASSAGES + extra) - 3 - 2  # 3 from the first build, 2 from the crashed batch
    assert m["counts"]["vectors"] == 11
    assert [g.status for g in gens.list_generations(idx)] == ["complete", "complete"]


def test_exception_in_bm25_stage_and_cleanup(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_generation("demo", PASSAGES[:2], None, home, progress=False)
    idx = settings.index_dir("demo", home)
    cur = gens.current(idx)
    import indexing.bm25 as b  # the class the bm25 stage builds with

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(b.BM25Index, "build", boom)
    with pytest.raises(OSError):
        build_generation("demo", PASSAGES, None, home, progress=False)
    monkeypatch.undo()
    assert gens.current(idx) == cur and len(gens.list_generations(idx)) == 2
    assert len(cleanup("demo", home)) == 1
    assert [g.name for g in gens.list_generations(idx)] == [cur]
    # A different build (no resume) also cleans stale incomplete generations first.
    with pytest.raises(OSError), monkeypatch.context() as mp:
        mp.setattr(b.BM25Index, "build", boom)
        build_generation("demo", PASSAGES, None, home, progress=False)
    m = build_generation("demo", PASSAGES[:4], None, home, progress=False, resume=False)
    assert [g.status for g in gens.list_generations(idx)] == ["complete", "complete"]
    assert gens.current(idx) == m["generation"]


def test_add_and_delete_are_copy_on_write(home: Path) -> None:
    emb = FakeEmbedder()
    first = build_generation("demo", PASSAGES, emb, home, progress=False)
    n_embedded = len(emb.texts)
    new = [Passage("dn", "dn", "Đà Nẵng", "Đà Nẵng có cầu Rồng phun lửa.", "c")]
    m = add_passages("demo", new, emb, home, progress=False)
    assert m["operation"] == "add" and m["parent"] == first["generation"]
    assert m["counts"]["passages"] == 6 and len(emb.texts) == n_embedded + 1  # only the new text embedded
    with open_generation("demo", home) as snap:
        assert snap.bm25.search("cầu Rồng", k=1)[0][0] == "dn" and snap.vectors.count() == 6
    with pytest.raises(BuildError, match="already in index"):
        add_passages("demo", new, emb, home, progress=False)
    m = add_passages(
        "demo", [Passage("pho", "pho", "Phở", "Phở bò tái.", "d")], emb, home, replace=True, progress=False
    )
    assert {p.id for p in current_passages("demo", home) if p.doc_id == "pho"} == {
        "pho"
    }  # both old parts gone
    calls = emb.calls
    m = delete_passages("demo", ["hue", "dn"], emb, home, progress=False)
    assert m["change"]["deleted"] == 2 and m["counts"]["passages"] == 3
    assert emb.calls == calls  # every remaining vector came from the cache
    with open_generation("demo", home) as snap:
        assert "hue" not in dict(snap.bm25.search("cố đô triều Nguyễn", k=5))
        assert snap.vectors.count() == 3
    with pytest.raises(KeyError, match="nope"):
        delete_passages("demo", ["nope"], emb, home, progress=False)
    # Older generations are untouched: rollback serves the original again.
    idx = settings.index_dir("demo", home)
    gens.switch(idx, first["generation"])
    assert len(current_passages("demo", home)) == 5


def test_changes_need_the_same_embedder(home: Path) -> None:
    build_generation("demo", PASSAGES, FakeEmbedder(), home, progress=False)

    class Other(FakeEmbedder):
        model_id = "other/model"

    with pytest.raises(BuildError, match="fake/bag-32"):
        add_passages("demo", [Passage("z", "z", "", "z", "")], None, home, progress=False)
    with pytest.raises(BuildError, match="other/model"):
        delete_passages("demo", ["hue"], Other(), home, progress=False)


def test_duplicate_passage_ids_are_refused(home: Path) -> None:
    with pytest.raises(BuildError, match="duplicate"):
        build_generation("demo", PASSAGES + PASSAGES[:1], None, home, progress=False)
    assert gens.current(settings.index_dir("demo", home)) is None


def test_precomputed_vectors_seed_the_cache(home: Path, tmp_path: Path) -> None:
    emb = FakeEmbedder()
    vecs = emb.encode_passages([embedding_text(p) for p in PASSAGES])
    meta = save_precomputed(tmp_path / "assets" / "demo.fake", PASSAGES, vecs, emb.model_id)
    pre = PrecomputedVectors.load(meta)
    never = FakeEmbedder(fail_after=0)  # any call raises
    m = build_generation("demo", PASSAGES, never, home, progress=False, precomputed=pre)
    assert m["counts"]["vectors"] == 5 and never.calls == 0
    # Changed text → that row is not seeded (stale), so the embedder is needed for it.
    changed = [*PASSAGES[:4], Passage("hue", "hue", "Huế", "Huế có sông Hương.", "b")]
    cache = EmbeddingCache(tmp_path / "fresh.sqlite")
    assert pre.seed(cache, changed, emb.model_id, emb.dim) == 4
    assert pre.seed(cache, changed, "another-model", emb.dim) == 0
    # A corrupted file is detected by its sha256.
    np.save(pre.vectors_path, vecs * 2)
    with pytest.raises(BuildError, match="sha256"):
        pre.array()


def test_server_mode_with_dead_url_fails_fast(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_generation("demo", PASSAGES[:2], None, home, progress=False)
    idx = settings.index_dir("demo", home)
    cur = gens.current(idx)
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    t = time.monotonic()
    with pytest.raises(VectorStoreUnavailable, match="127.0.0.1:9"):
        build_generation("demo", PASSAGES, FakeEmbedder(), home, progress=False)
    assert time.monotonic() - t < 20
    assert gens.current(idx) == cur
    [inc] = [g for g in gens.list_generations(idx) if g.status == "incomplete"]
    state = json.loads((inc.path / "build_state.json").read_text())
    assert state["vectors"] == {
        "mode": "server",
        "url": "http://127.0.0.1:9",
        "collection": f"demo__{inc.name}",
    }
    monkeypatch.delenv("QDRANT_URL")
    assert cleanup("demo", home) == [
        inc.name
    ]  # unreachable server: the collection drop is skipped, dir removed


def test_concurrent_builder_gets_index_busy(home: Path) -> None:
    idx = settings.index_dir("demo", home)
    idx.mkdir(parents=True)
    with lock_held_elsewhere(idx), pytest.raises(gens.IndexBusy):
        build_generation("demo", PASSAGES, None, home, progress=False)
    assert build_generation("demo", PASSAGES, None, home, progress=False)["counts"]["passages"] == 5


def test_snapshot_notices_swap_and_old_generation_keeps_answering(home: Path) -> None:
    build_generation("demo", PASSAGES[:2], None, home, progress=False)
    snap = open_generation("demo", home)
    old = snap.bm25.search("Huế", k=3)
    assert not snap.is_stale()
    build_generation("demo", PASSAGES, None, home, progress=False)
    assert snap.is_stale()
    assert snap.bm25.search("Huế", k=3) == old  # the open generation is immutable
    snap.close()
    with open_generation("demo", home) as fresh:
        assert fresh.bm25.search("Huế", k=1)[0][0] == "hue"


def test_prune_keeps_newest_generations(home: Path) -> None:
    for i in range(4):
        build_generation("demo", PASSAGES[: i + 1], None, home, progress=False, keep=2)
    infos = gens.list_generations(settings.index_dir("demo", home))
    assert [i.counts["passages"] for i in infos] == [3, 4] and infos[-1].is_current


def test_a_big_enough_build_gets_an_hnsw_graph_stage(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds of at least VIRANKER_HNSW_MIN_PASSAGES passages run the embedded engine's optimizer (HNSW) before
    the generation serves; smaller ones, 0 (= never) and a Qdrant server do not."""
    from indexing import stages

    calls: list[str] = []
    real = stages.build_ann_graph

    def spy(vs, target, n, report):
        calls.append(f"{target['mode']}:{n}")
        return real(vs, target, n, report)

    monkeypatch.setattr(stages, "build_ann_graph", spy)
    seen: list[str] = []
    monkeypatch.setenv("VIRANKER_HNSW_MIN_PASSAGES", "5")
    build_generation("big", PASSAGES, FakeEmbedder(), home, progress=False,
                     progress_callback=lambda stage, *a, **k: seen.append(stage))
    assert calls == ["local:5"] and "hnsw" in seen
    assert seen.index("hnsw") > seen.index("vectors")
    assert _answers("big", home)[1][0][0] == "hn"  # serves after the optimizer ran

    class Store:
        def __init__(self) -> None:
            self.optimized = 0

        def optimize(self) -> bool:
            self.optimized += 1
            return True

    store, quiet = Store(), lambda *a, **k: None
    assert not real(store, {"mode": "local"}, 4, quiet)  # below the threshold
    assert not real(store, {"mode": "server"}, 10, quiet)  # a server indexes by itself
    monkeypatch.setenv("VIRANKER_HNSW_MIN_PASSAGES", "0")
    assert not real(store, {"mode": "local"}, 10**6, quiet) and store.optimized == 0
    monkeypatch.setenv("VIRANKER_HNSW_MIN_PASSAGES", "many")
    with pytest.raises(ValueError, match="not an integer"):
        real(store, {"mode": "local"}, 10, quiet)
