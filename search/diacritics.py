"""Queries typed without Vietnamese diacritics: detect them and restore the marks.

- :func:`diacritic_level` — ``"full"`` / ``"partial"`` / ``"none"``: the share of Vietnamese syllables in the
  query that carry marks. ASCII syllables count as *unmarked Vietnamese* only when they are well-formed folded
  Vietnamese syllables (onset + 1-3 vowels + coda), so ``Panthers``, ``Josh`` or ``2015`` do not count.
- :class:`DiacriticRestorer` — the syllable n-gram model that restores the marks; an index-time artifact, so it
  lives in :mod:`indexing.restorer` (re-exported here with :data:`RESTORER_FILE` and :func:`restorer_text`).

>>> r = DiacriticRestorer.from_texts(["Thủ đô của Việt Nam là Hà Nội.", "Hà Nội có nhiều hồ."])
>>> r.restore("Thu do cua Viet Nam la Ha Noi")
'Thủ đô của Việt Nam là Hà Nội'
>>> diacritic_level("thu do cua viet nam"), diacritic_level("thủ đô của Việt Nam")
('none', 'full')
"""

from __future__ import annotations

import re

from indexing.normalize import has_diacritics
from indexing.restorer import (
    QUESTION_SEED,
    QUESTION_SEED_WEIGHT,
    RESTORER_FILE,
    DiacriticRestorer,
    restorer_text,
)

__all__ = [
    "diacritic_level",
    "marked_fraction",
    "is_folded_syllable",
    "DiacriticRestorer",
    "RESTORER_FILE",
    "QUESTION_SEED",
    "QUESTION_SEED_WEIGHT",
    "restorer_text",
    "FULL_THRESHOLD",
]

#: A query whose Vietnamese syllables are at least this share marked is "full". Running text has ~75-90 %
#: of syllables marked (a few natural queries fall below: "Ai làm ra dota?" has 1 of 3 and reads "partial";
#: restoring it is harmless since the marked syllable is kept and "ai", "ra" are likely as typed).
FULL_THRESHOLD = 0.5

_FOLDED_SYLLABLE_RE = re.compile(
    r"^(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx])?[aeiouy]{1,3}(?:ch|ng|nh|[cmnpt])?$"
)
_TOKEN_RE = re.compile(r"\w+")


def is_folded_syllable(token: str) -> bool:
    """True when lower-cased ASCII ``token`` is a well-formed Vietnamese syllable without marks (``"nguoi"``)."""
    return bool(_FOLDED_SYLLABLE_RE.match(token))


def marked_fraction(query: str) -> tuple[int, int]:
    """Query → ``(marked, unmarked)`` counts of Vietnamese syllables (see module docstring)."""
    marked = unmarked = 0
    for token in _TOKEN_RE.findall(query):
        if not token.isalpha():
            continue
        token = token.lower()
        if has_diacritics(token):
            marked += 1
        elif token.isascii() and is_folded_syllable(token):
            unmarked += 1
    return marked, unmarked


def diacritic_level(query: str) -> str:
    """Query → ``"none"`` (Vietnamese syllables, none marked), ``"partial"`` (marked share below
    :data:`FULL_THRESHOLD`) or ``"full"`` (otherwise, including queries with no Vietnamese syllables).

    >>> [diacritic_level(q) for q in ["cap lai ho chieu", "cấp lại ho chieu o dau", "Josh Norman 2015"]]
    ['none', 'partial', 'full']
    """
    marked, unmarked = marked_fraction(query)
    if unmarked == 0:
        return "full"
    if marked == 0:
        return "none"
    return "full" if marked / (marked + unmarked) >= FULL_THRESHOLD else "partial"
