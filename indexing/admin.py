"""Admin back end for the app: password check with throttling, safe uploads, and background builds.

Nothing here imports Gradio; the app's Admin tab and admin API endpoints call these functions.

Authentication (:class:`AdminAuth`, :func:`admin_password`)
    One admin password (``$VIRANKER_ADMIN_PASSWORD_FILE``, ``--admin-password`` or
    ``$VIRANKER_ADMIN_PASSWORD``). Without one, every admin action is refused with the reason. Passwords are
    compared in constant time. Wrong passwords are throttled per client key with exponential back-off capped
    at ``max_delay`` (at most 5 checks a minute per key, no lockout: see :class:`AdminAuth`). A successful
    login resets the key and issues a random session token (valid ``token_ttl_s``) that the UI keeps in
    server-side session state.

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
import os
import secrets
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    "admin_password",
    "PasswordFileError",
    "PASSWORD_FILE_ENV",
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
PASSWORD_FILE_ENV = "VIRANKER_ADMIN_PASSWORD_FILE"


@dataclass(frozen=True)
class AuthResult:
    """Outcome of a login attempt: ``ok``, a message (English; the UI words it by ``reason``), seconds to
    wait, a session token, and ``reason``: ``ok`` · ``wrong`` (password compared, wrong) · ``wait`` (throttled:
    not compared) · ``disabled`` (no admin password configured)."""

    ok: bool
    message: str
    retry_after: float = 0.0
    token: str | None = None
    reason: str = ""


@dataclass
class _ClientState:
    failures: int = 0
    next_allowed: float = 0.0
    last_failure: float = 0.0


class AdminAuth:
    """Admin password check with per-client exponential back-off, plus session tokens. Thread-safe.

    Policy (per client key — the connection's address, see :func:`search.ui.context.client_key`):

    - the n-th consecutive wrong password makes that key wait ``min(base_delay * 2**(n-1), max_delay)``
      seconds before its next attempt is even compared (default 2, 4, 8, 16, 30, 30, … s). The gaps between
      two checks of one key are then 2 + 4 + 8 + 16 + 30 = 60 s for any five in a row, so **a key gets at most
      5 password checks in any minute** (and 2 a minute once at the cap), however many requests it sends;
    - there is **no lockout**: the right password is accepted at the key's next allowed moment, at most
      ``max_delay`` seconds after its last checked attempt; other keys are never affected;
    - a key's failures are forgotten ``forget_s`` seconds after its last failure, and at most ``max_keys``
      keys are remembered (the least recently failed are dropped first), so memory stays bounded.

    ``password_checks`` counts the comparisons made (a throttled attempt is not one). ``clock`` is injectable
    for tests (defaults to ``time.monotonic``).
    """

    def __init__(
        self,
        password: str | None,
        *,
        base_delay: float = 2.0,
        max_delay: float = 30.0,
        forget_s: float = 900.0,
        max_keys: int = 10_000,
        token_ttl_s: float = 8 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._password = (password or "").strip() or None
        self.base_delay, self.max_delay, self.forget_s = base_delay, max_delay, forget_s
        self.max_keys, self.token_ttl_s, self._clock = max_keys, token_ttl_s, clock
        self._clients: OrderedDict[str, _ClientState] = OrderedDict()
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.password_checks = 0

    @property
    def enabled(self) -> bool:
        """True when an admin password is configured."""
        return self._password is not None

    @property
    def disabled_reason(self) -> str:
        """Why admin actions are disabled ("" when enabled)."""
        if self.enabled:
            return ""
        return ("Admin is disabled: no admin password is set. Start the app with VIRANKER_ADMIN_PASSWORD_FILE=<file>, "
                "VIRANKER_ADMIN_PASSWORD or --admin-password <pw>.")

    def delay_after(self, failures: int) -> float:
        """Seconds a key waits after its ``failures``-th consecutive wrong password (0 for none)."""
        if failures <= 0:
            return 0.0
        return float(min(self.base_delay * 2 ** min(failures - 1, 60), self.max_delay))

    def check(self, client: str, password: str | None) -> AuthResult:
        """Verify ``password`` for ``client`` (the connection's address or another stable key) →
        :class:`AuthResult`. While the key must wait the password is not even compared."""
        if not self.enabled:
            return AuthResult(False, self.disabled_reason, reason="disabled")
        key = client or "?"
        now = self._clock()
        with self._lock:
            st = self._clients.get(key)
            if st is not None and now - st.last_failure >= self.forget_s:
                del self._clients[key]  # forgotten: starts again at the first delay
                st = None
            if st is not None and now < st.next_allowed:
                wait = st.next_allowed - now
                return AuthResult(False, f"Please wait {wait:.0f} s before the next attempt.", retry_after=wait,
                                  reason="wait")
            self.password_checks += 1
            given = (password or "").encode("utf-8")
            if hmac.compare_digest(given, self._password.encode("utf-8")):
                self._clients.pop(key, None)
                token = secrets.token_urlsafe(24)
                self._prune_tokens(now)
                self._tokens[token] = now + self.token_ttl_s
                return AuthResult(True, "Logged in.", token=token, reason="ok")
            st = st or _ClientState()
            st.failures += 1
            st.last_failure = now
            delay = self.delay_after(st.failures)
            st.next_allowed = now + delay
            self._clients[key] = st
            self._clients.move_to_end(key)
            while len(self._clients) > self.max_keys:
                self._clients.popitem(last=False)
            return AuthResult(False, f"Wrong password; next try allowed in {delay:.0f} s.", retry_after=delay,
                              reason="wrong")

    def _prune_tokens(self, now: float) -> None:
        """Drop expired tokens (caller holds the lock)."""
        for tok in [t for t, exp in self._tokens.items() if exp <= now]:
            del self._tokens[tok]

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
            return AuthResult(True, "ok", token=token, reason="ok")
        return self.check(client, password)


def admin_password(cli_value: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The admin password: ``$VIRANKER_ADMIN_PASSWORD_FILE`` (the file's first line; not visible in ``ps``),
    else ``cli_value`` (``--admin-password``: visible to every local user in ``ps``), else
    ``$VIRANKER_ADMIN_PASSWORD``; None when none is set. Raises :class:`PasswordFileError` when the file is
    named but unreadable or empty."""
    env = os.environ if environ is None else environ
    path = env.get(PASSWORD_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PasswordFileError(f"{PASSWORD_FILE_ENV}={path}: cannot read it ({type(err).__name__})") from None
        first = text.splitlines()[0].strip() if text.strip() else ""
        if not first:
            raise PasswordFileError(f"{PASSWORD_FILE_ENV}={path}: the file is empty")
        return first
    return cli_value or env.get("VIRANKER_ADMIN_PASSWORD") or None


class PasswordFileError(ValueError):
    """``$VIRANKER_ADMIN_PASSWORD_FILE`` names a file that cannot be read or is empty."""


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
