"""Crash safety of index builds: SIGKILL mid-build, exceptions mid-build, and the one-builder lock.

Each test starts from a home where a previous generation already serves (BM25 + local Qdrant vectors), then
breaks a second build and checks the contract of ``docs/architecture.md``: ``CURRENT`` is untouched, the
serving generation answers exactly as before (BM25 and vectors, also through an open ``SearchService``), the
partial generation is incomplete and is either resumed by a rerun (cached vectors are not embedded again) or
removed by ``cleanup``, and a rerun completes and swaps ``CURRENT``.

Real processes are killed with SIGKILL (no ``finally`` blocks, no atexit): the builder is a small script that
calls :func:`indexing.build.build_generation` with :class:`SlowEmbedder` (sleeps per batch, so the kill lands
while vectors are being computed), or ``python -m indexing build`` itself on a corpus large enough that the
kill lands in the BM25 stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexing import generations as gens
from indexing import settings
from indexing.build import (
    STATE_FILE,
    build_generation,
    cleanup,
    embedding_text,
    open_generation,
)
from indexing.corpus import Passage
from indexing.embed_cache import EmbeddingCache
from indexing.normalize import folded_syllables

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
INDEX = "crash"
QUERIES = ["thủ đô Việt Nam", "sông Hồng chảy qua", "món ăn truyền thống", "cố đô triều Nguyễn"]

BASE = [
    Passage("hn", "hn", "Hà Nội", "Hà Nội là thủ đô của Việt Nam, nằm bên bờ sông Hồng.", "base"),
    Passage("hcm", "hcm", "Sài Gòn", "Thành phố Hồ Chí Minh là thành phố đông dân nhất Việt Nam.", "base"),
    Passage("pho", "pho", "Phở", "Phở là món ăn truyền thống, nước dùng ninh từ xương bò.", "base"),
    Passage("hue", "hue", "Huế", "Huế là cố đô của triều Nguyễn với kinh thành và lăng tẩm.", "base"),
    Passage("dl", "dl", "Đà Lạt", "Đà Lạt nằm trên cao nguyên Lâm Viên, khí hậu mát mẻ quanh năm.", "base"),
]
# The second build: the base passages plus 40 more, embedded 2 per batch (20 slow batches).
EXTRA = [
    Passage(f"x{i:03d}", f"x{i:03d}", f"Tỉnh số {i}", f"Đoạn văn thêm số {i} kể về sông Hồng, lúa gạo và chợ quê.", "x")
    for i in range(40)
]
SECOND = BASE + EXTRA


class SlowEmbedder:
    """Hashed bag of folded syllables (dim 32, L2-normalized), deterministic across processes.

    ``delay`` seconds of sleep per ``encode_passages`` call; ``fail_after`` raises on the call after that
    many successful ones. ``texts`` records what was embedded (cache misses only).
    """

    model_id = "test/slow-bag-32"
    dim = 32
    name = "slow-fake"

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.calls = 0
        self.texts: list[str] = []

    def vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for s in folded_syllables(text):
            v[int(hashlib.md5(s.encode()).hexdigest(), 16) % self.dim] += 1.0
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("embedder crashed mid-build")
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        self.texts += list(texts)
        return np.stack([self.vec(t) for t in texts])

    encode_queries = encode_passages


# ------------------------------------------------------------------------------------------------ helpers
def _answers(home: Path, generation: str | None = None) -> dict[str, tuple[list, list]]:
    """BM25 and vector answers of a generation (default: CURRENT) for :data:`QUERIES`."""
    emb = SlowEmbedder()
    out = {}
    with open_generation(INDEX, home, generation) as snap:
        for q in QUERIES:
            dense = snap.vectors.search(emb.vec(q), k=3) if snap.vectors is not None else []
            out[q] = (snap.bm25.search(q, k=3), dense)
    return out


def _serving(home: Path) -> tuple[Path, bytes, dict]:
    """Index dir, the bytes of CURRENT, and the answers of the serving generation."""
    build_generation(INDEX, BASE, SlowEmbedder(), home, progress=False)
    idx = settings.index_dir(INDEX, home)
    return idx, (idx / gens.CURRENT_FILE).read_bytes(), _answers(home)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, VIRANKER_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    env.pop("QDRANT_URL", None)
    return env


def _start_slow_builder(home: Path, delay: float = 0.15) -> subprocess.Popen:
    """A process running ``build_generation(SECOND)`` with a :class:`SlowEmbedder` (batch size 2)."""
    script = textwrap.dedent(f"""
        from test_crash_safety import SECOND, INDEX, SlowEmbedder
        from indexing.build import build_generation
        m = build_generation(INDEX, SECOND, SlowEmbedder(delay={delay}), {str(home)!r}, progress=False,
                             batch_size=2, lock_timeout=0)
        print("built", m["generation"], flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _new_state(idx: Path, before: set[str]) -> tuple[Path, dict] | None:
    """The build_state.json of a generation created after ``before`` (None until it appears)."""
    gdir = idx / gens.GENERATIONS_DIR
    for p in sorted(gdir.iterdir()) if gdir.is_dir() else []:
        if p.name not in before and (p / STATE_FILE).is_file():
            try:
                return p, json.loads((p / STATE_FILE).read_text(encoding="utf-8"))
            except json.JSONDecodeError:  # being replaced right now
                return None
    return None


def _wait_for(cond: Callable[[], object], proc: subprocess.Popen, timeout: float = 120.0) -> object:
    """Poll ``cond`` every 10 ms until truthy; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"builder exited ({proc.returncode}) before the kill point:\n{out}\n{err}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("kill point not reached in time")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _generation_names(idx: Path) -> set[str]:
    return {g.name for g in gens.list_generations(idx)}


# --------------------------------------------------------------------------------------------------- tests
@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["embedding", "state-file"])
def test_sigkill_mid_build_keeps_serving_and_rerun_recovers(tmp_path: Path, kill_point: str) -> None:
    from search.service import SearchService

    home = tmp_path / "home"
    idx, current_bytes, before = _serving(home)
    old_gen = gens.current(idx)
    svc = SearchService(INDEX, root=home, check_interval=0.0, default_reranker=None,
                        embedder_loader=lambda name: SlowEmbedder())
    svc_before = [h.id for h in svc.search("thủ đô Việt Nam", "hybrid", top_k=3).hits]
    existing = _generation_names(idx)

    texts = [embedding_text(p) for p in SECOND]
    cache = EmbeddingCache(settings.cache_path(home))
    proc = _start_slow_builder(home)
    if kill_point == "embedding":  # BM25 done, a few batches of vectors embedded and cached
        _wait_for(lambda: len(cache.get_many(SlowEmbedder.model_id, texts, dim=32)) >= len(BASE) + 4, proc)
        gen_dir, state = _new_state(idx, existing)
    else:  # as soon as the new generation exists
        gen_dir, state = _wait_for(lambda: _new_state(idx, existing), proc)
    _kill(proc)

    # CURRENT untouched; the serving generation answers exactly as before (through the open service, then
    # re-opened: Qdrant local mode allows one client per path, so the service is closed first).
    assert (idx / gens.CURRENT_FILE).read_bytes() == current_bytes
    assert [h.id for h in svc.search("thủ đô Việt Nam", "hybrid", top_k=3).hits] == svc_before
    assert svc.generation == old_gen
    svc.close()
    assert _answers(home) == before
    # The partial generation is incomplete (no manifest), never current, and the lock died with the process.
    partial = {g.name: g for g in gens.list_generations(idx)}[gen_dir.name]
    assert partial.status == "incomplete" and not partial.is_current
    with gens.IndexLock(idx, timeout=0):
        pass

    # Vectors cached before the kill are never computed again (BASE's come from the first build).
    cached = cache.get_many(SlowEmbedder.model_id, texts, dim=32)
    uncached = sorted(t for i, t in enumerate(texts) if i not in cached)
    if kill_point == "embedding":
        assert len(BASE) < len(cached) < len(texts)
        rerun = SlowEmbedder()  # resumes the same generation
        m = build_generation(INDEX, SECOND, rerun, home, progress=False, batch_size=2)
        assert m["generation"] == gen_dir.name
    else:
        assert cleanup(INDEX, home) == [gen_dir.name] and not gen_dir.exists()
        rerun = SlowEmbedder()  # a fresh generation
        m = build_generation(INDEX, SECOND, rerun, home, progress=False, batch_size=8)
    assert sorted(rerun.texts) == uncached
    assert gens.current(idx) == m["generation"] and m["counts"] == {"passages": 45, "documents": 45, "vectors": 45}
    assert [g.status for g in gens.list_generations(idx)] == ["complete", "complete"]
    with open_generation(INDEX, home) as snap:
        assert snap.bm25.doc_count() == 45 and snap.vectors.count() == 45
    assert _answers(home, old_gen) == before  # the old generation is still intact for rollback


@pytest.mark.slow
def test_sigkill_of_the_cli_during_bm25_stage(tmp_path: Path) -> None:
    """``python -m indexing build`` killed while writing the BM25 index (BM25-only generations)."""
    from indexing.__main__ import main as cli

    home = tmp_path / "home"
    build_generation(INDEX, BASE, None, home, progress=False)
    idx = settings.index_dir(INDEX, home)
    current_bytes = (idx / gens.CURRENT_FILE).read_bytes()
    before = _answers(home)
    corpus = tmp_path / "big.jsonl"
    with open(corpus, "w", encoding="utf-8") as fh:
        for i in range(1500):
            words = " ".join(f"từ{(i * 7 + j) % 997} sông Hồng lúa gạo" for j in range(12))
            fh.write(json.dumps({"_id": f"d{i}", "title": f"Tài liệu {i}", "text": words}, ensure_ascii=False) + "\n")
    existing = _generation_names(idx)
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexing", "build", str(corpus), "--index", INDEX, "--home", str(home), "-q"],
        cwd=REPO, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gen_dir, state = _wait_for(lambda: (s := _new_state(idx, existing)) and s[1].get("stages", {}).get("passages") and s,
                               proc)
    _kill(proc)
    assert not state.get("stages", {}).get("bm25"), "the kill should land in the BM25 stage"
    assert (idx / gens.CURRENT_FILE).read_bytes() == current_bytes
    assert _answers(home) == before
    assert not (gen_dir / gens.MANIFEST_FILE).exists()
    # The CLI itself recovers: a rerun resumes the partial generation (same input) and swaps CURRENT.
    assert cli(["build", str(corpus), "--index", INDEX, "--home", str(home), "-q"]) == 0
    assert gens.current(idx) == gen_dir.name and gens.is_complete(idx, gen_dir.name)
    with open_generation(INDEX, home) as snap:
        assert snap.bm25.doc_count() == 1500


@pytest.mark.slow
@pytest.mark.parametrize("where", ["embedder", "qdrant-upsert"])
def test_exception_mid_build_keeps_serving_and_rerun_resumes(
    tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    idx, current_bytes, before = _serving(home)
    if where == "embedder":
        broken = SlowEmbedder(fail_after=3)
        with pytest.raises(RuntimeError, match="embedder crashed"):
            build_generation(INDEX, SECOND, broken, home, progress=False, batch_size=2)
    else:
        import indexing.vectors as vectors

        def upsert_then_fail(self, ids, *a, **k):
            raise ConnectionError("qdrant went away during upsert")

        monkeypatch.setattr(vectors.VectorStore, "upsert", upsert_then_fail)
        with pytest.raises(ConnectionError):
            build_generation(INDEX, SECOND, SlowEmbedder(), home, progress=False, batch_size=2)
        monkeypatch.undo()
    assert (idx / gens.CURRENT_FILE).read_bytes() == current_bytes
    assert _answers(home) == before
    [partial] = [g for g in gens.list_generations(idx) if g.status == "incomplete"]
    state = json.loads((partial.path / STATE_FILE).read_text(encoding="utf-8"))
    assert state["stages"].get("bm25") and not state["stages"].get("vectors")
    with gens.IndexLock(idx, timeout=0):  # the failed build released the lock
        pass
    rerun = SlowEmbedder()
    m = build_generation(INDEX, SECOND, rerun, home, progress=False, batch_size=2)
    assert m["generation"] == partial.name and gens.current(idx) == partial.name
    # Cache hits: BASE texts (first build) + what was embedded before the failure.
    expected_new = len(EXTRA) - (6 if where == "embedder" else len(EXTRA))
    assert len(rerun.texts) == expected_new
    assert m["counts"]["vectors"] == len(SECOND)
    assert [g.status for g in gens.list_generations(idx)] == ["complete", "complete"]


@pytest.mark.slow
def test_second_concurrent_builder_gets_index_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from indexing.__main__ import main as cli

    home = tmp_path / "home"
    idx, current_bytes, _ = _serving(home)
    existing = _generation_names(idx)
    proc = _start_slow_builder(home, delay=0.1)
    try:
        _wait_for(lambda: _new_state(idx, existing), proc)  # the first builder holds the lock now
        t = time.monotonic()
        with pytest.raises(gens.IndexBusy, match="being modified by another process"):
            build_generation(INDEX, BASE, None, home, progress=False)
        assert time.monotonic() - t < 5.0  # lock_timeout=0 by default: fails at once, no hang
        corpus = tmp_path / "c.jsonl"
        corpus.write_text(json.dumps({"_id": "a", "text": "một đoạn"}, ensure_ascii=False) + "\n", encoding="utf-8")
        assert cli(["build", str(corpus), "--index", INDEX, "--home", str(home), "-q"]) == 1
        assert "being modified by another process" in capsys.readouterr().err
        assert (idx / gens.CURRENT_FILE).read_bytes() == current_bytes  # the refused builders changed nothing
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    built = out.split()[-1]
    assert gens.current(idx) == built  # the first builder was not disturbed and swapped
    assert [g.status for g in gens.list_generations(idx)] == ["complete", "complete"]


# --------------------------------------------------------------------------------- incremental changes
def _tree_digest(path: Path) -> dict[str, str]:
    """sha1 of every file under ``path`` (relative name → digest)."""
    return {str(f.relative_to(path)): hashlib.sha1(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def _start_slow_change(home: Path, kind: str) -> subprocess.Popen:
    """A process running an incremental add (its embedder sleeps) or delete (the restorer update sleeps, so the
    kill lands after BM25 and vectors of the new generation were written)."""
    script = textwrap.dedent(f"""
        import time
        import indexing.delta as delta
        from test_crash_safety import EXTRA, INDEX, SlowEmbedder
        from indexing.edits import add_passages, delete_passages
        if {kind!r} == "add":
            m = add_passages(INDEX, EXTRA[:6], SlowEmbedder(delay=60), {str(home)!r}, progress=False)
        else:
            update = delta.update_saved
            def slow_update(*a, **k):
                time.sleep(60)
                return update(*a, **k)
            delta.update_saved = slow_update
            m = delete_passages(INDEX, ["hue", "pho"], SlowEmbedder(), {str(home)!r}, progress=False)
        print("changed", m["generation"], flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["add", "delete"])
def test_sigkill_mid_incremental_change_keeps_serving_and_next_change_succeeds(tmp_path: Path, kind: str) -> None:
    from indexing.edits import add_passages, delete_passages

    home = tmp_path / "home"
    idx, current_bytes, before = _serving(home)
    old_gen = gens.current(idx)
    old_files = _tree_digest(gens.generation_path(idx, old_gen))
    existing = _generation_names(idx)
    proc = _start_slow_change(home, kind)
    # add: BM25 of the new generation written, the embedder asleep; delete: BM25 and vectors written
    last = "bm25" if kind == "add" else "vectors"
    gen_dir, _ = _wait_for(lambda: (s := _new_state(idx, existing)) and s[1].get("stages", {}).get(last) and s, proc)
    time.sleep(0.3)
    _kill(proc)

    # The previous generation serves, byte for byte as before (hard-linked BM25 segments included).
    assert (idx / gens.CURRENT_FILE).read_bytes() == current_bytes
    assert _tree_digest(gens.generation_path(idx, old_gen)) == old_files
    assert _answers(home) == before
    partial = {g.name: g for g in gens.list_generations(idx)}[gen_dir.name]
    assert partial.status == "incomplete" and not partial.is_current
    with gens.IndexLock(idx, timeout=0):
        pass

    # The next change succeeds (incrementally) and removes the partial generation.
    if kind == "add":
        m = add_passages(INDEX, EXTRA[:6], SlowEmbedder(), home, progress=False)
        expected = len(BASE) + 6
    else:
        m = delete_passages(INDEX, ["hue", "pho"], SlowEmbedder(), home, progress=False)
        expected = len(BASE) - 2
    assert m["incremental"] and m["parent"] == old_gen and gens.current(idx) == m["generation"]
    assert gen_dir.name not in _generation_names(idx) and not gen_dir.exists()
    assert m["counts"] == {"passages": expected, "documents": expected, "vectors": expected}
    with open_generation(INDEX, home) as snap:
        assert snap.bm25.doc_count() == expected and snap.vectors.count() == expected
    assert _answers(home, old_gen) == before  # still intact for rollback
