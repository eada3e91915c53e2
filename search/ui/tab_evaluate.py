"""The Evaluate tab: systems on a bundled or uploaded BEIR set, with the functions of ``python -m search.eval``.

:func:`run_evaluation` builds a scratch index of the dataset's own corpus (not the serving index: a set is
judged on its own passages) and runs each system (→ :class:`EvaluationRun`); :func:`render_evaluation` turns
the run into the tab's tables (metrics, paired significance of every pair of systems, win/tie/loss, the most
different queries, each with an empty-state text), chart data and CSV / JSON downloads.

Defaults: the bundled hard dev set (``hard-mini``: 120 XQuAD-vi + Nanibot questions among 1,500 passages with
BM25/e5-close distractors, :data:`search.ui.benchmarks.DEFAULT_EVAL_SETS`), every one of its queries, and
``bm25``, ``hybrid`` and ``hybrid+<first available reranker>``: on it they score differently (on xquad-vi
every system scores 1.000).
"""

from __future__ import annotations

import csv
import html
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from indexing.admin import UploadError
from search.ui import messages as msg
from search.ui.benchmarks import bundled_benchmarks, default_eval_dataset
from search.ui.context import PRIVATE, UiContext, metric_label, system_choices, usable_rerankers
from search.ui.render import notice_html

if TYPE_CHECKING:
    from search.eval import EvalReport
    from search.ui.backend import Backend

__all__ = ["EVAL_METRICS", "EvaluationRun", "run_evaluation", "render_evaluation", "EvaluateHandlers", "build",
           "default_eval_systems", "significance_rows", "SIGNIFICANCE_COLUMNS", "DEFAULT_LIMIT", "COL_SYSTEM",
           "COL_QUERIES", "CHART_COLUMNS", "WINLOSS_COLUMNS", "DIFF_ID", "DIFF_QUERY", "DIFF_SPREAD", "metric_label"]

EVAL_METRICS = ("ndcg@10", "mrr@10", "ndcg@3", "mrr@3", "recall@100")
SIGNIFICANCE_METRICS = ("ndcg@10", "mrr@10")
ALPHA = 0.05
DEFAULT_LIMIT = 120  # every query of hard-mini; the first 120 of a larger set
# the tables' headers (Vietnamese; metric names as the literature writes them: NDCG@10, MRR@10, Recall@100)
COL_SYSTEM, COL_QUERIES, COL_P50, COL_P95 = "Hệ thống", "Số câu hỏi", "Độ trễ p50 (ms)", "Độ trễ p95 (ms)"
CHART_COLUMNS = ["Chỉ số · hệ thống", "Điểm", "Hệ thống", "Chỉ số"]  # x, y, colour, metric of the bar chart
WINLOSS_COLUMNS = ["Hệ thống", "So với", "Thắng", "Hoà", "Thua"]
DIFF_ID, DIFF_QUERY, DIFF_SPREAD = "Mã câu hỏi", "Câu hỏi", "Chênh lệch NDCG@10"
SIGNIFICANCE_COLUMNS = ["Hệ thống A", "Hệ thống B", "Chỉ số", "TB A", "TB B", "B − A", "p (t-test cặp)",
                        "p (Wilcoxon)", "B thắng / hoà / thua", "Kết luận"]
NO_DIFFERENCES = ("Không có câu hỏi nào mà các hệ thống cho NDCG@10 khác nhau: trên bộ dữ liệu này chúng xếp "
                  "hạng như nhau (hãy thử bộ khó hard-mini).")
ONE_SYSTEM = "Chọn ít nhất hai hệ thống để xem kiểm định ý nghĩa và các câu hỏi khác biệt."
NO_RUN = "Chưa có kết quả: hãy bấm “Chạy đánh giá”."


@dataclass
class EvaluationRun:
    """Reports of one Evaluate-tab run (one :class:`search.eval.EvalReport` per system that ran)."""

    dataset: str
    queries: dict[str, str]
    reports: dict[str, EvalReport]
    errors: dict[str, str]
    seconds: float


def run_evaluation(backend: Backend, dataset: str | None, upload: str | None, systems: Sequence[str],
                   limit: Any = 0, progress: Any = None) -> EvaluationRun:
    """Evaluate ``systems`` on a bundled dataset (by name) or an uploaded BEIR ZIP with the functions of
    ``python -m search.eval`` (``load_beir``, ``open_eval_index``, ``run_eval``). ``limit`` > 0 keeps the
    first ``limit`` judged queries. A system that cannot run (missing weights) is reported in ``errors``.

    ``progress(fraction, desc=...)`` (e.g. a ``gr.Progress``) is driven explicitly from the index build's and
    ``run_eval``'s progress callbacks; nothing patches tqdm (the console bars stay as they are)."""
    from dataclasses import replace

    from indexing.admin import extract_beir_zip
    from indexing.beir import load_beir
    from search.eval import open_eval_index, run_eval
    from search.pipeline import Pipeline, parse_pipeline

    shown = [0.0]

    def step(frac: float, desc: str) -> None:  # the bar never moves back (build stages restart at 0/total)
        shown[0] = max(shown[0], min(1.0, frac))
        if progress is not None:
            progress(shown[0], desc=desc)

    for name in systems:
        parse_pipeline(name)
    start = time.perf_counter()
    if upload:
        dest = Path(tempfile.mkdtemp(prefix="beir-", dir=_scratch_dir()))
        path = extract_beir_zip(upload, dest)
        label = f"upload:{Path(upload).name}"
    else:
        names = bundled_benchmarks(backend.benchmarks_dir)
        if dataset not in names:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {names}")
        path, label = backend.benchmarks_dir / str(dataset), str(dataset)
    step(0.02, "đọc dữ liệu")
    ds = load_beir(path)
    n = int(limit or 0)
    if n > 0 and n < len(ds.queries):
        keep = list(ds.queries)[:n]
        ds = replace(ds, queries={q: ds.queries[q] for q in keep}, qrels={q: ds.qrels[q] for q in keep})
    need_vectors = any(parse_pipeline(s)[0] != "bm25" for s in systems)
    embedder = backend.embedder() if need_vectors else None
    step(0.05, f"chỉ mục {len(ds.passages):,} đoạn văn")

    def on_build(stage: str, done: int, total: int) -> None:
        step(0.05 + 0.05 * (done / total if total else 0.0), f"chỉ mục: {stage} {done:,}/{total:,}")

    snap = open_eval_index(ds, embedder, progress=True, progress_callback=on_build)
    reports: dict[str, EvalReport] = {}
    errors: dict[str, str] = {}
    try:
        pipe = Pipeline.from_snapshot(snap, embedder, rerankers=backend.eval_reranker_source())
        for i, name in enumerate(systems):
            step(0.1 + 0.9 * i / len(systems), f"{name} ({i + 1}/{len(systems)})")

            def on_queries(done: int, total: int, i: int = i, name: str = name) -> None:
                frac = (i + (done / total if total else 1.0)) / len(systems)
                step(0.1 + 0.9 * frac, f"{name} ({i + 1}/{len(systems)}): {done:,}/{total:,} câu hỏi")

            try:
                reports[name] = run_eval(ds, name, pipe, progress=True, progress_callback=on_queries)
            except Exception as err:  # noqa: BLE001 - other systems still run
                errors[name] = msg.friendly_error(err)
    finally:
        snap.close()
    return EvaluationRun(label, dict(ds.queries), reports, errors, time.perf_counter() - start)


def default_eval_systems(systems: Sequence[str], available: Sequence[str]) -> list[str]:
    """The Evaluate tab's default systems: ``bm25``, ``hybrid`` and ``hybrid+<first available reranker>``
    (only those among ``systems``; no reranked one when no reranker is available)."""
    out = [s for s in ("bm25", "hybrid") if s in systems]
    out += [f"hybrid+{r}" for r in available if f"hybrid+{r}" in systems][:1]
    return out


def _scratch_dir() -> str:
    path = Path(tempfile.gettempdir()) / "viranker-app"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _win_loss(run: EvaluationRun, names: list[str]) -> list[dict[str, Any]]:
    """Per system after the first: queries where its NDCG@10 beats / ties / loses to the first system's."""
    base, rows = names[0], []
    for other in names[1:]:
        w = t = lo = 0
        for qid in run.queries:
            a = run.reports[base].per_query.get(qid, {}).get("ndcg@10", 0.0)
            b = run.reports[other].per_query.get(qid, {}).get("ndcg@10", 0.0)
            if b > a + 1e-9:
                w += 1
            elif b < a - 1e-9:
                lo += 1
            else:
                t += 1
        rows.append(dict(zip(WINLOSS_COLUMNS, [other, base, w, t, lo], strict=True)))
    return rows


def significance_rows(run: EvaluationRun, names: list[str],
                      metrics: tuple[str, ...] = SIGNIFICANCE_METRICS) -> list[dict[str, Any]]:
    """Every pair (A, B) of ``names`` (A before B) × ``metrics``: the paired t-test and Wilcoxon signed-rank
    test of B − A over the dataset's judged queries (:func:`search.significance.paired_test`; a query a
    system could not answer counts 0) → rows with :data:`SIGNIFICANCE_COLUMNS`. Not corrected for multiple
    comparisons."""
    from search.significance import paired_test

    qids = list(run.queries)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for metric in metrics:
                va = [run.reports[a].per_query.get(q, {}).get(metric, 0.0) for q in qids]
                vb = [run.reports[b].per_query.get(q, {}).get(metric, 0.0) for q in qids]
                r = paired_test(va, vb, metric)
                if r.n < 2:
                    verdict = "quá ít câu hỏi"
                elif r.wins + r.losses == 0:
                    verdict = "như nhau trên mọi câu hỏi"
                elif r.wilcoxon_pvalue < ALPHA:
                    verdict = f"khác biệt có ý nghĩa (p < {ALPHA:g}): {'B' if r.mean_diff > 0 else 'A'} tốt hơn"
                else:
                    verdict = f"chưa đủ bằng chứng (p ≥ {ALPHA:g})"
                rows.append(dict(zip(SIGNIFICANCE_COLUMNS, [
                    a, b, metric_label(metric), round(r.mean_a, 4), round(r.mean_b, 4), round(r.mean_diff, 4),
                    _p(r.t_pvalue), _p(r.wilcoxon_pvalue), f"{r.wins} / {r.ties} / {r.losses}", verdict], strict=True)))
    return rows


def _p(value: float) -> str:
    """A p-value for the table: 4 significant digits, ``<1e-4`` below, ``—`` when undefined."""
    if value != value:  # NaN
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _differences(run: EvaluationRun, names: list[str]) -> list[dict[str, Any]]:
    """Queries on which the systems' NDCG@10 differ, most different first."""
    rows = []
    for qid, text in run.queries.items():
        vals = {n: run.reports[n].per_query.get(qid, {}).get("ndcg@10", 0.0) for n in names}
        spread = max(vals.values()) - min(vals.values())
        if spread > 0:
            rows.append({DIFF_ID: qid, DIFF_QUERY: text, **{f"NDCG@10 · {n}": round(v, 3) for n, v in vals.items()},
                         DIFF_SPREAD: round(spread, 3)})
    rows.sort(key=lambda r: -r[DIFF_SPREAD])
    return rows


def render_evaluation(run: EvaluationRun) -> tuple[str, Any, Any, Any, Any, list[str] | None, Any, str]:
    """An :class:`EvaluationRun` → (status HTML, metrics table, chart data, win/loss summary, per-query
    differences, [CSV, JSON] download paths, significance table, empty-state HTML of the tables below the
    chart: why significance / differences are empty, "" when they are not)."""
    import pandas as pd

    rows, chart = [], []
    for name, rep in run.reports.items():
        m = rep.metrics
        lat = rep.timings_ms.get("total", {})
        rows.append({COL_SYSTEM: name, **{metric_label(k): m.get(k) for k in EVAL_METRICS},
                     COL_QUERIES: m.get("queries"), COL_P50: round(lat.get("p50", 0.0), 1),
                     COL_P95: round(lat.get("p95", 0.0), 1)})
        for metric in ("ndcg@10", "mrr@10"):
            label = metric_label(metric)
            chart.append(dict(zip(CHART_COLUMNS, [f"{label} · {name}", float(m.get(metric) or 0.0), name, label],
                                  strict=True)))
    metrics_df = pd.DataFrame(rows)
    chart_df = pd.DataFrame(chart, columns=CHART_COLUMNS)
    names = list(run.reports)
    win_rows, diff_rows = (_win_loss(run, names), _differences(run, names)) if len(names) >= 2 else ([], [])
    win_df = pd.DataFrame(win_rows, columns=WINLOSS_COLUMNS)
    diff_df = pd.DataFrame(diff_rows[:100], columns=list(diff_rows[0]) if diff_rows else [DIFF_ID, DIFF_QUERY,
                                                                                          DIFF_SPREAD])
    sig_df = pd.DataFrame(significance_rows(run, names) if len(names) >= 2 else [], columns=SIGNIFICANCE_COLUMNS)
    empty = ONE_SYSTEM if len(names) < 2 else NO_DIFFERENCES if not diff_rows else ""
    files = _write_eval_files(run, sig_df.to_dict("records")) if run.reports else None
    parts = [f"<div class='vr-muted'>Bộ dữ liệu <b>{html.escape(run.dataset)}</b> · {len(run.queries):,} câu hỏi · "
             f"{run.seconds:,.1f} s</div>"]
    parts += [notice_html(msg.eval_system_failed(n, m), "warn") for n, m in run.errors.items()]
    return ("".join(parts), metrics_df, chart_df, win_df, diff_df, files, sig_df,
            notice_html(empty, "info") if empty else "")


def _write_eval_files(run: EvaluationRun, significance: list[dict[str, Any]] | None = None) -> list[str]:
    """Per-query CSV and a full JSON report in a fresh temp folder → their paths."""
    out = Path(tempfile.mkdtemp(prefix="eval-", dir=_scratch_dir()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path, json_path = out / f"viranker-eval-{stamp}.csv", out / f"viranker-eval-{stamp}.json"
    metrics = sorted({m for rep in run.reports.values() for q in rep.per_query.values() for m in q})
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "query_id", "query", *metrics])
        for name, rep in run.reports.items():
            for qid, text in run.queries.items():
                vals = rep.per_query.get(qid, {})
                w.writerow([name, qid, text, *[vals.get(m, 0.0) for m in metrics]])
    payload = {
        "dataset": run.dataset, "queries": len(run.queries), "seconds": round(run.seconds, 3),
        "metrics": {n: rep.metrics for n, rep in run.reports.items()},
        "latency_ms": {n: rep.timings_ms for n, rep in run.reports.items()},
        "per_query": {n: rep.per_query for n, rep in run.reports.items()},
        "significance": significance or [],
        "errors": run.errors,
    }
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return [str(csv_path), str(json_path)]


class EvaluateHandlers:
    """The Evaluate tab's handler (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend

    def evaluate(self, dataset: str | None, upload: str | None, systems: Sequence[str] | None, limit: Any,
                 progress: Any = None) -> tuple[str, Any, Any, Any, Any, list[str] | None, Any, str]:
        """Run ``search.eval`` for each system → (status HTML, metrics table, chart data, win/loss summary,
        per-query table, [CSV path, JSON path], significance table, empty-state HTML); see
        :func:`render_evaluation`."""
        import pandas as pd

        empty = (pd.DataFrame(), pd.DataFrame(columns=CHART_COLUMNS),
                 pd.DataFrame(), pd.DataFrame(), None, pd.DataFrame(columns=SIGNIFICANCE_COLUMNS),
                 notice_html(NO_RUN, "info"))
        systems = list(dict.fromkeys(systems or []))
        if not systems:
            return (notice_html(msg.EVAL_NO_SYSTEM, "info"), *empty)
        try:
            report = run_evaluation(self.b, dataset, upload, systems, limit, progress)
        except (UploadError, FileNotFoundError, ValueError) as err:
            return (notice_html(msg.eval_failed(err), "warn"), *empty)
        return render_evaluation(report)


def build(ctx: UiContext) -> None:
    """The tab's layout and events (inside ``gr.Blocks`` / ``gr.Tabs``)."""
    h = ctx.handlers
    with gr.Tab("Đánh giá", id="evaluate", elem_id="tab-evaluate"):
        bundled = bundled_benchmarks(ctx.backend.benchmarks_dir)
        with gr.Row():
            ds = gr.Dropdown(bundled, value=default_eval_dataset(bundled), elem_id="eval-dataset", scale=2,
                             label="Bộ dữ liệu (BEIR; chấm trên kho đoạn văn của chính bộ đó)")
            up = gr.File(label="…hoặc tải lên ZIP BEIR (corpus.jsonl, queries.jsonl, qrels/test.tsv)",
                         file_types=[".zip"], type="filepath", elem_id="eval-upload", scale=2)
            lim = gr.Number(value=DEFAULT_LIMIT, precision=0, minimum=0, label="Giới hạn số câu hỏi (0 = tất cả)",
                            elem_id="eval-limit", scale=1)
        runnable = system_choices(ctx.available)  # unavailable rerankers are not offered (Compare lists why)
        esys = gr.CheckboxGroup(runnable, value=default_eval_systems(runnable, ctx.available),
                                label="Hệ thống", elem_id="eval-systems")
        ego = gr.Button("Chạy đánh giá", variant="primary", elem_id="eval-button")
        estatus = gr.HTML(elem_id="eval-status")
        emetrics = gr.Dataframe(label="Chỉ số", elem_id="eval-metrics", interactive=False)
        eplot = gr.BarPlot(x=CHART_COLUMNS[0], y=CHART_COLUMNS[1], color=CHART_COLUMNS[2], title="NDCG@10 / MRR@10",
                           y_lim=[0, 1], x_label_angle=-30, elem_id="eval-plot", sort=None)
        esig = gr.Dataframe(label="Kiểm định ý nghĩa theo cặp (t-test cặp và Wilcoxon trên điểm từng câu hỏi; "
                                  "chưa hiệu chỉnh đa so sánh)", elem_id="eval-significance", interactive=False,
                            headers=SIGNIFICANCE_COLUMNS)
        eempty = gr.HTML(notice_html(NO_RUN, "info"), elem_id="eval-empty")
        with gr.Row():
            ewin = gr.Dataframe(label="Thắng / hoà / thua theo NDCG@10 (so với hệ thống đầu tiên)",
                                elem_id="eval-winloss", interactive=False)
        ediff = gr.Dataframe(label="Câu hỏi khác biệt nhiều nhất", elem_id="eval-perquery",
                             interactive=False, max_height=360)
        efiles = gr.File(label="Tải kết quả (CSV / JSON)", file_count="multiple", elem_id="eval-files",
                         interactive=False)

    # gr.Progress is driven explicitly by run_evaluation's callbacks. Gradio's tqdm tracking is never
    # used: it patches tqdm process-wide when the UI is built, and a bar alive in a build thread then
    # dies on its next update (issue 13).
    def _evaluate(dataset, upload, sys_names, limit, progress=gr.Progress()):  # noqa: B008
        return h.evaluate(dataset, upload, sys_names, limit, progress)

    def _systems() -> Any:  # rerankers loaded from local model dirs (Compare tab) since the page was built
        return gr.update(choices=system_choices(usable_rerankers(ctx.backend.rerankers())))

    ctx.page.load(_systems, None, esys, **PRIVATE, queue=False)
    ego.click(_evaluate, [ds, up, esys, lim], [estatus, emetrics, eplot, ewin, ediff, efiles, esig, eempty], **PRIVATE,
              concurrency_limit=1, concurrency_id="evaluate")
