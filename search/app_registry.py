"""Where a running app serves an index, so a second process can search through it.

The embedded vector engines allow one process per vector path (qdrant-edge locks the shard's WAL,
qdrant-client's local mode its storage folder; neither has a read-only open), so while ``python app.py``
serves an index, ``python -m search query`` cannot open that index's vectors. The app therefore writes
``<home>/run/app-<index>.json`` (``{"url", "index", "pid", "started"}``) when its server is up
(:func:`register`, called by :func:`search.ui.layout.launch`) and removes it when it stops
(:func:`unregister`); the CLI finds it (:func:`find_app`: a file whose process is gone is ignored) and sends
the query to the app's JSON API (:func:`search_via_app`: ``GET <url>api/v1/search``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunningApp", "AppUnreachable", "app_file", "register", "unregister", "find_app", "search_via_app"]


class AppUnreachable(RuntimeError):
    """The registered app did not answer, or answered with an error (``status`` is its HTTP status, 0 for no
    answer; ``message`` the app's own message when it sent one)."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"the running app at {url} {'answered ' + str(status) if status else 'did not answer'}: "
                         f"{message}")
        self.url, self.status, self.message = url, status, message


@dataclass(frozen=True)
class RunningApp:
    """A registered app: its base URL (ending in ``/``), index, process id and start time."""

    url: str
    index: str
    pid: int
    started: float


def app_file(index: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/run/app-<index>.json`` (home: ``root`` or ``$VIRANKER_HOME``)."""
    from indexing import settings

    home = Path(root) if root is not None else settings.home()
    return home / "run" / f"app-{settings.validate_index_name(index)}.json"


def register(index: str, url: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Record that this process serves ``index`` at ``url`` (written atomically) → the file."""
    path = app_file(index, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"url": url if url.endswith("/") else url + "/", "index": index, "pid": os.getpid(), "started": time.time()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def unregister(index: str, root: str | os.PathLike[str] | None = None) -> None:
    """Remove the record if this process wrote it (another app may have registered since)."""
    path = app_file(index, root)
    found = _read(path)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def _read(path: Path) -> RunningApp | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunningApp(str(data["url"]), str(data["index"]), int(data["pid"]), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def find_app(index: str, root: str | os.PathLike[str] | None = None) -> RunningApp | None:
    """The app registered for ``index`` whose process is alive, else None."""
    found = _read(app_file(index, root))
    return found if found is not None and _alive(found.pid) else None


def search_via_app(app: RunningApp, query: str, pipeline: str | None, top_k: int,
                   timeout: float = 60.0) -> dict[str, Any]:
    """``GET <url>api/v1/search`` → its JSON (``{"query", "searched_query", "pipeline", "hits", "timings_ms",
    "notes"}``). Raises :class:`AppUnreachable` (no answer, or an error answer with the app's message)."""
    params = {"query": query, "top_k": str(top_k)}
    if pipeline:
        params["pipeline"] = pipeline
    url = f"{app.url}api/v1/search?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own registered URL
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read().decode("utf-8"))["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(err.reason)
        raise AppUnreachable(app.url, err.code, message) from err
    except (OSError, ValueError) as err:  # refused, timed out, not JSON
        raise AppUnreachable(app.url, 0, f"{type(err).__name__}: {err}") from err
