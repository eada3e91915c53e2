"""Ingestion: files → :class:`Document` s → :class:`Passage` s, with an :class:`IngestReport`.

Supported inputs (format auto-detected from the extension, or forced with ``fmt``):

- ``jsonl`` — one JSON object per line (``.jsonl``, ``.ndjson``, ``.json``; ``.gz`` allowed). BEIR's
  ``corpus.jsonl`` (``{"_id","title","text"}``) is the default field layout; other names are set with
  ``id_field`` / ``title_field`` / ``text_field``.
- ``csv`` — header row + records (``.csv``; ``.tsv`` uses tabs; ``.gz`` allowed).
- ``folder`` — a directory of ``.txt`` / ``.md`` files: id = path relative to the folder (POSIX ``/``),
  title = first Markdown heading, else the file stem.
- ``zip`` — a ZIP of ``.txt`` / ``.md`` files, read member by member in memory (nothing is extracted to
  disk). Members with absolute paths, ``..`` parts or symlinks are refused (zip-slip), and the total
  uncompressed size is capped (``max_zip_bytes``).

Every document's title and text go through :func:`indexing.normalize.normalize`. Long documents are split
into passages of at most ``max_words`` whitespace words, packed from whole sentences where possible, with
about ``overlap`` words repeated between neighbours; ids are ``<doc_id>`` (not split) or
``<doc_id>#p<N>`` (``N`` from 1).

Problems are never dropped silently: per-record problems (malformed JSON, missing id/text, non-UTF-8 bytes,
duplicate ids, empty text) are collected in :class:`IngestReport` with ``(file, line, reason)``, the record is
skipped, and ``report.summary()`` tells the caller. With ``strict=True`` the first problem raises
:class:`IngestError`. Problems that make a whole input unusable (missing file, unknown format, CSV without the
required columns, unsafe ZIP) always raise :class:`IngestError`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import stat
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from indexing.normalize import normalize

__all__ = [
    "Document",
    "Passage",
    "IngestProblem",
    "IngestReport",
    "IngestError",
    "detect_format",
    "iter_documents",
    "split_document",
    "load_corpus",
    "write_passages",
    "iter_passages",
    "read_passages",
    "DEFAULT_MAX_WORDS",
    "DEFAULT_OVERLAP",
    "DEFAULT_MAX_ZIP_BYTES",
]

DEFAULT_MAX_WORDS = 250
DEFAULT_OVERLAP = 30
DEFAULT_MAX_ZIP_BYTES = 512 * 1024 * 1024
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
FORMATS = ("jsonl", "csv", "folder", "zip")
_ID_FIELD_CANDIDATES = ("_id", "id", "doc_id", "docid")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…;:])[\"'”’)\]]*\s+")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


# --------------------------------------------------------------------------------------------- data types
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


# -------------------------------------------------------------------------------------------- detection
def _strip_gz(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return name[:-3], True
    return name, False


def detect_format(path: str | os.PathLike[str]) -> str:
    """``path`` → one of ``jsonl``, ``csv``, ``folder``, ``zip`` (by type/extension), else IngestError."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    name, _ = _strip_gz(p)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TEXT_SUFFIXES):
        raise IngestError(str(p), 0, "single text files are ingested through their folder; pass the folder")
    raise IngestError(
        str(p), 0, "unknown format: use .jsonl/.ndjson/.json, .csv/.tsv (optionally .gz), .zip or a folder"
    )


def _open_binary(path: Path) -> io.BufferedIOBase:
    _, gz = _strip_gz(path)
    return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115


def _decode_error_reason(raw: bytes, err: UnicodeDecodeError) -> str:
    bad = raw[err.start : err.start + 1].hex()
    return (
        f"bad encoding: byte 0x{bad} at column {err.start + 1} is not valid UTF-8 (re-save the file as UTF-8)"
    )


# ---------------------------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class _Fields:
    id_field: str | None
    title_field: str | None
    text_field: str
    title_explicit: bool
    auto_id: bool


def _as_str(value: object) -> str | None:
    """Field value → string; numbers become strings, None/lists/dicts/bools are refused (None)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def _json_values(path: Path, report: IngestReport, strict: bool) -> Iterator[tuple[int, object]]:
    """(line, parsed value) per JSONL line (streamed) — or per item when the file is one top-level JSON array."""
    with _open_binary(path) as fh:
        head = fh.read(4096)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if head.lstrip()[:1] == b"[":
        with _open_binary(path) as fh:
            data = fh.read()
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise IngestError(str(path), line, _decode_error_reason(data, err)) from None
        yield from _json_array_items(path, text)
        return
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                report.add_problem(str(path), lineno, _decode_error_reason(raw, err), strict)
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                report.add_problem(
                    str(path), lineno, f"malformed JSON: {err.msg} at column {err.colno}", strict
                )


def _json_array_items(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """Items of a top-level JSON array with the line each starts on; a syntax error is fatal (no resync)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            raise IngestError(str(path), text.count("\n") + 1, "malformed JSON: unterminated array")
        if text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise IngestError(
                str(path), err.lineno, f"malformed JSON: {err.msg} at column {err.colno}"
            ) from None
        yield line, obj


def _iter_jsonl(path: Path, fields: _Fields, report: IngestReport, strict: bool) -> Iterator[Document]:
    source = path.name
    id_field = fields.id_field
    for lineno, obj in _json_values(path, report, strict):
        if not isinstance(obj, dict):
            report.add_problem(
                str(path), lineno, f"malformed JSON: expected an object, got {type(obj).__name__}", strict
            )
            continue
        if id_field is None and not fields.auto_id:
            id_field = next((f for f in _ID_FIELD_CANDIDATES if f in obj), _ID_FIELD_CANDIDATES[0])
        if fields.auto_id and (id_field is None or id_field not in obj):
            doc_id = f"{path.stem}:{lineno}"
        else:
            assert id_field is not None
            doc_id = _as_str(obj.get(id_field))
            if doc_id is None or not doc_id.strip():
                what = "missing" if id_field not in obj else "empty or not a string/number"
                report.add_problem(
                    str(path),
                    lineno,
                    f"missing id: field {id_field!r} is {what} (keys: {sorted(obj)})",
                    strict,
                )
                continue
        if fields.text_field not in obj:
            report.add_problem(
                str(path),
                lineno,
                f"missing text: no field {fields.text_field!r} (keys: {sorted(obj)})",
                strict,
            )
            continue
        text = _as_str(obj.get(fields.text_field))
        if text is None:
            report.add_problem(
                str(path), lineno, f"missing text: field {fields.text_field!r} is not a string", strict
            )
            continue
        title = ""
        if fields.title_field:
            if fields.title_explicit and fields.title_field not in obj:
                report.add_problem(
                    str(path),
                    lineno,
                    f"missing title: no field {fields.title_field!r} (keys: {sorted(obj)})",
                    strict,
                )
                continue
            title = _as_str(obj.get(fields.title_field)) or ""
        yield Document(doc_id.strip(), title, text, source=source, line=lineno, origin=str(path))


def _iter_csv(path: Path, fields: _Fields, report: IngestReport, strict: bool) -> Iterator[Document]:
    source = path.name
    name, _ = _strip_gz(path)
    delimiter = "\t" if name.endswith(".tsv") else ","
    # Decode with surrogateescape so that one bad record is reported (with its line) instead of
    # aborting the whole file; records containing escaped bytes are then refused explicitly.
    with _open_binary(path) as fb:
        data = fb.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    text = data.decode("utf-8", errors="surrogateescape")
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise IngestError(str(path), 0, "empty CSV file (no header row)") from None
    except csv.Error as err:
        raise IngestError(str(path), 1, f"malformed CSV header: {err}") from None
    header = [h.strip() for h in header]
    if any(_has_surrogates(h) for h in header):
        raise IngestError(
            str(path), 1, "bad encoding: header row is not valid UTF-8 (re-save the file as UTF-8)"
        )
    id_field = fields.id_field
    if id_field is None and not fields.auto_id:
        id_field = next((f for f in _ID_FIELD_CANDIDATES if f in header), None)
    required = [fields.text_field]
    if not fields.auto_id:
        required.append(id_field or "/".join(_ID_FIELD_CANDIDATES))
    if fields.title_explicit and fields.title_field:
        required.append(fields.title_field)
    missing = [c for c in required if c not in header]
    if missing:
        raise IngestError(
            str(path),
            1,
            f"missing required column(s) {missing}; columns present: {header}. "
            "Choose columns with --id-field/--title-field/--text-field.",
        )
    col = {h: i for i, h in enumerate(header)}
    while True:
        start_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            report.add_problem(str(path), start_line, f"malformed CSV: {err}", strict)
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            report.add_problem(
                str(path), start_line, f"malformed CSV: {len(row)} fields, header has {len(header)}", strict
            )
            continue
        if any(_has_surrogates(c) for c in row):
            raw_row = delimiter.join(row).encode("utf-8", errors="surrogateescape")
            try:
                raw_row.decode("utf-8")
            except UnicodeDecodeError as err:
                report.add_problem(str(path), start_line, _decode_error_reason(raw_row, err), strict)
                continue
        if fields.auto_id and (id_field is None or id_field not in col):
            doc_id = f"{path.stem}:{start_line}"
        else:
            assert id_field is not None
            doc_id = row[col[id_field]].strip()
            if not doc_id:
                report.add_problem(str(path), start_line, f"missing id: column {id_field!r} is empty", strict)
                continue
        title = row[col[fields.title_field]] if fields.title_field and fields.title_field in col else ""
        yield Document(
            doc_id, title, row[col[fields.text_field]], source=source, line=start_line, origin=str(path)
        )


def _has_surrogates(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _text_file_document(
    rel: str, data: bytes, source_label: str, report: IngestReport, strict: bool
) -> Document | None:
    """Bytes of one .txt/.md file → Document (id = ``rel``), or None after recording a problem."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        bad = data[err.start : err.start + 1].hex()
        report.add_problem(
            source_label,
            line,
            f"bad encoding: byte 0x{bad} at column {col} is not valid UTF-8 (re-save as UTF-8)",
            strict,
        )
        return None
    title = PurePosixPath(rel).stem
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        m = _HEADING_RE.match(ln)
        if m and rel.lower().endswith((".md", ".markdown")):
            title = m.group(1).strip()
            text = "\n".join(lines[:i] + lines[i + 1 :])
        break
    return Document(id=rel, title=title, text=text, source=source_label, line=0)


def _iter_folder(path: Path, report: IngestReport, strict: bool) -> Iterator[Document]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            files.append(Path(dirpath) / fn)
    for f in files:
        rel = f.relative_to(path).as_posix()
        if not f.name.lower().endswith(TEXT_SUFFIXES):
            report.skipped_files.append(str(f))
            continue
        doc = _text_file_document(rel, f.read_bytes(), str(f), report, strict)
        if doc is not None:
            yield Document(doc.id, doc.title, doc.text, source=rel, line=0, origin=str(f))


def _safe_member_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    parts = re.split(r"[\\/]", name)
    return ".." not in parts


def _iter_zip(path: Path, report: IngestReport, strict: bool, max_bytes: int) -> Iterator[Document]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise IngestError(str(path), 0, f"not a readable ZIP file: {err}") from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            if not _safe_member_name(info.filename):
                raise IngestError(
                    str(path),
                    0,
                    f"unsafe member {info.filename!r}: absolute paths and '..' are not allowed (zip-slip)",
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise IngestError(
                    str(path), 0, f"unsafe member {info.filename!r}: symbolic links are not allowed"
                )
        declared = sum(i.file_size for i in infos if not i.is_dir())
        if declared > max_bytes:
            raise IngestError(
                str(path),
                0,
                f"ZIP too large: {declared:,} uncompressed bytes exceed the limit of {max_bytes:,}",
            )
        total = 0
        for info in sorted(infos, key=lambda i: i.filename):
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            label = f"{path.name}:{name}"
            if not name.lower().endswith(TEXT_SUFFIXES):
                report.skipped_files.append(label)
                continue
            with zf.open(info) as fh:
                # Read at most what is still allowed (+1) so a lying header cannot blow the limit.
                data = fh.read(max_bytes - total + 1)
            total += len(data)
            if total > max_bytes:
                raise IngestError(
                    str(path), 0, f"ZIP too large: more than {max_bytes:,} uncompressed bytes (limit)"
                )
            doc = _text_file_document(name.replace("\\", "/"), data, label, report, strict)
            if doc is not None:
                yield Document(doc.id, doc.title, doc.text, source=label, line=0, origin=label)


def iter_documents(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    id_field: str | None = None,
    title_field: str | None = None,
    text_field: str | None = None,
    auto_id: bool = False,
    report: IngestReport | None = None,
    strict: bool = False,
    max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
) -> Iterator[Document]:
    """Yield raw :class:`Document` s from one input (no normalization, no duplicate check).

    ``fmt`` is one of :data:`FORMATS` (auto-detected when None). ``id_field=None`` picks the first of
    ``_id``, ``id``, ``doc_id``, ``docid`` present; ``title_field=None`` means ``title`` if present;
    ``text_field=None`` means ``text``. ``auto_id=True`` gives records without an id ``<file-stem>:<line>``.
    Record problems go to ``report`` (or raise when ``strict``); whole-input problems raise IngestError.
    """
    p = Path(path)
    if not p.exists():
        raise IngestError(str(p), 0, "no such file or folder")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise IngestError(str(p), 0, f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    report = report if report is not None else IngestReport()
    report.files.append(str(p))
    fields = _Fields(
        id_field=id_field,
        title_field=title_field if title_field is not None else "title",
        text_field=text_field or "text",
        title_explicit=title_field is not None,
        auto_id=auto_id,
    )
    if fmt == "jsonl":
        yield from _iter_jsonl(p, fields, report, strict)
    elif fmt == "csv":
        yield from _iter_csv(p, fields, report, strict)
    elif fmt == "folder":
        if not p.is_dir():
            raise IngestError(str(p), 0, "format 'folder' needs a directory")
        yield from _iter_folder(p, report, strict)
    else:
        yield from _iter_zip(p, report, strict, max_zip_bytes)


# --------------------------------------------------------------------------------------------- splitting
def _units(text: str, max_words: int) -> list[list[str]]:
    """Text → sentence-like units (lists of words), none longer than ``max_words``.

    Callers pass ``max_words - overlap`` so that a cut sentence still leaves room for the overlap.
    """
    units: list[list[str]] = []
    for para in text.splitlines():
        for sent in _SENTENCE_END_RE.split(para):
            words = sent.split()
            while len(words) > max_words:
                units.append(words[:max_words])
                words = words[max_words:]
            if words:
                units.append(words)
    return units


def split_words(text: str, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """Split ``text`` into chunks of at most ``max_words`` whitespace words.

    Whole sentences are packed greedily; a chunk starts with the previous chunk's last sentences that fit in
    ``overlap`` words (or, when the last sentence is longer, its last ``overlap`` words). A short tail (fewer
    than ``max_words // 5`` new words) is merged into the previous chunk. Text of at most ``max_words`` words
    (or ``max_words`` <= 0) comes back as one chunk, whitespace-joined.
    """
    all_words = text.split()
    if max_words <= 0 or len(all_words) <= max_words:
        return [" ".join(all_words)] if all_words else []
    overlap = max(0, min(overlap, max_words // 2))
    chunks: list[list[str]] = []
    cur: list[list[str]] = []  # units in the current chunk
    cur_len = 0
    new_len = 0  # words in the current chunk that are not overlap

    for unit in _units(text, max_words - overlap):
        if cur_len + len(unit) > max_words and new_len > 0:
            chunks.append([w for u in cur for w in u])
            carry: list[list[str]] = []
            carry_len = 0
            for prev in reversed(cur):
                if carry_len + len(prev) > overlap:
                    break
                carry.insert(0, prev)
                carry_len += len(prev)
            if not carry and overlap:
                carry = [cur[-1][-overlap:]]
                carry_len = len(carry[0])
            cur, cur_len, new_len = carry, carry_len, 0
        if cur_len + len(unit) > max_words:  # overlap + unit too long: shrink the overlap
            keep = max(0, max_words - len(unit))
            flat = [w for u in cur for w in u][-keep:] if keep else []
            cur, cur_len = ([flat] if flat else []), len(flat)
        cur.append(unit)
        cur_len += len(unit)
        new_len += len(unit)
    if new_len:
        tail = [w for u in cur for w in u]
        if chunks and new_len < max(1, max_words // 5):
            chunks[-1].extend(tail[len(tail) - new_len :])
        else:
            chunks.append(tail)
    return [" ".join(c) for c in chunks]


def split_document(
    doc: Document, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP
) -> list[Passage]:
    """One Document → its normalized Passages (``<id>`` if one passage, else ``<id>#p1``, ``#p2``, ...)."""
    chunks = [normalize(c) for c in split_words(doc.text, max_words, overlap)]
    chunks = [c for c in chunks if c]
    title = normalize(doc.title)
    if len(chunks) <= 1:
        return [Passage(doc.id, doc.id, title, chunks[0] if chunks else "", doc.source)]
    return [Passage(f"{doc.id}#p{i}", doc.id, title, c, doc.source) for i, c in enumerate(chunks, start=1)]


# ------------------------------------------------------------------------------------------------ driver
def load_corpus(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    fmt: str | None = None,
    *,
    id_field: str | None = None,
    title_field: str | None = None,
    text_field: str | None = None,
    auto_id: bool = False,
    max_words: int = DEFAULT_MAX_WORDS,
    overlap: int = DEFAULT_OVERLAP,
    strict: bool = False,
    max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
    existing_ids: Iterable[str] = (),
) -> tuple[list[Passage], IngestReport]:
    """Read one or more inputs → (passages, report).

    Documents with an id seen before (in these inputs, or in ``existing_ids``), or whose text is empty after
    normalization, are skipped and reported; so are passage ids that collide (e.g. doc ``a#p1`` vs the first
    passage of a split doc ``a``). With ``strict=True`` the first problem raises :class:`IngestError`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    report = IngestReport()
    passages: list[Passage] = []
    seen_docs: dict[str, str] = {i: "the existing index" for i in existing_ids}
    seen_pids: set[str] = set(seen_docs)
    for path in paths:
        for doc in iter_documents(
            path,
            fmt,
            id_field=id_field,
            title_field=title_field,
            text_field=text_field,
            auto_id=auto_id,
            report=report,
            strict=strict,
            max_zip_bytes=max_zip_bytes,
        ):
            problem_file = doc.origin or str(path)
            where = f"{problem_file}:{doc.line}" if doc.line else problem_file
            if doc.id in seen_docs:
                report.add_problem(
                    problem_file,
                    doc.line,
                    f"duplicate id: {doc.id!r} (first seen at {seen_docs[doc.id]})",
                    strict,
                )
                continue
            seen_docs[doc.id] = where
            parts = split_document(doc, max_words, overlap)
            if not parts[0].text:
                report.add_problem(
                    problem_file, doc.line, f"empty text: document {doc.id!r} has no text", strict
                )
                continue
            clash = [p.id for p in parts if p.id in seen_pids]
            if clash:
                report.add_problem(
                    problem_file, doc.line, f"duplicate id: passage id {clash[0]!r} already exists", strict
                )
                continue
            seen_pids.update(p.id for p in parts)
            report.documents += 1
            report.split_documents += len(parts) > 1
            passages.extend(parts)
    report.passages = len(passages)
    return passages, report


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
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise IngestError(str(path), lineno, _decode_error_reason(raw, err)) from None
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
