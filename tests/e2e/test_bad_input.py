"""Bad input checklist: every item gets a clear error or a safe behaviour, and loses nothing.

One test per item (some items are also covered in depth by the module's own test file; they are repeated here
briefly so that this file is the whole checklist):

queries   empty · whitespace-only · 10,000 characters · emoji/control characters (control → space) · mixed
          scripts · stopwords only · a lone surrogate (cleaned alike in every mode)
api       non-string query · ``top_k`` = Infinity / NaN / "abc" (typed BadInput) · a pipelines string is one
          pipeline (JSON API and gr.api: tests/search/ui/test_json_api.py)
ingest    malformed JSONL · a JSONL record with a lone ``\ud800`` (skipped, the build goes on) · CSV with
          missing columns · Latin-1 file · duplicate ids · zero-length documents
admin     50 MB upload over the limit · ZIP with ``../`` paths · wrong password (throttled when repeated;
          forged X-Forwarded-For, anonymous uploads, a skipped duplicate's origin, refused uploads' files:
          tests/e2e/test_security.py) · login results worded in Vietnamese by ``reason`` (wrong/wait/disabled) ·
          admin action refusals in Vietnamese
render    HTML/JS inside documents is shown escaped
models    missing reranker weights → ``ModelUnavailable`` with how to fix · a model's server path is never
          shown to visitors (Search/Compare/``/status``), only in Admin
qdrant    a Qdrant URL that does not answer → a clear error within the timeout, and BM25 keeps serving
          (through ``SearchService`` and the app's search handler) · the server down → ``VectorStoreDown``
          saying why (not "no vectors yet") and the real cause in Admin status · a build with an unreachable
          ``QDRANT_URL`` fails (``VectorServerUnreachable``) within seconds, before the passage/BM25 stages
          (these, the models' paths and the admin wording: tests/e2e/test_bad_input_serving.py)
cli       documents built/added with ``python -m indexing`` show their source/url like uploaded ones
          (tests/indexing/test_indexing_cli.py)

Tiny data in ``tmp_path``; a hashing embedder and fake rerankers stand in for real models.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from indexing import generations as gens
from indexing import settings
from indexing.build import BuildError, build_generation, open_generation
from indexing.corpus import IngestError, Passage, load_corpus
from indexing.normalize import syllables
from search.pipeline import MAX_QUERY_CHARS, MAX_QUERY_SYLLABLES, Pipeline, QueryError
from search.results import NoteCode
from tests.app_testkit import free_port  # noqa: E402

DOCS = [
    ("hn", "Hà Nội", "Hà Nội là thủ đô của Việt Nam, nằm bên bờ sông Hồng."),
    ("bk", "Bắc Kinh", "Bắc Kinh (北京, Beijing) là thủ đô của Trung Quốc."),
    ("hc", "Hộ chiếu", "Công dân làm thủ tục cấp lại hộ chiếu tại cơ quan xuất nhập cảnh."),
    ("pho", "Phở", "Phở là món ăn truyền thống của Việt Nam và của người Hà Nội."),
    ("xss", "<img src=x onerror=alert(1)>Tiêu đề", "Đoạn <script>alert('xss')</script> về pháo hoa Hà Nội."),
]
PASSAGES = [Passage(i, i, t, x, "test") for i, t, x in DOCS]


class HashEmbedder:
    """Bag of marked syllables hashed into 64 dims (L2-normalized): deterministic, no model files."""

    name = "hash-64"
    model_id = "test/hash-64"
    dim = 64

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for s in syllables(t):
                out[i, int(hashlib.md5(s.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    encode_passages = encode_queries


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-home")
    build_generation("bad", PASSAGES, HashEmbedder(), root, progress=False)
    return root


@pytest.fixture(scope="module")
def svc_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home of its own for SearchService tests (Qdrant local mode: one open client per path)."""
    root = tmp_path_factory.mktemp("bad-input-svc-home")
    build_generation("bad", PASSAGES, HashEmbedder(), root, progress=False)
    return root


@pytest.fixture(scope="module")
def pipe(home: Path) -> Pipeline:
    snap = open_generation("bad", home)
    yield Pipeline.from_snapshot(snap, HashEmbedder(), depth=10, rerank_top=5)
    snap.close()


_free_port = free_port


def _write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ queries
def test_empty_query_is_a_clear_error(pipe: Pipeline) -> None:
    with pytest.raises(QueryError, match="empty query"):
        pipe.search("", "hybrid")


def test_whitespace_only_query_is_a_clear_error(pipe: Pipeline) -> None:
    for q in ("   ", "\t\n ", "\u200b\u00a0 \u3000"):
        with pytest.raises(QueryError, match="empty query|no letters"):
            pipe.search(q, "bm25")


def test_10000_character_query_is_truncated_with_a_note(pipe: Pipeline) -> None:
    query = ("hộ chiếu Hà Nội " * 700)[:10_000]
    assert len(query) == 10_000
    t = time.perf_counter()
    res = pipe.search(query, "hybrid", top_k=3)
    assert time.perf_counter() - t < 5.0
    assert res.query == query  # what was typed is kept for display
    assert len(res.searched_query) <= MAX_QUERY_CHARS
    assert len(syllables(res.searched_query)) <= MAX_QUERY_SYLLABLES
    assert any(n.code in (NoteCode.TRUNCATED_CHARS, NoteCode.TRUNCATED_SYLLABLES) for n in res.notes)
    assert res.hits and res.hits[0].id in {"hc", "hn"}


def test_emoji_and_control_characters(pipe: Pipeline) -> None:
    res = pipe.search("hộ\x00 chiếu\x07 😀🇻🇳\u200b\u202e", "hybrid", top_k=1)
    assert res.hits[0].id == "hc"
    assert not any(ch in res.searched_query for ch in "\x00\x07\u200b\u202e")
    with pytest.raises(QueryError, match="no letters or digits"):  # nothing searchable left
        pipe.search("😀🎉\x01", "bm25")


def test_mixed_scripts_query(pipe: Pipeline) -> None:
    for pipeline in ("bm25", "dense", "hybrid"):
        res = pipe.search("thủ đô 北京 Beijing", pipeline, top_k=2)
        assert res.hits[0].id == "bk", pipeline
    res = pipe.search("Привет Hà Nội", "bm25", top_k=1)  # a script the corpus lacks: ignored, no crash
    assert res.hits[0].id in {"hn", "pho"}


def test_stopword_only_query_still_answers(pipe: Pipeline) -> None:
    res = pipe.search("là của và", "hybrid", top_k=5)
    assert res.hits, "a query of function words is searched as is (no stopword list empties it)"
    assert [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))


def test_control_characters_become_spaces_and_bm25_finds_the_words(pipe: Pipeline) -> None:
    from indexing.normalize import normalize

    assert normalize("Hà\x00Nội") == "Hà Nội" and normalize("Hà\x07\x1fNội") == "Hà Nội"
    assert normalize("Hà\u200bNội") == "HàNội"  # zero-width characters still vanish inside a word
    res = pipe.search("Hà\x00Nội", "bm25", top_k=2)
    assert res.hits and res.hits[0].id in {"hn", "pho"}


def test_api_inputs_get_clear_typed_errors() -> None:
    from search.ui.context import BadInput, clamp_k, read_pipelines, read_query

    for bad in (float("inf"), "Infinity", float("nan"), "abc", [3], True):
        with pytest.raises(BadInput, match="top_k"):
            clamp_k(bad)
    assert clamp_k(None) == 10 and clamp_k("7") == 7 and clamp_k(1e9) == 50 and clamp_k(-3) == 1
    for bad in (5, 1.5, ["Hà Nội"], {"q": 1}):
        with pytest.raises(BadInput, match="query must be a string"):
            read_query(bad)
    assert read_pipelines("bm25") == ["bm25"] and read_pipelines("bm25, hybrid") == ["bm25", "hybrid"]
    assert read_pipelines(["bm25"]) == ["bm25"] and read_pipelines(None) is None
    with pytest.raises(BadInput):
        read_pipelines([1, 2])


def test_lone_surrogate_query_is_cleaned_the_same_in_every_mode(pipe: Pipeline) -> None:
    from search.ui.context import read_query

    query = read_query("hộ chiếu\ud800")
    assert query == "hộ chiếu "
    for mode in ("bm25", "dense", "hybrid"):
        assert pipe.search(query, mode, top_k=1).hits[0].id == "hc", mode


# ------------------------------------------------------------------------------------------------- ingest
def test_jsonl_record_with_a_lone_surrogate_is_skipped_not_fatal(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text('{"_id": "a", "text": "một"}\n{"_id": "b", "text": "x\\ud800y"}\n{"_id": "c", "text": "ba"}\n',
                 encoding="utf-8")
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a", "c"]
    [problem] = report.problems
    assert problem.line == 2 and "lone surrogate" in problem.reason
    build_generation("sur", passages, None, tmp_path, progress=False)  # the build goes through
    assert gens.current(settings.index_dir("sur", tmp_path)) is not None


def test_malformed_jsonl_line_is_reported(tmp_path: Path) -> None:
    f = _write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "một"}, '{"_id": "b", "text": ', {"_id": "c", "text": "ba"}])
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a", "c"]  # the good records are kept
    assert f"{f}:2: malformed JSON" in report.summary()
    with pytest.raises(IngestError, match=":2"):
        load_corpus(f, strict=True)


def test_csv_with_missing_columns_names_what_it_has(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("ma,noi_dung\n1,xin chào\n", encoding="utf-8")
    with pytest.raises(IngestError, match="missing required column") as err:
        load_corpus(f)
    assert "['ma', 'noi_dung']" in str(err.value)
    passages, _ = load_corpus(f, id_field="ma", text_field="noi_dung")  # the fix the message points to
    assert passages[0].text == "xin chào"


def test_latin1_file_is_reported_not_guessed(tmp_path: Path) -> None:
    f = tmp_path / "latin.jsonl"
    f.write_bytes(b'{"_id": "a", "text": "ok"}\n' + '{"_id": "b", "text": "café"}\n'.encode("latin-1"))
    passages, report = load_corpus(f)
    assert [p.id for p in passages] == ["a"]
    [problem] = report.problems
    assert problem.line == 2 and "bad encoding" in problem.reason and "0xe9" in problem.reason


def test_duplicate_ids_are_reported_and_refused_by_the_builder(tmp_path: Path) -> None:
    f = _write_jsonl(tmp_path / "d.jsonl", [{"_id": "x", "text": "một"}, {"_id": "x", "text": "hai"}])
    passages, report = load_corpus(f)
    assert [p.text for p in passages] == ["một"] and report.counts_by_reason() == {"duplicate id": 1}
    with pytest.raises(BuildError, match="duplicate passage ids"):
        build_generation("dups", [passages[0], passages[0]], None, tmp_path, progress=False)
    assert gens.current(settings.index_dir("dups", tmp_path)) is None


def test_zero_length_documents_are_reported_and_an_empty_corpus_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from indexing.__main__ import main as cli

    f = _write_jsonl(tmp_path / "z.jsonl", [{"_id": "e1", "text": ""}, {"_id": "e2", "text": " \u200b "}])
    passages, report = load_corpus(f)
    assert passages == [] and report.counts_by_reason() == {"empty text": 2}
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert load_corpus(empty)[0] == []
    assert cli(["build", str(f), str(empty), "--index", "zero", "--home", str(tmp_path), "-q"]) == 1
    assert "no passages to index" in capsys.readouterr().err
    assert gens.current(settings.index_dir("zero", tmp_path)) is None


# -------------------------------------------------------------------------------------------------- admin
def test_50mb_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    from indexing.admin import MAX_UPLOAD_BYTES, UploadError, save_uploads

    assert MAX_UPLOAD_BYTES == 50 * 1024 * 1024
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:  # sparse: 50 MB + 1 byte without writing them
        fh.truncate(MAX_UPLOAD_BYTES + 1)
    uploads = tmp_path / "uploads"
    with pytest.raises(UploadError, match="limit is 52,428,800"):
        save_uploads([big], uploads)
    assert list(uploads.iterdir()) == []  # nothing kept


def test_zip_with_parent_paths_is_refused(tmp_path: Path) -> None:
    from indexing.admin import UploadError, save_uploads

    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", "xin chào")
        zf.writestr("../../escaped.txt", "pwned")
    uploads = tmp_path / "sub" / "uploads"
    with pytest.raises(UploadError, match="zip-slip"):
        save_uploads([z], uploads)
    assert not list(tmp_path.rglob("escaped.txt")) and list(uploads.iterdir()) == []
    with pytest.raises(IngestError, match="unsafe"):  # the CLI's ZIP reader refuses it too
        load_corpus(z)


def test_wrong_admin_password_is_refused_and_throttled() -> None:
    from indexing.admin import AdminAuth

    now = [0.0]
    auth = AdminAuth("correct horse", base_delay=2.0, max_delay=30.0, clock=lambda: now[0])
    first = auth.check("10.0.0.1", "wrong")
    assert not first.ok and "Wrong password" in first.message and first.retry_after == 2.0
    # Retrying at once is not even checked — not even with the right password.
    early = auth.check("10.0.0.1", "correct horse")
    assert not early.ok and early.token is None and "wait" in early.message
    waits = [first.retry_after]
    for _ in range(5):
        now[0] += waits[-1]
        waits.append(auth.check("10.0.0.1", "wrong").retry_after)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # exponential back-off, capped: no lockout
    assert auth.password_checks == 6
    assert auth.check("10.0.0.2", "correct horse").ok  # other clients are not affected
    now[0] += 30.0
    assert auth.check("10.0.0.1", "correct horse").ok  # the right password is never refused for long
    assert not AdminAuth(None).check("x", "anything").ok  # no password configured: admin disabled


# ------------------------------------------------------------------------------------------------- render
def test_html_and_js_in_documents_are_rendered_escaped(pipe: Pipeline) -> None:
    from search.ui_render import query_terms, results_html

    res = pipe.search("pháo hoa Hà Nội", "bm25", top_k=5)
    assert res.hits[0].id == "xss" and "<script>" in res.hits[0].text  # stored as given...
    page = results_html(res.hits, query_terms(res.query, res.searched_query))

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: set[str] = set()
            self.attrs: set[str] = set()
            self.text = ""

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.tags.add(tag)
            self.attrs |= {name for name, _ in attrs}

        def handle_data(self, data: str) -> None:
            self.text += data

    parsed = Tags()
    parsed.feed(page)
    assert parsed.tags <= {"table", "thead", "tbody", "tr", "th", "td", "div", "span", "mark"}
    assert not {a for a in parsed.attrs if a.startswith("on")} and "src" not in parsed.attrs
    assert "<script>alert('xss')</script>" in parsed.text  # ...shown to the reader as text
    assert "<img src=x onerror=alert(1)>" in parsed.text


# ------------------------------------------------------------------------------------------------- models
def test_missing_model_weights_raise_model_unavailable_with_a_fix(tmp_path: Path, monkeypatch) -> None:
    from reranker.backends import ModelUnavailable, load_reranker

    t = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        load_reranker("viranker", path=tmp_path / "no-such-model")
    assert "VIRANKER_MODEL" in err.value.how_to_fix and "not a directory" in err.value.reason
    empty = tmp_path / "empty-model"
    empty.mkdir()
    monkeypatch.setenv("VIRANKER_MODEL", str(empty))
    with pytest.raises(ModelUnavailable, match="no config.json"):
        load_reranker("viranker")
    monkeypatch.delenv("VIRANKER_MODEL")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BGE_RERANKER_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: never downloads
    with pytest.raises(ModelUnavailable, match="BGE_RERANKER_PATH"):
        load_reranker("bge-reranker-v2-m3")
    assert time.perf_counter() - t < 10.0  # no hang, no download


def test_missing_reranker_in_the_service_keeps_other_pipelines(svc_home: Path) -> None:
    from reranker.backends import ModelUnavailable
    from search.service import SearchService

    def loader(name: str):
        raise ModelUnavailable(name, "no weights", "set VIRANKER_MODEL=<dir>")

    with SearchService("bad", root=svc_home, embedder_loader=lambda n: HashEmbedder(), reranker_loader=loader) as svc:
        with pytest.raises(ModelUnavailable, match="VIRANKER_MODEL"):
            svc.search("thủ đô", "hybrid+viranker")
        assert svc.search("thủ đô Việt Nam", "hybrid", top_k=1).hits[0].id == "hn"
        assert svc.reranker_status()["viranker"].startswith("unavailable: ")


# ------------------------------------------------------------------------------------------------- qdrant
def test_qdrant_url_that_does_not_answer_fails_fast() -> None:
    from qdrant_client import QdrantClient

    from indexing.vectors import VectorStore, VectorStoreUnavailable

    QdrantClient(url="http://127.0.0.1:9", check_compatibility=False)  # imports done outside the timing
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t = time.perf_counter()
        with pytest.raises(VectorStoreUnavailable, match="not reachable") as err:
            VectorStore.open(url, "c", timeout=1.0)
        assert time.perf_counter() - t < 6.0  # the 1 s timeout, not a hang
        assert "QDRANT_URL" in str(err.value)  # says how to fix it
    t = time.perf_counter()
    with pytest.raises(VectorStoreUnavailable, match="unset QDRANT_URL"):  # nothing listening at all
        VectorStore.open(f"http://127.0.0.1:{_free_port()}", "c")
    assert time.perf_counter() - t < 5.0


def _server_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, dict]:
    """A generation whose vectors live on a Qdrant server that is down (its manifest points at a dead URL)."""
    root = tmp_path / "home"
    build_generation("srv", PASSAGES, HashEmbedder(), root, progress=False)
    idx = settings.index_dir("srv", root)
    gen = gens.current(idx)
    manifest = gens.read_manifest(idx, gen)
    local = dict(manifest)
    dead = f"http://127.0.0.1:{_free_port()}"
    manifest["vectors"] = {"mode": "server", "url": dead, "collection": f"srv__{gen}"}
    gens.write_manifest(idx, gen, manifest)
    monkeypatch.setenv("QDRANT_URL", dead)
    return root, gen, local


def test_qdrant_down_service_keeps_serving_bm25_and_recovers(tmp_path: Path, monkeypatch) -> None:
    from search.service import SearchService, ServiceError

    root, gen, local = _server_generation(tmp_path, monkeypatch)
    svc = SearchService("srv", root=root, embedder_loader=lambda n: HashEmbedder(), default_reranker=None,
                        vector_retry_s=3600.0)
    t = time.perf_counter()
    res = svc.search("thủ đô Việt Nam", "bm25", top_k=1)
    assert res.hits[0].id == "hn" and time.perf_counter() - t < 10.0
    with pytest.raises(ServiceError, match="needs vectors.*127.0.0.1"):
        svc.search("thủ đô Việt Nam", "hybrid")
    assert {p.split("+")[0] for p in svc.pipelines()} == {"bm25"} and svc.default_pipeline == "bm25"
    assert "not reachable" in svc.status()["vector_error"]
    # The server comes back (here: the vectors are reachable again) → re-opened in the background.
    gens.write_manifest(settings.index_dir("srv", root), gen, local)
    monkeypatch.delenv("QDRANT_URL")
    svc.vector_retry_s = 0.0
    svc._state.retry_at = 0.0
    svc.search("thủ đô", "bm25")  # triggers the retry
    deadline = time.monotonic() + 30
    while svc.status().get("vector_error") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.search("thủ đô Việt Nam", "hybrid", top_k=1).hits[0].id == "hn"
    assert "hybrid" in svc.pipelines()
    svc.close()


def test_qdrant_failing_mid_serving_falls_back_to_bm25(svc_home: Path, monkeypatch) -> None:
    from qdrant_client import QdrantClient

    from indexing.vectors import VectorStore, VectorStoreUnavailable
    from search.service import SearchService, ServiceError

    dead_url = f"http://127.0.0.1:{_free_port()}"
    dead = VectorStore(QdrantClient(url=dead_url, timeout=1, check_compatibility=False), "c", dead_url, "server")
    with pytest.raises(VectorStoreUnavailable, match="failed to answer"):
        dead.search(np.ones(64, dtype=np.float32), k=3)
    with SearchService("bad", root=svc_home, embedder_loader=lambda n: HashEmbedder(), default_reranker=None,
                       vector_retry_s=3600.0) as svc:
        assert svc.search("thủ đô", "hybrid").hits
        monkeypatch.setattr(svc._state.pipeline, "vectors", dead)  # the server dies while serving
        with pytest.raises(ServiceError, match="needs vectors"):
            svc.search("thủ đô Việt Nam", "hybrid")
        t = time.perf_counter()
        with pytest.raises(ServiceError, match="needs vectors"):  # now refused at once, no more waiting
            svc.search("thủ đô Việt Nam", "dense")
        assert time.perf_counter() - t < 0.5
        assert svc.search("thủ đô Việt Nam", "bm25", top_k=1).hits[0].id == "hn"
        assert {p.split("+")[0] for p in svc.pipelines()} == {"bm25"}
        out = svc.compare("thủ đô Việt Nam", ["bm25", "hybrid"], top_k=1)
        assert out["bm25"].hits[0].id == "hn" and isinstance(out["hybrid"], ServiceError)


def test_qdrant_down_app_search_answers_with_bm25(tmp_path: Path, monkeypatch) -> None:
    from app import Backend, Handlers
    from search.service import SearchService

    root, _, _ = _server_generation(tmp_path, monkeypatch)
    monkeypatch.setenv("VIRANKER_HOME", str(root))  # the app's Backend finds its index through the environment
    svc = SearchService("srv", root=root, embedder_loader=lambda n: HashEmbedder(), default_reranker=None,
                        vector_retry_s=3600.0)
    backend = Backend("srv", service_factory=lambda name: svc, demo_corpus=None, reranker_status=lambda: {})
    notice, _, _, table = Handlers(backend).search("thủ đô Việt Nam", "hybrid", None, 3)
    assert "BM25" in notice and "Hà Nội" in table  # answered by BM25, with a notice saying so
    svc.close()

