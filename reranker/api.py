"""ViRanker in the shape people already use: sentence-transformers' ``CrossEncoder`` and FlagEmbedding's
``FlagReranker``.

    from reranker import ViRankerCrossEncoder
    model = ViRankerCrossEncoder.from_pretrained("assets/models/viranker-small")   # or ViRankerCrossEncoder(dir)
    model.predict([("câu hỏi", "đoạn văn"), ...])            -> np.ndarray (n,) raw logits
    model.rank("câu hỏi", ["đoạn 1", "đoạn 2"], top_k=5)       -> [{"corpus_id": 1, "score": 9.1}, ...]
    model.compute_score([["câu hỏi", "đoạn văn"]], normalize=True) -> [0.83]  calibrated probability

Scores are those of :class:`reranker.inference.ViRankerScorer` with the model dir's ``inference.json`` settings
(exit layer, int8, windows over long passages), keyword arguments override them. ``backend``: ``"torch"``
(the scorer) or ``"onnx"`` (:class:`reranker.onnx_export.OnnxScorer`, ONNX Runtime; ``quantize=True`` runs the
int8 graph). Differences from ``CrossEncoder``, on purpose: ``predict`` returns raw logits (pass
``activation_fn`` for another map; CrossEncoder's default sigmoid saturates on these logits), and
``normalize=True`` means the model's calibrated probability (:mod:`reranker.calibration`) when the dir has one,
else the sigmoid, as FlagReranker does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Pair = tuple[str, str] | list[str]


def _as_pairs(sentences: Pair | Sequence[Pair]) -> tuple[list[tuple[str, str]], bool]:
    """(pairs, was a single pair). Raises TypeError for anything but (query, passage) string pairs."""
    if isinstance(sentences, (tuple, list)) and len(sentences) == 2 and all(isinstance(x, str) for x in sentences):
        return [(sentences[0], sentences[1])], True
    pairs = []
    for p in sentences:
        if isinstance(p, str) or len(p) != 2 or not all(isinstance(x, str) for x in p):
            raise TypeError(f"expected (query, passage) pairs of strings, got {p!r}")
        pairs.append((p[0], p[1]))
    return pairs, False


class ViRankerCrossEncoder:
    """A ViRanker model dir with ``predict`` / ``rank`` (CrossEncoder) and ``compute_score`` (FlagReranker).

    ``model_name_or_path``: a local model dir (``save_pretrained`` / ``trainer export`` / the shipped
    assets/models/viranker-small); nothing is downloaded. ``backend``: "torch" or "onnx" (default: the dir's
    inference.json ``backend``, else "torch"). ``max_length``,
    ``batch_size``, ``exit_layer``, ``quantize``, ``long_passages``, ``num_threads``, ... go to the scorer.
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str], backend: str | None = None, **kw: Any) -> None:
        from reranker.calibration import calibration_for, scorer_signature
        from reranker.inference import read_inference_settings

        self.path = Path(model_name_or_path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a ViRanker model dir (no config.json)")
        settings = read_inference_settings(self.path)
        backend = backend or settings.get("backend", "torch")
        self.backend = backend
        if backend == "torch":
            from reranker.inference import ViRankerScorer

            self.scorer = ViRankerScorer.from_pretrained(self.path, **kw)
        elif backend == "onnx":
            from reranker.onnx_export import OnnxScorer

            self.scorer = OnnxScorer.from_pretrained(self.path, **kw)
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.settings = {**settings, **kw}
        signature = scorer_signature(self.scorer.served_layer, bool(self.settings.get("quantize", False)), backend)
        self.calibration = calibration_for(settings, signature)

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike[str], **kw: Any) -> ViRankerCrossEncoder:
        """Same as the constructor (the transformers spelling)."""
        return cls(model_dir, **kw)

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    # ------------------------------------------------------------------ sentence-transformers CrossEncoder
    def predict(self, sentences: Pair | Sequence[Pair], batch_size: int | None = None,
                show_progress_bar: bool | None = None, activation_fn: Callable[[Any], Any] | None = None,
                apply_softmax: bool = False, convert_to_numpy: bool = True, convert_to_tensor: bool = False,
                **_: Any) -> np.ndarray | float | Any:
        """Scores (n,) float32 of (query, passage) pairs — raw logits unless ``activation_fn`` (a callable on
        a torch tensor or numpy array) maps them; a single pair gives a float. ``apply_softmax`` is accepted
        for CrossEncoder compatibility and ignored (one label: softmax is constant). ``convert_to_tensor``:
        a torch tensor instead of numpy."""
        pairs, single = _as_pairs(sentences)
        if batch_size is not None:
            self.scorer.batch_size = int(batch_size)
        raw = self.scorer.score_pairs([q for q, _ in pairs], [p for _, p in pairs]) if pairs else np.zeros(0)
        scores: Any = np.asarray(raw, dtype=np.float32)
        if activation_fn is not None:
            import torch

            out = activation_fn(torch.from_numpy(scores))
            scores = out.detach().float().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
        if single:
            return float(scores[0])
        if convert_to_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(scores))
        return scores

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None,
             return_documents: bool = False, batch_size: int | None = None,
             show_progress_bar: bool | None = None, **kw: Any) -> list[dict[str, Any]]:
        """``documents`` ranked for ``query``: ``[{"corpus_id": i, "score": s[, "text": documents[i]]}, ...]``,
        best first (ties keep input order), at most ``top_k``. ``score`` is what :meth:`predict` returns."""
        if isinstance(documents, str):
            raise TypeError("documents must be a sequence of strings, not one str")
        if not documents:
            return []
        scores = self.predict([(query, d) for d in documents], batch_size=batch_size, **kw)
        scores = np.atleast_1d(np.asarray(scores, dtype=np.float64))
        order = sorted(range(len(documents)), key=lambda i: -scores[i])[: top_k or None]
        out = []
        for i in order:
            row: dict[str, Any] = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                row["text"] = documents[i]
            out.append(row)
        return out

    # ------------------------------------------------------------------ FlagEmbedding FlagReranker
    def normalize(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        """Raw logits → [0, 1]: the dir's calibration when it has one for these settings, else the sigmoid."""
        from reranker.backends import sigmoid

        raw = np.asarray(raw, dtype=np.float32)
        return self.calibration(raw) if self.calibration is not None else sigmoid(raw)

    def compute_score(self, sentence_pairs: Pair | Sequence[Pair], batch_size: int | None = None,
                      max_length: int | None = None, normalize: bool = False, **_: Any) -> list[float] | float:
        """FlagReranker's call: a list of floats (one float for a single pair); ``normalize=True`` gives
        calibrated probabilities (:meth:`normalize`)."""
        if max_length is not None:
            self.scorer.max_length = int(max_length)
        pairs, single = _as_pairs(sentence_pairs)
        raw = self.predict(pairs, batch_size=batch_size)
        scores = self.normalize(raw) if normalize else np.asarray(raw, dtype=np.float32)
        values = [float(x) for x in np.atleast_1d(scores)]
        return values[0] if single else values
