"""Admin uploads: files and ZIPs copied safely into a fresh batch folder, then read as a corpus.

Accepted: ``.jsonl/.ndjson/.json``, ``.csv/.tsv``, ``.txt/.md`` and ``.zip`` of those (:func:`save_uploads`). The
total upload is capped (default 50 MB, also the cap on a ZIP's *uncompressed* bytes, counted while streaming so
a lying header cannot exceed it). ZIP members with absolute paths, drive letters, ``..`` parts, symlinks or
encryption reject the whole ZIP (zip-slip); every write target is resolved and must lie inside the batch
directory. Each upload goes to a fresh ``<uploads>/<batch>/`` directory; nothing is written elsewhere, and a
rejected upload leaves no files behind. Both ZIP readers (:func:`extract_zip_safely` for corpora,
:func:`extract_beir_zip` for evaluation sets) check members with one :func:`_check_members` and copy through
one capped loop, :func:`_copy_capped`.

:func:`load_uploaded_corpus` reads a batch with :func:`indexing.corpus.load_corpus` (structured files one by
one, loose ``.txt/.md`` through their folder); :func:`read_doc_meta` collects per-document ``source``/``url``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from indexing.jsonl import read_jsonl
from indexing.readers import TEXT_SUFFIXES

__all__ = [
    "KEPT_META",
    "record_origins",
    "uploads_root",
    "write_kept_meta",
    "read_upload_meta",
    "UploadError",
    "UploadBatch",
    "MAX_UPLOAD_BYTES",
    "MAX_ZIP_MEMBERS",
    "STRUCTURED_SUFFIXES",
    "TEXT_SUFFIXES",
    "safe_filename",
    "save_uploads",
    "extract_zip_safely",
    "extract_beir_zip",
    "load_uploaded_corpus",
    "read_doc_meta",
]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_ZIP_MEMBERS = 10_000
STRUCTURED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
ZIP_SUFFIX = ".zip"
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


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


def _open_zip(zip_path: str | os.PathLike[str]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadError(f"{Path(zip_path).name}: not a readable ZIP file ({err})") from None


def _check_members(infos: Sequence[zipfile.ZipInfo], max_members: int, max_bytes: int) -> None:
    """Refuse the whole ZIP (:class:`UploadError`): too many members, an unsafe name, a symlink, an encrypted
    member, or more declared uncompressed bytes than ``max_bytes``."""
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


def _visible_parts(info: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """The member's path parts, or None for a folder, a hidden file or macOS metadata (``__MACOSX``)."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.is_dir() or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts


def _copy_capped(zf: zipfile.ZipFile, plan: Sequence[tuple[zipfile.ZipInfo, Path]], dest: Path, max_bytes: int,
                 written: list[Path], *, start: int = 0, overwrite: bool = False) -> int:
    """Copy each ``(member, target)`` of ``plan`` (targets inside ``dest``) while counting the uncompressed
    bytes actually read, from ``start`` (bytes already copied); more than ``max_bytes`` in all raises
    :class:`UploadError`. Targets are appended to ``written`` as they are opened (the caller removes them on
    failure). ``overwrite`` False refuses an existing target. → the new total."""
    total = start
    for info, target in plan:
        if not _inside(dest, target):  # defence in depth; names are already sanitised
            raise UploadError(f"unsafe ZIP member {info.filename!r}: resolves outside the upload folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb" if overwrite else "xb") as out:
            written.append(target)
            while chunk := src.read(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise UploadError(f"ZIP expands to more than {max_bytes:,} bytes (limit); upload refused")
                out.write(chunk)
    return total


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
        with _open_zip(zip_path) as zf:
            infos = zf.infolist()
            _check_members(infos, max_members, max_bytes)
            structured: list[Path] = []
            texts: list[Path] = []
            skipped: list[str] = []
            total = 0
            for info in infos:
                parts = _visible_parts(info)
                if parts is None:
                    continue
                low = parts[-1].lower()
                if low.endswith(STRUCTURED_SUFFIXES):
                    target, bucket = _unique(dest / "files" / safe_filename(parts[-1])), structured
                elif low.endswith(TEXT_SUFFIXES):
                    target, bucket = _unique(dest / "docs" / Path(*[safe_filename(p) for p in parts])), texts
                else:
                    skipped.append(info.filename)
                    continue
                total = _copy_capped(zf, [(info, target)], dest, max_bytes, written, start=total)
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
    written: list[Path] = []
    try:
        with _open_zip(zip_path) as zf:
            infos = zf.infolist()
            _check_members(infos, MAX_ZIP_MEMBERS, max_bytes)
            wanted: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                parts = _visible_parts(info)
                if parts is None:
                    continue
                if parts[-1] in ("corpus.jsonl", "queries.jsonl"):
                    wanted.setdefault(parts[-1], info)
                elif len(parts) >= 2 and parts[-2] == "qrels" and parts[-1].endswith(".tsv"):
                    wanted.setdefault("qrels/" + safe_filename(parts[-1]), info)
            missing = [n for n in ("corpus.jsonl", "queries.jsonl") if n not in wanted]
            if missing or not any(k.startswith("qrels/") for k in wanted):
                raise UploadError(
                    "not a BEIR dataset: the ZIP needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv "
                    f"(missing: {', '.join(missing) or 'qrels/*.tsv'})"
                )
            plan = [(info, dest / rel) for rel, info in wanted.items()]
            _copy_capped(zf, plan, dest, max_bytes, written, overwrite=True)
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
        for obj in read_jsonl(path, skip_bad=True, errors="replace"):
            if not isinstance(obj, dict):
                continue
            doc_id = next((obj[k] for k in ("_id", "id", "doc_id", "docid") if isinstance(obj.get(k), str)), None)
            info = {k: obj[k] for k in ("source", "url") if isinstance(obj.get(k), str) and obj[k]}
            if doc_id and info:
                meta[doc_id] = info
    return meta


KEPT_META = "kept-meta.json"


def write_kept_meta(batch: UploadBatch, kept_doc_ids: Iterable[str]) -> Path:
    """Write ``<batch>/kept-meta.json``: ``{doc_id: {"source", "url"}}`` of the batch's files, for the
    documents ingestion *kept* only (a duplicate id that was skipped does not rewrite the existing
    document's origin) → the file's path."""
    kept = set(kept_doc_ids)
    meta = {d: m for d, m in read_doc_meta(batch.structured).items() if d in kept}
    return _write_meta(batch.dir / KEPT_META, meta)


def _write_meta(path: Path, meta: dict[str, dict[str, str]]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def uploads_root(index_name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/uploads/<index>``: the app's upload batches of an index (and the CLI's origin records)."""
    from indexing import settings

    return settings.home(root) / "uploads" / settings.validate_index_name(index_name)


def _jsonl_files(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The JSONL files among ``inputs`` (files, and JSONL files anywhere under folders), sorted per folder."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file()
                          and f.name.lower().endswith((".jsonl", ".ndjson", ".json")))
        elif p.is_file():
            out.append(p)
    return out


def record_origins(index_name: str, inputs: Iterable[str | os.PathLike[str]], kept_doc_ids: Iterable[str],
                   root: str | os.PathLike[str] | None = None, *, label: str = "cli") -> Path | None:
    """Record the ``source``/``url`` of documents indexed outside the app (``python -m indexing build|add``)
    the way an upload does: a batch folder ``<uploads_root>/<time>-<label>-<hex>/`` holding only
    ``kept-meta.json`` of the documents ingestion *kept* (``kept_doc_ids``) → its path, or None when none of
    them carries an origin (nothing written)."""
    kept = set(kept_doc_ids)
    meta = {d: m for d, m in read_doc_meta(_jsonl_files(inputs)).items() if d in kept}
    if not meta:
        return None
    batch = uploads_root(index_name, root) / f"{time.strftime('%Y%m%dT%H%M%S')}-{label}-{secrets.token_hex(4)}"
    batch.mkdir(parents=True)
    return _write_meta(batch / KEPT_META, meta)


def read_upload_meta(uploads_dir: str | os.PathLike[str], meta: dict[str, dict[str, str]] | None = None
                     ) -> dict[str, dict[str, str]]:
    """``meta`` (e.g. the demo corpus's) updated with each upload batch's ``kept-meta.json``, oldest batch
    first. A batch from before that file existed is read from its JSONL files, but only for documents
    ``meta`` does not have yet (never overriding one)."""
    out = dict(meta or {})
    root = Path(uploads_dir)
    if not root.is_dir():
        return out
    for batch in sorted(p for p in root.iterdir() if p.is_dir()):
        kept = batch / KEPT_META
        if kept.is_file():
            try:
                data = json.loads(kept.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            out.update({str(d): m for d, m in data.items() if isinstance(m, dict)})
        else:
            for d, m in read_doc_meta(sorted((batch / "files").glob("*.json*"))).items():
                out.setdefault(d, m)
    return out
