"""The Search tab's document view and result list helpers: passages by id and by document, one hit's document
(:class:`DocumentView`), filtering hits by source / document and exporting them (CSV / JSON). No Gradio.

A document split into passages (``<doc_id>#p<N>``) is shown whole, in passage order, with the hit's passage
marked and its neighbours (the previous and next passage) named; the source is the corpus metadata
(``source`` / ``url`` fields) and the file the passage came from (``Passage.source``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from indexing.passages import Passage

__all__ = ["PassageLookup", "DocumentView", "hit_source", "filter_hits", "facet_choices", "export_csv",
           "export_json", "ALL"]

ALL = ""  # the "no filter" choice


@dataclass(frozen=True)
class DocumentView:
    """One hit's document: ``passage`` (the hit), ``passages`` (the whole document, in order), ``prev`` / ``next``
    (its neighbours or None), ``meta`` (``source`` / ``url`` from the corpus, may be empty)."""

    passage: Passage
    passages: list[Passage]
    prev: Passage | None
    next: Passage | None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def position(self) -> int:
        """1-based position of the hit's passage in its document."""
        return next(i for i, p in enumerate(self.passages, start=1) if p.id == self.passage.id)

    def raw_fields(self) -> dict[str, Any]:
        """The passage's stored fields plus the corpus metadata (what "raw fields" shows)."""
        return {**asdict(self.passage), **{f"meta.{k}": v for k, v in self.meta.items()}}


def _order_key(pid: str) -> tuple[int, str]:
    _, sep, tail = pid.rpartition("#p")
    return (int(tail), "") if sep and tail.isdigit() else (0, pid)


class PassageLookup:
    """Passages by id and by document (built once per serving generation)."""

    def __init__(self, passages: Iterable[Passage]) -> None:
        self.by_id: dict[str, Passage] = {}
        self.by_doc: dict[str, list[Passage]] = {}
        for p in passages:
            self.by_id[p.id] = p
            self.by_doc.setdefault(p.doc_id, []).append(p)
        for doc in self.by_doc.values():
            doc.sort(key=lambda p: _order_key(p.id))

    def __len__(self) -> int:
        return len(self.by_id)

    def document(self, pid: str, meta: Mapping[str, Mapping[str, str]] | None = None) -> DocumentView | None:
        """Passage ``pid``'s :class:`DocumentView`, or None for an unknown id."""
        psg = self.by_id.get(pid)
        if psg is None:
            return None
        doc = self.by_doc.get(psg.doc_id, [psg])
        i = next(j for j, p in enumerate(doc) if p.id == pid)
        return DocumentView(psg, list(doc), doc[i - 1] if i > 0 else None, doc[i + 1] if i + 1 < len(doc) else None,
                            dict((meta or {}).get(psg.doc_id, {})))


def hit_source(hit: Any, meta: Mapping[str, Mapping[str, str]], lookup: PassageLookup | None) -> str:
    """What the "source" of a hit is: the corpus ``source`` field, else the file its passage came from."""
    info = meta.get(hit.doc_id, {})
    if info.get("source"):
        return str(info["source"])
    psg = lookup.by_id.get(hit.id) if lookup is not None else None
    return psg.source if psg is not None and psg.source else ""


def filter_hits(hits: Sequence[Any], sources: Mapping[str, str], source: str = ALL, document: str = ALL) -> list[Any]:
    """Hits whose source (``sources``: hit id → source) is ``source`` and whose ``doc_id`` is ``document``
    (:data:`ALL`: any)."""
    return [h for h in hits if (not source or sources.get(h.id, "") == source) and (not document or h.doc_id == document)]


def facet_choices(hits: Sequence[Any], sources: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Dropdown choices ``(label, value)`` for the source and document filters, with counts, most frequent
    first; the first choice of each is "all" (:data:`ALL`)."""
    src: dict[str, int] = {}
    docs: dict[str, tuple[str, int]] = {}
    for h in hits:
        s = sources.get(h.id, "")
        src[s] = src.get(s, 0) + 1
        title, n = docs.get(h.doc_id, (h.title or h.doc_id, 0))
        docs[h.doc_id] = (title, n + 1)
    src_choices = [(f"Tất cả nguồn ({len(hits)})", ALL)] + [
        (f"{s or '(không rõ)'} ({n})", s) for s, n in sorted(src.items(), key=lambda kv: -kv[1])]
    doc_choices = [(f"Tất cả tài liệu ({len(docs)})", ALL)] + [
        (f"{title} ({n})", d) for d, (title, n) in sorted(docs.items(), key=lambda kv: -kv[1][1])]
    return src_choices, doc_choices


_EXPORT_FIELDS = ["rank", "id", "doc_id", "title", "score", "score_scale", "source", "text"]


def _rows(hits: Sequence[Any], sources: Mapping[str, str]) -> list[dict[str, Any]]:
    from search.ui.confidence import readable_score

    out = []
    for h in hits:
        s = readable_score(h)
        out.append({"rank": h.rank, "id": h.id, "doc_id": h.doc_id, "title": h.title, "score": round(s.value, 6),
                    "score_scale": s.kind, "source": sources.get(h.id, ""), "text": h.text,
                    "stage_scores": {k: float(v) for k, v in (h.stage_scores or {}).items()}})
    return out


def export_csv(hits: Sequence[Any], sources: Mapping[str, str]) -> str:
    """Hits → CSV text (rank, id, doc_id, title, score, score_scale, source, text)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_EXPORT_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(_rows(hits, sources))
    return buf.getvalue()


def export_json(query: str, searched: str, pipeline: str, hits: Sequence[Any], sources: Mapping[str, str]) -> str:
    """Hits → a JSON document ``{"query", "searched_query", "pipeline", "hits": [...]}`` (stage scores included)."""
    return json.dumps({"query": query, "searched_query": searched, "pipeline": pipeline,
                       "hits": _rows(hits, sources)}, ensure_ascii=False, indent=1)
