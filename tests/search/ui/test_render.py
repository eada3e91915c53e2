"""HTML rendering (escaping, highlighting, snippets, tables) and list comparison (overlap, tau, movement)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from reranker.backends import sigmoid
from search.compare import (
    kendall_tau,
    minmax,
    movement_marker,
    overlap_at_k,
    pairwise_stats,
    rank_movement,
)
from search.results import Hit
from search.ui_render import (
    highlight,
    pre_rerank_rank,
    query_terms,
    restored_notice_html,
    results_html,
    safe_link,
    snippet,
    source_html,
    timings_html,
)


@dataclass
class FakeHit:
    id: str
    doc_id: str
    title: str
    text: str
    score: float
    rank: int
    stage_ranks: dict[str, int] = field(default_factory=dict)
    stage_scores: dict[str, float] = field(default_factory=dict)


XSS_TITLE = '<img src=x onerror="alert(1)">'
XSS_TEXT = "Hà Nội <script>alert('xss')</script> và <b onmouseover=alert(2)>thủ đô</b>"


# ------------------------------------------------------------------------------------------- escaping
def test_highlight_escapes_before_marking():
    out = highlight(XSS_TEXT, query_terms("Hà Nội thủ đô"))
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<b " not in out and "&lt;b onmouseover=alert(2)&gt;" in out
    assert "<mark>Hà</mark> <mark>Nội</mark>" in out
    assert "<mark>thủ</mark> <mark>đô</mark>" in out


def test_highlight_without_terms_is_plain_escape():
    assert highlight('a < b & "c"', None) == "a &lt; b &amp; &quot;c&quot;"
    assert highlight("", query_terms("x")) == ""


def test_results_table_escapes_title_and_text():
    hit = FakeHit("x1", "x1", XSS_TITLE, XSS_TEXT, 1.5, 1)
    out = results_html([hit], query_terms("ha noi"))
    assert "<img" not in out and "<script>" not in out
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in out
    assert "<mark>Hà</mark>" in out  # folded match


# ---------------------------------------------------------------------------------------- highlighting
def test_folded_query_highlights_diacritic_text():
    terms = query_terms("thu do viet nam")
    out = highlight("Thủ đô của Việt Nam là Hà Nội.", terms)
    assert out.count("<mark>") == 4
    assert "<mark>Việt</mark> <mark>Nam</mark>" in out
    assert "của" in out and "<mark>của</mark>" not in out


def test_diacritic_query_matches_exactly_not_folded():
    terms = query_terms("Hà")
    assert highlight("Hà hạ hà HÀ", terms) == "<mark>Hà</mark> hạ <mark>hà</mark> <mark>HÀ</mark>"


def test_tone_placement_variants_match():
    # old-style "hoà" in the query matches modern "hòa" in the (normalized) text
    assert "<mark>hòa</mark>" in highlight("hòa bình", query_terms("hoà"))


def test_restored_query_adds_exact_terms():
    terms = query_terms("song", "sông")
    assert terms.matches("sông") and terms.matches("sống")  # typed without marks: folded match
    assert "sông" in terms.exact


def test_restored_function_words_not_highlighted():
    terms = query_terms("nguoi muong song o tinh nao", "người mường sống ở tỉnh nào")
    out = highlight("Người Mường sống ở tỉnh Hòa Bình", terms)
    assert "<mark>ở</mark>" not in out and "<mark>Mường</mark>" in out and "<mark>tỉnh</mark>" in out


def test_stopwords_only_query_still_highlights():
    out = highlight("Đây là của tôi", query_terms("của"))
    assert "<mark>của</mark>" in out


def test_highlight_does_not_match_substrings():
    assert "<mark>" not in highlight("Namibia", query_terms("nam"))


# -------------------------------------------------------------------------------------------- snippet
def test_snippet_short_text_whole():
    assert snippet("Hà Nội", query_terms("ha noi"), 100) == "<mark>Hà</mark> <mark>Nội</mark>"


def test_snippet_centres_on_matches_and_marks_cuts():
    text = ("lorem ipsum " * 60) + "Sông Hồng chảy qua Hà Nội " + ("dolor sit " * 60)
    out = snippet(text, query_terms("song hong ha noi"), 120)
    assert out.startswith("… ") and out.endswith(" …")
    assert "<mark>Sông</mark> <mark>Hồng</mark>" in out
    assert len(out.replace("<mark>", "").replace("</mark>", "")) <= 130


def test_snippet_escapes_when_cut():
    text = "<script>" * 100 + " Hà Nội"
    out = snippet(text, query_terms("Hà Nội"), 60)
    assert "<script>" not in out and "<mark>Hà</mark>" in out


# ---------------------------------------------------------------------------------------- links, misc
@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://vi.wikipedia.org/wiki/H%C3%A0_N%E1%BB%99i", True),
        ("https://wikipedia.org/wiki/X", True),
        ("http://vi.wikipedia.org/wiki/X", False),
        ("javascript:alert(1)//vi.wikipedia.org", False),
        ("https://evil.com/vi.wikipedia.org", False),
        ("https://vi.wikipedia.org.evil.com/", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_link(url, ok):
    assert (safe_link(url) is not None) is ok


def test_source_html_link_and_text():
    link = source_html("Wikipedia tiếng Việt", "https://vi.wikipedia.org/wiki/a\"b")
    assert link.startswith("<a href=") and 'rel="noopener noreferrer nofollow"' in link and "&quot;" in link
    assert source_html("<x>", "https://github.com/x") == "&lt;x&gt;"


def test_timings_and_restored_notice():
    t = timings_html({"bm25": 3.14159, "rerank": 120.0})
    assert "bm25" in t and "3.1 ms" in t and "120.0 ms" in t
    assert restored_notice_html("ha noi", "ha noi") == ""
    note = restored_notice_html("ha noi <b>", "hà nội <b>")
    assert "Đang tìm:" in note and "<b>hà nội &lt;b&gt;</b>" in note


def test_pre_rerank_rank_and_movement_column():
    hits = [
        FakeHit("a", "a", "A", "x", 0.9, 1, {"bm25": 2, "dense": 5, "fusion": 3, "rerank": 1}),
        FakeHit("b", "b", "B", "y", 0.5, 2, {"fusion": 1, "rerank": 2}),
    ]
    assert pre_rerank_rank(hits[0]) == 3
    assert pre_rerank_rank(FakeHit("c", "c", "", "", 1, 1, {"bm25": 1})) is None
    out = results_html(hits, None, relevant={"b"})
    assert "Trước rerank" in out and "▲2" in out and "▼1" in out and "✓" in out


def test_results_empty_is_friendly():
    assert "Không tìm thấy" in results_html([], None)


# -------------------------------------------------------------------------------------------- compare
def test_overlap_at_k():
    assert overlap_at_k(["a", "b", "c"], ["c", "b", "a"], 3) == 1.0
    assert overlap_at_k(["a", "b", "c", "d"], ["a", "x", "y", "b"], 2) == 0.5
    assert overlap_at_k(["a"], ["a"], 10) == 1.0
    assert overlap_at_k([], [], 5) == 1.0
    assert overlap_at_k(["a"], [], 5) == 0.0
    with pytest.raises(ValueError):
        overlap_at_k(["a"], ["a"], 0)


def test_kendall_tau_matches_scipy_on_shared_ids():
    assert kendall_tau(list("abcd"), list("abcd")) == pytest.approx(1.0)
    assert kendall_tau(list("abcd"), list("dcba")) == pytest.approx(-1.0)
    # shared ids a,b,c: orders (a,b,c) vs (b,a,c): one discordant pair of three → tau = 1/3
    assert kendall_tau(list("abcx"), list("ybac")) == pytest.approx(1 / 3)
    assert kendall_tau(list("ab"), list("ax")) is None


def test_rank_movement_and_markers():
    mv = rank_movement(["a", "b", "c", "d"], ["d", "a", "b", "z"])
    assert mv == {"d": 3, "a": -1, "b": -1, "z": None}
    assert [movement_marker(mv[k]) for k in "dabz"] == ["▲3", "▼1", "▼1", "new"]
    assert movement_marker(0) == "="


def test_sigmoid_and_minmax():
    import search.compare

    assert "sigmoid" not in search.compare.__all__ and search.compare.sigmoid is sigmoid  # one logistic function
    s = sigmoid(np.asarray([0.0, 1000.0, -1000.0, 2.0]))
    assert s[0] == 0.5 and s[1] == 1.0 and s[2] == 0.0 and math.isclose(s[3], 1 / (1 + math.exp(-2)), rel_tol=1e-6)
    assert np.allclose(minmax([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    assert np.allclose(minmax([7.0, 7.0]), [1.0, 1.0])
    assert minmax([]).size == 0


def test_pairwise_stats():
    stats = pairwise_stats({"A": list("abc"), "B": list("acb"), "C": list("xyz")}, k=3)
    assert [(s.a, s.b) for s in stats] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert stats[0].overlap == 1.0 and stats[0].tau == pytest.approx(1 / 3) and stats[0].shared == 3
    assert stats[1].overlap == 0.0 and stats[1].tau is None


# ------------------------------------------------------------------------------ Search tab: list, document
def _passages():
    from indexing.passages import Passage

    return [Passage(f"doc#p{i}", "doc", "Tiêu <b>đề</b>", f"Đoạn {i} về Hà Nội", "tai-len.jsonl") for i in (2, 1, 3)] + [
        Passage("solo", "solo", "Một mình", "Không có hàng xóm", "corpus.jsonl")]


def test_hits_list_has_headings_escaped_ids_and_named_scores():
    from search.ui.render_search import hits_html

    hits = [Hit("a'><script>x</script>", "d", "<i>T</i>", "văn bản Hà Nội", 0.5, 1, {"bm25": 1}, {"bm25": 7.5})]
    out = hits_html(hits, query_terms("ha noi"), {hits[0].id: "tai-len.jsonl"})
    assert out.startswith("<ol class='vr-hits'>") and "<h3 class='vr-title'>&lt;i&gt;T&lt;/i&gt;</h3>" in out
    assert "<script>" not in out and "data-doc='a&#x27;&gt;&lt;script&gt;" in out
    assert "7.50" in out and "điểm BM25" in out and "Nguồn: tai-len.jsonl" in out and "Xem tài liệu" in out
    assert "<mark>Hà</mark>" in out


def test_document_view_neighbours_source_file_and_raw_fields():
    from search.ui.documents import PassageLookup
    from search.ui.render_search import document_html

    lookup = PassageLookup(_passages())
    view = lookup.document("doc#p2", {"doc": {"source": "Wikipedia", "url": "https://vi.wikipedia.org/wiki/X"}})
    assert [p.id for p in view.passages] == ["doc#p1", "doc#p2", "doc#p3"] and view.position == 2
    assert view.prev.id == "doc#p1" and view.next.id == "doc#p3"
    out = document_html(view, query_terms("ha noi"))
    assert "Tiêu &lt;b&gt;đề&lt;/b&gt;" in out and "Đoạn trước" in out and "Đoạn sau" in out
    assert "tai-len.jsonl" in out and 'href="https://vi.wikipedia.org/wiki/X"' in out and "đoạn 2/3" in out
    assert "Toàn bộ tài liệu (3 đoạn)" in out and "meta.source" in out and "<mark>Hà</mark>" in out
    solo = lookup.document("solo")
    assert solo.prev is None and solo.next is None
    assert "Đoạn trước" not in document_html(solo) and "Toàn bộ tài liệu" not in document_html(solo)
    assert lookup.document("missing") is None and "Không tìm thấy" in document_html(None)


def test_filters_facets_and_exports():
    import csv
    import io
    import json

    from search.ui.documents import (
        ALL,
        PassageLookup,
        export_csv,
        export_json,
        facet_choices,
        filter_hits,
        hit_source,
    )

    lookup = PassageLookup(_passages())
    hits = [Hit("doc#p1", "doc", "T", "x", 0.9, 1, {"bm25": 1}, {"bm25": 5.0}),
            Hit("solo", "solo", "M", "y, \"z\"", 0.4, 2, {"bm25": 2}, {"bm25": 2.0})]
    sources = {h.id: hit_source(h, {"solo": {"source": "XQuAD-vi"}}, lookup) for h in hits}
    assert sources == {"doc#p1": "tai-len.jsonl", "solo": "XQuAD-vi"}  # the file when the corpus names none
    assert [h.id for h in filter_hits(hits, sources, "XQuAD-vi")] == ["solo"]
    assert [h.id for h in filter_hits(hits, sources, ALL, "doc")] == ["doc#p1"]
    src, docs = facet_choices(hits, sources)
    assert src[0][1] == ALL and {v for _, v in src[1:]} == {"tai-len.jsonl", "XQuAD-vi"} and len(docs) == 3
    rows = list(csv.DictReader(io.StringIO(export_csv(hits, sources))))
    assert [r["id"] for r in rows] == ["doc#p1", "solo"] and rows[1]["text"] == 'y, "z"'
    assert rows[0]["score_scale"] == "bm25" and rows[0]["score"] == "5.0"
    data = json.loads(export_json("q", "q", "bm25", hits, sources))
    assert data["pipeline"] == "bm25" and data["hits"][1]["stage_scores"] == {"bm25": 2.0}


def test_compare_shows_each_score_on_its_own_scale_not_a_saturated_0_to_1():
    """Issue 18: Compare read "1.000" for every reranked hit (sigmoid of logits 10–15) and for rank 1 of a
    min-max list; now the number is the calibrated probability or the retriever's own score, named."""
    from search.results import Hit, SearchResult
    from search.ui.render import compare_html

    reranked = SearchResult("q", "q", "full", [
        Hit("p1", "d1", "T1", "alpha", 14.2, 1, {"fusion": 2}, {"rerank_raw": 14.2, "rerank_prob": 0.31}),
        Hit("p2", "d2", "T2", "beta", 11.0, 2, {"fusion": 1}, {"rerank_raw": 11.0, "rerank_prob": 0.07}),
    ], {"total": 5.0}, "hybrid+viranker", [])
    lexical = SearchResult("q", "q", "full", [
        Hit("p2", "d2", "T2", "beta", 12.5, 1, {"bm25": 1}, {"bm25": 12.5}),
        Hit("p1", "d1", "T1", "alpha", 3.25, 2, {"bm25": 2}, {"bm25": 3.25}),
    ], {"total": 1.0}, "bm25", [])
    out = compare_html("q", {"hybrid+viranker": reranked, "bm25": lexical}, 2)
    assert "<b>31%</b>" in out and "<b>7%</b>" in out  # calibrated probabilities
    assert "<b>12.50</b>" in out and "<b>3.25</b>" in out and "BM25" in out  # BM25's own scores, named
    assert "1.000" not in out and "sigmoid(logit)" not in out
