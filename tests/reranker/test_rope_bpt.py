"""Blockwise attention / chunked FFN exactness and RoPE properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reranker.bpt import blockwise_attention, chunked_feed_forward, naive_attention
from reranker.rope import RotaryEmbedding, apply_rotary, rotate_half


def _qkv(B: int, H: int, L: int, D: int, seed: int = 0, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=torch.float64).requires_grad_(requires_grad)
            for _ in range(3)]


def _padding_mask(lengths: list[int], L: int) -> torch.Tensor:
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]  # (B, L) True = real token


@pytest.mark.parametrize("L,block", [(1, 4), (7, 4), (37, 8), (64, 16), (50, 128), (33, 1)])
def test_blockwise_matches_naive_with_padding(L, block):
    q, k, v = _qkv(3, 2, L, 8, seed=L)
    mask = _padding_mask([L, max(1, L // 2), max(1, L - 3)], L)
    ref = naive_attention(q, k, v, mask)
    out = blockwise_attention(q, k, v, mask, block_size=block)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for qbs in (1, 3, block):  # query blocks independent of key/value blocks
        torch.testing.assert_close(blockwise_attention(q, k, v, mask, block_size=block, query_block_size=qbs),
                                   ref, rtol=1e-10, atol=1e-10)
    # the padded keys really are ignored: changing them does not change real-token outputs
    k2, v2 = k.clone(), v.clone()
    k2[~mask[:, None, :, None].expand_as(k2)] = 1e3
    v2[~mask[:, None, :, None].expand_as(v2)] = -1e3
    out2 = blockwise_attention(q, k2, v2, mask, block_size=block)
    torch.testing.assert_close(out2, out, rtol=1e-10, atol=1e-10)


def test_auto_query_block_respects_tile_budget():
    from reranker.bpt import TILE_BUDGET, auto_query_block

    assert auto_query_block(12, 128, 8192) * 12 * 128 <= TILE_BUDGET
    assert auto_query_block(12, 128, 100) == 100  # never more rows than the sequence
    assert auto_query_block(10**6, 128, 8192) == 128  # never fewer than one block


def test_inference_and_autograd_paths_agree():
    # inputs that require grad take the autograd-friendly path; plain inputs the in-place inference path
    q, k, v = _qkv(2, 3, 45, 8, seed=11)
    mask = _padding_mask([45, 17], 45)
    fast = blockwise_attention(q, k, v, mask, block_size=16)
    slow = blockwise_attention(*(t.clone().requires_grad_(True) for t in (q, k, v)), mask, block_size=16)
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-10, atol=1e-10)


def test_blockwise_matches_sdpa_float32_no_mask():
    q, k, v = (t.float() for t in _qkv(2, 4, 300, 16, seed=3))
    torch.testing.assert_close(
        blockwise_attention(q, k, v, None, block_size=64),
        F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5,
    )


def test_fully_padded_first_blocks_are_exact():
    # keys 0..11 padded (a whole first block masked): the online softmax must discard them exactly
    q, k, v = _qkv(1, 1, 20, 4, seed=5)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, :12] = False
    torch.testing.assert_close(
        blockwise_attention(q, k, v, mask, block_size=4), naive_attention(q, k, v, mask), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("ckpt", [False, True])
def test_blockwise_gradients_match_naive(ckpt):
    q, k, v = _qkv(2, 2, 19, 8, seed=7, requires_grad=True)
    mask = _padding_mask([19, 11], 19)
    w = torch.randn(2, 2, 19, 8, dtype=torch.float64)
    (naive_attention(q, k, v, mask) * w).sum().backward()
    ref = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (blockwise_attention(q, k, v, mask, block_size=5, checkpoint=ckpt) * w).sum().backward()
    for t, r in zip((q, k, v), ref, strict=True):
        torch.testing.assert_close(t.grad, r, rtol=1e-9, atol=1e-9)


def test_blockwise_dropout_is_dropout_on_probabilities():
    q, k, v = _qkv(1, 2, 10, 4, seed=9)
    torch.manual_seed(0)
    out_train = blockwise_attention(q, k, v, None, block_size=16, dropout_p=0.5, training=True)
    out_eval = blockwise_attention(q, k, v, None, block_size=16, dropout_p=0.5, training=False)
    assert not torch.allclose(out_train, out_eval)
    # one block: same RNG stream as naive dropout on the probabilities
    torch.manual_seed(0)
    ref = naive_attention(q, k, v, None, dropout_p=0.5, training=True)
    torch.testing.assert_close(out_train, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ckpt", [False, True])
def test_chunked_ffn_exact_forward_and_backward(ckpt):
    torch.manual_seed(0)
    fc1, fc2, ln = torch.nn.Linear(8, 32), torch.nn.Linear(32, 8), torch.nn.LayerNorm(8)

    def fn(x):
        return ln(x + fc2(F.gelu(fc1(x))))

    x = torch.randn(2, 29, 8, requires_grad=True)
    ref = fn(x)
    g = torch.randn_like(ref)
    (ref * g).sum().backward()
    gx, gw = x.grad.clone(), fc1.weight.grad.clone()
    x.grad = None
    fc1.weight.grad = None
    out = chunked_feed_forward(x, fn, chunk_size=6, checkpoint=ckpt)
    torch.testing.assert_close(out, ref)
    (out * g).sum().backward()
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(fc1.weight.grad, gw)


def test_rotate_half_convention():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rotate_half(x).tolist() == [-3.0, -4.0, 1.0, 2.0]  # pairs (0, 2) and (1, 3)


def test_rope_dot_product_depends_only_on_offset():
    D = 16
    rope = RotaryEmbedding(D, base=10000.0, initial_length=8)
    cos, sin = rope(300)  # grows the cache past its initial 8 positions
    assert cos.shape == (300, D)
    g = torch.Generator().manual_seed(0)
    qv, kv = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    # the same q and k vectors placed at every position
    q = qv.expand(1, 1, 300, D).clone()
    k = kv.expand(1, 1, 300, D).clone()
    qr, kr = apply_rotary(q, k, cos.double(), sin.double())
    scores = (qr[0, 0] @ kr[0, 0].T)  # (300, 300): score[m, n]
    for offset in (-7, 0, 3, 50):
        diag = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag), rtol=1e-5, atol=1e-5)  # float32 cache
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 5)[0])
    # rotation keeps norms
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))
    # position 0 is the identity
    torch.testing.assert_close(qr[0, 0, 0], qv)
