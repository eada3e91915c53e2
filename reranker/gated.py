"""GatedRanker (``architecture="gated"``): multilingual-e5's bi-encoder, plus cross-segment paths that start
closed, so that training can only add to what e5 already ranks well.

    input_ids (B, L) = <s> query: q </s><s> passage: p </s><pad>...   (reranker.tokenizer, architecture="gated")
      -> split_segments -> query ids (B, Lq), passage ids (B, Lp)
      -> embeddings per segment: word + e5's absolute position (restarting at each segment's <s>) + type 0, LN
         laid out as one tensor x = [x_query | x_passage]  (B, Lq + Lp, d)
      -> N post-LN layers, each head h of layer l:
             ctx = attn(own segment)  +  tanh(g[l, h]) * attn(other segment)      (g = 0 at init)
         both through the layer's own q/k/v projection; RoPE only on the cross path (``cross_rope``), over one
         index space for the pair (query tokens 0..nq-1, passage tokens nq..nq+np-1); then out-proj, FFN
      -> mean over each segment's tokens, specials included (e5's pooling) -> q, p (B, d)
      -> s * cos(q, p) + MLP([q*p, |q-p|]) -> logits (B,)   (MLP output layer = 0 at init, s from pair_cos_init)

At initialization from e5 (all 12 layers) the logits are exactly ``s * cos(e5("query: q"), e5("passage: p"))``:
the self path is e5's own encoder, every gate is 0 and the interaction MLP outputs 0. Attention runs as "bpt"
(reranker.bpt blockwise attention + chunked FFN), "sdpa" or "eager" (``set_attention_impl``); all exact.

Weights: the encoder keys are those of :class:`reranker.model.ViRanker` (``embeddings.*`` with the position table,
``layers.{i}.attn.qkv|out|norm``, ``layers.{i}.ffn.*``), so :func:`reranker.model.load_encoder_weights` maps HF /
e5 checkpoints unchanged; new: ``layers.{i}.attn.cross_gate`` (H,) and the pair heads ``heads.{k}.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from reranker.bpt import blockwise_attention, chunked_feed_forward, naive_attention
from reranker.config import ViRankerConfig
from reranker.model import (
    Embeddings,
    FeedForward,
    PairScoreHead,
    PretrainedMixin,
    SelfAttention,
    ViRanker,
)
from reranker.rope import RotaryEmbedding, apply_rotary
from reranker.tokenizer import BOS_ID, EOS_ID

Rope = tuple[torch.Tensor, torch.Tensor]


def split_segments(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, L) ``<s> q.. </s><s> p.. </s><pad>..`` -> (query ids (B, Lq), query mask (B, Lq) bool,
    passage ids (B, Lp), passage mask (B, Lp) bool), each segment right-padded with ``pad_token_id``.

    The query segment ends at the first ``</s>``. Raises ValueError for rows that are not two segments (e.g. a
    "joint" ``<s> q </s></s> p </s>`` pair, whose second segment does not start with ``<s>``).
    """
    B, L = input_ids.shape
    ar = torch.arange(L, device=input_ids.device)
    n = input_ids.new_full((B,), L) if attention_mask is None else attention_mask.long().sum(1)
    real = ar[None] < n[:, None]  # (B, L)
    if attention_mask is not None and not torch.equal(real, attention_mask.bool()):
        raise ValueError("gated inputs must be right-padded (attention_mask = 1...1 0...0)")
    eos = input_ids.eq(EOS_ID) & real
    if not bool(eos.any(1).all()):
        raise ValueError("every row needs a query segment ending in </s>")
    nq = eos.long().argmax(1) + 1  # (B,) query segment length, specials included
    npas = n - nq
    if bool((npas < 2).any()) or bool(input_ids.gather(1, nq.clamp(max=L - 1)[:, None]).ne(BOS_ID).any()):
        raise ValueError("expected two segments <s> query: .. </s><s> passage: .. </s> (is this a 'joint' pair?)")
    Lq, Lp = int(nq.max()), int(npas.max())
    q_mask = torch.arange(Lq, device=ar.device)[None] < nq[:, None]  # (B, Lq)
    q_ids = input_ids[:, :Lq].masked_fill(~q_mask, pad_token_id)
    p_pos = nq[:, None] + torch.arange(Lp, device=ar.device)[None]  # (B, Lp) source column of passage token j
    p_mask = p_pos < n[:, None]
    p_ids = input_ids.gather(1, p_pos.clamp(max=L - 1)).masked_fill(~p_mask, pad_token_id)
    return q_ids, q_mask, p_ids, p_mask


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, impl: str,
            block: int, p: float, training: bool, ckpt: bool) -> torch.Tensor:
    """(B, H, Lq, D) x (B, H, Lk, D) with key mask (B, Lk) bool (None = no padding) -> (B, H, Lq, D)."""
    if impl == "bpt":
        return blockwise_attention(q, k, v, mask, block, p, training, ckpt)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :],
                                              dropout_p=p)
    return naive_attention(q, k, v, mask, p, training)


class GatedAttention(SelfAttention):
    """Self-attention within each segment + tanh-gated cross-segment attention: the joint model's projections
    (fused QKV = e5's own, output, post-LN; same weight names) plus one gate per head."""

    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__(cfg)
        self.cross_gate = nn.Parameter(torch.zeros(cfg.num_heads))  # g[l, :]; tanh(0) = 0: path closed

    def forward(self, x: torch.Tensor, lq: int, masks: tuple[torch.Tensor | None, torch.Tensor | None],
                rope: tuple[Rope, Rope] | None, impl: str, ckpt: bool) -> torch.Tensor:
        """x (B, Lq + Lp, d), the query segment in the first ``lq`` rows -> (B, Lq + Lp, d).

        ``masks``: key masks (query (B, Lq), passage (B, Lp)), None where a segment has no padding. ``rope``:
        (cos, sin) for the query rows (Lq, Dh) and the passage rows (B, 1, Lp, Dh), or None (no cross RoPE).
        """
        B, L, d = x.shape
        H, Dh = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(B, L, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
        (qq, qp), (kq, kp), (vq, vp) = ((t[:, :, :lq], t[:, :, lq:]) for t in (q, k, v))
        mq, mp = masks
        p = self.attn_dropout if self.training else 0.0
        att = lambda a, b, c, m: _attend(a, b, c, m, impl, self.block_size, p, self.training, ckpt)  # noqa: E731
        ctx_q, ctx_p = att(qq, kq, vq, mq), att(qp, kp, vp, mp)  # e5's self-attention within each segment
        # a closed gate contributes exactly 0: skip the cross path unless autograd needs it (the gates' gradient)
        if torch.is_grad_enabled() or bool(self.cross_gate.ne(0).any()):
            if rope is not None:
                (cq, sq), (cp, sp) = rope
                qq, kq = apply_rotary(qq, kq, cq, sq)
                qp, kp = apply_rotary(qp, kp, cp, sp)
            gate = torch.tanh(self.cross_gate).to(x.dtype).view(1, H, 1, 1)
            ctx_q = ctx_q + gate * att(qq, kp, vp, mp)  # query tokens read the passage
            ctx_p = ctx_p + gate * att(qp, kq, vq, mq)  # passage tokens read the query
        ctx = torch.cat([ctx_q, ctx_p], dim=2).transpose(1, 2).reshape(B, L, d)
        return self.norm(x + self.dropout(self.out(ctx)))


class GatedLayer(nn.Module):
    def __init__(self, cfg: ViRankerConfig) -> None:
        super().__init__()
        self.attn = GatedAttention(cfg)
        self.ffn = FeedForward(cfg)
        self.ffn_chunk_size = cfg.ffn_chunk_size

    def forward(self, x: torch.Tensor, lq: int, masks: tuple[torch.Tensor | None, torch.Tensor | None],
                rope: tuple[Rope, Rope] | None, impl: str, ckpt: bool) -> torch.Tensor:
        """(B, Lq + Lp, d) -> (B, Lq + Lp, d)."""
        x = self.attn(x, lq, masks, rope, impl, ckpt)
        if impl == "bpt":
            return chunked_feed_forward(x, self.ffn, self.ffn_chunk_size, ckpt)
        return self.ffn(x)


def _segment_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, l, d), (B, l) bool -> (B, d): mean over the segment's real tokens (specials included)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1)


class GatedRanker(PretrainedMixin, nn.Module):
    """The gated reranker; see the module docstring. Same calling convention as :class:`ViRanker`:
    ``forward(ids, mask, exit_layer=k) -> (B,)``, ``forward_exits(ids, mask) -> {layer: (B,)}``."""

    def __init__(self, config: ViRankerConfig) -> None:
        super().__init__()
        if config.architecture != "gated":
            raise ValueError(f"GatedRanker needs architecture 'gated', got {config.architecture!r}")
        self.config = config
        self.embeddings = Embeddings(config)  # rope=False: word + absolute position + type, LN
        self.layers = nn.ModuleList(GatedLayer(config) for _ in range(config.num_layers))
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_base) if config.cross_rope else None
        self.heads = nn.ModuleDict({str(i): PairScoreHead(config) for i in config.all_exit_layers})
        self.attn_impl = "bpt" if config.use_bpt else "sdpa"
        self.pack_inputs = False  # accepted for ViRanker compatibility; the gated model never packs
        self.apply(ViRanker._init_weights)
        with torch.no_grad():  # paths that start closed: step-0 score == s * cos exactly
            for layer in self.layers:
                layer.attn.cross_gate.zero_()
            for head in self.heads.values():
                head.out.weight.zero_()
                head.out.bias.zero_()

    # ------------------------------------------------------------------ switches
    def set_packing(self, enabled: bool = True) -> GatedRanker:
        """No effect (kept so callers can treat both architectures alike): segments are already unpadded per
        segment; scores never depend on the batch."""
        self.pack_inputs = bool(enabled)
        return self

    def gate_values(self) -> torch.Tensor:
        """tanh(g) per layer and head, (num_layers, num_heads) float32 (0 = cross path closed)."""
        return torch.stack([torch.tanh(layer.attn.cross_gate.detach().float()) for layer in self.layers])

    # ------------------------------------------------------------------ running
    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                token_type_ids: torch.Tensor | None, num_layers: int,
                keep: set[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Embeddings + the first ``num_layers`` layers -> {layer in keep: (query mean, passage mean), each (B, d)}."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        if token_type_ids is not None and bool(token_type_ids.ne(0).any()):
            raise ValueError("the gated model gives every token type 0 (as e5); got non-zero token_type_ids")
        q_ids, q_mask, p_ids, p_mask = split_segments(input_ids, attention_mask, self.config.pad_token_id)
        lq = q_ids.shape[1]
        longest = max(lq, p_ids.shape[1])
        if longest > self.config.max_position_embeddings - 2:  # XLM-R positions start at pad_token_id + 1
            raise ValueError(f"a segment of {longest} tokens exceeds the {self.config.max_position_embeddings - 2} "
                             "absolute positions")
        x = torch.cat([self.embeddings(q_ids), self.embeddings(p_ids)], dim=1)  # (B, Lq + Lp, d)
        masks = (None if bool(q_mask.all()) else q_mask, None if bool(p_mask.all()) else p_mask)
        rope = None
        if self.rotary is not None:  # query token j at j, passage token j at nq + j
            nq = q_mask.sum(1)  # (B,)
            p_pos = nq[:, None] + torch.arange(p_ids.shape[1], device=x.device)[None]  # (B, Lp)
            cos, sin = self.rotary(int(p_pos.max()) + 1, x.device)
            rope = ((cos[:lq], sin[:lq]), (cos[p_pos].unsqueeze(1), sin[p_pos].unsqueeze(1)))
        ckpt = self.config.gradient_checkpointing and self.training
        impl = self.attn_impl
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, layer in enumerate(self.layers[:num_layers], start=1):
            if ckpt and impl != "bpt" and torch.is_grad_enabled():
                x = _checkpoint(layer, x, lq, masks, rope, impl, False, use_reentrant=False)
            else:  # BPT checkpoints per block inside the layer
                x = layer(x, lq, masks, rope, impl, ckpt)
            if i in keep:
                out[i] = (_segment_mean(x[:, :lq], q_mask), _segment_mean(x[:, lq:], p_mask))
        return out

    def segment_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           num_layers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean-pooled query and passage states (B, d) each after ``num_layers`` layers (default all); with the
        gates closed these are e5's (unnormalized) sentence embeddings."""
        n = self.config.num_layers if num_layers is None else int(num_layers)
        if not 1 <= n <= self.config.num_layers:
            raise ValueError(f"num_layers must be in 1..{self.config.num_layers}, got {n}")
        return self._encode(input_ids, attention_mask, None, n, {n})[n]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, exit_layer: int | None = None) -> torch.Tensor:
        """Relevance logits (B,); ``exit_layer`` (one of ``config.all_exit_layers``) stops the encoder there."""
        layer = self.config.num_layers if exit_layer is None else int(exit_layer)
        if str(layer) not in self.heads:
            raise ValueError(f"no scoring head at layer {layer}; heads exist at {self.config.all_exit_layers}")
        q, p = self._encode(input_ids, attention_mask, token_type_ids, layer, {layer})[layer]
        return self.heads[str(layer)](torch.stack([q, p], dim=1))

    def forward_exits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """{layer: logits (B,)} for every head (early exits + last layer) from one pass."""
        layers = self.config.all_exit_layers
        pooled = self._encode(input_ids, attention_mask, token_type_ids, self.config.num_layers, set(layers))
        return {i: self.heads[str(i)](torch.stack(pooled[i], dim=1)) for i in layers}
