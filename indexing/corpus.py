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

Where each piece lives: the data types and the ``passages.jsonl`` store in :mod:`indexing.passages`, the format
readers in :mod:`indexing.readers`, splitting in :mod:`indexing.chunking`; this module is the entry point
(:func:`load_corpus`) and re-exports their public names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from indexing.chunking import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, split_document, split_words
from indexing.passages import (
    Document,
    IngestError,
    IngestProblem,
    IngestReport,
    Passage,
    iter_passages,
    read_passages,
    write_passages,
)
from indexing.readers import DEFAULT_MAX_ZIP_BYTES, FORMATS, TEXT_SUFFIXES, detect_format, iter_documents

__all__ = [
    "Document",
    "Passage",
    "IngestProblem",
    "IngestReport",
    "IngestError",
    "detect_format",
    "iter_documents",
    "split_document",
    "split_words",
    "load_corpus",
    "write_passages",
    "iter_passages",
    "read_passages",
    "DEFAULT_MAX_WORDS",
    "DEFAULT_OVERLAP",
    "DEFAULT_MAX_ZIP_BYTES",
    "FORMATS",
    "TEXT_SUFFIXES",
]


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
