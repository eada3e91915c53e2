"""ViRanker: an XLM-R-family cross-encoder with RoPE, Blockwise Parallel Transformer layers and an MLP
scoring head on the first token (arXiv 2509.09131).

    input_ids (B, L) -> embeddings (B, L, d) -> N post-LN encoder layers -> pool (B, d) -> MLP -> (B,)

``config.pooling`` picks the head input: ``cls`` h[:, 0] (the paper), ``mean`` the masked mean, ``pair`` the
query-segment and passage-segment means (B, 2, d) scored by :class:`PairScoreHead`.

Extra scoring heads can sit on earlier layers (``config.exit_layers``); ``forward(..., exit_layer=k)``
stops computing after layer k (a true early exit: the speed dial), ``forward_exits`` returns every head's
logits from one pass (joint training).

Weights move in and out through explicit, shape-checked key maps:
* :func:`load_encoder_weights` reads any Hugging Face ``BertModel`` / ``XLMRobertaModel`` checkpoint
  (keys with a ``bert.`` / ``roberta.`` prefix or none).
* :func:`export_hf_classifier` writes a ``rope=False`` model as a stock
  ``XLMRobertaForSequenceClassification`` directory (same weights, same scores).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from reranker.bpt import blockwise_attention, chunked_feed_forward, naive_attention
from reranker.config import CONFIG_NAME, ViRankerConfig
from reranker.rope import RotaryEmbedding, apply_rotary

WEIGHTS_NAME = "model.safetensors"
ATTENTION_IMPLS = ("bpt", "sdpa", "eager")


# Packed inference runs the feed-forward over this many tokens at a time: the (rows, 4d) intermediate stays
# in cache, which measured 20% faster than one (T, 4d) pass on 2 AVX2 cores (bench/rerank_speed.py).
PACKED_FFN_ROWS = 512


def xlmr_position_ids(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """XLM-R absolute positions: real tokens count from pad_token_id + 1, padding gets pad_token_id."""
    mask = input_ids.ne(pad_token_id).long()
    return torch.cumsum(mask, dim=1) * mask + pad_token_id


@dataclass
class Packed:
    """Right-padded batch <-> packed real tokens. ``idx``: (T,) flat positions of the real tokens in the
    (B*L) layout; ``starts``: (B,) row of each sequence's first token in the packed (T, .) layout."""

    idx: torch.Tensor
    starts: torch.Tensor
    batch: int
    length: int
    spans: list[tuple[int, int]]  # (first row, length) of each sequence in the packed layout
    rope_rows: tuple[torch.Tensor, torch.Tensor] | None  # RoPE (cos, sin) per packed token, (T, 1, Dh)

    @classmethod
    def from_mask(cls, key_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> Packed:
        """``rope``: the (L, Dh) cos/sin tables, gathered once here for every layer's packed attention."""
        lengths = key_mask.sum(dim=1)
        idx = key_mask.reshape(-1).nonzero().squeeze(1)
        starts = torch.cumsum(lengths, 0) - lengths
        spans = list(zip(starts.tolist(), lengths.tolist(), strict=True))
        rope_rows = None
        if rope is not None:
            positions = torch.arange(idx.numel(), device=idx.device) - starts.repeat_interleave(lengths)  # (T,)
            rope_rows = (rope[0][positions].unsqueeze(1), rope[1][positions].unsqueeze(1))
        return cls(idx, starts, key_mask.shape[0], key_mask.shape[1], spans, rope_rows)

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        """(T, c) -> (B, L, c) with zeros at padding."""
        out = t.new_zeros(self.batch * self.length, t.shape[-1]).index_copy(0, self.idx, t)
        return out.view(self.batch, self.length, t.shape[-1])

    def unpad(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L, c) -> (T, c)."""
        return t.reshape(self.batch * self.length, t.shape[-1]).index_select(0, self.idx)


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


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection, RoPE, output projection and post-LN."""

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.block_size = cfg.attn_block_size
        self.attn_dropout = cfg.attention_dropout
        self.qkv = nn.Linear(d, 3 * d)  # rows: [query; key; value]
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        impl: str,
        checkpoint: bool,
        cls_only: bool = False,
        packed: Packed | None = None,
    ) -> torch.Tensor:
        """x (B, L, d) -> (B, L, d).

        ``cls_only``: only the first token's output is computed (keys/values still come from every token):
        exact, and cheaper for a layer whose only consumer is the scoring head -> (B, 1, d).
        ``packed``: x is (T, d), the real tokens only (see :class:`Packed`); projections, residual and
        LayerNorm skip the padding, only attention works on the padded layout -> (T, d), or (B, d) with
        ``cls_only``.
        """
        d = x.shape[-1]
        H, Dh = self.num_heads, self.head_dim
        if packed is not None and impl == "sdpa":
            return self._packed_sdpa(x, rope, cls_only, packed)
        B, L = (x.shape[0], x.shape[1]) if packed is None else (packed.batch, packed.length)
        if cls_only:
            first = x[:, :1] if packed is None else x[packed.starts]  # (B, 1, d) | (B, d)
            q, kv = self._project_first(first, x)
            if packed is not None:
                kv = packed.pad(kv)
            q = q.reshape(B, 1, H, Dh).transpose(1, 2)  # (B, H, 1, Dh)
            k, v = kv.reshape(B, L, 2, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
            if rope is not None:
                cos, sin = rope
                q, _ = apply_rotary(q, q, cos[:1], sin[:1])
                _, k = apply_rotary(k, k, cos, sin)
            x = first
        else:
            qkv = self.qkv(x)
            if packed is not None:
                qkv = packed.pad(qkv)
            q, k, v = qkv.reshape(B, L, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
            if rope is not None:
                q, k = apply_rotary(q, k, *rope)
        p = self.attn_dropout if self.training else 0.0
        if impl == "bpt":
            ctx = blockwise_attention(q, k, v, key_mask, self.block_size, p, self.training, checkpoint)
        elif impl == "sdpa":
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L) True = attend
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            ctx = naive_attention(q, k, v, key_mask, p, self.training)
        ctx = ctx.transpose(1, 2).reshape(B, q.shape[2], d)  # (B, Lq, d)
        if packed is not None:
            ctx = ctx.reshape(B, d) if cls_only else packed.unpad(ctx)
        return self.norm(x + self.dropout(self.out(ctx)))

    def _project_first(self, first: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries of the first tokens only (.., d) and keys/values of every token (.., 2d)."""
        d = x.shape[-1]
        if isinstance(self.qkv, nn.Linear):
            w, b = self.qkv.weight, self.qkv.bias
            return F.linear(first, w[:d], b[:d]), F.linear(x, w[d:], b[d:])
        # e.g. an int8 dynamically quantized projection: no weight slicing
        return self.qkv(first)[..., :d], self.qkv(x)[..., d:]

    def _packed_sdpa(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, cls_only: bool, packed: Packed
    ) -> torch.Tensor:
        """Packed x (T, d) -> (T, d), or (B, d) with ``cls_only``: SDPA one sequence at a time on views of
        the packed projections, so attention never touches padding and needs no mask (measured 2.5x faster
        than the padded, masked call at rerank lengths)."""
        d = x.shape[-1]
        H, Dh = self.num_heads, self.head_dim
        if cls_only:
            x_first = x[packed.starts]  # (B, d)
            q, kv = self._project_first(x_first, x)
            q = q.view(-1, H, Dh)  # (B, H, Dh)
            k, v = kv.view(-1, 2, H, Dh).unbind(1)  # each (T, H, Dh)
            x = x_first
        else:
            q, k, v = self.qkv(x).view(-1, 3, H, Dh).unbind(1)  # each (T, H, Dh)
        if rope is not None:
            cos, sin = packed.rope_rows  # (T, 1, Dh)
            _, k = apply_rotary(k, k, cos, sin)
            q, _ = apply_rotary(q, q, *((cos[:1], sin[:1]) if cls_only else (cos, sin)))
        p = self.attn_dropout if self.training else 0.0
        ctx = x.new_empty(x.shape[0], d)
        for i, (s, n) in enumerate(packed.spans):
            rows = slice(i, i + 1) if cls_only else slice(s, s + n)  # this sequence's query rows
            qi, ki, vi = (t.transpose(0, 1).unsqueeze(0) for t in (q[rows], k[s : s + n], v[s : s + n]))
            ci = F.scaled_dot_product_attention(qi, ki, vi, dropout_p=p)  # (1, H, l, Dh); 4-D: the fused kernel
            ctx[rows] = ci[0].transpose(0, 1).reshape(-1, d)
        return self.norm(x + self.dropout(self.out(ctx)))


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


class ScoreHead(nn.Module):
    """pooled (B, d) -> dense -> GELU|tanh -> dropout -> dense(1) -> (B,)."""

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.head_hidden_size)
        self.act = nn.GELU() if cfg.head_activation == "gelu" else nn.Tanh()
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.head_hidden_size, 1)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.act(self.dense(cls)))).squeeze(-1)


class PairScoreHead(nn.Module):
    """(B, 2, d) [query mean q, passage mean p] -> MLP([q*p, |q-p|]) + s * cos(q, p) -> (B,).

    The cosine term is the similarity an e5-initialized encoder already computes well; with the MLP's
    output layer at N(0, 0.02) the head starts close to ``s * cos`` and training learns the corrections.
    The MLP sees only interaction features: given q and p themselves it learned a query-independent
    passage prior (a shortcut; on dev its part of the score ranked below random, see docs/benchmarks.md).
    """

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(2 * cfg.hidden_size, cfg.head_hidden_size)
        self.act = nn.GELU() if cfg.head_activation == "gelu" else nn.Tanh()
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.head_hidden_size, 1)
        self.cos_scale = nn.Parameter(torch.tensor(float(cfg.pair_cos_init)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        q, p = pooled[:, 0], pooled[:, 1]  # (B, d) each
        feats = torch.cat([q * p, (q - p).abs()], dim=-1)  # (B, 2d)
        mlp = self.out(self.dropout(self.act(self.dense(feats)))).squeeze(-1)
        return mlp + self.cos_scale * F.cosine_similarity(q, p, dim=-1, eps=1e-6)


def pair_segment_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       sep_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids of ``<s> q </s></s> p </s> <pad>...`` -> boolean (B, L) masks of the query tokens and the
    passage tokens (specials and padding excluded)."""
    sep = input_ids.eq(sep_token_id)
    seg = torch.cumsum(sep.long(), dim=1)  # 0 on <s> q, 1 on the first </s>, 2 on </s> p, 3 after
    real = torch.ones_like(sep) if attention_mask is None else attention_mask.bool()
    first = torch.zeros_like(sep)
    first[:, 0] = True
    query = seg.eq(0) & ~first & real
    passage = seg.eq(2) & ~sep & real
    return query, passage


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, d), (B, L) -> (B, d); an empty mask gives zeros."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


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
    def save_pretrained(self, save_dir: str | Path, tokenizer: Any = None, vocab_map: Any = None) -> Path:
        """Write config.json + model.safetensors (+ tokenizer files, + vocab_map.safetensors)."""
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(save_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(save_dir / WEIGHTS_NAME), metadata={"format": "pt", "model": "viranker"})
        if tokenizer is not None:
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
        """Load a directory written by :meth:`save_pretrained` (strict: every weight must be present).

        ``config_overrides`` change run-time fields (e.g. ``use_bpt=False``, ``dropout=0.0``); fields that
        change weight shapes fail the strict load.
        """
        model_dir = Path(model_dir)
        weights = model_dir / WEIGHTS_NAME
        if not (model_dir / CONFIG_NAME).is_file() or not weights.is_file():
            raise FileNotFoundError(f"{model_dir} is not a ViRanker model dir (needs {CONFIG_NAME} + {WEIGHTS_NAME})")
        config = ViRankerConfig.load(model_dir)
        if config_overrides:
            config = config.replace(**config_overrides)
        model = cls(config)
        model.load_state_dict(load_file(str(weights)), strict=True)
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
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


# ---------------------------------------------------------------------- HF weight import / export
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
    with one label goes into the last layer's head. Every copied tensor is shape-checked (AssertionError
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
        assert k in ours, f"mapped key {k} is not a model parameter"
        assert ours[k].shape == t.shape, (
            f"shape mismatch for {k}: model {tuple(ours[k].shape)} vs checkpoint {tuple(t.shape)}"
        )
    result = model.load_state_dict({k: t.to(ours[k].dtype) for k, t in mapped.items()}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
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
    assert not missing, f"export would leave HF weights uninitialized: {sorted(missing)}"
    hf_model.load_state_dict(state, strict=False)
    out_dir = Path(out_dir)
    hf_model.save_pretrained(str(out_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir
