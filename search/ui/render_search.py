"""HTML of the Search tab: the result list (a heading per hit, its score on a named scale, its source and a
"Xem tài liệu" button), the summary line, the "no good match" notice and the document view.

The escaping rule of :mod:`search.ui.render` holds here too: document text only reaches the page through
:func:`~search.ui.render.highlight` / :func:`~search.ui.render.snippet` or ``html.escape``; a hit's id travels
in a ``data-doc`` attribute (escaped with ``quote=True``) that the page's click handler reads.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from search.compare import movement_marker
from search.ui.confidence import readable_score
from search.ui.documents import DocumentView
from search.ui.render import QueryTerms, highlight, notice_html, pre_rerank_rank, snippet, source_html

__all__ = ["hits_html", "summary_html", "no_match_html", "document_html", "NO_MATCH_TEXT", "OPEN_DOC_JS"]

NO_MATCH_TEXT = ("Không tìm thấy kết quả phù hợp. Các đoạn văn dưới đây khớp rất yếu với câu hỏi — hãy thử "
                 "diễn đạt khác, thêm từ khoá, hoặc kiểm tra chính tả.")

#: The result list's click handler (``gr.HTML(js_on_load=...)``): a click on a "Xem tài liệu" button sends
#: its hit id to the server as the event's ``doc``.
OPEN_DOC_JS = ("element.addEventListener('click', (e) => { const b = e.target.closest('button[data-doc]'); "
               "if (b) { e.preventDefault(); trigger('click', {doc: b.dataset.doc}); } });")


def _score_html(hit: Any) -> str:
    s = readable_score(hit)
    bar = (f"<span class='vr-bar vr-inline'><span style='width:{100 * s.bar:.0f}%'></span></span>"
           if s.bar is not None else "")
    detail = f" <span class='vr-muted'>({html.escape(s.detail)})</span>" if s.detail else ""
    return (f"<span class='vr-score' title='{html.escape(s.scale, quote=True)}'><b>{html.escape(s.text)}</b> "
            f"<span class='vr-muted'>{html.escape(s.scale)}</span>{bar}{detail}</span>")


def hits_html(hits: Sequence[Any], terms: QueryTerms | None, sources: Mapping[str, str],
              meta: Mapping[str, Mapping[str, str]] | None = None, snippet_chars: int = 320) -> str:
    """Hits → ``<ol>`` of results: a ``<h3>`` title each, the highlighted snippet, the score with its scale,
    the rank before reranking (▲/▼), the source (a Wikipedia link when the corpus gives one, else the source
    name or file) and a "Xem tài liệu" button. ``sources``: hit id → source text."""
    if not hits:
        return notice_html("Không có kết quả nào khớp bộ lọc hoặc câu hỏi. Hãy thử từ khoá khác hoặc bỏ bớt "
                           "bộ lọc.", "info")
    meta = meta or {}
    items = []
    for hit in hits:
        pre = pre_rerank_rank(hit)
        move = ""
        if pre is not None:
            move = (f" · <span class='vr-move' title='hạng trước khi xếp hạng lại: {pre}'>trước rerank: {pre} "
                    f"{movement_marker(pre - hit.rank)}</span>")
        src = source_html(sources.get(hit.id, ""), meta.get(hit.doc_id, {}).get("url"))
        pid = html.escape(hit.id, quote=True)
        items.append(
            f"<li class='vr-hit' value='{int(hit.rank)}'>"
            f"<h3 class='vr-title'>{highlight(hit.title or hit.doc_id, terms)}</h3>"
            f"<div class='vr-snippet'>{snippet(hit.text, terms, snippet_chars)}</div>"
            f"<div class='vr-hitmeta'>{_score_html(hit)}{move} · Nguồn: {src} · "
            f"<button type='button' class='vr-open' data-doc='{pid}'>Xem tài liệu</button></div></li>")
    return "<ol class='vr-hits'>" + "".join(items) + "</ol>"


def summary_html(shown: int, total: int, pipeline: str, depth: int, filtered: bool = False) -> str:
    """"Hiển thị 1–10 / 37 kết quả" line (``total``: hits after filters, out of ``depth`` retrieved)."""
    scope = " (sau bộ lọc)" if filtered else ""
    return (f"<h2 class='vr-h2'>Kết quả</h2><div class='vr-muted' id='search-summary'>Hiển thị 1–{shown} trong "
            f"{total} kết quả{scope} · xét {depth} đoạn văn đứng đầu · cách tìm <code>{html.escape(pipeline)}</code>"
            "</div>")


def no_match_html() -> str:
    """The "no good match" notice (thresholds: :class:`search.ui.confidence.NoMatchConfig`)."""
    return f"<div class='vr-notice vr-warn' id='no-match'>{html.escape(NO_MATCH_TEXT)}</div>"


def _raw_table(fields: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in fields.items())
    return f"<table class='vr-raw'>{rows}</table>"


def document_html(view: DocumentView | None, terms: QueryTerms | None = None) -> str:
    """The document panel: title, source (link / name / file), the hit's passage (highlighted), its previous
    and next passages, the whole document and the raw stored fields."""
    if view is None:
        return notice_html("Không tìm thấy đoạn văn này trong chỉ mục hiện tại (có thể chỉ mục vừa được xây lại).",
                           "warn")
    p, n = view.passage, len(view.passages)
    src_name = view.meta.get("source") or ""
    src = source_html(src_name, view.meta.get("url")) if src_name or view.meta.get("url") else ""
    file_line = f"Tệp nguồn: <code>{html.escape(p.source)}</code>" if p.source else ""
    parts = [
        f"<h2 class='vr-h2' id='doc-title'>{html.escape(p.title or p.doc_id)}</h2>",
        "<div class='vr-muted'>" + " · ".join(x for x in (f"Nguồn: {src}" if src else "", file_line,
                                                          f"Tài liệu <code>{html.escape(p.doc_id)}</code>",
                                                          f"đoạn {view.position}/{n}") if x) + "</div>",
        f"<div class='vr-docpassage'>{highlight(p.text, terms)}</div>",
    ]
    for label, nb in (("Đoạn trước", view.prev), ("Đoạn sau", view.next)):
        if nb is not None:
            parts.append(f"<details class='vr-nb'><summary>{label} (<code>{html.escape(nb.id)}</code>)</summary>"
                         f"<div>{highlight(nb.text, terms)}</div></details>")
    if n > 1:
        body = "".join(f"<p class='{'vr-cur' if q.id == p.id else ''}'>{highlight(q.text, terms)}</p>"
                       for q in view.passages)
        parts.append(f"<details class='vr-nb'><summary>Toàn bộ tài liệu ({n} đoạn)</summary>{body}</details>")
    parts.append(f"<details class='vr-nb'><summary>Trường dữ liệu gốc</summary>{_raw_table(view.raw_fields())}"
                 "</details>")
    return "<div class='vr-doc-view'>" + "".join(parts) + "</div>"
