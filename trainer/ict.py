"""Inverse Cloze Task (ICT) examples: (pseudo-query, positive passage) pairs cut from a corpus.

One sentence of a paragraph becomes the pseudo-query; the positive is the paragraph *without* that sentence
most of the time (``remove_prob``, default 0.9), so the model must match meaning rather than copy a
substring, and the paragraph *with* it otherwise (as in Lee et al. 2019 and ViRanker's data recipe).

Everything is deterministic: the paragraph order is a seeded shuffle, and the sentence / keep-or-remove
choice of a paragraph depends only on ``(seed, paragraph id)``, so a resumed or re-run job yields the
same examples.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["IctExample", "split_sentences", "make_ict_example", "make_ict_examples"]

_WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class IctExample:
    """One ICT pair: ``query`` is a sentence of paragraph ``passage_id``; ``positive`` is the context."""

    query_id: str
    query: str
    positive: str
    passage_id: str
    title: str
    sentence_index: int
    removed: bool  # True when ``query`` was cut out of ``positive``


def split_sentences(text: str) -> list[str]:
    """Vietnamese text → its sentences (underthesea ``sent_tokenize``), stripped, empty ones dropped."""
    from underthesea import sent_tokenize  # lazy: the import costs ~0.5 s

    return [s.strip() for s in sent_tokenize(text) if s and s.strip()]


def _n_syllables(text: str) -> int:
    return len(_WORD_RE.findall(text))


def _rng_for(seed: int, key: str) -> random.Random:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_ict_example(
    passage: Mapping[str, str],
    *,
    seed: int = 13,
    remove_prob: float = 0.9,
    min_query_syllables: int = 6,
    max_query_syllables: int = 48,
    min_context_syllables: int = 20,
) -> IctExample | None:
    """A paragraph ``{"_id", "title", "text"}`` → one :class:`IctExample`, or None when none fits.

    A sentence is eligible as the pseudo-query when it has ``min_query_syllables`` to
    ``max_query_syllables`` syllables and the paragraph left after removing it keeps at least
    ``min_context_syllables``. The paragraph needs at least two sentences.
    """
    if not 0.0 <= remove_prob <= 1.0:
        raise ValueError(f"remove_prob must be in [0, 1], got {remove_prob}")
    pid = str(passage["_id"])
    sentences = split_sentences(str(passage.get("text", "")))
    if len(sentences) < 2:
        return None
    total = sum(_n_syllables(s) for s in sentences)
    eligible = [
        i
        for i, s in enumerate(sentences)
        if min_query_syllables <= _n_syllables(s) <= max_query_syllables
        and total - _n_syllables(s) >= min_context_syllables
    ]
    if not eligible:
        return None
    rng = _rng_for(seed, pid)
    idx = rng.choice(eligible)
    removed = rng.random() < remove_prob
    context = [s for i, s in enumerate(sentences) if i != idx] if removed else sentences
    return IctExample(
        query_id=f"ict-{pid}-s{idx}",
        query=sentences[idx],
        positive=" ".join(context),
        passage_id=pid,
        title=str(passage.get("title", "")),
        sentence_index=idx,
        removed=removed,
    )


def make_ict_examples(
    passages: Iterable[Mapping[str, str]],
    n_queries: int | None = None,
    *,
    seed: int = 13,
    **kwargs,
) -> list[IctExample]:
    """Paragraphs → up to ``n_queries`` ICT examples (one per paragraph, seeded paragraph order).

    ``kwargs`` go to :func:`make_ict_example`. Paragraphs with no eligible sentence are skipped.
    """
    items = list(passages)
    random.Random(seed).shuffle(items)
    out: list[IctExample] = []
    for p in items:
        if n_queries is not None and len(out) >= n_queries:
            break
        ex = make_ict_example(p, seed=seed, **kwargs)
        if ex is not None:
            out.append(ex)
    return out
