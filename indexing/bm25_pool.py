"""A compact in-memory posting pool for Whoosh's segment writer: no spilled runs, no sort of the postings.

Whoosh's :class:`whoosh.writing.PostingPool` keeps every posting as a Python tuple ``(field, term, docnum,
weight, value)`` (~230 bytes each in practice), and once its ``limitmb`` estimate is exceeded it sorts and
pickles runs to disk item by item, then merges them back with a heap at commit. Profiled on viwiki paragraphs
(docs/scaling.md, ``bench/bm25_build.py``), that spill is most of the bulk build's cost past ~12k passages:
at 20k the build took ~1.8x the CPU of the same build without a spill.

:class:`CompactPostingPool` has the same interface as far as :class:`~whoosh.writing.SegmentWriter` uses it
(``add``, ``iter_postings``, ``cleanup``, ``fieldnames``) and yields **the same postings in the same order**
(sorted by field, term, docnum), so the writer writes the same segment. Postings are grouped per (field,
term) as they arrive — docnums in an ``array('I')``, weights in an ``array('d')`` (exact), values as a list of
shared bytes objects — about 20 bytes a posting. Only the terms are sorted at the end: documents are added in
docnum order, so each term's postings already are (a posting that arrives out of order makes the pool sort
that field's postings, so the output stays Whoosh's order in any case).

The pool never spills: :func:`indexing.bm25_build.write_documents` bounds its memory by starting a new
segment when :meth:`CompactPostingPool.nbytes` passes ``limitmb``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

__all__ = ["CompactPostingPool", "install"]

#: Estimated bytes per posting (4 docnum + 8 weight + 8 value pointer, plus the containers' over-allocation).
POSTING_BYTES = 22
#: Estimated bytes per distinct (field, term): the dict entry, the term's bytes and three containers.
TERM_BYTES = 400


class CompactPostingPool:
    """Drop-in posting pool for one :class:`~whoosh.writing.SegmentWriter` (module docstring)."""

    def __init__(self) -> None:
        self._fields: dict[str, dict[bytes, tuple[array, array, list]]] = {}
        self._unordered: set[str] = set()
        self._values: dict[bytes, bytes] = {}
        self.fieldnames: set[str] = set()
        self.postings = 0
        self.terms = 0

    def add(self, item: tuple[str, bytes, int, float, bytes | None]) -> None:
        """Add one posting ``(fieldname, term bytes, docnum, weight, value bytes or None)``."""
        fieldname, btext, docnum, weight, vbytes = item
        terms = self._fields.get(fieldname)
        if terms is None:
            terms = self._fields[fieldname] = {}
            self.fieldnames.add(fieldname)
        entry = terms.get(btext)
        if entry is None:
            entry = terms[btext] = (array("I"), array("d"), [])
            self.terms += 1
        ids, weights, values = entry
        if ids and docnum <= ids[-1]:
            self._unordered.add(fieldname)
        ids.append(docnum)
        weights.append(weight)
        if vbytes is not None:
            vbytes = self._values.setdefault(vbytes, vbytes)
        values.append(vbytes)
        self.postings += 1

    def nbytes(self) -> int:
        """Estimated memory held by the postings (what a writer compares with its ``limitmb``)."""
        return self.postings * POSTING_BYTES + self.terms * TERM_BYTES

    def iter_postings(self) -> Iterator[tuple[str, bytes, int, float, bytes | None]]:
        """Every posting, sorted as Whoosh's pool sorts them: by field name, term bytes, docnum."""
        for fieldname in sorted(self._fields):
            terms = self._fields[fieldname]
            for btext in sorted(terms):
                ids, weights, values = terms[btext]
                rows = zip(ids, weights, values, strict=True)
                if fieldname in self._unordered:
                    rows = iter(sorted(rows, key=lambda r: (r[0], r[1], r[2] or b"")))
                for docnum, weight, vbytes in rows:
                    yield fieldname, btext, docnum, weight, vbytes

    def cleanup(self) -> None:
        """Drop the postings (the writer calls this when it closes the segment)."""
        self._fields.clear()
        self._values.clear()


def install(writer: Any) -> CompactPostingPool:
    """Replace a fresh :class:`~whoosh.writing.SegmentWriter`'s posting pool with a
    :class:`CompactPostingPool` → the new pool. Must be called before the first document is added."""
    if getattr(writer, "_added", False):
        raise RuntimeError("install() the compact pool before adding documents")
    old = writer.pool
    writer.pool = pool = CompactPostingPool()
    old.cleanup()
    return pool
