"""HTML for the app: escaped text, query-term highlighting, snippets and result tables.

Safety rule, applied in exactly one place (:func:`highlight`): every piece of document text goes through
``html.escape`` *before* any markup (``<mark>``) is added around it, so a title or passage containing
``<script>`` or ``onerror=`` is shown as text. Links are emitted only for ``https`` Wikipedia URLs.

Highlighting matches syllables, not substrings:

- a query syllable typed *with* diacritics matches the same syllable (case-insensitive, NFC, unified tone
  marks: ``hoà`` = ``hòa``);
- a query syllable typed *without* diacritics matches any syllable that folds to it
  (:func:`indexing.normalize.fold`: ``ha noi`` highlights ``Hà Nội``);
- the restored query (diacritics added by the restorer) contributes exact syllables too;
- very common function words (``là``, ``của``, ``và`` ...) are not highlighted unless the query has
  nothing else.

Inputs are plain strings / the ``SearchResult`` / ``Hit`` objects of :mod:`search.pipeline`; outputs are
HTML strings for ``gr.HTML``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from indexing.normalize import fold, has_diacritics, syllables
from search.compare import display_scores, movement_marker
from search.ui.confidence import readable_score

__all__ = [
    "QueryTerms",
    "query_terms",
    "highlight",
    "snippet",
    "safe_link",
    "source_html",
    "timings_html",
    "notice_html",
    "restored_notice_html",
    "results_html",
    "compare_html",
    "stats_html",
    "progress_html",
    "BUILD_STAGES_VI",
    "BUILD_RETRY_HINT",
    "redact_paths",
    "short_error",
    "build_failure_text",
    "build_failure_html",
    "pre_rerank_rank",
    "STOPWORDS",
    "STOPWORDS_FOLDED",
]

_WORD_RE = re.compile(r"\w+")

# Frequent Vietnamese function / question words: highlighting them in every passage is noise. Only used
# to *skip highlighting*, never for retrieval. ``STOPWORDS`` applies to syllables typed with diacritics;
# ``STOPWORDS_FOLDED`` (for syllables typed without) is smaller because folding is ambiguous
# ("do" may be "đô" as in "thủ đô").
STOPWORDS = frozenset(
    """
    là của và có các những được trong cho với một này thì ở nào gì ai khi bao nhiêu thế để đến từ như
    về đã sẽ đang bị ra vào lên không mà hay hoặc cũng còn lại tại sao vì nếu nên do rằng
    """.split()  # noqa: SIM905
)
STOPWORDS_FOLDED = frozenset(
    "la cua va cac nhung duoc trong voi mot nay nao gi bao nhieu khong thi".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class QueryTerms:
    """Syllables to highlight: ``exact`` (lower-case, normalized) and ``folded`` (lower-case, no marks)."""

    exact: frozenset[str]
    folded: frozenset[str]

    def matches(self, token: str) -> bool:
        """True when the document syllable ``token`` should be highlighted."""
        low = unicodedata.normalize("NFC", token).lower()
        return low in self.exact or fold(low) in self.folded

    def __bool__(self) -> bool:
        return bool(self.exact or self.folded)


def query_terms(query: str, restored: str | None = None) -> QueryTerms:
    """Query as typed (+ optional restored query) → :class:`QueryTerms`.

    When the restored query has as many syllables as the typed one, a syllable typed without marks whose
    restored form is a function word (``o`` → ``ở``) is not highlighted.

    >>> t = query_terms("ha noi", "hà nội")
    >>> t.matches("Hà"), t.matches("Hạ"), t.matches("Huế")
    (True, True, False)
    >>> query_terms("Hà Nội").matches("Hạ")
    False
    """
    typed = syllables(query or "")
    restored_syls = syllables(restored or "")
    aligned = len(restored_syls) == len(typed)
    exact: set[str] = set(restored_syls)
    folded: set[str] = set()
    skip_folded: set[str] = set()
    for i, syl in enumerate(typed):
        if has_diacritics(syl):
            exact.add(syl)
            continue
        folded.add(fold(syl))
        if aligned and restored_syls[i] in STOPWORDS:
            skip_folded.add(fold(syl))
    content_exact = {s for s in exact if s not in STOPWORDS}
    content_folded = {s for s in folded if s not in STOPWORDS_FOLDED and s not in skip_folded}
    if content_exact or content_folded:
        exact, folded = content_exact, content_folded
    return QueryTerms(frozenset(exact), frozenset(folded))


def highlight(text: str, terms: QueryTerms | None) -> str:
    """Plain text → HTML: escaped text, matching syllables wrapped in ``<mark>``.

    >>> highlight("<b>Hà Nội</b>", query_terms("ha noi"))
    '&lt;b&gt;<mark>Hà</mark> <mark>Nội</mark>&lt;/b&gt;'
    """
    text = text or ""
    if not terms:
        return html.escape(text)
    out: list[str] = []
    last = 0
    for m in _WORD_RE.finditer(text):
        if not terms.matches(m.group(0)):
            continue
        out.append(html.escape(text[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _match_spans(text: str, terms: QueryTerms) -> list[tuple[int, str]]:
    return [(m.start(), fold(m.group(0).lower())) for m in _WORD_RE.finditer(text) if terms.matches(m.group(0))]


def snippet(text: str, terms: QueryTerms | None, max_chars: int = 320) -> str:
    """Best window of ``text`` (most distinct matching syllables) as highlighted HTML, ``…`` at cut ends.

    Windows start and end on whitespace; a text shorter than ``max_chars`` is returned whole.
    """
    text = text or ""
    if len(text) <= max_chars:
        return highlight(text, terms)
    spans = _match_spans(text, terms) if terms else []
    start = 0
    if spans:
        best = (-1, -1)
        lead = max_chars // 6  # a little context before the first match
        for pos, _ in spans:
            s = max(0, pos - lead)
            inside = {term for p, term in spans if s <= p < s + max_chars}
            score = (len(inside), -s)
            if score > best:
                best, start = score, s
    end = min(len(text), start + max_chars)
    if start > 0:
        ws = text.find(" ", start)
        start = ws + 1 if 0 <= ws < start + 40 else start
    if end < len(text):
        ws = text.rfind(" ", start, end)
        end = ws if ws > start + max_chars // 2 else end
    body = highlight(text[start:end].strip(), terms)
    return ("… " if start > 0 else "") + body + (" …" if end < len(text) else "")


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an ``https`` Wikipedia URL (``*.wikipedia.org``), else ``None``."""
    if not url:
        return None
    try:
        parsed = urlparse(url.strip())
    except ValueError:
        return None
    host = (parsed.hostname or "").lower()
    if parsed.scheme == "https" and (host == "wikipedia.org" or host.endswith(".wikipedia.org")):
        return url.strip()
    return None


def source_html(source: str | None, url: str | None = None) -> str:
    """Source cell: a link (new tab, no referrer) for Wikipedia URLs, escaped text otherwise."""
    label = source or ""
    link = safe_link(url)
    if link:
        return (
            f'<a href="{html.escape(link, quote=True)}" target="_blank" rel="noopener noreferrer nofollow">'
            f"{html.escape(label or 'Wikipedia')}</a>"
        )
    return html.escape(label) if label else '<span class="vr-muted">—</span>'


def timings_html(timings_ms: Mapping[str, float]) -> str:
    """Per-stage latency line, e.g. ``bm25 3.1 ms · dense 12 ms · total 15 ms``."""
    if not timings_ms:
        return ""
    parts = [
        f"<span class='vr-stage'>{html.escape(str(k))}</span> {float(v):,.1f} ms"
        for k, v in timings_ms.items()
        if v is not None
    ]
    return "<div class='vr-timings'>Thời gian: " + " · ".join(parts) + "</div>"


def notice_html(message: str, kind: str = "info") -> str:
    """A friendly boxed message (``kind``: ``info`` | ``warn`` | ``error``), text escaped."""
    kind = kind if kind in {"info", "warn", "error"} else "info"
    return f"<div class='vr-notice vr-{kind}'>{html.escape(message)}</div>"


def restored_notice_html(query: str, searched_query: str) -> str:
    """"Đang tìm: <restored>" line shown when diacritic restoration changed the query ("" otherwise)."""
    if not searched_query or searched_query.strip() == (query or "").strip():
        return ""
    return (
        "<div class='vr-restored'>Đang tìm: <b>"
        + html.escape(searched_query)
        + "</b> <span class='vr-muted'>(thêm dấu tự động cho “"
        + html.escape(query)
        + "”)</span></div>"
    )


_FIRST_STAGE_KEYS = ("fusion", "hybrid", "dense", "bm25")


def pre_rerank_rank(hit: Any) -> int | None:
    """Rank a hit had in the first stage (before reranking), or ``None`` when there was no rerank stage."""
    ranks: Mapping[str, int] = getattr(hit, "stage_ranks", None) or {}
    if "rerank" not in ranks:
        return None
    for key in _FIRST_STAGE_KEYS:
        if key in ranks:
            return int(ranks[key])
    others = [v for k, v in ranks.items() if k != "rerank"]
    return int(others[-1]) if others else None


def _cell(value: str, cls: str = "") -> str:
    return f"<td class='{cls}'>{value}</td>" if cls else f"<td>{value}</td>"


def results_html(
    hits: Sequence[Any],
    terms: QueryTerms | None,
    scores: Sequence[float] | None = None,
    meta: Mapping[str, Mapping[str, str]] | None = None,
    relevant: Iterable[str] = (),
    snippet_chars: int = 320,
) -> str:
    """Hits → a results table (rank, title + snippet, score, rank before reranking, source).

    ``scores`` (same order as ``hits``) replaces ``hit.score`` for display (e.g. normalized scores);
    ``meta`` maps a ``doc_id`` to ``{"source", "url"}`` from the corpus; ``relevant`` ids (passage or
    doc ids) get a ✓ marker.
    """
    if not hits:
        return notice_html("Không tìm thấy kết quả nào. Hãy thử từ khoá khác hoặc bỏ bớt từ.", "info")
    relevant = set(relevant)
    rel_mark = "<span class='vr-rel' title='đoạn liên quan'>✓</span> "
    show_pre = any(pre_rerank_rank(h) is not None for h in hits)
    head = ["#", "Kết quả", "Điểm"] + (["Trước rerank"] if show_pre else []) + ["Nguồn"]
    rows = ["<table class='vr-results'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, hit in enumerate(hits):
        score = float(scores[i]) if scores is not None else float(hit.score)
        info = (meta or {}).get(hit.doc_id, {})
        is_rel = hit.id in relevant or hit.doc_id in relevant
        title = highlight(hit.title or hit.doc_id, terms)
        body = (
            f"<div class='vr-title'>{rel_mark if is_rel else ''}{title}</div>"
            f"<div class='vr-snippet'>{snippet(hit.text, terms, snippet_chars)}</div>"
            f"<div class='vr-id'>{html.escape(hit.id)}</div>"
        )
        cells = [_cell(str(hit.rank), "vr-rank"), _cell(body), _cell(f"{score:.3f}", "vr-score")]
        if show_pre:
            pre = pre_rerank_rank(hit)
            marker = movement_marker(pre - hit.rank) if pre is not None else ""
            cells.append(_cell(f"{pre if pre is not None else '—'} <span class='vr-move'>{marker}</span>", "vr-pre"))
        cells.append(_cell(source_html(info.get("source") or getattr(hit, "source", ""), info.get("url")), "vr-src"))
        rows.append(f"<tr class='{'vr-relrow' if is_rel else ''}'>" + "".join(cells) + "</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


# --------------------------------------------------------------------------------------- compare / build
_PALETTE = ["#4a7bd0", "#d0674a", "#3c9d5d", "#9b59b6", "#c9a227", "#2a9fa8", "#c2477e", "#6d6d6d",
            "#8a6d3b", "#5b8c2a", "#b05c1e", "#3f51b5"]


def progress_html(snap: dict[str, Any]) -> str:
    """A build snapshot → a status line with a progress bar."""
    stage, done, total = snap.get("stage") or "", snap.get("done"), snap.get("total")
    frac = (float(done) / float(total)) if done is not None and total else None
    bar = f"<div class='vr-progress'><div style='width:{100 * frac:.0f}%'></div></div>" if frac is not None else ""
    count = f" {done:,}/{total:,} ({100 * frac:.0f}%)" if frac is not None else ""
    label = html.escape(str(snap.get("label") or "build"))
    return f"<b>{label}</b> — {html.escape(str(stage))}{count}{bar}"


# Build stages (``BuildJob.progress`` / ``indexing.build`` callback names) → Vietnamese, for failure messages.
BUILD_STAGES_VI = {
    "starting": "khởi động",
    "read corpus": "đọc kho tài liệu",
    "precomputed vectors": "nạp vector tính sẵn",
    "bm25-only generation": "thế hệ chỉ có BM25",
    "passages": "ghi các đoạn văn",
    "bm25": "xây chỉ mục BM25",
    "embed": "tính vector",
    "vectors": "ghi vector vào Qdrant",
    "hnsw": "xây đồ thị HNSW cho tìm kiếm vector",
    "restorer": "bộ khôi phục dấu",
    "manifest": "ghi manifest",
}
BUILD_RETRY_HINT = ("Cách khắc phục: quản trị viên đăng nhập tab Admin và bấm «Thử xây lại», hoặc khởi động lại "
                    "ứng dụng (lần khởi động sau sẽ tự xây lại; thế hệ đang phục vụ, nếu có, được giữ nguyên). "
                    "Chi tiết lỗi nằm trong log của máy chủ.")
_PATH_RE = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:,;()\[\]<>]+){2,}[\\/]?")


def redact_paths(text: str) -> str:
    """Absolute file-system paths in ``text`` → ``…/<last part>`` (server paths are not shown to visitors)."""
    def one(m: re.Match[str]) -> str:
        parts = [x for x in re.split(r"[\\/]", m.group(0)) if x]
        return "…/" + parts[-1] if parts else "…"

    return _PATH_RE.sub(one, text or "")


def short_error(error_type: str, message: str, limit: int = 160) -> str:
    """``"<ErrorClass>: <message>"`` with paths redacted, one line, at most ``limit`` characters."""
    msg = " ".join(redact_paths(message).split())
    text = f"{error_type}: {msg}" if msg else error_type
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def build_failure_text(failure: Mapping[str, Any], index: str, serving: str | None = None) -> str:
    """A failed build (``BuildJob.failure``) → one Vietnamese message for visitors: which stage failed, the
    error class and a short message (no server paths), and what to do."""
    stage = str(failure.get("stage") or "starting")
    stage_vi = BUILD_STAGES_VI.get(stage, stage)
    err = short_error(str(failure.get("error_type") or "Error"), str(failure.get("message") or ""))
    if serving:
        head = (f"Lần xây gần nhất của chỉ mục '{index}' thất bại ở bước «{stage_vi}» ({err}). "
                f"Tìm kiếm vẫn dùng thế hệ đang phục vụ ({serving}).")
    else:
        head = f"Xây chỉ mục '{index}' thất bại ở bước «{stage_vi}» ({err}), nên chưa thể tìm kiếm."
    return f"{head} {BUILD_RETRY_HINT}"


def build_failure_html(failure: Mapping[str, Any], index: str, serving: str | None = None) -> str:
    """:func:`build_failure_text` as the page banner (``error`` without a serving generation, else ``warn``)."""
    kind = "warn" if serving else "error"
    return (f"<div class='vr-notice vr-{kind}' id='build-failed'>⚠️ "
            f"{html.escape(build_failure_text(failure, index, serving))}</div>")


def _doc_badge(label: str, idx: int) -> str:
    return f"<span class='vr-doc' style='background:{_PALETTE[idx % len(_PALETTE)]}'>{html.escape(label)}</span>"


def compare_html(
    query: str,
    results: Mapping[str, Any],
    top_k: int,
    relevant: set[str] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    meta: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """Side-by-side table: one column per system (``results``: name → ``SearchResult``), one row per rank.

    The same passage gets the same badge (D1, D2, … in order of first appearance) in every column, so the
    eye can follow it; ▲/▼ give the move against the rank before reranking; ✓ marks ``relevant`` ids
    (benchmark qrels); each header shows the system's total latency and, when given, its NDCG@10 / MRR@10.
    Each hit's number is its score on its own named scale (:func:`search.ui.confidence.readable_score`: the
    calibrated reranker probability, else BM25 / cosine / the relative fused score); the bar is its place on
    one 0–1 display scale within the column (:func:`search.compare.display_scores`).
    """
    metrics = metrics or {}
    meta = meta or {}
    if not results:
        return notice_html("Không hệ thống nào chạy được (xem danh sách không khả dụng bên dưới).", "warn")
    doc_ids: dict[str, int] = {}
    for res in results.values():
        for h in res.hits:
            doc_ids.setdefault(h.id, len(doc_ids))
    terms = {n: query_terms(query, r.searched_query) for n, r in results.items()}
    head = ["<th style='width:2.2em'>#</th>"]
    for name, res in results.items():
        m = metrics.get(name)
        mtxt = f" · NDCG@10 {m['ndcg@10']:.3f} · MRR@10 {m['mrr@10']:.3f}" if m else ""
        total = res.timings_ms.get("total", sum(res.timings_ms.values()))
        head.append(f"<th>{html.escape(name)}<div class='vr-sysmeta'>{total:,.0f} ms{mtxt}</div></th>")
    rows = ["<table class='vr-cmp'><thead><tr>" + "".join(head) + "</tr></thead><tbody>"]
    scores = {n: display_scores(r.hits) for n, r in results.items()}
    depth = max((len(r.hits) for r in results.values()), default=0)
    for i in range(min(depth, top_k)):
        cells = [f"<td class='vr-rank'><b>{i + 1}</b></td>"]
        for name, res in results.items():
            if i >= len(res.hits):
                cells.append("<td></td>")
                continue
            h = res.hits[i]
            pre = pre_rerank_rank(h)
            mv = ""
            if pre is not None:
                marker = movement_marker(pre - h.rank)
                cls = "vr-up" if marker.startswith("▲") else "vr-down" if marker.startswith("▼") else "vr-muted"
                mv = f" <span class='{cls}' title='hạng trước khi xếp hạng lại: {pre}'>{marker}</span>"
            rel = relevant is not None and (h.doc_id in relevant or h.id in relevant)
            score = scores[name][i]  # the bar: position on a 0–1 display scale within this list
            shown = readable_score(h)  # the number: the score on its own named scale (calibrated where it can)
            info = meta.get(h.doc_id, {})
            cells.append(
                "<td" + (" class='vr-relrow'" if rel else "") + ">"
                + _doc_badge(f"D{doc_ids[h.id] + 1}", doc_ids[h.id])
                + ("<span class='vr-rel' title='đoạn liên quan (theo benchmark)'>✓ </span>" if rel else "")
                + f"<b>{html.escape(h.title or h.doc_id)}</b>{mv}"
                + f"<div class='vr-snippet'>{snippet(h.text, terms[name], 180)}</div>"
                + f"<div class='vr-muted'><span class='vr-score' title='{html.escape(shown.scale, quote=True)}'>"
                + f"<b>{html.escape(shown.text)}</b> {html.escape(shown.scale)}</span> · "
                + f"{source_html(info.get('source') or '', info.get('url'))}</div>"
                + f"<div class='vr-bar'><div style='width:{100 * score:.0f}%'></div></div>"
                + "</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</tbody></table>")
    legend = ("<div class='vr-muted'>Điểm: xác suất liên quan của reranker (đã hiệu chỉnh) khi có, nếu không là "
              "điểm của chính bộ truy hồi (BM25, cosine, điểm hợp nhất tương đối); thanh: vị trí tương đối trong "
              "danh sách. ▲/▼: thay đổi hạng so với trước rerank. Cùng nhãn Dn = cùng đoạn văn."
              + (" ✓ = đoạn văn liên quan theo benchmark." if relevant is not None else "") + "</div>")
    return legend + "".join(rows)


def stats_html(stats: Sequence[Any], errors: Mapping[str, str], bench_note: str = "") -> str:
    """Agreement table (overlap@k, Kendall's tau per pair of systems), unavailable systems and a benchmark
    note (already HTML)."""
    out = {"stats": list(stats), "errors": dict(errors)}
    parts = []
    if bench_note:
        parts.append(f"<div class='vr-notice vr-info'>{bench_note}</div>")
    if out["stats"]:
        rows = "".join(
            f"<tr><td>{html.escape(s.a)}</td><td>{html.escape(s.b)}</td><td>{s.overlap:.2f}</td>"
            f"<td>{'—' if s.tau is None else f'{s.tau:+.2f}'}</td><td>{s.shared}</td></tr>"
            for s in out["stats"]
        )
        k = out["stats"][0].k
        parts.append(
            f"<table class='vr-results'><thead><tr><th>Hệ thống A</th><th>Hệ thống B</th><th>Trùng lặp (overlap@{k})</th>"
            f"<th>Kendall τ (trên đoạn chung)</th><th>Số đoạn chung</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    for name, msg in out["errors"].items():
        parts.append(notice_html(f"{name}: không khả dụng — {msg}", "warn"))
    return "".join(parts)
