"""Bulk writing of a fresh Whoosh index: compact posting pools, contiguous parts, optionally in parallel.

:func:`write_documents` is the write step of :meth:`indexing.bm25.BM25Index.build`. By default (``compact``)
every writer uses :class:`~indexing.bm25_pool.CompactPostingPool` (~20 bytes a posting, never spilled to
disk: Whoosh's own pool spills sorted runs past ``limitmb`` and merges them back at commit, the bulk build's
main cost past ~12k passages, ``bench/bm25_build.py``). The documents are cut into ``procs`` contiguous,
near-equal parts; each part is written by its own process (``multiprocessing``, ``fork`` where the platform
has it; with ``procs=1`` in this process) into a private index in a temporary folder inside the index
directory, as one segment — or several, in order, when the pool's estimate passes ``limitmb`` (the memory
bound of each process). The caller's writer holds the index's write lock throughout; at the end the finished
segment files are moved into the index and one commit lists the segments **in input order**. There is no
merge, and document numbers are the input order exactly as with one writer — unlike Whoosh's own ``procs=N``
writer, which hands batches of 100 documents to whichever worker is free (document order, hence BM25's tie
order, changes from run to run) and, merging, re-adds field lengths in their byte-quantized form (the BM25
length totals change). Scores are those of the single writer: statistics (document count, document
frequency, field-length totals) are summed over segments and per-document lengths are quantized the same way.

``compact=False, procs=1`` is the single Whoosh writer exactly as before (Whoosh's pool, one segment).

Failure leaves the index directory as the single writer leaves it (``writer.cancel()``, an empty table of
contents): the parts' folders are removed, no worker outlives the call, and a worker's exception is re-raised
in the parent as itself when it pickles (:class:`BM25BuildError` otherwise, or when a worker dies).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.filedb.filestore import FileStorage

from indexing.bm25_pool import install
from indexing.settings import usable_cpus

__all__ = ["BM25BuildError", "write_documents", "default_procs", "split_ranges", "PART_MIN_DOCS",
           "DEFAULT_MAX_PROCS", "PART_PREFIX"]

#: ``procs=None`` never gives a part fewer documents than this (below it one writer is as fast).
PART_MIN_DOCS = 5_000
#: ``procs=None`` uses at most this many processes (each part is at least one segment a query reads).
DEFAULT_MAX_PROCS = 2
#: Name prefix of the parts' temporary folders inside the index directory.
PART_PREFIX = ".bm25-part-"
_PROGRESS_EVERY = 1000


class BM25BuildError(RuntimeError):
    """A parallel BM25 build failed in a worker process (the worker died, or its exception does not pickle)."""


class _RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of the re-raised exception."""


def default_procs(n_docs: int, max_procs: int = DEFAULT_MAX_PROCS) -> int:
    """Processes for ``n_docs`` documents when the caller does not choose: ≤ ``max_procs`` and the usable CPUs,
    ≥ :data:`PART_MIN_DOCS` documents a part, 1 inside a daemonic process (which may not have children)."""
    if mp.current_process().daemon:
        return 1
    return max(1, min(max_procs, usable_cpus(), n_docs // PART_MIN_DOCS))


def split_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into ``parts`` contiguous ``(start, stop)`` ranges whose sizes differ by at most one
    (empty ranges left out)."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + q + (1 if i < r else 0)
        if stop > start:
            out.append((start, stop))
        start = stop
    return out


def write_documents(
    ix: Any,
    docs: Iterable[dict[str, Any]],
    *,
    procs: int = 1,
    limitmb: float = 256,
    compact: bool = True,
    n_docs: int | None = None,
    tick: Callable[[int], None] | None = None,
    start_method: str | None = None,
) -> int:
    """Write ``docs`` (Whoosh field dicts) into the fresh, empty Whoosh index ``ix`` and commit → documents
    written (module docstring).

    ``procs=1`` streams ``docs``; ``procs > 1`` writes ``procs`` contiguous parts in parallel: each part's
    documents are pickled to a file in its folder, which its worker reads one document at a time (no
    copy-on-write of the caller's objects, nothing large through a pipe). ``n_docs``: how many ``docs``
    yields (so they can be streamed into the parts; otherwise they are materialized to count them).
    ``limitmb``: the posting-pool memory of each writing process (``compact``: a new segment when it is full;
    Whoosh's pool: spilled runs). ``compact=False``: Whoosh's own pool. ``tick(k)`` is called (in this
    process) as ``k`` more documents have been added. ``start_method``: a :mod:`multiprocessing` start method
    (default ``fork`` where available, else ``spawn``). In a daemonic process (no children allowed),
    ``procs`` is 1.
    """
    tick = tick or (lambda _k: None)
    if mp.current_process().daemon:
        procs = 1
    if procs <= 1 and not compact:
        return _write_whoosh(ix, docs, limitmb, tick)
    ranges: list[tuple[int, int]] = []
    if procs > 1:
        if n_docs is None:
            docs = docs if isinstance(docs, Sequence) else list(docs)
            n_docs = len(docs)
        ranges = split_ranges(n_docs, procs)
    writer = ix.writer()  # the write lock, held for the whole build as by the single writer
    root = Path(ix.storage.folder)
    folders: list[Path] = []
    workers: list[Any] = []
    moved: list[Path] = []
    try:
        if len(ranges) > 1:
            n = _run_workers(ix, docs, ranges, limitmb, compact, tick, start_method, root, folders, workers)
        else:
            folders.append(Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}0-", dir=root)))
            n = write_segments(str(folders[0]), ix.indexname, ix.schema, docs, limitmb, compact, tick)
        segments = []
        for folder in folders:
            storage = FileStorage(str(folder))
            for seg in whoosh_index.TOC.read(storage, ix.indexname).segments:
                for name in seg.list_files(storage):
                    os.replace(folder / name, root / name)
                    moved.append(root / name)
                segments.append(seg)
        writer.commit(mergetype=lambda _w, old: [*old, *segments])
        moved = []  # committed: the index owns them
    except BaseException:
        _stop(workers)
        if not writer.is_closed:
            writer.cancel()
        raise
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        for f in moved:
            f.unlink(missing_ok=True)
    return n


def _write_whoosh(ix: Any, docs: Iterable[dict[str, Any]], limitmb: float, tick: Callable[[int], None]) -> int:
    """The single Whoosh writer with Whoosh's pool, straight into ``ix`` (the build before compact pools)."""
    writer = ix.writer(procs=1, limitmb=limitmb)
    n = 0
    try:
        for doc in docs:
            writer.add_document(**doc)
            n += 1
            tick(1)
        writer.commit()
    except BaseException:
        if not writer.is_closed:
            writer.cancel()
        raise
    return n


def write_segments(folder: str, indexname: str, schema: Any, docs: Iterable[dict[str, Any]], limitmb: float,
                   compact: bool, tick: Callable[[int], None]) -> int:
    """``docs`` → a new index in ``folder`` whose segments hold them in order → documents written.

    ``compact``: each segment's pool is a :class:`~indexing.bm25_pool.CompactPostingPool`, and a segment is
    committed (a new one started) when its estimate passes ``limitmb``; otherwise one segment, Whoosh's pool.
    """
    part = whoosh_index.create_in(folder, schema, indexname=indexname)
    limit = int(limitmb * 2**20)
    writer = pool = None
    n = 0
    try:
        for doc in docs:
            if writer is None:
                writer = part.writer(limitmb=limitmb)
                pool = install(writer) if compact else None
            writer.add_document(**doc)
            n += 1
            tick(1)
            if pool is not None and pool.nbytes() > limit:
                writer.commit(merge=False)
                writer = None
        if writer is not None:
            writer.commit(merge=False)
    except BaseException:
        if writer is not None and not writer.is_closed:
            writer.cancel()
        raise
    return n


def _read_docs(job: str, n: int) -> Iterable[dict[str, Any]]:
    """The ``n`` documents pickled one after the other in the file ``job`` (deleted once read)."""
    with open(job, "rb") as fh:
        for _ in range(n):
            yield pickle.load(fh)
    os.unlink(job)


def _write_part(folder: str, indexname: str, schema: Any, job: str, n: int, limitmb: float, compact: bool,
                conn: Connection) -> None:
    """Worker: :func:`write_segments` of the ``n`` documents in the file ``job``, reporting on ``conn``:
    ``("progress", k)``, then ``("done", None)`` or ``("error", exception or None, traceback text)``."""
    gc.freeze()  # a forked worker's collections then skip the parent's objects (no copy-on-write of their pages)
    pending = [0]

    def tick(k: int) -> None:
        pending[0] += k
        if pending[0] >= _PROGRESS_EVERY:
            conn.send(("progress", pending[0]))
            pending[0] = 0

    try:
        write_segments(folder, indexname, schema, _read_docs(job, n), limitmb, compact, tick)
        conn.send(("progress", pending[0]))
        conn.send(("done", None))
    except BaseException as exc:  # reported to the parent, which re-raises it
        try:
            pickle.loads(pickle.dumps(exc))
            portable: BaseException | None = exc
        except Exception:
            portable = None
        conn.send(("error", portable, traceback.format_exc()))
    finally:
        conn.close()


def _run_workers(ix: Any, docs: Iterable[dict[str, Any]], ranges: list[tuple[int, int]], limitmb: float,
                 compact: bool, tick: Callable[[int], None], start_method: str | None, root: Path,
                 folders: list[Path], workers: list[Any]) -> int:
    """Pickle each range of ``docs`` to a file and start its worker (appending to ``folders``/``workers`` for
    the caller's clean-up); wait for them all → documents written."""
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(start_method)
    conns: dict[Connection, int] = {}
    stream = iter(docs)
    try:
        for k, (start, stop) in enumerate(ranges):
            folders.append(Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}{k}-", dir=root)))
            job = folders[k] / "documents.pickle"
            with open(job, "wb") as fh:
                written = 0
                for doc in islice(stream, stop - start):
                    pickle.dump(doc, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    written += 1
            if written != stop - start:
                raise ValueError(f"expected {ranges[-1][1]} documents, got {start + written}")
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_write_part, name=f"bm25-part-{k}", daemon=True,
                               args=(str(folders[k]), ix.indexname, ix.schema, str(job), stop - start, limitmb,
                                     compact, send))
            proc.start()
            send.close()  # the child holds the only write end: EOF when it exits
            workers.append(proc)
            conns[recv] = k
        _collect(conns, workers, tick)
        for proc in workers:
            proc.join()
    finally:
        for conn in conns:
            conn.close()
    return ranges[-1][1]


def _collect(conns: dict[Connection, int], workers: list[Any], tick: Callable[[int], None]) -> None:
    """Read the workers' reports until each is done; re-raise the first error (module docstring)."""
    pending = dict(conns)
    while pending:
        for conn in wait(list(pending)):
            k = pending[conn]
            try:
                kind, *rest = conn.recv()
            except EOFError:
                workers[k].join(5)
                raise BM25BuildError(f"BM25 part {k} exited (code {workers[k].exitcode}) before finishing") from None
            if kind == "progress":
                tick(rest[0])
            elif kind == "done":
                del pending[conn]
            else:
                exc, text = rest
                if exc is None:
                    raise BM25BuildError(f"BM25 part {k} failed:\n{text}")
                raise exc from _RemoteTraceback(text)


def _stop(workers: list[Any]) -> None:
    """Terminate (then kill) every worker still running and reap them all."""
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
