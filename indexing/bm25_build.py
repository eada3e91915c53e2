"""Bulk writing of a fresh Whoosh index: one writer, or contiguous parts written by parallel processes.

:func:`write_documents` is the write step of :meth:`indexing.bm25.BM25Index.build`. With ``procs=1`` it is
Whoosh's single :class:`~whoosh.writing.SegmentWriter` (one segment). With ``procs=P > 1`` the documents are
cut into ``P`` contiguous, near-equal parts; each part is written by its own process (``multiprocessing``,
``fork`` where the platform has it) as one segment of a private index in a temporary folder inside the index
directory, with Whoosh's ordinary writer; the parent, which holds the index's write lock throughout, moves the
finished segment files into the index and commits a table of contents listing the parts **in input order**.
There is no final merge (the merge is what makes Whoosh's bulk build superlinear, docs/scaling.md), and
document numbers are the input order exactly as with one writer — unlike Whoosh's own ``procs=N``
writer, which hands batches of 100 documents to whichever worker is free, so its document order (and BM25's
tie order) changes from run to run. Scores are those of the single writer: statistics (document count,
document frequency, field-length totals) are summed over segments and per-document lengths are quantized the
same way.

Failure leaves the index directory as the single writer leaves it (``writer.cancel()``): the parts' folders
are removed, no worker outlives the call, and a worker's exception is re-raised in the parent as itself when
it pickles (:class:`BM25BuildError` otherwise, or when a worker dies).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.filedb.filestore import FileStorage

__all__ = ["BM25BuildError", "write_documents", "default_procs", "split_ranges", "PART_MIN_DOCS",
           "DEFAULT_MAX_PROCS", "PART_PREFIX"]

#: ``procs=None`` never gives a part fewer documents than this (below it one writer is as fast).
PART_MIN_DOCS = 5_000
#: ``procs=None`` uses at most this many processes (each part is one segment a query reads).
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
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(max_procs, cpus, n_docs // PART_MIN_DOCS))


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
    limitmb: int = 256,
    tick: Callable[[int], None] | None = None,
    start_method: str | None = None,
) -> int:
    """Write ``docs`` (Whoosh field dicts) into the fresh, empty Whoosh index ``ix`` and commit → documents
    written.

    ``procs=1``: one writer, one segment, ``docs`` streamed. ``procs > 1``: ``docs`` is materialized and
    written as ``procs`` contiguous parts in parallel (module docstring), ``limitmb`` split between them (the
    pools' memory stays that of one writer). ``tick(k)`` is called as ``k`` more documents have been added
    (from the parent process). ``start_method``: a :mod:`multiprocessing` start method (default ``fork``
    where available, else ``spawn``).
    """
    tick = tick or (lambda _k: None)
    if procs <= 1:
        return _write_serial(ix, docs, limitmb, tick)
    docs = docs if isinstance(docs, Sequence) else list(docs)
    ranges = split_ranges(len(docs), procs)
    if len(ranges) <= 1:
        return _write_serial(ix, docs, limitmb, tick)
    return _write_parallel(ix, docs, ranges, max(16, limitmb // len(ranges)), tick, start_method)


def _write_serial(ix: Any, docs: Iterable[dict[str, Any]], limitmb: int, tick: Callable[[int], None]) -> int:
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


def _write_part(folder: str, indexname: str, schema: Any, docs: Sequence[dict[str, Any]], limitmb: int,
                conn: Connection) -> None:
    """Worker: ``docs`` → one committed segment of a new index in ``folder``; reports on ``conn``:
    ``("progress", k)``, then ``("done", None)`` or ``("error", exception or None, traceback text)``."""
    try:
        part = whoosh_index.create_in(folder, schema, indexname=indexname)
        writer = part.writer(limitmb=limitmb)
        try:
            for i, doc in enumerate(docs, 1):
                writer.add_document(**doc)
                if i % _PROGRESS_EVERY == 0:
                    conn.send(("progress", _PROGRESS_EVERY))
            writer.commit(merge=False)
        except BaseException:
            if not writer.is_closed:
                writer.cancel()
            raise
        conn.send(("progress", len(docs) % _PROGRESS_EVERY))
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


def _write_parallel(ix: Any, docs: Sequence[dict[str, Any]], ranges: list[tuple[int, int]], limitmb: int,
                    tick: Callable[[int], None], start_method: str | None) -> int:
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(start_method)
    root = Path(ix.storage.folder)
    writer = ix.writer()  # the write lock, held for the whole build as by the single writer
    folders: list[Path] = []
    workers: list[Any] = []
    conns: dict[Connection, int] = {}
    moved: list[Path] = []
    committed = False
    try:
        for k, (start, stop) in enumerate(ranges):
            folders.append(Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}{k}-", dir=root)))
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_write_part, name=f"bm25-part-{k}", daemon=True,
                               args=(str(folders[k]), ix.indexname, ix.schema, docs[start:stop], limitmb, send))
            proc.start()
            send.close()  # the child holds the only write end: EOF when it exits
            workers.append(proc)
            conns[recv] = k
        _collect(conns, workers, tick)
        for proc in workers:
            proc.join()
        segments = []
        for folder in folders:
            storage = FileStorage(str(folder))
            for seg in whoosh_index.TOC.read(storage, ix.indexname).segments:
                for name in seg.list_files(storage):
                    os.replace(folder / name, root / name)
                    moved.append(root / name)
                segments.append(seg)
        writer.commit(mergetype=lambda _w, old: [*old, *segments])
        committed = True
    except BaseException:
        _stop(workers)
        if not writer.is_closed:
            writer.cancel()
        raise
    finally:
        for conn in conns:
            conn.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        if not committed:
            for f in moved:
                f.unlink(missing_ok=True)
    return len(docs)


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
