"""Training-time augmentation: queries typed without (some of) their diacritics, and paragraphs that lose one
sentence (so an inverse-cloze positive, which lost its pseudo-query sentence, is not recognisable by length)."""

from __future__ import annotations

import random
import re

from indexing.normalize import fold

__all__ = ["augment_diacritics", "drop_random_sentence", "strip_diacritics"]

_WORD_RE = re.compile(r"\w+")
_SENT_END_RE = re.compile(r"(?<=[.!?…])\s+(?=\S)")


def drop_random_sentence(text: str, rng: random.Random) -> str:
    """``text`` without one of its sentences (picked by ``rng``); unchanged when it has only one.

    Sentences are cut after ``. ! ? …`` followed by whitespace: cheap, and precise enough for matching the
    length of a paragraph that lost its pseudo-query sentence."""
    sents = _SENT_END_RE.split(text.strip())
    if len(sents) < 2:
        return text
    del sents[rng.randrange(len(sents))]
    return " ".join(sents)


def strip_diacritics(query: str, rng: random.Random, fraction: float = 1.0) -> str:
    """``query`` with the diacritics of a random ``fraction`` of its syllables removed (1.0 = all).

    With ``fraction < 1`` at least one syllable that has marks is folded (when there is one).
    """
    if fraction >= 1.0:
        return fold(query)
    spans = [m.span() for m in _WORD_RE.finditer(query)]
    marked = [s for s in spans if fold(query[s[0] : s[1]]) != query[s[0] : s[1]]]
    if not marked:
        return query
    chosen = {s for s in marked if rng.random() < fraction} or {rng.choice(marked)}
    out, last = [], 0
    for a, b in spans:
        out.append(query[last:a])
        out.append(fold(query[a:b]) if (a, b) in chosen else query[a:b])
        last = b
    out.append(query[last:])
    return "".join(out)


def augment_diacritics(
    query: str, rng: random.Random, fold_prob: float = 0.25, fold_partial: float = 0.5
) -> str:
    """With probability ``fold_prob``: strip all diacritics, or (probability ``fold_partial``) half of them."""
    if fold_prob <= 0 or rng.random() >= fold_prob:
        return query
    return strip_diacritics(query, rng, 0.5 if rng.random() < fold_partial else 1.0)
