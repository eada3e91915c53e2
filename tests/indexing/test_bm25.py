"""Whoosh BM25: build/open round trip, diacritic-free queries, exact-over-folded ranking, get, refresh."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from indexing import normalize
from indexing.bm25 import BM25Index, NormalizeTokenizer
from indexing.corpus import Passage

PASSAGES = [
    Passage("hn", "hn", "Hà Nội", "Hà Nội là thủ đô của nước Cộng hòa xã hội chủ nghĩa Việt Nam.", "a"),
    Passage(
        "hcm",
        "hcm",
        "Thành phố Hồ Chí Minh",
        "Thành phố Hồ Chí Minh là thành phố đông dân nhất Việt Nam.",
        "a",
    ),
    Passage("pho", "pho", "Phở", "Phở là món ăn truyền thống, gồm bánh phở và nước dùng.", "a"),
    Passage("ma1", "ma1", "", "Con ma xuất hiện trong truyện cổ tích.", "b"),
    Passage("ma2", "ma2", "", "Con má xuất hiện trong truyện cổ tích.", "b"),
    Passage("hoa", "hoa", "", "Hoà bình và thuỷ chung.", "b"),  # old-style tone marks
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> BM25Index:
    ix = BM25Index.build(tmp_path_factory.mktemp("bm25") / "bm25", PASSAGES)
    yield ix
    ix.close()


def test_round_trip_and_reopen(index: BM25Index) -> None:
    assert index.doc_count() == len(PASSAGES) == len(index)
    hits = index.search("thủ đô Việt Nam", k=3)
    assert hits[0][0] == "hn" and hits[0][1] > hits[1][1] > 0
    with BM25Index.open(index.path) as again:
        assert again.search("thủ đô Việt Nam", k=3) == hits


def test_query_without_diacritics_finds_its_passage(index: BM25Index) -> None:
    assert index.search("thu do viet nam", k=1)[0][0] == "hn"
    assert index.search("mon an truyen thong pho", k=1)[0][0] == "pho"
    assert index.search("thu do", k=5, field="exact") == []  # exact field needs the marks


def test_exact_match_outranks_folded_only_match(index: BM25Index) -> None:
    hits = dict(index.search("con má", k=5))
    assert hits["ma2"] > hits["ma1"] > 0  # both match folded "ma"; only ma2 matches exact "má"
    hits = dict(index.search("con ma", k=5))
    assert hits["ma1"] > hits["ma2"] > 0
    folded = dict(index.search("con má", k=5, field="folded"))
    assert folded["ma1"] == pytest.approx(folded["ma2"])  # folded alone cannot tell them apart
    exact = dict(index.search("con má", k=5, field="exact"))
    assert "ma2" in exact and exact.get("ma1", 0) < exact["ma2"]


def test_auto_field_uses_folded_for_queries_without_diacritics(index: BM25Index) -> None:
    assert index.resolve_field("con ma", "auto") == "folded"
    assert index.resolve_field("con má", "auto") == "both"
    assert index.search("con ma", k=5, field="auto") == index.search("con ma", k=5, field="folded")
    assert index.search("con má", k=5, field="auto") == index.search("con má", k=5, field="both")


def test_tone_mark_placement_is_unified(index: BM25Index) -> None:
    # The document says "Hoà ... thuỷ" (old placement); a query in the new placement matches exactly.
    assert index.search("hòa bình thủy chung", k=1, field="exact")[0][0] == "hoa"


def test_analyzers_are_the_normalize_functions(index: BM25Index) -> None:
    text = "Thuý Kiều ĐÃ đến Hà Nội!"
    assert index.analyze(text, "exact") == normalize.syllables(text)
    assert index.analyze(text, "folded") == normalize.folded_syllables(text)
    tok = pickle.loads(pickle.dumps(NormalizeTokenizer("folded")))  # stored in the Whoosh schema
    assert [t.text for t in tok(text)] == normalize.folded_syllables(text)
    with pytest.raises(ValueError):
        NormalizeTokenizer("stemmed")


def test_numpy_scorer_skips_deleted_documents(tmp_path: Path) -> None:
    # (scores against Whoosh's own BM25F: tests/comparison/test_bm25_whoosh_oracle.py)
    ix = BM25Index.build(tmp_path / "d", PASSAGES)
    ix.add([Passage("hn", "hn", "Hà Nội", "Hà Nội có Hồ Gươm.", "z")])  # replaces (deletes) the old "hn"
    ix.add([Passage("extra", "extra", "", "Thủ đô mới", "z")])  # a second segment
    assert [i for i, _ in ix.search("Hồ Gươm", k=10)].count("hn") == 1
    ix.close()


def test_get_returns_passages_in_order(index: BM25Index) -> None:
    got = index.get(["pho", "hn"])
    assert got == [PASSAGES[2], PASSAGES[0]]
    with pytest.raises(KeyError, match="nope"):
        index.get(["hn", "nope"])
    assert index.get(["nope", "hn"], missing="skip") == [PASSAGES[0]]


def test_empty_and_punctuation_queries(index: BM25Index) -> None:
    assert index.search("", k=5) == []
    assert index.search("?!...", k=5) == []
    assert index.search("Hà Nội", k=0) == []
    with pytest.raises(ValueError):
        index.search("x", field="bogus")
    with pytest.raises(ValueError, match="words"):
        index.search("x", field="words")


def test_add_refreshes_the_searcher(tmp_path: Path) -> None:
    ix = BM25Index.build(tmp_path / "b", PASSAGES[:2])
    assert ix.search("phở", k=5, field="exact") == []
    ix.add([PASSAGES[2]])
    assert ix.search("phở", k=5)[0][0] == "pho" and ix.doc_count() == 3
    # A second handle sees the change after refresh().
    other = BM25Index.open(tmp_path / "b")
    assert other.search("phở", k=1)[0][0] == "pho"  # its id column is read (and kept) now
    ix.add([Passage("new", "new", "", "bún chả Hà Nội", "x")])
    other.refresh()
    assert other.search("bún chả", k=1)[0][0] == "new"  # the kept column was dropped with the old searcher
    assert other.get(["new"])[0].text == "bún chả Hà Nội"
    other.close()
    ix.close()


def test_a_query_reads_nothing_proportional_to_the_index(index: BM25Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 19's serving cost): each query re-read Whoosh's table of contents from disk (twice,
    through ``FileIndex.schema``) and the whole offset table of the "id" column; ``get`` ran a Term query
    per id. Now: no TOC read, one column reader per searcher, term lookups for ``get``."""
    from whoosh import index as whoosh_index
    from whoosh import reading

    index.search("Hà Nội", k=2)
    calls = {"toc": 0, "column": 0}
    real_toc, real_column = whoosh_index.FileIndex._read_toc, reading.SegmentReader.column_reader

    def toc(self, *a, **kw):
        calls["toc"] += 1
        return real_toc(self, *a, **kw)

    def column(self, *a, **kw):
        calls["column"] += 1
        return real_column(self, *a, **kw)

    monkeypatch.setattr(whoosh_index.FileIndex, "_read_toc", toc)
    monkeypatch.setattr(reading.SegmentReader, "column_reader", column)
    for q in ("thủ đô Việt Nam", "pho bo", "truyện cổ tích", "Hoà bình"):
        assert index.search(q, k=3)
        assert [p.id for p in index.get([h for h, _ in index.search(q, k=2)])]
    assert calls == {"toc": 0, "column": 0}


@pytest.mark.slow
def test_words_variant(tmp_path: Path) -> None:
    ix = BM25Index.build(tmp_path / "w", PASSAGES, words=True)
    assert ix.has_words
    assert ix.search("thủ đô", k=1, field="words")[0][0] == "hn"
    assert "thủ_đô" in ix.analyze("thủ đô của Việt Nam", "words")
    ix.close()


def test_add_is_seen_by_the_same_open_index(tmp_path: Path) -> None:
    """Regression: ``Searcher.refresh()`` reused the old segment reader (by segment id) and missed the deletion
    of the replaced version: doc_count 6 → 8 instead of 7 and ``get`` returned the old text."""
    ix = BM25Index.build(tmp_path / "b", PASSAGES)
    new_hn = Passage("hn", "hn", "Hà Nội", "Hà Nội có Hồ Gươm.", "z")
    ix.add([new_hn, Passage("x", "x", "", "bún chả", "z")])
    assert ix.doc_count() == 7
    assert ix.get(["hn"]) == [new_hn]
    assert [i for i, _ in ix.search("Hà Nội", k=10)].count("hn") == 1
    ix.close()


def _edit_queries() -> list[str]:
    return ["Hà Nội", "thành phố Việt Nam", "truyện cổ tích", "pho bo", "con ma", "Hoà bình", "bún chả Hà Nội",
            "số 7 sông", "đoạn văn"]


def test_incremental_edits_score_like_a_rebuild(tmp_path: Path) -> None:
    """Rounds of adds, replacements and deletions (several segments, tail merges, deletions in the first
    segment) give the ids and scores of a rebuild of the same live passages in the same order."""
    extra = [Passage(f"e{i}", f"d{i % 7}", f"Đoạn {i}", f"Đoạn văn số {i} kể về sông {'Hồng' if i % 2 else 'Cầu'}"
                     f" và bún chả Hà Nội {'ngon' * (i % 3)}.", "x") for i in range(40)]
    ix = BM25Index.build(tmp_path / "inc", PASSAGES, k1=1.3, b=0.7)
    live = list(PASSAGES)
    rounds = [(extra[:8], []), (extra[8:12], ["hcm", "e3"]), (extra[12:16], []), (extra[16:30], ["hn"]),
              ([Passage("e5", "d5", "Mới", "Bản mới của đoạn năm, sông Hồng.", "y")], ["e5"]), ([], ["e20", "ma1"]),
              (extra[30:], [])]
    for added, gone in rounds:
        assert ix.apply(added, gone) == len([p for p in live if p.id in set(gone)])
        live = [p for p in live if p.id not in set(gone)] + list(added)
        with BM25Index.build(tmp_path / "full", live, k1=1.3, b=0.7) as full:
            assert ix.doc_count() == full.doc_count() == len(live)
            for q in _edit_queries():
                a, b = ix.search(q, k=50), full.search(q, k=50)
                assert [i for i, _ in a] == [i for i, _ in b], q
                assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-12), q
    segments = ix._current_searcher().reader().leaf_readers()
    assert 1 < len(segments) <= 5  # tail merges keep the segment count logarithmic
    assert ix.find(ids=["e5", "nope"], doc_ids=["d1"]) == [p for p in live if p.id == "e5" or p.doc_id == "d1"]
    ix.close()


def test_bulk_field_lengths_equal_whooshs_per_document_lengths(tmp_path: Path) -> None:
    """The scorer reads each segment's length column in one piece: same values as ``doc_field_length`` for
    every document of every segment, deleted ones and a segment added by an edit included."""
    import numpy as np

    from indexing.bm25_scoring import _deleted_docnums, _length_column, leaf_field_lengths

    ix = BM25Index.build(tmp_path / "b", PASSAGES)
    ix.apply([Passage("x", "x", "Bún chả", "bún chả Hà Nội rất ngon", "z")], ["hcm", "ma1"])
    r = ix._current_searcher().reader()
    leaves = r.leaf_readers()
    assert len(leaves) >= 1 and r.has_deletions()
    for leaf, _offset in leaves:
        for field in ("exact", "folded"):
            assert _length_column(leaf, field) is not None  # the fast path, not the fallback
            want = [leaf.doc_field_length(d, field) or 0 for d in range(leaf.doc_count_all())]
            assert leaf_field_lengths(leaf, field).tolist() == want
        assert sorted(_deleted_docnums(leaf).tolist()) == [d for d in range(leaf.doc_count_all())
                                                             if leaf.is_deleted(d)]
    assert np.isfinite([s for _, s in ix.search("Hà Nội", k=5)]).all()
    ix.close()
