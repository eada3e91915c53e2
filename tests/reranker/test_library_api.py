"""The reranker as a library: CrossEncoder-style predict/rank and FlagReranker-style compute_score on the shipped
model dir, the dir's own (pruned) tokenizer and Hugging Face keys, stock loading with trust_remote_code, the
model card, and the calibration that makes ``normalized`` readable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reranker_fixtures import *  # noqa: F403

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "models" / "viranker-small"
QUERY = "thủ đô của việt nam là gì"
DOCS = [
    "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.",
    "Tôi thích ăn phở bò vào buổi sáng ở Sài Gòn.",
    "Đại học Bách khoa Hà Nội được thành lập năm 1956.",
]


@pytest.fixture(scope="module")
def shipped_fp32():
    from reranker.api import ViRankerCrossEncoder

    return ViRankerCrossEncoder.from_pretrained(SHIPPED, quantize=False)


def test_predict_and_rank_equal_the_scorer_on_the_shipped_dir(shipped_fp32):
    from reranker.api import ViRankerCrossEncoder
    from reranker.inference import ViRankerScorer

    ref = ViRankerScorer.from_pretrained(SHIPPED, quantize=False).score(QUERY, DOCS)
    got = shipped_fp32.predict([(QUERY, d) for d in DOCS], batch_size=2)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert isinstance(shipped_fp32.predict((QUERY, DOCS[0])), float)

    ranked = shipped_fp32.rank(QUERY, DOCS, top_k=2, return_documents=True)
    order = list(np.argsort(-ref, kind="stable")[:2])
    assert [r["corpus_id"] for r in ranked] == order
    assert [r["text"] for r in ranked] == [DOCS[i] for i in order]
    np.testing.assert_allclose([r["score"] for r in ranked], ref[order], rtol=1e-5)
    assert set(shipped_fp32.rank(QUERY, DOCS)[0]) == {"corpus_id", "score"}
    assert shipped_fp32.rank(QUERY, []) == []

    # as shipped (inference.json: layer 3, int8): the same numbers the app's scorer gives
    shipped = ViRankerCrossEncoder(SHIPPED)
    np.testing.assert_allclose(shipped.predict([(QUERY, d) for d in DOCS]),
                               ViRankerScorer.from_pretrained(SHIPPED).score_pairs([QUERY] * 3, DOCS), rtol=1e-6)


def test_compute_score_normalize_applies_the_calibration(shipped_fp32):
    from reranker.backends import sigmoid

    raw = shipped_fp32.compute_score([[QUERY, d] for d in DOCS])
    assert isinstance(raw, list) and len(raw) == 3
    cal = shipped_fp32.calibration
    assert cal is not None and cal.meta["scorer"]["exit_layer"] == 3  # fitted for the shipped head
    probs = shipped_fp32.compute_score([[QUERY, d] for d in DOCS], normalize=True)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-(cal.a * np.asarray(raw) + cal.b))), rtol=1e-5)
    assert max(probs) < 0.999 and min(sigmoid(np.asarray(raw))) > 0.999  # readable, not all 1.000
    assert isinstance(shipped_fp32.compute_score((QUERY, DOCS[0]), normalize=True), float)


def test_calibration_only_for_the_head_it_was_fitted_on(tmp_path, xlmr_tokenizer):
    """(The shipped dir has one head since it was truncated to its serving depth: a tiny two-head dir here.)"""
    import torch

    from reranker.api import ViRankerCrossEncoder
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model
    from reranker.vocab import collect_token_ids, prune_vocab

    torch.manual_seed(0)
    model = create_model(ViRankerConfig(vocab_size=250037, hidden_size=32, num_layers=2, num_heads=4,
                                        intermediate_size=64, exit_layers=(1,), max_query_length=16,
                                        max_length=64)).eval()
    pruned, vmap = prune_vocab(model, collect_token_ids(xlmr_tokenizer, [QUERY, *DOCS]))
    d = pruned.save_pretrained(tmp_path / "m", tokenizer=xlmr_tokenizer, vocab_map=vmap)
    cal = {"kind": "platt", "a": 0.5, "b": -1.0, "meta": {"scorer": {"exit_layer": 1, "quantize": False}}}
    (d / "inference.json").write_text(json.dumps({"exit_layer": 1, "calibration": cal}), encoding="utf-8")
    assert ViRankerCrossEncoder(d).calibration is not None  # the head it was fitted on
    full_depth = ViRankerCrossEncoder(d, exit_layer=None)
    assert full_depth.calibration is None  # another head's logits: plain sigmoid
    np.testing.assert_allclose(full_depth.normalize([0.0, 2.0]), [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)


def test_full_depth_of_the_truncated_shipped_dir_keeps_its_calibration():
    """Truncated to its served exit, the shipped model's last layer is layer 3: ``exit_layer=None`` scores with the
    same head, so the calibration fitted on layer 3 applies (``served_layer``, not the literal None)."""
    from reranker.api import ViRankerCrossEncoder

    full = ViRankerCrossEncoder(SHIPPED, exit_layer=None)
    assert full.scorer.served_layer == 3
    assert full.calibration is not None
    np.testing.assert_allclose(full.predict([(QUERY, DOCS[0])]), ViRankerCrossEncoder(SHIPPED).predict([(QUERY, DOCS[0])]),
                               rtol=1e-6)


def test_backend_normalized_scores_use_the_calibration(monkeypatch):
    from reranker.backends import load_reranker

    monkeypatch.delenv("VIRANKER_MODEL", raising=False)
    r = load_reranker("viranker", path=SHIPPED)
    out = r.rerank(QUERY, DOCS)
    np.testing.assert_allclose(out.normalized, r.calibration(out.raw), rtol=1e-6)
    assert float(out.normalized.max()) < 0.999


def test_shipped_dir_carries_its_tokenizer_and_hf_keys(xlmr_tokenizer):
    from transformers import AutoTokenizer

    from reranker.vocab import VocabMap

    cfg = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    assert cfg["model_type"] == "viranker" and cfg["architectures"] == ["ViRankerForSequenceClassification"]
    assert cfg["pooling"] == "pair" and cfg["rope"] is True  # the custom keys stay
    for f in cfg["auto_map"].values():
        assert (SHIPPED / (f.split(".")[0] + ".py")).is_file()
    size = (SHIPPED / "tokenizer.json").stat().st_size
    assert size < 5_000_000  # the pruned vocabulary, not XLM-R's 17 MB
    tok = AutoTokenizer.from_pretrained(str(SHIPPED))
    assert len(tok) == cfg["vocab_size"]
    vmap = VocabMap.load(SHIPPED)
    for text in [QUERY, *DOCS, *VI_TEXTS]:  # noqa: F405
        full = xlmr_tokenizer(QUERY, text)["input_ids"]
        assert tok(QUERY, text)["input_ids"] == vmap.apply(full).tolist()


@pytest.mark.slow
def test_stock_crossencoder_with_trust_remote_code_scores_like_ours(shipped_fp32):
    from sentence_transformers import CrossEncoder

    from reranker.inference import ViRankerScorer

    ce = CrossEncoder(str(SHIPPED), trust_remote_code=True, device="cpu", local_files_only=True)
    ours = ViRankerScorer.from_pretrained(SHIPPED, quantize=False, exit_layer=None).score(QUERY, DOCS)
    np.testing.assert_allclose(ce.predict([(QUERY, d) for d in DOCS]), ours, rtol=1e-4, atol=1e-4)


def test_model_card_metadata():
    text = (SHIPPED / "README.md").read_text(encoding="utf-8")
    head = text.split("---")[1]
    for key in ("library_name:", "pipeline_tag: text-ranking", "base_model: intfloat/multilingual-e5-small",
                "language: vi"):
        assert key in head, key
    assert "0.846" in text and "0.9288" in text  # held-back numbers from docs/benchmarks.md
    assert "ViRankerCrossEncoder" in text and "trust_remote_code" in text


def test_save_pretrained_writes_a_self_contained_pruned_dir(tmp_path, xlmr_tokenizer):
    """A pruned dir written now carries its pruned tokenizer: scores equal the full tokenizer + vocab map."""
    import torch

    from reranker.config import ViRankerConfig
    from reranker.factory import create_model
    from reranker.inference import ViRankerScorer
    from reranker.vocab import collect_token_ids, prune_vocab

    torch.manual_seed(0)
    model = create_model(ViRankerConfig(vocab_size=250037, hidden_size=32, num_layers=2, num_heads=4,
                                        intermediate_size=64, dropout=0.0, attention_dropout=0.0,
                                        max_query_length=16, max_length=64)).eval()
    pruned, vmap = prune_vocab(model, collect_token_ids(xlmr_tokenizer, [QUERY, *DOCS]))
    d = pruned.save_pretrained(tmp_path / "m", tokenizer=xlmr_tokenizer, vocab_map=vmap)
    assert (d / "tokenizer.json").stat().st_size < 1_000_000  # ~0.3 MB: the normalizer table, a few pieces
    own = ViRankerScorer.from_pretrained(d)
    assert not own.remap_ids
    via_map = ViRankerScorer(pruned, xlmr_tokenizer, vmap)
    np.testing.assert_array_equal(own.score(QUERY, DOCS), via_map.score(QUERY, DOCS))
    shutil.rmtree(d)
