"""Rerankers an analyst adds from a local model dir in the Compare tab, sandboxed to allowed folders.

- :func:`allowed_roots` — where model dirs may be: ``$VIRANKER_HOME/models`` and ``assets/models`` (plus
  ``$VIRANKER_MODEL_DIRS``, ``os.pathsep``-separated), resolved;
- :func:`resolve_model_dir` — a typed path → the resolved model dir, or a :class:`LocalModelError` subclass
  whose ``str`` is the Vietnamese message the page shows. A path is taken absolute or relative to an allowed
  folder; any ``..`` component is refused, and the path is resolved (symlinks followed) before it is checked,
  so a symlink inside an allowed folder that points outside it is refused too (as are a ``config.json`` or
  weights file linking outside);
- :func:`load_model_dir` — a model dir → a reranker through the existing backends
  (:class:`reranker.backends.ViRankerReranker` for ``model_type: viranker``, else
  :class:`reranker.backends.CrossEncoderReranker`);
- :class:`LocalRerankers` — the loaded ones by name (``local-<dir name>``), each path loaded once, at most
  :data:`MAX_LOCAL` of them (every model stays in memory).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reranker.backends import Reranker

__all__ = ["LocalModelError", "PathNotAllowed", "NotAModelDir", "ModelLoadFailed", "TooManyRerankers",
           "allowed_roots", "root_label", "resolve_model_dir", "load_model_dir", "LocalReranker", "LocalRerankers",
           "MAX_LOCAL", "MODEL_DIRS_ENV", "WEIGHT_FILES"]

MAX_LOCAL = 4
MODEL_DIRS_ENV = "VIRANKER_MODEL_DIRS"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ASSET_MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"


class LocalModelError(ValueError):
    """A model dir the app will not load; ``str(err)`` is the message for the page (Vietnamese)."""


class PathNotAllowed(LocalModelError):
    """Empty, malformed, with ``..``, missing, or (once resolved) outside every allowed folder."""


class NotAModelDir(LocalModelError):
    """Inside an allowed folder but not a model dir (no ``config.json`` / weights, or not a directory)."""


class ModelLoadFailed(LocalModelError):
    """The backend could not load the dir (corrupt or unsupported files, missing package)."""


class TooManyRerankers(LocalModelError):
    """:data:`MAX_LOCAL` local rerankers are loaded already."""


def allowed_roots() -> list[Path]:
    """The resolved folders model dirs may be in (existing ones only), without duplicates."""
    from indexing import settings

    cands = [settings.home() / "models", ASSET_MODELS]
    cands += [Path(p).expanduser() for p in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for c in cands:
        try:
            r = c.resolve(strict=True)
        except OSError:
            continue
        if r.is_dir() and r not in out:
            out.append(r)
    return out


def root_label(root: Path) -> str:
    """How the page names an allowed folder, without the server's absolute path."""
    from indexing import settings

    if root == ASSET_MODELS.resolve():
        return "assets/models"
    try:
        if root == (settings.home() / "models").resolve():
            return "$VIRANKER_HOME/models"
    except OSError:
        pass
    return f"$VIRANKER_MODEL_DIRS: …/{root.name}"


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path != r and path.is_relative_to(r) for r in roots)


def resolve_model_dir(text: str, roots: list[Path] | None = None) -> Path:
    """``text`` (absolute, or relative to an allowed folder) → the resolved model dir. Raises
    :class:`PathNotAllowed` or :class:`NotAModelDir` (see the module docstring)."""
    roots = allowed_roots() if roots is None else [r.resolve() for r in roots]
    shown = ", ".join(root_label(r) for r in roots) or "(không có thư mục nào)"
    text = (text or "").strip()
    if not text or "\x00" in text or len(text) > 4096:
        raise PathNotAllowed("Hãy nhập đường dẫn tới một thư mục mô hình.")
    raw = Path(text).expanduser()
    if ".." in raw.parts:
        raise PathNotAllowed(f"Đường dẫn không được chứa “..”: {text}")
    cands = [raw] if raw.is_absolute() else [r / raw for r in roots]
    for cand in cands:
        try:
            real = cand.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            continue
        if not _inside(real, roots):
            raise PathNotAllowed(f"Chỉ nạp được mô hình nằm trong các thư mục cho phép ({shown}); "
                                 f"{text} nằm ngoài (sau khi theo các liên kết tượng trưng).")
        if not real.is_dir():
            raise NotAModelDir(f"{text} không phải là thư mục mô hình (đó là một tệp).")
        _check_files(real, text, roots)
        return real
    raise PathNotAllowed(f"Không tìm thấy thư mục {text} trong các thư mục cho phép ({shown}).")


def _check_files(real: Path, text: str, roots: list[Path]) -> None:
    """``config.json`` + a weights file, each resolving inside an allowed folder, else :class:`NotAModelDir`."""
    need = (real / "config.json", *[real / w for w in WEIGHT_FILES])
    for f in need:
        if f.is_symlink() and not _inside(f.resolve(), roots):
            raise PathNotAllowed(f"{f.name} trong {text} trỏ ra ngoài các thư mục cho phép.")
    if not need[0].is_file():
        raise NotAModelDir(f"{text} không phải là thư mục mô hình: thiếu config.json.")
    if not any(f.is_file() for f in need[1:]):
        raise NotAModelDir(f"{text} không phải là thư mục mô hình: thiếu trọng số ({' hoặc '.join(WEIGHT_FILES)}).")
    try:
        cfg = json.loads(need[0].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise NotAModelDir(f"{text}: config.json không đọc được ({type(err).__name__}).") from err
    if not isinstance(cfg, dict):
        raise NotAModelDir(f"{text}: config.json không phải là một đối tượng JSON.")


def load_model_dir(path: Path, name: str) -> Reranker:
    """A checked model dir → a reranker called ``name`` through :mod:`reranker.backends`: ViRanker dirs
    (``model_type: viranker``) by :class:`~reranker.backends.ViRankerReranker`, others (sequence classifiers
    with one label) by :class:`~reranker.backends.CrossEncoderReranker`. Raises :class:`ModelLoadFailed`."""
    from reranker.backends import CrossEncoderReranker, ModelUnavailable, ViRankerReranker

    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    kind = "viranker" if cfg.get("model_type") == "viranker" else "cross-encoder"
    try:
        if kind == "viranker":
            return ViRankerReranker(path, name=name)
        return CrossEncoderReranker(path, name=name)
    except ModelUnavailable as err:  # a package the backend needs: worded by its reason code
        from search.ui.messages import unavailable_vi

        raise ModelLoadFailed(f"Không nạp được {path.name}: {unavailable_vi(err)[0]}.") from err
    except Exception as err:  # noqa: BLE001 - corrupt / unsupported files: say so, never crash the page
        raise ModelLoadFailed(f"Không nạp được {path.name} ({kind}): {type(err).__name__}: "
                              f"{str(err).strip()[:200]}") from err


_SLUG = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class LocalReranker:
    """One loaded local reranker."""

    name: str  # local-<dir name>
    path: Path  # resolved model dir
    model: Any


class LocalRerankers:
    """The rerankers loaded from local model dirs in this app, by name (thread-safe)."""

    def __init__(self, limit: int = MAX_LOCAL, roots: list[Path] | None = None) -> None:
        self.limit = limit
        self._roots = roots
        self._by_name: dict[str, LocalReranker] = {}
        self._lock = threading.Lock()

    def roots(self) -> list[Path]:
        """The allowed folders (given ones, else :func:`allowed_roots`)."""
        return [r.resolve() for r in self._roots] if self._roots is not None else allowed_roots()

    def add(self, text: str) -> tuple[LocalReranker, bool]:
        """Validate, load and register the model dir ``text`` → (its entry, True when newly loaded; a dir
        loaded before is returned as it is). Raises a :class:`LocalModelError`."""
        path = resolve_model_dir(text, self.roots())
        with self._lock:
            known = self._known(path)
            if known is not None:
                return known, False
            self._check_room()
        base = "local-" + (_SLUG.sub("-", path.name.lower()).strip("-._") or "model")
        model = load_model_dir(path, base)  # outside the lock: loading takes seconds
        with self._lock:
            known = self._known(path)  # loaded meanwhile by another request
            if known is not None:
                return known, False
            self._check_room()
            name, i = base, 2
            while name in self._by_name:
                name, i = f"{base}-{i}", i + 1
            model.name = name
            entry = self._by_name[name] = LocalReranker(name, path, model)
            return entry, True

    def _known(self, path: Path) -> LocalReranker | None:
        return next((e for e in self._by_name.values() if e.path == path), None)

    def _check_room(self) -> None:
        if len(self._by_name) >= self.limit:
            raise TooManyRerankers(f"Đã nạp {self.limit} reranker cục bộ (tối đa); khởi động lại ứng dụng "
                                   "để nạp mô hình khác.")

    def models(self) -> dict[str, Any]:
        """``{name: reranker}`` of every loaded one."""
        with self._lock:
            return {n: e.model for n, e in self._by_name.items()}

    def status(self) -> dict[str, str]:
        """``{name: "loaded: <dir>"}`` (the status format of :meth:`search.service.SearchService.reranker_status`)."""
        with self._lock:
            return {n: f"loaded: {e.path}" for n, e in self._by_name.items()}
