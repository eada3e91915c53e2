"""The Search tab: one query, one pipeline; results as a list with readable scores, a "no good match" state,
restored-diacritic alternatives, a document view, "Xem thêm", filters by source / document, ``?q=`` in the URL
and CSV / JSON export.

The handlers are plain methods (:class:`SearchHandlers`, tested without a browser); :func:`build` wires them.
One search retrieves :data:`~search.ui.backend.MAX_TOP_K` hits once and keeps them in the page's state, so
"Xem thêm", the filters and the exports never search again.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from search.errors import VectorsUnavailable
from search.results import NoteCode
from search.ui import messages as msg
from search.ui.benchmarks import load_examples
from search.ui.confidence import NoMatchConfig, is_no_match, match_signals
from search.ui.context import PRIVATE, UiContext, clamp_k
from search.ui.documents import ALL, export_csv, export_json, facet_choices, filter_hits, hit_source
from search.ui.render import notice_html, query_terms, restored_notice_html, timings_html
from search.ui.render_search import OPEN_DOC_JS, document_html, hits_html, no_match_html, summary_html

if TYPE_CHECKING:
    from search.results import SearchResult
    from search.ui.backend import Backend

__all__ = ["FIRST_STAGE_LABELS", "MODE_CHOICES", "pipeline_name", "SearchHandlers", "SearchView", "build",
           "N_ALTERNATIVES"]

FIRST_STAGE_LABELS = {"bm25": "BM25", "dense": "Dense (e5)", "hybrid": "Hybrid"}
MODE_CHOICES = [
    ("BM25 (từ khoá)", "bm25"),
    ("Dense (e5-small, theo nghĩa)", "dense"),
    ("Hybrid (BM25 + dense)", "hybrid"),
    ("Hybrid + xếp hạng lại (reranker)", "rerank"),
]
N_ALTERNATIVES = 3  # "Có phải bạn muốn tìm" buttons
URL_JS = ("(q) => { try { const u = new URL(window.location.href); if (q && q.trim()) u.searchParams.set('q', q); "
          "else u.searchParams.delete('q'); window.history.replaceState(null, '', u); } catch (e) {} return q; }")


def pipeline_name(mode: str, reranker: str | None) -> str:
    """UI mode + reranker → pipeline name (``rerank`` mode means ``hybrid+<reranker>``)."""
    if mode == "rerank":
        return f"hybrid+{reranker or 'viranker'}"
    return mode if mode in FIRST_STAGE_LABELS else "hybrid"


@dataclass
class SearchView:
    """One search as the tab shows it: ``notice`` (HTML), ``alternatives`` (other restorations of the typed
    query), ``show_as_typed``, ``timings`` (HTML), ``result`` (None after an error), ``sources`` (hit id →
    source), ``no_match`` (the "no good match" state)."""

    notice: str
    alternatives: list[str] = field(default_factory=list)
    show_as_typed: bool = False
    timings: str = ""
    result: SearchResult | None = None
    sources: dict[str, str] = field(default_factory=dict)
    no_match: bool = False


class SearchHandlers:
    """The Search tab's handlers (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend

    def search_view(self, query: str, mode: str, reranker: str | None, as_typed: bool = False) -> SearchView:
        """Search ``query`` (up to :data:`~search.ui.backend.MAX_TOP_K` hits) → :class:`SearchView`."""
        from search.ui.backend import MAX_TOP_K

        query = query or ""
        if not query.strip():
            return SearchView(notice_html(msg.EMPTY_QUERY, "info"))
        pipeline = pipeline_name(mode, reranker)
        fallback = ""
        try:
            try:
                res = self.b.search(query, pipeline, MAX_TOP_K, as_typed=as_typed)
            except VectorsUnavailable as err:
                # BM25-only generation (e.g. the first start while vectors are computed): still answer
                res = self.b.search(query, "bm25", MAX_TOP_K, as_typed=as_typed)
                fallback = notice_html(msg.bm25_fallback(err), "warn")
        except Exception as err:  # noqa: BLE001 - every failure becomes a friendly message
            return SearchView(notice_html(msg.friendly_error(err), msg.error_kind(err)))
        restored = msg.SEARCHED_AS_TYPED if as_typed else restored_notice_html(res.query, res.searched_query)
        alternatives: list[str] = []
        if restored and not as_typed:
            alts = self.b.restore_alternatives(query, N_ALTERNATIVES + 1)
            alternatives = [a for a in alts if a.strip() != res.searched_query.strip()][:N_ALTERNATIVES]
        notes = [text for n in res.notes if n.code is not NoteCode.RERANK_WINDOW
                 and (text := msg.note_vi(n)) is not None]
        no_match = is_no_match(match_signals(res), NoMatchConfig.load())
        notice = (fallback + (no_match_html() if no_match else "") + restored
                  + "".join(notice_html(n, "info") for n in notes))
        lookup = self.b.passage_lookup()
        meta = self.b.doc_meta()
        sources = {h.id: hit_source(h, meta, lookup) for h in res.hits}
        return SearchView(notice, alternatives, bool(restored) and not as_typed, timings_html(res.timings_ms), res,
                          sources, no_match)

    def results_page(self, view: SearchView | None, shown: Any, source: str | None = ALL,
                     document: str | None = ALL) -> tuple[str, bool]:
        """The first ``shown`` hits of ``view`` after the filters → (results HTML, more to show?)."""
        if view is None or view.result is None:
            return "", False
        res = view.result
        hits = filter_hits(res.hits, view.sources, source or ALL, document or ALL)
        n = max(1, int(shown or 10))
        page = hits[:n]
        terms = query_terms(res.query, None if res.searched_query == res.query else res.searched_query)
        body = hits_html(page, terms, view.sources, self.b.doc_meta())
        window = next((int(x.params["top"]) for x in res.notes if x.code is NoteCode.RERANK_WINDOW), None)
        note = ""
        if window is not None and len(page) > window:
            note = notice_html(f"Từ hạng {window + 1} trở đi là thứ tự trước khi xếp hạng lại (chỉ {window} đoạn "
                               "đầu được reranker chấm).", "info")
        head = summary_html(len(page), len(hits), res.pipeline, len(res.hits), bool(source or document))
        return head + note + body, len(hits) > n

    def search(self, query: str, mode: str, reranker: str | None, top_k: Any, as_typed: bool = False
               ) -> tuple[str, bool, str, str]:
        """→ (notice HTML, show the "search as typed" button?, timings HTML, results HTML) — the first
        ``top_k`` results, no filter."""
        view = self.search_view(query, mode, reranker, as_typed)
        results, _ = self.results_page(view, clamp_k(top_k))
        return view.notice, view.show_as_typed, view.timings, results

    def document(self, pid: str, view: SearchView | None = None) -> str:
        """The document panel for hit ``pid`` (highlighted with ``view``'s query when given)."""
        terms = None
        if view is not None and view.result is not None:
            res = view.result
            terms = query_terms(res.query, None if res.searched_query == res.query else res.searched_query)
        return document_html(self.b.passage_lookup().document(str(pid or ""), self.b.doc_meta()), terms)

    def export(self, view: SearchView | None, fmt: str, source: str | None = ALL, document: str | None = ALL
               ) -> str | None:
        """The filtered hits of ``view`` as a ``.csv`` / ``.json`` file → its path (None without results)."""
        if view is None or view.result is None:
            return None
        res = view.result
        hits = filter_hits(res.hits, view.sources, source or ALL, document or ALL)
        folder = Path(tempfile.gettempdir()) / "viranker-app"
        folder.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="results-", dir=folder)) / f"ket-qua-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        text = (export_csv(hits, view.sources) if fmt == "csv"
                else export_json(res.query, res.searched_query, res.pipeline, hits, view.sources))
        out.write_text(text, encoding="utf-8")
        return str(out)


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
            mode = gr.Radio(MODE_CHOICES, value=ctx.default_mode, label="Cách tìm", elem_id="search-mode", scale=4)
            rr = gr.Dropdown(rr_choices, value=ctx.default_reranker, label="Mô hình xếp hạng lại (reranker)",
                             elem_id="search-reranker", scale=2)
            k = gr.Slider(1, MAX_TOP_K, value=10, step=1, label="Số kết quả mỗi trang", elem_id="search-topk",
                          scale=2)
        with gr.Accordion("Câu hỏi mẫu (bấm để tìm)", open=True, elem_id="search-examples-box") as ex_box:
            ex = gr.Dataset(components=[q], samples=[[e] for e in load_examples()], label="Câu hỏi mẫu",
                            show_label=False, samples_per_page=15, elem_id="search-examples")
        with gr.Row(equal_height=False):
            notice = gr.HTML(elem_id="search-notice", scale=5)
            as_typed = gr.Button("Tìm chính xác như đã gõ", visible=False, size="sm", variant="secondary",
                                 elem_id="search-as-typed", scale=1, min_width=200)
        with gr.Row(visible=False, elem_id="search-alternatives") as alt_row:
            gr.HTML("<span class='vr-alt-label'>Có phải bạn muốn tìm:</span>", elem_id="search-alt-label")
            alt_btns = [gr.Button("", size="sm", variant="secondary", elem_id=f"search-alt-{i}", visible=False,
                                  min_width=80) for i in range(N_ALTERNATIVES)]
        with gr.Accordion("Bộ lọc và tải kết quả", open=False, elem_id="search-tools"), gr.Row():
            f_src = gr.Dropdown([("Tất cả nguồn", ALL)], value=ALL, label="Nguồn", elem_id="search-filter-source")
            f_doc = gr.Dropdown([("Tất cả tài liệu", ALL)], value=ALL, label="Tài liệu", elem_id="search-filter-doc")
            csv_btn = gr.DownloadButton("Tải CSV", elem_id="search-export-csv", size="sm")
            json_btn = gr.DownloadButton("Tải JSON", elem_id="search-export-json", size="sm")
        timings = gr.HTML(elem_id="search-timings")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                results = gr.HTML(elem_id="search-results", js_on_load=OPEN_DOC_JS)
                more = gr.Button("Xem thêm", visible=False, elem_id="search-more", size="sm")
            with gr.Column(scale=2, visible=False, elem_id="search-doc-panel") as doc_panel:
                doc_close = gr.Button("Đóng", size="sm", elem_id="search-doc-close")
                doc_html = gr.HTML(elem_id="search-doc")
        # inside the Tab: a component left directly under gr.Tabs shifts Gradio's tab indices (visiting
        # Compare then replaced the Admin tab's button with a second "So sánh")
        state = gr.State(None)
        shown = gr.State(10)

    def _outputs(view: SearchView, per_page: Any):
        n = clamp_k(per_page)
        body, has_more = h.results_page(view, n)
        src_choices, doc_choices = facet_choices(view.result.hits if view.result else [], view.sources)
        alts = view.alternatives
        csv_path = h.export(view, "csv")
        json_path = h.export(view, "json")
        return [view.notice, gr.Button(visible=view.show_as_typed), gr.Row(visible=bool(alts)),
                *[gr.Button(alts[i] if i < len(alts) else "", visible=i < len(alts)) for i in range(N_ALTERNATIVES)],
                view.timings, body, gr.Button(visible=has_more), view, n,
                gr.Dropdown(choices=src_choices, value=ALL), gr.Dropdown(choices=doc_choices, value=ALL),
                gr.DownloadButton(value=csv_path), gr.DownloadButton(value=json_path),
                gr.Accordion(open=False), gr.Column(visible=False)]

    s_out = [notice, as_typed, alt_row, *alt_btns, timings, results, more, state, shown, f_src, f_doc, csv_btn,
             json_btn, ex_box, doc_panel]

    def _search(query, m, r, per_page):
        return _outputs(h.search_view(query, m, r), per_page)

    def _search_typed(query, m, r, per_page):
        return _outputs(h.search_view(query, m, r, as_typed=True), per_page)

    def _pick_alternative(alt, m, r, per_page):
        return [alt, *_outputs(h.search_view(alt, m, r, as_typed=True), per_page)]

    def _refilter(view, per_page, src, doc):
        n = clamp_k(per_page)
        body, has_more = h.results_page(view, n, src, doc)
        return body, gr.Button(visible=has_more), n, gr.DownloadButton(value=h.export(view, "csv", src, doc)), \
            gr.DownloadButton(value=h.export(view, "json", src, doc))

    def _more(view, n, per_page, src, doc):
        n = int(n or 10) + clamp_k(per_page)
        body, has_more = h.results_page(view, n, src, doc)
        return body, gr.Button(visible=has_more), n

    def _open_doc(view, evt: gr.EventData):
        pid = getattr(evt, "doc", None) or (evt._data or {}).get("doc", "")
        return h.document(pid, view), gr.Column(visible=True)

    def _from_url(request: gr.Request):
        q_param = (dict(request.query_params).get("q") or "").strip() if request is not None else ""
        return q_param[:2000]

    s_in = [q, mode, rr, k]
    q.submit(_search, s_in, s_out, **PRIVATE, concurrency_id="search").then(None, [q], None, js=URL_JS)
    go.click(_search, s_in, s_out, **PRIVATE, concurrency_id="search").then(None, [q], None, js=URL_JS)
    as_typed.click(_search_typed, s_in, s_out, **PRIVATE, concurrency_id="search")
    for btn in alt_btns:
        btn.click(_pick_alternative, [btn, mode, rr, k], [q, *s_out], **PRIVATE, concurrency_id="search").then(
            None, [q], None, js=URL_JS)
    ex.click(lambda sample: sample[0], ex, q, **PRIVATE, queue=False).then(
        _search, s_in, s_out, **PRIVATE, concurrency_id="search").then(None, [q], None, js=URL_JS)
    for f in (f_src, f_doc):
        f.input(_refilter, [state, k, f_src, f_doc], [results, more, shown, csv_btn, json_btn], **PRIVATE,
                queue=False)
    more.click(_more, [state, shown, k, f_src, f_doc], [results, more, shown], **PRIVATE, queue=False)
    results.click(_open_doc, [state], [doc_html, doc_panel], **PRIVATE, queue=False)
    doc_close.click(lambda: gr.Column(visible=False), None, doc_panel, **PRIVATE, queue=False)

    def _load(request: gr.Request, m, r, per_page):
        query = _from_url(request)
        if not query:
            return [gr.Textbox(), *[gr.skip() for _ in s_out]]
        return [query, *_outputs(h.search_view(query, m, r), per_page)]

    ctx.page.load(_load, [mode, rr, k], [q, *s_out], **PRIVATE, concurrency_id="search")

