"""Blockwise Parallel Transformer pieces (Liu & Abbeel 2023): blockwise attention + chunked FFN.

Both are exact reformulations, not approximations:

* :func:`blockwise_attention` walks over query blocks and, inside each, over key/value blocks, keeping an
  online softmax per query row (running max ``m``, numerator ``sum_j exp(s_j - m) v_j``, denominator
  ``sum_j exp(s_j - m)``). Only a ``(B, H, block, block)`` score tile exists at any time; the full
  ``L x L`` score matrix is never materialized.
* :func:`chunked_feed_forward` applies the position-wise FFN to sequence chunks, so the ``(L, 4d)``
  intermediate is never materialized whole.

For training, ``checkpoint=True`` wraps each query block / FFN chunk in ``torch.utils.checkpoint`` so
autograd keeps only the block inputs and recomputes the tiles in the backward pass (without it, autograd
would store every tile, i.e. ``L x L`` in total).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Reference ("eager") attention: q, k, v (B, H, L, D), mask (B, Lk) bool True = real token.

    Materializes the (B, H, Lq, Lk) score matrix. Masked keys get the most negative float, so a row whose
    keys are all masked falls back to uniform weights (same as Hugging Face eager attention).
    """
    scale = q.shape[-1] ** -0.5
    s = torch.matmul(q * scale, k.transpose(-1, -2))  # (B, H, Lq, Lk)
    if key_padding_mask is not None:
        s = s.masked_fill(~key_padding_mask[:, None, None, :], torch.finfo(s.dtype).min)
    p = torch.softmax(s if s.dtype == torch.float64 else s.float(), dim=-1).to(q.dtype)
    if dropout_p > 0.0 and training:
        p = F.dropout(p, dropout_p, training=True)
    return torch.matmul(p, v)  # (B, H, Lq, D)


def _attend_query_block(
    q_blk: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    block_size: int,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    """One query block against all key/value blocks with an online softmax.

    q_blk (B, H, Bq, D) already scaled by 1/sqrt(D); k, v (B, H, Lk, D); returns (B, H, Bq, D).
    Statistics are kept in float32 (float64 for float64 inputs) whatever the input dtype.
    """
    B, H, Bq, D = q_blk.shape
    Lk = k.shape[2]
    acc = torch.float64 if q_blk.dtype == torch.float64 else torch.float32
    neg = torch.finfo(acc).min
    m = torch.full((B, H, Bq, 1), float("-inf"), device=q_blk.device, dtype=acc)  # running max
    num = torch.zeros((B, H, Bq, D), device=q_blk.device, dtype=acc)  # sum_j p_j v_j
    den = torch.zeros((B, H, Bq, 1), device=q_blk.device, dtype=acc)  # sum_j p_j
    for j in range(0, Lk, block_size):
        k_blk = k[:, :, j : j + block_size]  # (B, H, Bk, D)
        v_blk = v[:, :, j : j + block_size]
        s = torch.matmul(q_blk, k_blk.transpose(-1, -2)).to(acc)  # (B, H, Bq, Bk)
        if key_padding_mask is not None:
            keep = key_padding_mask[:, None, None, j : j + block_size]  # (B, 1, 1, Bk)
            s = s.masked_fill(~keep, neg)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        correction = torch.exp(m - m_new)  # rescales what was accumulated under the old max
        p = torch.exp(s - m_new)
        den = den * correction + p.sum(dim=-1, keepdim=True)
        if dropout_p > 0.0 and training:
            # dropout on normalized probabilities == dropout on the numerator terms only
            p = F.dropout(p, dropout_p, training=True)
        num = num * correction + torch.matmul(p.to(v_blk.dtype), v_blk).to(acc)
        m = m_new
    return (num / den).to(q_blk.dtype)


def _blockwise_attention_nograd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    block_size: int,
    query_block_size: int,
) -> torch.Tensor:
    """Same math as :func:`_attend_query_block` over all query blocks, for inference (no autograd, no
    dropout, float32/64), with fewer passes per tile: heads folded into one bmm batch, the padding bias
    fused into ``baddbmm``, a ones column appended to V so the denominator rides along in the numerator
    matmul, and the softmax statistics updated in place.

    q (B, H, Lq, D) already scaled; k, v (B, H, Lk, D); mask (B, Lk) bool. Returns (B, H, Lq, D).
    """
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    N = B * H
    qf = q.reshape(N, Lq, D)
    kt = k.reshape(N, Lk, D).transpose(1, 2)  # (N, D, Lk)
    v1 = torch.cat([v.reshape(N, Lk, D), v.new_ones(N, Lk, 1)], dim=-1)  # (N, Lk, D+1): [v | 1]
    bias = None
    if key_padding_mask is not None:  # additive: 0 for real keys, a huge negative (finite) for padding
        bias = torch.zeros(B, Lk, dtype=q.dtype, device=q.device)
        bias.masked_fill_(~key_padding_mask, torch.finfo(q.dtype).min / 2)
        bias = bias[:, None, None, :].expand(B, H, 1, Lk).reshape(N, 1, Lk)
    out = torch.empty(N, Lq, D, dtype=q.dtype, device=q.device)
    for i in range(0, Lq, query_block_size):
        qb = qf[:, i : i + query_block_size]  # (N, Bq, D)
        nq = qb.shape[1]
        m = torch.full((N, nq, 1), float("-inf"), dtype=q.dtype, device=q.device)  # running max
        acc = torch.zeros(N, nq, D + 1, dtype=q.dtype, device=q.device)  # [sum_j p_j v_j | sum_j p_j]
        for j in range(0, Lk, block_size):
            kb, vb = kt[:, :, j : j + block_size], v1[:, j : j + block_size]
            s = torch.bmm(qb, kb) if bias is None else torch.baddbmm(bias[:, :, j : j + block_size], qb, kb)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            s.sub_(m_new).exp_()  # p, in place: (N, Bq, Bk)
            acc.mul_(m.sub_(m_new).exp_()).baddbmm_(s, vb)  # rescale by exp(m_old - m_new), add p @ [v | 1]
            m = m_new
        out[:, i : i + nq] = acc[..., :D] / acc[..., D:]
    return out.view(B, H, Lq, D)


TILE_BUDGET = 1 << 22  # score-tile elements (16 MiB in fp32) the inference path may use per step


def auto_query_block(n_heads_total: int, block_size: int, seq_len: int) -> int:
    """Query rows per step so that one (B*H, Bq, Bk) score tile stays within :data:`TILE_BUDGET`."""
    rows = TILE_BUDGET // max(1, n_heads_total * block_size)
    return int(min(seq_len, max(block_size, rows)))


def blockwise_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    block_size: int = 128,
    dropout_p: float = 0.0,
    training: bool = False,
    checkpoint: bool = False,
    query_block_size: int | None = None,
) -> torch.Tensor:
    """Exact softmax attention computed block by block.

    q (B, H, Lq, D), k / v (B, H, Lk, D), key_padding_mask (B, Lk) bool (True = attend) or None.
    Returns (B, H, Lq, D). Lengths need not be multiples of the block sizes. ``block_size`` is the key/value
    block; ``query_block_size`` the query block (default: ``block_size`` when autograd records, else as
    many rows as keep one score tile within :data:`TILE_BUDGET` elements, so inference takes few, large
    steps; either way the (Lq, Lk) score matrix never exists whole).
    ``checkpoint`` recomputes each query block in backward (only used when autograd is recording).
    """
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        key_padding_mask = key_padding_mask.bool()
    q = q * (q.shape[-1] ** -0.5)
    recording = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not recording and not (training and dropout_p > 0.0) and q.dtype in (torch.float32, torch.float64):
        qbs = query_block_size or auto_query_block(q.shape[0] * q.shape[1], block_size, q.shape[2])
        return _blockwise_attention_nograd(q, k, v, key_padding_mask, block_size, qbs)
    qbs = query_block_size or block_size
    use_ckpt = checkpoint and recording
    outs = []
    for i in range(0, q.shape[2], qbs):
        q_blk = q[:, :, i : i + qbs]
        if use_ckpt:
            o = _checkpoint(
                _attend_query_block, q_blk, k, v, key_padding_mask, block_size, dropout_p, training,
                use_reentrant=False,
            )
        else:
            o = _attend_query_block(q_blk, k, v, key_padding_mask, block_size, dropout_p, training)
        outs.append(o)
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def chunked_feed_forward(
    x: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int = 128,
    checkpoint: bool = False,
) -> torch.Tensor:
    """Apply a position-wise ``fn`` ((B, l, d) -> (B, l, d)) to sequence chunks of x (B, L, d).

    Exact because ``fn`` treats every position independently. With ``checkpoint`` (and autograd on),
    each chunk's (l, 4d) intermediate is recomputed in backward instead of being stored.
    """
    L = x.shape[1]
    if chunk_size >= L and not checkpoint:
        return fn(x)
    use_ckpt = checkpoint and torch.is_grad_enabled() and x.requires_grad
    outs = []
    for i in range(0, L, chunk_size):
        xc = x[:, i : i + chunk_size]
        outs.append(_checkpoint(fn, xc, use_reentrant=False) if use_ckpt else fn(xc))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
