"""The app's HTTP API (gradio_client) and its handlers, on a tiny index served in-process.

The index is built in a temporary ``VIRANKER_HOME`` from the test kit's corpus (BM25 + a hashing embedder,
a word-overlap "reranker"), with the real :class:`search.service.SearchService` behind the app.
"""

from __future__ import annotations

import json
import threading
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app as app_module  # noqa: E402
from tests import app_testkit as kit  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with kit.running_app(tmp_path_factory.mktemp("app-api-home")) as ra:
        yield ra


@pytest.fixture(scope="module")
def client(served):
    return Client(served.url, verbose=False, analytics_enabled=False)


@pytest.fixture(scope="module")
def handlers(served):
    return app_module.Handlers(served.backend)


# ------------------------------------------------------------------------------------------------ API
def test_only_public_endpoints_are_listed(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert set(info["named_endpoints"]) == {"/search", "/compare", "/admin_status", "/admin_rollback",
                                            "/admin_rebuild", "/admin_delete"}
    assert not info["unnamed_endpoints"]
    params = [p["parameter_name"] for p in info["named_endpoints"]["/search"]["parameters"]]
    assert params == ["query", "pipeline", "top_k"]


def test_search_returns_ranked_json(client):
    hits = client.predict("Hà Nội", "bm25", 3, api_name="/search")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["id"] == "hn"
    assert {"id", "title", "text", "score", "rank"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_defaults_and_folded_query(client):
    hits = client.predict("thu do viet nam", api_name="/search")  # default pipeline and top_k
    assert hits and hits[0]["id"] == "hn"
    assert len(hits) <= 10


def test_search_bad_input_is_a_clear_error(client):
    with pytest.raises(AppError, match="query is empty"):
        client.predict("   ", api_name="/search")
    with pytest.raises(AppError, match="unknown pipeline"):
        client.predict("Hà Nội", "nonsense", 5, api_name="/search")


def test_search_with_reranker_and_unavailable_model(client):
    hits = client.predict("sông Hồng chảy qua Hà Nội", "hybrid+overlap", 3, api_name="/search")
    assert hits[0]["id"] == "song-hong"
    assert 0.0 <= hits[0]["normalized_score"] <= 1.0
    with pytest.raises(AppError, match="VIRANKER_MODEL"):
        client.predict("Hà Nội", "hybrid+phoranker", 3, api_name="/search")


def test_compare_per_system(client):
    out = client.predict("Đà Lạt cao nguyên", ["hybrid+overlap", "bm25", "hybrid+phoranker"], 3, api_name="/compare")
    assert set(out["results"]) == {"hybrid+overlap", "bm25"}
    assert out["results"]["bm25"][0]["id"] == "dl"
    assert "VIRANKER_MODEL" in out["unavailable"]["hybrid+phoranker"]
    (pair,) = out["agreement"]
    assert pair["a"] == "hybrid+overlap" and pair["b"] == "bm25" and 0.0 <= pair["overlap"] <= 1.0
    assert set(out["timings_ms"]) == {"hybrid+overlap", "bm25"}


def test_admin_api_requires_password_and_throttles(client):
    with pytest.raises(AppError, match="Wrong password"):
        client.predict("nope", api_name="/admin_status")
    with pytest.raises(AppError, match="wait"):  # even the right password waits out the back-off
        client.predict(kit.ADMIN_PASSWORD, api_name="/admin_status")
    time.sleep(1.1)
    out = client.predict(kit.ADMIN_PASSWORD, api_name="/admin_status")
    assert out["stats"]["index"] == "test" and out["stats"]["passages"] >= 7
    assert out["generations"][0]["current"]
    with pytest.raises(AppError):
        client.predict("", ["hn"], api_name="/admin_delete")


# --------------------------------------------------------------------------------------- handlers
def test_friendly_messages_never_tracebacks(handlers):
    for query in ["", "   ", "?!?!", "…", "a" * 5000]:
        notice, show_btn, _timings, results = handlers.search(query, "hybrid", None, 10)
        assert "Traceback" not in notice + results
        assert notice or results
    notice, *_ = handlers.search("?!?!", "hybrid", None, 10)
    assert "không có chữ" in notice
    notice, *_ = handlers.search("Hà Nội " * 300, "bm25", None, 10)
    assert "Câu hỏi quá dài" in notice
    notice, *_ = handlers.search("Hà Nội", "rerank", "phoranker", 5)
    assert "VIRANKER_MODEL" in notice and "Traceback" not in notice


def test_search_handler_renders_escaped_highlighted_results(handlers):
    notice, show_btn, timings, results = handlers.search("phao hoa ha noi", "bm25", None, 10)
    assert "<script>" not in results and "&lt;script&gt;" in results
    assert "<img" not in results and "&lt;img" in results
    assert "<mark>Hà</mark>" in results  # typed without diacritics, highlighted on folded syllables
    assert "ms" in timings
    assert 'href="javascript' not in results


def test_restored_query_notice_and_as_typed(handlers):
    notice, show_btn, _t, results = handlers.search("song hong", "hybrid", None, 5)
    assert "Đang tìm: <b>sông hồng</b>" in notice and show_btn  # restorer built from the index's own text
    assert "<mark>Sông</mark> <mark>Hồng</mark>" in results
    notice2, show2, _t2, _r2 = handlers.search("song hong", "hybrid", None, 5, as_typed=True)
    assert not show2 and "chính xác" in notice2 and "Đang tìm" not in notice2


def test_compare_handler_marks_benchmark_relevance(handlers):
    table, stats = handlers.compare(kit.BENCH_QUERY, ["hybrid+overlap", "bm25", "hybrid+phoranker"], 5)
    assert "tiny-bench" in stats and "overlap@5" in stats
    assert "✓" in table and "NDCG@10" in table
    assert "hybrid+phoranker" in stats and "VIRANKER_MODEL" in stats
    table, _ = handlers.compare("Hà Nội", ["a", "b", "c", "d"], 5)
    assert "tối đa 3" in table


def test_evaluate_bundled_and_uploaded(handlers, served, tmp_path):
    status, metrics, chart, winloss, diff, files = handlers.evaluate("tiny-bench", None, ["bm25", "hybrid+overlap"], 0)
    assert list(metrics["system"]) == ["bm25", "hybrid+overlap"]
    assert metrics["ndcg@10"].between(0, 1).all() and (metrics["queries"] == 2).all()
    assert set(chart["metric"]) == {"ndcg@10", "mrr@10"}
    assert list(winloss.columns) == ["system", "baseline", "wins", "ties", "losses"]
    csv_path, json_path = files
    assert Path(csv_path).read_text(encoding="utf-8").startswith("system,query_id,query,")
    report = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert set(report["metrics"]) == {"bm25", "hybrid+overlap"}
    # the same run from an uploaded BEIR zip (nested folder), with a query limit
    z = tmp_path / "bench.zip"
    src = served.home / "benchmarks" / "tiny-bench"
    with zipfile.ZipFile(z, "w") as zf:
        for f in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]:
            zf.write(src / f, f"tiny/{f}")
    status, metrics, *_ = handlers.evaluate(None, str(z), ["bm25"], 1)
    assert "upload:bench.zip" in status and int(metrics["queries"][0]) == 1
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../corpus.jsonl", "{}")
    status, *_ = handlers.evaluate(None, str(bad), ["bm25"], 0)
    assert "zip-slip" in status


def test_admin_handlers_refuse_without_token(handlers):
    assert "đăng nhập" in handlers.admin_view(None)[0]
    assert "đăng nhập" in handlers.upload("forged", ["x.jsonl"], "add")[0]
    assert "đăng nhập" in handlers.rollback(None)
    assert "đăng nhập" in handlers.delete("forged", "hn")[0]


def test_upload_rebuild_while_searching(handlers, served, client, tmp_path):
    """Add a document through the admin back end while clients keep searching: no search fails, and the
    new document becomes searchable once the new generation is swapped in."""
    tok, msg = handlers.login(kit.ADMIN_PASSWORD, "10.0.0.9")
    assert tok, msg
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"_id": "kinh-thanh-hue", "title": "Kinh thành Huế",
                               "text": "Kinh thành Huế là di tích ở cố đô Huế bên sông Hương."},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    before = served.backend.current_generation()
    errors: list[str] = []
    done = threading.Event()
    count = [0]

    def hammer():
        c = Client(served.url, verbose=False, analytics_enabled=False)
        while not done.is_set():
            try:
                assert c.predict("Hà Nội", "hybrid", 3, api_name="/search")[0]["id"] == "hn"
                count[0] += 1
            except Exception as err:  # noqa: BLE001
                errors.append(repr(err))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    report, polling = handlers.upload(tok, [str(new)], "add")
    assert polling, report
    assert served.backend.job.wait(120)
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(30)
    snap = served.backend.job.snapshot()
    assert snap["error"] is None, snap
    assert not errors, errors[:3]
    assert count[0] > 0
    assert served.backend.current_generation() != before
    hits = client.predict("kinh thanh hue", "bm25", 3, api_name="/search")
    assert hits[0]["id"] == "kinh-thanh-hue"
    # roll back: the new document is gone again; then delete a document by id
    assert "quay lui" in handlers.rollback(tok)
    time.sleep(0.3)
    ids = [h["id"] for h in client.predict("kinh thanh hue", "bm25", 3, api_name="/search")]
    assert "kinh-thanh-hue" not in ids
    msg, polling = handlers.delete(tok, "pho")
    assert polling, msg
    assert served.backend.job.wait(120) and served.backend.job.snapshot()["error"] is None
    time.sleep(0.3)
    ids = [h["id"] for h in client.predict("phở bò", "bm25", 5, api_name="/search")]
    assert "pho" not in ids


def test_first_start_builds_demo_index_bm25_first(served):
    """A missing index is built in the background from the demo corpus: without precomputed vectors a
    BM25-only generation is served first, then the full generation (BM25 + vectors) replaces it."""
    lines: list[str] = []
    backend = app_module.Backend("demo-first-start", embedder=kit.HashEmbedder(), demo_corpus=served.home / "corpus.jsonl",
                                 precomputed=None, echo=lines.append, reranker_status=lambda: {})
    assert backend.current_generation() is None
    assert "chưa có dữ liệu" in backend.not_ready_message()
    assert backend.ensure_index()
    assert not backend.ensure_index()  # already running
    assert "⏳" in app_module.banner_html(backend) or backend.current_generation() is not None
    assert backend.job.wait(120)
    snap = backend.job.snapshot()
    assert snap["error"] is None, snap
    gens_list = backend.admin_generations()
    assert [g["status"] for g in gens_list] == ["complete", "complete"]
    assert gens_list[0]["current"] and gens_list[0]["counts"]["vectors"] == len(kit.CORPUS)
    assert gens_list[1]["counts"]["vectors"] == 0
    assert any("bm25-only generation" in line for line in lines)
    assert backend.admin_stats()["operation"] == "build"
    assert not backend.ensure_index()  # nothing to do once built


def test_parse_args():
    args = app_module.parse_args([])
    assert (args.host, args.port, args.index, args.admin_password) == ("127.0.0.1", 7860, "demo", None)
    args = app_module.parse_args(["--host", "0.0.0.0", "--port", "9000", "--index", "x", "--admin-password", "pw"])
    assert (args.host, args.port, args.index, args.admin_password) == ("0.0.0.0", 9000, "x", "pw")
    assert len(app_module.load_examples()) >= 10


def test_bm25_only_index_falls_back_with_a_note(served):
    """On a generation without vectors, dense/hybrid searches are answered by BM25 with a warning; the
    default service factory (the real SearchService) is used."""
    from indexing.build import build_generation
    from indexing.corpus import load_corpus

    passages, _ = load_corpus(served.home / "corpus.jsonl")
    build_generation("bm25-only", passages, None, progress=False)
    backend = app_module.Backend("bm25-only", demo_corpus=None, reranker_status=lambda: {})
    h = app_module.Handlers(backend)
    notice, _btn, _t, results = h.search("Đà Lạt", "hybrid", None, 5)
    assert "BM25" in notice and "pipeline <code>bm25</code>" in results and "<mark>Đà</mark>" in results
