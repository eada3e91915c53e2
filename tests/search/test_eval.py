"""Metrics on hand-checked examples and the `python -m search.eval` contract on a tiny BEIR directory."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest

from search import metrics as metrics_module
from search.eval import RESULT_KEYS, load_beir, main, read_trec_run, write_trec_run
from search.metrics import evaluate, evaluate_per_query, parse_metric, truncate_run

# ------------------------------------------------------------------------------------------------ metrics
QRELS = {"q1": {"d1": 1}, "q2": {"d5": 1, "d6": 1}, "q3": {"d9": 1}, "q4": {"dx": 0}}
RUN = {
    "q1": {"d2": 3.0, "d1": 2.0, "d3": 1.0},  # relevant at rank 2
    "q2": {"d5": 5.0, "d7": 4.0, "d8": 3.0, "d9": 2.0, "d6": 1.0},  # relevant at ranks 1 and 5
    # q3 is judged but missing from the run: scores 0; q4 has no relevant document: not counted
    "q5": {"a": 1.0},  # not judged: ignored
}


def test_metrics_hand_checked():
    per_query = evaluate_per_query(QRELS, RUN)
    assert set(per_query) == {"q1", "q2", "q3"}
    q1, q2, q3 = per_query["q1"], per_query["q2"], per_query["q3"]
    assert q1["mrr@3"] == q1["mrr@10"] == 0.5
    assert q1["ndcg@3"] == pytest.approx(1 / math.log2(3))
    assert q2["mrr@3"] == 1.0
    idcg = 1 + 1 / math.log2(3)
    assert q2["ndcg@3"] == pytest.approx(1 / idcg)
    assert q2["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6)) / idcg)
    assert q1["recall@100"] == q2["recall@100"] == 1.0
    assert all(v == 0.0 for v in q3.values())
    means = evaluate(QRELS, RUN)
    assert means["queries"] == 3
    assert means["mrr@10"] == pytest.approx(0.5)
    assert means["recall@100"] == pytest.approx(2 / 3)
    assert means["ndcg@10"] == pytest.approx((1 / math.log2(3) + (1 + 1 / math.log2(6)) / idcg) / 3)


def test_mrr_at_k_truncates_the_run():
    qrels = {"q": {"d4": 1}}
    run = {"q": {"d1": 4.0, "d2": 3.0, "d3": 2.0, "d4": 1.0}}
    m = evaluate(qrels, run, ["mrr@3", "mrr@10", "recall@3"])
    assert m["mrr@3"] == 0.0 and m["mrr@10"] == 0.25 and m["recall@3"] == 0.0


def test_truncate_run_orders_like_trec_eval():
    assert list(truncate_run({"q": {"a": 1.0, "b": 1.0, "c": 2.0}}, 2)["q"]) == ["c", "b"]


def test_parse_metric():
    assert parse_metric("nDCG@10") == ("ndcg", 10)
    for bad in ["map", "ndcg@", "mrr@0", "p@5"]:
        with pytest.raises(ValueError):
            parse_metric(bad)


def test_metrics_doctest():
    assert doctest.testmod(metrics_module).failed == 0


def test_trec_run_roundtrip(tmp_path: Path):
    write_trec_run(tmp_path / "r.trec", {"q1": ["a", "b"], "q2": ["c"]}, "hybrid+viranker")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 2 hybrid+viranker"
    assert read_trec_run(tmp_path / "r.trec") == {"q1": {"a": 2.0, "b": 1.0}, "q2": {"c": 1.0}}


# -------------------------------------------------------------------------------------------------- CLI
DOCS = [
    ("d1", "Hộ chiếu", "Công dân làm thủ tục cấp lại hộ chiếu tại cơ quan quản lý xuất nhập cảnh."),
    ("d2", "Hà Nội", "Hà Nội là thủ đô của Việt Nam, có nhiều hồ như hồ Gươm và hồ Tây."),
    ("d3", "Học phí", "Sinh viên phải đóng học phí trước khi đăng ký học phần của học kỳ mới."),
    ("d4", "Chợ", "Người dân đi chợ mua cá, mua thịt và rau xanh mỗi buổi sáng."),
    ("d5", "Huế", "Huế là cố đô của Việt Nam với kinh thành và các lăng tẩm."),
]
QUERIES = [
    ("q1", "cấp lại hộ chiếu ở đâu?", "d1"),
    ("q2", "Thủ đô của Việt Nam là gì?", "d2"),
    ("q3", "Khi nào sinh viên đóng học phí?", "d3"),
    ("q4", "Cố đô của Việt Nam", "d5"),
    ("q-train", "đi chợ mua gì", "d4"),
]


@pytest.fixture()
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-beir"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for pid, title, text in DOCS:
            f.write(json.dumps({"_id": pid, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text, _ in QUERIES:
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with open(root / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, _, pid in QUERIES[:4]:
            f.write(f"{qid}\t{pid}\t1\n")
    with open(root / "qrels" / "train.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\nq-train\td4\t1\n")
    extra = tmp_path / "extra.jsonl"
    with open(extra, "w", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps({"_id": f"x{i}", "title": "", "text": f"Đoạn văn gây nhiễu số {i} về Việt Nam."},
                               ensure_ascii=False) + "\n")
        f.write(json.dumps({"_id": "d1", "title": "", "text": "id trùng với kho chính: bỏ qua"}) + "\n")
    return root


def _last_json(out: str) -> dict:
    last = out.strip().splitlines()[-1]
    return json.loads(last)


def test_load_beir(beir_dir: Path):
    ds = load_beir(beir_dir, "test", beir_dir.parent / "extra.jsonl", extra_limit=3)
    assert list(ds.queries) == ["q1", "q2", "q3", "q4"] and ds.qrels["q2"] == {"d2": 1}
    assert [p.id for p in ds.passages] == ["d1", "d2", "d3", "d4", "d5", "x0", "x1", "x2"] and ds.extra == 3
    assert ds.corpus_sha256 != load_beir(beir_dir, "test").corpus_sha256
    with pytest.raises(FileNotFoundError, match="dev"):
        load_beir(beir_dir, "dev")


def test_cli_bm25_end_to_end(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cache, run_file = tmp_path / "cache", tmp_path / "runs" / "bm25.trec"
    rc = main([str(beir_dir), "--pipeline", "bm25", "--json", "--index-cache", str(cache), "--run-out",
               str(run_file), "--per-query-out", str(tmp_path / "pq.json"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0
    result = _last_json(captured.out)
    assert tuple(result) == RESULT_KEYS
    assert result["pipeline"] == "bm25" and result["queries"] == 4
    assert result["mrr@10"] == 1.0 and result["recall@100"] == 1.0
    run = read_trec_run(run_file)
    assert set(run) == {"q1", "q2", "q3", "q4"} and max(run["q1"], key=run["q1"].get) == "d1"
    assert set(json.loads((tmp_path / "pq.json").read_text())) == {"q1", "q2", "q3", "q4"}
    assert "indexing 5 passages" in captured.err

    # second run: the cached index is reused; stripped queries still find their passages
    rc = main([str(beir_dir), "--pipeline", "bm25", "--json", "--index-cache", str(cache), "--no-progress",
               "--strip-query-diacritics", "--report-out", str(tmp_path / "report.json")])
    captured = capsys.readouterr()
    assert rc == 0 and "indexing" not in captured.err
    assert _last_json(captured.out)["mrr@10"] >= 0.75
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["levels"] == {"none": 4} and report["strip_query_diacritics"] is True
    assert "bm25" in report["latency_ms"] and report["searched"]["q1"].startswith("cấp lại hộ chiếu")


def test_cli_train_split_and_distractors(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc = main([str(beir_dir), "--pipeline", "bm25", "--split", "train", "--json", "--index-cache",
               str(tmp_path / "cache"), "--extra-corpus", str(beir_dir.parent / "extra.jsonl"), "--extra-limit", "4",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0 and "indexing 9 passages" in captured.err and "4 distractors" in captured.err
    assert _last_json(captured.out)["queries"] == 1


@pytest.mark.slow
def test_cli_dense_and_hybrid_with_e5(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    for pipeline in ("dense", "hybrid"):
        rc = main([str(beir_dir), "--pipeline", pipeline, "--json", "--index-cache", str(cache), "--no-progress"])
        result = _last_json(capsys.readouterr().out)
        assert rc == 0 and result["pipeline"] == pipeline and result["queries"] == 4
        assert result["mrr@10"] >= 0.75 and result["recall@100"] == 1.0
    # a BM25 run reuses the index with vectors instead of building another one
    assert main([str(beir_dir), "--pipeline", "bm25", "--json", "--index-cache", str(cache), "--no-progress"]) == 0
    assert "indexing" not in capsys.readouterr().err
    assert len(list((cache / "indexes").iterdir())) == 1
    # --pipeline default: the app's rule (search.pipeline.default_pipeline_for), by name in the JSON
    from reranker import backends

    for recommended, want in ((False, "hybrid"), (True, "hybrid+viranker")):
        monkeypatch.setattr(backends, "recommended_by_default", lambda name, r=recommended: r and name == "viranker")
        rc = main([str(beir_dir), "--pipeline", "default", "--json", "--index-cache", str(cache), "--no-progress"])
        result = _last_json(capsys.readouterr().out)
        assert rc == 0 and result["pipeline"] == want and result["queries"] == 4


def test_cli_errors(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch):
    assert main([str(tmp_path / "nope"), "--pipeline", "bm25", "--json"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([str(beir_dir), "--pipeline", "sparse"]) == 2
    assert "unknown pipeline" in capsys.readouterr().err
    monkeypatch.setenv("VIRANKER_MODEL", str(tmp_path / "no-model"))
    assert main([str(beir_dir), "--pipeline", "bm25+viranker", "--index-cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "viranker" in err and "VIRANKER_MODEL" in err
    assert main([str(beir_dir), "--pipeline", "bm25", "--extra-limit", "3"]) == 2


def test_run_eval_with_a_fake_reranker(beir_dir: Path, tmp_path: Path):
    import numpy as np

    from reranker.backends import RerankScores
    from search.eval import open_eval_index, run_eval
    from search.pipeline import Pipeline

    class Reverse:
        name = "reverse"

        def rerank(self, query, passages):
            return RerankScores.from_raw(np.arange(len(passages), dtype=np.float32))  # last first

    ds = load_beir(beir_dir, "test")
    with open_eval_index(ds, None, tmp_path / "cache", progress=False) as snap:
        pipe = Pipeline.from_snapshot(snap, rerankers={"reverse": Reverse()}, rerank_top=5)
        plain = run_eval(ds, "bm25", pipe, progress=False)
        reranked = run_eval(ds, "bm25+reverse", pipe, progress=False)
    assert plain.metrics["mrr@10"] == 1.0
    assert reranked.metrics["mrr@10"] < 1.0 and reranked.metrics["pipeline"] == "bm25+reverse"
    for qid, docs in plain.run.items():
        k = min(5, len(docs))
        assert reranked.run[qid][:k] == list(reversed(docs[:k]))
    assert "rerank" in reranked.timings_ms and reranked.timings_ms["total"]["p95"] >= reranked.timings_ms["total"]["p50"]


def test_run_out_keeps_the_pipelines_own_scores(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``--run-out`` writes each document's real BM25 score (its best passage's), not n+1-rank (issue 18)."""
    from search.eval import open_eval_index
    from search.pipeline import Pipeline

    cache, run_file = tmp_path / "cache", tmp_path / "bm25.trec"
    assert main([str(beir_dir), "--pipeline", "bm25", "--json", "--index-cache", str(cache), "--run-out",
                 str(run_file), "--no-progress"]) == 0
    capsys.readouterr()
    written = read_trec_run(run_file)
    ds = load_beir(beir_dir, "test")
    with open_eval_index(ds, None, cache, progress=False) as snap:
        pipe = Pipeline.from_snapshot(snap)
        for qid, text in ds.queries.items():
            hits = pipe.search(text, "bm25", 100).hits
            want: dict[str, float] = {}
            for h in hits:
                want.setdefault(h.doc_id, float(h.score))
            assert written[qid] == pytest.approx(want, rel=1e-12), qid
    lines = run_file.read_text().splitlines()
    ranks = [int(line.split()[3]) for line in lines if line.startswith("q1 ")]
    scores = [float(line.split()[4]) for line in lines if line.startswith("q1 ")]
    assert ranks == list(range(1, len(ranks) + 1)) and scores == sorted(scores, reverse=True)
    assert any(s != int(s) for s in scores)  # BM25 scores, not the rank-derived integers of old


def test_trec_run_with_scores(tmp_path: Path):
    write_trec_run(tmp_path / "r.trec", {"q1": ["a", "b"]}, "bm25", {"q1": [12.5, 0.1 + 0.2]})
    assert (tmp_path / "r.trec").read_text().splitlines() == ["q1 Q0 a 1 12.5 bm25", "q1 Q0 b 2 0.30000000000000004 bm25"]
    with pytest.raises(ValueError, match="1 scores for 2"):
        write_trec_run(tmp_path / "bad.trec", {"q1": ["a", "b"]}, "bm25", {"q1": [1.0]})
