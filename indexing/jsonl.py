"""JSON Lines: the one reader and writer every package uses (``.gz`` read and written transparently).

- :func:`open_text` — a UTF-8 text file, gunzipped/gzipped on the fly when its name ends in ``.gz``.
- :func:`read_jsonl` — the JSON values of a file, one per non-blank line. Strict by default (a malformed line
  raises :class:`JsonlError` naming file and line); ``skip_bad=True`` skips such lines and, when a ``problems``
  list is passed, records each one as a :class:`JsonlProblem` (nothing is dropped silently).
- :func:`write_jsonl` — records → one compact JSON object per line (``ensure_ascii=False``).

Record-level checks (required fields, types) belong to the caller; ingestion of user uploads, with its byte-level
UTF-8 reporting, lives in :mod:`indexing.readers`.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["JsonlError", "JsonlProblem", "open_text", "read_jsonl", "write_jsonl"]


class JsonlError(ValueError):
    """A line of a JSONL file is not valid JSON; ``path`` and ``line`` (1-based) say where."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: malformed JSON ({reason})")


@dataclass(frozen=True)
class JsonlProblem:
    """A line :func:`read_jsonl` skipped (``skip_bad=True``): where, and the JSON parser's message."""

    path: str
    line: int
    reason: str


def _is_gz(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).endswith(".gz")


def open_text(path: str | os.PathLike[str], mode: str = "r", errors: str = "strict") -> IO[str]:
    """``path`` opened as UTF-8 text (``mode`` ``"r"``, ``"w"`` or ``"a"``), through gzip when it ends in ``.gz``;
    ``errors`` as for :func:`open` (``"replace"`` reads bad bytes as U+FFFD instead of raising)."""
    if mode not in ("r", "w", "a"):
        raise ValueError(f"open_text mode must be 'r', 'w' or 'a', not {mode!r}")
    if _is_gz(path):
        return gzip.open(path, mode + "t", encoding="utf-8", errors=errors)  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8", errors=errors)  # noqa: SIM115 - the caller closes it


def read_jsonl(
    path: str | os.PathLike[str], *, skip_bad: bool = False, problems: list[JsonlProblem] | None = None,
    errors: str = "strict",
) -> Iterator[Any]:
    """Yield the JSON value of each non-blank line of ``path`` (``.gz`` allowed), in file order.

    ``skip_bad`` False: a malformed line raises :class:`JsonlError` (a ``ValueError``) naming file and line.
    ``skip_bad`` True: such a line is skipped and, when ``problems`` is given, appended to it as a
    :class:`JsonlProblem` (e.g. a last line cut off by a crash, or one still being written). Values are yielded
    as parsed; whether they are objects is the caller's check. ``errors`` is passed to :func:`open_text`.
    """
    with open_text(path, errors=errors) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                if not skip_bad:
                    raise JsonlError(os.fspath(path), lineno, err.msg) from None
                if problems is not None:
                    problems.append(JsonlProblem(os.fspath(path), lineno, err.msg))
                continue
            yield value


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any], *, append: bool = False) -> int:
    """Write ``records`` to ``path`` one JSON value per line (UTF-8, ``ensure_ascii=False``; gzip for ``.gz``);
    ``append`` adds to an existing file. Parent folders are created. Returns the number of lines written."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    n = 0
    with open_text(path, "a" if append else "w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n
