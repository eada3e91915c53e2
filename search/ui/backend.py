"""The app's backend, read side: index state, the search service, status, benchmarks and document metadata.

:class:`Backend` is everything the UI and the API need, without Gradio. Its write side (demo build, uploads,
rebuild, delete, rollback) is :class:`search.ui.admin_ops.AdminOps`, mixed in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing import generations as gens
from indexing import settings
from indexing.admin import AdminAuth, BuildJob, read_doc_meta
from search.errors import IndexBuildFailed, IndexNotReady
from search.ui import messages as msg
from search.ui.admin_ops import AdminOps
from search.ui.benchmarks import BENCHMARKS_DIR, DEMO_DIR, Benchmark, examples_in_index, query_key
from search.ui.lanes import LaneConfig, Lanes
from search.ui.local_rerankers import LocalReranker, LocalRerankers
from search.ui.render import BUILD_RETRY_HINT, BUILD_STAGES_VI, build_failure_text, redact_paths, short_error

if TYPE_CHECKING:
    from indexing.embedders import Embedder
    from reranker.backends import Reranker
    from search.results import SearchResult
    from search.service import SearchService
    from search.ui.documents import PassageLookup

__all__ = ["Backend", "find_precomputed", "DEFAULT_INDEX", "DEFAULT_EMBEDDER", "DEMO_CORPUS", "MAX_TOP_K",
           "MAX_COMPARE"]

DEMO_CORPUS = DEMO_DIR / "corpus.jsonl"
DEFAULT_INDEX = "demo"
DEFAULT_EMBEDDER = "e5-small"
MAX_TOP_K = 50
MAX_COMPARE = 3


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


class Backend(AdminOps):
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
        service_factory: Callable[[str], SearchService] | None = None,
        embedder: Embedder | None = None,
        embedder_name: str = DEFAULT_EMBEDDER,
        demo_corpus: Path | None = DEMO_CORPUS,
        precomputed: Path | None = None,
        benchmarks_dir: Path = BENCHMARKS_DIR,
        echo: Callable[[str], None] | None = None,
        auth: AdminAuth | None = None,
        reranker_status: Callable[[], dict[str, str]] | None = None,
        rerankers: dict[str, Reranker] | None = None,
        lanes: LaneConfig | None = None,
        model_roots: list[Path] | None = None,
    ) -> None:
        self.index = settings.validate_index_name(index)
        self.auth = auth or AdminAuth(admin_password)
        self.job = BuildJob(echo=echo)
        self._service_factory = service_factory
        self._service: SearchService | None = None
        self._service_error: str | None = None
        self._lock = threading.Lock()
        self._embedder = embedder
        self.embedder_name = embedder_name
        self.demo_corpus = demo_corpus
        self.precomputed = precomputed if precomputed is not None else find_precomputed()
        self.benchmarks_dir = benchmarks_dir
        self._benchmarks: dict[str, Benchmark] | None = None
        self._bench_examples: tuple[str | None, list[str]] | None = None
        self._meta: dict[str, dict[str, str]] | None = None
        self._reranker_status = reranker_status
        self._lookup: tuple[str | None, Any] | None = None  # (generation, PassageLookup) for the document view
        self._restorer: tuple[str | None, Any] | None = None  # (generation, DiacriticRestorer) for alternatives
        self.eval_rerankers = rerankers  # {name: Reranker} for evaluation; None: loaded by name
        self.local_rerankers = LocalRerankers(roots=model_roots)  # added from model dirs (Compare tab)
        self.lanes = Lanes(lanes)  # reranked and cheap searches never wait for each other

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

    def embedder(self) -> Embedder | None:
        """The passage embedder for builds, or None (BM25 only) when it cannot be loaded."""
        if self.embedder_name in ("none", "bm25"):
            self.embedder_name = ""
        if self._embedder is None and self.embedder_name:
            try:
                from indexing.embedders import load_embedder

                self._embedder = load_embedder(self.embedder_name)
            except Exception as err:  # noqa: BLE001 - EmbedderUnavailable & co.: fall back to BM25 only
                self.job.log(f"embedder {self.embedder_name!r} unavailable ({err}); building BM25 only")
                self.embedder_name = ""
        return self._embedder

    def service(self) -> SearchService | None:
        """The search service over the serving generation (opened on first use), or None if not ready."""
        with self._lock:
            if self._service is None:
                if self.current_generation() is None:
                    return None
                factory = self._service_factory
                if factory is None:
                    from search.service import SearchService

                    def factory(index: str) -> SearchService:
                        return SearchService(index, embedder=self.embedder_name or DEFAULT_EMBEDDER)
                try:
                    self._service = factory(self.index)
                    self._service_error = None
                    for name, model in self.local_rerankers.models().items():
                        self._service.add_reranker(name, model)
                except Exception as err:  # noqa: BLE001 - shown in the UI; retried on the next call
                    self._service_error = f"{type(err).__name__}: {err}"
                    return None
            return self._service

    def warm(self) -> dict[str, float]:
        """Open the serving generation's search service and exercise it before the first visitor
        (:func:`search.warmup.warm_service`) → seconds per step; ``{}`` when nothing serves yet."""
        from search.warmup import warm_service

        svc = self.service()
        return warm_service(svc) if svc is not None else {}

    # ---------------------------------------------------------------------------------------- status
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
        stage, error class, a short message without server paths and a hint (Vietnamese); ``rerankers``: each
        model's state, reason code and Vietnamese message (:func:`search.ui.messages.rerankers_json`)."""
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
            message = msg.index_building_short(BUILD_STAGES_VI.get(stage, stage))
        elif failure is not None:
            message = build_failure_text(failure, self.index, st["generation"])
        elif st["generation"] is None:
            message = self.not_ready_message()
        else:
            message = msg.index_ready(self.index, st["generation"])
        building = st["building"]
        return {
            "index": self.index,
            "ready": st["generation"] is not None,
            "generation": st["generation"],
            "building": building,
            "stage": snap.get("stage") if building else None,
            "done": snap.get("done") if building else None,
            "total": snap.get("total") if building else None,
            "build_failed": failure is not None,
            "failure": public_failure,
            "message": message,
            "rerankers": msg.rerankers_json(self.rerankers()),  # {name: {"state", "code", "message"}}, no paths
        }

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
            return msg.index_building(str(snap.get("stage")))
        if snap.get("failure") and self.current_generation() is None:
            return build_failure_text(snap["failure"], self.index)
        if self._service_error:
            return msg.index_open_failed(self._service_error)
        return msg.index_empty(self.index)

    # ------------------------------------------------------------------------------------- metadata
    def doc_meta(self) -> dict[str, dict[str, str]]:
        """``doc_id → {"source", "url"}`` from the demo corpus and the documents uploads kept (read once)."""
        if self._meta is None:
            from indexing.uploads import read_upload_meta

            demo = [Path(self.demo_corpus)] if self.demo_corpus is not None and Path(self.demo_corpus).is_file() else []
            # uploads: only what ingestion kept (a skipped duplicate id does not rewrite a document's origin)
            self._meta = read_upload_meta(self.uploads_dir, read_doc_meta(demo))
        return self._meta

    def passage_lookup(self) -> PassageLookup:
        """The serving generation's passages by id and by document (:class:`search.ui.documents.PassageLookup`;
        read once per generation, empty while none serves)."""
        gen = self.current_generation()
        if self._lookup is None or self._lookup[0] != gen:
            from indexing.edits import current_passages
            from search.ui.documents import PassageLookup

            self._lookup = (gen, PassageLookup(current_passages(self.index) if gen else []))
        return self._lookup[1]

    def restore_alternatives(self, query: str, k: int = 4) -> list[str]:
        """Up to ``k`` restorations of ``query``'s diacritics, most likely first, by the serving generation's
        restorer (:meth:`indexing.restorer.DiacriticRestorer.restore_k`); [] without one."""
        gen = self.current_generation()
        if self._restorer is None or self._restorer[0] != gen:
            from indexing.restorer import RESTORER_FILE, DiacriticRestorer

            path = gens.current_path(self.index_dir)
            model = DiacriticRestorer.load(path / RESTORER_FILE) if path and (path / RESTORER_FILE).is_file() else None
            self._restorer = (gen, model)
        model = self._restorer[1]
        return model.restore_k(query, k) if model is not None else []

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
        key = query_key(query)
        for bench in self.benchmarks().values():
            qid = bench.by_text.get(key)
            if qid is not None:
                return bench, qid
        return None

    def benchmark_examples(self, per_set: int = 4) -> list[str]:
        """A few benchmark questions per bundled set whose relevant passages are in the serving index (all
        sets' first questions when the index is not built yet); cached per serving generation."""
        from indexing.build import current_passages

        gen = self.current_generation()
        if self._bench_examples is not None and self._bench_examples[0] == gen and gen is not None:
            return list(self._bench_examples[1])
        try:
            known = {p.doc_id for p in current_passages(self.index)}
        except Exception:  # noqa: BLE001 - examples are a convenience
            known = set()
        out = examples_in_index(self.benchmarks().values(), known, per_set)
        self._bench_examples = (gen, out)
        return list(out)

    # ---------------------------------------------------------------------------------------- search
    def reranker_recommended(self, name: str) -> bool:
        """Whether reranker ``name`` may be the default (see :func:`reranker.backends.recommended_by_default`);
        rerankers injected by a test/custom setup are trusted."""
        if self._reranker_status is not None:
            return True
        from reranker.backends import recommended_by_default

        return recommended_by_default(name)

    def rerankers(self) -> dict[str, str]:
        """What visitors see: ``{name: RerankerStatus}`` (reads as "available" | "loaded" | "unavailable:
        <reason>. <how to fix>"; ``.state`` and the reason's ``.code`` kept) with no server path (model dirs
        redacted to their last part); admins get :meth:`reranker_details`."""
        from reranker.availability import as_status  # statuses keep their state and code (RerankerStatus)

        return {name: as_status(status, name).redacted(redact_paths) for name, status in self.reranker_details().items()}

    def reranker_details(self) -> dict[str, str]:
        """``{name: "available: <dir>" | "loaded: <dir>" | "unavailable: <reason>. <how to fix>"}`` (no weights
        loaded), local model dirs added in the Compare tab last — for admins (server paths included)."""
        return {**self._reranker_states(), **self.local_rerankers.status()}

    def _reranker_states(self) -> dict[str, str]:
        if self._reranker_status is not None:
            return self._reranker_status()
        svc = self._service
        if svc is not None and hasattr(svc, "reranker_status"):
            return svc.reranker_status()
        from reranker.backends import available_rerankers

        return available_rerankers()

    def add_local_reranker(self, path: str) -> tuple[LocalReranker, bool]:
        """Load the model dir ``path`` (sandboxed: :mod:`search.ui.local_rerankers`) and serve it as
        ``local-<dir name>`` → (entry, newly loaded). Raises a ``LocalModelError`` (Vietnamese message)."""
        entry, new = self.local_rerankers.add(path)
        with self._lock:
            svc = self._service
        if svc is not None:
            svc.add_reranker(entry.name, entry.model)
        return entry, new

    def eval_reranker_source(self) -> Any:
        """The rerankers an evaluation may use: the injected ones (tests) or a loader by name, with the local
        model dirs added in the Compare tab."""
        local = self.local_rerankers.models()
        if self.eval_rerankers is not None:
            return {**self.eval_rerankers, **local}
        from reranker.backends import load_reranker

        return lambda name: local[name] if name in local else load_reranker(name)

    def search(self, query: str, pipeline: str | None = "hybrid", top_k: int = 10,
               as_typed: bool = False) -> SearchResult:
        """One search → ``SearchResult`` (``pipeline`` None: the service's default), in the pipeline's lane
        (:mod:`search.ui.lanes`). Raises IndexNotReady while the index has no generation, LaneBusy when the
        lane's waiting room is full."""
        svc = self.service()
        if svc is None:
            raise self.not_ready_error()
        with self.lanes.slot([pipeline or getattr(svc, "default_pipeline", None)]):
            return svc.search(query, pipeline, top_k, as_typed=as_typed)

    def compare(self, query: str, pipelines: list[str], top_k: int = 10) -> dict[str, Any]:
        """The service's ``compare`` on one generation → ``{pipeline: SearchResult | exception}``, in the
        rerank lane when any pipeline reranks. Raises IndexNotReady / LaneBusy like :meth:`search`."""
        svc = self.service()
        if svc is None:
            raise self.not_ready_error()
        with self.lanes.slot(pipelines):
            return svc.compare(query, list(pipelines), top_k)
