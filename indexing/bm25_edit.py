"""In-place edits of a Whoosh BM25 directory that cost time in proportion to the change, not to the index.

:func:`apply_edit` deletes passages by id (the deletions are flags in the segment list, written with the next
table of contents: no segment is rewritten) and writes the added passages as one new segment. Segments are
merged only at the tail, oldest first, so the index keeps the insertion order of its documents (BM25 ties
are broken by document number, and an edited index must rank exactly as a rebuild of the same passages):
the newest segments are merged when they hold no more live documents than what joins them — a binary
counter, so each document is rewritten O(log N) times over the life of the index and the big first segment
is only rewritten by a rebuild.

Exact statistics: Whoosh keeps deleted documents in ``doc_count_all``, ``doc_frequency`` and the field-length
totals until their segment is merged, and a merge re-adds field lengths in their byte-quantized form. The
edit therefore records the exact total length of every field over the live documents
(:data:`LIVE_LENGTHS_KEY` in the index config, see :mod:`indexing.bm25`), and
:class:`~indexing.bm25_scoring.PostingScorer` uses live counts; an edited index then scores exactly as a
rebuild does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from whoosh.reading import SegmentReader, TermNotFound

__all__ = ["apply_edit", "tail_to_merge", "live_docnums", "LIVE_LENGTHS_KEY", "MAX_MERGE_DOCS"]

LIVE_LENGTHS_KEY = "live_field_lengths"
#: Segments with more live documents than this are never merged by an edit (a rebuild compacts them).
MAX_MERGE_DOCS = 50_000


def live_docnums(reader: Any, field: str, values: Iterable[str]) -> list[int]:
    """Docnums of the live documents whose ``field`` holds one of ``values`` (sorted, unique)."""
    out: set[int] = set()
    for value in dict.fromkeys(values):
        try:
            out.update(reader.postings(field, value).all_ids())  # deleted documents are filtered out
        except TermNotFound:
            continue
    return sorted(out)


def tail_to_merge(segments: Sequence[Any], n_new: int, max_docs: int = MAX_MERGE_DOCS) -> list[Any]:
    """The trailing segments an edit adding ``n_new`` documents rewrites into one, oldest first: walking back
    from the newest, each segment joins while its live documents are no more than those gathered so far
    (``n_new`` to start with) and ``max_docs``; a tail of one segment without deletions is left alone (the
    rewrite would change nothing). Segments without live documents are always dropped."""
    gathered, tail = n_new, []
    for seg in reversed(segments):
        live = seg.doc_count()
        if live and (live > gathered or live > max_docs):
            break
        tail.append(seg)
        gathered += live
    full = [s for s in tail if s.doc_count()]
    if len(full) == 1 and not full[0].has_deletions():
        tail = [s for s in tail if not s.doc_count()]
    return tail[::-1]


def apply_edit(
    ix: Any,
    added: Sequence[dict[str, Any]],
    delete_ids: Iterable[str],
    lengths_of: Callable[[dict[str, Any]], dict[str, int]],
    live_lengths: dict[str, int] | None,
) -> tuple[int, dict[str, int]]:
    """Delete the live documents whose ``id`` is in ``delete_ids``, then add ``added`` (Whoosh field dicts)
    to the open Whoosh index ``ix`` → (documents deleted, exact live field-length totals afterwards).

    ``lengths_of(stored_fields)`` is the exact length of each scored field of one document (re-tokenized:
    Whoosh stores only byte-quantized lengths per document). ``live_lengths`` are the totals before the edit
    (None: the index has never been edited, so Whoosh's own totals are exact).
    Two commits: deletions and the tail merge, then the new segment (never merged in the same commit, so its
    totals are the added documents' exact lengths).
    """
    reader = ix.reader()
    try:
        totals = dict(live_lengths) if live_lengths is not None else {
            f: int(reader.field_length(f)) for f in ix.schema.scorable_names()}
        doomed = live_docnums(reader, "id", delete_ids)
        for docnum in doomed:
            for f, n in lengths_of(reader.stored_fields(docnum)).items():
                totals[f] -= n
    finally:
        reader.close()
    writer = ix.writer()
    try:
        tail = tail_to_merge(writer.segments, len(added))
        if doomed or tail:
            for docnum in doomed:
                writer.delete_document(docnum)
            for seg in tail:
                if seg.doc_count():
                    seg_reader = SegmentReader(writer.storage, writer.schema, seg)
                    writer.add_reader(seg_reader)  # live documents only, in their order
                    seg_reader.close()
            writer.commit(mergetype=lambda _w, segments: [s for s in segments if s not in tail])
        else:
            writer.cancel()
    except BaseException:
        if not writer.is_closed:
            writer.cancel()
        raise
    if added:
        writer = ix.writer()
        try:
            for doc in added:
                writer.add_document(**doc)
            writer.commit(merge=False)
        except BaseException:
            if not writer.is_closed:
                writer.cancel()
            raise
        reader = ix.reader()
        try:
            newest = reader.leaf_readers()[-1][0]  # the segment just written
            for f in totals:
                totals[f] += int(newest.field_length(f))
        finally:
            reader.close()
    return len(doomed), totals
