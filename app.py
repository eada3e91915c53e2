"""ViRanker Search — the Gradio app: Search, Compare, Evaluate and Admin tabs, plus a small HTTP API.

    python app.py [--host 127.0.0.1] [--port 7860] [--index demo] [--admin-password PW]

On a fresh machine the ``demo`` index is missing: the app starts serving at once and builds it in a
background thread from ``assets/demo/corpus.jsonl`` (precomputed e5-small vectors from ``assets/demo`` seed
the embedding cache when present); progress is printed in the console and shown on the page. Searches work
on the serving generation while any build runs: builds write a new generation and swap ``CURRENT``
atomically, and the search service re-opens when it changes.

API (``gradio_client.Client(url).predict(..., api_name=...)``):

- ``/search(query, pipeline="", top_k=10)`` → ``[{"id", "title", "text", "score", "rank"}, ...]`` (empty
  pipeline: the service default, ``hybrid+viranker`` when its weights are present, else ``hybrid``)
- ``/compare(query, pipelines=None, top_k=10)`` → ``{"results": {system: [hit, ...]}, "unavailable":
  {system: reason}, "agreement": [{"a", "b", "overlap", "tau"}], "timings_ms": {system: ms}}``
- ``/status()`` → ``{"ready", "generation", "building", "stage", "build_failed", "failure", "message", ...}``
  for anyone: whether the index serves, the build's progress, and when the build failed its stage, error
  class, a short message (no server paths) and what to do.
- ``/admin_status(password)``, ``/admin_rollback(password)``, ``/admin_rebuild(password)``,
  ``/admin_delete(password, ids)``, ``/admin_retry_build(password)``: admin actions; the password is checked
  server-side with the same throttling as the Admin tab. Rebuild, delete and retry run in the background
  (poll ``/admin_status``).

A failed build is never a silent empty index: the page banner and every search say which stage failed
and how (error class + short message), the Admin tab has a retry button, and the next start of the app
resumes an unfinished demo build (the serving generation, if any, keeps serving meanwhile). Progress
reaches the page through callbacks only (``BuildJob.progress``, ``search.eval.run_eval(progress_callback=)``);
nothing patches tqdm, so the console bars of a build running in the background keep working.

UI event handlers are registered with ``api_visibility="private"`` so they are not part of the API; the
admin handlers additionally check a server-side session token on every call.

Concurrency: the queue runs at most ``--concurrency`` (default 4) search/compare events at once. Reranking
is CPU-bound (torch already uses the cores), so more parallel events only add contention and latency;
4 keeps a cheap BM25 request from waiting behind a long rerank while bounding memory. Evaluation and
admin actions run one at a time (their own concurrency groups), and requests beyond the queue size
(``--max-queue``, default 256) are refused quickly instead of piling up.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr  # noqa: E402

from indexing import generations as gens  # noqa: E402
from indexing import settings  # noqa: E402
from indexing.admin import (  # noqa: E402
    AdminAuth,
    BuildBusy,
    BuildJob,
    NothingToRetry,
    UploadError,
    dir_size,
    read_doc_meta,
    save_uploads,
)
from indexing.normalize import normalize  # noqa: E402
from search.compare import display_scores, pairwise_stats  # noqa: E402
from search.errors import (  # noqa: E402
    EmptyQuery,
    IndexBuildFailed,
    IndexNotReady,
    NoSearchableTerms,
    QueryError,
    ServiceError,
    VectorsUnavailable,
)
from search.results import Note, NoteCode  # noqa: E402
from search.ui_render import (  # noqa: E402
    BUILD_RETRY_HINT,
    BUILD_STAGES_VI,
    build_failure_html,
    build_failure_text,
    compare_html,
    notice_html,
    progress_html,
    query_terms,
    restored_notice_html,
    results_html,
    short_error,
    stats_html,
    timings_html,
)

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
DEMO_DIR = ASSETS / "demo"
DEMO_CORPUS = DEMO_DIR / "corpus.jsonl"
EXAMPLES_FILE = DEMO_DIR / "examples.txt"
BENCHMARKS_DIR = ASSETS / "benchmarks"
DEFAULT_INDEX = "demo"
DEFAULT_EMBEDDER = "e5-small"
FIRST_STAGE_LABELS = {"bm25": "BM25", "dense": "Dense (e5)", "hybrid": "Hybrid"}
MODE_CHOICES = [
    ("BM25", "bm25"),
    ("Dense (e5-small)", "dense"),
    ("Hybrid (BM25 + dense)", "hybrid"),
    ("Hybrid + reranker", "rerank"),
]
MAX_TOP_K = 50
MAX_COMPARE = 3


# =========================================================================================== helpers
def load_examples(path: Path = EXAMPLES_FILE) -> list[str]:
    """Example queries: one per line, ``#`` comments and blank lines skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def find_precomputed(folder: Path = DEMO_DIR) -> Path | None:
    """The precomputed-vectors metadata JSON shipped in ``folder`` (a ``*.json`` with ``model_id`` and
    ``ids``), or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        if '"model_id"' in head and ('"ids"' in head or '"vectors"' in head):
            return path
    return None


def _query_key(text: str) -> str:
    return " ".join(normalize(text or "").lower().split()).rstrip(" ?.!")


@dataclass
class Benchmark:
    """A BEIR dev set: queries, qrels (doc ids) and a lookup by query text."""

    name: str
    path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    by_text: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, split: str = "test") -> Benchmark:
        """Read ``queries.jsonl`` and ``qrels/<split>.tsv`` with :func:`search.eval.load_beir`."""
        from search.eval import load_beir

        data = load_beir(path, split=split)
        queries = {str(q): str(t) for q, t in data.queries.items()}
        qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in data.qrels.items()}
        queries = {q: t for q, t in queries.items() if q in qrels}
        return cls(path.name, path, queries, qrels, {_query_key(t): q for q, t in queries.items()})


def client_key(request: Any) -> str:
    """A throttling key for the caller (its IP address)."""
    try:
        return str(request.client.host)
    except AttributeError:
        return "unknown"


# =========================================================================================== backend
class Backend:
    """Everything the UI and the API need, without Gradio: the search service, builds, benchmarks, admin.

    ``service_factory(index_name)`` opens the search service (default ``search.service.SearchService``);
    ``embedder`` is used for builds (default: loaded by name, ``e5-small``; the app falls back to BM25 only
    when it is unavailable).
    """

    def __init__(
        self,
        index: str = DEFAULT_INDEX,
        *,
        admin_password: str | None = None,
        service_factory: Callable[[str], Any] | None = None,
        embedder: Any = None,
        embedder_name: str = DEFAULT_EMBEDDER,
        demo_corpus: Path | None = DEMO_CORPUS,
        precomputed: Path | None = None,
        benchmarks_dir: Path = BENCHMARKS_DIR,
        echo: Callable[[str], None] | None = None,
        auth: AdminAuth | None = None,
        reranker_status: Callable[[], dict[str, str]] | None = None,
        rerankers: dict[str, Any] | None = None,
    ) -> None:
        self.index = settings.validate_index_name(index)
        self.auth = auth or AdminAuth(admin_password)
        self.job = BuildJob(echo=echo)
        self._service_factory = service_factory
        self._service: Any = None
        self._service_error: str | None = None
        self._lock = threading.Lock()
        self._embedder = embedder
        self.embedder_name = embedder_name
        self.demo_corpus = demo_corpus
        self.precomputed = precomputed if precomputed is not None else find_precomputed()
        self.benchmarks_dir = benchmarks_dir
        self._benchmarks: dict[str, Benchmark] | None = None
        self._meta: dict[str, dict[str, str]] | None = None
        self._reranker_status = reranker_status
        self.eval_rerankers = rerankers  # {name: Reranker} for evaluation; None: loaded by name

    # ------------------------------------------------------------------------------------ index state
    @property
    def index_dir(self) -> Path:
        """``$VIRANKER_HOME/indexes/<index>``."""
        return settings.index_dir(self.index)

    @property
    def uploads_dir(self) -> Path:
        """Where admin uploads are kept (one sub-folder per upload)."""
        return settings.home() / "uploads" / self.index

    def current_generation(self) -> str | None:
        """Name of the serving generation, or None when the index has none yet."""
        return gens.current(self.index_dir)

    def demo_build_reason(self) -> str | None:
        """Why the demo build has to (re)run: ``"missing"`` (no serving generation: first start, or a failed
        or interrupted first build), ``"vectors"`` (the serving generation is the BM25-only one an interrupted
        demo build serves first), else None. Always None without a demo corpus."""
        if self.demo_corpus is None or not Path(self.demo_corpus).is_file():
            return None
        if self.current_generation() is None:
            return "missing"
        from indexing.build import current_manifest

        if (current_manifest(self.index) or {}).get("operation") == "build-bm25-first":
            return "vectors"
        return None

    def ensure_index(self) -> bool:
        """At start: (re)start the demo build in the background when :meth:`demo_build_reason` says so →
        started? A failed or interrupted build is resumed (``build_generation`` picks up the incomplete
        generation with the same inputs and drops other incomplete ones); the serving generation, if any,
        keeps serving until the new one is complete. Otherwise incomplete leftovers are removed."""
        if self.job.running:
            return False
        reason = self.demo_build_reason()
        if reason is None:
            if self.current_generation() is None:
                self.job.log(f"index {self.index!r} is empty and there is no demo corpus to build it from")
            else:
                self._cleanup_incomplete()
            return False
        if reason == "vectors":
            self.job.log(f"index {self.index!r} serves a BM25-only generation of an unfinished demo build: "
                         "building the vectors again")
        self.start_demo_build()
        return True

    def start_demo_build(self) -> None:
        """Start the demo build (a ``"demo"`` job) in the background. Raises BuildBusy while a build runs."""
        self.job.start(f"build index {self.index!r} from {Path(self.demo_corpus).name}", self._build_demo,
                       kind="demo")

    def _cleanup_incomplete(self) -> list[str]:
        """Remove incomplete generations left by a crashed build (skipped while another process builds)."""
        from indexing.build import cleanup

        if not (self.index_dir / gens.GENERATIONS_DIR).is_dir():
            return []
        try:
            with gens.IndexLock(self.index_dir, timeout=0):
                deleted = cleanup(self.index)
        except gens.IndexBusy:
            return []
        if deleted:
            self.job.log(f"removed incomplete generation(s) of {self.index!r}: {', '.join(deleted)}")
        return deleted

    def embedder(self) -> Any:
        """The passage embedder for builds, or None (BM25 only) when it cannot be loaded."""
        if self.embedder_name in ("none", "bm25"):
            self.embedder_name = ""
        if self._embedder is None and self.embedder_name:
            try:
                from search.embedders import load_embedder

                self._embedder = load_embedder(self.embedder_name)
            except Exception as err:  # noqa: BLE001 - EmbedderUnavailable & co.: fall back to BM25 only
                self.job.log(f"embedder {self.embedder_name!r} unavailable ({err}); building BM25 only")
                self.embedder_name = ""
        return self._embedder

    def index_embedder(self) -> Any:
        """The embedder that matches the current index's vectors (None when the index has none)."""
        from indexing.build import current_manifest

        want = (current_manifest(self.index) or {}).get("embedder")
        if not want:
            return None
        emb = self.embedder()
        if emb is None or str(emb.model_id) != str(want.get("model_id")):
            from search.embedders import load_embedder

            emb = load_embedder(want.get("name") or self.embedder_name)
        return emb

    def _build_demo(self, progress: Callable[..., None]) -> dict[str, Any]:
        """Build the demo index. Without precomputed vectors, embedding the corpus on a CPU takes long, so a
        BM25-only generation is built and served first, then the full one (BM25 + vectors) replaces it."""
        from indexing.build import PrecomputedVectors, build_generation
        from indexing.corpus import load_corpus

        progress("read corpus", 0, 1, message=str(self.demo_corpus))
        passages, report = load_corpus(self.demo_corpus)
        progress("read corpus", 1, 1, message=report.summary(max_problems=5).splitlines()[0])
        embedder = self.embedder()
        pre = None
        if embedder is not None and self.precomputed is not None:
            try:
                pre = PrecomputedVectors.load(self.precomputed)
            except Exception as err:  # noqa: BLE001 - a broken file only costs embedding time
                self.job.log(f"ignoring precomputed vectors {self.precomputed}: {err}")
            if pre is not None and pre.model_id != getattr(embedder, "model_id", None):
                # vectors of another model are useless here: treat as absent (BM25 first, then embed)
                self.job.log(f"ignoring precomputed vectors {self.precomputed.name}: they are for "
                             f"{pre.model_id!r}, the embedder is {getattr(embedder, 'model_id', None)!r}")
                pre = None
            if pre is not None:
                progress("precomputed vectors", 1, 1, message=f"seeding the cache from {self.precomputed.name}")
        extra = {"ingest": report.to_dict(), "source": "demo corpus"}
        if embedder is not None and pre is None and self.current_generation() is None:
            progress("bm25-only generation", 0, 1,
                     message="no precomputed vectors: serving BM25 first while the vectors are computed")
            build_generation(self.index, passages, None, progress_callback=progress, operation="build-bm25-first",
                             extra=extra)
        return build_generation(self.index, passages, embedder, precomputed=pre, progress_callback=progress,
                                extra=extra)

    def service(self) -> Any:
        """The search service over the serving generation (opened on first use), or None if not ready."""
        with self._lock:
            if self._service is None:
                if self.current_generation() is None:
                    return None
                factory = self._service_factory
                if factory is None:
                    from search.service import SearchService

                    def factory(index: str) -> Any:
                        return SearchService(index, embedder=self.embedder_name or DEFAULT_EMBEDDER)
                try:
                    self._service = factory(self.index)
                    self._service_error = None
                except Exception as err:  # noqa: BLE001 - shown in the UI; retried on the next call
                    self._service_error = f"{type(err).__name__}: {err}"
                    return None
            return self._service

    def status(self) -> dict[str, Any]:
        """Index and build status for the page banner (``failure``: the last build's, see
        :meth:`shown_failure`)."""
        snap = self.job.snapshot()
        gen = self.current_generation()
        return {
            "index": self.index,
            "generation": gen,
            "building": snap["running"],
            "build": snap,
            "failure": self.shown_failure(snap, gen),
            "service_error": self._service_error,
        }

    def shown_failure(self, snap: dict[str, Any] | None = None, gen: str | None = None) -> dict[str, Any] | None:
        """The last build's failure when visitors must see it (the demo build failed, or no generation
        serves), else None. A running build clears it."""
        snap = self.job.snapshot() if snap is None else snap
        failure = snap.get("failure")
        if not failure or snap.get("running"):
            return None
        gen = self.current_generation() if gen is None else gen
        return failure if failure.get("kind") == "demo" or gen is None else None

    def public_status(self) -> dict[str, Any]:
        """Status for anyone (the ``/status`` API): readiness, build progress and, when the build failed, its
        stage, error class, a short message without server paths and a hint (Vietnamese)."""
        st = self.status()
        snap, failure = st["build"], st["failure"]
        public_failure = None
        if failure is not None:
            public_failure = {
                "stage": failure.get("stage"),
                "error_type": failure.get("error_type"),
                "message": short_error(str(failure.get("error_type")), str(failure.get("message") or "")),
                "attempt": failure.get("attempt"),
                "hint": BUILD_RETRY_HINT,
            }
        if st["building"]:
            stage = str(snap.get("stage") or "")
            message = f"Chỉ mục đang được xây dựng ({BUILD_STAGES_VI.get(stage, stage)})."
        elif failure is not None:
            message = build_failure_text(failure, self.index, st["generation"])
        elif st["generation"] is None:
            message = self.not_ready_message()
        else:
            message = f"Chỉ mục {self.index!r} sẵn sàng (thế hệ {st['generation']})."
        return {
            "index": self.index,
            "ready": st["generation"] is not None,
            "generation": st["generation"],
            "building": st["building"],
            "stage": snap.get("stage") if st["building"] else None,
            "done": snap.get("done") if st["building"] else None,
            "total": snap.get("total") if st["building"] else None,
            "build_failed": failure is not None,
            "failure": public_failure,
            "message": message,
        }

    # ------------------------------------------------------------------------------------- metadata
    def doc_meta(self) -> dict[str, dict[str, str]]:
        """``doc_id → {"source", "url"}`` from the demo corpus and uploaded JSONL files (read once)."""
        if self._meta is None:
            paths: list[Path] = []
            if self.demo_corpus is not None and Path(self.demo_corpus).is_file():
                paths.append(Path(self.demo_corpus))
            if self.uploads_dir.is_dir():
                paths += sorted(self.uploads_dir.glob("*/files/*.json*"))
            self._meta = read_doc_meta(paths)
        return self._meta

    def benchmarks(self) -> dict[str, Benchmark]:
        """Bundled BEIR dev sets by folder name (loaded once; unreadable ones are skipped)."""
        if self._benchmarks is None:
            out: dict[str, Benchmark] = {}
            if self.benchmarks_dir.is_dir():
                for path in sorted(p for p in self.benchmarks_dir.iterdir() if (p / "queries.jsonl").is_file()):
                    try:
                        out[path.name] = Benchmark.load(path)
                    except Exception as err:  # noqa: BLE001
                        self.job.log(f"benchmark {path.name} not loaded: {err}")
            self._benchmarks = out
        return self._benchmarks

    def benchmark_for(self, query: str) -> tuple[Benchmark, str] | None:
        """The benchmark and query id whose query text equals ``query`` (normalized), if any."""
        key = _query_key(query)
        for bench in self.benchmarks().values():
            qid = bench.by_text.get(key)
            if qid is not None:
                return bench, qid
        return None

    # ---------------------------------------------------------------------------------------- search
    def reranker_recommended(self, name: str) -> bool:
        """Whether reranker ``name`` may be the default (see :func:`reranker.backends.recommended_by_default`);
        rerankers injected by a test/custom setup are trusted."""
        if self._reranker_status is not None:
            return True
        from reranker.backends import recommended_by_default

        return recommended_by_default(name)

    def rerankers(self) -> dict[str, str]:
        """``{name: "available: …" | "unavailable: <reason>. <how to fix>"}`` (no weights loaded)."""
        if self._reranker_status is not None:
            return self._reranker_status()
        svc = self._service
        if svc is not None and hasattr(svc, "reranker_status"):
            return svc.reranker_status()
        from reranker.backends import available_rerankers

        return available_rerankers()

    def search(self, query: str, pipeline: str | None = "hybrid", top_k: int = 10, as_typed: bool = False) -> Any:
        """One search → ``SearchResult`` (``pipeline`` None: the service's default). Raises IndexNotReady
        while the index has no generation."""
        svc = self.service()
        if svc is None:
            raise self.not_ready_error()
        return svc.search(query, pipeline, top_k, as_typed=as_typed)

    def not_ready_error(self) -> IndexNotReady:
        """Why searching is not possible right now, as the exception to raise (:class:`IndexBuildFailed`
        when the build failed)."""
        snap = self.job.snapshot()
        if not snap["running"] and snap.get("failure") and self.current_generation() is None:
            return IndexBuildFailed(build_failure_text(snap["failure"], self.index), snap["failure"])
        return IndexNotReady(self.not_ready_message())

    def not_ready_message(self) -> str:
        """Why searching is not possible right now."""
        snap = self.job.snapshot()
        if snap["running"]:
            return f"Chỉ mục đang được xây dựng ({snap.get('stage')}). Vui lòng thử lại sau ít phút."
        if snap.get("failure") and self.current_generation() is None:
            return build_failure_text(snap["failure"], self.index)
        if self._service_error:
            return f"Không mở được chỉ mục: {self._service_error}"
        return f"Chỉ mục {self.index!r} chưa có dữ liệu. Hãy tải tài liệu lên trong tab Admin."


    # ----------------------------------------------------------------------------------------- admin
    def admin_stats(self) -> dict[str, Any]:
        """Statistics of the index: serving generation, counts, embedder, build time, disk use."""
        from indexing.build import current_manifest

        m = current_manifest(self.index) or {}
        gens_list = gens.list_generations(self.index_dir) if self.index_dir.is_dir() else []
        uploads = [p for p in self.uploads_dir.iterdir() if p.is_dir()] if self.uploads_dir.is_dir() else []
        emb = m.get("embedder") or {}
        return {
            "index": self.index,
            "generation": self.current_generation(),
            "operation": m.get("operation"),
            "created": m.get("created"),
            "passages": (m.get("counts") or {}).get("passages"),
            "documents": (m.get("counts") or {}).get("documents"),
            "vectors": (m.get("counts") or {}).get("vectors"),
            "embedder": emb.get("model_id"),
            "build_seconds": m.get("build_seconds"),
            "generations": len(gens_list),
            "disk_mb": round(dir_size(self.index_dir) / 2**20, 1),
            "uploads": len(uploads),
            "building": self.job.running,
        }

    def admin_generations(self) -> list[dict[str, Any]]:
        """All generations, newest first (name, status, created, current, counts)."""
        if not self.index_dir.is_dir():
            return []
        return [g.to_dict() for g in reversed(gens.list_generations(self.index_dir))]

    def admin_rollback(self) -> str:
        """Switch to the previous complete generation → its name (GenerationError when there is none)."""
        return gens.rollback(self.index_dir, lock_timeout=2.0)

    def admin_switch(self, gen: str) -> str:
        """Serve generation ``gen`` (atomic ``CURRENT`` swap) → the previous one."""
        return gens.switch(self.index_dir, gen, lock_timeout=2.0) or ""

    def admin_start_upload(self, paths: Sequence[str], names: Sequence[str] | None, mode: str) -> str:
        """Store + validate uploaded corpus files and start a background build → report text.

        ``mode``: ``add`` (current passages + new ones; ids already in the index are skipped and reported)
        or ``replace`` (a new generation with only these files). Raises UploadError / RuntimeError.
        """
        from indexing.admin import load_uploaded_corpus
        from indexing.build import add_passages, build_generation, current_passages

        if mode not in ("add", "replace"):
            raise UploadError(f"unknown mode {mode!r}")
        if self.job.running:
            raise RuntimeError("a build is already running; wait for it to finish")
        batch = save_uploads(paths, self.uploads_dir, names=names)
        existing: set[str] = set()
        if mode == "add":
            for p in current_passages(self.index):
                existing.update((p.id, p.doc_id))
        passages, report = load_uploaded_corpus(batch, existing_ids=existing)
        text = batch.summary() + "\n" + report.summary()
        if not passages:
            raise UploadError(text + "\nNothing to index: no valid documents in the upload.")
        extra = {"ingest": report.to_dict(), "upload": batch.dir.name}
        if mode == "add" and self.current_generation() is not None:
            embedder = self.index_embedder()

            def work(progress: Callable[..., None]) -> dict[str, Any]:
                return add_passages(self.index, passages, embedder, progress_callback=progress, extra=extra)
        else:
            embedder = self.embedder()

            def work(progress: Callable[..., None]) -> dict[str, Any]:
                return build_generation(self.index, passages, embedder, progress_callback=progress,
                                        operation="upload", extra=extra)
        self._meta = None
        self.job.start(f"{'add' if mode == 'add' else 'rebuild'}: {len(passages):,} passages from upload", work)
        return text

    def admin_start_rebuild(self) -> str:
        """Start rebuilding the current passages into a new generation (same settings) → message."""
        from indexing.build import build_generation, current_manifest, current_passages

        if self.current_generation() is None:
            raise ValueError("the index has no generation yet")
        passages = current_passages(self.index)
        manifest = current_manifest(self.index) or {}
        embedder = self.index_embedder()
        words = "words" in ((manifest.get("bm25") or {}).get("fields") or [])
        self.job.start(f"rebuild: {len(passages):,} passages",
                       lambda progress: build_generation(self.index, passages, embedder, progress_callback=progress,
                                                         operation="rebuild", words=words))
        return f"Rebuilding {len(passages):,} passages into a new generation in the background."

    def admin_retry_build(self) -> str:
        """Start the failed build again (or the demo build when :meth:`demo_build_reason` says it is due) →
        message. Raises :class:`BuildBusy` while a build runs, :class:`NothingToRetry` when nothing failed."""
        if self.job.running:
            raise BuildBusy("a build is already running")
        if self.job.failure is not None:
            label = self.job.retry()
        elif self.demo_build_reason() is not None:
            self.start_demo_build()
            label = self.job.snapshot()["label"]
        else:
            raise NothingToRetry("no failed build to retry")
        self._meta = None
        return f"Đang xây lại trong nền: {label} (lần {self.job.snapshot().get('attempt')})."

    def admin_start_delete(self, ids: Sequence[str]) -> str:
        """Start a background rebuild without ``ids`` (passage or document ids) → message.

        Raises ValueError for no ids, KeyError (from the build) is reported by the job."""
        from indexing.build import delete_passages

        ids = [i.strip() for i in ids if i and i.strip()]
        if not ids:
            raise ValueError("no ids given")
        if self.current_generation() is None:
            raise ValueError("the index has no generation yet")
        embedder = self.index_embedder()
        self.job.start(f"delete {len(ids)} id(s)",
                       lambda progress: delete_passages(self.index, ids, embedder, progress_callback=progress))
        return f"Deleting {len(ids)} id(s) in the background: {', '.join(ids[:10])}"


# ====================================================================================== search logic
def pipeline_name(mode: str, reranker: str | None) -> str:
    """UI mode + reranker → pipeline name (``rerank`` mode means ``hybrid+<reranker>``)."""
    if mode == "rerank":
        return f"hybrid+{reranker or 'viranker'}"
    return mode if mode in FIRST_STAGE_LABELS else "hybrid"


def friendly_error(err: BaseException) -> str:
    """An exception from searching → a message for users (no traceback), chosen by the exception's class."""
    if isinstance(err, EmptyQuery):
        return "Hãy nhập câu hỏi hoặc từ khoá để tìm kiếm."
    if isinstance(err, NoSearchableTerms):
        return "Câu hỏi không có chữ hoặc số nào để tìm. Hãy nhập từ khoá khác."
    if isinstance(err, QueryError):
        return f"Câu hỏi không hợp lệ: {err}"
    if isinstance(err, IndexNotReady):
        return str(err)
    if isinstance(err, VectorsUnavailable):
        return ("Chỉ mục hiện chưa có vector (đang được tính, hoặc chưa có mô hình embedding): "
                "hãy chọn pipeline BM25 trong lúc chờ.")
    if isinstance(err, ServiceError):
        return f"Không thể tìm: {err}"
    from reranker.backends import ModelUnavailable  # imported here: loading torch only when a model failed
    from search.embedders import EmbedderUnavailable

    if isinstance(err, ModelUnavailable):
        return (f"Mô hình {getattr(err, 'name', '')!r} chưa có: {getattr(err, 'reason', err)}. "
                f"Cách thêm: {getattr(err, 'how_to_fix', '')}")
    if isinstance(err, EmbedderUnavailable):
        return f"Mô hình embedding chưa có: {err}. Hãy dùng pipeline BM25."
    if isinstance(err, ValueError):
        return f"Không thể tìm: {err}"
    return f"Đã xảy ra lỗi khi tìm kiếm ({type(err).__name__}: {err}). Hãy thử lại."


def note_vi(note: Note) -> str | None:
    """A pipeline note → its Vietnamese text for the UI (None: not shown as a notice, e.g. the restored query,
    which the page shows on its own)."""
    if note.code in (NoteCode.TRUNCATED_CHARS, NoteCode.TRUNCATED_SYLLABLES):
        unit = "ký tự" if note.code is NoteCode.TRUNCATED_CHARS else "âm tiết"
        return f"Câu hỏi quá dài: chỉ dùng {note.params['limit']} {unit} đầu tiên."
    if note.code is NoteCode.RERANK_WINDOW:
        top = int(note.params["top"])
        return f"Từ hạng {top + 1} trở đi là thứ tự trước rerank (chỉ {top} đoạn đầu được rerank)."
    if note.code is NoteCode.RESTORED:
        return None
    return str(note)


def hits_json(result: Any) -> list[dict[str, Any]]:
    """A result's hits as the API's JSON list (score on the normalized 0–1 display scale too)."""
    norm = display_scores(result.hits)
    return [
        {"id": h.id, "title": h.title, "text": h.text, "score": float(h.score), "rank": int(h.rank),
         "doc_id": h.doc_id, "normalized_score": round(float(n), 6)}
        for h, n in zip(result.hits, norm, strict=True)
    ]


def compare_systems(backend: Backend, query: str, systems: Sequence[str], top_k: int) -> dict[str, Any]:
    """Run each system on the same generation → ``{"results": {name: SearchResult}, "errors": {name:
    message}, "stats": [PairStats]}``. A bad query raises ``QueryError``; no index raises IndexNotReady."""
    svc = backend.service()
    if svc is None:
        raise backend.not_ready_error()
    out = svc.compare(query, list(systems), top_k)
    results = {n: r for n, r in out.items() if not isinstance(r, BaseException)}
    errors = {n: friendly_error(r) for n, r in out.items() if isinstance(r, BaseException)}
    stats = pairwise_stats({n: [h.id for h in r.hits] for n, r in results.items()}, top_k)
    return {"results": results, "errors": errors, "stats": stats}


def single_query_metrics(result: Any, relevant: dict[str, int], qid: str) -> dict[str, float]:
    """NDCG@10 / MRR@10 of one result for one judged query, via :func:`search.metrics.evaluate`."""
    from search.metrics import evaluate

    run: dict[str, float] = {}
    for h in result.hits:  # qrels are on document ids; a document scores as its best passage
        run.setdefault(h.doc_id, float(len(result.hits) - h.rank + 1))
    return evaluate({qid: relevant}, {qid: run}, metrics=("ndcg@10", "mrr@10"))


# ========================================================================================= rendering
CSS = """
.vr-results, .vr-cmp {width:100%; border-collapse:collapse !important; font-size:0.95em; border:none !important}
.vr-results th, .vr-cmp th {text-align:left; border:none !important; border-bottom:2px solid #ddd !important;
    padding:6px !important; background:transparent !important}
.vr-results td, .vr-cmp td {border:none !important; border-bottom:1px solid #eee !important; padding:8px 6px !important;
    vertical-align:top}
.vr-results tr, .vr-cmp tr {border:none !important}
.vr-stats th {width:16em; font-weight:600; border-bottom:1px solid #eee !important}
.vr-log {font-size:0.8em; max-height:14em; overflow:auto; background:#f7f7f7; padding:6px; border-radius:4px}
.vr-rank {font-weight:700; width:2.5em; color:#555}
.vr-title {font-weight:600; margin-bottom:2px}
.vr-snippet {color:#333; line-height:1.45}
.vr-id {color:#999; font-size:0.8em; font-family:monospace}
.vr-score {font-family:monospace; width:5em}
.vr-pre {width:6.5em; white-space:nowrap}
.vr-src {width:10em; font-size:0.9em}
.vr-move {font-size:0.85em; color:#666}
mark {background:#ffe066; color:inherit; padding:0 1px; border-radius:2px}
.vr-timings {color:#555; font-size:0.9em; margin:6px 0}
.vr-stage {font-family:monospace}
.vr-notice {padding:10px 12px; border-radius:6px; margin:6px 0}
.vr-info {background:#eef5ff; border:1px solid #c9defc}
.vr-warn {background:#fff7e0; border:1px solid #f5d36b}
.vr-error {background:#fdecec; border:1px solid #f3b4b4}
.vr-restored {margin:4px 0; font-size:1.02em}
.vr-muted {color:#888}
.vr-rel {color:#0a7d28; font-weight:700}
.vr-relrow {background:#f1fbf3}
.vr-cmp {table-layout:fixed; font-size:0.9em}
.vr-cmp th {vertical-align:bottom}
.vr-cmp td.vr-rank {width:2.2em}
.vr-doc {display:inline-block; min-width:2.2em; padding:0 4px; border-radius:4px; color:#fff;
         font-size:0.8em; font-weight:700; text-align:center; margin-right:4px}
.vr-bar {height:5px; background:#e6e6e6; border-radius:3px; margin-top:3px}
.vr-bar > div {height:5px; background:#4a7bd0; border-radius:3px}
.vr-up {color:#0a7d28} .vr-down {color:#b3261e} .vr-new {color:#7a4cc2}
.vr-sysmeta {font-weight:400; color:#666; font-size:0.85em}
.vr-banner {padding:8px 12px; border-radius:6px; background:#fff7e0; border:1px solid #f5d36b; margin-bottom:6px}
.vr-progress {height:8px; background:#eee; border-radius:4px; margin-top:6px}
.vr-progress > div {height:8px; background:#e0a800; border-radius:4px}
"""

def banner_html(backend: Backend) -> str:
    """Top-of-page status: the serving generation, the progress of a running build, or a failed build (what
    failed and what to do)."""
    st = backend.status()
    if st["building"]:
        extra = "" if st["generation"] is None else " Tìm kiếm vẫn hoạt động trên thế hệ hiện tại."
        return f"<div class='vr-banner'>⏳ {progress_html(st['build'])}<div class='vr-muted'>{extra}</div></div>"
    if st["failure"] is not None:
        return build_failure_html(st["failure"], backend.index, st["generation"])
    if st["generation"] is None:
        return notice_html(backend.not_ready_message(), "warn")
    return (f"<div class='vr-muted'>Chỉ mục <b>{html.escape(backend.index)}</b> · thế hệ "
            f"<code>{html.escape(st['generation'])}</code></div>")


# ======================================================================================== handlers
def _clamp_k(top_k: Any, default: int = 10) -> int:
    try:
        k = int(top_k)
    except (TypeError, ValueError):
        return default
    return max(1, min(MAX_TOP_K, k))


class Handlers:
    """The UI's event handlers as plain methods (Gradio wiring is in :func:`build_ui`)."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    # ------------------------------------------------------------------------------------------ search
    def search(self, query: str, mode: str, reranker: str | None, top_k: Any, as_typed: bool = False
               ) -> tuple[str, bool, str, str]:
        """→ (notice HTML, show the "search as typed" button?, timings HTML, results HTML)."""
        query = query or ""
        if not query.strip():
            return notice_html("Hãy nhập câu hỏi hoặc từ khoá để tìm kiếm.", "info"), False, "", ""
        pipeline = pipeline_name(mode, reranker)
        fallback = ""
        try:
            try:
                res = self.b.search(query, pipeline, _clamp_k(top_k), as_typed=as_typed)
            except VectorsUnavailable:
                # BM25-only generation (e.g. the first start while vectors are computed): still answer
                res = self.b.search(query, "bm25", _clamp_k(top_k), as_typed=as_typed)
                fallback = notice_html("Chỉ mục chưa có vector (đang được tính hoặc không có mô hình embedding): "
                                       "kết quả dưới đây là của BM25.", "warn")
        except Exception as err:  # noqa: BLE001 - every failure becomes a friendly message
            if isinstance(err, IndexBuildFailed):
                kind = "error"
            elif isinstance(err, (QueryError, IndexNotReady)):
                kind = "info"
            else:
                kind = "warn"
            return notice_html(friendly_error(err), kind), False, "", ""
        restored = restored_notice_html(res.query, res.searched_query)
        if as_typed:
            restored = "<div class='vr-restored vr-muted'>Tìm chính xác như đã gõ (không thêm dấu).</div>"
        notes = [text for text in map(note_vi, res.notes) if text is not None]
        notice = fallback + restored + "".join(notice_html(n, "info") for n in notes)
        terms = query_terms(res.query, None if as_typed else res.searched_query)
        table = results_html(res.hits, terms, display_scores(res.hits), self.b.doc_meta())
        summary = f"<div class='vr-muted'>{len(res.hits)} kết quả · pipeline <code>{html.escape(res.pipeline)}</code></div>"
        show_btn = bool(restored) and not as_typed
        return notice, show_btn, timings_html(res.timings_ms), summary + table

    # ----------------------------------------------------------------------------------------- compare
    def compare(self, query: str, systems: Sequence[str] | None, top_k: Any) -> tuple[str, str]:
        """→ (side-by-side HTML, agreement/unavailable HTML)."""
        systems = list(dict.fromkeys(systems or []))
        if not (query or "").strip():
            return notice_html("Hãy nhập một câu hỏi để so sánh.", "info"), ""
        if not systems:
            return notice_html("Chọn ít nhất một hệ thống (tối đa 3).", "info"), ""
        if len(systems) > MAX_COMPARE:
            return notice_html(f"Chọn tối đa {MAX_COMPARE} hệ thống.", "info"), ""
        k = _clamp_k(top_k)
        try:
            out = compare_systems(self.b, query, systems, k)
        except Exception as err:  # noqa: BLE001
            return notice_html(friendly_error(err), "info"), ""
        relevant, metrics, note = None, {}, ""
        found = self.b.benchmark_for(query)
        if found is not None:
            bench, qid = found
            rel = {d: r for d, r in bench.qrels[qid].items() if r > 0}
            relevant = set(rel)
            metrics = {n: single_query_metrics(r, rel, qid) for n, r in out["results"].items()}
            note = (f"Câu hỏi thuộc benchmark <b>{html.escape(bench.name)}</b> (<code>{html.escape(qid)}</code>): "
                    f"đoạn liên quan: {', '.join(html.escape(d) for d in sorted(relevant))}.")
        table = compare_html(query, out["results"], k, relevant, metrics, self.b.doc_meta())
        return table, stats_html(out["stats"], out["errors"], note)

    # ---------------------------------------------------------------------------------------- banner
    def banner(self) -> tuple[str, bool]:
        """→ (banner HTML, keep polling?). Polling goes on while a build runs, while nothing serves, and
        while a failed build is shown (so the page notices a retry)."""
        st = self.b.status()
        return banner_html(self.b), bool(st["building"] or st["generation"] is None or st["failure"] is not None)

    # ---------------------------------------------------------------------------------------- evaluate
    def evaluate(self, dataset: str | None, upload: str | None, systems: Sequence[str] | None, limit: Any,
                 progress: Any = None) -> tuple[str, Any, Any, Any, Any, list[str] | None]:
        """Run ``search.eval`` for each system → (status HTML, metrics table, chart data, win/loss summary,
        per-query table, [CSV path, JSON path])."""
        import pandas as pd

        empty = (pd.DataFrame(), pd.DataFrame(columns=["label", "value", "system", "metric"]),
                 pd.DataFrame(), pd.DataFrame(), None)
        systems = list(dict.fromkeys(systems or []))
        if not systems:
            return (notice_html("Chọn ít nhất một hệ thống để đánh giá.", "info"), *empty)
        try:
            report = run_evaluation(self.b, dataset, upload, systems, limit, progress)
        except (UploadError, FileNotFoundError, ValueError) as err:
            return (notice_html(f"Không đánh giá được: {err}", "warn"), *empty)
        return render_evaluation(report)


    # ------------------------------------------------------------------------------------------- admin
    DENIED = "Bạn cần đăng nhập admin để làm việc này."

    def login(self, password: str, client: str) -> tuple[str | None, str]:
        """→ (session token or None, message HTML)."""
        res = self.b.auth.check(client, password)
        if res.ok:
            return res.token, notice_html("Đăng nhập thành công.", "info")
        return None, notice_html(res.message, "error" if self.b.auth.enabled else "warn")

    def logout(self, token: str | None) -> tuple[None, str]:
        """Revoke the session token."""
        self.b.auth.revoke(token)
        return None, notice_html("Đã đăng xuất.", "info")

    def admin_view(self, token: str | None) -> tuple[str, Any, list[str]]:
        """→ (statistics HTML, generations table, generation names) — or a refusal without a valid token."""
        import pandas as pd

        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error"), pd.DataFrame(), []
        st = self.b.admin_stats()
        labels = {
            "index": "Chỉ mục", "generation": "Thế hệ đang phục vụ", "operation": "Thao tác tạo ra",
            "created": "Tạo lúc (UTC)", "passages": "Số đoạn văn", "documents": "Số tài liệu",
            "vectors": "Số vector", "embedder": "Mô hình embedding", "build_seconds": "Thời gian xây (s)",
            "generations": "Số thế hệ", "disk_mb": "Dung lượng (MB)", "uploads": "Số lần tải lên",
        }
        rows = "".join(f"<tr><th>{html.escape(v)}</th><td>{html.escape(str(st.get(k, '—')))}</td></tr>"
                       for k, v in labels.items())
        gens_rows = [{"generation": g["name"], "status": g["status"], "created": g["created"],
                      "current": "✓" if g["current"] else "", "passages": g["counts"].get("passages"),
                      "documents": g["counts"].get("documents")} for g in self.b.admin_generations()]
        df = pd.DataFrame(gens_rows, columns=["generation", "status", "created", "current", "passages", "documents"])
        names = [g["generation"] for g in gens_rows if g["status"] == "complete"]
        return f"<table class='vr-results vr-stats'>{rows}</table>", df, names

    def upload(self, token: str | None, files: Any, mode: str) -> tuple[str, bool]:
        """Validate the uploaded files and start a build → (report HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error"), False
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            return notice_html("Chưa chọn tệp nào.", "info"), False
        try:
            text = self.b.admin_start_upload(paths, [Path(p).name for p in paths], mode)
        except Exception as err:  # noqa: BLE001 - UploadError, IngestError, busy: all shown to the admin
            return f"<pre class='vr-notice vr-error'>{html.escape(str(err))}</pre>", False
        return f"<pre class='vr-notice vr-info'>{html.escape(text)}</pre>", True

    def build_status(self, token: str | None) -> tuple[str, bool]:
        """→ (build progress + log HTML, keep polling?)."""
        if not self.b.auth.valid_token(token):
            return "", False
        snap = self.b.job.snapshot()
        if snap.get("label") is None:
            return "<div class='vr-muted'>Chưa có lần xây nào trong phiên này.</div>", False
        head = progress_html(snap)
        if snap.get("error"):
            stage = (snap.get("failure") or {}).get("stage")
            head += notice_html(f"Thất bại ở bước {stage!r}: {snap['error']} — thế hệ đang phục vụ không thay đổi. "
                                "Bấm «Thử xây lại» để chạy lại.", "error")
        elif not snap["running"] and isinstance(snap.get("result"), dict):
            gen = snap["result"].get("generation")
            head += notice_html(f"Xong: thế hệ {gen} đang phục vụ.", "info")
        log = html.escape("\n".join(snap.get("log", [])[-12:]))
        return f"<div id='admin-build'>{head}<pre class='vr-log'>{log}</pre></div>", bool(snap["running"])

    def rollback(self, token: str | None) -> str:
        """Switch back to the previous generation → message HTML."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error")
        try:
            gen = self.b.admin_rollback()
        except Exception as err:  # noqa: BLE001
            return notice_html(f"Không quay lui được: {err}", "warn")
        return notice_html(f"Đã quay lui: đang phục vụ {gen}.", "info")

    def switch(self, token: str | None, gen: str | None) -> str:
        """Serve the chosen generation → message HTML."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error")
        if not gen:
            return notice_html("Chọn một thế hệ.", "info")
        try:
            self.b.admin_switch(gen)
        except Exception as err:  # noqa: BLE001
            return notice_html(f"Không chuyển được: {err}", "warn")
        return notice_html(f"Đang phục vụ {gen}.", "info")

    def rebuild(self, token: str | None) -> tuple[str, bool]:
        """Start a rebuild of the current passages → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error"), False
        try:
            msg = self.b.admin_start_rebuild()
        except Exception as err:  # noqa: BLE001
            return notice_html(f"Không xây lại được: {err}", "warn"), False
        return notice_html(msg, "info"), True

    def retry_build(self, token: str | None) -> tuple[str, bool]:
        """Start the failed build again → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error"), False
        try:
            msg = self.b.admin_retry_build()
        except BuildBusy:
            return notice_html("Đang có một lần xây chạy; hãy chờ nó xong.", "info"), True
        except NothingToRetry:
            return notice_html("Không có lần xây nào thất bại để thử lại.", "info"), False
        return notice_html(msg, "info"), True

    def delete(self, token: str | None, ids_text: str) -> tuple[str, bool]:
        """Start deleting the listed ids (comma / whitespace separated) → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(self.DENIED, "error"), False
        ids = [i for i in (ids_text or "").replace(",", " ").split() if i]
        try:
            msg = self.b.admin_start_delete(ids)
        except Exception as err:  # noqa: BLE001
            return notice_html(f"Không xoá được: {err}", "warn"), False
        return notice_html(msg, "info"), True


# ====================================================================================== evaluation
EVAL_METRICS = ("ndcg@10", "mrr@10", "ndcg@3", "mrr@3", "recall@100")


@dataclass
class EvaluationRun:
    """Reports of one Evaluate-tab run (one :class:`search.eval.EvalReport` per system that ran)."""

    dataset: str
    queries: dict[str, str]
    reports: dict[str, Any]
    errors: dict[str, str]
    seconds: float


def bundled_benchmarks(folder: Path = BENCHMARKS_DIR) -> list[str]:
    """Names of the BEIR folders under ``assets/benchmarks``."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "corpus.jsonl").is_file() and (p / "qrels").is_dir())


def run_evaluation(backend: Backend, dataset: str | None, upload: str | None, systems: Sequence[str],
                   limit: Any = 0, progress: Any = None) -> EvaluationRun:
    """Evaluate ``systems`` on a bundled dataset (by name) or an uploaded BEIR ZIP with the functions of
    ``python -m search.eval`` (``load_beir``, ``open_eval_index``, ``run_eval``). ``limit`` > 0 keeps the
    first ``limit`` judged queries. A system that cannot run (missing weights) is reported in ``errors``.

    ``progress(fraction, desc=...)`` (e.g. a ``gr.Progress``) is driven explicitly from the index build's and
    ``run_eval``'s progress callbacks; nothing patches tqdm (the console bars stay as they are)."""
    from dataclasses import replace

    from indexing.admin import extract_beir_zip
    from search.eval import load_beir, open_eval_index, run_eval
    from search.pipeline import Pipeline, parse_pipeline

    shown = [0.0]

    def step(frac: float, desc: str) -> None:  # the bar never moves back (build stages restart at 0/total)
        shown[0] = max(shown[0], min(1.0, frac))
        if progress is not None:
            progress(shown[0], desc=desc)

    for name in systems:
        parse_pipeline(name)
    start = time.perf_counter()
    if upload:
        dest = Path(tempfile.mkdtemp(prefix="beir-", dir=_scratch_dir()))
        path = extract_beir_zip(upload, dest)
        label = f"upload:{Path(upload).name}"
    else:
        names = bundled_benchmarks(backend.benchmarks_dir)
        if dataset not in names:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {names}")
        path, label = backend.benchmarks_dir / str(dataset), str(dataset)
    step(0.02, "đọc dữ liệu")
    ds = load_beir(path)
    n = int(limit or 0)
    if n > 0 and n < len(ds.queries):
        keep = list(ds.queries)[:n]
        ds = replace(ds, queries={q: ds.queries[q] for q in keep}, qrels={q: ds.qrels[q] for q in keep})
    need_vectors = any(parse_pipeline(s)[0] != "bm25" for s in systems)
    embedder = backend.embedder() if need_vectors else None
    step(0.05, f"chỉ mục {len(ds.passages):,} đoạn văn")

    def on_build(stage: str, done: int, total: int) -> None:
        step(0.05 + 0.05 * (done / total if total else 0.0), f"chỉ mục: {stage} {done:,}/{total:,}")

    snap = open_eval_index(ds, embedder, progress=True, progress_callback=on_build)
    reports: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        kw = {"rerankers": backend.eval_rerankers} if backend.eval_rerankers is not None else {}
        pipe = Pipeline.from_snapshot(snap, embedder, **kw)
        for i, name in enumerate(systems):
            step(0.1 + 0.9 * i / len(systems), f"{name} ({i + 1}/{len(systems)})")

            def on_queries(done: int, total: int, i: int = i, name: str = name) -> None:
                frac = (i + (done / total if total else 1.0)) / len(systems)
                step(0.1 + 0.9 * frac, f"{name} ({i + 1}/{len(systems)}): {done:,}/{total:,} câu hỏi")

            try:
                reports[name] = run_eval(ds, name, pipe, progress=True, progress_callback=on_queries)
            except Exception as err:  # noqa: BLE001 - other systems still run
                errors[name] = friendly_error(err)
    finally:
        snap.close()
    return EvaluationRun(label, dict(ds.queries), reports, errors, time.perf_counter() - start)


def _scratch_dir() -> str:
    path = Path(tempfile.gettempdir()) / "viranker-app"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def render_evaluation(run: EvaluationRun) -> tuple[str, Any, Any, Any, Any, list[str] | None]:
    """An :class:`EvaluationRun` → (status HTML, metrics table, chart data, win/loss summary, per-query
    differences, [CSV, JSON] download paths)."""
    import pandas as pd

    rows, chart = [], []
    for name, rep in run.reports.items():
        m = rep.metrics
        lat = rep.timings_ms.get("total", {})
        rows.append({"system": name, **{k: m.get(k) for k in EVAL_METRICS}, "queries": m.get("queries"),
                     "p50 ms": round(lat.get("p50", 0.0), 1), "p95 ms": round(lat.get("p95", 0.0), 1)})
        for metric in ("ndcg@10", "mrr@10"):
            chart.append({"label": f"{metric} · {name}", "value": float(m.get(metric) or 0.0), "system": name,
                          "metric": metric})
    metrics_df = pd.DataFrame(rows)
    chart_df = pd.DataFrame(chart, columns=["label", "value", "system", "metric"])
    names = list(run.reports)
    win_rows, diff_rows = [], []
    if len(names) >= 2:
        base = names[0]
        for other in names[1:]:
            w = t = lo = 0
            for qid in run.queries:
                a = run.reports[base].per_query.get(qid, {}).get("ndcg@10", 0.0)
                b = run.reports[other].per_query.get(qid, {}).get("ndcg@10", 0.0)
                if b > a + 1e-9:
                    w += 1
                elif b < a - 1e-9:
                    lo += 1
                else:
                    t += 1
            win_rows.append({"system": other, "baseline": base, "wins": w, "ties": t, "losses": lo})
        for qid, text in run.queries.items():
            vals = {n: run.reports[n].per_query.get(qid, {}).get("ndcg@10", 0.0) for n in names}
            spread = max(vals.values()) - min(vals.values())
            if spread > 0:
                diff_rows.append({"query id": qid, "query": text,
                                  **{f"ndcg@10 {n}": round(v, 3) for n, v in vals.items()},
                                  "spread": round(spread, 3)})
        diff_rows.sort(key=lambda r: -r["spread"])
    win_df = pd.DataFrame(win_rows, columns=["system", "baseline", "wins", "ties", "losses"])
    diff_df = pd.DataFrame(diff_rows[:100], columns=list(diff_rows[0]) if diff_rows else ["query id", "query",
                                                                                          "spread"])
    files = _write_eval_files(run) if run.reports else None
    parts = [f"<div class='vr-muted'>Bộ dữ liệu <b>{html.escape(run.dataset)}</b> · {len(run.queries):,} câu hỏi · "
             f"{run.seconds:,.1f} s</div>"]
    parts += [notice_html(f"{n}: không chạy được — {msg}", "warn") for n, msg in run.errors.items()]
    return "".join(parts), metrics_df, chart_df, win_df, diff_df, files


def _write_eval_files(run: EvaluationRun) -> list[str]:
    """Per-query CSV and a full JSON report in a fresh temp folder → their paths."""
    out = Path(tempfile.mkdtemp(prefix="eval-", dir=_scratch_dir()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path, json_path = out / f"viranker-eval-{stamp}.csv", out / f"viranker-eval-{stamp}.json"
    metrics = sorted({m for rep in run.reports.values() for q in rep.per_query.values() for m in q})
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "query_id", "query", *metrics])
        for name, rep in run.reports.items():
            for qid, text in run.queries.items():
                vals = rep.per_query.get(qid, {})
                w.writerow([name, qid, text, *[vals.get(m, 0.0) for m in metrics]])
    payload = {
        "dataset": run.dataset, "queries": len(run.queries), "seconds": round(run.seconds, 3),
        "metrics": {n: rep.metrics for n, rep in run.reports.items()},
        "latency_ms": {n: rep.timings_ms for n, rep in run.reports.items()},
        "per_query": {n: rep.per_query for n, rep in run.reports.items()},
        "errors": run.errors,
    }
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return [str(csv_path), str(json_path)]


# ============================================================================================== API
def make_api(backend: Backend) -> dict[str, Callable[..., Any]]:
    """The public API functions (typed, so Gradio derives the endpoint schema from the hints)."""
    def search(query: str, pipeline: str = "", top_k: int = 10) -> list[dict]:
        """Search the index with ``pipeline`` (bm25, dense, hybrid, <first stage>+<reranker>; empty: the
        service's default, hybrid+viranker when its weights are present). Returns [{"id", "title", "text",
        "score", "rank", "doc_id", "normalized_score"}], best first."""
        if not (query or "").strip():
            raise gr.Error("query is empty", print_exception=False)
        try:
            res = backend.search(query, pipeline or None, _clamp_k(top_k))
        except Exception as err:  # noqa: BLE001 - clients get the friendly message, not a traceback
            raise gr.Error(friendly_error(err), print_exception=False) from None
        return hits_json(res)

    def compare(query: str, pipelines: list[str] | None = None, top_k: int = 10) -> dict:
        """Run several pipelines (default: the Compare tab's). Returns {"results": {pipeline: [hits]},
        "unavailable": {pipeline: reason}, "agreement": [{"a","b","overlap","tau","shared"}],
        "timings_ms": {pipeline: total ms}, "searched_query": {pipeline: query after restoration}}."""
        if not (query or "").strip():
            raise gr.Error("query is empty", print_exception=False)
        if not pipelines:
            status = backend.rerankers()
            avail = [n for n, v in status.items() if v.startswith(("available", "loaded"))]
            pipelines = default_compare_systems(list(status), avail)
        names = list(dict.fromkeys(pipelines))[:MAX_COMPARE]
        try:
            out = compare_systems(backend, query, names, _clamp_k(top_k))
        except Exception as err:  # noqa: BLE001
            raise gr.Error(friendly_error(err), print_exception=False) from None
        return {
            "results": {n: hits_json(r) for n, r in out["results"].items()},
            "unavailable": out["errors"],
            "agreement": [{"a": s.a, "b": s.b, "overlap": s.overlap, "tau": s.tau, "shared": s.shared}
                          for s in out["stats"]],
            "timings_ms": {n: r.timings_ms.get("total") for n, r in out["results"].items()},
            "searched_query": {n: r.searched_query for n, r in out["results"].items()},
        }

    def _admin(password: str, request: gr.Request | None) -> None:
        res = backend.auth.check(client_key(request), password)
        if not res.ok:
            raise gr.Error(res.message, print_exception=False)

    def status() -> dict:
        """Index status for anyone: {"index", "ready", "generation", "building", "stage", "done", "total",
        "build_failed", "failure": {"stage", "error_type", "message", "attempt", "hint"} | null, "message"}.
        No server paths; admins get the full error from /admin_status."""
        return backend.public_status()

    def admin_status(password: str, request: gr.Request) -> dict:
        """Admin: index statistics, generations and build progress, with the full failure of the last
        build (password required)."""
        _admin(password, request)
        snap = backend.job.snapshot()
        snap.pop("result", None)
        return {"stats": backend.admin_stats(), "generations": backend.admin_generations(), "build": snap,
                "failure": snap.get("failure")}

    def admin_retry_build(password: str, request: gr.Request) -> dict:
        """Admin: start the failed build (e.g. the first-start demo build) again in the background; poll
        /status or /admin_status (password required)."""
        _admin(password, request)
        try:
            return {"started": backend.admin_retry_build()}
        except (BuildBusy, NothingToRetry) as err:
            raise gr.Error(f"retry refused: {err}", print_exception=False) from None

    def admin_rollback(password: str, request: gr.Request) -> dict:
        """Admin: serve the previous complete generation (password required)."""
        _admin(password, request)
        try:
            return {"generation": backend.admin_rollback()}
        except Exception as err:  # noqa: BLE001
            raise gr.Error(f"rollback failed: {err}", print_exception=False) from None

    def admin_rebuild(password: str, request: gr.Request) -> dict:
        """Admin: rebuild the current passages into a new generation in the background (password required)."""
        _admin(password, request)
        try:
            return {"started": backend.admin_start_rebuild()}
        except Exception as err:  # noqa: BLE001
            raise gr.Error(f"rebuild failed: {err}", print_exception=False) from None

    def admin_delete(password: str, ids: list[str], request: gr.Request) -> dict:
        """Admin: delete passages/documents by id in a background rebuild (password required)."""
        _admin(password, request)
        try:
            return {"started": backend.admin_start_delete(list(ids or []))}
        except Exception as err:  # noqa: BLE001
            raise gr.Error(f"delete failed: {err}", print_exception=False) from None

    return {"search": search, "compare": compare, "status": status, "admin_status": admin_status,
            "admin_rollback": admin_rollback, "admin_rebuild": admin_rebuild, "admin_delete": admin_delete,
            "admin_retry_build": admin_retry_build}


def default_compare_systems(rerankers: Sequence[str] = ("viranker", "phoranker"),
                            available: Sequence[str] = ()) -> list[str]:
    """The Compare tab's default systems: two reranked hybrids (ViRanker and PhoRanker first, then other
    available rerankers) and plain hybrid, all among the offered choices."""
    order = [r for r in ("viranker", "phoranker") if r in rerankers]
    order += [r for r in available if r not in order] + [r for r in rerankers if r not in order]
    return [f"hybrid+{r}" for r in order[:2]] + ["hybrid"]


def system_choices(rerankers: Sequence[str]) -> list[str]:
    """Every pipeline name offered in Compare / Evaluate."""
    out = ["bm25", "dense", "hybrid"]
    for r in rerankers:
        out += [f"hybrid+{r}", f"bm25+{r}"]
    return out


# =============================================================================================== UI
def benchmark_examples(backend: Backend, per_set: int = 4) -> list[str]:
    """A few benchmark questions per bundled set whose relevant passages are in the serving index (all sets'
    first questions when the index is not built yet)."""
    from indexing.build import current_passages

    gen = backend.current_generation()
    cached = getattr(backend, "_bench_examples", None)
    if cached is not None and cached[0] == gen and gen is not None:
        return list(cached[1])
    try:
        known = {p.doc_id for p in current_passages(backend.index)}
    except Exception:  # noqa: BLE001 - examples are a convenience
        known = set()
    out: list[str] = []
    for bench in backend.benchmarks().values():
        picked = [t for q, t in bench.queries.items() if not known or set(bench.qrels[q]) <= known]
        out += picked[:per_set]
    backend._bench_examples = (gen, out)
    return list(out)


def build_ui(backend: Backend, default_pipeline: str = "auto") -> Any:
    """The Gradio Blocks app (not launched; call ``.queue(...)`` / ``.launch(...)``).

    ``default_pipeline``: the Search tab's initial pipeline — ``auto`` (``hybrid+<first available
    reranker>`` when its model recommends itself as a default, else ``hybrid``), or a name such as ``hybrid``, ``bm25`` or ``hybrid+viranker``."""
    h = Handlers(backend)
    status = backend.rerankers()
    rr_names = list(status)
    available = [n for n, s in status.items() if s.startswith("available")]
    rr_choices = [(n if n in available else f"{n} (chưa có mô hình)", n) for n in rr_names]
    default_rr = available[0] if available else (rr_names[0] if rr_names else "viranker")
    default_mode = "rerank" if available and backend.reranker_recommended(default_rr) else "hybrid"
    if default_pipeline and default_pipeline != "auto":
        first, _, rr_name = default_pipeline.partition("+")
        if rr_name:
            default_mode, default_rr = "rerank", rr_name if rr_name in rr_names else default_rr
        elif first in FIRST_STAGE_LABELS:
            default_mode = first
    examples = load_examples()
    bench_examples = benchmark_examples(backend)
    priv = {"api_visibility": "private"}

    with gr.Blocks(title="ViRanker Search") as demo:
        gr.HTML("<h2 style='margin:0'>ViRanker Search</h2><div class='vr-muted'>Tìm kiếm tiếng Việt: BM25 + "
                "e5 (hợp nhất) + reranker ViRanker</div>")
        banner = gr.HTML(elem_id="status-banner")
        banner_timer = gr.Timer(2.0, active=False)
        with gr.Tabs():
            # ------------------------------------------------------------------------------ search
            with gr.Tab("Tìm kiếm", id="search", elem_id="tab-search"):
                with gr.Row(equal_height=True):
                    q = gr.Textbox(label="Câu hỏi", placeholder="Ví dụ: Đà Lạt nằm trên cao nguyên nào?",
                                   scale=6, elem_id="search-query", autofocus=True, max_length=2000)
                    go = gr.Button("Tìm", variant="primary", scale=1, elem_id="search-button")
                with gr.Row():
                    mode = gr.Radio(MODE_CHOICES, value=default_mode, label="Pipeline", elem_id="search-mode",
                                    scale=4)
                    rr = gr.Dropdown(rr_choices, value=default_rr, label="Reranker", elem_id="search-reranker",
                                     scale=2)
                    k = gr.Slider(1, MAX_TOP_K, value=10, step=1, label="Top-k", elem_id="search-topk", scale=2)
                ex = gr.Dataset(components=[q], samples=[[e] for e in examples], label="Câu hỏi mẫu (bấm để tìm)",
                                samples_per_page=15, elem_id="search-examples")
                with gr.Row(equal_height=False):
                    notice = gr.HTML(elem_id="search-notice", scale=5)
                    as_typed = gr.Button("Tìm chính xác như đã gõ", visible=False, size="sm", variant="secondary",
                                         elem_id="search-as-typed", scale=1, min_width=200)
                timings = gr.HTML(elem_id="search-timings")
                results = gr.HTML(elem_id="search-results")

            # ----------------------------------------------------------------------------- compare
            with gr.Tab("So sánh", id="compare", elem_id="tab-compare"):
                with gr.Row(equal_height=True):
                    cq = gr.Textbox(label="Câu hỏi", scale=6, elem_id="compare-query",
                                    placeholder="Một câu hỏi; các hệ thống chạy song song")
                    cgo = gr.Button("So sánh", variant="primary", scale=1, elem_id="compare-button")
                with gr.Row():
                    systems = gr.CheckboxGroup(system_choices(rr_names), value=default_compare_systems(rr_names, available),
                                               label="Hệ thống (tối đa 3)", elem_id="compare-systems", scale=5)
                    ck = gr.Slider(1, 20, value=10, step=1, label="Top-k", elem_id="compare-topk", scale=1)
                cex = gr.Dataset(components=[cq], samples=[[e] for e in bench_examples],
                                 label="Câu hỏi benchmark (có đánh giá liên quan)", elem_id="compare-examples")
                cstats = gr.HTML(elem_id="compare-stats")
                cout = gr.HTML(elem_id="compare-results")
                if rr_names:
                    lines = [f"- **{html.escape(n)}**: {html.escape(s)}" for n, s in status.items()]
                    gr.Markdown("**Reranker:**\n" + "\n".join(lines), elem_id="compare-rerankers")

            # ---------------------------------------------------------------------------- evaluate
            with gr.Tab("Đánh giá", id="evaluate", elem_id="tab-evaluate"):
                bundled = bundled_benchmarks(backend.benchmarks_dir)
                preferred = [n for n in ("xquad-vi",) if n in bundled] or bundled
                with gr.Row():
                    ds = gr.Dropdown(bundled, value=preferred[0] if preferred else None, label="Bộ dữ liệu (BEIR)",
                                     elem_id="eval-dataset", scale=2)
                    up = gr.File(label="…hoặc tải lên ZIP BEIR (corpus.jsonl, queries.jsonl, qrels/test.tsv)",
                                 file_types=[".zip"], type="filepath", elem_id="eval-upload", scale=2)
                    lim = gr.Number(value=50, precision=0, minimum=0, label="Giới hạn số câu hỏi (0 = tất cả)",
                                    elem_id="eval-limit", scale=1)
                esys = gr.CheckboxGroup(system_choices(rr_names), value=["bm25", "hybrid"], label="Hệ thống",
                                        elem_id="eval-systems")
                ego = gr.Button("Chạy đánh giá", variant="primary", elem_id="eval-button")
                estatus = gr.HTML(elem_id="eval-status")
                emetrics = gr.Dataframe(label="Chỉ số", elem_id="eval-metrics", interactive=False)
                eplot = gr.BarPlot(x="label", y="value", color="system", title="NDCG@10 / MRR@10",
                                   y_lim=[0, 1], x_label_angle=-30, elem_id="eval-plot", sort=None)
                with gr.Row():
                    ewin = gr.Dataframe(label="Thắng / hoà / thua theo NDCG@10 (so với hệ thống đầu tiên)",
                                        elem_id="eval-winloss", interactive=False)
                ediff = gr.Dataframe(label="Câu hỏi khác biệt nhiều nhất", elem_id="eval-perquery",
                                     interactive=False, max_height=360)
                efiles = gr.File(label="Tải kết quả (CSV / JSON)", file_count="multiple", elem_id="eval-files",
                                 interactive=False)

            # ------------------------------------------------------------------------------- admin
            with gr.Tab("Admin", id="admin", elem_id="tab-admin"):
                token = gr.State(None)
                if not backend.auth.enabled:
                    gr.HTML(notice_html(backend.auth.disabled_reason, "warn"), elem_id="admin-disabled")
                with gr.Row(equal_height=True) as login_row:
                    pw = gr.Textbox(label="Mật khẩu admin", type="password", elem_id="admin-password", scale=4,
                                    interactive=backend.auth.enabled)
                    login = gr.Button("Đăng nhập", elem_id="admin-login", scale=1, interactive=backend.auth.enabled)
                login_msg = gr.HTML(elem_id="admin-login-msg")
                with gr.Column(visible=False, elem_id="admin-panel") as panel:
                    with gr.Row():
                        refresh = gr.Button("Làm mới", size="sm", elem_id="admin-refresh")
                        logout = gr.Button("Đăng xuất", size="sm", elem_id="admin-logout")
                    astats = gr.HTML(elem_id="admin-stats")
                    gr.Markdown("### Tải tài liệu lên")
                    files = gr.File(label="JSONL / CSV / TXT / MD hoặc ZIP (tối đa 50 MB)", file_count="multiple",
                                    file_types=[".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt", ".md", ".zip"],
                                    type="filepath", elem_id="admin-files")
                    umode = gr.Radio([("Thêm vào chỉ mục hiện tại", "add"),
                                      ("Thay thế: thế hệ mới chỉ gồm các tệp này", "replace")],
                                     value="add", label="Cách xây", elem_id="admin-mode")
                    ubtn = gr.Button("Kiểm tra & xây thế hệ mới", variant="primary", elem_id="admin-upload")
                    ureport = gr.HTML(elem_id="admin-upload-report")
                    bstatus = gr.HTML(elem_id="admin-build-status")
                    with gr.Row():
                        bretry = gr.Button("Thử xây lại", size="sm", elem_id="admin-retry-build", scale=0,
                                           min_width=160)
                        bretry_msg = gr.HTML(elem_id="admin-retry-msg")
                    btimer = gr.Timer(1.0, active=False)
                    gr.Markdown("### Thế hệ chỉ mục")
                    agens = gr.Dataframe(elem_id="admin-generations", interactive=False)
                    with gr.Row():
                        gpick = gr.Dropdown([], label="Thế hệ", elem_id="admin-gen-pick", scale=3)
                        gswitch = gr.Button("Phục vụ thế hệ này", elem_id="admin-switch", scale=1)
                        groll = gr.Button("Quay lui", elem_id="admin-rollback", scale=1)
                        grebuild = gr.Button("Xây lại", elem_id="admin-rebuild", scale=1)
                    gmsg = gr.HTML(elem_id="admin-gen-msg")
                    gr.Markdown("### Xoá tài liệu theo id")
                    with gr.Row(equal_height=True):
                        dids = gr.Textbox(label="Id đoạn văn hoặc tài liệu (cách nhau bởi dấu phẩy / xuống dòng)",
                                          lines=2, elem_id="admin-delete-ids", scale=4)
                        dbtn = gr.Button("Xoá", variant="stop", elem_id="admin-delete", scale=1)
                    dmsg = gr.HTML(elem_id="admin-delete-msg")

        # ----------------------------------------------------------------------------------- API
        # Registered first so the public names are taken before any (private) UI handler is named.
        api = make_api(backend)
        gr.api(api["search"], api_name="search", concurrency_id="search")
        gr.api(api["compare"], api_name="compare", concurrency_id="search")
        gr.api(api["status"], api_name="status", concurrency_limit=None, concurrency_id="status")
        gr.api(api["admin_status"], api_name="admin_status", concurrency_limit=1, concurrency_id="admin")
        gr.api(api["admin_rollback"], api_name="admin_rollback", concurrency_limit=1, concurrency_id="admin")
        gr.api(api["admin_rebuild"], api_name="admin_rebuild", concurrency_limit=1, concurrency_id="admin")
        gr.api(api["admin_delete"], api_name="admin_delete", concurrency_limit=1, concurrency_id="admin")
        gr.api(api["admin_retry_build"], api_name="admin_retry_build", concurrency_limit=1, concurrency_id="admin")

        # ---------------------------------------------------------------------------------- wiring
        def _banner():
            text, poll = h.banner()
            return text, gr.Timer(active=poll)

        demo.load(_banner, None, [banner, banner_timer], **priv, queue=False)
        demo.load(lambda: gr.Dataset(samples=[[e] for e in benchmark_examples(backend)]), None, cex, **priv,
                  queue=False)
        banner_timer.tick(_banner, None, [banner, banner_timer], **priv, queue=False)

        def _search(query, m, r, top_k):
            n, show, t, res = h.search(query, m, r, top_k)
            return n, gr.Button(visible=show), t, res

        def _search_typed(query, m, r, top_k):
            n, _, t, res = h.search(query, m, r, top_k, as_typed=True)
            return n, gr.Button(visible=False), t, res

        s_out = [notice, as_typed, timings, results]
        s_in = [q, mode, rr, k]
        q.submit(_search, s_in, s_out, **priv, concurrency_id="search")
        go.click(_search, s_in, s_out, **priv, concurrency_id="search")
        as_typed.click(_search_typed, s_in, s_out, **priv, concurrency_id="search")
        ex.click(lambda sample: sample[0], ex, q, **priv, queue=False).then(
            _search, s_in, s_out, **priv, concurrency_id="search")

        c_in, c_out = [cq, systems, ck], [cout, cstats]
        cq.submit(h.compare, c_in, c_out, **priv, concurrency_id="search")
        cgo.click(h.compare, c_in, c_out, **priv, concurrency_id="search")
        cex.click(lambda sample: sample[0], cex, cq, **priv, queue=False).then(
            h.compare, c_in, c_out, **priv, concurrency_id="search")

        # gr.Progress is driven explicitly by run_evaluation's callbacks. Gradio's tqdm tracking is never
        # used: it patches tqdm process-wide when the UI is built, and a bar alive in a build thread then
        # dies on its next update (issue 13).
        def _evaluate(dataset, upload, sys_names, limit, progress=gr.Progress()):  # noqa: B008
            return h.evaluate(dataset, upload, sys_names, limit, progress)

        ego.click(_evaluate, [ds, up, esys, lim], [estatus, emetrics, eplot, ewin, ediff, efiles], **priv,
                  concurrency_limit=1, concurrency_id="evaluate")

        def _login(password, request: gr.Request):
            tok, msg = h.login(password, client_key(request))
            ok = tok is not None
            view = h.admin_view(tok) if ok else ("", None, [])
            bs = h.build_status(tok) if ok else ("", False)
            return (tok, msg, gr.Textbox(value=""), gr.Column(visible=ok), gr.Row(visible=not ok), view[0],
                    view[1], gr.Dropdown(choices=view[2], value=None), bs[0], gr.Timer(active=bs[1]))

        login_out = [token, login_msg, pw, panel, login_row, astats, agens, gpick, bstatus, btimer]
        login.click(_login, [pw], login_out, **priv, concurrency_limit=1, concurrency_id="admin")
        pw.submit(_login, [pw], login_out, **priv, concurrency_limit=1, concurrency_id="admin")

        def _logout(tok):
            _, msg = h.logout(tok)
            return None, msg, gr.Column(visible=False), gr.Row(visible=True), "", None

        logout.click(_logout, [token], [token, login_msg, panel, login_row, astats, agens], **priv, queue=False)

        def _view(tok):
            st, df, names = h.admin_view(tok)
            return st, df, gr.Dropdown(choices=names, value=None)

        view_out = [astats, agens, gpick]
        refresh.click(_view, [token], view_out, **priv, queue=False)

        def _upload(tok, fs, m):
            rep, poll = h.upload(tok, fs, m)
            return rep, gr.Timer(active=poll)

        ubtn.click(_upload, [token, files, umode], [ureport, btimer], **priv, concurrency_limit=1,
                   concurrency_id="admin")

        def _tick(tok):
            text, poll = h.build_status(tok)
            st, df, names = h.admin_view(tok) if not poll else (gr.skip(), gr.skip(), None)
            dd = gr.Dropdown(choices=names, value=None) if names is not None else gr.skip()
            return text, gr.Timer(active=poll), st, df, dd, h.banner()[0]

        btimer.tick(_tick, [token], [bstatus, btimer, astats, agens, gpick, banner], **priv, queue=False)

        def _roll(tok):
            return (h.rollback(tok), *_view(tok))

        groll.click(_roll, [token], [gmsg, *view_out], **priv, concurrency_limit=1, concurrency_id="admin")

        def _switch(tok, gen):
            return (h.switch(tok, gen), *_view(tok))

        gswitch.click(_switch, [token, gpick], [gmsg, *view_out], **priv, concurrency_limit=1,
                      concurrency_id="admin")

        def _rebuild(tok):
            msg, poll = h.rebuild(tok)
            return msg, gr.Timer(active=poll)

        grebuild.click(_rebuild, [token], [gmsg, btimer], **priv, concurrency_limit=1, concurrency_id="admin")

        def _retry(tok):
            msg, poll = h.retry_build(tok)
            return msg, gr.Timer(active=poll), h.banner()[0], gr.Timer(active=poll)

        bretry.click(_retry, [token], [bretry_msg, btimer, banner, banner_timer], **priv, concurrency_limit=1,
                     concurrency_id="admin")

        def _delete(tok, ids):
            msg, poll = h.delete(tok, ids)
            return msg, gr.Timer(active=poll)

        dbtn.click(_delete, [token, dids], [dmsg, btimer], **priv, concurrency_limit=1, concurrency_id="admin")

    return demo


# ============================================================================================== main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python app.py", description="ViRanker Search web app (Gradio).")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--index", default=DEFAULT_INDEX, help="index name under $VIRANKER_HOME/indexes (default demo)")
    p.add_argument("--admin-password", default=None,
                   help="admin password (default: $VIRANKER_ADMIN_PASSWORD; without one admin is disabled)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="search/compare events run at once (default 4; reranking is CPU-bound)")
    p.add_argument("--max-queue", type=int, default=256, help="queued events before new ones are refused")
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                   help="passage embedder for builds (default e5-small; 'none' builds BM25 only)")
    p.add_argument("--no-build", action="store_true", help="do not build the demo index when it is missing")
    p.add_argument("--default-pipeline", default="auto",
                   help="Search tab's initial pipeline: auto (hybrid+<available reranker>, else hybrid), bm25, "
                        "dense, hybrid or <first>+<reranker>")
    return p.parse_args(argv)


def launch(backend: Backend, host: str, port: int, concurrency: int = 4, max_queue: int = 256,
           block: bool = True, quiet: bool = False, default_pipeline: str = "auto",
           before_serve: Callable[[], Any] | None = None) -> Any:
    """Build the UI, configure the queue, call ``before_serve()`` (``main`` starts the demo build there) and
    serve it (never ``share=True``) → the Blocks object."""
    demo = build_ui(backend, default_pipeline)
    demo.queue(default_concurrency_limit=max(1, concurrency), max_size=max_queue)
    if before_serve is not None:
        before_serve()
    demo.launch(server_name=host, server_port=port, share=False, css=CSS, show_error=False, quiet=quiet,
                prevent_thread_lock=not block, footer_links=["api"], inbrowser=False, max_file_size="50mb")
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python app.py``."""
    args = parse_args(argv)
    password = args.admin_password or os.environ.get("VIRANKER_ADMIN_PASSWORD")
    backend = Backend(args.index, admin_password=password, embedder_name=args.embedder,
                      echo=lambda line: print(line, file=sys.stderr, flush=True))

    def start_build() -> None:  # after the UI is built (an extra; progress never patches tqdm anyway)
        if not args.no_build and backend.ensure_index():
            print(f"index {args.index!r} needs its demo build: building it in the background (progress below "
                  "and on the page)", file=sys.stderr, flush=True)

    if not backend.auth.enabled:
        print("admin disabled: set --admin-password or VIRANKER_ADMIN_PASSWORD to enable it", file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # SIGTERM → KeyboardInterrupt in the main thread: Gradio closes the server and main returns 0
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    launch(backend, args.host, args.port, args.concurrency, args.max_queue, default_pipeline=args.default_pipeline,
           before_serve=start_build)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
