"""Vietnamese text normalization: one set of functions for documents and queries alike.

Stages (each a small pure function):

- :func:`normalize` — NFC, tone-mark placement unified with underthesea (``hoà`` → ``hòa``,
  ``thuý`` → ``thúy``), control characters (and lone surrogates) become spaces, zero-width characters are removed,
  whitespace collapsed. Case kept.
- :func:`fold` — diacritics removed, ``đ → d`` and ``Đ → D`` mapped explicitly (NFD + dropping
  combining marks alone leaves ``đ`` untouched). Case kept.
- :func:`syllables` / :func:`folded_syllables` — lower-cased word-character runs: the tokens of the
  BM25 ``exact`` and ``folded`` fields.
- :func:`words` — underthesea word segmentation (run *before* lower-casing, since it uses case),
  multi-syllable words joined by ``_`` (PhoBERT/PhoRanker input style).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["normalize", "fold", "syllables", "folded_syllables", "words", "has_diacritics"]

_WORD_RE = re.compile(r"\w+")
_SPACE_RE = re.compile(r"\s+")
# C0/C1 controls except whitespace, and lone UTF-16 surrogates (no encoder accepts them): become spaces, so
# ``Hà\x00Nội`` is two words as it reads, not ``HàNội``.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# zero-width characters, BOM, bidi overrides: removed (they sit inside words).
_INVISIBLE_RE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_D_MAP = str.maketrans({"đ": "d", "Đ": "D"})


@lru_cache(maxsize=262_144)
def _unify_tone(token: str) -> str:
    """One word-character run → the same run with the tone mark on its modern position."""
    if token.isascii():
        return token
    from underthesea import text_normalize  # imported lazily: underthesea import costs ~0.5 s

    unified = text_normalize(token)
    # text_normalize may re-space a token it splits (e.g. digits next to letters); keep the
    # original then, since only the tone-mark placement is wanted here.
    return unified if len(unified) == len(token) else token


def normalize(text: str) -> str:
    """Raw text → NFC text with unified tone marks and collapsed whitespace (case kept).

    >>> normalize("Hoà  bình\\u200b thuý")
    'Hòa bình thúy'
    """
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE_RE.sub("", _CONTROL_RE.sub(" ", text))
    text = _WORD_RE.sub(lambda m: _unify_tone(m.group(0)), text)
    return _SPACE_RE.sub(" ", text).strip()


@lru_cache(maxsize=262_144)
def _fold_token(token: str) -> str:
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFD", token.translate(_D_MAP))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped)


def fold(text: str) -> str:
    """Text → the same text without Vietnamese diacritics (``đ``→``d``, ``Đ``→``D``), case kept.

    >>> fold("Thủ đô Hà Nội")
    'Thu do Ha Noi'
    """
    text = unicodedata.normalize("NFC", text)
    return _WORD_RE.sub(lambda m: _fold_token(m.group(0)), text)


def has_diacritics(token: str) -> bool:
    """True when ``token`` carries any Vietnamese diacritic (including ``đ``)."""
    return _fold_token(token) != token


def syllables(text: str) -> list[str]:
    """Text → lower-cased syllables of the normalized text (the BM25 ``exact`` tokens).

    >>> syllables("Thủ đô của Việt Nam, HOÀ bình!")
    ['thủ', 'đô', 'của', 'việt', 'nam', 'hòa', 'bình']
    """
    return _WORD_RE.findall(normalize(text).lower())


def folded_syllables(text: str) -> list[str]:
    """Text → lower-cased syllables without diacritics (the BM25 ``folded`` tokens).

    >>> folded_syllables("Thủ đô của Việt Nam")
    ['thu', 'do', 'cua', 'viet', 'nam']
    """
    return [_fold_token(s) for s in syllables(text)]


def words(text: str) -> list[str]:
    """Text → lower-cased underthesea words, syllables of a word joined by ``_``; punctuation dropped.

    Segmentation runs before lower-casing because underthesea uses capitalisation as a cue.

    >>> words("Thủ đô của Việt Nam là Hà Nội")
    ['thủ_đô', 'của', 'việt_nam', 'là', 'hà_nội']
    """
    from underthesea import word_tokenize

    out = []
    for word in word_tokenize(normalize(text)):
        parts = _WORD_RE.findall(word.lower())
        if parts:
            out.append("_".join(parts))
    return out
