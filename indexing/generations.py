"""Index generations: immutable builds of one index, and the ``CURRENT`` pointer that serves one of them.

Layout (see docs/architecture.md)::

    <index_dir>/                 # $VIRANKER_HOME/indexes/<index-name>
        CURRENT                  # one line: the serving generation; replaced atomically (os.replace)
        .lock                    # fcntl lock file held by whoever mutates the index
        generations/<gen>/
            manifest.json        # written LAST: a generation without it is incomplete
            passages.jsonl, bm25/, qdrant/, ...

Generation names are ``g<seq>-<UTC timestamp>`` (e.g. ``g000003-20250101T120000Z``), so sorting by name is
sorting by creation. Every function takes the index directory (``settings.index_dir(name)``).

Mutations (``switch``, ``delete_generation``, ``cleanup_incomplete``, ``prune``) take the index lock
themselves; the lock is re-entrant inside one process, so a builder holding :class:`IndexLock` can call them.
Readers never lock: they read ``CURRENT`` and use :class:`CurrentWatcher` to notice a swap cheaply.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "dir_size",
    "CURRENT_FILE",
    "MANIFEST_FILE",
    "GENERATIONS_DIR",
    "GenerationInfo",
    "IndexBusy",
    "GenerationError",
    "IndexLock",
    "CurrentWatcher",
    "new_generation",
    "generation_path",
    "current",
    "current_path",
    "read_manifest",
    "write_manifest",
    "is_complete",
    "list_generations",
    "switch",
    "rollback",
    "cleanup_incomplete",
    "delete_generation",
    "prune",
    "atomic_write_text",
]

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
GENERATIONS_DIR = "generations"
LOCK_FILE = ".lock"
_GEN_RE = re.compile(r"^g(\d{6,})-[0-9TZ]+$")
_SAFE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class GenerationError(RuntimeError):
    """An operation on generations that cannot be done (unknown, incomplete, or current generation)."""


class IndexBusy(GenerationError):
    """Another process (or thread) holds the index lock."""


@dataclass(frozen=True)
class GenerationInfo:
    """One generation as listed by :func:`list_generations`."""

    name: str
    path: Path
    status: str  # "complete" | "incomplete"
    created: float  # epoch seconds (manifest "created_at", else the directory's mtime)
    is_current: bool
    counts: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no manifest body)."""
        return {
            "name": self.name,
            "status": self.status,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "current": self.is_current,
            "counts": dict(self.counts),
        }


# ------------------------------------------------------------------------------------------------ helpers
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same dir, fsync, os.replace, fsync dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _check_name(gen: str) -> str:
    if not isinstance(gen, str) or not _SAFE_RE.match(gen):
        raise GenerationError(f"invalid generation name {gen!r}")
    return gen


def generation_path(index_dir: str | os.PathLike[str], gen: str) -> Path:
    """``<index_dir>/generations/<gen>`` (name validated; may not exist)."""
    return Path(index_dir) / GENERATIONS_DIR / _check_name(gen)


# ---------------------------------------------------------------------------------------------------- lock
_registry_guard = threading.Lock()
_registry: dict[str, _HeldLock] = {}


@dataclass
class _HeldLock:
    rlock: threading.RLock
    fd: int | None = None
    depth: int = 0


class IndexLock:
    """Exclusive, re-entrant (per process) lock on one index: ``fcntl.flock`` on ``<index_dir>/.lock``.

    >>> with IndexLock(index_dir, timeout=10):   # raises IndexBusy after 10 s of waiting
    ...     ...

    ``timeout=0`` fails immediately when another process holds it; ``None`` waits forever.
    """

    def __init__(self, index_dir: str | os.PathLike[str], timeout: float | None = 0.0) -> None:
        self.index_dir = Path(index_dir)
        self.timeout = timeout
        self._key = str(self.index_dir.resolve())

    def _held(self) -> _HeldLock:
        with _registry_guard:
            held = _registry.get(self._key)
            if held is None:
                held = _registry[self._key] = _HeldLock(threading.RLock())
            return held

    def acquire(self) -> None:
        """Take the lock or raise :class:`IndexBusy`."""
        held = self._held()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        ok = held.rlock.acquire(timeout=-1 if self.timeout is None else max(self.timeout, 0.0))
        if not ok:
            raise IndexBusy(f"index {self.index_dir} is locked by another thread of this process")
        if held.depth > 0:
            held.depth += 1
            return
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        os.close(fd)
                        raise
                    if deadline is not None and time.monotonic() >= deadline:
                        os.close(fd)
                        raise IndexBusy(
                            f"index {self.index_dir} is being modified by another process "
                            f"(lock {self.index_dir / LOCK_FILE}); try again when it finishes"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            held.fd, held.depth = fd, 1
        except BaseException:
            held.rlock.release()
            raise

    def release(self) -> None:
        """Release one level of the lock."""
        held = self._held()
        held.depth -= 1
        if held.depth == 0 and held.fd is not None:
            fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)
            held.fd = None
        held.rlock.release()

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------------------------- generations
def new_generation(index_dir: str | os.PathLike[str]) -> tuple[str, Path]:
    """Create an empty generation directory → ``(name, path)``. The name sorts after all existing ones."""
    gens = Path(index_dir) / GENERATIONS_DIR
    gens.mkdir(parents=True, exist_ok=True)
    seqs = [int(m.group(1)) for p in gens.iterdir() if (m := _GEN_RE.match(p.name))]
    seq = max(seqs, default=0) + 1
    while True:
        name = f"g{seq:06d}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        path = gens / name
        try:
            path.mkdir()
            _fsync_dir(gens)
            return name, path
        except FileExistsError:
            seq += 1


def current(index_dir: str | os.PathLike[str]) -> str | None:
    """Name of the serving generation, or None when the index has none yet."""
    try:
        name = (Path(index_dir) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def current_path(index_dir: str | os.PathLike[str]) -> Path | None:
    """Directory of the serving generation, or None."""
    name = current(index_dir)
    return generation_path(index_dir, name) if name else None


def read_manifest(index_dir: str | os.PathLike[str], gen: str) -> dict[str, Any] | None:
    """The generation's manifest, or None when it is incomplete (no manifest.json)."""
    path = generation_path(index_dir, gen) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:  # written atomically, so this means outside tampering
        raise GenerationError(f"{path} is not valid JSON: {err}") from None


def write_manifest(index_dir: str | os.PathLike[str], gen: str, manifest: dict[str, Any]) -> Path:
    """Write manifest.json atomically (the step that marks the generation complete) → its path."""
    path = generation_path(index_dir, gen)
    if not path.is_dir():
        raise GenerationError(f"generation {gen!r} does not exist in {index_dir}")
    out = path / MANIFEST_FILE
    atomic_write_text(out, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return out


def is_complete(index_dir: str | os.PathLike[str], gen: str) -> bool:
    """True when the generation has its manifest."""
    return (generation_path(index_dir, gen) / MANIFEST_FILE).is_file()


def list_generations(index_dir: str | os.PathLike[str]) -> list[GenerationInfo]:
    """All generations, oldest first, with status, counts (from the manifest) and created time."""
    gens = Path(index_dir) / GENERATIONS_DIR
    if not gens.is_dir():
        return []
    cur = current(index_dir)
    out: list[GenerationInfo] = []
    for path in sorted(p for p in gens.iterdir() if p.is_dir() and _SAFE_RE.match(p.name)):
        try:
            manifest = read_manifest(index_dir, path.name)
        except GenerationError:
            manifest = None
        created = path.stat().st_mtime
        counts: dict[str, int] = {}
        if manifest is not None:
            created = float(manifest.get("created_at", created))
            counts = {k: int(v) for k, v in (manifest.get("counts") or {}).items()}
        out.append(
            GenerationInfo(
                name=path.name,
                path=path,
                status="complete" if manifest is not None else "incomplete",
                created=created,
                is_current=path.name == cur,
                counts=counts,
                manifest=manifest,
            )
        )
    return out


def switch(index_dir: str | os.PathLike[str], gen: str, *, lock_timeout: float | None = 30.0) -> str | None:
    """Point CURRENT at the complete generation ``gen`` (atomic) → the previous current name."""
    with IndexLock(index_dir, timeout=lock_timeout):
        if not generation_path(index_dir, gen).is_dir():
            raise GenerationError(f"no generation {gen!r} in {index_dir}")
        if not is_complete(index_dir, gen):
            raise GenerationError(f"generation {gen!r} is incomplete (no {MANIFEST_FILE}); cannot serve it")
        previous = current(index_dir)
        atomic_write_text(Path(index_dir) / CURRENT_FILE, gen + "\n")
        return previous


def rollback(index_dir: str | os.PathLike[str], *, lock_timeout: float | None = 30.0) -> str:
    """Switch to the newest complete generation older than the current one → its name."""
    with IndexLock(index_dir, timeout=lock_timeout):
        cur = current(index_dir)
        older = [
            g for g in list_generations(index_dir) if g.status == "complete" and (cur is None or g.name < cur)
        ]
        if not older:
            raise GenerationError(f"no complete generation older than {cur!r} to roll back to")
        switch(index_dir, older[-1].name)
        return older[-1].name


def delete_generation(
    index_dir: str | os.PathLike[str], gen: str, *, lock_timeout: float | None = 30.0
) -> None:
    """Remove a generation's directory. Refuses the current generation."""
    with IndexLock(index_dir, timeout=lock_timeout):
        if gen == current(index_dir):
            raise GenerationError(
                f"generation {gen!r} is the current one; switch to another before deleting it"
            )
        path = generation_path(index_dir, gen)
        if not path.is_dir():
            raise GenerationError(f"no generation {gen!r} in {index_dir}")
        # Rename first so a half-deleted generation never looks like a real one.
        trash = path.with_name(f".deleting-{gen}-{os.getpid()}")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def cleanup_incomplete(
    index_dir: str | os.PathLike[str],
    *,
    keep: set[str] | frozenset[str] = frozenset(),
    lock_timeout: float | None = 30.0,
) -> list[str]:
    """Delete incomplete generations (except those in ``keep``) and leftover temp dirs → deleted names."""
    deleted: list[str] = []
    with IndexLock(index_dir, timeout=lock_timeout):
        for info in list_generations(index_dir):
            if info.status == "incomplete" and info.name not in keep and not info.is_current:
                delete_generation(index_dir, info.name)
                deleted.append(info.name)
        gens = Path(index_dir) / GENERATIONS_DIR
        if gens.is_dir():
            for p in gens.iterdir():
                if p.name.startswith(".deleting-"):
                    shutil.rmtree(p, ignore_errors=True)
    return deleted


def prune(index_dir: str | os.PathLike[str], keep: int, *, lock_timeout: float | None = 30.0) -> list[str]:
    """Delete complete generations beyond the newest ``keep`` (never the current one) → deleted names."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    deleted: list[str] = []
    with IndexLock(index_dir, timeout=lock_timeout):
        complete = [g for g in list_generations(index_dir) if g.status == "complete"]
        for info in complete[: max(0, len(complete) - keep)]:
            if not info.is_current:
                delete_generation(index_dir, info.name)
                deleted.append(info.name)
    return deleted


# -------------------------------------------------------------------------------------------------- readers
class CurrentWatcher:
    """Cheap change detection for readers: one ``stat`` per call, a read only when the file changed.

    >>> w = CurrentWatcher(index_dir)
    >>> w.current            # generation name at creation (or None)
    >>> if w.changed(): reopen(w.current)
    """

    def __init__(self, index_dir: str | os.PathLike[str]) -> None:
        self.index_dir = Path(index_dir)
        self._sig: tuple[int, int, int] | None = self._stat()
        self.current: str | None = current(self.index_dir)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.index_dir / CURRENT_FILE)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        """True (once) when CURRENT now names a different generation than last seen."""
        sig = self._stat()
        if sig == self._sig:
            return False
        self._sig = sig
        name = current(self.index_dir)
        if name == self.current:
            return False
        self.current = name
        return True


def dir_size(path: str | os.PathLike[str]) -> int:
    """Total bytes of the regular files under ``path`` (0 when missing), e.g. an index's disk use."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total
