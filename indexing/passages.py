"""The ingestion data types and the ``passages.jsonl`` store.

- :class:`Document` (one input record, raw) → :class:`Passage` (a retrievable unit, normalized);
- :class:`IngestProblem` / :class:`IngestError` / :class:`IngestReport`: what ingestion skipped and why;
- :func:`decode_utf8` / :class:`Utf8Error`: the one UTF-8 decoder, reporting line and column of a bad byte;
- :func:`write_passages` / :func:`iter_passages` / :func:`read_passages`: a generation's ``passages.jsonl``.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

__all__ = [
    "Document",
    "Passage",
    "IngestProblem",
    "IngestError",
    "IngestReport",
    "Utf8Error",
    "decode_utf8",
    "write_passages",
    "iter_passages",
    "read_passages",
]


@dataclass(frozen=True)
class Document:
    """One input document before splitting. ``text``/``title`` are raw (not yet normalized)."""

    id: str
    title: str
    text: str
    source: str  # file name (or "") the document came from
    line: int = 0  # 1-based line (record start) in ``source``; 0 when not line-based
    origin: str = ""  # full path (or "archive.zip:member") used in problem reports


@dataclass(frozen=True)
class Passage:
    """A retrievable unit. ``text``/``title`` are normalized (NFC, unified tone marks), case kept."""

    id: str  # "<doc_id>" or "<doc_id>#p<N>" when a document was split
    doc_id: str
    title: str
    text: str
    source: str

    def to_json(self) -> str:
        """One passages.jsonl line (no trailing newline)."""
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class IngestProblem:
    """A skipped record: where it was and why."""

    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


class IngestError(ValueError):
    """Input that cannot be ingested. ``file``/``line`` say where (``line`` 0 = whole file)."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file, self.line, self.reason = str(file), int(line), reason
        super().__init__(str(IngestProblem(self.file, self.line, reason)))


@dataclass
class IngestReport:
    """What ingestion read, produced and skipped.

    ``problems`` lists every skipped record; ``skipped_files`` lists files inside a folder/ZIP that were not
    read (unsupported extension), so nothing disappears without a trace.
    """

    files: list[str] = field(default_factory=list)
    documents: int = 0
    passages: int = 0
    split_documents: int = 0
    problems: list[IngestProblem] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Number of records skipped because of a problem."""
        return len(self.problems)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.problems

    def add_problem(self, file: str, line: int, reason: str, strict: bool) -> None:
        """Record a problem, or raise :class:`IngestError` when ``strict``."""
        if strict:
            raise IngestError(file, line, reason)
        self.problems.append(IngestProblem(str(file), int(line), reason))

    def counts_by_reason(self) -> dict[str, int]:
        """Problem counts keyed by the reason's kind (text before the first ':')."""
        out: dict[str, int] = {}
        for p in self.problems:
            kind = p.reason.split(":", 1)[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def summary(self, max_problems: int = 20) -> str:
        """A human-readable multi-line summary (counts, then up to ``max_problems`` problems)."""
        lines = [
            f"Read {len(self.files)} input(s): {self.documents:,} documents -> {self.passages:,} passages "
            f"({self.split_documents:,} documents split)."
        ]
        if self.problems:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts_by_reason().items()))
            lines.append(f"Skipped {len(self.problems):,} record(s) with problems ({kinds}):")
            lines += [f"  {p}" for p in self.problems[:max_problems]]
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems:,} more")
        else:
            lines.append("No problems.")
        if self.skipped_files:
            lines.append(f"Ignored {len(self.skipped_files):,} file(s) with unsupported extensions:")
            lines += [f"  {f}" for f in self.skipped_files[:max_problems]]
            if len(self.skipped_files) > max_problems:
                lines.append(f"  ... and {len(self.skipped_files) - max_problems:,} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-serialisable form (used in manifests and the UI)."""
        return {
            "files": list(self.files),
            "documents": self.documents,
            "passages": self.passages,
            "split_documents": self.split_documents,
            "skipped": self.skipped,
            "problems": [asdict(p) for p in self.problems],
            "skipped_files": list(self.skipped_files),
        }


class Utf8Error(ValueError):
    """Bytes that are not valid UTF-8: ``line`` (1-based, within the bytes given) and a ``reason`` naming the
    first bad byte and its column — what :class:`IngestProblem` reports."""

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(reason)


def decode_utf8(data: bytes, *, strip_bom: bool = True) -> str:
    """UTF-8 ``data`` → str, a leading byte-order mark dropped when ``strip_bom``; invalid bytes raise
    :class:`Utf8Error` with the line and column of the first one. The one UTF-8 decoder of ingestion."""
    if strip_bom and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        bad = data[err.start : err.start + 1].hex()
        raise Utf8Error(line, f"bad encoding: byte 0x{bad} at column {col} is not valid UTF-8 "
                              "(re-save the file as UTF-8)") from None


# ------------------------------------------------------------------------------------------ passages.jsonl
def write_passages(path: str | os.PathLike[str], passages: Iterable[Passage]) -> int:
    """Write ``passages`` as JSON lines (fsynced) to ``path``; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for p in passages:
            fh.write(p.to_json())
            fh.write("\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def iter_passages(path: str | os.PathLike[str]) -> Iterator[Passage]:
    """Yield :class:`Passage` s from a passages.jsonl; a bad line raises IngestError with its number."""
    keys = ("id", "doc_id", "title", "text", "source")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(decode_utf8(raw, strip_bom=False))
            except Utf8Error as err:
                raise IngestError(str(path), lineno, err.reason) from None
            except json.JSONDecodeError as err:
                raise IngestError(
                    str(path), lineno, f"malformed JSON: {err.msg} at column {err.colno}"
                ) from None
            if not isinstance(obj, dict) or any(not isinstance(obj.get(k), str) for k in keys):
                raise IngestError(
                    str(path), lineno, f"not a passage record: needs string fields {list(keys)}"
                )
            yield Passage(**{k: obj[k] for k in keys})


def read_passages(path: str | os.PathLike[str]) -> list[Passage]:
    """All passages of a passages.jsonl, in file order."""
    return list(iter_passages(path))
