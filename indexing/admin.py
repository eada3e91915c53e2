"""Admin back end for the app: password check with throttling, safe uploads, and background builds.

Nothing here imports Gradio; the app's Admin tab and admin API endpoints call these functions.

Authentication (:class:`AdminAuth`)
    One admin password (``--admin-password`` or ``$VIRANKER_ADMIN_PASSWORD``). Without one, every admin
    action is refused with the reason. Passwords are compared in constant time. Wrong passwords are
    throttled per client (IP): after the n-th failure the client must wait ``base_delay * 2**(n-1)``
    seconds (capped) before the next attempt is even checked, and after ``max_failures`` failures it is
    locked out for ``lockout_s``. A successful login resets the client and issues a random session token
    (valid ``token_ttl_s``) that the UI keeps in server-side session state.

Uploads (:func:`save_uploads`, :func:`extract_zip_safely`)
    Accepted: ``.jsonl/.ndjson/.json``, ``.csv/.tsv``, ``.txt/.md`` and ``.zip`` of those. The total upload
    is capped (default 50 MB, also the cap on a ZIP's *uncompressed* bytes, counted while streaming so a
    lying header cannot exceed it). ZIP members with absolute paths, drive letters, ``..`` parts, symlinks
    or encryption reject the whole ZIP (zip-slip); every write target is resolved and must lie inside the
    batch directory. Each upload goes to a fresh ``<uploads>/<batch>/`` directory; nothing is written
    elsewhere, and a rejected upload leaves no files behind.

Validation (:func:`load_uploaded_corpus`)
    Uploaded files → ``indexing.corpus.load_corpus`` → ``(passages, IngestReport)``: structured files are
    read one by one, loose ``.txt/.md`` files through their folder (``docs/``).

Background builds (:class:`BuildJob`)
    Runs one build function at a time in a daemon thread, records progress (stage, done/total, log lines)
    for the UI to poll, and keeps the error or result. Searches are untouched: builds write a new
    generation and swap ``CURRENT`` atomically; readers re-open when it changes.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat
import threading
import time
import traceback
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "AdminAuth",
    "AuthResult",
    "UploadError",
    "UploadBatch",
    "MAX_UPLOAD_BYTES",
    "STRUCTURED_SUFFIXES",
    "TEXT_SUFFIXES",
    "safe_filename",
    "save_uploads",
    "extract_zip_safely",
    "extract_beir_zip",
    "load_uploaded_corpus",
    "read_doc_meta",
    "BuildJob",
    "BuildBusy",
    "NothingToRetry",
    "dir_size",
]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_ZIP_MEMBERS = 10_000
STRUCTURED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
ZIP_SUFFIX = ".zip"
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


# ------------------------------------------------------------------------------------------------- auth
@dataclass(frozen=True)
class AuthResult:
    """Outcome of a login attempt: ``ok``, a message for the user, seconds to wait, and a session token."""

    ok: bool
    message: str
    retry_after: float = 0.0
    token: str | None = None


@dataclass
class _ClientState:
    failures: int = 0
    next_allowed: float = 0.0


class AdminAuth:
    """Admin password check with per-client exponential back-off and lockout, plus session tokens.

    ``clock`` is injectable for tests (defaults to ``time.monotonic``). Thread-safe.
    """

    def __init__(
        self,
        password: str | None,
        *,
        max_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        lockout_s: float = 300.0,
        token_ttl_s: float = 8 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._password = (password or "").strip() or None
        self.max_failures, self.base_delay, self.max_delay = max_failures, base_delay, max_delay
        self.lockout_s, self.token_ttl_s, self._clock = lockout_s, token_ttl_s, clock
        self._clients: dict[str, _ClientState] = {}
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when an admin password is configured."""
        return self._password is not None

    @property
    def disabled_reason(self) -> str:
        """Why admin actions are disabled ("" when enabled)."""
        if self.enabled:
            return ""
        return (
            "Admin is disabled: no admin password is set. Start the app with --admin-password <pw> "
            "or set VIRANKER_ADMIN_PASSWORD."
        )

    def check(self, client: str, password: str | None) -> AuthResult:
        """Verify ``password`` for ``client`` (an IP or other stable key) → :class:`AuthResult`.

        While a client must wait (back-off or lockout) the password is not even compared.
        """
        if not self.enabled:
            return AuthResult(False, self.disabled_reason)
        now = self._clock()
        with self._lock:
            st = self._clients.setdefault(client or "?", _ClientState())
            if now < st.next_allowed:
                wait = st.next_allowed - now
                locked = st.failures >= self.max_failures
                msg = (f"Too many failed attempts: locked, try again in {wait:.0f} s." if locked
                       else f"Please wait {wait:.0f} s before the next attempt.")
                return AuthResult(False, msg, retry_after=wait)
            given = (password or "").encode("utf-8")
            if hmac.compare_digest(given, self._password.encode("utf-8")):
                self._clients.pop(client or "?", None)
                token = secrets.token_urlsafe(24)
                self._tokens[token] = now + self.token_ttl_s
                return AuthResult(True, "Logged in.", token=token)
            st.failures += 1
            if st.failures >= self.max_failures:
                delay = self.lockout_s
                msg = f"Wrong password. Too many failures: locked for {delay:.0f} s."
            else:
                delay = min(self.base_delay * 2 ** (st.failures - 1), self.max_delay)
                left = self.max_failures - st.failures
                msg = f"Wrong password ({left} attempt(s) left before lockout); next try allowed in {delay:.0f} s."
            st.next_allowed = now + delay
            return AuthResult(False, msg, retry_after=delay)

    def valid_token(self, token: str | None) -> bool:
        """True when ``token`` was issued by :meth:`check` and has not expired or been revoked."""
        if not token or not self.enabled:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if self._clock() >= expiry:
                self._tokens.pop(token, None)
                return False
            return True

    def revoke(self, token: str | None) -> None:
        """Log a session out."""
        with self._lock:
            self._tokens.pop(token or "", None)

    def authorize(self, client: str, *, token: str | None = None, password: str | None = None) -> AuthResult:
        """Token first (no throttling cost), else a throttled password check."""
        if token and self.valid_token(token):
            return AuthResult(True, "ok", token=token)
        return self.check(client, password)


# ---------------------------------------------------------------------------------------------- uploads
class UploadError(ValueError):
    """An upload that was refused as a whole (size, type, unsafe ZIP); nothing of it was kept."""


@dataclass
class UploadBatch:
    """Files kept from one upload: ``structured`` (JSONL/CSV) and ``texts`` (.txt/.md under ``docs``)."""

    dir: Path
    structured: list[Path] = field(default_factory=list)
    texts: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0

    @property
    def docs_dir(self) -> Path:
        """Folder holding the loose text files (ingested as one folder)."""
        return self.dir / "docs"

    @property
    def inputs(self) -> list[Path]:
        """Inputs for ``load_corpus``: each structured file, then the text folder when it has files."""
        return list(self.structured) + ([self.docs_dir] if self.texts else [])

    def summary(self) -> str:
        """One line per kept/skipped file group."""
        lines = [f"Kept {len(self.structured)} data file(s) and {len(self.texts)} text file(s), "
                 f"{self.total_bytes:,} bytes."]
        if self.skipped:
            lines.append("Skipped (unsupported): " + ", ".join(self.skipped[:20])
                         + (f" … and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""))
        return "\n".join(lines)


def safe_filename(name: str, default: str = "upload") -> str:
    """A user-supplied file name → a safe base name (no directories, only ``[A-Za-z0-9._-]``)."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = _SAFE_NAME_RE.sub("_", base).strip("._") or default
    return base[:120]


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    for i in range(1, 10_000):
        cand = path.with_name(f"{stem}-{i}{suffix}")
        if not cand.exists():
            return cand
    raise UploadError(f"too many files named {path.name!r}")


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _unsafe_member(name: str) -> str | None:
    """Reason a ZIP member name is unsafe, or None."""
    if "\x00" in name:
        return "NUL byte in name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "absolute path"
    if ".." in norm.split("/"):
        return "'..' in path"
    return None


def extract_zip_safely(
    zip_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_members: int = MAX_ZIP_MEMBERS,
) -> tuple[list[Path], list[Path], list[str], int]:
    """Extract the supported files of a ZIP into ``dest`` → ``(structured, texts, skipped, bytes)``.

    Structured files go to ``dest/files/``, text files to ``dest/docs/<their path in the zip>``. Raises
    :class:`UploadError` (after removing anything it wrote) for: unreadable ZIP, too many members,
    unsafe member names (absolute, drive, ``..``), symlinks, encrypted members, or more than ``max_bytes``
    uncompressed bytes (counted while reading).
    """
    dest = Path(dest)
    written: list[Path] = []
    try:
        try:
            zf = zipfile.ZipFile(zip_path)
        except (zipfile.BadZipFile, OSError) as err:
            raise UploadError(f"{Path(zip_path).name}: not a readable ZIP file ({err})") from None
        with zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise UploadError(f"ZIP has {len(infos):,} members; the limit is {max_members:,}")
            for info in infos:
                reason = _unsafe_member(info.filename)
                if reason:
                    raise UploadError(f"unsafe ZIP member {info.filename!r}: {reason} (zip-slip); upload refused")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UploadError(f"unsafe ZIP member {info.filename!r}: symbolic link; upload refused")
                if info.flag_bits & 0x1:
                    raise UploadError(f"ZIP member {info.filename!r} is encrypted; upload refused")
            declared = sum(i.file_size for i in infos if not i.is_dir())
            if declared > max_bytes:
                raise UploadError(f"ZIP expands to {declared:,} bytes; the limit is {max_bytes:,}")
            structured: list[Path] = []
            texts: list[Path] = []
            skipped: list[str] = []
            total = 0
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue
                low = parts[-1].lower()
                if low.endswith(STRUCTURED_SUFFIXES):
                    target = _unique(dest / "files" / safe_filename(parts[-1]))
                    bucket = structured
                elif low.endswith(TEXT_SUFFIXES):
                    target = dest / "docs" / Path(*[safe_filename(p) for p in parts])
                    target = _unique(target)
                    bucket = texts
                else:
                    skipped.append(info.filename)
                    continue
                if not _inside(dest, target):  # defence in depth; names are already sanitised
                    raise UploadError(f"unsafe ZIP member {info.filename!r}: resolves outside the upload folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    written.append(target)
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(f"ZIP expands to more than {max_bytes:,} bytes (limit); upload refused")
                        out.write(chunk)
                bucket.append(target)
            return structured, texts, skipped, total
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def extract_beir_zip(
    zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], *, max_bytes: int = MAX_UPLOAD_BYTES
) -> Path:
    """Extract a BEIR dataset ZIP (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``, optionally inside one
    top folder) into ``dest`` → ``dest`` (the dataset folder).

    Only those files are written, each to a fixed path under ``dest``; member names are checked as in
    :func:`extract_zip_safely` and uncompressed bytes are capped. Raises :class:`UploadError` when the ZIP is
    unsafe, too large, or not a BEIR dataset.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadError(f"{Path(zip_path).name}: not a readable ZIP file ({err})") from None
    written: list[Path] = []
    try:
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise UploadError(f"ZIP has {len(infos):,} members; the limit is {MAX_ZIP_MEMBERS:,}")
            for info in infos:
                reason = _unsafe_member(info.filename)
                if reason:
                    raise UploadError(f"unsafe ZIP member {info.filename!r}: {reason} (zip-slip); upload refused")
                if stat.S_ISLNK(info.external_attr >> 16) or info.flag_bits & 0x1:
                    raise UploadError(f"ZIP member {info.filename!r} is a symbolic link or encrypted; refused")
            if sum(i.file_size for i in infos) > max_bytes:
                raise UploadError(f"ZIP expands to more than {max_bytes:,} bytes (limit)")
            wanted: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue
                if len(parts) >= 1 and parts[-1] in ("corpus.jsonl", "queries.jsonl"):
                    wanted.setdefault(parts[-1], info)
                elif len(parts) >= 2 and parts[-2] == "qrels" and parts[-1].endswith(".tsv"):
                    wanted.setdefault("qrels/" + safe_filename(parts[-1]), info)
            missing = [n for n in ("corpus.jsonl", "queries.jsonl") if n not in wanted]
            if missing or not any(k.startswith("qrels/") for k in wanted):
                raise UploadError(
                    "not a BEIR dataset: the ZIP needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv "
                    f"(missing: {', '.join(missing) or 'qrels/*.tsv'})"
                )
            total = 0
            for rel, info in wanted.items():
                target = dest / rel
                if not _inside(dest, target):
                    raise UploadError(f"unsafe ZIP member {info.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    written.append(target)
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(f"ZIP expands to more than {max_bytes:,} bytes (limit)")
                        out.write(chunk)
        return dest
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def save_uploads(
    paths: Sequence[str | os.PathLike[str]],
    uploads_root: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    names: Sequence[str] | None = None,
) -> UploadBatch:
    """Copy uploaded files (and safely extract ZIPs) into a new ``<uploads_root>/<batch>/`` → :class:`UploadBatch`.

    ``names`` optionally gives the user's original file names (defaults to the uploaded paths' names).
    The sum of file sizes (ZIPs counted uncompressed) must stay within ``max_bytes``. Raises
    :class:`UploadError` for no files, unsupported types, or limits; the batch directory is removed then.
    """
    if not paths:
        raise UploadError("no file uploaded")
    root = Path(uploads_root)
    root.mkdir(parents=True, exist_ok=True)
    batch_dir = root / f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    batch_dir.mkdir()
    batch = UploadBatch(dir=batch_dir)
    try:
        sizes = []
        for p in paths:
            path = Path(p)
            if not path.is_file():
                raise UploadError(f"{path.name}: not a file")
            sizes.append(path.stat().st_size)
        if sum(sizes) > max_bytes:
            raise UploadError(f"upload is {sum(sizes):,} bytes; the limit is {max_bytes:,} ({max_bytes // 2**20} MB)")
        for i, p in enumerate(paths):
            path = Path(p)
            name = safe_filename(names[i] if names and i < len(names) else path.name)
            low = name.lower()
            if low.endswith(ZIP_SUFFIX):
                s, t, sk, n = extract_zip_safely(path, batch_dir, max_bytes=max_bytes - batch.total_bytes)
                batch.structured += s
                batch.texts += t
                batch.skipped += [f"{name}:{m}" for m in sk]
                batch.total_bytes += n
                continue
            if low.endswith(STRUCTURED_SUFFIXES):
                target = _unique(batch_dir / "files" / name)
                bucket = batch.structured
            elif low.endswith(TEXT_SUFFIXES):
                target = _unique(batch_dir / "docs" / name)
                bucket = batch.texts
            else:
                raise UploadError(
                    f"{name}: unsupported file type; upload .jsonl/.json/.csv/.tsv/.txt/.md or a .zip of them"
                )
            if not _inside(batch_dir, target):
                raise UploadError(f"{name}: resolves outside the upload folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            batch.total_bytes += target.stat().st_size
            bucket.append(target)
        if not batch.structured and not batch.texts:
            raise UploadError("the upload contains no supported files (.jsonl/.json/.csv/.tsv/.txt/.md)")
        return batch
    except BaseException:
        shutil.rmtree(batch_dir, ignore_errors=True)
        raise


def load_uploaded_corpus(batch: UploadBatch, existing_ids: Iterable[str] = (), **kw: Any) -> tuple[list, Any]:
    """Validate and read an :class:`UploadBatch` → ``(passages, IngestReport)`` via ``indexing.corpus``.

    Ids already in the index (``existing_ids``) are reported as duplicates and skipped. Whole-file problems
    raise ``indexing.corpus.IngestError``.
    """
    from indexing.corpus import load_corpus

    return load_corpus(batch.inputs, existing_ids=existing_ids, **kw)


def read_doc_meta(paths: Iterable[str | os.PathLike[str]]) -> dict[str, dict[str, str]]:
    """JSONL corpus files → ``{doc_id: {"source": ..., "url": ...}}`` for records that carry those fields.

    Used to show a document's origin (e.g. a Wikipedia link); unreadable lines are ignored here (they are
    reported by ingestion).
    """
    meta: dict[str, dict[str, str]] = {}
    for p in paths:
        path = Path(p)
        if not path.is_file() or not path.name.lower().endswith((".jsonl", ".ndjson", ".json")):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                doc_id = next((obj[k] for k in ("_id", "id", "doc_id", "docid") if isinstance(obj.get(k), str)), None)
                info = {k: obj[k] for k in ("source", "url") if isinstance(obj.get(k), str) and obj[k]}
                if doc_id and info:
                    meta[doc_id] = info
    return meta


def dir_size(path: str | os.PathLike[str]) -> int:
    """Total bytes of the regular files under ``path`` (0 when missing)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


# ------------------------------------------------------------------------------------- background builds
class BuildBusy(RuntimeError):
    """A build was requested while another one runs (one build at a time)."""


class NothingToRetry(RuntimeError):
    """:meth:`BuildJob.retry` was called but the last job did not fail (or no job ran)."""


class BuildJob:
    """One background build at a time, with progress the UI can poll.

    ``start(label, fn, kind=...)`` runs ``fn(progress)`` in a daemon thread, where ``progress(stage,
    done=None, total=None, message="")`` records progress. ``snapshot()`` returns a dict for the UI. Starting
    while a job runs raises :class:`BuildBusy` (a ``RuntimeError``).

    A failed job keeps a structured ``failure`` (``kind``, ``label``, the ``stage`` it was in, ``error_type``,
    ``message``, ``finished``, ``attempt``) next to the one-line ``error``; :meth:`retry` runs the same
    function again. Progress is recorded only through ``progress`` (nothing patches tqdm): the build
    functions' own console tqdm bars are independent of it.
    """

    def __init__(self, log_lines: int = 200, echo: Callable[[str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=log_lines)
        self._echo = echo
        self._state: dict[str, Any] = {"running": False, "label": None, "kind": None, "error": None,
                                       "failure": None, "attempt": 0}
        self._last: tuple[str, Callable[[Callable[..., None]], Any], str] | None = None

    @property
    def running(self) -> bool:
        """True while a job thread is alive."""
        with self._lock:
            return bool(self._state.get("running"))

    @property
    def failure(self) -> dict[str, Any] | None:
        """The last job's failure (see the class doc), or None when it succeeded, runs, or none ran."""
        with self._lock:
            f = self._state.get("failure")
            return dict(f) if f else None

    def log(self, line: str) -> None:
        """Append a time-stamped log line (and echo it to the console when configured)."""
        stamped = f"[{time.strftime('%H:%M:%S')}] {line}"
        with self._lock:
            self._log.append(stamped)
        if self._echo:
            self._echo(stamped)

    def progress(self, stage: str, done: int | float | None = None, total: int | float | None = None,
                 message: str = "") -> None:
        """Record progress of the running job; logs when the stage changes or a message is given."""
        with self._lock:
            changed = stage != self._state.get("stage")
            self._state.update(stage=stage, done=done, total=total, message=message, updated=time.time())
        if changed or message:
            extra = f" {done}/{total}" if total else ""
            self.log(f"{stage}{extra}{': ' + message if message else ''}")

    def start(self, label: str, fn: Callable[[Callable[..., None]], Any], kind: str = "build") -> None:
        """Run ``fn(self.progress)`` in a background thread. Raises :class:`BuildBusy` if a job is running.

        ``kind`` tags the job (the app uses ``"demo"`` for its first-start build) in snapshots and failures;
        ``attempt`` counts consecutive starts of the same label and kind."""
        with self._lock:
            if self._state.get("running"):
                raise BuildBusy(f"a build is already running: {self._state.get('label')}")
            same = self._last is not None and self._last[0] == label and self._last[2] == kind
            attempt = int(self._state.get("attempt") or 0) + 1 if same else 1
            self._last = (label, fn, kind)
            self._state = {
                "running": True, "label": label, "kind": kind, "stage": "starting", "done": None, "total": None,
                "message": "", "started": time.time(), "finished": None, "error": None, "failure": None,
                "result": None, "attempt": attempt,
            }
            self._thread = threading.Thread(target=self._run, args=(fn,), name=f"build:{label}", daemon=True)
        self.log(f"started: {label}" + (f" (attempt {attempt})" if attempt > 1 else ""))
        self._thread.start()

    def retry(self) -> str:
        """Run the last job's function again when it failed → its label. Raises :class:`NothingToRetry`
        when the last job did not fail, :class:`BuildBusy` while a job runs."""
        with self._lock:
            if self._state.get("running"):
                raise BuildBusy(f"a build is already running: {self._state.get('label')}")
            if self._last is None or not self._state.get("failure"):
                raise NothingToRetry("the last build did not fail; nothing to retry")
            label, fn, kind = self._last
        self.start(label, fn, kind)
        return label

    def _run(self, fn: Callable[[Callable[..., None]], Any]) -> None:
        try:
            result = fn(self.progress)
        except BaseException as err:  # noqa: BLE001 - reported to the UI, the app keeps serving
            with self._lock:
                failure = {
                    "kind": self._state.get("kind"), "label": self._state.get("label"),
                    "stage": self._state.get("stage") or "starting", "error_type": type(err).__name__,
                    "message": str(err), "finished": time.time(), "attempt": self._state.get("attempt"),
                }
                self._state.update(running=False, finished=failure["finished"], failure=failure,
                                   error=f"{type(err).__name__}: {err}", stage="failed")
            self.log(f"FAILED: {type(err).__name__}: {err} (stage {failure['stage']!r})")
            self.log(traceback.format_exc(limit=3).strip().splitlines()[-1])
            return
        with self._lock:
            self._state.update(running=False, finished=time.time(), result=result, stage="done")
        self.log(f"done: {self._state.get('label')}")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends → True if it ended (or none was running)."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    def snapshot(self) -> dict[str, Any]:
        """Copy of the state (``running``, ``label``, ``kind``, ``stage``, ``done``, ``total``, ``message``,
        ``started``, ``finished``, ``error``, ``failure``, ``attempt``, ``result``) plus ``log`` (list of
        lines)."""
        with self._lock:
            snap = dict(self._state)
            if snap.get("failure"):
                snap["failure"] = dict(snap["failure"])
            snap["log"] = list(self._log)
        return snap
