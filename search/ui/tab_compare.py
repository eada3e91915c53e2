"""The Compare tab: one query through up to three systems side by side, with their agreement and, for a
benchmark question, its judged passages and every system's metrics on it (NDCG@10, MRR@10, recall@10, rank
of the first relevant passage).

Only systems that can run are offered and ticked (a reranker whose weights are missing is listed below the
choices with the reason, worded in Vietnamese by its :class:`reranker.availability.UnavailableReason`, so a
stock Compare shows no warning). An analyst can add a reranker from a local
model dir (sandboxed to the allowed folders, :mod:`search.ui.local_rerankers`): it is loaded through the
existing reranker backends and offered as ``hybrid+local-<dir>`` / ``bm25+local-<dir>``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

from reranker.availability import RerankerStatus, as_status
from search.compare import pairwise_stats
from search.ui import messages as msg
from search.ui.backend import MAX_COMPARE
from search.ui.benchmarks import QUERY_METRICS, single_query_metrics
from search.ui.context import PRIVATE, UiContext, clamp_k, metric_label, system_choices
from search.ui.local_rerankers import LocalModelError, root_label
from search.ui.render import compare_html, notice_html, stats_html

if TYPE_CHECKING:
    from search.ui.backend import Backend

__all__ = ["compare_systems", "default_compare_systems", "system_choices", "compare_choices", "unavailable_html",
           "query_metrics_html", "CompareHandlers", "build"]

ADD_MODEL_HELP = ("Nạp một reranker từ thư mục mô hình trên máy chủ (config.json + model.safetensors hoặc "
                  "pytorch_model.bin): ViRanker hoặc cross-encoder một nhãn. Chỉ các thư mục cho phép: {roots}.")


def compare_systems(backend: Backend, query: str, systems: Sequence[str], top_k: int) -> dict[str, Any]:
    """Run each system on the same generation → ``{"results": {name: SearchResult}, "errors": {name:
    message}, "stats": [PairStats]}``. A bad query raises ``QueryError``; no index raises IndexNotReady."""
    out = backend.compare(query, list(systems), top_k)  # in the rerank lane when a system reranks
    results = {n: r for n, r in out.items() if not isinstance(r, BaseException)}
    errors = {n: msg.friendly_error(r) for n, r in out.items() if isinstance(r, BaseException)}
    stats = pairwise_stats({n: [h.id for h in r.hits] for n, r in results.items()}, top_k)
    return {"results": results, "errors": errors, "stats": stats}


def default_compare_systems(rerankers: Sequence[str] = ("viranker", "phoranker"),
                            available: Sequence[str] = ()) -> list[str]:
    """The Compare tab's default systems: up to two reranked hybrids over AVAILABLE rerankers (ViRanker and
    PhoRanker first, then the others in ``available`` order) and plain hybrid. ``rerankers`` (every known
    one) is kept for callers; an unavailable reranker is never ticked."""
    order = [r for r in ("viranker", "phoranker") if r in available]
    order += [r for r in available if r not in order]
    return [f"hybrid+{r}" for r in order[:2]] + ["hybrid"]


def compare_choices(status: Mapping[str, str]) -> tuple[list[str], dict[str, RerankerStatus]]:
    """Reranker statuses (:meth:`Backend.rerankers`) → (systems that can run, ``{unavailable reranker: its
    status}`` (a :class:`~reranker.availability.RerankerStatus` with the reason's code)."""
    statuses = {n: as_status(s, n) for n, s in status.items()}
    usable = [n for n, s in statuses.items() if s.usable]
    return system_choices(usable), {n: s for n, s in statuses.items() if not s.usable}


def unavailable_html(reasons: Mapping[str, str]) -> str:
    """The rerankers Compare does not offer (``{name: status}``), each with its systems and why, in Vietnamese
    by the status's reason code (:func:`search.ui.messages.unavailable_vi`); empty when none."""
    if not reasons:
        return ""
    items = ""
    for n, status in reasons.items():
        why, fix = msg.unavailable_vi(as_status(status, n))
        items += (f"<li><b>hybrid+{html.escape(n)}</b>, <b>bm25+{html.escape(n)}</b>: {html.escape(why)}. "
                  f"<span class='vr-muted'>Cách thêm: {html.escape(fix)}.</span></li>")
    return (f"<div class='vr-muted' id='compare-unavailable-list'>Không khả dụng (không thể chọn):<ul>{items}</ul>"
            "</div>")


def _first_relevant_rank(result: Any, relevant: set[str]) -> int | None:
    docs = list(dict.fromkeys(h.doc_id for h in result.hits))
    return next((i for i, d in enumerate(docs, start=1) if d in relevant), None)


def query_metrics_html(metrics: Mapping[str, Mapping[str, float]], ranks: Mapping[str, int | None]) -> str:
    """Per-system metrics of one judged query as a table (:data:`QUERY_METRICS` + the rank of the first
    relevant document among the shown hits)."""
    if not metrics:
        return ""
    head = "".join(f"<th>{html.escape(metric_label(m))}</th>" for m in QUERY_METRICS)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{float(m.get(k, 0.0)):.3f}</td>" for k in QUERY_METRICS)
        + f"<td>{ranks.get(n) or '—'}</td></tr>"
        for n, m in metrics.items()
    )
    return (f"<table class='vr-results' id='compare-query-metrics'><caption>Chỉ số của câu hỏi này theo từng hệ "
            f"thống</caption><thead><tr><th>Hệ thống</th>{head}<th>Hạng đoạn liên quan đầu tiên</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


class CompareHandlers:
    """The Compare tab's handlers (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend

    def compare(self, query: str, systems: Sequence[str] | None, top_k: Any) -> tuple[str, str]:
        """→ (side-by-side HTML, agreement/metrics/unavailable HTML)."""
        systems = list(dict.fromkeys(systems or []))
        if not (query or "").strip():
            return notice_html(msg.COMPARE_EMPTY_QUERY, "info"), ""
        if not systems:
            return notice_html(msg.COMPARE_NO_SYSTEM, "info"), ""
        if len(systems) > MAX_COMPARE:
            return notice_html(msg.compare_too_many(MAX_COMPARE), "info"), ""
        try:
            k = clamp_k(top_k)
            out = compare_systems(self.b, query, systems, k)
        except Exception as err:  # noqa: BLE001
            return notice_html(msg.friendly_error(err), "info"), ""
        relevant, metrics, note = None, {}, ""
        found = self.b.benchmark_for(query)
        if found is not None:
            bench, qid = found
            rel = {d: r for d, r in bench.qrels[qid].items() if r > 0}
            relevant = set(rel)
            metrics = {n: single_query_metrics(r, rel, qid) for n, r in out["results"].items()}
            ranks = {n: _first_relevant_rank(r, relevant) for n, r in out["results"].items()}
            note = (f"Câu hỏi thuộc benchmark <b>{html.escape(bench.name)}</b> (<code>{html.escape(qid)}</code>): "
                    f"đoạn liên quan: {', '.join(html.escape(d) for d in sorted(relevant))}."
                    + query_metrics_html(metrics, ranks))
        table = compare_html(query, out["results"], k, relevant, metrics, self.b.doc_meta())
        return table, stats_html(out["stats"], out["errors"], note)

    def add_model(self, path: str | None, selected: Sequence[str] | None) -> tuple[str, Any, str]:
        """Load the model dir ``path`` as a reranker → (message HTML, the systems' new choices/value — the new
        ``hybrid+local-…`` ticked when there is room —, the unavailable list HTML)."""
        selected = list(selected or [])
        try:
            entry, new = self.b.add_local_reranker(path or "")
        except LocalModelError as err:
            return notice_html(str(err), "warn"), gr.update(), gr.update()
        choices, reasons = compare_choices(self.b.rerankers())
        system = f"hybrid+{entry.name}"
        if system not in selected and len(selected) < MAX_COMPARE:
            selected.append(system)
        what = "Đã nạp" if new else "Đã có sẵn"
        text = f"{what} reranker {entry.name} từ thư mục {entry.path.name}: chọn {system} hoặc bm25+{entry.name}."
        return notice_html(text, "info"), gr.update(choices=choices, value=selected), unavailable_html(reasons)

    def compare_state(self) -> tuple[Any, str]:
        """(systems' choices and default value, unavailable list HTML) for the page as it loads."""
        status = self.b.rerankers()
        choices, reasons = compare_choices(status)
        default = default_compare_systems(list(status), [n for n, s in status.items() if as_status(s, n).usable])
        return gr.update(choices=choices, value=[s for s in default if s in choices]), unavailable_html(reasons)


def build(ctx: UiContext) -> None:
    """The tab's layout and events (inside ``gr.Blocks`` / ``gr.Tabs``)."""
    h, backend = ctx.handlers, ctx.backend
    choices, reasons = compare_choices(ctx.rerankers)
    with gr.Tab("So sánh", id="compare", elem_id="tab-compare"):
        with gr.Row(equal_height=True):
            cq = gr.Textbox(label="Câu hỏi", scale=6, elem_id="compare-query",
                            placeholder="Một câu hỏi; các hệ thống chạy song song")
            cgo = gr.Button("So sánh", variant="primary", scale=1, elem_id="compare-button")
        with gr.Row():
            default = [s for s in default_compare_systems(ctx.reranker_names, ctx.available) if s in choices]
            systems = gr.CheckboxGroup(choices, value=default, label="Hệ thống (tối đa 3)", elem_id="compare-systems",
                                       scale=5)
            ck = gr.Slider(1, 20, value=10, step=1, label="Số kết quả mỗi hệ thống", elem_id="compare-topk",
                           scale=1)
        unavailable = gr.HTML(unavailable_html(reasons), elem_id="compare-unavailable")
        with gr.Accordion("Thêm reranker từ thư mục mô hình", open=False, elem_id="compare-add-model"):
            roots = ", ".join(dict.fromkeys(["$VIRANKER_HOME/models", "assets/models",
                                             *(root_label(r) for r in backend.local_rerankers.roots())]))
            gr.Markdown(ADD_MODEL_HELP.format(roots=roots), elem_id="compare-model-help")
            with gr.Row(equal_height=True):
                mpath = gr.Textbox(label="Thư mục mô hình", scale=5, elem_id="compare-model-path",
                                   placeholder="ví dụ: viranker-small hoặc đường dẫn đầy đủ")
                madd = gr.Button("Nạp reranker", scale=1, elem_id="compare-model-add")
            mmsg = gr.HTML(elem_id="compare-model-msg")
        cex = gr.Dataset(components=[cq], samples=[[e] for e in backend.benchmark_examples()],
                         label="Câu hỏi benchmark (có đánh giá liên quan)", elem_id="compare-examples")
        cstats = gr.HTML(elem_id="compare-stats")
        cout = gr.HTML(elem_id="compare-results")
        if ctx.rerankers:
            lines = [f"- **{html.escape(n)}**: {html.escape(msg.reranker_status_vi(n, s))}"
                     for n, s in ctx.rerankers.items()]
            gr.Markdown("**Reranker:**\n" + "\n".join(lines), elem_id="compare-rerankers")

    c_in, c_out = [cq, systems, ck], [cout, cstats]
    cq.submit(h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    cgo.click(h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    cex.click(lambda sample: sample[0], cex, cq, **PRIVATE, queue=False).then(
        h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    m_in, m_out = [mpath, systems], [mmsg, systems, unavailable]
    madd.click(h.add_model, m_in, m_out, **PRIVATE, concurrency_limit=1, concurrency_id="add-model")
    mpath.submit(h.add_model, m_in, m_out, **PRIVATE, concurrency_limit=1, concurrency_id="add-model")
    ctx.page.load(lambda: gr.Dataset(samples=[[e] for e in backend.benchmark_examples()]), None, cex, **PRIVATE,
                  queue=False)
    ctx.page.load(h.compare_state, None, [systems, unavailable], **PRIVATE, queue=False)
