"""The model half of the GPU pack (CPU side): vocabulary, e5's blocks, and the start's reference scores.

- :func:`pack_vocab`: the shipped model dir's kept XLM-R ids + e5's prefix pieces (``▁passage`` is not among the
  shipped ids, and without it ``passage:`` would not tokenize as e5 tokenizes it).
- :func:`model_section`: ``e5-layers.bin`` (:func:`trainer.gpu.weights.write_e5_file`: e5's layers and embeddings
  but the word table, as their own Q4_0 / f32 blocks) + the arrays that rebuild the exact word rows there
  (block scales of every row; Q4_0 blocks of the rows the shipped dir lacks) + the exact table's sha256.
- :func:`reference_section`: logits of a few pairs computed with ``build_from_e5`` + ``prune_vocab``, which
  the GPU run must reproduce before it trains (:func:`trainer.gpu.train.check_reference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.gpu.packio import WEIGHTS
from trainer.paths import resolve

__all__ = ["pack_vocab", "model_section", "reference_section", "e5_model_dims"]


def pack_vocab(shipped_dir: str | Path, full_tok: Any) -> np.ndarray:
    """The shipped dir's kept XLM-R ids + the e5 prefix pieces, sorted (the pack's vocabulary)."""
    from reranker.tokenizer import prefix_ids
    from reranker.vocab import VocabMap

    vmap = VocabMap.load(resolve(str(shipped_dir)))
    if vmap is None:
        raise SystemExit(f"{shipped_dir} has no vocab_map.safetensors: the pack needs a pruned model dir")
    return np.unique(np.concatenate([vmap.kept_ids.numpy(), np.asarray(prefix_ids(full_tok))])).astype(np.int64)


def e5_model_dims(f: Any, given: dict | None = None) -> dict:
    """The ViRankerConfig dims the start is built with: e5-small's (``reranker.e5_init.E5_DIMS``, so the start
    is exactly what ``build_from_e5`` builds) after checking the file has them, or ``given`` (tests' tiny files)."""
    from reranker.e5_init import E5_DIMS

    if given:
        return dict(given)
    h = f.header
    dims = {k: E5_DIMS[k] for k in ("hidden_size", "num_heads", "intermediate_size", "max_position_embeddings",
                                    "type_vocab_size", "layer_norm_eps", "pad_token_id")}
    want = dict(hidden_size=h["hidden_size"], num_heads=h["num_heads"], intermediate_size=h["intermediate_size"],
                max_position_embeddings=h["max_positions"] + 2, type_vocab_size=h["type_vocab_size"])
    if any(dims[k] != v for k, v in want.items()):
        raise SystemExit(f"the e5 file's dims {want} are not e5-small's: pass model_dims")
    return dims


def _write_weights(f: Any, out: Path, num_layers: int) -> dict:
    """e5's layers < ``num_layers`` + its embeddings but the word table (the 4 special rows only) -> ``out``."""
    from trainer.gpu.weights import q4_rows, write_e5_file

    hidden = f.header["hidden_size"]
    tensors = {"emb.word": (1, 4 * hidden, q4_rows(f, np.arange(4)).tobytes())}
    for name, (dtype, n_el, raw) in f.tensors.items():
        if name == "emb.word" or (name.startswith("l") and int(name[1:].split(".")[0]) >= num_layers):
            continue
        tensors[name] = (dtype, n_el, bytes(raw))
    write_e5_file(out, {**f.header, "num_layers": num_layers, "vocab_size": 4}, f.special_ids, tensors)
    return {"word_rows": 4, "num_layers": num_layers, "bytes": out.stat().st_size}


def model_section(out: str | Path, e5_path: str | Path | None, shipped_dir: str | Path, full_tok: Any,
                  num_layers: int, model_dims: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Write ``out/e5-layers.bin``; return the vocabulary arrays and the manifest's ``model_dims`` / ``weights`` /
    ``vocab`` / ``e5_file`` entries."""
    from indexing.e5_weights import default_e5_path, read_e5_file
    from reranker.vocab import VocabMap
    from trainer.gpu.weights import dequantize_rows, q4_row_scales, q4_rows, table_sha256

    f_path = Path(e5_path) if e5_path else default_e5_path()
    f = read_e5_file(f_path)
    hidden = f.header["hidden_size"]
    if not 1 <= num_layers <= f.header["num_layers"]:
        raise SystemExit(f"num_layers {num_layers}: the e5 file has {f.header['num_layers']}")
    vocab = pack_vocab(shipped_dir, full_tok)
    rows = q4_rows(f, vocab)
    shipped = VocabMap.load(resolve(str(shipped_dir))).kept_ids.numpy()
    carried = np.flatnonzero(~np.isin(vocab, shipped)).astype(np.int64)
    arrays = {"vocab_old_ids": vocab, "word_scales": q4_row_scales(rows, hidden), "carried_rows": carried,
              "carried_q4": rows[carried]}
    vocab_info = {"size": len(vocab), "from_shipped": int(len(vocab) - len(carried)), "carried": int(len(carried)),
                  "carried_old_ids": vocab[carried].tolist(), "table_sha256": table_sha256(dequantize_rows(rows, hidden)),
                  "shipped_dir": str(shipped_dir), "old_vocab_size": len(full_tok)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = _write_weights(f, out / WEIGHTS, num_layers)
    parts = {"model_dims": {**e5_model_dims(f, model_dims), "num_layers": num_layers}, "weights": weights,
             "vocab": vocab_info, "e5_file": {"name": f_path.name, "vocab_size": f.header["vocab_size"]}}
    return arrays, parts


def reference_section(e5_path: str | Path | None, vocab: np.ndarray, parts: dict[str, Any], exit_layers: list[int],
                      max_query_length: int, max_length: int, q_ids: list[list[int]],
                      p_ids: list[list[int]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Logits of the pairs (prefixed ids) under ``build_from_e5(... gated ...)`` + ``prune_vocab(vocab)`` ->
    (arrays ``ref_input_ids`` / ``ref_attention_mask`` / ``ref_logits`` (R, heads), the manifest's ``reference``)."""
    import torch

    from reranker.e5_init import build_from_e5
    from reranker.tokenizer import build_segment_pair, collate
    from reranker.vocab import prune_vocab

    dims = {k: v for k, v in parts["model_dims"].items() if k != "num_layers"}
    ref = build_from_e5(num_layers=parts["model_dims"]["num_layers"], architecture="gated",
                        exit_layers=tuple(exit_layers), path=e5_path, use_bpt=False, max_query_length=max_query_length,
                        max_length=max_length, vocab_size=parts["e5_file"]["vocab_size"], **dims)
    ref, _ = prune_vocab(ref, torch.as_tensor(vocab))
    ref.eval()
    batch = collate([build_segment_pair(q, p, max_query_length, max_length) for q, p in zip(q_ids, p_ids, strict=True)])
    with torch.no_grad():
        exits = ref.forward_exits(batch["input_ids"], batch["attention_mask"])
    layers = sorted(exits)
    arrays = {"ref_input_ids": batch["input_ids"].numpy(), "ref_attention_mask": batch["attention_mask"].numpy(),
              "ref_logits": torch.stack([exits[i] for i in layers], 1).float().numpy()}
    return arrays, {"layers": layers, "pairs": len(q_ids)}
