"""The Compare tab: one query through up to three systems side by side, with their agreement and, for a
benchmark question, its judged passages and per-system NDCG@10 / MRR@10."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

from search.compare import pairwise_stats
from search.ui import messages as msg
from search.ui.backend import MAX_COMPARE
from search.ui.benchmarks import single_query_metrics
from search.ui.context import PRIVATE, UiContext, clamp_k
from search.ui.render import compare_html, notice_html, stats_html

if TYPE_CHECKING:
    from search.ui.backend import Backend

__all__ = ["compare_systems", "default_compare_systems", "system_choices", "CompareHandlers", "build"]


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
    """The Compare tab's default systems: two reranked hybrids (ViRanker and PhoRanker first, then other
    available rerankers) and plain hybrid, all among the offered choices."""
    order = [r for r in ("viranker", "phoranker") if r in rerankers]
    order += [r for r in available if r not in order] + [r for r in rerankers if r not in order]
    return [f"hybrid+{r}" for r in order[:2]] + ["hybrid"]


def system_choices(rerankers: Sequence[str]) -> list[str]:
    """Every pipeline name offered in Compare / Evaluate."""
    out = ["bm25", "dense", "hybrid"]
    for r in rerankers:
        out += [f"hybrid+{r}", f"bm25+{r}"]
    return out


class CompareHandlers:
    """The Compare tab's handler (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend

    def compare(self, query: str, systems: Sequence[str] | None, top_k: Any) -> tuple[str, str]:
        """→ (side-by-side HTML, agreement/unavailable HTML)."""
        systems = list(dict.fromkeys(systems or []))
        if not (query or "").strip():
            return notice_html(msg.COMPARE_EMPTY_QUERY, "info"), ""
        if not systems:
            return notice_html(msg.COMPARE_NO_SYSTEM, "info"), ""
        if len(systems) > MAX_COMPARE:
            return notice_html(msg.compare_too_many(MAX_COMPARE), "info"), ""
        k = clamp_k(top_k)
        try:
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
            note = (f"Câu hỏi thuộc benchmark <b>{html.escape(bench.name)}</b> (<code>{html.escape(qid)}</code>): "
                    f"đoạn liên quan: {', '.join(html.escape(d) for d in sorted(relevant))}.")
        table = compare_html(query, out["results"], k, relevant, metrics, self.b.doc_meta())
        return table, stats_html(out["stats"], out["errors"], note)


def build(ctx: UiContext) -> None:
    """The tab's layout and events (inside ``gr.Blocks`` / ``gr.Tabs``)."""
    h, backend = ctx.handlers, ctx.backend
    with gr.Tab("So sánh", id="compare", elem_id="tab-compare"):
        with gr.Row(equal_height=True):
            cq = gr.Textbox(label="Câu hỏi", scale=6, elem_id="compare-query",
                            placeholder="Một câu hỏi; các hệ thống chạy song song")
            cgo = gr.Button("So sánh", variant="primary", scale=1, elem_id="compare-button")
        with gr.Row():
            systems = gr.CheckboxGroup(ctx.systems, value=default_compare_systems(ctx.reranker_names, ctx.available),
                                       label="Hệ thống (tối đa 3)", elem_id="compare-systems", scale=5)
            ck = gr.Slider(1, 20, value=10, step=1, label="Top-k", elem_id="compare-topk", scale=1)
        cex = gr.Dataset(components=[cq], samples=[[e] for e in backend.benchmark_examples()],
                         label="Câu hỏi benchmark (có đánh giá liên quan)", elem_id="compare-examples")
        cstats = gr.HTML(elem_id="compare-stats")
        cout = gr.HTML(elem_id="compare-results")
        if ctx.rerankers:
            lines = [f"- **{html.escape(n)}**: {html.escape(s)}" for n, s in ctx.rerankers.items()]
            gr.Markdown("**Reranker:**\n" + "\n".join(lines), elem_id="compare-rerankers")

    c_in, c_out = [cq, systems, ck], [cout, cstats]
    cq.submit(h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    cgo.click(h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    cex.click(lambda sample: sample[0], cex, cq, **PRIVATE, queue=False).then(
        h.compare, c_in, c_out, **PRIVATE, concurrency_id="search")
    ctx.page.load(lambda: gr.Dataset(samples=[[e] for e in backend.benchmark_examples()]), None, cex, **PRIVATE,
                  queue=False)
