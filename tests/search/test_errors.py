"""Typed errors and structured notes: the UI words them by class / note code, never by message text."""

from __future__ import annotations

import pytest

from search import results
from search.errors import (
    EmptyQuery,
    IndexBuildFailed,
    IndexNotReady,
    NoSearchableTerms,
    QueryError,
    ServiceError,
    VectorsUnavailable,
)
from search.results import Hit, Note, NoteCode, SearchResult
from search.ui import messages as msg


def test_hierarchy_keeps_the_builtin_bases_callers_catch():
    assert issubclass(EmptyQuery, QueryError) and issubclass(NoSearchableTerms, QueryError)
    assert issubclass(QueryError, ValueError)
    assert issubclass(VectorsUnavailable, ServiceError) and issubclass(VectorsUnavailable, ValueError)
    assert issubclass(ServiceError, RuntimeError) and issubclass(IndexBuildFailed, IndexNotReady)
    err = VectorsUnavailable("x", "hybrid", "no vectors")
    assert (err.pipeline, err.reason) == ("hybrid", "no vectors")


def test_old_import_paths_still_work():
    import app
    from search.pipeline import QueryError as PipelineQueryError
    from search.service import ServiceError as ServiceServiceError

    assert PipelineQueryError is QueryError and ServiceServiceError is ServiceError
    assert app.IndexNotReady is IndexNotReady and app.IndexBuildFailed is IndexBuildFailed


@pytest.mark.parametrize(("err", "expected"), [
    (EmptyQuery("whatever the wording"), msg.EMPTY_QUERY),
    (NoSearchableTerms("reworded"), msg.NO_TERMS),
    (VectorsUnavailable("the store is down (reworded)"), msg.NO_VECTORS),
])
def test_friendly_error_goes_by_class_not_by_text(err, expected):
    assert msg.friendly_error(err) == expected


def test_a_service_error_that_mentions_vectors_is_not_a_missing_vectors_error():
    # the old protocol matched "needs vectors" in the message; only the class counts now
    text = msg.friendly_error(ServiceError("pipeline 'hybrid' needs vectors"))
    assert text != msg.NO_VECTORS and text.startswith("Không thể tìm")
    assert msg.friendly_error(QueryError("query must be a string, got int")).startswith("Câu hỏi không hợp lệ")


def test_model_errors_by_class():
    from indexing.embedders import EmbedderMismatch, EmbedderUnavailable
    from reranker.backends import ModelUnavailable

    text = msg.friendly_error(ModelUnavailable("viranker", "no weights", "set VIRANKER_MODEL"))  # no code
    assert text.startswith("Mô hình viranker chưa dùng được") and "no weights" not in text
    assert msg.friendly_error(EmbedderUnavailable("e5-small", "gone", "install it")).startswith("Mô hình embedding")
    mismatch = EmbedderMismatch("e5-small", "other/model", 384, "intfloat/multilingual-e5-small", 384)
    assert msg.friendly_error(mismatch).startswith("Không thể tìm") and "rebuild the index" in msg.friendly_error(mismatch)
    assert msg.error_kind(EmptyQuery("")) == "info" and msg.error_kind(RuntimeError()) == "warn"
    assert msg.error_kind(IndexBuildFailed("failed", {})) == "error"


def test_notes_render_by_code_whatever_the_english_text(monkeypatch):
    notes = [Note.truncated(64, "syllables"), Note.truncated(512, "characters"),
             Note(NoteCode.RERANK_WINDOW, {"top": 20}), Note(NoteCode.RESTORED, {"query": "hộ chiếu"})]
    assert [str(n) for n in notes] == ["query truncated to 64 syllables", "query truncated to 512 characters",
                                       "ranks after 20 are first-stage order (not reranked)",
                                       "searched with diacritics restored: hộ chiếu"]
    vi = [msg.note_vi(n) for n in notes]
    assert vi == ["Câu hỏi quá dài: chỉ dùng 64 âm tiết đầu tiên.", "Câu hỏi quá dài: chỉ dùng 512 ký tự đầu tiên.",
                  "Từ hạng 21 trở đi là thứ tự trước rerank (chỉ 20 đoạn đầu được rerank).", None]
    # rewording the English notes changes nothing in the UI (the old _note_vi parsed the English back)
    monkeypatch.setitem(results._ENGLISH, NoteCode.TRUNCATED_SYLLABLES, "cut at {limit} tokens")
    assert str(notes[0]) == "cut at 64 tokens" and msg.note_vi(notes[0]) == vi[0]


def test_search_result_json_keeps_notes_as_text():
    res = SearchResult("q", "q", "full", [Hit("p", "d", "", "t", 1.0, 1)], {"total": 1.0}, "bm25",
                       [Note.truncated(64, "syllables")])
    assert res.to_dict()["notes"] == ["query truncated to 64 syllables"]


class _FakeBackend:
    """Answers BM25 only; dense pipelines raise VectorsUnavailable with a message that never says 'vectors'."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def search(self, query, pipeline, top_k, as_typed=False):
        self.asked.append(pipeline)
        if pipeline != "bm25":
            raise VectorsUnavailable("store offline", pipeline, "offline")
        return SearchResult(query, query, "full", [Hit("p1", "d1", "T", "Đà Lạt", 3.0, 1)], {"total": 1.0},
                            "bm25", [Note(NoteCode.TRUNCATED_CHARS, {"limit": 500})])

    def doc_meta(self):
        return {}

    def passage_lookup(self):
        from search.ui.documents import PassageLookup

        return PassageLookup([])


def test_search_tab_falls_back_to_bm25_on_the_class():
    from search.ui.handlers import Handlers

    backend = _FakeBackend()
    notice, _show, _timings, table = Handlers(backend).search("Đà Lạt", "hybrid", None, 5)  # type: ignore[arg-type]
    assert backend.asked == ["hybrid", "bm25"]
    assert msg.BM25_FALLBACK in notice and "<code>bm25</code>" in table
    assert "chỉ dùng 500 ký tự đầu tiên" in notice  # the note, in Vietnamese
