"""Readable reranker scores: Platt scaling of the raw logit, fitted on held-back questions.

    raw logit s --> p = sigmoid(a * s + b)   (a > 0 keeps the order; p ~ P(relevant | s) on the fitting data)

A model's logits live on no particular scale (the shipped ViRanker-small gives 10-15 to most candidates, so
``sigmoid(s)`` reads 1.000 for every hit); after calibration 0.5 means "as likely relevant as not" on questions
like the held-back ones. The fitted parameters travel in the model dir's ``inference.json`` under
``"calibration"`` (:meth:`PlattCalibration.to_dict`); :class:`reranker.backends.RerankScores` ``.normalized`` and
``ViRankerCrossEncoder.compute_score(normalize=True)`` apply them. ``bench/calibrate.py`` fits them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CALIBRATION_KEY = "calibration"


class CalibrationError(ValueError):
    """Calibration data or a stored calibration is unusable (one class only, wrong kind, bad parameters)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def log_loss(probs: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (n,) against 0/1 ``labels`` (n,)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


@dataclass(frozen=True)
class PlattCalibration:
    """p = sigmoid(a * raw + b). ``meta``: where it was fitted (data, sizes, log-loss before/after)."""

    a: float
    b: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __call__(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        """Raw logits (n,) → calibrated probabilities (n,) float32."""
        return _sigmoid(self.a * np.asarray(raw, dtype=np.float64) + self.b).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "platt", **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlattCalibration:
        """The inverse of :meth:`to_dict`; :class:`CalibrationError` for another kind or a non-increasing map."""
        if d.get("kind", "platt") != "platt":
            raise CalibrationError(f"unknown calibration kind {d.get('kind')!r}")
        a, b = float(d["a"]), float(d["b"])
        if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
            raise CalibrationError(f"calibration needs a finite slope a > 0 and a finite b, got a={a}, b={b}")
        return cls(a, b, dict(d.get("meta", {})))


def fit_platt(raw: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
              meta: Mapping[str, Any] | None = None) -> PlattCalibration:
    """Fit p = sigmoid(a * raw + b) to 0/1 ``labels`` by maximum likelihood (scikit-learn's logistic regression
    on the one feature, Platt's smoothed targets via sample weights are not used: the held-back sets are
    hundreds of pairs). ``meta`` is stored with the result, plus n, positives and the log-loss of
    ``sigmoid(raw)`` and of the fit on the same data."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(raw, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(x) != len(y):
        raise CalibrationError(f"{len(x)} scores vs {len(y)} labels")
    if len(np.unique(y)) != 2:
        raise CalibrationError("calibration needs both relevant and non-relevant pairs")
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        raise CalibrationError(f"the scores do not rank relevant pairs higher on this data (slope {a:.4g})")
    cal = PlattCalibration(a, b)
    info = {**(meta or {}), "pairs": int(len(y)), "positives": int(y.sum()),
            "log_loss_sigmoid": round(log_loss(_sigmoid(x[:, 0]), y), 4),
            "log_loss_calibrated": round(log_loss(cal(x[:, 0]), y), 4)}
    return PlattCalibration(a, b, info)


def read_calibration(settings: Mapping[str, Any]) -> PlattCalibration | None:
    """The calibration stored in a model's ``inference.json`` settings, or None."""
    d = settings.get(CALIBRATION_KEY)
    return None if d is None else PlattCalibration.from_dict(d)


def scorer_signature(exit_layer: int | None, quantize: bool | str, backend: str = "torch") -> dict[str, Any]:
    """What a calibration was fitted with (a different head, precision or runtime gives other logits)."""
    return {"exit_layer": exit_layer, "quantize": quantize, "backend": backend}


def calibration_for(settings: Mapping[str, Any], signature: Mapping[str, Any]) -> PlattCalibration | None:
    """The stored calibration when it was fitted on logits of the same kind as ``signature``
    (:func:`scorer_signature`) produces; int8 and fp32 logits of one model are close enough to share it
    (``quantize`` is not compared), another exit layer is not. None otherwise."""
    cal = read_calibration(settings)
    if cal is None:
        return None
    fitted = cal.meta.get("scorer") or {}
    return cal if fitted.get("exit_layer", signature.get("exit_layer")) == signature.get("exit_layer") else None
