"""The Search tab: one query, one pipeline, highlighted results with the restored query and stage timings."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from search.compare import display_scores
from search.errors import VectorsUnavailable
from search.ui import messages as msg
from search.ui.benchmarks import load_examples
from search.ui.context import PRIVATE, UiContext, clamp_k
from search.ui.render import notice_html, query_terms, restored_notice_html, results_html, timings_html

if TYPE_CHECKING:
    from search.ui.backend import Backend

__all__ = ["FIRST_STAGE_LABELS", "MODE_CHOICES", "pipeline_name", "SearchHandlers", "build"]

FIRST_STAGE_LABELS = {"bm25": "BM25", "dense": "Dense (e5)", "hybrid": "Hybrid"}
MODE_CHOICES = [
    ("BM25", "bm25"),
    ("Dense (e5-small)", "dense"),
    ("Hybrid (BM25 + dense)", "hybrid"),
    ("Hybrid + reranker", "rerank"),
]


def pipeline_name(mode: str, reranker: str | None) -> str:
    """UI mode + reranker → pipeline name (``rerank`` mode means ``hybrid+<reranker>``)."""
    if mode == "rerank":
        return f"hybrid+{reranker or 'viranker'}"
    return mode if mode in FIRST_STAGE_LABELS else "hybrid"


class SearchHandlers:
    """The Search tab's handler (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend

    def search(self, query: str, mode: str, reranker: str | None, top_k: Any, as_typed: bool = False
               ) -> tuple[str, bool, str, str]:
        """→ (notice HTML, show the "search as typed" button?, timings HTML, results HTML)."""
        query = query or ""
        if not query.strip():
            return notice_html(msg.EMPTY_QUERY, "info"), False, "", ""
        pipeline = pipeline_name(mode, reranker)
        fallback = ""
        try:
            try:
                res = self.b.search(query, pipeline, clamp_k(top_k), as_typed=as_typed)
            except VectorsUnavailable:
                # BM25-only generation (e.g. the first start while vectors are computed): still answer
                res = self.b.search(query, "bm25", clamp_k(top_k), as_typed=as_typed)
                fallback = notice_html(msg.BM25_FALLBACK, "warn")
        except Exception as err:  # noqa: BLE001 - every failure becomes a friendly message
            return notice_html(msg.friendly_error(err), msg.error_kind(err)), False, "", ""
        restored = restored_notice_html(res.query, res.searched_query)
        if as_typed:
            restored = msg.SEARCHED_AS_TYPED
        notes = [text for text in map(msg.note_vi, res.notes) if text is not None]
        notice = fallback + restored + "".join(notice_html(n, "info") for n in notes)
        terms = query_terms(res.query, None if as_typed else res.searched_query)
        table = results_html(res.hits, terms, display_scores(res.hits), self.b.doc_meta())
        summary = (f"<div class='vr-muted'>{len(res.hits)} kết quả · pipeline "
                   f"<code>{html.escape(res.pipeline)}</code></div>")
        show_btn = bool(restored) and not as_typed
        return notice, show_btn, timings_html(res.timings_ms), summary + table


def build(ctx: UiContext) -> None:
    """The tab's layout and events (inside ``gr.Blocks`` / ``gr.Tabs``)."""
    from search.ui.backend import MAX_TOP_K

    h = ctx.handlers
    rr_choices = [(n if n in ctx.available else f"{n} (chưa có mô hình)", n) for n in ctx.reranker_names]
    with gr.Tab("Tìm kiếm", id="search", elem_id="tab-search"):
        with gr.Row(equal_height=True):
            q = gr.Textbox(label="Câu hỏi", placeholder="Ví dụ: Đà Lạt nằm trên cao nguyên nào?",
                           scale=6, elem_id="search-query", autofocus=True, max_length=2000)
            go = gr.Button("Tìm", variant="primary", scale=1, elem_id="search-button")
        with gr.Row():
            mode = gr.Radio(MODE_CHOICES, value=ctx.default_mode, label="Pipeline", elem_id="search-mode", scale=4)
            rr = gr.Dropdown(rr_choices, value=ctx.default_reranker, label="Reranker", elem_id="search-reranker",
                             scale=2)
            k = gr.Slider(1, MAX_TOP_K, value=10, step=1, label="Top-k", elem_id="search-topk", scale=2)
        ex = gr.Dataset(components=[q], samples=[[e] for e in load_examples()], label="Câu hỏi mẫu (bấm để tìm)",
                        samples_per_page=15, elem_id="search-examples")
        with gr.Row(equal_height=False):
            notice = gr.HTML(elem_id="search-notice", scale=5)
            as_typed = gr.Button("Tìm chính xác như đã gõ", visible=False, size="sm", variant="secondary",
                                 elem_id="search-as-typed", scale=1, min_width=200)
        timings = gr.HTML(elem_id="search-timings")
        results = gr.HTML(elem_id="search-results")

    def _search(query, m, r, top_k):
        n, show, t, res = h.search(query, m, r, top_k)
        return n, gr.Button(visible=show), t, res

    def _search_typed(query, m, r, top_k):
        n, _, t, res = h.search(query, m, r, top_k, as_typed=True)
        return n, gr.Button(visible=False), t, res

    s_out = [notice, as_typed, timings, results]
    s_in = [q, mode, rr, k]
    q.submit(_search, s_in, s_out, **PRIVATE, concurrency_id="search")
    go.click(_search, s_in, s_out, **PRIVATE, concurrency_id="search")
    as_typed.click(_search_typed, s_in, s_out, **PRIVATE, concurrency_id="search")
    ex.click(lambda sample: sample[0], ex, q, **PRIVATE, queue=False).then(
        _search, s_in, s_out, **PRIVATE, concurrency_id="search")
