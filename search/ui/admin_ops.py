"""The app's write side: the demo build, uploads, rebuilds, deletes, rollback and switch.

:class:`AdminOps` is mixed into :class:`search.ui.backend.Backend` (it uses the backend's index state:
``index``, ``index_dir``, ``uploads_dir``, ``job``, ``demo_corpus``, ``precomputed``, ``embedder()``,
``current_generation()``). Every build runs in the background on ``job`` (:class:`indexing.admin.BuildJob`)
and writes a new generation; the serving one keeps serving until ``CURRENT`` is swapped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing import generations as gens
from indexing.admin import BuildBusy, NothingToRetry, UploadError, dir_size, save_uploads
from indexing.uploads import write_kept_meta

if TYPE_CHECKING:
    from indexing.admin import BuildJob
    from indexing.embedders import Embedder

__all__ = ["AdminOps"]

NO_GENERATION = "chỉ mục chưa có thế hệ nào"


class AdminOps:
    """Write-side operations of :class:`~search.ui.backend.Backend` (see the module docstring)."""

    index: str
    index_dir: Path
    uploads_dir: Path
    job: BuildJob
    demo_corpus: Path | None
    precomputed: Path | None
    embedder_name: str
    _meta: dict[str, dict[str, str]] | None
    current_generation: Callable[[], str | None]  # Backend's methods, declared for readers and type checkers
    embedder: Callable[[], Embedder | None]
    service: Callable[[], Any]
    reranker_details: Callable[[], dict[str, str]]

    # ------------------------------------------------------------------------------------ demo build
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
                self.job.log(f"chỉ mục {self.index!r} trống và không có corpus demo để xây")
            else:
                self._cleanup_incomplete()
            return False
        if reason == "vectors":
            self.job.log(f"chỉ mục {self.index!r} đang phục vụ thế hệ chỉ có BM25 của một lần xây demo chưa xong: "
                         "tính lại các vector")
        self.start_demo_build()
        return True

    def start_demo_build(self) -> None:
        """Start the demo build (a ``"demo"`` job) in the background. Raises BuildBusy while a build runs."""
        self.job.start(f"xây chỉ mục {self.index!r} từ {Path(self.demo_corpus).name}", self._build_demo,
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
            self.job.log(f"đã xoá thế hệ dở dang của {self.index!r}: {', '.join(deleted)}")
        return deleted

    def index_embedder(self) -> Embedder | None:
        """The embedder that matches the current index's vectors (None when the index has none): one already
        loaded for that model (the app's, or the search service's query embedder), else a
        :class:`~indexing.embedders.LazyEmbedder` of the index's, kept for the next change — a delete embeds
        nothing and so loads nothing (it used to load the app's model and a fresh copy of the index's)."""
        from indexing.build import current_manifest
        from indexing.embedders import LazyEmbedder

        want = (current_manifest(self.index) or {}).get("embedder")
        if not want:
            return None
        model_id = str(want.get("model_id"))
        query_embedders = getattr(getattr(self, "_service", None), "query_embedders", None)
        loaded = [self._embedder] + (list(query_embedders()) if callable(query_embedders) else [])
        for emb in loaded:
            if emb is not None and str(emb.model_id) == model_id:
                return emb
        cache: dict[tuple[str, str], LazyEmbedder] = self.__dict__.setdefault("_index_embedders", {})
        name = str(want.get("name") or self.embedder_name)
        key = (name, model_id)
        if key not in cache:
            cache[key] = LazyEmbedder(name, model_id, int(want.get("dim") or 0))
        return cache[key]

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
                self.job.log(f"bỏ qua vector tính sẵn {self.precomputed.name}: {err}")
            if pre is not None and pre.model_id != getattr(embedder, "model_id", None):
                # vectors of another model are useless here: treat as absent (BM25 first, then embed)
                self.job.log(f"bỏ qua vector tính sẵn {self.precomputed.name}: chúng của "
                             f"{pre.model_id!r}, mô hình embedding là {getattr(embedder, 'model_id', None)!r}")
                pre = None
            if pre is not None:
                progress("precomputed vectors", 1, 1, message=f"nạp sẵn bộ đệm embedding từ {self.precomputed.name}")
        extra = {"ingest": report.to_dict(), "source": "demo corpus"}
        if embedder is not None and pre is None and self.current_generation() is None:
            progress("bm25-only generation", 0, 1,
                     message="không có vector tính sẵn: phục vụ BM25 trước trong lúc tính vector")
            build_generation(self.index, passages, None, progress_callback=progress, operation="build-bm25-first",
                             extra=extra)
        return build_generation(self.index, passages, embedder, precomputed=pre, progress_callback=progress,
                                extra=extra)

    # ------------------------------------------------------------------------------------ statistics
    def admin_stats(self) -> dict[str, Any]:
        """Statistics of the index: serving generation, counts, embedder, build time, disk use."""
        from indexing.build import current_manifest

        m = current_manifest(self.index) or {}
        gens_list = gens.list_generations(self.index_dir) if self.index_dir.is_dir() else []
        uploads = [p for p in self.uploads_dir.iterdir() if p.is_dir()] if self.uploads_dir.is_dir() else []
        emb = m.get("embedder") or {}
        counts = m.get("counts") or {}
        return {
            "index": self.index,
            "generation": self.current_generation(),
            "operation": m.get("operation"),
            "created": m.get("created"),
            "passages": counts.get("passages"),
            "documents": counts.get("documents"),
            "vectors": counts.get("vectors"),
            "vector_store": self.vector_store_status(),
            "embedder": emb.get("model_id"),
            "build_seconds": m.get("build_seconds"),
            "generations": len(gens_list),
            "disk_mb": round(dir_size(self.index_dir) / 2**20, 1),
            "uploads": len(uploads),
            "building": self.job.running,
            "rerankers": self.reranker_details(),
        }

    def vector_store_status(self) -> str | None:
        """The serving generation's vector store for admins: its error when it does not answer (e.g.
        ``Qdrant server at http://… is not reachable …``, the real cause), ``"ok"``, or None (no service)."""
        svc = self.service()
        if svc is None or not hasattr(svc, "status"):
            return None
        st = svc.status()
        if st.get("error"):
            return None
        return st.get("vector_error") or "ok"

    def admin_generations(self) -> list[dict[str, Any]]:
        """All generations, newest first (name, status, created, current, counts)."""
        if not self.index_dir.is_dir():
            return []
        return [g.to_dict() for g in reversed(gens.list_generations(self.index_dir))]

    # ------------------------------------------------------------------------------------- serving
    def admin_rollback(self) -> str:
        """Switch to the previous complete generation → its name (GenerationError when there is none)."""
        return gens.rollback(self.index_dir, lock_timeout=2.0)

    def admin_switch(self, gen: str) -> str:
        """Serve generation ``gen`` (atomic ``CURRENT`` swap) → the previous one."""
        return gens.switch(self.index_dir, gen, lock_timeout=2.0) or ""

    # -------------------------------------------------------------------------------------- builds
    def admin_start_upload(self, paths: Sequence[str], names: Sequence[str] | None, mode: str) -> str:
        """Store + validate uploaded corpus files and start a background build → report text.

        ``mode``: ``add`` (current passages + new ones; ids already in the index are skipped and reported)
        or ``replace`` (a new generation with only these files). Raises UploadError / RuntimeError.
        """
        from indexing.admin import load_uploaded_corpus
        from indexing.build import add_passages, build_generation, current_passages

        if mode not in ("add", "replace"):
            raise UploadError(f"chế độ không hợp lệ: {mode!r}")
        if self.job.running:
            raise BuildBusy("đang có một lần xây chạy; hãy chờ nó xong")
        batch = save_uploads(paths, self.uploads_dir, names=names)
        existing: set[str] = set()
        if mode == "add":
            for p in current_passages(self.index):
                existing.update((p.id, p.doc_id))
        passages, report = load_uploaded_corpus(batch, existing_ids=existing)
        text = batch.summary() + "\n" + report.summary()
        if not passages:
            shutil.rmtree(batch.dir, ignore_errors=True)  # a refused upload keeps nothing
            raise UploadError(text + "\nKhông có gì để lập chỉ mục: tệp tải lên không có tài liệu hợp lệ.")
        write_kept_meta(batch, {p.doc_id for p in passages})  # what ingestion kept, for the document view
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
        what = "thêm" if mode == "add" else "xây lại"
        self.job.start(f"{what}: {len(passages):,} đoạn văn từ tệp tải lên", work)
        return text

    def admin_start_rebuild(self) -> str:
        """Start rebuilding the current passages into a new generation (same settings) → message."""
        from indexing.build import build_generation, current_manifest, current_passages

        if self.current_generation() is None:
            raise ValueError(NO_GENERATION)
        passages = current_passages(self.index)
        manifest = current_manifest(self.index) or {}
        embedder = self.index_embedder()
        words = "words" in ((manifest.get("bm25") or {}).get("fields") or [])
        self.job.start(f"xây lại: {len(passages):,} đoạn văn",
                       lambda progress: build_generation(self.index, passages, embedder, progress_callback=progress,
                                                         operation="rebuild", words=words))
        return f"Đang xây lại {len(passages):,} đoạn văn thành một thế hệ mới trong nền."

    def admin_retry_build(self) -> str:
        """Start the failed build again (or the demo build when :meth:`demo_build_reason` says it is due) →
        message. Raises :class:`BuildBusy` while a build runs, :class:`NothingToRetry` when nothing failed."""
        from search.ui.messages import retrying

        if self.job.running:
            raise BuildBusy("đang có một lần xây chạy")
        if self.job.failure is not None:
            label = self.job.retry()
        elif self.demo_build_reason() is not None:
            self.start_demo_build()
            label = self.job.snapshot()["label"]
        else:
            raise NothingToRetry("không có lần xây nào thất bại để thử lại")
        self._meta = None
        return retrying(label, self.job.snapshot().get("attempt"))

    def admin_start_delete(self, ids: Sequence[str]) -> str:
        """Start a background rebuild without ``ids`` (passage or document ids) → message.

        Raises ValueError for no ids, KeyError (from the build) is reported by the job."""
        from indexing.build import delete_passages

        ids = [i.strip() for i in ids if i and i.strip()]
        if not ids:
            raise ValueError("chưa nhập id nào")
        if self.current_generation() is None:
            raise ValueError(NO_GENERATION)
        embedder = self.index_embedder()
        self.job.start(f"xoá {len(ids)} id",
                       lambda progress: delete_passages(self.index, ids, embedder, progress_callback=progress))
        return f"Đang xoá {len(ids)} id trong nền: {', '.join(ids[:10])}"
