"""Self-attention of the joint encoder: fused QKV projection, RoPE, SDPA / blockwise / eager attention,
output projection and post-LN, on padded (B, L, d) or packed (T, d) inputs; and XLM-R's absolute positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reranker.bpt import blockwise_attention, naive_attention
from reranker.config import ViRankerConfig
from reranker.packing import Packed
from reranker.rope import apply_rotary


def xlmr_position_ids(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """XLM-R absolute positions: real tokens count from pad_token_id + 1, padding gets pad_token_id."""
    mask = input_ids.ne(pad_token_id).long()
    return torch.cumsum(mask, dim=1) * mask + pad_token_id

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
