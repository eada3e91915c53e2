"""Splitting documents into passages: at most ``max_words`` whitespace words each, packed from whole sentences
where possible, about ``overlap`` words repeated between neighbours; ids ``<doc_id>`` or ``<doc_id>#p<N>``."""

from __future__ import annotations

import re

from indexing.normalize import normalize
from indexing.passages import Document, Passage

__all__ = ["DEFAULT_MAX_WORDS", "DEFAULT_OVERLAP", "split_words", "split_document"]

DEFAULT_MAX_WORDS = 250
DEFAULT_OVERLAP = 30
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…;:])[\"'”’)\]]*\s+")


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
