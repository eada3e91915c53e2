"""ONNX export of both architectures (RoPE included) scores like torch; the int8 graph ranks like fp32 and gives a
pair the same score alone or among others; the ``onnx`` backend of ViRankerCrossEncoder; the calibration fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reranker_fixtures import *  # noqa: F403

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

QUERY = "thủ đô của việt nam là gì"
DOCS = [
    "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.",
    "Tôi thích ăn phở bò vào buổi sáng ở Sài Gòn.",
    "Đại học Bách khoa Hà Nội được thành lập năm 1956. " * 6,  # long: windows (joint)
    "Sinh viên phải đóng học phí trước ngày 15 tháng 9 hằng năm.",
]


def _tiny(**kw):
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model

    torch.manual_seed(0)
    base = dict(vocab_size=250037, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64,
                exit_layers=(1,), dropout=0.0, attention_dropout=0.0, max_query_length=12, max_length=48)
    model = create_model(ViRankerConfig(**{**base, **kw})).eval()
    with torch.no_grad():  # spread-out scores (the gated model starts with closed gates and a zero MLP)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
        for name, p in model.named_parameters():
            if "cross_gate" in name:
                p.fill_(0.5)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("kw", [dict(pooling="pair"), dict(pooling="cls"), dict(rope=False, pooling="mean"),
                                dict(architecture="gated", max_position_embeddings=66)],
                         ids=["joint-rope-pair", "joint-rope-cls", "joint-abs-mean", "gated-cross-rope"])
def test_onnx_fp32_scores_equal_torch(kw, tmp_path, xlmr_tokenizer):
    from reranker.inference import ViRankerScorer
    from reranker.onnx_export import OnnxScorer, export_onnx

    model = _tiny(**kw)
    for exit_layer in (None, 1):
        ref = ViRankerScorer(model, xlmr_tokenizer, exit_layer=exit_layer, long_passages="windows").score(QUERY, DOCS)
        path = export_onnx(model, tmp_path / f"m{exit_layer}.onnx", exit_layer=exit_layer)
        got = OnnxScorer(model, xlmr_tokenizer, onnx_path=path, exit_layer=exit_layer,
                         long_passages="windows").score(QUERY, DOCS)
        assert np.abs(got - ref).max() < 1e-4, (exit_layer, got, ref)
        assert np.ptp(ref) > 0.1  # the comparison means something


def test_int8_graph_ranks_like_fp32_and_ignores_batch_neighbours(tmp_path, xlmr_tokenizer):
    from scipy.stats import spearmanr

    from reranker.onnx_export import OnnxScorer, export_onnx, quantize_int8

    model = _tiny(pooling="pair")
    fp32 = export_onnx(model, tmp_path / "m.onnx")
    int8 = quantize_int8(fp32, tmp_path / "m8.onnx")
    assert int8.stat().st_size < fp32.stat().st_size
    s32 = OnnxScorer(model, xlmr_tokenizer, onnx_path=fp32)
    s8 = OnnxScorer(model, xlmr_tokenizer, onnx_path=int8)
    queries = [QUERY, "học phí nộp khi nào", "phở bò ở đâu ngon"] * 4
    docs = (DOCS[:3] + [DOCS[3]]) * 3
    a, b = s32.score_pairs(queries, docs), s8.score_pairs(queries, docs)
    assert spearmanr(a, b).statistic > 0.95
    assert not np.array_equal(a, b)  # it really is another graph
    alone = np.array([s8.score_pairs([q], [d])[0] for q, d in zip(queries, docs, strict=True)])
    np.testing.assert_array_equal(alone, b)  # a pair's score does not depend on its neighbours


@pytest.mark.slow
def test_onnx_backend_of_the_library_api(tmp_path, monkeypatch, xlmr_tokenizer):
    from reranker.api import ViRankerCrossEncoder

    monkeypatch.setenv("VIRANKER_ONNX_CACHE", str(tmp_path / "cache"))
    d = _tiny(pooling="pair").save_pretrained(tmp_path / "m", tokenizer=xlmr_tokenizer)
    torch_ce = ViRankerCrossEncoder(d)
    onnx_ce = ViRankerCrossEncoder(d, backend="onnx")
    pairs = [(QUERY, x) for x in DOCS]
    np.testing.assert_allclose(onnx_ce.predict(pairs), torch_ce.predict(pairs), atol=1e-4)
    assert [r["corpus_id"] for r in onnx_ce.rank(QUERY, DOCS)] == [r["corpus_id"] for r in torch_ce.rank(QUERY, DOCS)]
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1  # exported once, cached
    ViRankerCrossEncoder(d, backend="onnx")
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1
    with pytest.raises(ValueError, match="backend"):
        ViRankerCrossEncoder(d, backend="tensorrt")

    from reranker.backends import load_reranker

    r = load_reranker("viranker", path=d, backend="onnx")
    np.testing.assert_allclose(r.rerank(QUERY, DOCS).raw, torch_ce.predict(pairs), atol=1e-4)


def test_platt_fit_reduces_log_loss_on_a_held_back_set():
    from reranker.calibration import CalibrationError, PlattCalibration, fit_platt, log_loss

    rng = np.random.default_rng(0)

    def draw(n):  # saturated logits (10-15, like the shipped model's) whose relevance follows a*s+b
        s = rng.uniform(8.0, 16.0, n)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.8 * s - 10.0)))).astype(int)
        return s, y

    s_fit, y_fit = draw(600)
    s_held, y_held = draw(600)
    cal = fit_platt(s_fit, y_fit, meta={"data": "synthetic"})
    sig = 1 / (1 + np.exp(-s_held))
    assert log_loss(cal(s_held), y_held) < 0.7 * log_loss(sig, y_held)
    assert abs(cal.a - 0.8) < 0.25 and abs(cal.b + 10.0) < 3.0
    assert cal.meta["data"] == "synthetic" and cal.meta["pairs"] == 600
    again = PlattCalibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(again(s_held), cal(s_held))
    with pytest.raises(CalibrationError):
        fit_platt(s_fit, np.zeros_like(y_fit))
    with pytest.raises(CalibrationError):
        PlattCalibration.from_dict({"kind": "platt", "a": -1.0, "b": 0.0})
