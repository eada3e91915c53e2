"""Input readers: format detection and the jsonl / csv / folder / zip readers → raw :class:`Document` s.

- ``jsonl`` — one JSON object per line (``.jsonl``, ``.ndjson``, ``.json``, or one top-level JSON array;
  ``.gz`` allowed); BEIR's ``{"_id","title","text"}`` is the default field layout.
- ``csv`` — header row + records (``.csv``; ``.tsv`` uses tabs; ``.gz`` allowed).
- ``folder`` — ``.txt`` / ``.md`` files: id = relative POSIX path, title = first Markdown heading or the stem.
- ``zip`` — ``.txt`` / ``.md`` members read in memory; zip-slip names and symlinks refused, total size capped.

Bytes are decoded by :func:`indexing.passages.decode_utf8` (one decoder: line and column of a bad byte).
Record problems go to the :class:`IngestReport` (or raise when ``strict``); whole-input problems raise
:class:`IngestError`. :func:`indexing.corpus.load_corpus` is the entry point that normalizes and splits.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import stat
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from indexing.passages import Document, IngestError, IngestReport, Utf8Error, decode_utf8

__all__ = ["FORMATS", "TEXT_SUFFIXES", "DEFAULT_MAX_ZIP_BYTES", "detect_format", "iter_documents"]

DEFAULT_MAX_ZIP_BYTES = 512 * 1024 * 1024
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
FORMATS = ("jsonl", "csv", "folder", "zip")
_ID_FIELD_CANDIDATES = ("_id", "id", "doc_id", "docid")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


_BOM = b"\xef\xbb\xbf"  # codecs.BOM_UTF8


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
    if head.removeprefix(_BOM).lstrip()[:1] == b"[":
        with _open_binary(path) as fh:
            data = fh.read()
        try:
            text = decode_utf8(data)
        except Utf8Error as err:
            raise IngestError(str(path), err.line, err.reason) from None
        yield from _json_array_items(path, text)
        return
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = decode_utf8(raw, strip_bom=lineno == 1)
            except Utf8Error as err:
                report.add_problem(str(path), lineno, err.reason, strict)
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
        bad = next((name for name, value in (("id", doc_id), ("text", text), ("title", title))
                    if _LONE_SURROGATE_RE.search(value)), None)
        if bad is not None:  # a "\ud800" escape: valid JSON, but no UTF-8 can store it (passages.jsonl, Qdrant)
            char = _LONE_SURROGATE_RE.search({"id": doc_id, "text": text, "title": title}[bad]).group()
            report.add_problem(str(path), lineno, f"invalid Unicode: field {bad!r} has a lone surrogate "
                               f"\\u{ord(char):04x} (an unpaired UTF-16 escape)", strict)
            continue
        yield Document(doc_id.strip(), title, text, source=source, line=lineno, origin=str(path))


def _iter_csv(path: Path, fields: _Fields, report: IngestReport, strict: bool) -> Iterator[Document]:
    source = path.name
    name, _ = _strip_gz(path)
    delimiter = "\t" if name.endswith(".tsv") else ","
    # Decode with surrogateescape so that one bad record is reported (with its line) instead of
    # aborting the whole file; records containing escaped bytes are then refused explicitly.
    with _open_binary(path) as fb:
        data = fb.read().removeprefix(_BOM)
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
                decode_utf8(raw_row, strip_bom=False)
            except Utf8Error as err:
                report.add_problem(str(path), start_line, err.reason, strict)  # the record's first line
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


_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _has_surrogates(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _text_file_document(
    rel: str, data: bytes, source_label: str, report: IngestReport, strict: bool
) -> Document | None:
    """Bytes of one .txt/.md file → Document (id = ``rel``), or None after recording a problem."""
    try:
        text = decode_utf8(data)
    except Utf8Error as err:
        report.add_problem(source_label, err.line, err.reason, strict)
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
