"""Rerank backends on tiny local models, fast inference, vocabulary pruning, ModelUnavailable."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from reranker import backends
from reranker.backends import ModelUnavailable, RerankScores, available_rerankers, load_reranker, sigmoid
from reranker.config import ViRankerConfig
from reranker.inference import ViRankerScorer, passage_windows
from reranker.model import ViRanker, export_hf_classifier
from reranker.tokenizer import encode_pairs
from reranker.vocab import VocabMap, collect_token_ids, prune_vocab
from tests.reranker_fixtures import *  # noqa: F403
from tests.reranker_fixtures import VI_TEXTS

QUERY = "Thủ đô của Việt Nam là thành phố nào?"
PASSAGES = VI_TEXTS + ["Thủ đô Hà Nội có hơn tám triệu dân và nhiều hồ nước."]
TINY = dict(vocab_size=250002, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64,
            max_position_embeddings=258, type_vocab_size=1, dropout=0.0, attention_dropout=0.0,
            attn_block_size=16, ffn_chunk_size=16, max_query_length=16, max_length=64)


def _tiny_viranker(**kw) -> ViRanker:
    torch.manual_seed(0)
    model = ViRanker(ViRankerConfig(**{**TINY, **kw})).eval()
    with torch.no_grad():  # larger weights so scores spread out (a mix-up between pairs would show)
        for name, p in model.named_parameters():
            if p.dim() == 2 and not name.startswith("embeddings"):
                p.mul_(10.0)
    return model


def _direct_scores(model: ViRanker, tok, query: str, passages: list[str], vocab_map=None, **kw) -> np.ndarray:
    b = encode_pairs(tok, [query] * len(passages), passages, model.config.max_query_length,
                     model.config.max_length, vocab_map=vocab_map)
    with torch.no_grad():
        return model.set_attention_impl("bpt")(b["input_ids"], b["attention_mask"], **kw).numpy()


@pytest.fixture(scope="module")
def tiny_viranker():
    return _tiny_viranker(exit_layers=(1,))


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, tiny_viranker, xlmr_tokenizer):
    """A vocab-pruned tiny ViRanker saved with tokenizer + vocab map."""
    kept = collect_token_ids(xlmr_tokenizer, [QUERY, *PASSAGES])
    pruned, vmap = prune_vocab(tiny_viranker, kept)
    d = tmp_path_factory.mktemp("viranker-pruned")
    pruned.save_pretrained(d, tokenizer=xlmr_tokenizer, vocab_map=vmap)
    return d


# ---------------------------------------------------------------- scores / sigmoid
def test_rerank_scores_and_sigmoid():
    s = RerankScores.from_raw([0.0, 2.0, -1000.0, 1000.0])
    np.testing.assert_allclose(s.normalized, [0.5, 1 / (1 + np.exp(-2)), 0.0, 1.0], rtol=1e-6)
    assert s.raw.dtype == np.float32 and np.isfinite(sigmoid(np.array([-1e6, 1e6]))).all()


# ---------------------------------------------------------------- vocabulary pruning
def test_vocab_pruning_scores_exactly_like_unpruned(tiny_viranker, xlmr_tokenizer, tmp_path):
    kept = collect_token_ids(xlmr_tokenizer, [QUERY, *PASSAGES])
    pruned, vmap = prune_vocab(tiny_viranker, kept)
    assert pruned.config.vocab_size == vmap.new_vocab_size < 500
    assert tiny_viranker.config.vocab_size == 250002  # original untouched
    full = _direct_scores(tiny_viranker, xlmr_tokenizer, QUERY, PASSAGES)
    small = _direct_scores(pruned, xlmr_tokenizer, QUERY, PASSAGES, vocab_map=vmap)
    np.testing.assert_array_equal(full, small)
    # unknown tokens become <unk>
    oov = xlmr_tokenizer("ελληνικά 日本語", add_special_tokens=False)["input_ids"]
    assert vmap.apply(oov).eq(3).all() and vmap.coverage(oov) == 0.0
    assert vmap.apply([0, 1, 2, 3]).tolist() == [0, 1, 2, 3]
    # save / load of the map
    pruned.save_pretrained(tmp_path, vocab_map=vmap)
    again = VocabMap.load(tmp_path)
    assert torch.equal(again.old_to_new, vmap.old_to_new)
    assert VocabMap.load(tmp_path / "nope") is None
    with pytest.raises(ValueError):
        vmap.apply([250002])


# ---------------------------------------------------------------- fast inference
def test_passage_windows_cover_everything():
    ids = list(range(100))
    w = passage_windows(ids, room=30, overlap=10)
    assert all(len(x) == 30 for x in w) and w[0][0] == 0 and w[-1][-1] == 99
    assert set().union(*map(set, w)) == set(ids)
    assert passage_windows(ids[:20], room=30, overlap=10) == [ids[:20]]


def test_scorer_matches_direct_model_and_is_batch_invariant(tiny_viranker, xlmr_tokenizer):
    ref = _direct_scores(tiny_viranker, xlmr_tokenizer, QUERY, PASSAGES)
    for bs in (1, 2, 16):
        sc = ViRankerScorer(tiny_viranker, xlmr_tokenizer, batch_size=bs, long_passages="truncate")
        np.testing.assert_allclose(sc.score(QUERY, PASSAGES), ref, rtol=1e-5, atol=1e-5)
    pairs = sc.score_pairs([QUERY, "câu khác"], PASSAGES[:2])
    np.testing.assert_allclose(pairs[0], ref[0], rtol=1e-5, atol=1e-5)
    assert sc.score(QUERY, []).shape == (0,)
    with pytest.raises(TypeError):
        sc.score(QUERY, "một chuỗi")
    # early exit goes through the layer-1 head
    early = ViRankerScorer(tiny_viranker, xlmr_tokenizer, exit_layer=1, long_passages="truncate")
    np.testing.assert_allclose(early.score(QUERY, PASSAGES),
                               _direct_scores(tiny_viranker, xlmr_tokenizer, QUERY, PASSAGES, exit_layer=1),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        ViRankerScorer(tiny_viranker, xlmr_tokenizer, exit_layer=2)


def test_long_passage_windows_take_the_max(tiny_viranker, xlmr_tokenizer):
    long_p = " ".join(PASSAGES * 6)  # far longer than max_length=64
    sc = ViRankerScorer(tiny_viranker, xlmr_tokenizer, long_passages="windows", window_overlap=8)
    got = sc.score(QUERY, [long_p, PASSAGES[0]])
    q = xlmr_tokenizer(QUERY, add_special_tokens=False)["input_ids"][:16]
    p = xlmr_tokenizer(long_p, add_special_tokens=False)["input_ids"]
    room = 64 - len(q) - 4
    wins = passage_windows(p, room, 8)
    assert len(wins) > 3
    seqs = [[0, *q, 2, 2, *w, 2] for w in wins]
    with torch.no_grad():
        per_window = tiny_viranker(torch.tensor(seqs), torch.ones(len(seqs), len(seqs[0]), dtype=torch.long))
    np.testing.assert_allclose(got[0], per_window.max().item(), rtol=1e-5, atol=1e-5)
    trunc = ViRankerScorer(tiny_viranker, xlmr_tokenizer, long_passages="truncate").score(QUERY, [long_p])
    np.testing.assert_allclose(trunc[0], per_window[0].item(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_int8_quantized_scorer_is_close(e5_absolute_model, xlmr_tokenizer):
    """int8 dynamic quantization keeps e5's representations (real weights; a random tiny model is noise)."""
    from reranker.inference import quantize_int8
    from reranker.tokenizer import encode_pairs as enc

    q8 = quantize_int8(e5_absolute_model)
    assert isinstance(e5_absolute_model.layers[0].attn.qkv, torch.nn.Linear)  # the original is untouched
    assert not isinstance(q8.layers[0].attn.qkv, torch.nn.Linear)
    b = enc(xlmr_tokenizer, [QUERY] * len(PASSAGES), PASSAGES)
    with torch.inference_mode():
        h32 = e5_absolute_model.set_attention_impl("sdpa").forward_hidden(b["input_ids"], b["attention_mask"])
        h8 = q8.set_attention_impl("sdpa").forward_hidden(b["input_ids"], b["attention_mask"])
    cls_cos = torch.nn.functional.cosine_similarity(h32[:, 0], h8[:, 0], dim=-1)
    assert cls_cos.min() > 0.98, cls_cos
    assert not torch.equal(h32, h8)
    sc = ViRankerScorer(e5_absolute_model, xlmr_tokenizer, quantize=True)
    fp = ViRankerScorer(e5_absolute_model, xlmr_tokenizer).score(QUERY, PASSAGES)
    np.testing.assert_allclose(sc.score(QUERY, PASSAGES), fp, atol=0.05 + 0.05 * float(np.abs(fp).max()))


# ---------------------------------------------------------------- backends on tiny local models
def test_viranker_backend_loads_pruned_dir(pruned_dir, tiny_viranker, xlmr_tokenizer, monkeypatch):
    monkeypatch.delenv("VIRANKER_MODEL", raising=False)
    r = load_reranker("viranker", path=pruned_dir)
    assert r.name == "viranker"
    out = r.rerank(QUERY, PASSAGES)
    ref = _direct_scores(tiny_viranker, xlmr_tokenizer, QUERY, PASSAGES)  # unpruned, no long passages here
    np.testing.assert_allclose(out.raw, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.normalized, sigmoid(out.raw))
    monkeypatch.setenv("VIRANKER_MODEL", str(pruned_dir))
    np.testing.assert_allclose(load_reranker("viranker").rerank(QUERY, PASSAGES).raw, out.raw)
    assert isinstance(r, backends.Reranker)


def test_inference_json_sets_scorer_defaults_and_blend(pruned_dir, tmp_path, monkeypatch):
    import json
    import shutil

    monkeypatch.delenv("VIRANKER_MODEL", raising=False)
    d = tmp_path / "with-settings"
    shutil.copytree(pruned_dir, d)
    (d / "inference.json").write_text(json.dumps(
        {"exit_layer": 1, "long_passages": "truncate", "rerank_blend": 0.4, "note": "measured on dev"}))
    r = load_reranker("viranker", path=d)
    assert r.scorer.exit_layer == 1 and r.scorer.long_passages == "truncate" and r.blend == 0.4
    full = load_reranker("viranker", path=pruned_dir)
    assert full.blend is None and full.scorer.exit_layer is None
    exit1 = ViRankerScorer.from_pretrained(pruned_dir, exit_layer=1, long_passages="truncate")
    np.testing.assert_allclose(r.rerank(QUERY, PASSAGES).raw, exit1.score(QUERY, PASSAGES), rtol=1e-6)
    assert ViRankerScorer.from_pretrained(d, exit_layer=None).exit_layer is None  # explicit arguments win
    monkeypatch.setenv("VIRANKER_MODEL", str(d))
    assert backends.recommended_by_default("viranker")  # no use_by_default key: recommended
    (d / "inference.json").write_text(json.dumps({"rerank_blend": 0.3, "use_by_default": False}))
    assert not backends.recommended_by_default("viranker")
    assert load_reranker("viranker").blend == 0.3  # still usable on request
    monkeypatch.setenv("VIRANKER_MODEL", str(tmp_path / "missing"))
    assert not backends.recommended_by_default("viranker")
    monkeypatch.delenv("VIRANKER_MODEL")
    (d / "inference.json").write_text(json.dumps({"exit_layr": 1}))
    with pytest.raises(backends.ModelUnavailable, match="unknown keys"):  # a typo is reported, not ignored
        load_reranker("viranker", path=d)
    (d / "inference.json").write_text(json.dumps({"rerank_blend": 2}))
    with pytest.raises(backends.ModelUnavailable, match="rerank_blend"):
        load_reranker("viranker", path=d)


@pytest.mark.slow
@pytest.mark.parametrize("name,env", [("viranker-hf", "VIRANKER_HF_PATH"), ("bge-reranker-v2-m3", "BGE_RERANKER_PATH")])
def test_classifier_backends_score_our_exported_weights_identically(name, env, xlmr_tokenizer, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    model = _tiny_viranker(rope=False, head_activation="tanh")
    hf_dir = export_hf_classifier(model, tmp_path / "hf", tokenizer=xlmr_tokenizer)
    monkeypatch.setenv(env, str(hf_dir))
    r = load_reranker(name)
    assert isinstance(r, backends.CrossEncoderReranker)
    out = r.rerank(QUERY, PASSAGES)
    ours = _direct_scores(model, xlmr_tokenizer, QUERY, PASSAGES)
    np.testing.assert_allclose(out.raw, ours, rtol=1e-4, atol=1e-4)
    assert out.raw.std() > 1e-3  # scores are not all alike
    assert r.rerank(QUERY, []).raw.shape == (0,)
    assert r.rerank(QUERY, PASSAGES[:1]).raw.shape == (1,)
    # what FlagReranker computes: the classifier's logit on the pair truncated to max_length (passage first)
    long_passage = " ".join(PASSAGES * 40)
    hf = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
    batch = xlmr_tokenizer([QUERY, QUERY], [PASSAGES[0], long_passage], truncation="only_second",
                           max_length=r.max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = hf(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(r.rerank(QUERY, [PASSAGES[0], long_passage]).raw, want, rtol=1e-4, atol=1e-4)


def test_a_package_that_does_not_import_is_named_not_the_weights(xlmr_tokenizer, tmp_path, monkeypatch):
    """sentence-transformers missing/broken -> DependencyUnavailable naming the package and the lock, not
    "check that <dir> holds a complete ..." (the weights are fine)."""
    import sys

    hf_dir = export_hf_classifier(_tiny_viranker(rope=False, head_activation="tanh"), tmp_path / "hf",
                                  tokenizer=xlmr_tokenizer)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import raises ImportError
    with pytest.raises(backends.DependencyUnavailable) as e:
        load_reranker("bge-reranker-v2-m3", path=hf_dir)
    assert isinstance(e.value, ModelUnavailable)  # callers that list unavailable models keep working
    assert "sentence-transformers" in e.value.reason and "constraints.txt" in e.value.how_to_fix
    assert "holds a complete" not in str(e.value)


def _word_level_phobert_dir(path, texts: list[str]):
    """A tiny RoBERTa classifier with a word-level (underscore-segmented) tokenizer, like PhoBERT's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for t in texts:
        for w in t.split():
            vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", cls_token="<s>", sep_token="</s>", model_max_length=256)
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=260, pad_token_id=1, num_labels=1,
                        type_vocab_size=1)
    model = RobertaForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok, vocab


def _fake_hf_cache(cache, repo_id: str, files_from):
    """Lay a model dir out as a Hugging Face hub cache snapshot (models--org--name/snapshots/<rev>/)."""
    import shutil

    rev = "0" * 40
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(rev)
    shutil.copytree(files_from, root / "snapshots" / rev)
    return root / "snapshots" / rev


def test_phoranker_backend_segments_and_resolves_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from indexing.normalize import words

    seg = [" ".join(words(t)) for t in [QUERY, *PASSAGES]]
    src = tmp_path / "phoranker-src"
    model, tok, vocab = _word_level_phobert_dir(src, seg)
    assert "hà_nội" in vocab  # the tokenizer really is word-level on segmented words
    cache = tmp_path / "hub"
    _fake_hf_cache(cache, "itdainb/PhoRanker", src)
    monkeypatch.delenv("PHORANKER_PATH", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    r = load_reranker("phoranker")  # found in the (fake) local HF cache, no network
    out = r.rerank(QUERY, PASSAGES)
    b = tok([seg[0]] * len(PASSAGES), seg[1:], padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert not b["input_ids"].eq(3).any()  # every segmented word is in the vocab
    with torch.no_grad():
        ref = model(**b).logits.squeeze(-1).numpy()
    np.testing.assert_allclose(out.raw, ref, rtol=1e-4, atol=1e-4)
    # a custom segmenter is used when given (unsegmented input -> <unk>s -> different scores)
    seen = []
    r2 = load_reranker("phoranker", path=src, segmenter=lambda t: seen.append(t) or t)
    raw2 = r2.rerank(QUERY, PASSAGES).raw
    assert seen[0] == QUERY and not np.allclose(raw2, out.raw)


# ---------------------------------------------------------------- missing models
def test_missing_models_raise_model_unavailable_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(backends, "DEFAULT_VIRANKER_DIR", tmp_path / "no-model")
    for spec in backends.SPECS.values():
        monkeypatch.delenv(spec.env, raising=False)
    t0 = time.monotonic()
    for name, env in [("viranker", "VIRANKER_MODEL"), ("phoranker", "PHORANKER_PATH"),
                      ("bge-reranker-v2-m3", "BGE_RERANKER_PATH"), ("viranker-hf", "VIRANKER_HF_PATH")]:
        with pytest.raises(ModelUnavailable) as e:
            load_reranker(name)
        assert e.value.name == name and env in e.value.how_to_fix
    assert time.monotonic() - t0 < 5.0
    status = available_rerankers()
    assert set(status) == set(backends.SPECS) and all(s.startswith("unavailable") for s in status.values())
    # broken dirs: not a dir, no config, no weights, unreadable weights
    with pytest.raises(ModelUnavailable, match="not a directory"):
        load_reranker("viranker-hf", path=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no config.json"):
        load_reranker("viranker", path=tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(ViRankerConfig(**TINY).to_dict()))
    with pytest.raises(ModelUnavailable, match="no weights"):
        load_reranker("viranker", path=tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailable, match="loading"):
        load_reranker("viranker", path=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown reranker"):
        load_reranker("nope")


def test_available_rerankers_reports_found_models(pruned_dir, monkeypatch):
    monkeypatch.setenv("VIRANKER_MODEL", str(pruned_dir))
    assert available_rerankers()["viranker"] == f"available: {pruned_dir}"
