"""Test kit for the app tests: a tiny corpus (with an XSS document), a fast hashing embedder, a word-overlap
reranker, an in-process app server on a free 127.0.0.1 port over a temporary ``VIRANKER_HOME``, a backend
whose demo build fails on purpose (:func:`flaky_backend`), and :func:`fresh_start`: ``python app.py`` as a
subprocess on an empty home, timed to its first served search result.

Used by ``tests/search/ui/test_app_api.py``, ``tests/e2e/test_app_browser.py``, ``tests/e2e/test_app_start.py``,
``tests/search/ui/test_progress_no_tqdm_patch.py`` and ``bench/fresh_start.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.normalize import folded_syllables
from reranker.availability import ModelUnavailable, RerankerStatus, UnavailableReason

ROOT = Path(__file__).resolve().parents[1]

ADMIN_PASSWORD = "test-admin-pw"
XSS_TITLE = "<img src=x onerror=\"window.__xss=1;alert('xss')\">Tiêu đề độc"
XSS_TEXT = "Đoạn văn độc hại <script>window.__xss=2;alert('xss')</script> về pháo hoa Hà Nội."

CORPUS = [
    {"_id": "hn", "title": "Hà Nội", "text": "Hà Nội là thủ đô của nước Cộng hòa xã hội chủ nghĩa Việt Nam, "
     "nằm bên bờ sông Hồng.", "source": "Wikipedia tiếng Việt", "url": "https://vi.wikipedia.org/wiki/H%C3%A0_N%E1%BB%99i"},
    {"_id": "hcm", "title": "Thành phố Hồ Chí Minh", "text": "Thành phố Hồ Chí Minh là thành phố lớn nhất Việt Nam "
     "về dân số, trước đây gọi là Sài Gòn.", "source": "Wikipedia tiếng Việt", "url": "https://vi.wikipedia.org/wiki/TPHCM"},
    {"_id": "dl", "title": "Đà Lạt", "text": "Đà Lạt là thành phố tỉnh lỵ của tỉnh Lâm Đồng, nằm trên cao nguyên "
     "Lâm Viên.", "source": "Wikipedia tiếng Việt", "url": "https://vi.wikipedia.org/wiki/%C4%90%C3%A0_L%E1%BA%A1t"},
    {"_id": "song-hong", "title": "Sông Hồng", "text": "Sông Hồng bắt nguồn từ Vân Nam, Trung Quốc, chảy qua Hà Nội "
     "rồi đổ ra vịnh Bắc Bộ.", "source": "", "url": ""},
    {"_id": "pho", "title": "Phở", "text": "Phở là món ăn truyền thống của Việt Nam, gồm bánh phở, nước dùng và thịt bò "
     "hoặc gà.", "source": "", "url": ""},
    {"_id": "xss", "title": XSS_TITLE, "text": XSS_TEXT, "source": "<b>bad</b>", "url": "javascript:alert(1)"},
    {"_id": "xq-1", "title": "Super Bowl 50", "text": "Đội Denver Broncos đã đánh bại Carolina Panthers để giành "
     "chức vô địch Super Bowl 50.", "source": "XQuAD-vi", "url": ""},
]
BENCH_QUERY = "Đội nào giành chức vô địch Super Bowl 50?"


class HashEmbedder:
    """Deterministic bag-of-folded-syllables embedder (64 dims, L2-normalized) — fast, no model files."""

    model_id = "test/hash-embedder-64"
    dim = 64
    name = "test-hash"

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for syl in folded_syllables(t):
                h = int(hashlib.md5(syl.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)


@dataclass
class _Scores:
    raw: np.ndarray
    normalized: np.ndarray


class OverlapReranker:
    """Scores a passage by the number of query syllables it contains (a stand-in cross-encoder)."""

    name = "overlap"

    def rerank(self, query: str, passages: Sequence[str]) -> _Scores:
        q = set(folded_syllables(query))
        raw = np.array([float(len(q & set(folded_syllables(p)))) - 2.0 for p in passages], dtype=np.float64)
        return _Scores(raw, 1.0 / (1.0 + np.exp(-raw)))


RERANKER_STATUS = {  # typed statuses, as reranker.backends.available_rerankers() gives them (reason codes)
    "overlap": RerankerStatus.available("built into the test kit"),
    "viranker": RerankerStatus.available("a tiny random ViRanker built by the test kit"),
    "phoranker": RerankerStatus.unavailable(ModelUnavailable(
        "phoranker", "$PHORANKER_PATH is not set and itdainb/PhoRanker is not in the local Hugging Face cache",
        "set PHORANKER_PATH=<model dir>", UnavailableReason.NOT_DOWNLOADED, env="PHORANKER_PATH",
        hub_id="itdainb/PhoRanker")),
}


def tiny_viranker_dir(folder: Path) -> Path:
    """A tiny random ViRanker (2 layers, d=32, RoPE, BPT, XLM-R vocabulary) saved with ``save_pretrained``: the
    real ``viranker`` backend runs in the browser tests, only the weights are untrained."""
    import torch

    from reranker.config import ViRankerConfig
    from reranker.model import ViRanker
    from reranker.tokenizer import load_tokenizer

    torch.manual_seed(0)
    cfg = ViRankerConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=128,
                         max_query_length=32, exit_layers=(1,))
    return ViRanker(cfg).eval().save_pretrained(folder, tokenizer=load_tokenizer())


def write_corpus(path: Path, docs: Sequence[dict[str, Any]] = CORPUS) -> Path:
    """Write ``docs`` as BEIR-style JSONL."""
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def write_benchmark(folder: Path) -> Path:
    """A one-query BEIR set whose query is :data:`BENCH_QUERY` (relevant: ``xq-1``)."""
    ds = folder / "tiny-bench"
    (ds / "qrels").mkdir(parents=True)
    write_corpus(ds / "corpus.jsonl", [d for d in CORPUS if d["_id"] != "xss"])
    (ds / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": BENCH_QUERY}, ensure_ascii=False) + "\n"
        + json.dumps({"_id": "q2", "text": "Đà Lạt nằm trên cao nguyên nào?"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\txq-1\t1\nq2\tdl\t1\n", encoding="utf-8")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> bool:
    """SIGTERM ``proc``, wait ``grace`` s, then kill it → True when it stopped on SIGTERM (or had exited)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return False


def gradio_call(http: Any, url: str, api: str, *data: Any, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> tuple[str, Any]:
    """One Gradio ``/gradio_api/call/<api>`` round trip over plain HTTP (``http``: an httpx client or module)
    → (the last SSE event: ``complete`` / ``error``, its data)."""
    r = http.post(f"{url}gradio_api/call/{api}", json={"data": list(data)}, headers=headers or {}, timeout=timeout)
    r.raise_for_status()
    text = http.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout).text
    event, payload = "", None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            raw = line.split(":", 1)[1].strip()
            payload = json.loads(raw) if raw and raw != "null" else None
    return event, payload


def make_service_factory(embedder: Any, rerankers: dict[str, Any]):
    """A ``service_factory`` for :class:`app.Backend`: the real :class:`search.service.SearchService` with
    the test embedder and rerankers injected (unknown rerankers raise ``ModelUnavailable``)."""
    from reranker.backends import SPECS
    from search.service import SearchService

    def load_reranker(name: str) -> Any:
        if name not in rerankers:  # as reranker.backends says it: env unset, not in the HF cache
            spec = SPECS.get(name)
            env = spec.env if spec else "VIRANKER_MODEL"
            raise ModelUnavailable(name, "no model in the test kit", f"set {env}=<model dir>",
                                   UnavailableReason.NOT_DOWNLOADED, env=env, hub_id=spec.hub_id if spec else None)
        return rerankers[name]

    def factory(index: str) -> Any:
        return SearchService(index, embedder=embedder.name, reranker_loader=load_reranker,
                             embedder_loader=lambda name: embedder, check_interval=0.2)

    return factory


@dataclass
class RunningApp:
    url: str
    backend: Any
    home: Path
    demo: Any


@contextmanager
def serve_backend(backend: Any, *, before_serve: Any = None) -> Iterator[tuple[str, Any]]:
    """Launch the app for ``backend`` in-process on a free port → ``(url, demo)``; closed on exit.
    ``before_serve`` is passed to :func:`app.launch` (called after the UI is built, like ``main``)."""
    import app as app_module

    port = free_port()
    demo = app_module.launch(backend, "127.0.0.1", port, concurrency=4, block=False, quiet=True,
                             before_serve=before_serve)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read(100)
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield url, demo
    finally:
        demo.close()
        backend.job.wait(30)


@contextmanager
def running_app(home: Path, *, password: str | None = ADMIN_PASSWORD) -> Iterator[RunningApp]:
    """Build the tiny index in ``home`` (BM25 + hash vectors), start the app in-process, yield, stop."""
    import app as app_module
    from indexing.admin import AdminAuth
    from indexing.build import build_generation
    from indexing.corpus import load_corpus

    old_home = os.environ.get("VIRANKER_HOME")
    os.environ["VIRANKER_HOME"] = str(home)
    embedder = HashEmbedder()
    from reranker.backends import load_reranker

    rerankers = {"overlap": OverlapReranker(),
                 "viranker": load_reranker("viranker", path=tiny_viranker_dir(home / "tiny-viranker"))}
    corpus = write_corpus(home / "corpus.jsonl")
    bench_dir = write_benchmark(home / "benchmarks")
    passages, _ = load_corpus(corpus)
    build_generation("test", passages, embedder, progress=False)
    backend = app_module.Backend(
        "test",
        service_factory=make_service_factory(embedder, rerankers),
        embedder=embedder,
        demo_corpus=corpus,
        precomputed=None,
        benchmarks_dir=bench_dir,
        auth=AdminAuth(password, base_delay=1.0),
        reranker_status=lambda: dict(RERANKER_STATUS),
        rerankers=rerankers,
    )
    try:
        with serve_backend(backend) as (url, demo):
            yield RunningApp(url, backend, home, demo)
    finally:
        if old_home is None:
            os.environ.pop("VIRANKER_HOME", None)
        else:
            os.environ["VIRANKER_HOME"] = old_home


# ----------------------------------------------------------------------------------- failing builds
class InjectedBuildError(OSError):
    """A build failure injected by the test kit (typed, so the app's handling is checked by class)."""


def flaky_backend(index: str, corpus: Path, *, failures: int = 1, fail_stage: str = "bm25",
                  password: str | None = ADMIN_PASSWORD, embedder: Any = None, **kw: Any) -> Any:
    """An :class:`app.Backend` whose demo build raises :class:`InjectedBuildError` (its message names a
    server path, which visitors must not see) in stage ``fail_stage`` on its first ``failures`` attempts,
    then builds for real. ``backend.build_attempts`` counts the attempts."""
    import app as app_module
    from indexing.admin import AdminAuth

    class FlakyBackend(app_module.Backend):
        build_attempts = 0

        def _build_demo(self, progress: Any) -> dict[str, Any]:
            self.build_attempts += 1
            if self.build_attempts <= failures:
                progress(fail_stage, 0, 7)
                raise InjectedBuildError(f"No space left on device: '{self.index_dir}/generations/x/bm25'")
            return super()._build_demo(progress)

    embedder = embedder if embedder is not None else HashEmbedder()
    kw.setdefault("service_factory", make_service_factory(embedder, {"overlap": OverlapReranker()}))
    kw.setdefault("reranker_status", lambda: {"overlap": "available: built into the test kit"})
    kw.setdefault("auth", AdminAuth(password, base_delay=0.01, max_delay=1.0))
    return FlakyBackend(index, embedder=embedder, demo_corpus=corpus, precomputed=None, **kw)


# --------------------------------------------------------------------------------- fresh app starts
FRESH_START_QUERY = "thủ đô của Việt Nam"


@dataclass
class StartResult:
    """One ``python app.py`` start on an empty home (see :func:`fresh_start`)."""

    ok: bool
    seconds: float | None  # spawn → first served search result (None when none came)
    hits: list[dict[str, Any]]
    error: str
    output: str
    returncode: int | None
    status: dict[str, Any] | None = None

    def output_tail(self, chars: int = 6000) -> str:
        return self.output[-chars:]


def fresh_start(home: Path, *, timeout: float = 240.0, query: str = FRESH_START_QUERY, pipeline: str = "hybrid",
                log_path: Path | None = None, extra_args: Sequence[str] = ()) -> StartResult:
    """Start ``python app.py --port <free port>`` with ``VIRANKER_HOME=home`` (created empty when missing)
    and the env of a fresh machine (``GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1``,
    no admin password, no Qdrant server); poll ``/status`` until the demo build is done (a failed build
    ends the wait at once), run ``query`` through ``/search`` with ``pipeline`` (hybrid needs the vectors,
    so a BM25-only index does not count), then stop the app with SIGTERM. Never raises for an app problem:
    the result says what happened, with the app's console output."""
    from gradio_client import Client

    home.mkdir(parents=True, exist_ok=True)
    log_path = log_path or home.parent / f"{home.name}.app.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRANKER_ADMIN_PASSWORD", "QDRANT_URL", "QDRANT_API_KEY")}
    env.update(VIRANKER_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.monotonic()
    deadline = t0 + timeout
    seconds, hits, error, status = None, [], "", None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:  # the server answers
                if proc.poll() is not None:
                    raise RuntimeError(f"app exited with {proc.returncode} before serving")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no HTTP answer from {url} within {timeout:.0f} s")
                try:
                    urllib.request.urlopen(url, timeout=2).read(100)
                    break
                except OSError:
                    time.sleep(0.3)
            client = Client(url, verbose=False, analytics_enabled=False)
            while True:  # the demo build is done
                status = client.predict(api_name="/status")
                if status.get("build_failed"):
                    raise RuntimeError(f"demo build failed: {status.get('message')}")
                if status.get("ready") and not status.get("building"):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"app exited with {proc.returncode} during the build")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"demo build not done within {timeout:.0f} s (last status: {status})")
                time.sleep(0.5)
            hits = client.predict(query, pipeline, 10, api_name="/search")
            seconds = time.monotonic() - t0
            if not hits:
                error = "the search returned no results"
        except Exception as err:  # noqa: BLE001 - reported in the result
            error = f"{type(err).__name__}: {err}"
        finally:
            if not stop_process(proc):
                error = error or "the app did not stop within 30 s of SIGTERM"
    output = log_path.read_text(encoding="utf-8", errors="replace")
    return StartResult(ok=not error and bool(hits), seconds=seconds, hits=list(hits or []), error=error,
                       output=output, returncode=proc.returncode, status=status)
