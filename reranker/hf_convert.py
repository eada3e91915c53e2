"""Hugging Face weight import / export for ViRanker models, through explicit, shape-checked key maps.

* :func:`load_encoder_weights` reads any Hugging Face ``BertModel`` / ``XLMRobertaModel`` checkpoint
  (keys with a ``bert.`` / ``roberta.`` prefix or none) into a ViRanker or GatedRanker.
* :func:`export_hf_classifier` writes a ``rope=False`` model as a stock
  ``XLMRobertaForSequenceClassification`` directory (same weights, same scores).

A checkpoint that does not fit the model raises :class:`WeightMismatch` (a ``ValueError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from torch import nn

from reranker.config import ViRankerConfig

if TYPE_CHECKING:
    from reranker.model import ViRanker


class WeightMismatch(ValueError):
    """A checkpoint's tensors do not fit the model (unknown key, wrong shape, or an HF weight left unset)."""


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did. ``missing``: model keys left at their init values;
    ``unexpected``: checkpoint keys not used; ``dropped``: checkpoint keys deliberately discarded."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}: {self.missing}; "
            f"unexpected {len(self.unexpected)}: {self.unexpected}; dropped {len(self.dropped)}: {self.dropped}"
        )


_PREFIXES = ("bert.", "roberta.", "xlm_roberta.", "model.")
_EMB_MAP = {
    "embeddings.word_embeddings.weight": "embeddings.word.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
    "embeddings.position_embeddings.weight": "embeddings.position.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
}
_LAYER_MAP = {  # HF suffix under encoder.layer.{i}. -> ours under layers.{i}.
    "attention.output.dense.weight": "attn.out.weight",
    "attention.output.dense.bias": "attn.out.bias",
    "attention.output.LayerNorm.weight": "attn.norm.weight",
    "attention.output.LayerNorm.bias": "attn.norm.bias",
    "intermediate.dense.weight": "ffn.fc1.weight",
    "intermediate.dense.bias": "ffn.fc1.bias",
    "output.dense.weight": "ffn.fc2.weight",
    "output.dense.bias": "ffn.fc2.bias",
    "output.LayerNorm.weight": "ffn.norm.weight",
    "output.LayerNorm.bias": "ffn.norm.bias",
}
_QKV = ("query", "key", "value")
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


def _read_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors / .bin file or a directory holding one."""
    p = Path(src)
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {src}")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    if p.suffix == ".safetensors":
        return load_file(str(p))
    return torch.load(str(p), map_location="cpu", weights_only=True)


def _normalize_hf_key(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def load_encoder_weights(model: nn.Module, src: dict[str, torch.Tensor] | str | Path) -> LoadReport:
    """Copy a Hugging Face BERT / XLM-R encoder checkpoint into ``model`` (explicit key map).

    ``model``: a :class:`ViRanker` or a :class:`reranker.gated.GatedRanker` (same encoder key names).
    ``src`` is a state dict or a checkpoint file / directory. Query/key/value are concatenated into the
    fused ``qkv`` projection; position embeddings are dropped when ``config.rope``; layers beyond
    ``config.num_layers`` are dropped (keeps the first N). An HF ``classifier.dense`` / ``out_proj`` pair
    with one label goes into the last layer's head. Every copied tensor is shape-checked (:class:`WeightMismatch`
    on mismatch). Returns a :class:`LoadReport`.
    """
    hf = _read_state_dict(src) if isinstance(src, (str, Path)) else src
    cfg = model.config
    ours = model.state_dict()
    report = LoadReport()
    mapped: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[int, str, str], torch.Tensor] = {}  # (layer, q|k|v, weight|bias)
    last_head = f"heads.{cfg.num_layers}."

    for raw_key, tensor in hf.items():
        key = _normalize_hf_key(raw_key)
        if key.endswith(("position_ids", "token_type_ids")):  # buffers, not weights
            report.dropped.append(raw_key)
            continue
        if key in _EMB_MAP:
            if key == "embeddings.position_embeddings.weight" and cfg.rope:
                report.dropped.append(raw_key)
                continue
            mapped[_EMB_MAP[key]] = tensor
            continue
        m = _LAYER_RE.match(key)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            if i >= cfg.num_layers:
                report.dropped.append(raw_key)
                continue
            qm = re.match(r"^attention\.self\.(query|key|value)\.(weight|bias)$", rest)
            if qm:
                qkv_parts[(i, qm.group(1), qm.group(2))] = tensor
                continue
            if rest in _LAYER_MAP:
                mapped[f"layers.{i}.{_LAYER_MAP[rest]}"] = tensor
                continue
        head_map = {
            "classifier.dense.weight": last_head + "dense.weight",
            "classifier.dense.bias": last_head + "dense.bias",
            "classifier.out_proj.weight": last_head + "out.weight",
            "classifier.out_proj.bias": last_head + "out.bias",
        }
        if key in head_map and ours[head_map[key]].shape == tensor.shape:
            mapped[head_map[key]] = tensor
            continue
        report.unexpected.append(raw_key)

    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            parts = [qkv_parts.get((i, n, kind)) for n in _QKV]
            if all(p is not None for p in parts):
                mapped[f"layers.{i}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
            else:
                for n, p in zip(_QKV, parts, strict=True):
                    if p is not None:
                        report.unexpected.append(f"encoder.layer.{i}.attention.self.{n}.{kind}")

    for k, t in mapped.items():
        if k not in ours:
            raise WeightMismatch(f"mapped key {k} is not a model parameter")
        if ours[k].shape != t.shape:
            raise WeightMismatch(
                f"shape mismatch for {k}: model {tuple(ours[k].shape)} vs checkpoint {tuple(t.shape)}"
            )
    result = model.load_state_dict({k: t.to(ours[k].dtype) for k, t in mapped.items()}, strict=False)
    if result.unexpected_keys:
        raise WeightMismatch(f"unexpected keys after mapping: {result.unexpected_keys}")
    report.loaded = sorted(mapped)
    report.missing = sorted(result.missing_keys)
    return report


def hf_classifier_config(config: ViRankerConfig) -> Any:
    """The ``XLMRobertaConfig`` (num_labels=1) equivalent to a rope=False ViRanker config."""
    from transformers import XLMRobertaConfig

    if config.rope:
        raise ValueError("only rope=False models map onto a stock XLM-R classifier (XLM-R has absolute positions)")
    if config.head_activation != "tanh" or config.head_hidden_size != config.hidden_size:
        raise ValueError("the HF XLM-R classification head is dense(d, d) -> tanh -> out; "
                         "build with head_activation='tanh' and head_hidden_size=hidden_size")
    return XLMRobertaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=config.pad_token_id,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.attention_dropout,
    )


def to_hf_state_dict(model: ViRanker) -> dict[str, torch.Tensor]:
    """Inverse of :func:`load_encoder_weights` for a rope=False model: XLMRobertaForSequenceClassification
    keys (``roberta.`` encoder + ``classifier.``). Early-exit heads are not exported."""
    cfg = model.config
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for hf_key, our_key in _EMB_MAP.items():
        if our_key in sd:
            out["roberta." + hf_key] = sd[our_key]
    d = cfg.hidden_size
    for i in range(cfg.num_layers):
        for rest, ours in _LAYER_MAP.items():
            out[f"roberta.encoder.layer.{i}.{rest}"] = sd[f"layers.{i}.{ours}"]
        for kind in ("weight", "bias"):
            fused = sd[f"layers.{i}.attn.qkv.{kind}"]
            for j, n in enumerate(_QKV):
                out[f"roberta.encoder.layer.{i}.attention.self.{n}.{kind}"] = fused[j * d : (j + 1) * d]
    h = f"heads.{cfg.num_layers}."
    out["classifier.dense.weight"] = sd[h + "dense.weight"]
    out["classifier.dense.bias"] = sd[h + "dense.bias"]
    out["classifier.out_proj.weight"] = sd[h + "out.weight"]
    out["classifier.out_proj.bias"] = sd[h + "out.bias"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def export_hf_classifier(model: ViRanker, out_dir: str | Path, tokenizer: Any = None) -> Path:
    """Save a rope=False ViRanker as a stock HF ``XLMRobertaForSequenceClassification`` directory
    (num_labels=1), loadable by transformers / sentence-transformers ``CrossEncoder`` / FlagReranker.
    The strict load guarantees every HF weight comes from ours."""
    from transformers import XLMRobertaForSequenceClassification

    hf_cfg = hf_classifier_config(model.config)
    hf_model = XLMRobertaForSequenceClassification(hf_cfg)
    state = to_hf_state_dict(model)
    expected = {k for k in hf_model.state_dict() if not k.endswith(("position_ids", "token_type_ids"))}
    missing = expected - set(state)
    if missing:
        raise WeightMismatch(f"export would leave HF weights uninitialized: {sorted(missing)}")
    hf_model.load_state_dict(state, strict=False)
    out_dir = Path(out_dir)
    hf_model.save_pretrained(str(out_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir
