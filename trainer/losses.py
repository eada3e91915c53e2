"""Ranking losses over groups of scores, as small pure functions.

Every loss takes ``scores`` of shape ``(B, G)``: row ``i`` holds the model's logits for query ``i``'s group,
positive first (column 0), then ``G - 1`` negatives. Each returns a scalar tensor (mean over the batch).

- :func:`triplet_ranking_loss` — ViRanker's loss: ``max(0, m − s(q, p) + s(q, n))`` averaged over negatives.
- :func:`listwise_ce_loss` — softmax cross-entropy of the positive against the whole group.
- :func:`bce_loss` — pointwise binary cross-entropy (positive = 1, negatives = 0).
- :func:`multi_exit_loss` — a weighted sum of one of the above over several early-exit heads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

__all__ = ["triplet_ranking_loss", "listwise_ce_loss", "bce_loss", "multi_exit_loss", "get_loss", "LOSSES"]


def _check(scores: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"scores must be (B, G) with G >= 2 (positive + negatives), got {tuple(scores.shape)}"
        )


def triplet_ranking_loss(scores: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``mean_{i, j} max(0, margin − s_i,pos + s_i,neg_j)`` over queries ``i`` and negatives ``j``."""
    _check(scores)
    pos = scores[:, :1]
    neg = scores[:, 1:]
    return F.relu(margin - pos + neg).mean()


def listwise_ce_loss(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``mean_i −log softmax(s_i / T)[0]``: the positive (column 0) against its whole group."""
    _check(scores)
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores.float() / temperature, target)


def bce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits; label 1 for column 0, 0 for the rest; mean over all pairs."""
    _check(scores)
    labels = torch.zeros_like(scores, dtype=torch.float32)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores.float(), labels)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "triplet": triplet_ranking_loss,
    "listwise": listwise_ce_loss,
    "bce": bce_loss,
}


def get_loss(name: str, **kwargs: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``scores → loss`` for loss ``name`` with its keyword arguments bound (e.g. ``margin=1.0``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    fn = LOSSES[name]

    def loss(scores: torch.Tensor) -> torch.Tensor:
        return fn(scores, **kwargs)

    loss.__name__ = f"{name}_loss"
    return loss


def multi_exit_loss(
    scores_by_layer: Mapping[int, torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    weights: Mapping[int, float] | None = None,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """``Σ_l w_l · loss_fn(scores_l)`` over the heads in ``scores_by_layer`` → (total, {layer: loss}).

    Layers missing from ``weights`` get weight 1.0; ``weights=None`` weighs every head 1.0.
    """
    if not scores_by_layer:
        raise ValueError("no scores given")
    per_layer = {layer: loss_fn(s) for layer, s in scores_by_layer.items()}
    w = weights or {}
    total = sum(float(w.get(layer, 1.0)) * v for layer, v in per_layer.items())
    return total, per_layer  # type: ignore[return-value]
