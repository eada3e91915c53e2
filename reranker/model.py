"""ViRanker: an XLM-R-family cross-encoder with RoPE, Blockwise Parallel Transformer layers and an MLP
scoring head on the first token (arXiv 2509.09131).

    input_ids (B, L) -> embeddings (B, L, d) -> N post-LN encoder layers -> pool (B, d) -> MLP -> (B,)

``config.pooling`` picks the head input: ``cls`` h[:, 0] (the paper), ``mean`` the masked mean, ``pair`` the
query-segment and passage-segment means (B, 2, d) scored by :class:`PairScoreHead`.

Extra scoring heads can sit on earlier layers (``config.exit_layers``); ``forward(..., exit_layer=k)``
stops computing after layer k (a true early exit: the speed dial), ``forward_exits`` returns every head's
logits from one pass (joint training).

Parts live in their own modules: :mod:`reranker.attention` (SelfAttention), :mod:`reranker.packing` (Packed),
:mod:`reranker.heads` (ScoreHead, PairScoreHead), :mod:`reranker.hf_convert` (HF weight import/export); they
are re-exported here, so ``from reranker.model import ...`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from reranker.attention import SelfAttention, xlmr_position_ids
from reranker.bpt import chunked_feed_forward
from reranker.config import CONFIG_NAME, ViRankerConfig
from reranker.heads import PairScoreHead, ScoreHead, _masked_mean, pair_segment_masks
from reranker.hf_convert import (
    LoadReport,
    WeightMismatch,
    export_hf_classifier,
    hf_classifier_config,
    load_encoder_weights,
    to_hf_state_dict,
)
from reranker.packing import Packed
from reranker.rope import RotaryEmbedding

__all__ = [
    "ATTENTION_IMPLS", "WEIGHTS_NAME", "Embeddings", "EncoderLayer", "FeedForward", "LoadReport", "Packed",
    "PairScoreHead", "PretrainedMixin", "ScoreHead", "SelfAttention", "ViRanker", "WeightMismatch",
    "export_hf_classifier", "hf_classifier_config", "load_encoder_weights", "pair_segment_masks",
    "to_hf_state_dict", "xlmr_position_ids",
]

WEIGHTS_NAME = "model.safetensors"
ATTENTION_IMPLS = ("bpt", "sdpa", "eager")


# Packed inference runs the feed-forward over this many tokens at a time: the (rows, 4d) intermediate stays
# in cache, which measured 20% faster than one (T, 4d) pass on 2 AVX2 cores (bench/rerank_speed.py).
PACKED_FFN_ROWS = 512


class Embeddings(nn.Module):
    """word + token-type (+ absolute position when rope=False) -> LayerNorm -> dropout."""

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.pad_token_id = cfg.pad_token_id
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
        self.position = None if cfg.rope else nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.word(input_ids)  # (B, L, d)
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.weight[0]  # all segment 0, as XLM-R pairs
            else:
                x = x + self.token_type(token_type_ids)
        if self.position is not None:
            x = x + self.position(xlmr_position_ids(input_ids, self.pad_token_id))
        return self.dropout(self.norm(x))


class FeedForward(nn.Module):
    """Position-wise d -> intermediate -> d with GELU, residual and post-LN."""

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, l, d) -> (B, l, d)
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ffn = FeedForward(cfg)
        self.ffn_chunk_size = cfg.ffn_chunk_size

    def forward(self, x, key_mask, rope, impl: str, checkpoint: bool, cls_only: bool = False,
                packed: Packed | None = None) -> torch.Tensor:
        x = self.attn(x, key_mask, rope, impl, checkpoint, cls_only, packed)
        if impl == "bpt":  # chunk along the sequence (packed (T, d) is one long sequence)
            if x.dim() == 2:
                return chunked_feed_forward(x.unsqueeze(0), self.ffn, self.ffn_chunk_size, checkpoint).squeeze(0)
            return chunked_feed_forward(x, self.ffn, self.ffn_chunk_size, checkpoint)
        if x.dim() == 2 and not torch.is_grad_enabled():  # packed inference: cache-sized row blocks
            return chunked_feed_forward(x.unsqueeze(0), self.ffn, PACKED_FFN_ROWS).squeeze(0)
        return self.ffn(x)


class PretrainedMixin:
    """Attention switch and persistence shared by every reranker class (``config.json`` + ``model.safetensors``); the class needs
    ``config``, ``state_dict`` and ``embeddings.word``. Load any model dir with :func:`reranker.factory.load_model`
    (it picks the class from ``config.architecture``)."""

    def set_attention_impl(self, impl: str) -> Any:
        """Switch attention: "bpt" (blockwise, exact, low memory), "sdpa" (torch fused) or "eager" (reference)
        → self."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
        self.attn_impl = impl
        return self

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.embeddings.word.weight.numel()
        return n

    # ------------------------------------------------------------------ persistence
    #: tables loaded from Q4_0 blocks (:mod:`reranker.packed_weights`), {state-dict name: Q4Tensor}; a table that
    #: still equals its blocks is saved packed again (see :meth:`save_pretrained`)
    packed_weights: dict[str, Any]

    def save_pretrained(self, save_dir: str | Path, tokenizer: Any = None, vocab_map: Any = None,
                        packed: dict[str, Any] | None = None) -> Path:
        """Write config.json (with the Hugging Face keys of :func:`reranker.hf_model.hf_config_extra`) +
        model.safetensors + the remote-code files (+ tokenizer files, + vocab_map.safetensors).

        ``tokenizer`` is the full one the model was trained with; with ``vocab_map`` (a pruned model) the dir gets
        its pruned form (:func:`reranker.vocab.save_pruned_tokenizer`), which emits the model's ids directly.

        ``packed``: {state-dict name: :class:`reranker.packed_weights.Q4Tensor`}, tables to store as their Q4_0
        blocks; each must equal its blocks' dequantization (else ``PackedWeightMismatch``). Default: the tables
        this model was loaded packed with (``packed_weights``) that still equal their blocks (a table trained or
        pruned since is stored in full).
        """
        from reranker.hf_model import hf_config_extra, write_remote_code
        from reranker.packed_weights import equals_blocks, save_weights

        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(save_dir, extra=hf_config_extra())
        write_remote_code(save_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if packed is None:
            loaded = getattr(self, "packed_weights", None) or {}
            packed = {k: q for k, q in loaded.items() if k in state and equals_blocks(state[k], q)}
        save_weights(save_dir / WEIGHTS_NAME, state, packed, metadata={"model": "viranker"})
        if tokenizer is not None and vocab_map is not None:
            from reranker.vocab import save_pruned_tokenizer

            save_pruned_tokenizer(tokenizer, vocab_map, save_dir)
        elif tokenizer is not None:
            tokenizer.save_pretrained(str(save_dir))
        if vocab_map is not None:
            vocab_map.save(save_dir)
        return save_dir

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a directory written by :meth:`save_pretrained` (strict: every weight must be present; tables stored
        as Q4_0 blocks are dequantized to float32 and kept in ``packed_weights``).

        ``config_overrides`` change run-time fields (e.g. ``use_bpt=False``, ``dropout=0.0``); fields that
        change weight shapes fail the strict load.
        """
        from reranker.packed_weights import read_weights

        model_dir = Path(model_dir)
        weights = model_dir / WEIGHTS_NAME
        if not (model_dir / CONFIG_NAME).is_file() or not weights.is_file():
            raise FileNotFoundError(f"{model_dir} is not a ViRanker model dir (needs {CONFIG_NAME} + {WEIGHTS_NAME})")
        config = ViRankerConfig.load(model_dir)
        if config_overrides:
            config = config.replace(**config_overrides)
        model = cls(config)
        plain, packed = read_weights(weights)
        model.load_state_dict({**plain, **{k: q.dequantize() for k, q in packed.items()}}, strict=True)
        model.packed_weights = packed
        model.to(device=device, dtype=dtype)
        return model.eval()


class ViRanker(PretrainedMixin, nn.Module):
    """Cross-encoder reranker (``architecture="joint"``). See the module docstring for the data flow."""

    def __init__(self, config: ViRankerConfig) -> None:
        super().__init__()
        if config.architecture != "joint":
            raise ValueError(f"ViRanker is the 'joint' architecture, config says {config.architecture!r}: "
                             "build with reranker.factory.create_model / load with reranker.factory.load_model")
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_base) if config.rope else None
        head = PairScoreHead if config.pooling == "pair" else ScoreHead
        self.heads = nn.ModuleDict({str(i): head(config) for i in config.all_exit_layers})
        self.attn_impl = "bpt" if config.use_bpt else "sdpa"
        self.pack_inputs = False  # see set_packing
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """BERT initialization: N(0, 0.02) weights, zero biases, unit LayerNorm."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ running
    def set_packing(self, enabled: bool = True) -> ViRanker:
        """Score padded batches as packed real tokens (exact; skips the padding in every projection, FFN
        and LayerNorm, attention still uses the padded layout). Applies to ``forward`` / ``forward_exits``."""
        self.pack_inputs = bool(enabled)
        return self

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            return None
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != input_ids {tuple(input_ids.shape)}"
            )
        key_mask = attention_mask.bool()
        return None if bool(key_mask.all()) else key_mask

    def _encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        num_layers: int,
        keep: set[int] | None = None,
        for_heads: bool = False,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run embeddings + the first ``num_layers`` layers and nothing more.

        Returns the last hidden state (B, L, d) and {layer: hidden} for the 1-based layers in ``keep``
        (0 = embedding output). ``for_heads``: the states only feed scoring heads, so with ``pooling="cls"``
        the last layer computes only the first token and every returned state is (B, 1, d), and with
        packing on (``set_packing``, right-padded batches) the layers skip padding; mean/pair pooling then get
        (B, L, d) states with zeros at padding (their pooling masks it).
        """
        key_mask = self._check_inputs(input_ids, attention_mask)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, d)
        kept: dict[int, torch.Tensor] = {}
        if keep and 0 in keep:
            kept[0] = x
        rope = self.rotary(input_ids.shape[1], x.device) if self.rotary is not None else None
        ckpt = self.config.gradient_checkpointing and self.training
        impl = self.attn_impl
        packed = None
        cls_only_last = for_heads and self.config.pooling == "cls"
        if self.pack_inputs and for_heads and key_mask is not None and bool(key_mask[:, 0].all()):
            packed = Packed.from_mask(key_mask, rope)
            x = packed.unpad(x)  # (T, d)
        for i, layer in enumerate(self.layers[:num_layers], start=1):
            cls_only = cls_only_last and i == num_layers
            if ckpt and impl != "bpt" and torch.is_grad_enabled():
                x = _checkpoint(layer, x, key_mask, rope, impl, False, cls_only, packed, use_reentrant=False)
            else:  # BPT checkpoints per block inside the layer
                x = layer(x, key_mask, rope, impl, ckpt, cls_only, packed)
            if keep and i in keep:
                kept[i] = x if packed is None else self._unpack(x, packed, cls_only)
        if packed is not None:
            x = self._unpack(x, packed, cls_only_last)
        return x, kept

    def _unpack(self, x: torch.Tensor, packed: Packed, already_first: bool) -> torch.Tensor:
        """Packed (T, d) (or (B, d) after a cls_only layer) -> what the head pools: (B, 1, d) first-token
        states for ``pooling="cls"``, else (B, L, d) with zeros at padding."""
        if already_first:
            return x.unsqueeze(1)
        return x[packed.starts].unsqueeze(1) if self.config.pooling == "cls" else packed.pad(x)

    def _resolve_layers(self, num_layers: int | None) -> int:
        n = self.config.num_layers if num_layers is None else int(num_layers)
        if not 1 <= n <= self.config.num_layers:
            raise ValueError(f"num_layers must be in 1..{self.config.num_layers}, got {n}")
        return n

    def forward_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        num_layers: int | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, L, d) after ``num_layers`` layers (default: all)."""
        x, _ = self._encode(input_ids, attention_mask, token_type_ids, self._resolve_layers(num_layers))
        return x

    encode_hidden = forward_hidden

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """[embedding output, layer 1, ..., layer N], each (B, L, d) (like HF ``output_hidden_states``)."""
        n = self.config.num_layers
        _, kept = self._encode(input_ids, attention_mask, token_type_ids, n, set(range(n + 1)))
        return [kept[i] for i in range(n + 1)]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        exit_layer: int | None = None,
    ) -> torch.Tensor:
        """Relevance logits (B,). With ``exit_layer`` (one of ``config.all_exit_layers``) the encoder
        stops after that layer and its head scores the pair. The last layer run computes only the first
        token's output (the head's input): exact, ~1/12 less work for 12 layers."""
        layer = self.config.num_layers if exit_layer is None else int(exit_layer)
        if str(layer) not in self.heads:
            raise ValueError(f"no scoring head at layer {layer}; heads exist at {self.config.all_exit_layers}")
        x, _ = self._encode(input_ids, attention_mask, token_type_ids, layer, for_heads=True)
        return self.heads[str(layer)](self._pool(x, attention_mask, input_ids))

    def forward_exits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """{layer: logits (B,)} for every head (early exits + last layer) from one forward pass."""
        layers = self.config.all_exit_layers
        _, kept = self._encode(input_ids, attention_mask, token_type_ids, self.config.num_layers, set(layers),
                               for_heads=True)
        return {i: self.heads[str(i)](self._pool(kept[i], attention_mask, input_ids)) for i in layers}

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
              input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, d) layer states -> head input: the first token or the masked mean (B, d), or the query and
        passage segment means (B, 2, d) for ``pooling="pair"``."""
        if self.config.pooling == "cls":
            return hidden[:, 0]
        if self.config.pooling == "pair":
            if input_ids is None:
                raise ValueError("pooling='pair' needs input_ids to find the query and passage segments")
            q_mask, p_mask = pair_segment_masks(input_ids, attention_mask, self.config.sep_token_id)
            return torch.stack([_masked_mean(hidden, q_mask), _masked_mean(hidden, p_mask)], dim=1)
        if attention_mask is None:
            return hidden.mean(dim=1)
        return _masked_mean(hidden, attention_mask)
