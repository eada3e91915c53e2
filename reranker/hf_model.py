"""ViRanker model dirs as Hugging Face models: ``AutoConfig`` / ``AutoModelForSequenceClassification`` / ``CrossEncoder``.

    config.json (model_type "viranker", architectures, auto_map + the ViRankerConfig fields)
    configuration_viranker.py, modeling_viranker.py   (remote code: two lines each, importing this module)
    tokenizer.json + tokenizer_config.json              (the pruned tokenizer: it emits the model's ids)

Two ways to load a dir with stock tooling:

* ``trust_remote_code=True`` (``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``,
  ``CrossEncoder(dir, trust_remote_code=True)``): the dir's remote-code files import this module, so the
  ``viranker-search`` package must be installed (the architecture is not in transformers);
* ``import reranker.hf_model`` first (it registers ``"viranker"`` with the Auto classes), then without
  ``trust_remote_code``.

:class:`ViRankerForSequenceClassification` wraps the model of either architecture (``joint`` / ``gated``) with
the same parameter names as ``model.safetensors`` and returns ``logits`` (B, 1): the last layer's head's raw
score, as :class:`reranker.inference.ViRankerScorer` with ``exit_layer=None`` computes it on the same ids (a dir
truncated to its serving depth by :mod:`reranker.compact` ends at the head it serves). A dir whose word table is
stored as Q4_0 blocks (:mod:`reranker.packed_weights`) is loaded by :meth:`ViRankerForSequenceClassification.from_pretrained`
itself (stock loading does not know packed tensors): the same weights, dequantized.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from reranker.config import HF_MODEL_TYPE, ViRankerConfig

_FIELDS = tuple(f.name for f in dataclasses.fields(ViRankerConfig))
CONFIG_FILE, MODELING_FILE = "configuration_viranker.py", "modeling_viranker.py"
_REMOTE = {
    CONFIG_FILE: ('"""AutoConfig for ViRanker (trust_remote_code): needs the viranker-search package installed."""\n\n'
                  "from reranker.hf_model import ViRankerHFConfig\n\n__all__ = [\"ViRankerHFConfig\"]\n"),
    MODELING_FILE: ('"""AutoModelForSequenceClassification for ViRanker (trust_remote_code): needs the viranker-search'
                    ' package installed."""\n\n'
                    "from reranker.hf_model import ViRankerForSequenceClassification, ViRankerHFConfig\n\n"
                    "__all__ = [\"ViRankerForSequenceClassification\", \"ViRankerHFConfig\"]\n"),
}


def hf_config_extra() -> dict[str, Any]:
    """The Hugging Face keys a model dir's config.json carries beside the ViRankerConfig fields."""
    return {
        "model_type": HF_MODEL_TYPE,
        "architectures": ["ViRankerForSequenceClassification"],
        "auto_map": {
            "AutoConfig": "configuration_viranker.ViRankerHFConfig",
            "AutoModelForSequenceClassification": "modeling_viranker.ViRankerForSequenceClassification",
        },
        "num_labels": 1,
        "dtype": "float32",  # compute dtype (the file may hold fp16 weights; they are upcast on load)
        # CrossEncoder: raw logits, as ViRankerScorer returns them (calibrated scores: inference.json)
        "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"},
    }


def write_remote_code(model_dir: str | Path) -> list[Path]:
    """Write the two remote-code files ``auto_map`` points at into ``model_dir``."""
    out = []
    for name, text in _REMOTE.items():
        path = Path(model_dir) / name
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out


class ViRankerHFConfig(PretrainedConfig):
    """``PretrainedConfig`` holding the :class:`ViRankerConfig` fields as attributes (``viranker_config()``)."""

    model_type = HF_MODEL_TYPE

    def __init__(self, **kwargs: Any) -> None:
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in _FIELDS}
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)
        for k, v in ViRankerConfig.from_dict(ours).to_dict().items():
            setattr(self, k, v)

    def viranker_config(self) -> ViRankerConfig:
        return ViRankerConfig.from_dict({k: getattr(self, k) for k in _FIELDS if hasattr(self, k)})


class ViRankerForSequenceClassification(PreTrainedModel):
    """(input_ids, attention_mask) → ``SequenceClassifierOutput(logits=(B, 1))`` with ViRanker's weights."""

    config_class = ViRankerHFConfig
    base_model_prefix = "viranker"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: ViRankerHFConfig) -> None:
        super().__init__(config)
        from reranker.factory import create_model

        inner = create_model(config.viranker_config().replace(dropout=0.0, attention_dropout=0.0))
        inner.set_attention_impl("sdpa")
        for name, child in inner.named_children():  # the same parameter names as model.safetensors
            self.add_module(name, child)
        self._inner = (inner,)  # a tuple: not registered twice as a submodule
        self.post_init()

    _rope_ready = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *model_args: Any,
                        config: Any = None, **kwargs: Any) -> ViRankerForSequenceClassification:
        """``PreTrainedModel.from_pretrained``, except for a local dir with packed tables (Q4_0 word embeddings):
        there the model is built from its config and loaded by :func:`reranker.packed_weights.load_weights`
        (strict); ``dtype`` / ``torch_dtype`` and a device string in ``device_map`` are honoured, in eval mode."""
        from reranker.model import WEIGHTS_NAME
        from reranker.packed_weights import load_weights, packed_names

        path = Path(pretrained_model_name_or_path)
        weights = path / WEIGHTS_NAME
        if not (weights.is_file() and packed_names(weights)):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_pretrained(str(config if config is not None else path))
        model = cls(config)
        model.load_state_dict(load_weights(weights), strict=True)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if isinstance(dtype, torch.dtype):
            model.to(dtype)
        device = kwargs.get("device_map")
        if isinstance(device, (str, torch.device)) and str(device) != "auto":
            model.to(device)
        return model.eval()

    def _rebuild_rope(self, device: torch.device) -> None:
        """RoPE tables are buffers outside the state dict; ``from_pretrained`` builds the model on the meta device
        and leaves them uninitialized, so they are computed again before the first forward."""
        from reranker.rope import RotaryEmbedding

        inner = self._inner[0]
        rotary = getattr(inner, "rotary", None)
        if rotary is not None:
            inner.rotary = RotaryEmbedding(rotary.head_dim, rotary.base).to(device)
            self.rotary = inner.rotary
        self._rope_ready = True

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing to initialize: every weight comes from model.safetensors (missing ones are reported)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **_: Any) -> SequenceClassifierOutput:
        inner = self._inner[0]
        inner.training = self.training
        if not self._rope_ready:
            self._rebuild_rope(input_ids.device)
        logits = inner(input_ids, attention_mask).unsqueeze(-1).float()
        loss = None
        if labels is not None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), labels.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(HF_MODEL_TYPE, ViRankerHFConfig, exist_ok=True)
AutoModelForSequenceClassification.register(ViRankerHFConfig, ViRankerForSequenceClassification, exist_ok=True)
