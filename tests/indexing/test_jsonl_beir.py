"""indexing.jsonl (the one JSONL reader/writer) and indexing.beir (the one BEIR / TREC run reader)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from indexing.beir import (
    QrelsError,
    beir_files,
    load_beir,
    read_qrels,
    read_queries,
    read_trec_run,
    write_trec_run,
)
from indexing.jsonl import JsonlError, JsonlProblem, open_text, read_jsonl, write_jsonl


def test_jsonl_round_trip_plain_and_gz(tmp_path: Path):
    rows = [{"_id": "a", "text": "Hà Nội"}, {"_id": "b", "n": [1, 2]}]
    for name in ("x.jsonl", "sub/x.jsonl.gz"):
        assert write_jsonl(tmp_path / name, rows) == 2
        assert list(read_jsonl(tmp_path / name)) == rows
    with gzip.open(tmp_path / "sub/x.jsonl.gz", "rt", encoding="utf-8") as f:  # really gzip, really UTF-8
        assert "Hà Nội" in f.read()
    assert "Hà Nội" in (tmp_path / "x.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False
    write_jsonl(tmp_path / "x.jsonl", [{"c": 3}], append=True)
    assert [r.get("c") for r in read_jsonl(tmp_path / "x.jsonl")] == [None, None, 3]
    with open_text(tmp_path / "x.jsonl") as f:
        assert f.readline().startswith('{"_id": "a"')


def test_read_jsonl_strict_names_file_and_line(tmp_path: Path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": 1}\n\n{"a": \n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(JsonlError) as err:
        list(read_jsonl(f))
    assert err.value.line == 3 and err.value.path == str(f)
    assert isinstance(err.value, ValueError) and str(err.value).startswith(f"{f}:3: malformed JSON")


def test_read_jsonl_skip_bad_reports_problems(tmp_path: Path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": 1}\n{"a": \n{"a": 3}\n{"cut', encoding="utf-8")
    problems: list[JsonlProblem] = []
    assert list(read_jsonl(f, skip_bad=True, problems=problems)) == [{"a": 1}, {"a": 3}]
    assert [p.line for p in problems] == [2, 4] and all(p.path == str(f) and p.reason for p in problems)
    assert list(read_jsonl(f, skip_bad=True)) == [{"a": 1}, {"a": 3}]  # no list: skipped all the same


def test_open_text_rejects_binary_modes(tmp_path: Path):
    with pytest.raises(ValueError):
        open_text(tmp_path / "x", "rb")


def _beir(tmp_path: Path, qrels: str) -> Path:
    d = tmp_path / "ds"
    (d / "qrels").mkdir(parents=True)
    write_jsonl(d / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "Một"}, {"_id": "d2", "text": "Hai"},
                                     {"_id": "d3", "text": "  "}])
    write_jsonl(d / "queries.jsonl", [{"_id": "q1", "text": "một"}, {"_id": "q2", "text": "hai"},
                                      {"_id": "q3", "text": "ba"}])
    (d / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return d


def test_read_qrels_strict(tmp_path: Path):
    d = _beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq2\td2\t2.0\nq2\td1\t0\n")
    assert read_qrels(d / "qrels/test.tsv") == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert read_qrels(d / "qrels/test.tsv", positive_only=True) == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert read_qrels(d / "qrels/test.tsv", id_prefix="q2") == {"q2": {"d2": 2, "d1": 0}}
    (d / "qrels/bad.tsv").write_text("qid\tcorpus-id\tscore\nq1\td1\n", encoding="utf-8")
    with pytest.raises(QrelsError) as err:
        read_qrels(d / "qrels/bad.tsv")
    assert err.value.line == 2 and isinstance(err.value, ValueError)


def test_read_qrels_lenient_missing_score_is_relevant(tmp_path: Path):
    f = tmp_path / "q.tsv"
    f.write_text("q1\td1\nq1\td2\t\nq2\nq3\td3\t0\n", encoding="utf-8")  # no header: the first line counts
    assert read_qrels(f, strict=False) == {"q1": {"d1": 1, "d2": 1}, "q3": {"d3": 0}}
    assert read_qrels(f, strict=False, positive_only=True) == {"q1": {"d1": 1, "d2": 1}}


def test_beir_files_and_load_beir(tmp_path: Path):
    d = _beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    assert beir_files(d)[2] == d / "qrels" / "test.tsv"
    with pytest.raises(FileNotFoundError, match="dev"):
        beir_files(d, "dev")
    assert read_queries(d / "queries.jsonl", {"q2"}) == {"q2": "hai"}
    ds = load_beir(d)
    assert list(ds.queries) == ["q1", "q2"] and ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert [(p.doc_id, p.title) for p in ds.passages] == [("d1", "T"), ("d2", "")]  # blank d3 left out
    extra = tmp_path / "extra.jsonl.gz"
    write_jsonl(extra, [{"_id": "d1", "text": "dup"}, {"_id": "x1", "text": "Ba"}, {"_id": "x2", "text": "Bốn"}])
    more = load_beir(d, extra_corpus=extra, extra_limit=2)
    assert more.extra == 1 and [p.doc_id for p in more.passages][-1] == "x1"
    assert more.corpus_sha256 != ds.corpus_sha256 == load_beir(d).corpus_sha256
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "một"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="judged queries have no text"):
        load_beir(d)


def test_trec_run_round_trip(tmp_path: Path):
    for name in ("r.trec", "r.trec.gz"):
        write_trec_run(tmp_path / name, {"q1": ["a", "b"], "q2": ["c"]}, "hybrid+viranker rerank")
        assert read_trec_run(tmp_path / name) == {"q1": {"a": 2.0, "b": 1.0}, "q2": {"c": 1.0}}
    assert (tmp_path / "r.trec").read_text(encoding="utf-8").splitlines()[0] == "q1 Q0 a 1 2 hybrid+viranker_rerank"


def test_read_jsonl_errors_replace_reads_bad_bytes(tmp_path: Path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(b'{"t": "caf\xe9"}\n{"t": "ok"}\n')
    with pytest.raises(UnicodeDecodeError):
        list(read_jsonl(f))
    assert [r["t"] for r in read_jsonl(f, errors="replace")] == ["caf\ufffd", "ok"]
