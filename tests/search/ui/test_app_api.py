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
    assert set(info["named_endpoints"]) == {"/search", "/compare", "/status", "/admin_status", "/admin_rollback",
                                            "/admin_rebuild", "/admin_delete", "/admin_retry_build"}
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
    with pytest.raises(AppError, match="Hãy nhập câu hỏi"):  # the UI's Vietnamese message (issue 19)
        client.predict("   ", api_name="/search")
    with pytest.raises(AppError, match="unknown pipeline"):
        client.predict("Hà Nội", "nonsense", 5, api_name="/search")


def test_search_with_reranker_and_unavailable_model(client):
    hits = client.predict("sông Hồng chảy qua Hà Nội", "hybrid+overlap", 3, api_name="/search")
    assert hits[0]["id"] == "song-hong"
    assert 0.0 <= hits[0]["normalized_score"] <= 1.0
    with pytest.raises(AppError, match="PHORANKER_PATH"):  # worded by the error's code (not_downloaded)
        client.predict("Hà Nội", "hybrid+phoranker", 3, api_name="/search")


def test_compare_per_system(client):
    out = client.predict("Đà Lạt cao nguyên", ["hybrid+overlap", "bm25", "hybrid+phoranker"], 3, api_name="/compare")
    assert set(out["results"]) == {"hybrid+overlap", "bm25"}
    assert out["results"]["bm25"][0]["id"] == "dl"
    why = out["unavailable"]["hybrid+phoranker"]
    assert "PHORANKER_PATH" in why and "chưa dùng được" in why and "no model in the test kit" not in why
    (pair,) = out["agreement"]
    assert pair["a"] == "hybrid+overlap" and pair["b"] == "bm25" and 0.0 <= pair["overlap"] <= 1.0
    assert set(out["timings_ms"]) == {"hybrid+overlap", "bm25"}


def test_admin_api_requires_password_and_throttles(client):
    with pytest.raises(AppError, match="Sai mật khẩu"):
        client.predict("nope", api_name="/admin_status")
    with pytest.raises(AppError, match="chờ"):  # even the right password waits out the back-off
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
    assert "PHORANKER_PATH" in notice and "chưa dùng được" in notice and "Traceback" not in notice


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
    assert "tiny-bench" in stats and "Trùng lặp (overlap@5)" in stats
    assert "✓" in table and "NDCG@10" in table
    assert "hybrid+phoranker" in stats and "PHORANKER_PATH" in stats and "chưa dùng được" in stats
    table, _ = handlers.compare("Hà Nội", ["a", "b", "c", "d"], 5)
    assert "tối đa 3" in table


def test_evaluate_bundled_and_uploaded(handlers, served, tmp_path):
    status, metrics, chart, winloss, diff, files, *_ = handlers.evaluate("tiny-bench", None, ["bm25", "hybrid+overlap"], 0)
    assert list(metrics["Hệ thống"]) == ["bm25", "hybrid+overlap"]
    assert list(metrics.columns) == ["Hệ thống", "NDCG@10", "MRR@10", "NDCG@3", "MRR@3", "Recall@100", "Số câu hỏi",
                                     "Độ trễ p50 (ms)", "Độ trễ p95 (ms)"]
    assert metrics["NDCG@10"].between(0, 1).all() and (metrics["Số câu hỏi"] == 2).all()
    assert set(chart["Chỉ số"]) == {"NDCG@10", "MRR@10"}
    assert list(winloss.columns) == ["Hệ thống", "So với", "Thắng", "Hoà", "Thua"]
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
    assert "upload:bench.zip" in status and int(metrics["Số câu hỏi"][0]) == 1
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
    assert "BM25" in notice and "cách tìm <code>bm25</code>" in results and "<mark>Đà</mark>" in results


# ------------------------------------------------------------------------------------------- failed builds
def test_status_endpoint_when_ready(client):
    st = client.predict(api_name="/status")
    assert st["ready"] and not st["building"] and not st["build_failed"] and st["failure"] is None
    assert st["index"] == "test" and st["generation"]


def test_failed_demo_build_is_shown_and_retry_fixes_it(tmp_path):
    """Backend level: a demo build that fails says so (stage, error class, what to do) in the banner, the
    search answer and the public status (no server paths); the admin retry starts it again and, once it
    succeeds, searches work. Without a token the retry is refused."""
    backend = kit.flaky_backend("flaky-unit", kit.write_corpus(tmp_path / "corpus.jsonl"), failures=1)
    h = app_module.Handlers(backend)
    assert backend.ensure_index()
    assert backend.job.wait(60)
    failure = backend.job.failure
    assert failure and failure["kind"] == "demo" and failure["stage"] == "bm25"
    assert failure["error_type"] == "InjectedBuildError"
    # the Search tab: banner and search answer
    banner, polling = h.banner()
    assert "id='build-failed'" in banner and "thất bại" in banner and "InjectedBuildError" in banner
    assert "xây chỉ mục BM25" in banner and "Thử xây lại" in banner and polling
    assert str(backend.index_dir) not in banner
    notice, _, _, results = h.search("Hà Nội", "bm25", None, 5)
    assert "thất bại" in notice and "chưa có dữ liệu" not in notice and "vr-error" in notice and not results
    with pytest.raises(app_module.IndexBuildFailed) as info:
        backend.search("Hà Nội", "bm25", 3)
    assert info.value.failure["error_type"] == "InjectedBuildError"
    assert isinstance(info.value, app_module.IndexNotReady)
    st = backend.public_status()
    assert st["build_failed"] and not st["ready"] and st["failure"]["stage"] == "bm25"
    assert st["failure"]["error_type"] == "InjectedBuildError" and "Admin" in st["failure"]["hint"]
    assert str(tmp_path) not in json.dumps(st, ensure_ascii=False) and "No space left" in st["failure"]["message"]
    # retry: refused without a token, starts with one
    assert "đăng nhập" in h.retry_build(None)[0]
    tok, _ = h.login(kit.ADMIN_PASSWORD, "10.0.0.20")
    assert tok
    msg, polling = h.retry_build(tok)
    assert polling and "Đang xây lại" in msg, msg
    assert backend.job.wait(60)
    snap = backend.job.snapshot()
    assert snap["error"] is None and snap["failure"] is None and snap["attempt"] == 2, snap["log"][-5:]
    assert backend.build_attempts == 2
    assert backend.search("Hà Nội", "hybrid", 3).hits[0].id == "hn"
    banner, polling = h.banner()
    assert "thất bại" not in banner and not polling
    assert not backend.public_status()["build_failed"]
    # nothing failed any more: a retry is refused with a message
    msg, polling = h.retry_build(tok)
    assert "Không có lần xây nào thất bại" in msg and not polling
    assert {g["status"] for g in backend.admin_generations()} == {"complete"}  # BM25-first, then the full one


class _GatedFailingEmbedder(kit.HashEmbedder):
    """The test kit's embedder (same model id), failing its first ``fail`` passage batches and blocking on
    ``gate`` (when given) before answering."""

    def __init__(self, fail: int = 0, gate: threading.Event | None = None) -> None:
        self.fail, self.gate = fail, gate

    def encode_passages(self, texts):
        if self.fail > 0:
            self.fail -= 1
            raise MemoryError("embedding batch did not fit")
        if self.gate is not None:
            assert self.gate.wait(60)
        return super().encode_passages(texts)


def test_next_start_resumes_a_failed_demo_build_and_keeps_serving(tmp_path, monkeypatch):
    """A demo build that fails after its BM25-only generation went live leaves an incomplete generation.
    The next start (a new Backend on the same home) retries it by itself: the BM25-only generation keeps
    serving meanwhile, the incomplete generation is resumed, and no incomplete generation is left."""
    from indexing import generations as gens

    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path / "home"))  # an empty embedding cache: the embedder runs

    corpus = kit.write_corpus(tmp_path / "corpus.jsonl")
    first = app_module.Backend("resume-demo", embedder=_GatedFailingEmbedder(fail=1), demo_corpus=corpus,
                               precomputed=None, reranker_status=lambda: {})
    assert first.ensure_index() and first.job.wait(60)
    failure = first.job.failure
    assert failure and failure["error_type"] == "MemoryError" and failure["kind"] == "demo"
    infos = gens.list_generations(first.index_dir)
    assert [g.status for g in infos] == ["complete", "incomplete"]
    serving, unfinished = infos[0].name, infos[1].name
    assert first.current_generation() == serving
    assert first.demo_build_reason() == "vectors"
    banner = app_module.banner_html(first)
    assert "thất bại" in banner and serving in banner and "vẫn dùng" in banner
    notice, *_ = app_module.Handlers(first).search("Đà Lạt", "bm25", None, 3)
    assert "thất bại" not in notice  # BM25 still answers from the serving generation
    # "restart": a new process would create a new Backend; its start retries the build by itself
    gate = threading.Event()
    second = app_module.Backend("resume-demo", embedder=_GatedFailingEmbedder(gate=gate), demo_corpus=corpus,
                                precomputed=None, reranker_status=lambda: {})
    assert second.ensure_index()
    time.sleep(0.3)
    assert second.job.running and second.current_generation() == serving
    notice, *_ = app_module.Handlers(second).search("Đà Lạt", "bm25", None, 3)
    assert "thất bại" not in notice and "đang được xây" not in notice
    gate.set()
    assert second.job.wait(60) and second.job.snapshot()["error"] is None
    infos = gens.list_generations(second.index_dir)
    assert all(g.status == "complete" for g in infos)
    assert second.current_generation() == unfinished  # resumed, not rebuilt from scratch
    assert second.demo_build_reason() is None and not second.ensure_index()
    assert second.admin_stats()["vectors"] == len(kit.CORPUS)


def test_start_cleans_up_incomplete_generations_of_a_complete_index(tmp_path):
    from indexing import generations as gens
    from indexing.build import build_generation
    from indexing.corpus import load_corpus

    corpus = kit.write_corpus(tmp_path / "corpus.jsonl")
    passages, _ = load_corpus(corpus)
    build_generation("tidy", passages, None, progress=False, operation="upload")
    backend = app_module.Backend("tidy", embedder=kit.HashEmbedder(), demo_corpus=corpus, precomputed=None,
                                 reranker_status=lambda: {})
    serving = backend.current_generation()
    leftover, _ = gens.new_generation(backend.index_dir)  # a crashed builder's generation
    assert not backend.ensure_index()
    assert [g.name for g in gens.list_generations(backend.index_dir)] == [serving]
    assert backend.current_generation() == serving


def test_failed_build_through_the_api_then_retry(tmp_path):
    """Through gradio_client: /status reports the failed build (no server paths), /search answers with the
    failure, /admin_retry_build needs the password and starts the build again; then searches work."""
    backend = kit.flaky_backend("flaky-api", kit.write_corpus(tmp_path / "corpus.jsonl"), failures=1)
    with kit.serve_backend(backend, before_serve=backend.ensure_index) as (url, _demo):
        c = Client(url, verbose=False, analytics_enabled=False)
        assert backend.job.wait(60)
        st = c.predict(api_name="/status")
        assert st["build_failed"] and not st["ready"] and not st["building"]
        assert st["failure"]["stage"] == "bm25" and st["failure"]["error_type"] == "InjectedBuildError"
        assert "thất bại" in st["message"] and st["failure"]["hint"]
        assert str(tmp_path) not in json.dumps(st, ensure_ascii=False)
        assert "/generations/" not in json.dumps(st, ensure_ascii=False)
        with pytest.raises(AppError) as info:
            c.predict("Hà Nội", "bm25", 3, api_name="/search")
        assert "thất bại" in str(info.value) and "chưa có dữ liệu" not in str(info.value)
        with pytest.raises(AppError, match="Sai mật khẩu"):
            c.predict("nope", api_name="/admin_retry_build")
        time.sleep(0.05)  # the test backend's back-off after a wrong password
        full = c.predict(kit.ADMIN_PASSWORD, api_name="/admin_status")
        assert full["failure"]["error_type"] == "InjectedBuildError" and str(backend.index_dir) in full["failure"]["message"]
        assert "Đang xây lại" in c.predict(kit.ADMIN_PASSWORD, api_name="/admin_retry_build")["started"]
        deadline = time.time() + 60
        while time.time() < deadline:
            st = c.predict(api_name="/status")
            if st["ready"] and not st["building"]:
                break
            time.sleep(0.3)
        assert st["ready"] and not st["build_failed"] and st["failure"] is None, st
        hits = c.predict("Hà Nội", "hybrid", 3, api_name="/search")
        assert hits[0]["id"] == "hn"
        with pytest.raises(AppError, match="Không thử lại được"):
            c.predict(kit.ADMIN_PASSWORD, api_name="/admin_retry_build")
