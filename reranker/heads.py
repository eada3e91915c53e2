"""Scoring heads: pooled encoder states -> one relevance logit per pair.

* :class:`ScoreHead`: (B, d) first-token or mean state -> MLP -> (B,).
* :class:`PairScoreHead`: (B, 2, d) query and passage segment means -> MLP(interactions) + s * cos -> (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reranker.config import ViRankerConfig


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
