"""Fast CPU scoring with a ViRanker model.

Where the speed comes from (all exact in fp32 except the optional int8 path):

* the query is tokenized once per call, passages in one batched tokenizer call;
* pairs are sorted by length and batched with dynamic padding (little compute is spent on padding);
* ``torch.inference_mode`` and the fused SDPA attention kernel (BPT is for long-sequence memory, not
  needed at rerank lengths); a batch without padding runs without a mask;
* packing (``pack=True``): projections, FFN and LayerNorms run on the real tokens only (the FFN in
  cache-sized row blocks), and SDPA attends one sequence at a time on views of the packed projections (no
  padding, no mask); with a first-token head the last layer computes only the first token (all it reads);
* an early-exit layer (``exit_layer``) stops the encoder early (the speed/quality dial);
* optional int8 dynamic quantization of every ``nn.Linear`` (``quantize=True``; approximate);
* ``num_threads`` sets ``torch.set_num_threads`` (process-wide).

Recommended settings travel with a model: an optional ``inference.json`` in the model dir (written when a model
is shipped, from measured quality and speed) gives defaults for the keys in :data:`INFERENCE_KEYS` (e.g.
``{"exit_layer": 3, "long_passages": "truncate"}``) plus ``rerank_blend``, the weight the search pipeline gives
this reranker against the first stage; arguments passed to :meth:`ViRankerScorer.from_pretrained` win.

Long passages: with ``long_passages="windows"`` a passage that does not fit next to the query is scored in
overlapping windows and the pair keeps its maximum window logit; ``"truncate"`` keeps the head only (what a
stock cross-encoder does).

Both architectures (``config.architecture``, the model from :func:`reranker.factory.load_model`) are scored the
same way; for ``"gated"`` each input is ``<s> query: q </s><s> passage: p </s>`` (every window gets the
``passage:`` prefix again), the default for long passages is ``"truncate"`` (the head of the passage, as e5 sees
it; max over windows favours long passages, docs/benchmarks.md §3 finding 3) and ``pack`` has no effect (the
gated model never pads inside a segment's attention anyway). ``quantize`` works for both (approximate).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reranker.factory import RerankerModel, load_model
from reranker.tokenizer import (
    E5_MAX_CONTENT,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    build_pair,
    build_segment_pair,
    collate,
    load_tokenizer,
    tokenize_segments,
    tokenize_texts,
)
from reranker.vocab import VocabMap, tokenizer_emits_model_ids

INFERENCE_NAME = "inference.json"
INFERENCE_KEYS = ("exit_layer", "long_passages", "max_length", "max_query_length", "window_overlap", "quantize",
                  "batch_size")


def read_inference_settings(model_dir: str | Path) -> dict[str, Any]:
    """``inference.json`` of a model dir → dict ({} when absent). Unknown keys are an error (a typo must not
    silently change how a model runs); ``rerank_blend``, ``use_by_default`` (False: the app does not make this
    model its default pipeline, e.g. because it did not beat the first stage on held-out data), ``note`` and
    ``learned_blend`` (a LightGBM blend in the model dir, read by :mod:`search.blend`) ``calibration`` (Platt
    parameters, :mod:`reranker.calibration`; checked here) and ``backend`` ("torch" | "onnx", read by
    :class:`reranker.backends.ViRankerReranker`) are allowed besides :data:`INFERENCE_KEYS`."""
    import json

    path = Path(model_dir) / INFERENCE_NAME
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - set(INFERENCE_KEYS) - {"rerank_blend", "use_by_default", "note", "learned_blend",
                                                          "calibration", "backend"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}")
    if "calibration" in data:
        from reranker.calibration import read_calibration

        read_calibration(data)  # CalibrationError (a ValueError) when malformed
    blend = data.get("rerank_blend")
    if blend is not None and not 0.0 <= float(blend) <= 1.0:
        raise ValueError(f"{path}: rerank_blend must be in [0, 1], got {blend}")
    return data


def quantize_int8(model: nn.Module) -> nn.Module:
    """int8 dynamic quantization of every nn.Linear (weights int8, activations quantized per batch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def passage_windows(p_ids: Sequence[int], room: int, overlap: int) -> list[Sequence[int]]:
    """Split passage ids into windows of ``room`` tokens overlapping by ``overlap`` (last one flush right)."""
    if len(p_ids) <= room:
        return [p_ids]
    stride = max(1, room - overlap)
    starts = list(range(0, len(p_ids) - room, stride)) + [len(p_ids) - room]
    return [p_ids[s : s + room] for s in starts]


class ViRankerScorer:
    """Scores (query, passage) pairs with a ViRanker model of either architecture; returns raw logits as
    float32 numpy."""

    def __init__(
        self,
        model: RerankerModel,
        tokenizer: Any,
        vocab_map: VocabMap | None = None,
        *,
        batch_size: int = 32,
        max_query_length: int | None = None,
        max_length: int | None = None,
        long_passages: str | None = None,  # None: "windows" for "joint", "truncate" for "gated"
        window_overlap: int = 32,
        exit_layer: int | None = None,
        attn_impl: str = "sdpa",
        pack: bool = True,
        quantize: bool = False,
        num_threads: int | None = None,
    ) -> None:
        cfg = model.config
        self.gated = cfg.architecture == "gated"
        if long_passages is None:
            long_passages = "truncate" if self.gated else "windows"
        if long_passages not in ("windows", "truncate"):
            raise ValueError(f"long_passages must be 'windows' or 'truncate', got {long_passages!r}")
        if exit_layer is not None and exit_layer not in cfg.all_exit_layers:
            raise ValueError(f"exit_layer {exit_layer} has no head; choose one of {cfg.all_exit_layers}")
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.tokenizer = tokenizer
        self.vocab_map = vocab_map
        # ids go through the map only when the tokenizer is the full one (a pruned dir's own tokenizer emits
        # the model's ids already: reranker.vocab.prune_tokenizer_json)
        self.remap_ids = not tokenizer_emits_model_ids(tokenizer, vocab_map, cfg.vocab_size)
        self.batch_size = int(batch_size)
        self.max_query_length = int(max_query_length or cfg.max_query_length)
        self.max_length = int(max_length or cfg.max_length)
        self.long_passages = long_passages
        self.window_overlap = int(window_overlap)
        self.exit_layer = exit_layer
        # the layer whose head scores: exit_layer, or the last layer (what a calibration is keyed on)
        self.served_layer = int(exit_layer) if exit_layer is not None else int(cfg.num_layers)
        if attn_impl not in ("bpt", "sdpa", "eager"):
            raise ValueError(f"unknown attention impl {attn_impl!r}")
        self.attn_impl, self.pack = attn_impl, bool(pack)
        self.model = quantize_int8(model.eval()) if quantize else model.eval()
        self.settings: dict[str, Any] = {}
        self.device = next(model.parameters()).device if not quantize else torch.device("cpu")

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, tokenizer_path: str | Path | None = None, **kw: Any):
        """Load model, tokenizer (the dir's tokenizer.json if present, else the bundled XLM-R one) and
        the vocab map (if the model was pruned and the tokenizer is the full one) from a ``save_pretrained`` directory of either architecture; the dir's
        ``inference.json`` supplies defaults for ``kw`` (``settings`` keeps what was applied)."""
        model_dir = Path(model_dir)
        settings = read_inference_settings(model_dir)
        defaults = {k: settings[k] for k in INFERENCE_KEYS if k in settings}
        model = load_model(model_dir)
        if tokenizer_path is None and (model_dir / "tokenizer.json").is_file():
            tokenizer_path = model_dir
        # a pruned tokenizer has exactly the model's rows (a tiny test model: fewer than the usual 1000 floor)
        tokenizer = load_tokenizer(tokenizer_path, min_vocab_size=min(1000, model.config.vocab_size))
        scorer = cls(model, tokenizer, VocabMap.load(model_dir), **{**defaults, **kw})
        scorer.settings = {**settings, **kw}
        return scorer

    def _tokenize(self, texts: Sequence[str], is_query: bool) -> list[list[int]]:
        """Content ids: plain for "joint", with e5's ``query: `` / ``passage: `` prefix for "gated"."""
        if not self.gated:
            return tokenize_texts(self.tokenizer, texts)
        return tokenize_segments(self.tokenizer, texts, QUERY_PREFIX if is_query else PASSAGE_PREFIX)

    def _pair_sequences(self, q_ids: Sequence[int], p_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
        """All model inputs (windows included) and, for each, the index of its passage."""
        q_ids = q_ids[: self.max_query_length]
        seqs, owner = [], []
        if self.gated:
            prefix = tokenize_texts(self.tokenizer, [PASSAGE_PREFIX.strip()])[0]  # the "passage:" pieces
            room = min(self.max_length - len(q_ids) - 4, E5_MAX_CONTENT) - len(prefix)
            for i, p in enumerate(p_ids):
                body = p[len(prefix):] if list(p[: len(prefix)]) == prefix else p
                long = self.long_passages == "windows" and len(body) > room
                parts = [prefix + list(w) for w in passage_windows(body, room, self.window_overlap)] if long else [p]
                for part in parts:
                    seqs.append(build_segment_pair(q_ids, part, self.max_query_length, self.max_length))
                    owner.append(i)
            return seqs, owner
        room = self.max_length - len(q_ids) - 4
        for i, p in enumerate(p_ids):
            parts = passage_windows(p, room, self.window_overlap) if self.long_passages == "windows" else [p]
            for part in parts:
                seqs.append(build_pair(q_ids, part, self.max_query_length, self.max_length))
                owner.append(i)
        return seqs, owner

    @torch.inference_mode()
    def _score_sequences(self, seqs: list[list[int]]) -> np.ndarray:
        model = self.model
        saved = (model.attn_impl, model.pack_inputs)  # run-time switches; restored for other users
        model.set_attention_impl(self.attn_impl).set_packing(self.pack)
        try:
            order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
            out = np.empty(len(seqs), dtype=np.float32)
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                batch = collate([seqs[i] for i in idx])
                ids = batch["input_ids"]
                if self.remap_ids:
                    ids = self.vocab_map.apply(ids)
                logits = model(ids.to(self.device), batch["attention_mask"].to(self.device),
                               exit_layer=self.exit_layer)
                out[idx] = logits.float().cpu().numpy()
        finally:
            model.set_attention_impl(saved[0]).set_packing(saved[1])
        return out

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw logits (n,) for one query against ``passages`` (max over windows for long passages)."""
        if isinstance(passages, str):
            raise TypeError("passages must be a sequence of strings, not one str")
        if len(passages) == 0:
            return np.zeros(0, dtype=np.float32)
        q_ids = self._tokenize([query], True)[0]
        seqs, owner = self._pair_sequences(q_ids, self._tokenize(passages, False))
        window_scores = self._score_sequences(seqs)
        scores = np.full(len(passages), -np.inf, dtype=np.float32)
        np.maximum.at(scores, np.asarray(owner), window_scores)
        return scores

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Raw logits (n,) for aligned (query_i, passage_i) pairs; all pairs share one length-sorted queue."""
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries vs {len(passages)} passages")
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float32)
        uniq = list(dict.fromkeys(queries))
        q_ids = dict(zip(uniq, self._tokenize(uniq, True), strict=True))
        p_ids = self._tokenize(passages, False)
        seqs, owner = [], []
        for i, (q, p) in enumerate(zip(queries, p_ids, strict=True)):
            s, _ = self._pair_sequences(q_ids[q], [p])
            seqs.extend(s)
            owner.extend([i] * len(s))
        window_scores = self._score_sequences(seqs)
        scores = np.full(len(queries), -np.inf, dtype=np.float32)
        np.maximum.at(scores, np.asarray(owner), window_scores)
        return scores
