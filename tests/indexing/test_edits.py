"""Incremental add/delete (:mod:`indexing.edits`): the same index as a full rebuild of the same passages —
passages.jsonl bytes, BM25 ids and scores, vector search, restorer counts and output, manifest counts — and
the restorer's :meth:`~indexing.restorer.DiacriticRestorer.update`."""

from __future__ import annotations

import pytest

from indexing.restorer import DiacriticRestorer

BASE_TEXTS = [
    "Hà Nội là thủ đô của Việt Nam, nằm bên bờ sông Hồng.",
    "Thành phố Hồ Chí Minh là thành phố đông dân nhất Việt Nam.",
    "Phở là món ăn truyền thống, nước dùng ninh từ xương bò.",
    "Huế là cố đô của triều Nguyễn với kinh thành và lăng tẩm.",
    "Bóng đèn sáng trong căn phòng nhỏ ở Hà Nội.",
]
ADDED_TEXTS = ["Đà Lạt nằm trên cao nguyên Lâm Viên, khí hậu mát mẻ quanh năm.", "Ngôi đền cổ bên hồ Hoàn Kiếm.",
               "Bóng đèn tắt khi mất điện ở thành phố."]
RESTORE_QUERIES = ["ha noi la thu do", "bong den", "thanh pho ho chi minh", "den co ben ho", "pho bo", "co do hue",
                   "khi hau mat me", "cao nguyen lam vien"]


def _model(r: DiacriticRestorer) -> tuple[dict, dict, dict]:
    """The restorer's counts keyed by forms (ids differ with the order the forms were first seen)."""
    V, w = r._V, r.vocab
    uni = {w[i]: int(c) for i, c in enumerate(r.unigram) if i >= 2}
    bi = {(w[k // V], w[k % V]): c for k, c in r.bigram.items()}
    tri = {(w[k // V // V], w[k // V % V], w[k % V]): c for k, c in r.trigram.items()}
    return uni, bi, tri


@pytest.mark.parametrize("removed", [[], [1], [0, 4]])
def test_restorer_update_equals_a_rebuild(removed: list[int]) -> None:
    kept = [t for i, t in enumerate(BASE_TEXTS) if i not in removed]
    full = DiacriticRestorer.from_texts(kept + ADDED_TEXTS)
    inc = DiacriticRestorer.from_texts(BASE_TEXTS).update(ADDED_TEXTS, [BASE_TEXTS[i] for i in removed])
    assert sorted(inc.vocab) == sorted(full.vocab) and inc._V == full._V
    assert _model(inc) == _model(full)
    for q in RESTORE_QUERIES:
        assert inc.restore_k(q, 3) == full.restore_k(q, 3), q
    if not removed:  # adds only: even the ids (first-seen order) are those of the rebuild
        assert inc.vocab == full.vocab and inc.bigram == full.bigram and inc.trigram == full.trigram


def test_update_saved_equals_update(tmp_path) -> None:
    from indexing.restorer_update import update_saved

    base = DiacriticRestorer.from_texts(BASE_TEXTS)
    base.save(tmp_path / "a.npz")
    update_saved(tmp_path / "a.npz", tmp_path / "b.npz", ADDED_TEXTS, BASE_TEXTS[1:2])
    got, want = DiacriticRestorer.load(tmp_path / "b.npz"), base.update(ADDED_TEXTS, BASE_TEXTS[1:2])
    assert got.vocab == want.vocab and _model(got) == _model(want)


def test_restorer_update_refuses_text_it_never_counted() -> None:
    r = DiacriticRestorer.from_texts(BASE_TEXTS[:2])
    with pytest.raises(ValueError, match="never counted"):
        r.update([], ["Phở bò tái chín"])


# ---------------------------------------------------------------------------------------- generations
import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from indexing import generations as gens  # noqa: E402
from indexing import settings  # noqa: E402
from indexing.build import add_passages, build_generation, current_passages, delete_passages  # noqa: E402
from indexing.normalize import folded_syllables  # noqa: E402
from indexing.passages import Passage  # noqa: E402
from indexing.snapshot import open_generation  # noqa: E402

QUERIES = ["thủ đô Việt Nam", "sông Hồng", "món ăn truyền thống", "cố đô", "thành phố đông dân", "bún chả",
           "ha noi", "khí hậu mát mẻ"]


class BagEmbedder:
    """Hashed bag of folded syllables (dim 16), L2-normalized, deterministic; records what it embedded."""

    model_id = "test/bag-16"
    dim = 16
    name = "bag"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for s in folded_syllables(text):
            v[int(hashlib.md5(s.encode()).hexdigest(), 16) % self.dim] += 1.0
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        self.texts += list(texts)
        return np.stack([self.vec(t) for t in texts])


def _corpus() -> list[Passage]:
    out = []
    for i, text in enumerate(BASE_TEXTS * 4):
        doc = f"d{i // 2}"
        out.append(Passage(f"{doc}#p{i % 2}", doc, f"Bài {i // 2}", f"{text} Đoạn {i}: sông Hồng {'và ' * (i % 3)}"
                           f"bún chả.", "base"))
    return out


def _state(home: Path, index: str) -> dict:
    """Everything a search sees of the current generation (plus its files' identity)."""
    emb = BagEmbedder()
    idx = settings.index_dir(index, home)
    gdir = gens.current_path(idx)
    m = gens.read_manifest(idx, gens.current(idx))
    with open_generation(index, home) as snap:
        bm25 = {q: snap.bm25.search(q, k=100) for q in QUERIES}
        dense = {q: snap.vectors.search(emb.vec(q), k=100) for q in QUERIES}
        n = (snap.bm25.doc_count(), snap.vectors.count())
    r = DiacriticRestorer.load(gdir / "diacritics.npz")
    return {"passages": (gdir / "passages.jsonl").read_bytes(), "bm25": bm25, "dense": dense, "n": n,
            "counts": m["counts"], "sha": m["passages_sha256"], "fingerprint": m["fingerprint"],
            "restorer": _model(r), "restored": {q: r.restore_k(q, 3) for q in RESTORE_QUERIES}}


def _same(inc: dict, full: dict) -> None:
    for key in ("passages", "n", "counts", "sha", "fingerprint", "restorer", "restored"):
        assert inc[key] == full[key], key
    for q in QUERIES:
        a, b = inc["bm25"][q], full["bm25"][q]
        assert [i for i, _ in a] == [i for i, _ in b], q  # ties too: the documents keep their order
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-12)
        a, b = inc["dense"][q], full["dense"][q]  # the engine orders equal scores its own way
        assert sorted((round(s, 5), i) for i, s in a) == sorted((round(s, 5), i) for i, s in b), q


def test_incremental_changes_equal_a_rebuild(tmp_path: Path) -> None:
    home, ref = tmp_path / "home", tmp_path / "ref"
    emb = BagEmbedder()
    build_generation("ix", _corpus(), emb, home, progress=False)
    n_embedded = len(emb.texts)
    new = [Passage(f"n{i}", f"n{i // 2}", "Mới", f"{ADDED_TEXTS[i % 3]} Thêm {i}, sông Hồng.", "new") for i in range(6)]
    steps = [
        lambda: add_passages("ix", new[:4], emb, home, progress=False),
        lambda: add_passages("ix", [Passage("d1", "d1", "Bài 1", "Bản mới: bún chả Hà Nội.", "v2")], emb, home,
                             replace=True, progress=False),
        lambda: delete_passages("ix", ["d3", "n0"], emb, home, progress=False),  # a document and a passage
        lambda: add_passages("ix", new[4:], emb, home, progress=False),
        lambda: delete_passages("ix", ["d0#p0"], emb, home, progress=False),
    ]
    for step in steps:
        m = step()
        assert m["incremental"] is True and m["operation"] in ("add", "delete")
        build_generation("ix", current_passages("ix", home), BagEmbedder(), ref, progress=False)
        _same(_state(home, "ix"), _state(ref, "ix"))
    assert len(emb.texts) == n_embedded + 7  # only the added texts were embedded
    assert m["counts"]["documents"] == len({p.doc_id for p in current_passages("ix", home)})
    assert set(m["stage_seconds"]) >= {"passages", "bm25", "restorer"}


def test_full_rebuild_stays_available(tmp_path: Path) -> None:
    home = tmp_path / "home"
    emb = BagEmbedder()
    build_generation("ix", _corpus(), emb, home, progress=False)
    m = delete_passages("ix", ["d2"], emb, home, progress=False, incremental=False)
    assert "incremental" not in m and m["counts"]["passages"] == len(_corpus()) - 2
