"""``python -m indexing``: smoke test through subprocesses (build, search, add, delete, list, switch, cleanup)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRANKER_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("QDRANT_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "indexing", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    f = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "hn", "title": "Hà Nội", "text": "Hà Nội là thủ đô của Việt Nam."},
        {"_id": "hue", "title": "Huế", "text": "Huế là cố đô của triều Nguyễn."},
        {"_id": "long", "title": "Dài", "text": " ".join(f"Câu số {i} nói về sông Hồng." for i in range(80))},
    ]
    f.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{broken\n", encoding="utf-8"
    )
    return f


def _main(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple:
    """In-process run (the subprocess path is covered by build/list below; this keeps the test fast)."""
    from indexing.__main__ import main

    monkeypatch.setenv("VIRANKER_HOME", str(home))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_cli_lifecycle(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "home"
    out = _run(home, "build", "--index", "kb", str(corpus), "--max-words", "120", "-q").stdout
    assert "3 documents" in out and f"{corpus}:4: malformed JSON" in out and "Skipped 1 record" in out
    assert "passages" in out and "embedder none" in out

    code, out, _ = _main(home, monkeypatch, capsys, "search", "--index", "kb", "thu do viet nam", "-k", "1")
    assert code == 0 and "hn" in out and "Hà Nội" in out

    extra = tmp_path / "more.csv"
    extra.write_text("id,title,text\ndn,Đà Nẵng,Đà Nẵng có cầu Rồng.\nhn,Trùng,trùng id\n", encoding="utf-8")
    code, out, _ = _main(home, monkeypatch, capsys, "add", "--index", "kb", str(extra), "-q")
    assert code == 0 and "duplicate id" in out and '"added": 1' in out

    code, out, _ = _main(home, monkeypatch, capsys, "delete", "--index", "kb", "hue", "-q")
    assert code == 0 and '"deleted": 1' in out
    code, _, err = _main(home, monkeypatch, capsys, "delete", "--index", "kb", "no-such-id", "-q")
    assert code == 1 and "no-such-id" in err and "--missing-ok" in err

    listing = json.loads(_run(home, "list", "--index", "kb", "--json").stdout)
    assert [g["status"] for g in listing] == ["complete"] * 3 and listing[-1]["current"]
    code, out, _ = _main(home, monkeypatch, capsys, "stats", "--index", "kb", "--json")
    stats = json.loads(out)
    assert stats["generation"] == listing[-1]["name"] and stats["operation"] == "delete"

    code, out, _ = _main(home, monkeypatch, capsys, "switch", "--index", "kb", "--rollback")
    assert code == 0 and listing[1]["name"] in out
    code, out, _ = _main(home, monkeypatch, capsys, "stats", "--index", "kb", "--json")
    assert json.loads(out)["generation"] == listing[1]["name"]
    # newest one + the current one stay
    code, out, _ = _main(home, monkeypatch, capsys, "cleanup", "--index", "kb", "--keep", "1")
    assert f"deleted 1 generation(s): {listing[0]['name']}" in out


def test_cli_fatal_errors_are_clear(tmp_path: Path) -> None:
    home = tmp_path / "home"
    csv = tmp_path / "bad.csv"
    csv.write_text("doc,body\n1,x\n", encoding="utf-8")
    proc = _run(home, "build", "--index", "kb", str(csv), "-q", ok=False)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "['doc', 'body']" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(home, "stats", "--index", "../etc", ok=False)
    assert proc.returncode == 1 and "invalid index name" in proc.stderr
    proc = _run(home, "stats", "--index", "empty", ok=False)
    assert proc.returncode == 1 and "no current generation" in proc.stderr
    proc = _run(home, "build", "--index", "kb", ok=False)
    assert proc.returncode == 2  # argparse usage error


def test_cli_added_documents_show_their_source_and_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Documents built or added with the CLI carry their corpus ``source``/``url`` into the app's results,
    like uploaded ones (kept-meta.json of what ingestion kept; a skipped duplicate does not rewrite one)."""
    from search.ui.backend import Backend

    home = tmp_path / "home"
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"_id": "hn", "title": "Hà Nội", "text": "Hà Nội là thủ đô.",
                                 "source": "wiki", "url": "https://vi.wikipedia.org/wiki/Hà_Nội"},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"_id": "hue", "title": "Huế", "text": "Huế là cố đô.", "source": "sách", "url": "https://example.org/hue"},
        {"_id": "hn", "title": "Trùng", "text": "trùng id", "source": "giả", "url": "https://evil.example/"},
    ]), encoding="utf-8")
    assert _main(home, monkeypatch, capsys, "build", "--index", "kb", str(first), "-q")[0] == 0
    assert _main(home, monkeypatch, capsys, "add", "--index", "kb", str(more), "-q")[0] == 0
    meta = Backend("kb", demo_corpus=None, reranker_status=lambda: {}).doc_meta()
    assert meta["hn"] == {"source": "wiki", "url": "https://vi.wikipedia.org/wiki/Hà_Nội"}
    assert meta["hue"] == {"source": "sách", "url": "https://example.org/hue"}
