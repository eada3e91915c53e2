"""Admin back end for the app: password check with throttling, safe uploads, and background builds.

Nothing here imports Gradio; the app's Admin tab and admin API endpoints call these functions.

Authentication (:class:`AdminAuth`)
    One admin password (``--admin-password`` or ``$VIRANKER_ADMIN_PASSWORD``). Without one, every admin
    action is refused with the reason. Passwords are compared in constant time. Wrong passwords are
    throttled per client (IP): after the n-th failure the client must wait ``base_delay * 2**(n-1)``
    seconds (capped) before the next attempt is even checked, and after ``max_failures`` failures it is
    locked out for ``lockout_s``. A successful login resets the client and issues a random session token
    (valid ``token_ttl_s``) that the UI keeps in server-side session state.

Uploads and their validation (:func:`save_uploads`, :func:`extract_zip_safely`, :func:`extract_beir_zip`,
:func:`load_uploaded_corpus`, :func:`read_doc_meta`)
    Live in :mod:`indexing.uploads` (re-exported here): size caps, zip-slip checks, one capped copy loop.

Background builds (:class:`BuildJob`)
    Runs one build function at a time in a daemon thread, records progress (stage, done/total, log lines)
    for the UI to poll, and keeps the error or result. Searches are untouched: builds write a new
    generation and swap ``CURRENT`` atomically; readers re-open when it changes.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexing.generations import dir_size
from indexing.uploads import (
    MAX_UPLOAD_BYTES,
    MAX_ZIP_MEMBERS,
    STRUCTURED_SUFFIXES,
    TEXT_SUFFIXES,
    UploadBatch,
    UploadError,
    extract_beir_zip,
    extract_zip_safely,
    load_uploaded_corpus,
    read_doc_meta,
    safe_filename,
    save_uploads,
)

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
    "MAX_ZIP_MEMBERS",
]

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
