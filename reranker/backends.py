"""Rerankers by name: (query, passages) -> :class:`RerankScores` (raw logits + sigmoid).

Names and where their weights come from (never downloaded; ``HF_HUB_OFFLINE`` semantics):

==================== ===================================== ===================== ===========================
name                 model                                 env var               loader
==================== ===================================== ===================== ===========================
``viranker``         ours (a ``ViRanker.save_pretrained``   ``VIRANKER_MODEL``    :class:`ViRankerScorer`
                     dir; default assets/models/viranker-small)
``phoranker``        itdainb/PhoRanker (PhoBERT)           ``PHORANKER_PATH``    sentence-transformers
                                                                                 ``CrossEncoder`` (segmented)
``bge-reranker-v2-m3`` BAAI/bge-reranker-v2-m3 (XLM-R)     ``BGE_RERANKER_PATH`` sentence-transformers
                                                                                 ``CrossEncoder``
``viranker-hf``      namdp-ptit/ViRanker (stock XLM-R      ``VIRANKER_HF_PATH``  sentence-transformers
                     classifier)                                                 ``CrossEncoder``
==================== ===================================== ===================== ===========================

The two XLM-R classifiers are published for FlagEmbedding's ``FlagReranker``, which is a thin wrapper over
``AutoModelForSequenceClassification``: CrossEncoder with an identity activation computes the same logits
(tested against transformers directly). FlagEmbedding is not used: its newest release (1.4.2) does not
import under transformers 5 (``transformers.modeling_attn_mask_utils`` is gone), see docs/benchmarks.md
"Fresh install".

Resolution order: explicit ``path`` > env var > default dir (viranker) > the local Hugging Face cache
(``local_files_only``). Nothing found -> :class:`ModelUnavailable` with the fix, immediately; its ``code``
(:class:`reranker.availability.UnavailableReason`) says which failure it is, for a UI to word.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reranker.availability import (
    DependencyUnavailable,
    ModelUnavailable,
    RerankerState,
    RerankerStatus,
    UnavailableReason,
)

__all__ = ["ModelUnavailable", "DependencyUnavailable", "UnavailableReason", "RerankerState", "RerankerStatus",
           "RerankScores", "Reranker", "SPECS", "resolve_model_path", "load_reranker", "available_rerankers",
           "recommended_by_default", "ViRankerReranker", "CrossEncoderReranker", "PhoRankerReranker",
           "position_capacity", "sigmoid", "reranker_status", "dependency_unavailable"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIRANKER_DIR = REPO_ROOT / "assets" / "models" / "viranker-small"


@dataclass
class RerankScores:
    """raw: (n,) logits; normalized: (n,) in [0, 1] — the model's calibrated probability of relevance when its
    dir carries a calibration (``inference.json`` ``"calibration"``, :mod:`reranker.calibration`), else
    sigmoid(raw)."""

    raw: np.ndarray
    normalized: np.ndarray

    @classmethod
    def from_raw(cls, raw: Sequence[float] | np.ndarray,
                 calibrate: Callable[[np.ndarray], np.ndarray] | None = None) -> RerankScores:
        """``calibrate``: raw (n,) → probabilities (n,); None → sigmoid."""
        r = np.asarray(raw, dtype=np.float32).reshape(-1)
        norm = sigmoid(r) if calibrate is None or r.size == 0 else np.asarray(calibrate(r), dtype=np.float32)
        return cls(raw=r, normalized=norm)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float32)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out.astype(np.float32)


@runtime_checkable
class Reranker(Protocol):
    name: str

    def rerank(self, query: str, passages: Sequence[str]) -> RerankScores: ...


@dataclass(frozen=True)
class _Spec:
    env: str
    hub_id: str | None
    kind: str  # "viranker" | "hf"
    description: str


SPECS: dict[str, _Spec] = {
    "viranker": _Spec("VIRANKER_MODEL", None, "viranker", "our ViRanker model dir (config.json + model.safetensors)"),
    "phoranker": _Spec("PHORANKER_PATH", "itdainb/PhoRanker", "hf", "itdainb/PhoRanker (PhoBERT cross-encoder)"),
    "bge-reranker-v2-m3": _Spec("BGE_RERANKER_PATH", "BAAI/bge-reranker-v2-m3", "hf", "BAAI/bge-reranker-v2-m3"),
    "viranker-hf": _Spec("VIRANKER_HF_PATH", "namdp-ptit/ViRanker", "hf", "namdp-ptit/ViRanker (XLM-R classifier)"),
}


def _unavailable(name: str, reason: str, how_to_fix: str, code: UnavailableReason) -> ModelUnavailable:
    """``ModelUnavailable`` for the known reranker ``name`` (its env var and hub id filled in)."""
    spec = SPECS[name]
    return ModelUnavailable(name, reason, how_to_fix, code, env=spec.env, hub_id=spec.hub_id)


def _check_dir(name: str, path: Path, kind: str, source: str) -> Path:
    spec = SPECS[name]
    fix = f"point {spec.env} (or path=...) at a local copy of {spec.description}"
    if not path.is_dir():
        raise _unavailable(name, f"{source} {path} is not a directory", fix, UnavailableReason.NOT_A_DIRECTORY)
    if not (path / "config.json").is_file():
        raise _unavailable(name, f"{source} {path} has no config.json", fix, UnavailableReason.NO_CONFIG)
    weights = ("model.safetensors",) if kind == "viranker" else ("model.safetensors", "pytorch_model.bin")
    if not any((path / w).is_file() for w in weights):
        raise _unavailable(name, f"{source} {path} has no weights ({' or '.join(weights)})", fix,
                           UnavailableReason.NO_WEIGHTS)
    return path


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    """The locally cached snapshot of ``repo_id`` or None (never touches the network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached / hub library missing: simply not available
        return None


def resolve_model_path(name: str, path: str | os.PathLike | None = None) -> Path:
    """Where ``name``'s weights are, or :class:`ModelUnavailable` (see the module docstring for the order)."""
    if name not in SPECS:
        raise ValueError(f"unknown reranker {name!r}; known: {sorted(SPECS)}")
    spec = SPECS[name]
    if path is not None:
        return _check_dir(name, Path(path).expanduser(), spec.kind, "path")
    env = os.environ.get(spec.env)
    if env:
        return _check_dir(name, Path(env).expanduser(), spec.kind, f"${spec.env} =")
    if spec.kind == "viranker":
        if DEFAULT_VIRANKER_DIR.is_dir():
            return _check_dir(name, DEFAULT_VIRANKER_DIR, spec.kind, "default dir")
        raise _unavailable(
            name, f"no model at {DEFAULT_VIRANKER_DIR} and ${spec.env} is not set",
            f"train/export one (trainer) into {DEFAULT_VIRANKER_DIR} or set {spec.env}=<model dir>",
            UnavailableReason.NO_DEFAULT_MODEL,
        )
    snap = _hf_cache_snapshot(spec.hub_id) if spec.hub_id else None
    if snap is not None:
        return _check_dir(name, snap, spec.kind, "HF cache snapshot")
    raise _unavailable(
        name, f"${spec.env} is not set and {spec.hub_id} is not in the local Hugging Face cache",
        f"download {spec.hub_id} on a connected machine (huggingface-cli download {spec.hub_id} "
        f"--local-dir <dir>) and set {spec.env}=<dir>",
        UnavailableReason.NOT_DOWNLOADED,
    )


class ViRankerReranker:
    """Our model through :class:`reranker.inference.ViRankerScorer` (kw: batch_size, exit_layer, quantize,
    num_threads, long_passages, max_length, ...). ``backend="onnx"`` (or ``"backend": "onnx"`` in the dir's
    inference.json) runs it in ONNX Runtime instead (:class:`reranker.onnx_export.OnnxScorer`: the graph is
    exported on first use; int8 there keeps a pair's score independent of its batch)."""

    def __init__(self, path: Path, name: str = "viranker", backend: str | None = None, **kw: Any) -> None:
        from reranker.inference import ViRankerScorer, read_inference_settings

        self.name = name
        self.path = path
        backend = backend or read_inference_settings(path).get("backend", "torch")
        if backend == "onnx":
            from reranker.onnx_export import OnnxScorer

            self.scorer = OnnxScorer.from_pretrained(path, **kw)
        elif backend == "torch":
            self.scorer = ViRankerScorer.from_pretrained(path, **kw)
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.backend = backend
        # the model's recommended weight against the first stage (inference.json), read by search.pipeline
        self.settings: dict[str, Any] = dict(self.scorer.settings)  # inference.json (search.blend reads it)
        blend = self.settings.get("rerank_blend")
        self.blend: float | None = None if blend is None else float(blend)
        from reranker.calibration import calibration_for, scorer_signature

        signature = scorer_signature(self.scorer.served_layer, bool(self.settings.get("quantize", False)), backend)
        self.calibration = calibration_for(self.settings, signature)  # None: normalized is sigmoid(raw)

    def rerank(self, query: str, passages: Sequence[str]) -> RerankScores:
        return RerankScores.from_raw(self.scorer.score(query, list(passages)), self.calibration)


def _default_segmenter() -> Callable[[str], str]:
    from indexing.normalize import words

    return lambda text: " ".join(words(text))


def dependency_unavailable(name: str, dist: str, err: BaseException) -> DependencyUnavailable:
    """``import`` of distribution ``dist`` raised ``err`` → the error for reranker ``name``: code
    ``PACKAGE_MISSING`` when ``dist`` is not installed, else ``PACKAGE_BROKEN`` (decided by the installed
    version, not by the message); the English detail from :func:`indexing.deps.import_failure`."""
    from indexing.deps import import_failure, installed_version

    code = UnavailableReason.PACKAGE_MISSING if installed_version(dist) is None else UnavailableReason.PACKAGE_BROKEN
    spec = SPECS.get(name)
    return DependencyUnavailable(name, *import_failure(dist, err), code, package=dist,
                                 env=spec.env if spec else None, hub_id=spec.hub_id if spec else None)


def _cross_encoder_class(name: str) -> Any:
    """sentence-transformers' ``CrossEncoder``, or :class:`DependencyUnavailable` saying why it won't import."""
    try:
        from sentence_transformers import CrossEncoder
    except Exception as err:  # ImportError, or an incompatible transformers failing inside the import
        raise dependency_unavailable(name, "sentence-transformers", err) from err
    return CrossEncoder


def position_capacity(model_dir: Path) -> int:
    """How many tokens the model's absolute position table holds (config.json): RoBERTa-family ids start at
    ``pad_token_id + 1``, so 514 rows hold 512 tokens; a huge number when the config has no table."""
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    rows = cfg.get("max_position_embeddings")
    if not rows:
        return 1 << 30
    offset = int(cfg.get("pad_token_id", 1)) + 1 if "roberta" in str(cfg.get("model_type", "")) else 0
    return int(rows) - offset


class CrossEncoderReranker:
    """A stock sequence classifier with one label (bge-reranker-v2-m3, namdp-ptit/ViRanker, PhoRanker) through
    sentence-transformers ``CrossEncoder``: raw logits (identity activation; we apply the sigmoid ourselves).

    ``segmenter`` (str -> str) rewrites the query and each passage first: PhoBERT models work on
    word-segmented text (syllables of a word joined by ``_``).
    """

    def __init__(self, path: Path, name: str, max_length: int = 512, batch_size: int = 32,
                 segmenter: Callable[[str], str] | None = None, **_: Any) -> None:
        cross_encoder = _cross_encoder_class(name)
        import torch

        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.segment = segmenter
        self.max_length = min(max_length, position_capacity(path))  # longer pairs would index past the table
        self.model = cross_encoder(str(path), max_length=self.max_length, device="cpu", local_files_only=True,
                                   activation_fn=torch.nn.Identity())

    def rerank(self, query: str, passages: Sequence[str]) -> RerankScores:
        if len(passages) == 0:
            return RerankScores.from_raw([])
        seg = self.segment or (lambda text: text)
        q = seg(query)
        pairs = [(q, seg(p)) for p in passages]
        raw = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False,
                                 convert_to_numpy=True)
        return RerankScores.from_raw(np.atleast_1d(np.asarray(raw, dtype=np.float32)))


class PhoRankerReranker(CrossEncoderReranker):
    """itdainb/PhoRanker through ``CrossEncoder`` (max_length 256, raw logits) on word-segmented text.

    PhoBERT and PhoRanker were trained on VnCoreNLP's segmentation (case kept, punctuation kept as tokens); we
    segment with underthesea via ``indexing.normalize.words`` (lower-cased, punctuation dropped), so some
    inputs are segmented differently from training: a known mismatch that can cost a little accuracy.
    ``segmenter`` overrides it (str -> segmented str).
    """

    def __init__(self, path: Path, name: str = "phoranker", max_length: int = 256, batch_size: int = 32,
                 segmenter: Callable[[str], str] | None = None, **kw: Any) -> None:
        super().__init__(path, name, max_length=max_length, batch_size=batch_size,
                         segmenter=segmenter or _default_segmenter(), **kw)


def load_reranker(name: str, path: str | os.PathLike | None = None, **kw: Any) -> Reranker:
    """Build the reranker called ``name`` (see :data:`SPECS`). Raises ModelUnavailable (missing or broken
    weights) or ValueError (unknown name). ``kw`` goes to the backend (batch_size, max_length, ...)."""
    model_dir = resolve_model_path(name, path)
    try:
        if name == "viranker":
            return ViRankerReranker(model_dir, name=name, **kw)
        if name == "phoranker":
            return PhoRankerReranker(model_dir, name=name, **kw)
        return CrossEncoderReranker(model_dir, name=name, **kw)
    except ModelUnavailable:  # incl. DependencyUnavailable: a package, not the weights
        raise
    except ImportError as e:  # a package the backend needs is missing or broken: say so, not "weights"
        from indexing.deps import module_distribution

        raise dependency_unavailable(name, module_distribution(e.name), e) from e
    except Exception as e:  # corrupt / incompatible files: report, never crash the caller
        raise _unavailable(name, f"loading {model_dir} failed: {type(e).__name__}: {e}",
                           f"check that {model_dir} holds a complete {SPECS[name].description}",
                           UnavailableReason.LOAD_FAILED) from e


def recommended_by_default(name: str) -> bool:
    """Whether ``name``'s weights may be the app's default reranker: False when they are missing, or when a
    ViRanker model dir's ``inference.json`` says ``"use_by_default": false`` (it did not beat the first stage
    on held-out data). Loads no weights."""
    try:
        path = resolve_model_path(name)
    except (ModelUnavailable, ValueError):
        return False
    if SPECS[name].kind != "viranker":
        return True
    from reranker.inference import read_inference_settings

    try:
        return bool(read_inference_settings(path).get("use_by_default", True))
    except (ValueError, OSError):
        return False


def reranker_status(name: str) -> RerankerStatus:
    """The status of the known reranker ``name`` without loading weights: available (with its dir) or
    unavailable (with the :class:`UnavailableReason` of :func:`resolve_model_path`'s failure)."""
    try:
        return RerankerStatus.available(resolve_model_path(name))
    except ModelUnavailable as e:
        return RerankerStatus.unavailable(e)


def available_rerankers() -> dict[str, RerankerStatus]:
    """``{name: status}`` for every known reranker (:func:`reranker_status`; each also reads as the str
    "available: <dir>" | "unavailable: <reason>. <how to fix>"), without loading any weights."""
    return {name: reranker_status(name) for name in SPECS}
