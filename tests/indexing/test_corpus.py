"""Ingestion: formats, normalization, splitting, and every kind of bad input reported with file and line."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from indexing.corpus import (
    Document,
    IngestError,
    Passage,
    detect_format,
    iter_passages,
    load_corpus,
    read_passages,
    split_document,
    split_words,
    write_passages,
)


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


# ------------------------------------------------------------------------------------------------ formats
def test_beir_jsonl_is_read_and_normalized(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Hoà  bình", "text": "Thuý   Kiều\u200b ở Hà Nội."},
            {"_id": "d2", "title": None, "text": "Văn bản thứ hai"},
        ],
    )
    passages, report = load_corpus(f)
    assert report.ok and report.documents == 2 and report.passages == 2
    assert passages[0] == Passage("d1", "d1", "Hòa bình", "Thúy Kiều ở Hà Nội.", "corpus.jsonl")
    assert passages[1].title == ""
    assert "2 documents -> 2 passages" in report.summary()


def test_generic_jsonl_with_custom_fields_and_numeric_ids(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "x.ndjson", [{"key": 7, "heading": "H", "body": "nội dung"}])
    passages, report = load_corpus(f, id_field="key", title_field="heading", text_field="body")
    assert report.ok
    assert (passages[0].id, passages[0].title, passages[0].text) == ("7", "H", "nội dung")


def test_id_field_autodetects_id_and_auto_id(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "a.jsonl", [{"id": "x", "text": "một"}])
    assert load_corpus(f)[0][0].id == "x"
    g = _jsonl(tmp_path / "b.jsonl", [{"text": "một"}, {"text": "hai"}])
    passages, report = load_corpus(g, auto_id=True)
    assert [p.id for p in passages] == ["b:1", "b:2"] and report.ok


def test_json_array_file(tmp_path: Path) -> None:
    f = tmp_path / "docs.json"
    f.write_text(
        '[\n  {"id": "a", "text": "một"},\n  {"id": "b"},\n  {"id": "c", "text": "ba"}\n]\n', encoding="utf-8"
    )
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a", "c"]
    assert [(p.line, p.reason.split(":")[0]) for p in report.problems] == [(3, "missing text")]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "a", "text": "x"},\n {"id": }]', encoding="utf-8")
    with pytest.raises(IngestError) as err:
        load_corpus(bad)
    assert err.value.line == 2 and "malformed JSON" in str(err.value)


def test_gzipped_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"_id": "g", "text": "nén gzip"}) + "\n")
    assert detect_format(f) == "jsonl"
    assert load_corpus(f)[0][0].text == "nén gzip"


def test_malformed_json_line_is_reported_with_its_number(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "bad.jsonl",
        [{"_id": "a", "text": "một"}, '{"_id": "b", "text": ', "[1, 2]", {"_id": "c", "text": "ba"}],
    )
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a", "c"]
    assert [(p.file, p.line) for p in report.problems] == [(str(f), 2), (str(f), 3)]
    assert report.problems[0].reason.startswith("malformed JSON")
    assert f"{f}:2: malformed JSON" in report.summary()
    with pytest.raises(IngestError) as err:
        load_corpus(f, strict=True)
    assert err.value.line == 2 and err.value.file == str(f)


def test_missing_id_and_text_fields(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "m.jsonl",
        [{"_id": "a", "body": "x"}, {"title": "t", "text": "y"}, {"_id": "c", "text": "z"}],
    )
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["c"]
    reasons = [(p.line, p.reason.split(":")[0]) for p in report.problems]
    assert reasons == [(1, "missing text"), (2, "missing id")]


def test_csv_with_configurable_columns_and_tsv(tmp_path: Path) -> None:
    f = tmp_path / "docs.csv"
    f.write_text('ma,tieu_de,noi_dung\n1,Tựa,"Dòng một\nvà dòng hai"\n2,,Ba\n', encoding="utf-8")
    passages, report = load_corpus(f, id_field="ma", title_field="tieu_de", text_field="noi_dung")
    assert report.ok and [(p.id, p.title, p.text) for p in passages] == [
        ("1", "Tựa", "Dòng một và dòng hai"),
        ("2", "", "Ba"),
    ]
    t = tmp_path / "docs.tsv"
    t.write_text("id\ttext\nx\tmột hai\n", encoding="utf-8")
    assert load_corpus(t)[0][0].id == "x"


def test_csv_missing_columns_is_fatal_and_names_present_columns(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("doc,body\n1,x\n", encoding="utf-8")
    with pytest.raises(IngestError) as err:
        load_corpus(f)
    msg = str(err.value)
    assert "missing required column" in msg and "['doc', 'body']" in msg and str(f) in msg


def test_csv_bad_row_is_reported_with_record_line(tmp_path: Path) -> None:
    f = tmp_path / "rows.csv"
    f.write_bytes("id,text\n1,một\n2,caf\xe9 latin\n3,ba\n".encode().replace(b"\xc3\xa9", b"\xe9"))
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["1", "3"]
    assert report.problems[0].line == 3 and "not valid UTF-8" in report.problems[0].reason


def test_latin1_files_are_reported_not_guessed(tmp_path: Path) -> None:
    f = tmp_path / "latin.jsonl"
    f.write_bytes(
        json.dumps({"_id": "a", "text": "ok"}).encode()
        + b"\n"
        + '{"_id": "b", "text": "café"}'.encode("latin-1")
        + b"\n"
    )
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a"]
    p = report.problems[0]
    assert (p.file, p.line) == (str(f), 2) and "bad encoding" in p.reason and "0xe9" in p.reason
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "l.txt").write_bytes("dòng đầu\ncafé".encode("latin-1", errors="replace"))
    _, report = load_corpus(folder)
    assert report.problems and report.problems[0].file.endswith("l.txt") and report.problems[0].line == 1


def test_duplicate_ids_and_empty_texts_are_reported(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [{"_id": "x", "text": "một"}, {"_id": "e", "text": "   \u200b "}])
    b = _jsonl(tmp_path / "b.jsonl", [{"_id": "x", "text": "hai"}, {"_id": "y", "text": "ba"}])
    passages, report = load_corpus([a, b])
    assert [p.id for p in passages] == ["x", "y"]
    by_kind = report.counts_by_reason()
    assert by_kind == {"empty text": 1, "duplicate id": 1}
    dup = next(p for p in report.problems if p.reason.startswith("duplicate"))
    assert dup.file == str(b) and dup.line == 1 and f"{a}:1" in dup.reason
    _, report = load_corpus(b, existing_ids=["y"])
    assert report.counts_by_reason() == {"duplicate id": 1}


def test_folder_ids_titles_and_skipped_files(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# Tiêu đề A\n\nNội dung A.\n", encoding="utf-8")
    (root / "sub" / "b.txt").write_text("Nội dung B.", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".hidden.txt").write_text("x", encoding="utf-8")
    passages, report = load_corpus(root)
    assert [(p.id, p.title, p.text) for p in passages] == [
        ("a.md", "Tiêu đề A", "Nội dung A."),
        ("sub/b.txt", "b", "Nội dung B."),
    ]
    assert report.skipped_files == [str(root / "image.png")]
    assert "Ignored 1 file(s)" in report.summary()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_of_text_files(tmp_path: Path) -> None:
    z = _zip(tmp_path / "kb.zip", {"docs/a.md": "# Tựa\nchữ".encode(), "b.txt": b"hello", "x.bin": b"\0"})
    passages, report = load_corpus(z)
    assert {p.id for p in passages} == {"docs/a.md", "b.txt"} and report.skipped_files == ["kb.zip:x.bin"]
    assert next(p for p in passages if p.id == "docs/a.md").source == "kb.zip:docs/a.md"


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused(tmp_path: Path, bad: str) -> None:
    z = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", bad: b"pwned"})
    with pytest.raises(IngestError, match="zip-slip|unsafe member"):
        load_corpus(z)
    assert not (tmp_path / "evil.txt").exists()


def test_zip_size_limit(tmp_path: Path) -> None:
    z = _zip(tmp_path / "big.zip", {"a.txt": b"x " * 5000, "b.txt": b"y " * 5000})
    with pytest.raises(IngestError, match="too large"):
        load_corpus(z, max_zip_bytes=15_000)
    assert load_corpus(z, max_zip_bytes=25_000)[1].documents == 2


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(IngestError, match="unknown format"):
        load_corpus(tmp_path / "x.pdf")


# ---------------------------------------------------------------------------------------------- splitting
def test_short_document_keeps_its_id() -> None:
    [p] = split_document(Document("d", "T", "một hai ba", "s"))
    assert p.id == "d" and p.doc_id == "d"


def test_long_document_is_split_with_overlap_on_sentence_boundaries() -> None:
    text = " ".join(f"Câu thứ {i} có sáu chữ." for i in range(300))  # 1,800 words
    parts = split_document(Document("doc", "Tựa", text, "s"), max_words=250, overlap=30)
    assert [p.id for p in parts] == [f"doc#p{i}" for i in range(1, len(parts) + 1)]
    assert all(p.doc_id == "doc" and p.title == "Tựa" for p in parts)
    sizes = [len(p.text.split()) for p in parts]
    assert all(200 <= s <= 250 for s in sizes[:-1]) and sizes[-1] <= 300
    for a, b in zip(parts, parts[1:], strict=False):
        assert b.text.startswith("Câu")  # starts on a sentence boundary
        first_sentence = b.text.split(".")[0] + "."
        assert first_sentence in a.text  # the overlap repeats the previous passage's last sentence(s)
    covered = " ".join(p.text for p in parts)
    assert all(f"Câu thứ {i} " in covered for i in range(300))


def test_split_without_punctuation_uses_word_windows_with_overlap() -> None:
    words = [f"w{i}" for i in range(1000)]
    chunks = split_words(" ".join(words), max_words=250, overlap=30)
    assert all(len(c.split()) <= 250 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.split()[-30:] == b.split()[:30]
    assert set(" ".join(chunks).split()) == set(words)
    assert split_words(" ".join(words), max_words=0) == [" ".join(words)]


def test_short_tail_is_merged() -> None:
    chunks = split_words(" ".join(f"w{i}" for i in range(260)), max_words=250, overlap=30)
    assert len(chunks) == 1


def test_max_words_from_load_corpus(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "l.jsonl", [{"_id": "L", "text": " ".join(["chữ"] * 700)}])
    passages, report = load_corpus(f, max_words=200, overlap=20)
    assert len(passages) > 1 and report.split_documents == 1 and report.passages == len(passages)


# ------------------------------------------------------------------------------------------ passages.jsonl
def test_passages_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    ps = [Passage("a#p1", "a", "T", "văn bản", "f.jsonl"), Passage("b", "b", "", "x", "")]
    f = tmp_path / "passages.jsonl"
    assert write_passages(f, ps) == 2
    assert read_passages(f) == ps
    f.write_text(f.read_text(encoding="utf-8") + '{"id": 1}\n', encoding="utf-8")
    with pytest.raises(IngestError) as err:
        list(iter_passages(f))
    assert err.value.line == 3


def test_one_utf8_decoder_reports_line_and_column(tmp_path):
    from indexing.passages import Utf8Error, decode_utf8

    assert decode_utf8(b"\xef\xbb\xbfXin ch\xc3\xa0o") == "Xin chào"
    assert decode_utf8(b"\xef\xbb\xbfa", strip_bom=False) == "\ufeffa"
    with pytest.raises(Utf8Error) as err:
        decode_utf8(b"ab\ncd\xe9f\n")
    assert err.value.line == 2 and "0xe9 at column 3" in err.value.reason
    # a JSON-array file: the column is counted within the bad line (it used to be the offset in the file)
    f = tmp_path / "arr.json"
    f.write_bytes(b'[\n{"_id": "a", "text": "ok"},\n{"_id": "b", "text": "caf\xe9"}\n]\n')
    with pytest.raises(IngestError) as ierr:
        load_corpus(f)
    assert ierr.value.line == 3 and "0xe9 at column 26" in ierr.value.reason
