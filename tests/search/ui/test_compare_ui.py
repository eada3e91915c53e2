"""Compare and Evaluate for analysts (issue 18): only available systems ticked, rerankers added from a local
model dir (sandboxed to the allowed folders, typed Vietnamese errors), per-query metrics of a benchmark
question, and Evaluate's defaults, paired significance and empty states.

The unit tests need no app; the handler tests run the real app in-process on the test kit's tiny index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from search.eval import EvalReport
from search.ui import local_rerankers as lr
from search.ui.benchmarks import default_eval_dataset
from search.ui.tab_compare import compare_choices, default_compare_systems, unavailable_html
from search.ui.tab_evaluate import (
    NO_DIFFERENCES,
    ONE_SYSTEM,
    SIGNIFICANCE_COLUMNS,
    EvaluationRun,
    default_eval_systems,
    render_evaluation,
    significance_rows,
)


# ------------------------------------------------------------------------------------- default systems
def test_compare_ticks_only_available_rerankers():
    # the stock app: PhoRanker's weights are missing → never ticked (it was, and Compare always warned)
    assert default_compare_systems(["viranker", "phoranker"], ["viranker"]) == ["hybrid+viranker", "hybrid"]
    assert default_compare_systems(["viranker", "phoranker"], []) == ["hybrid"]
    assert default_compare_systems(["viranker", "phoranker", "x"], ["x", "phoranker", "viranker"]) == [
        "hybrid+viranker", "hybrid+phoranker", "hybrid"]


def test_compare_choices_leave_unavailable_ones_out_with_their_reason():
    from reranker.availability import ModelUnavailable, RerankerStatus, UnavailableReason

    missing = RerankerStatus.unavailable(ModelUnavailable(
        "phoranker", "$PHORANKER_PATH is not set and itdainb/PhoRanker is not cached", "set it",
        UnavailableReason.NOT_DOWNLOADED, env="PHORANKER_PATH", hub_id="itdainb/PhoRanker"))
    status = {"viranker": "available: /m/v", "phoranker": missing, "local-x": "loaded: /m/x"}
    choices, reasons = compare_choices(status)
    assert "hybrid+viranker" in choices and "bm25+local-x" in choices
    assert not any("phoranker" in c for c in choices)
    assert list(reasons) == ["phoranker"] and reasons["phoranker"].code is UnavailableReason.NOT_DOWNLOADED
    text = unavailable_html(reasons)
    assert "hybrid+phoranker" in text and "PHORANKER_PATH" in text and "Không khả dụng" in text
    assert "itdainb/PhoRanker chưa có trong bộ nhớ đệm Hugging Face" in text  # worded by its code
    assert "is not set" not in text and "is not cached" not in text  # not the English detail
    assert unavailable_html({}) == ""
    assert unavailable_html({"<b>": "unavailable: <script>"}).count("<script>") == 0  # escaped


def test_evaluate_defaults():
    systems = ["bm25", "dense", "hybrid", "hybrid+viranker", "bm25+viranker", "hybrid+phoranker"]
    assert default_eval_systems(systems, ["viranker"]) == ["bm25", "hybrid", "hybrid+viranker"]
    assert default_eval_systems(systems, []) == ["bm25", "hybrid"]
    assert default_eval_dataset(["hard-mini", "nanibot-qa-test", "xquad-vi"]) == "hard-mini"
    assert default_eval_dataset(["nanibot-qa-test", "xquad-vi"]) == "xquad-vi"
    assert default_eval_dataset([]) is None
    from search.ui.benchmarks import BENCHMARKS_DIR, bundled_benchmarks

    assert default_eval_dataset(bundled_benchmarks(BENCHMARKS_DIR)) == "hard-mini"  # bundled and the default


# ------------------------------------------------------------------------------------- significance
def _report(per_query: dict[str, dict[str, float]], name: str) -> EvalReport:
    n = len(per_query)
    means = {m: sum(q[m] for q in per_query.values()) / n for m in ("ndcg@10", "mrr@10")}
    return EvalReport({**means, "queries": n, "pipeline": name}, per_query, {q: [] for q in per_query}, {})


def _run(systems: dict[str, list[float]]) -> EvaluationRun:
    n = len(next(iter(systems.values())))
    queries = {f"q{i}": f"câu hỏi {i}" for i in range(n)}
    reports = {name: _report({f"q{i}": {"ndcg@10": v, "mrr@10": v} for i, v in enumerate(vals)}, name)
               for name, vals in systems.items()}
    return EvaluationRun("toy", queries, reports, {}, 0.1)


def test_significance_rows_give_p_values_for_every_pair():
    a = [0.2, 0.3, 0.1, 0.4, 0.2, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.4]
    b = [v + 0.5 for v in a[:-2]] + [0.2, 0.4]  # better on 10 of 12
    c = list(a)
    rows = significance_rows(_run({"bm25": a, "hybrid": b, "hybrid+x": c}), ["bm25", "hybrid", "hybrid+x"])
    assert len(rows) == 6 and set(rows[0]) == set(SIGNIFICANCE_COLUMNS)
    pairs = [(r["Hệ thống A"], r["Hệ thống B"], r["Chỉ số"]) for r in rows]
    assert pairs[:2] == [("bm25", "hybrid", "NDCG@10"), ("bm25", "hybrid", "MRR@10")]
    first = rows[0]
    assert float(first["p (Wilcoxon)"]) < 0.05 and first["B thắng / hoà / thua"] == "10 / 2 / 0"
    assert first["Kết luận"].startswith("khác biệt có ý nghĩa") and first["Kết luận"].endswith("B tốt hơn")
    assert first["B − A"] == pytest.approx(0.5 * 10 / 12, abs=1e-4)
    same = next(r for r in rows if (r["Hệ thống A"], r["Hệ thống B"]) == ("bm25", "hybrid+x"))
    assert same["p (t-test cặp)"] == "1.0000" and same["Kết luận"] == "như nhau trên mọi câu hỏi"


def test_render_evaluation_empty_states():
    out = render_evaluation(_run({"bm25": [1.0, 1.0, 1.0], "hybrid": [1.0, 1.0, 1.0]}))
    status, metrics, chart, win, diff, files, sig, empty = out
    assert diff.empty and NO_DIFFERENCES in empty  # the empty "most different" table says why
    assert len(sig) == 2 and (sig["Kết luận"] == "như nhau trên mọi câu hỏi").all()
    report = json.loads(Path(files[1]).read_text(encoding="utf-8"))
    assert len(report["significance"]) == 2 and "p (Wilcoxon)" in report["significance"][0]
    *_, sig1, empty1 = render_evaluation(_run({"bm25": [0.5, 1.0]}))
    assert sig1.empty and list(sig1.columns) == SIGNIFICANCE_COLUMNS and ONE_SYSTEM in empty1
    *_, diff2, _f, _s, empty2 = render_evaluation(_run({"bm25": [0.5, 1.0, 0.2], "hybrid": [1.0, 1.0, 0.2]}))
    assert len(diff2) == 1 and empty2 == ""


# ------------------------------------------------------------------------------ local model dirs
def _model_dir(folder: Path, config: dict | None = None, weights: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "bert"}), encoding="utf-8")
    if weights:
        (folder / "model.safetensors").write_bytes(b"not really weights")
    return folder


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    return allowed, outside


def test_model_dir_inside_an_allowed_folder(roots):
    allowed, _ = roots
    m = _model_dir(allowed / "my-model")
    assert lr.resolve_model_dir(str(m), [allowed]) == m.resolve()
    assert lr.resolve_model_dir("my-model", [allowed]) == m.resolve()  # relative to an allowed folder
    assert lr.resolve_model_dir(f"  {m}/ ", [allowed]) == m.resolve()


@pytest.mark.parametrize("case", ["traversal", "outside", "symlink-dir", "symlink-weights", "missing", "empty",
                                  "root-itself", "nul"])
def test_model_dir_refused_outside_the_sandbox(roots, case):
    allowed, outside = roots
    target = _model_dir(outside / "evil")
    text = {
        "traversal": f"{allowed}/../outside/evil",
        "outside": str(target),
        "missing": "nope",
        "empty": "   ",
        "root-itself": str(allowed),
        "nul": "a\x00b",
    }.get(case)
    if case == "symlink-dir":
        os.symlink(target, allowed / "link")
        text = str(allowed / "link")
    if case == "symlink-weights":
        m = _model_dir(allowed / "m", weights=False)
        os.symlink(target / "model.safetensors", m / "model.safetensors")
        text = "m"
    with pytest.raises(lr.PathNotAllowed) as err:
        lr.resolve_model_dir(text, [allowed])
    assert isinstance(err.value, lr.LocalModelError) and str(err.value)  # a Vietnamese message for the page
    if case in ("outside", "symlink-dir"):
        assert "thư mục cho phép" in str(err.value)


@pytest.mark.parametrize("case", ["no-config", "no-weights", "a-file", "bad-json"])
def test_not_a_model_dir(roots, case):
    allowed, _ = roots
    if case == "no-config":
        (allowed / "d").mkdir()
        (allowed / "d" / "model.safetensors").write_bytes(b"x")
    elif case == "no-weights":
        _model_dir(allowed / "d", weights=False)
    elif case == "a-file":
        (allowed / "d").write_text("hello")
    else:
        _model_dir(allowed / "d")
        (allowed / "d" / "config.json").write_text("{not json")
    with pytest.raises(lr.NotAModelDir, match="thư mục mô hình|config.json"):
        lr.resolve_model_dir("d", [allowed])


def test_local_rerankers_load_through_the_backends(roots):
    from reranker.backends import ViRankerReranker
    from tests.app_testkit import tiny_viranker_dir

    allowed, _ = roots
    reg = lr.LocalRerankers(limit=2, roots=[allowed])
    tiny_viranker_dir(allowed / "Tiny ViRanker")
    entry, new = reg.add("Tiny ViRanker")
    assert new and entry.name == "local-tiny-viranker" and isinstance(entry.model, ViRankerReranker)
    scores = entry.model.rerank("thủ đô Việt Nam", ["Hà Nội là thủ đô.", "Phở bò."])
    assert len(scores.raw) == 2
    again, new2 = reg.add(str(allowed / "Tiny ViRanker"))
    assert again is entry and not new2  # the same dir is loaded once
    assert reg.status() == {"local-tiny-viranker": f"loaded: {(allowed / 'Tiny ViRanker').resolve()}"}
    broken = _model_dir(allowed / "broken", {"model_type": "viranker", "hidden_size": 8})
    with pytest.raises(lr.ModelLoadFailed, match="Không nạp được broken"):
        reg.add(str(broken))
    reg.limit = 1
    _model_dir(allowed / "other")
    with pytest.raises(lr.TooManyRerankers):
        reg.add("other")


# ------------------------------------------------------------------------------- in the running app
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from tests import app_testkit as kit

    with kit.running_app(tmp_path_factory.mktemp("compare-ui-home")) as ra:
        yield ra


@pytest.mark.slow
def test_add_local_reranker_then_compare_with_per_query_metrics(served):
    import app as app_module
    from tests import app_testkit as kit

    h = app_module.Handlers(served.backend)
    choices, unavailable = h.compare_state()
    assert "hybrid+phoranker" not in choices["value"] and "hybrid+phoranker" not in choices["choices"]
    assert "PHORANKER_PATH" in unavailable and "chưa có trong bộ nhớ đệm Hugging Face" in unavailable
    msg, update, _ = h.add_model("../tiny-viranker", ["hybrid"])  # outside $VIRANKER_HOME/models
    assert "không được chứa" in msg and update == {"__type__": "update"}
    kit.tiny_viranker_dir(served.home / "models" / "tiny")
    msg, update, _ = h.add_model("tiny", ["hybrid"])
    assert "Đã nạp reranker local-tiny" in msg
    assert "hybrid+local-tiny" in update["choices"] and update["value"] == ["hybrid", "hybrid+local-tiny"]
    table, stats = h.compare(kit.BENCH_QUERY, ["bm25", "hybrid+local-tiny"], 5)
    assert "không khả dụng" not in stats and "hybrid+local-tiny" in table
    assert "compare-query-metrics" in stats and "RECALL@10" not in stats and "Recall@10" in stats
    per_query = stats.split("id='compare-query-metrics'", 1)[1].split("</table>", 1)[0]
    assert per_query.count("<tr><td>bm25</td>") == 1 and "<tr><td>hybrid+local-tiny</td>" in per_query
    # evaluation can use it too, next to the kit's rerankers
    status, metrics, *_ , sig, empty = h.evaluate("tiny-bench", None, ["bm25", "hybrid+local-tiny"], 0)
    assert list(metrics["Hệ thống"]) == ["bm25", "hybrid+local-tiny"] and len(sig) == 2
    assert served.backend.rerankers()["local-tiny"].startswith("loaded")


@pytest.mark.slow
def test_api_compare_defaults_skip_unavailable(served):
    from gradio_client import Client

    from tests import app_testkit as kit

    out = Client(served.url, verbose=False, analytics_enabled=False).predict(kit.BENCH_QUERY, None, 5,
                                                                            api_name="/compare")
    assert out["unavailable"] == {} and "hybrid" in out["results"]
    assert not any("phoranker" in n for n in out["results"])
