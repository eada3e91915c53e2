"""Why a reranker cannot run here, as a typed code: :class:`UnavailableReason`, carried by the exceptions
(:class:`ModelUnavailable`, :class:`DependencyUnavailable`) and by a reranker's status (:class:`RerankerStatus`).

The code is what a UI words (``search.ui.messages.unavailable_vi``), never the English text: ``reason`` and
``how_to_fix`` stay English, for logs and technical users (the Admin status, the CLI). A status is also the
``str`` the older code reads (``"available: <dir>"`` · ``"loaded[: <dir>]"`` · ``"unavailable: <reason>. <how
to fix>"``), so callers that only check ``startswith("available")`` keep working; new code reads ``.state``
and ``.code``. :class:`UnavailableReason` is defined in :mod:`indexing.availability` (the embedders carry it
too) and re-exported here, so ``from reranker.availability import UnavailableReason`` keeps working.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from indexing.availability import (  # re-exported: the code lives in the lowest layer
    Unavailable,
    UnavailableReason,
)

__all__ = ["UnavailableReason", "RerankerState", "ModelUnavailable", "DependencyUnavailable", "RerankerStatus",
           "as_status", "status_from_error"]


class RerankerState(StrEnum):
    """Whether a reranker can run: its weights are on disk, it is loaded, or it cannot run."""

    AVAILABLE = "available"
    LOADED = "loaded"
    UNAVAILABLE = "unavailable"


class ModelUnavailable(Unavailable):
    """A reranker's weights are not on this machine (or cannot be loaded); fields as
    :class:`indexing.availability.Unavailable` (``hub_id`` None for ours)."""

    kind = "reranker"


class DependencyUnavailable(ModelUnavailable):
    """The weights are there but a package the backend needs does not import (missing or incompatible);
    ``code`` is :attr:`UnavailableReason.PACKAGE_MISSING` or :attr:`UnavailableReason.PACKAGE_BROKEN`."""


class RerankerStatus(str):
    """One reranker's status: the old status text as the ``str`` value, with typed fields.

    ``state`` (:class:`RerankerState`), ``code`` (:class:`UnavailableReason`, None unless unavailable),
    ``path`` (the model dir when known), ``reason`` / ``how_to_fix`` (English detail), ``env`` / ``hub_id`` /
    ``package`` (as on :class:`ModelUnavailable`). Build one with :meth:`available`, :meth:`loaded` or
    :meth:`unavailable`.
    """

    state: RerankerState
    code: UnavailableReason | None

    def __new__(cls, text: str = "", **fields: Any) -> RerankerStatus:
        self = super().__new__(cls, text)
        self.state = RerankerState(fields.get("state", RerankerState.UNAVAILABLE))
        code = fields.get("code")
        self.code = None if code is None else UnavailableReason(code)
        self.path: str | None = fields.get("path")
        self.reason: str = fields.get("reason", "")
        self.how_to_fix: str = fields.get("how_to_fix", "")
        self.env: str | None = fields.get("env")
        self.hub_id: str | None = fields.get("hub_id")
        self.package: str | None = fields.get("package")
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickle / copy keep the fields
        return (_rebuild, (str(self), self.fields()))

    def fields(self) -> dict[str, Any]:
        """The typed fields as a dict (``state`` and ``code`` as their enum members)."""
        return {"state": self.state, "code": self.code, "path": self.path, "reason": self.reason,
                "how_to_fix": self.how_to_fix, "env": self.env, "hub_id": self.hub_id, "package": self.package}

    @property
    def usable(self) -> bool:
        """True when the reranker can run now (available or loaded)."""
        return self.state is not RerankerState.UNAVAILABLE

    @classmethod
    def available(cls, path: Any) -> RerankerStatus:
        """Weights found at ``path`` (nothing loaded)."""
        return cls(f"available: {path}", state=RerankerState.AVAILABLE, path=str(path))

    @classmethod
    def loaded(cls, path: Any = None) -> RerankerStatus:
        """Loaded in this process (``path``: its model dir, when known)."""
        text = "loaded" if path is None else f"loaded: {path}"
        return cls(text, state=RerankerState.LOADED, path=None if path is None else str(path))

    @classmethod
    def unavailable(cls, err: ModelUnavailable) -> RerankerStatus:
        """The status of a reranker that raised ``err``."""
        return cls(f"unavailable: {err.reason}. {err.how_to_fix}", state=RerankerState.UNAVAILABLE, code=err.code,
                   reason=err.reason, how_to_fix=err.how_to_fix, env=err.env, hub_id=err.hub_id,
                   package=err.package)

    def redacted(self, redact: Any) -> RerankerStatus:
        """A copy for visitors: ``redact`` (str → str, e.g. ``search.ui.render.redact_paths``) applied to the
        English detail, the model dir dropped; ``state`` and ``code`` kept."""
        if self.usable:
            return RerankerStatus(self.state.value, **{**self.fields(), "path": None})
        reason, fix = redact(self.reason), redact(self.how_to_fix)
        text = f"unavailable: {redact(str(self).partition(':')[2].strip())}"
        return RerankerStatus(text, **{**self.fields(), "path": None, "reason": reason, "how_to_fix": fix})


def _rebuild(text: str, fields: dict[str, Any]) -> RerankerStatus:
    return RerankerStatus(text, **fields)


def as_status(value: str, name: str | None = None) -> RerankerStatus:
    """A status → a :class:`RerankerStatus`: returned as is when it is one; an old-style status string (a
    test's or a custom setup's ``"available: …"`` / ``"loaded…"`` / ``"unavailable: …"``) gets its state from
    its first word and, when unavailable, the code :attr:`UnavailableReason.UNSPECIFIED` (its text is never
    read for a reason), with the env var and hub id of the known reranker ``name``."""
    if isinstance(value, RerankerStatus):
        return value
    from reranker.backends import SPECS  # here: backends imports this module

    spec = SPECS.get(name or "")
    env, hub_id = (spec.env, spec.hub_id) if spec else (None, None)
    text = str(value)
    head, _, detail = text.partition(":")
    try:
        state = RerankerState(head.strip())
    except ValueError:
        state = RerankerState.UNAVAILABLE
    if state is not RerankerState.UNAVAILABLE:
        return RerankerStatus(text, state=state, path=detail.strip() or None)
    return RerankerStatus(text, state=state, code=UnavailableReason.UNSPECIFIED, reason=detail.strip(), env=env,
                          hub_id=hub_id)


def status_from_error(err: BaseException, name: str = "") -> RerankerStatus:
    """The status of a reranker whose loading raised ``err``: its code when ``err`` is a
    :class:`ModelUnavailable`, else :attr:`UnavailableReason.LOAD_FAILED` with the error as the detail."""
    if isinstance(err, ModelUnavailable):
        return RerankerStatus.unavailable(err)
    detail = f"{type(err).__name__}: {err}"
    return RerankerStatus.unavailable(ModelUnavailable(name, detail, "see the server log",
                                                       UnavailableReason.LOAD_FAILED))
