"""ViRanker models (both architectures, RoPE included) as ONNX graphs, fp32 and int8, scored with ONNX Runtime.

    model (joint)  --export_onnx--> model.onnx: (input_ids, attention_mask) (B, L) int64 -> logits (B,)
    model (gated)  --export_onnx--> model.onnx: (q_ids, q_mask, p_ids, p_mask) -> logits (B,)
                                    (the two segments are split in numpy first: reranker.gated.split_segments)
    model.onnx     --quantize_int8--> model_int8.onnx: every constant MatMul as MatMulNBits (8-bit weights, one
                                    scale per output channel and block of 32 inputs; accuracy level 4: the
                                    activations are quantized per row and block at run time, so a row's result
                                    depends on that row only)

:class:`OnnxScorer` is :class:`reranker.inference.ViRankerScorer` (same tokenization, windows, settings) with the
forward pass in an ONNX Runtime session. Each sequence runs on its own (batch of one, no padding), so a pair's
score never depends on the other pairs of a call — in fp32 and in int8 — and no work goes to padding. Graphs
are cached per model dir (``VIRANKER_ONNX_CACHE``, default ``~/.cache/viranker/onnx``), keyed by the weights'
size and mtime and the exit layer.

Export uses the TorchScript exporter (``dynamo=False``): dynamic batch and length axes, opset 17.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reranker.factory import RerankerModel
from reranker.inference import ViRankerScorer

OPSET = 17
INT8_BLOCK = 32


class OnnxExportError(RuntimeError):
    """The model could not be exported (or its graph does not reproduce the torch scores)."""


class _JointGraph(nn.Module):
    """The joint model's padded forward with the mask always applied (no data-dependent branch)."""

    def __init__(self, model: RerankerModel, exit_layer: int) -> None:
        super().__init__()
        self.model, self.exit_layer = model, exit_layer
        rope = model.rotary
        self.tables = None if rope is None else rope(model.config.max_position_embeddings)  # (P, Dh) constants

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = self.model
        key_mask = attention_mask.bool()
        x = m.embeddings(input_ids)
        rope = None
        if self.tables is not None:
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            rope = (self.tables[0][pos], self.tables[1][pos])
        for layer in m.layers[: self.exit_layer]:
            x = layer(x, key_mask, rope, "sdpa", False)
        return m.heads[str(self.exit_layer)](m._pool(x, attention_mask, input_ids))


class _GatedGraph(nn.Module):
    """The gated model from its two right-padded segments (what ``split_segments`` returns)."""

    def __init__(self, model: RerankerModel, exit_layer: int) -> None:
        super().__init__()
        self.model, self.exit_layer = model, exit_layer
        rope = model.rotary
        self.tables = None if rope is None else rope(2 * model.config.max_position_embeddings)

    def forward(self, q_ids: torch.Tensor, q_mask: torch.Tensor, p_ids: torch.Tensor,
                p_mask: torch.Tensor) -> torch.Tensor:
        from reranker.gated import _segment_mean

        m = self.model
        qm, pm = q_mask.bool(), p_mask.bool()
        lq = q_ids.shape[1]
        x = torch.cat([m.embeddings(q_ids), m.embeddings(p_ids)], dim=1)
        rope = None
        if self.tables is not None:
            cos, sin = self.tables
            p_pos = qm.sum(1)[:, None] + torch.arange(p_ids.shape[1], device=p_ids.device)[None]  # (B, Lp)
            q_pos = torch.arange(lq, device=q_ids.device)
            rope = ((cos[q_pos], sin[q_pos]), (cos[p_pos].unsqueeze(1), sin[p_pos].unsqueeze(1)))
        for layer in m.layers[: self.exit_layer]:
            x = layer(x, lq, (qm, pm), rope, "sdpa", False)
        q, p = _segment_mean(x[:, :lq], qm), _segment_mean(x[:, lq:], pm)
        return m.heads[str(self.exit_layer)](torch.stack([q, p], dim=1))


def _example_inputs(model: RerankerModel) -> tuple[tuple[torch.Tensor, ...], list[str], dict[str, dict[int, str]]]:
    if model.config.architecture == "gated":
        q = torch.tensor([[0, 5, 6, 2], [0, 5, 2, 1]])
        p = torch.tensor([[0, 7, 8, 9, 2], [0, 7, 2, 1, 1]])
        names = ["q_ids", "q_mask", "p_ids", "p_mask"]
        axes = {"q_ids": {0: "batch", 1: "q_len"}, "q_mask": {0: "batch", 1: "q_len"},
                "p_ids": {0: "batch", 1: "p_len"}, "p_mask": {0: "batch", 1: "p_len"}, "logits": {0: "batch"}}
        return (q, q.ne(1).long(), p, p.ne(1).long()), names, axes
    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 2], [0, 5, 2, 2, 7, 2, 1, 1]])
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "logits": {0: "batch"}}
    return (ids, ids.ne(1).long()), ["input_ids", "attention_mask"], axes


def export_onnx(model: RerankerModel, path: str | os.PathLike[str], exit_layer: int | None = None) -> Path:
    """Write ``model`` (fp32, eval; either architecture) as an ONNX graph scoring at ``exit_layer`` (default: the
    last layer) → the path. Raises :class:`OnnxExportError` when the exporter fails."""
    import warnings

    layer = model.config.num_layers if exit_layer is None else int(exit_layer)
    if layer not in model.config.all_exit_layers:
        raise ValueError(f"no scoring head at layer {layer}; heads exist at {model.config.all_exit_layers}")
    model = model.float().eval()
    graph = (_GatedGraph if model.config.architecture == "gated" else _JointGraph)(model, layer).eval()
    inputs, names, axes = _example_inputs(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, str(tmp), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as e:  # the exporter's many error types: one typed error for callers
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"ONNX export of the {model.config.architecture} model failed: {e}") from e
    os.replace(tmp, path)
    return path


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], block_size: int = INT8_BLOCK) -> Path:
    """int8 weights for every constant MatMul of ``src`` (ONNX Runtime's ``MatMulNBitsQuantizer``: symmetric,
    one scale per output channel and block of ``block_size`` inputs; accuracy level 4 = int8 compute with
    activations quantized per row and block) → ``dst``. Embeddings, LayerNorm and attention stay fp32."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=block_size, is_symmetric=True,
                             accuracy_level=4, op_types_to_quantize=("MatMul",))
    q.process()
    dst = Path(dst)
    q.model.save_model_to_file(str(dst), use_external_data_format=False)
    return dst


def quantize_int8_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """int8 by ONNX Runtime's ``quantize_dynamic`` (per-channel int8 weights; activation scales computed per input
    tensor at run time) → ``dst``. Run by :class:`OnnxScorer` (one sequence per run) a scale covers one
    sequence only, so scores stay independent of the batch; in padded batches they are not."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return Path(dst)


def session(path: str | os.PathLike[str], num_threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session (all graph optimizations; ``num_threads`` intra-op threads, default torch's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(num_threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def cache_dir() -> Path:
    return Path(os.environ.get("VIRANKER_ONNX_CACHE", Path.home() / ".cache" / "viranker" / "onnx"))


def cached_graph(model_dir: str | os.PathLike[str], model: RerankerModel, exit_layer: int | None,
                 int8: bool) -> Path:
    """The model dir's graph for ``exit_layer`` (fp32 or int8), exported (and quantized) on first use."""
    model_dir = Path(model_dir).resolve()
    w = model_dir / "model.safetensors"
    st = w.stat()
    key = hashlib.sha1(f"{model_dir}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    base = cache_dir() / f"{model_dir.name}-{key}-l{exit_layer or model.config.num_layers}"
    fp32 = base.with_suffix(".onnx")
    if not fp32.is_file():
        export_onnx(model, fp32, exit_layer)
    if not int8:
        return fp32
    q = base.with_name(base.name + "-int8.onnx")
    if not q.is_file():
        tmp = q.with_suffix(".tmp.onnx")
        quantize_int8(fp32, tmp)
        os.replace(tmp, q)
    return q


class OnnxScorer(ViRankerScorer):
    """:class:`ViRankerScorer` with the forward pass in ONNX Runtime, one sequence per run (batch invariant).

    ``onnx_path``: a graph from :func:`export_onnx` / :func:`quantize_int8` for ``model`` at ``exit_layer``.
    ``quantize`` here names which graph :meth:`from_pretrained` picks (True: the int8 one).
    """

    def __init__(self, model: RerankerModel, tokenizer: Any, vocab_map: Any = None, *,
                 onnx_path: str | os.PathLike[str], num_threads: int | None = None, **kw: Any) -> None:
        kw.pop("quantize", None)
        kw.pop("attn_impl", None)
        kw.pop("pack", None)
        super().__init__(model, tokenizer, vocab_map, num_threads=num_threads, **kw)
        self.onnx_path = Path(onnx_path)
        self.session = session(self.onnx_path, num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, tokenizer_path: str | Path | None = None, **kw: Any):
        """Like :meth:`ViRankerScorer.from_pretrained` (``inference.json`` defaults, the dir's tokenizer), the
        graph exported into the cache on first use; ``quantize=True`` → the int8 graph."""
        base = ViRankerScorer.from_pretrained(model_dir, tokenizer_path, **{**kw, "quantize": False})
        settings = {**base.settings, **kw}
        int8 = bool(settings.get("quantize", False))
        path = cached_graph(model_dir, base.model, base.exit_layer, int8)
        keys = ("batch_size", "max_query_length", "max_length", "long_passages", "window_overlap", "exit_layer",
                "num_threads")
        own = {k: getattr(base, k) for k in keys if hasattr(base, k)}
        own["num_threads"] = kw.get("num_threads")
        scorer = cls(base.model, base.tokenizer, base.vocab_map, onnx_path=path, **own)
        scorer.remap_ids = base.remap_ids
        scorer.settings = {**settings, "backend": "onnx"}
        return scorer

    def _feeds(self, seq: Sequence[int]) -> dict[str, np.ndarray]:
        ids = torch.as_tensor([list(seq)], dtype=torch.long)
        if self.remap_ids:
            ids = self.vocab_map.apply(ids)
        if not self.gated:
            arr = ids.numpy()
            return {"input_ids": arr, "attention_mask": np.ones_like(arr)}
        from reranker.gated import split_segments

        q, qm, p, pm = split_segments(ids, torch.ones_like(ids), self.model.config.pad_token_id)
        return {"q_ids": q.numpy(), "q_mask": qm.long().numpy(), "p_ids": p.numpy(), "p_mask": pm.long().numpy()}

    def _score_sequences(self, seqs: list[list[int]]) -> np.ndarray:
        out = np.empty(len(seqs), dtype=np.float32)
        for i, s in enumerate(seqs):
            out[i] = self.session.run(["logits"], self._feeds(s))[0][0]
        return out
