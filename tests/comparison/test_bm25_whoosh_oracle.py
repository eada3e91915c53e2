"""The oracle for :class:`indexing.bm25_scoring.PostingScorer`: Whoosh's own BM25F matcher and collector with
Lucene's IDF (``LuceneBM25F``, kept here with the tests, as bm25s keeps its comparisons). The numpy scorer must
return the same passages in the same order with the same scores."""

from __future__ import annotations

from math import log
from pathlib import Path
from typing import Any

import pytest
from whoosh import index as whoosh_index
from whoosh import query as wq
from whoosh.scoring import BM25F

from indexing.bm25 import INDEX_NAME, BM25Index
from indexing.passages import Passage

PASSAGES = [
    Passage("hn", "hn", "Hà Nội", "Hà Nội là thủ đô của nước Cộng hòa xã hội chủ nghĩa Việt Nam.", "a"),
    Passage("hcm", "hcm", "Thành phố Hồ Chí Minh", "Thành phố Hồ Chí Minh là thành phố đông dân nhất Việt Nam.",
            "a"),
    Passage("pho", "pho", "Phở", "Phở là món ăn truyền thống, gồm bánh phở và nước dùng.", "a"),
    Passage("ma1", "ma1", "", "Con ma xuất hiện trong truyện cổ tích.", "b"),
    Passage("ma2", "ma2", "", "Con má xuất hiện trong truyện cổ tích.", "b"),
    Passage("hoa", "hoa", "", "Hoà bình và thuỷ chung.", "b"),
]
QUERIES = ["thủ đô Việt Nam", "thanh pho ho chi minh dong dan", "con má xuất hiện", "Hoà bình", "không có",
           "Hồ Gươm", "ho guom thu do"]


class LuceneBM25F(BM25F):
    """Whoosh BM25F with Lucene/bm25s' IDF ``log(1 + (N - df + 0.5) / (df + 0.5))``."""

    def idf(self, searcher: Any, fieldname: str, text: str) -> float:
        parent = searcher.get_parent()
        df = parent.doc_frequency(fieldname, text)
        n = parent.doc_count_all()
        return log(1.0 + (n - df + 0.5) / (df + 0.5))


def whoosh_search(ix: BM25Index, query: str, k: int = 10, field: str = "both") -> list[tuple[str, float]]:
    """The same OR-ed terms as :meth:`BM25Index.search`, scored by Whoosh's matcher with LuceneBM25F."""
    terms = ix.query_terms(query, field)
    if not terms:
        return []
    weighting = LuceneBM25F(B=float(ix.config["B"]), K1=float(ix.config["K1"]))
    with whoosh_index.open_dir(ix.path, indexname=INDEX_NAME).searcher(weighting=weighting) as s:
        ids = s.reader().column_reader("id")
        q = wq.Or([wq.Term(f, t, boost=b) for f, t, b in terms])
        return [(ids[docnum], float(score)) for score, docnum in s.search(q, limit=k).top_n]


def _same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    assert [i for i, _ in a] == [i for i, _ in b]
    assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> BM25Index:
    ix = BM25Index.build(tmp_path_factory.mktemp("oracle") / "bm25", PASSAGES)
    yield ix
    ix.close()


@pytest.mark.parametrize("field", ["both", "exact", "folded"])
def test_numpy_scorer_equals_whoosh_scoring(index: BM25Index, field: str) -> None:
    assert whoosh_search(index, "thủ đô Việt Nam", field=field) or field == "exact"  # the oracle scores
    for q in QUERIES:
        _same(index.search(q, k=10, field=field), whoosh_search(index, q, k=10, field=field))


def test_numpy_scorer_equals_whoosh_with_deletions_and_segments(tmp_path: Path) -> None:
    """With deletions, the scorer counts live documents only (N, df, average length), so the oracle is Whoosh
    on a rebuild of the live passages in the same order (Whoosh itself still counts deleted documents)."""
    hn = Passage("hn", "hn", "Hà Nội", "Hà Nội có Hồ Gươm.", "z")
    extra = Passage("extra", "extra", "", "Thủ đô mới", "z")
    ix = BM25Index.build(tmp_path / "d", PASSAGES, k1=1.5, b=0.6)
    ix.add([hn])  # replaces (deletes) the old "hn"
    ix.add([extra])  # a second segment
    ix.close()
    live = [p for p in PASSAGES if p.id != "hn"] + [hn, extra]
    with BM25Index.open(tmp_path / "d") as fresh, BM25Index.build(tmp_path / "r", live, k1=1.5, b=0.6) as rebuilt:
        assert fresh._current_searcher().reader().has_deletions()
        for q in [*QUERIES, "Cộng hòa xã hội chủ nghĩa"]:
            _same(fresh.search(q, k=10), whoosh_search(rebuilt, q, k=10))
