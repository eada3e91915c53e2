"""Rotary position embeddings (RoPE, Su et al. 2021) for the ViRanker encoder.

Pairing convention: **rotate-half** (GPT-NeoX / Hugging Face Llama). Feature ``i`` of a head is paired
with feature ``i + head_dim/2`` (not with its neighbour ``i+1`` as in the interleaved GPT-J layout), and
the pair is rotated by the angle ``pos * base^(-2i/head_dim)``:

    rope(x)[:, :h]  = x[:, :h] * cos - x[:, h:] * sin
    rope(x)[:, h:]  = x[:, h:] * cos + x[:, :h] * sin          (h = head_dim / 2)

Because every pair is a 2-D rotation, ``rope(q, m) . rope(k, n)`` depends only on ``m - n``.
"""

from __future__ import annotations

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., D) -> (..., D): ``[x1, x2] -> [-x2, x1]`` with x1, x2 the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys.

    q, k: (B, H, L, D); cos, sin: (L, D), broadcast over batch and heads. Returns rotated (q, k) in the
    dtype of q / k.
    """
    cos = cos.to(q.dtype)
    sin = sin.to(q.dtype)
    q_rot = q * cos + rotate_half(q) * sin
    k_rot = k * cos + rotate_half(k) * sin
    return q_rot, k_rot


class RotaryEmbedding(nn.Module):
    """cos/sin cache for positions ``0..L-1``; grows on demand, never saved in the state dict."""

    def __init__(self, head_dim: int, base: float = 10000.0, initial_length: int = 512) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = float(base)
        inv_freq = 1.0 / (self.base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.register_buffer("cos_cached", torch.empty(0), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0), persistent=False)
        self._build(initial_length)

    def _build(self, length: int) -> None:
        # computed in float64 so long positions keep full float32 precision
        pos = torch.arange(length, dtype=torch.float64)
        freqs = torch.outer(pos, self.inv_freq.double())  # (L, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (L, D): rotate-half layout
        device = self.inv_freq.device
        self.cos_cached = emb.cos().float().to(device)
        self.sin_cached = emb.sin().float().to(device)

    def forward(self, length: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (cos, sin), each (length, head_dim) float32, for positions ``0..length-1``."""
        if length > self.cos_cached.shape[0]:
            self._build(max(length, 2 * self.cos_cached.shape[0]))
        cos, sin = self.cos_cached[:length], self.sin_cached[:length]
        if device is not None and cos.device != device:
            cos, sin = cos.to(device), sin.to(device)
        return cos, sin
