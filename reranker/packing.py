"""Packed inference: a right-padded batch as its real tokens only (no padding in projections, FFN, LayerNorm).

    (B, L, c) padded --Packed.unpad--> (T, c) real tokens --Packed.pad--> (B, L, c) with zeros at padding
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
