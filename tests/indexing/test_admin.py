"""Admin back end: throttled auth, safe uploads (size, types, zip-slip), validation, background jobs."""

from __future__ import annotations

import io
import json
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from indexing.admin import AdminAuth, BuildBusy, BuildJob, NothingToRetry
from indexing.uploads import (
    UploadError,
    extract_zip_safely,
    load_uploaded_corpus,
    read_doc_meta,
    safe_filename,
    save_uploads,
)


class Clock:
    """Manual clock for throttling tests."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------------------------------------- auth
def test_auth_disabled_without_password():
    auth = AdminAuth(None)
    assert not auth.enabled
    res = auth.check("1.2.3.4", "anything")
    assert not res.ok and "VIRANKER_ADMIN_PASSWORD" in res.message
    assert not AdminAuth("   ").enabled


def test_auth_ok_issues_token_and_resets():
    clock = Clock()
    auth = AdminAuth("s3cret", clock=clock)
    assert not auth.check("c", "wrong").ok
    clock.t += 2.0  # the default first back-off
    res = auth.check("c", "s3cret")
    assert res.ok and res.token and auth.valid_token(res.token)
    assert not auth.valid_token("forged") and not auth.valid_token(None)
    auth.revoke(res.token)
    assert not auth.valid_token(res.token)


def test_auth_exponential_backoff_is_capped_without_lockout():
    clock = Clock()
    auth = AdminAuth("pw", base_delay=1.0, max_delay=30.0, clock=clock)
    delays = []
    for _ in range(8):
        res = auth.check("ip1", "bad")
        assert not res.ok and res.reason == "wrong"
        delays.append(res.retry_after)
        # during the wait even the right password is refused without being checked
        blocked = auth.check("ip1", "pw")
        assert not blocked.ok and blocked.retry_after > 0 and blocked.reason == "wait"
        clock.t += res.retry_after
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # capped: never a long lockout
    assert auth.check("ip2", "pw").ok  # another client is unaffected
    assert auth.check("ip1", "pw").ok  # the right password at the next allowed moment


def test_default_policy_allows_at_most_5_checks_in_any_minute():
    clock = Clock()
    auth = AdminAuth("pw", clock=clock)
    checked = []
    for step in range(6000):  # an attacker trying every 0.1 s for 10 minutes
        clock.t = 1000.0 + step * 0.1
        if auth.check("attacker", "guess").reason == "wrong":
            checked.append(clock.t)
    worst = max(sum(1 for t in checked if s <= t < s + 60.0) for s in checked)
    assert worst == 5 and len(checked) <= 5 + 2 * 10  # ≤ 5 in any minute, 2 a minute at the cap
    assert auth.check("admin", "pw").ok


def test_failures_are_forgotten_and_keys_are_bounded():
    clock = Clock()
    auth = AdminAuth("pw", base_delay=1.0, forget_s=100.0, max_keys=3, clock=clock)
    for _ in range(4):
        clock.t += auth.check("a", "bad").retry_after
    clock.t += 100.0
    assert auth.check("a", "bad").retry_after == 1.0  # forgotten: back to the first delay
    for key in ("b", "c", "d", "e"):
        auth.check(key, "bad")
    assert len(auth._clients) == 3 and "a" not in auth._clients


def test_admin_password_file(tmp_path):
    from indexing.admin import PasswordFileError, admin_password

    f = tmp_path / "pw"
    f.write_text("from-file\n", encoding="utf-8")
    env = {"VIRANKER_ADMIN_PASSWORD_FILE": str(f), "VIRANKER_ADMIN_PASSWORD": "from-env"}
    assert admin_password("from-cli", env) == "from-file"
    assert admin_password("from-cli", {"VIRANKER_ADMIN_PASSWORD": "from-env"}) == "from-cli"
    assert admin_password(None, {"VIRANKER_ADMIN_PASSWORD": "from-env"}) == "from-env"
    assert admin_password(None, {}) is None
    with pytest.raises(PasswordFileError, match="cannot read"):
        admin_password(None, {"VIRANKER_ADMIN_PASSWORD_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(PasswordFileError, match="empty"):
        admin_password(None, {"VIRANKER_ADMIN_PASSWORD_FILE": str(tmp_path / "empty")})


def test_token_expires():
    clock = Clock()
    auth = AdminAuth("pw", token_ttl_s=10, clock=clock)
    tok = auth.check("c", "pw").token
    clock.t += 11
    assert not auth.valid_token(tok)


def test_authorize_prefers_token():
    auth = AdminAuth("pw")
    tok = auth.check("c", "pw").token
    assert auth.authorize("c", token=tok).ok
    assert not auth.authorize("c", token="nope", password="bad").ok


# ---------------------------------------------------------------------------------------------- uploads
def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt", "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_refused_and_nothing_written(tmp_path, name):
    z = _zip(tmp_path / "x.zip", {"ok.txt": b"hello world", name: b"pwned"})
    uploads = tmp_path / "uploads"
    with pytest.raises(UploadError, match="zip-slip"):
        save_uploads([z], uploads)
    assert not (tmp_path / "evil.txt").exists()
    assert list(uploads.iterdir()) == []  # the batch directory was removed


def test_zip_symlink_refused(tmp_path):
    z = _zip(tmp_path / "x.zip", {"ok.txt": b"hi"}, symlink="link.txt")
    with pytest.raises(UploadError, match="symbolic link"):
        save_uploads([z], tmp_path / "up")


def test_zip_bomb_limit_counts_uncompressed(tmp_path):
    z = _zip(tmp_path / "bomb.zip", {"big.txt": b"a" * 200_000})
    assert z.stat().st_size < 5_000
    with pytest.raises(UploadError, match="limit"):
        save_uploads([z], tmp_path / "up", max_bytes=100_000)


def test_extract_over_limit_leaves_nothing(tmp_path):
    z = _zip(tmp_path / "x.zip", {"a.txt": b"b" * 5_000, "b.txt": b"c" * 50_000})
    with pytest.raises(UploadError, match="limit"):
        extract_zip_safely(z, tmp_path / "out", max_bytes=10_000)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_zip_extracts_supported_files(tmp_path):
    corpus = json.dumps({"_id": "d1", "title": "T", "text": "Hà Nội là thủ đô"}, ensure_ascii=False).encode()
    z = _zip(
        tmp_path / "c.zip",
        {"data/c.jsonl": corpus, "notes/a.md": b"# Tieu de\nnoi dung", "img.png": b"\x89PNG", "__MACOSX/x.txt": b"x"},
    )
    batch = save_uploads([z], tmp_path / "up")
    assert [p.name for p in batch.structured] == ["c.jsonl"]
    assert [p.relative_to(batch.docs_dir).as_posix() for p in batch.texts] == ["notes/a.md"]
    assert batch.skipped == ["c.zip:img.png"]
    for p in batch.structured + batch.texts:
        assert p.resolve().is_relative_to(batch.dir.resolve())


def test_upload_size_and_type_limits(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(UploadError, match="limit"):
        save_uploads([big], tmp_path / "up", max_bytes=1000)
    exe = tmp_path / "run.exe"
    exe.write_bytes(b"MZ")
    with pytest.raises(UploadError, match="unsupported"):
        save_uploads([exe], tmp_path / "up")
    with pytest.raises(UploadError, match="no file"):
        save_uploads([], tmp_path / "up")


def test_upload_names_are_sanitised(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("xin chào Việt Nam", encoding="utf-8")
    batch = save_uploads([src], tmp_path / "up", names=["../../etc/passwd.txt"])
    assert batch.texts[0].parent == batch.docs_dir and batch.texts[0].name == "passwd.txt"
    assert safe_filename("a b/c d.md") == "c_d.md"
    assert safe_filename("..") == "upload"


def test_load_uploaded_corpus_reports_problems(tmp_path):
    good = tmp_path / "corpus.jsonl"
    lines = [
        {"_id": "n1", "title": "Mới", "text": "Tài liệu mới về sông Hồng"},
        {"_id": "old", "title": "Cũ", "text": "đã có trong chỉ mục"},
        {"_id": "n2", "title": "Rỗng", "text": ""},
    ]
    good.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n{bad json\n", encoding="utf-8")
    note = tmp_path / "ghi-chu.md"
    note.write_text("# Ghi chú\nNội dung ghi chú.", encoding="utf-8")
    batch = save_uploads([good, note], tmp_path / "up")
    passages, report = load_uploaded_corpus(batch, existing_ids={"old"})
    ids = sorted(p.doc_id for p in passages)
    assert ids == ["ghi-chu.md", "n1"]
    reasons = " ".join(p.reason for p in report.problems)
    assert "duplicate" in reasons and "empty" in reasons and "malformed" in reasons


def test_read_doc_meta(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(
        '{"_id": "a", "text": "x", "source": "Wikipedia", "url": "https://vi.wikipedia.org/wiki/A"}\n'
        '{"_id": "b", "text": "y"}\nnot json\n',
        encoding="utf-8",
    )
    assert read_doc_meta([f, tmp_path / "missing.jsonl"]) == {
        "a": {"source": "Wikipedia", "url": "https://vi.wikipedia.org/wiki/A"}
    }


# ------------------------------------------------------------------------------------------- build jobs
def test_build_job_progress_result_and_single_flight():
    job = BuildJob()
    gate = threading.Event()

    def work(progress):
        progress("embed", 1, 2)
        gate.wait(5)
        progress("embed", 2, 2)
        return {"generation": "g1"}

    job.start("build", work)
    with pytest.raises(RuntimeError, match="already running"):
        job.start("second", lambda p: None)
    assert job.running
    gate.set()
    assert job.wait(5)
    snap = job.snapshot()
    assert not snap["running"] and snap["result"] == {"generation": "g1"} and snap["error"] is None
    assert any("embed 1/2" in line for line in snap["log"])


def test_build_job_failure_is_reported():
    job = BuildJob()

    def boom(progress):
        raise ValueError("bad corpus")

    job.start("x", boom)
    job.wait(5)
    snap = job.snapshot()
    assert snap["stage"] == "failed" and "bad corpus" in snap["error"]
    job.start("again", lambda p: 1)  # a failed job does not block the next one
    job.wait(5)
    assert job.snapshot()["result"] == 1


def test_build_job_failure_is_structured_and_retry_runs_it_again():
    """A failure records the stage it happened in, the error class and message, and the job's kind; retry()
    runs the same function again (attempt 2) and clears the failure when it succeeds."""
    job = BuildJob()
    calls: list[int] = []
    gate = threading.Event()

    def flaky(progress):
        calls.append(1)
        progress("vectors", 3, 10)
        if len(calls) == 1:
            raise MemoryError("batch too large")
        gate.wait(5)
        return {"generation": "g2"}

    with pytest.raises(NothingToRetry):
        job.retry()  # nothing ran yet
    job.start("demo build", flaky, kind="demo")
    assert job.wait(5)
    failure = job.failure
    assert failure["stage"] == "vectors" and failure["error_type"] == "MemoryError"
    assert failure["message"] == "batch too large" and failure["kind"] == "demo" and failure["attempt"] == 1
    snap = job.snapshot()
    assert snap["stage"] == "failed" and snap["error"] == "MemoryError: batch too large" and snap["kind"] == "demo"
    assert any("FAILED: MemoryError" in line and "'vectors'" in line for line in snap["log"])
    assert job.retry() == "demo build"
    assert job.failure is None  # a running retry clears the shown failure
    with pytest.raises(BuildBusy):
        job.retry()
    with pytest.raises(BuildBusy):  # BuildBusy is a RuntimeError, as before
        job.start("other", lambda p: None)
    assert issubclass(BuildBusy, RuntimeError)
    gate.set()
    assert job.wait(5)
    snap = job.snapshot()
    assert snap["result"] == {"generation": "g2"} and snap["failure"] is None and snap["attempt"] == 2
    assert len(calls) == 2
    with pytest.raises(NothingToRetry):
        job.retry()
    job.start("something else", lambda p: 1)
    assert job.wait(5) and job.snapshot()["attempt"] == 1


def test_build_job_echo(capsys):
    lines: list[str] = []
    job = BuildJob(echo=lines.append)
    job.start("e", lambda p: p("bm25", message="indexing"))
    job.wait(5)
    assert any("bm25: indexing" in line for line in lines)


def test_zip_in_memory_bad_file(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(io.BytesIO(b"not a zip").getvalue())
    with pytest.raises(UploadError, match="not a readable ZIP"):
        save_uploads([bad], tmp_path / "up")


def test_both_zip_readers_share_the_member_checks_and_the_capped_copy(tmp_path):
    import indexing.admin
    from indexing.uploads import extract_beir_zip

    assert indexing.admin.extract_beir_zip is extract_beir_zip  # the old import path still works
    beir = {"corpus.jsonl": b'{"_id": "d", "text": "x"}\n', "queries.jsonl": b'{"_id": "q", "text": "x"}\n',
            "qrels/test.tsv": b"q\td\t1\n"}
    out = extract_beir_zip(_zip(tmp_path / "ok.zip", beir), tmp_path / "ok")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(beir)
    with pytest.raises(UploadError, match="symbolic link"):
        extract_beir_zip(_zip(tmp_path / "l.zip", beir, symlink="qrels/dev.tsv"), tmp_path / "l")
    with pytest.raises(UploadError, match="zip-slip"):
        extract_beir_zip(_zip(tmp_path / "s.zip", {**beir, "../x.tsv": b""}), tmp_path / "s")
    big = {**beir, "corpus.jsonl": b'{"_id": "d", "text": "' + b"a" * 50_000 + b'"}\n'}
    with pytest.raises(UploadError, match="limit"):
        extract_beir_zip(_zip(tmp_path / "b.zip", big), tmp_path / "b", max_bytes=10_000)
