"""The blend stage: the reranked window's final order, from the reranker's score and the first stage's signals.

Two ways, chosen by :meth:`search.pipeline.Pipeline.blend_for`:

* **fixed** — ``α · minmax(reranker) + (1 − α) · minmax(first stage)`` over the window
  (:func:`blend_with_first_stage`; α from ``Pipeline(rerank_blend=...)`` or the model's ``rerank_blend``);
* **learned** — a LightGBM lambdarank model (:class:`LearnedBlend`) over :data:`FEATURES` of every candidate
  in the window, fitted on mined training questions by :mod:`trainer.blend` and stored in the reranker's
  model dir (``blend.lgb.txt``, described by ``inference.json``'s ``learned_blend``).

Features of one candidate (``NaN`` where a retriever did not return the passage in its top ``depth``; LightGBM
routes missing values itself):

==================  ===============================================================================
``rerank``          the reranker's raw score; ``rerank_gap`` = it minus the window's best
``rerank_rank``     its rank among the window by the reranker
``bm25``            BM25 (exact boosted + folded) score and ``bm25_rank``; ``bm25_gap`` to the best
``bm25_exact``      BM25 on the exact (with diacritics) field alone; ``bm25_folded`` on the folded field
``dense``           cosine of query and passage vectors, ``dense_rank``, ``dense_gap``
``fusion``          the fused score (hybrid) and ``fusion_rank`` (= first-stage rank)
``length``          passage length in syllables
==================  ===============================================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.fusion import weighted_minmax

FEATURES: tuple[str, ...] = (
    "rerank", "rerank_rank", "rerank_gap",
    "bm25", "bm25_rank", "bm25_gap", "bm25_exact", "bm25_folded",
    "dense", "dense_rank", "dense_gap",
    "fusion", "fusion_rank",
    "length",
)
BLEND_FILE = "blend.lgb.txt"
_TOKEN_RE = re.compile(r"\w+")


class BlendError(ValueError):
    """A learned blend's files are missing, unreadable or do not match :data:`FEATURES`."""


def blend_with_first_stage(
    first_stage: Sequence[tuple[str, float]], reranker: Sequence[tuple[str, float]], alpha: float
) -> list[tuple[str, float]]:
    """``(id, score)`` lists over the same window → ``α · minmax(reranker) + (1 − α) · minmax(first stage)``,
    best first (ties keep the reranker's order)."""
    return weighted_minmax([list(reranker), list(first_stage)], [alpha, 1.0 - alpha])


@dataclass
class Candidate:
    """One passage of the reranked window, with what every stage said about it.

    ``stage_scores`` / ``stage_ranks``: as in :class:`search.pipeline.Hit` (keys ``bm25``, ``dense``, ``fusion``,
    plus ``bm25_exact`` / ``bm25_folded`` scores when the pipeline computed them); ``rerank``: the reranker's
    raw score; ``length``: syllables of the passage text.
    """

    id: str
    rerank: float
    stage_scores: Mapping[str, float]
    stage_ranks: Mapping[str, int]
    length: int


def passage_length(text: str) -> int:
    """Syllables (word-character runs) of a passage: the ``length`` feature."""
    return len(_TOKEN_RE.findall(text))


def candidate(pid: str, rerank_raw: float, stage_scores: Mapping[str, float], stage_ranks: Mapping[str, int],
              text: str) -> Candidate:
    """The :class:`Candidate` of one window passage: built here for both the pipeline and the fitting code."""
    return Candidate(pid, float(rerank_raw), dict(stage_scores), dict(stage_ranks), passage_length(text))


def feature_matrix(window: Sequence[Candidate]) -> np.ndarray:
    """The window's candidates → ``(n, len(FEATURES))`` float32, NaN for signals a stage did not give."""
    n = len(window)
    out = np.full((n, len(FEATURES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    col = {name: j for j, name in enumerate(FEATURES)}
    rerank = np.array([c.rerank for c in window], dtype=np.float64)
    out[:, col["rerank"]] = rerank
    out[:, col["rerank_gap"]] = rerank - rerank.max()
    out[np.argsort(-rerank, kind="stable"), col["rerank_rank"]] = np.arange(1, n + 1)
    for i, c in enumerate(window):
        out[i, col["length"]] = c.length
        for stage in ("bm25", "dense", "fusion", "bm25_exact", "bm25_folded"):
            if stage in c.stage_scores:
                out[i, col[stage]] = c.stage_scores[stage]
        for stage in ("bm25", "dense", "fusion"):
            if stage in c.stage_ranks:
                out[i, col[f"{stage}_rank"]] = c.stage_ranks[stage]
    for stage in ("bm25", "dense"):
        vals = out[:, col[stage]]
        if np.isfinite(vals).any():
            out[:, col[f"{stage}_gap"]] = vals - np.nanmax(vals)
    return out


class LearnedBlend:
    """A fitted LightGBM ranker over :data:`FEATURES` → one score per candidate (higher is better).

    ``meta``: what the fit recorded (training data, held-back metrics); saved in ``inference.json``.
    """

    def __init__(self, booster: Any, meta: Mapping[str, Any] | None = None) -> None:
        names = tuple(booster.feature_name())
        if names != FEATURES:
            raise BlendError(f"the blend model was fitted on features {names}, this code computes {FEATURES}")
        self.booster = booster
        self.meta = dict(meta or {})

    def scores(self, window: Sequence[Candidate]) -> np.ndarray:
        """Candidates → ``(n,)`` float64 blend scores."""
        if not window:
            return np.zeros(0)
        return np.asarray(self.booster.predict(feature_matrix(window)), dtype=np.float64)

    def rank(self, window: Sequence[Candidate]) -> list[tuple[str, float]]:
        """Candidates → ``[(id, blend score)]`` best first (ties keep the window's order)."""
        s = self.scores(window)
        order = sorted(range(len(window)), key=lambda j: -s[j])
        return [(window[j].id, float(s[j])) for j in order]

    def save(self, model_dir: str | Path) -> dict[str, Any]:
        """Write ``blend.lgb.txt`` into ``model_dir`` → the ``learned_blend`` entry for ``inference.json``."""
        path = Path(model_dir) / BLEND_FILE
        self.booster.save_model(str(path))
        return {"file": BLEND_FILE, "kind": "lightgbm-lambdarank", "features": list(FEATURES), **self.meta}

    @classmethod
    def load(cls, model_dir: str | Path, entry: Mapping[str, Any]) -> LearnedBlend:
        """The blend described by ``entry`` (``inference.json``'s ``learned_blend``) in ``model_dir``."""
        try:
            import lightgbm
        except ImportError as err:
            raise BlendError(f"lightgbm is needed for the learned blend ({err})") from err
        path = Path(model_dir) / str(entry.get("file", BLEND_FILE))
        if not path.is_file():
            raise BlendError(f"learned blend file {path} is missing")
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as err:
            raise BlendError(f"learned blend file {path} is unreadable: {err}") from err
        meta = {k: v for k, v in entry.items() if k not in ("file", "kind", "features")}
        return cls(booster, meta)


def learned_blend_of(reranker: Any) -> LearnedBlend | None:
    """The learned blend a reranker's model dir ships (``reranker.settings["learned_blend"]`` + ``reranker.path``),
    or None when it has none. Raises :class:`BlendError` when it names one that cannot be loaded."""
    settings = getattr(reranker, "settings", None) or {}
    entry = settings.get("learned_blend")
    if not entry:
        return None
    return LearnedBlend.load(Path(reranker.path), entry)
