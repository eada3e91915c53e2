"""ViRanker model: attention variants agree, early exit, save/load, HF weight import/export."""

from __future__ import annotations

import os

import pytest
import torch

from reranker.config import ViRankerConfig
from reranker.model import (
    ViRanker,
    WeightMismatch,
    export_hf_classifier,
    load_encoder_weights,
    pair_segment_masks,
    to_hf_state_dict,
    xlmr_position_ids,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(vocab_size=120, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
            max_position_embeddings=66, type_vocab_size=2, attn_block_size=8, ffn_chunk_size=8,
            dropout=0.0, attention_dropout=0.0, max_query_length=8, max_length=64)


def _tiny(**kw) -> ViRanker:
    torch.manual_seed(0)
    return ViRanker(ViRankerConfig(**{**TINY, **kw})).eval()


def _batch(B: int = 3, L: int = 29, vocab: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (B, L), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(B, L, dtype=torch.long)
    for b in range(1, B):  # right padding of different lengths
        n = L - 5 * b
        ids[b, n:] = 1
        mask[b, n:] = 0
    return ids, mask


def test_config_roundtrip_and_validation(tmp_path):
    cfg = ViRankerConfig(**TINY, exit_layers=(2, 1, 2))
    assert cfg.exit_layers == (1, 2) and cfg.all_exit_layers == (1, 2, 4)
    assert cfg.head_hidden_size == 32
    cfg.save(tmp_path)
    assert ViRankerConfig.load(tmp_path) == cfg
    with pytest.raises(ValueError, match="exit layer"):
        ViRankerConfig(**TINY, exit_layers=(5,))
    with pytest.raises(ValueError, match="unknown"):
        ViRankerConfig.from_dict({**TINY, "hiden_size": 3})


@pytest.mark.parametrize("rope", [True, False])
def test_attention_impls_agree_with_padding(rope):
    model = _tiny(rope=rope)
    ids, mask = _batch()
    outs = {}
    with torch.no_grad():
        for impl in ("bpt", "sdpa", "eager"):
            outs[impl] = model.set_attention_impl(impl).forward_hidden(ids, mask)
    for impl in ("sdpa", "eager"):
        torch.testing.assert_close(outs["bpt"], outs[impl], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # forward() computes only the first token in its last layer: same logits
        for impl in ("bpt", "sdpa", "eager"):
            logits = model.set_attention_impl(impl)(ids, mask)
            torch.testing.assert_close(logits, model.heads["4"](outs["bpt"][:, 0]), rtol=1e-5, atol=1e-5)
    # padding does not leak: a row scored alone (no padding) equals the padded-batch row
    with torch.no_grad():
        n = int(mask[2].sum())
        alone = model.set_attention_impl("bpt").forward_hidden(ids[2:3, :n], mask[2:3, :n])
    torch.testing.assert_close(alone[0], outs["bpt"][2, :n], rtol=1e-5, atol=1e-5)


def test_rope_model_has_no_position_table():
    assert _tiny(rope=True).embeddings.position is None
    assert _tiny(rope=False).embeddings.position is not None


def test_xlmr_position_ids():
    ids = torch.tensor([[0, 5, 6, 2, 1, 1]])
    assert xlmr_position_ids(ids, 1).tolist() == [[2, 3, 4, 5, 1, 1]]


def test_early_exit_stops_and_matches_full_hidden_states():
    model = _tiny(exit_layers=(2,))
    ids, mask = _batch()
    calls: list[int] = []
    hooks = [layer.register_forward_hook(lambda m, i, o, n=n: calls.append(n))
             for n, layer in enumerate(model.layers, start=1)]
    with torch.no_grad():
        early = model(ids, mask, exit_layer=2)
        assert calls == [1, 2], calls  # layers 3 and 4 never ran
        calls.clear()
        full_states = model.hidden_states(ids, mask)
        assert calls == [1, 2, 3, 4]
        calls.clear()
        exits = model.forward_exits(ids, mask)
        assert calls == [1, 2, 3, 4]  # one pass for all heads
        final = model(ids, mask)
    for h in hooks:
        h.remove()
    assert early.shape == (3,) and set(exits) == {2, 4}
    assert len(full_states) == 5
    torch.testing.assert_close(model.forward_hidden(ids, mask, num_layers=2), full_states[2])
    torch.testing.assert_close(model.heads["2"](full_states[2][:, 0]), early)
    torch.testing.assert_close(exits[2], early)
    torch.testing.assert_close(exits[4], final)
    with pytest.raises(ValueError, match="no scoring head"):
        model(ids, mask, exit_layer=3)


def test_training_step_with_checkpointing_matches_plain_gradients():
    ids, mask = _batch()
    grads = []
    for ckpt in (False, True):
        model = _tiny(exit_layers=(2,), gradient_checkpointing=ckpt).train()
        exits = model.forward_exits(ids, mask)
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(v, torch.ones_like(v))
                   for v in exits.values())
        loss.backward()
        grads.append(model.layers[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_save_load_roundtrip_identical_scores(tmp_path):
    model = _tiny(exit_layers=(1, 3))
    ids, mask = _batch()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors"}
    loaded = ViRanker.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    with torch.no_grad():
        for layer in (1, 3, 4):
            assert torch.equal(model(ids, mask, exit_layer=layer), loaded(ids, mask, exit_layer=layer))
    with pytest.raises(FileNotFoundError):
        ViRanker.from_pretrained(tmp_path / "nothing")


def _hf_config(model_type: str):
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    if model_type == "xlmr":
        return XLMRobertaConfig(**common, max_position_embeddings=66, pad_token_id=1)
    return BertConfig(**common, max_position_embeddings=66, pad_token_id=1)


@pytest.mark.parametrize("model_type,prefix", [("xlmr", "roberta."), ("xlmr", ""), ("bert", "bert.")])
def test_load_encoder_weights_matches_hf_hidden_states(model_type, prefix, tmp_path):
    from transformers import BertModel, XLMRobertaModel

    torch.manual_seed(1)
    hf_cls = XLMRobertaModel if model_type == "xlmr" else BertModel
    hf = hf_cls(_hf_config(model_type), add_pooling_layer=True).eval()
    sd = {prefix + k: v for k, v in hf.state_dict().items()}
    model = _tiny(rope=False)
    report = load_encoder_weights(model, sd)
    assert not [k for k in report.missing if not k.startswith("heads.")], report
    assert sorted(report.unexpected) == sorted(prefix + k for k in ("pooler.dense.weight", "pooler.dense.bias"))
    ids, mask = _batch()
    if model_type == "bert":  # BERT counts positions from 0: compare on an unpadded batch with explicit ids
        ids, mask = ids[:1], mask[:1]
    with torch.no_grad():
        kwargs = {}
        if model_type == "bert":
            kwargs["position_ids"] = xlmr_position_ids(ids, 1)
        ref = hf(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        ours = model.forward_hidden(ids, mask)
    m = mask.bool()
    torch.testing.assert_close(ours[m], ref[m], rtol=1e-5, atol=1e-5)

    # rope=True drops the position table; num_layers=2 keeps the first two layers
    small = _tiny(rope=True, num_layers=2)
    rep2 = load_encoder_weights(small, sd)
    assert any("position_embeddings" in k for k in rep2.dropped)
    assert any("encoder.layer.3." in k for k in rep2.dropped)
    assert torch.equal(small.layers[1].ffn.fc1.weight, model.layers[1].ffn.fc1.weight)

    # a directory works as well; a wrong shape is a clear assertion
    hf.save_pretrained(tmp_path / "hf")
    rep3 = load_encoder_weights(_tiny(rope=False), tmp_path / "hf")
    assert len(rep3.loaded) == len(report.loaded)
    with pytest.raises(WeightMismatch):
        load_encoder_weights(_tiny(rope=False, intermediate_size=48), sd)


def test_export_hf_classifier_same_scores(tmp_path):
    from transformers import XLMRobertaForSequenceClassification

    model = _tiny(rope=False, head_activation="tanh", exit_layers=(2,))
    for p in model.parameters():  # make biases / LN non-trivial so a mapping slip would show
        p.data.add_(0.05 * torch.randn_like(p))
    out = export_hf_classifier(model, tmp_path / "hf")
    hf = XLMRobertaForSequenceClassification.from_pretrained(out).eval()
    ids, mask = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        ours = model(ids, mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # and back: the HF classifier loads into a fresh ViRanker head included
    back = _tiny(rope=False, head_activation="tanh")
    rep = load_encoder_weights(back, {k: v for k, v in hf.state_dict().items()})
    assert not rep.missing and not rep.unexpected, rep
    with torch.no_grad():
        torch.testing.assert_close(back(ids, mask), ours, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rope=False"):
        to_hf_state_dict(model) and export_hf_classifier(_tiny(rope=True, head_activation="tanh"), tmp_path / "x")


@pytest.mark.parametrize("pooling", ["cls", "pair", "mean"])
@pytest.mark.parametrize("rope", [True, False])
def test_packed_scoring_equals_padded(rope, pooling):
    """set_packing skips padding in projections/FFN/LN (and, with SDPA, runs attention per sequence without
    padding): same logits, same gradients, for every pooling."""
    model = _tiny(rope=rope, exit_layers=(2,), pooling=pooling)
    ids, mask = _batch()
    ids[:, 6:8] = 2  # <s> q(5) </s></s> p ...: the pair head pools both segments
    with torch.no_grad():
        for impl in ("bpt", "sdpa", "eager"):
            model.set_attention_impl(impl)
            ref = {k: v.clone() for k, v in model.set_packing(False).forward_exits(ids, mask).items()}
            ref_final = model(ids, mask, exit_layer=2)
            got = model.set_packing(True).forward_exits(ids, mask)
            for layer in ref:
                torch.testing.assert_close(got[layer], ref[layer], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model(ids, mask, exit_layer=2), ref_final, rtol=1e-5, atol=1e-5)
            # hidden-state APIs keep the padded layout
            assert model.forward_hidden(ids, mask).shape == (*ids.shape, 32)
    grads = []
    for pack in (False, True):
        m = _tiny(rope=rope, exit_layers=(2,), pooling=pooling).train().set_packing(pack)
        sum(v.sum() for v in m.forward_exits(ids, mask).values()).backward()
        grads.append(m.layers[1].ffn.fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["bpt", "sdpa"])
def test_mean_pooling_head_reads_masked_mean_and_ignores_padding(impl):
    model = _tiny(pooling="mean").set_attention_impl(impl)
    ids, mask = _batch(B=3, L=29)
    with torch.no_grad():
        hidden = model.forward_hidden(ids, mask)
        m = mask.unsqueeze(-1).float()
        expect = model.heads[str(model.config.num_layers)]((hidden * m).sum(1) / m.sum(1))
        got = model(ids, mask)
        exits = model.forward_exits(ids, mask)
        # the same pair with extra padding scores the same
        pad = torch.full((3, 7), model.config.pad_token_id, dtype=ids.dtype)
        padded = model(torch.cat([ids, pad], 1), torch.cat([mask, torch.zeros_like(pad)], 1))
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exits[model.config.num_layers], got, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, got, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        ViRankerConfig(pooling="max")


def _pairs(model: ViRanker) -> tuple[torch.Tensor, torch.Tensor]:
    """<s> q </s></s> p </s> rows of different lengths, right-padded."""
    rows = [[0, 5, 6, 7, 2, 2, 8, 9, 10, 11, 2], [0, 12, 2, 2, 13, 14, 2], [0, 5, 6, 2, 2, 15, 2]]
    L = max(map(len, rows))
    ids = torch.full((3, L), model.config.pad_token_id)
    mask = torch.zeros(3, L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


@pytest.mark.parametrize("impl", ["bpt", "sdpa"])
def test_pair_pooling_head_reads_query_and_passage_means(impl):
    model = _tiny(pooling="pair", exit_layers=(2,)).set_attention_impl(impl)
    ids, mask = _pairs(model)
    q_mask, p_mask = pair_segment_masks(ids, mask, model.config.sep_token_id)
    assert q_mask[0].nonzero().flatten().tolist() == [1, 2, 3]
    assert p_mask[0].nonzero().flatten().tolist() == [6, 7, 8, 9]
    assert p_mask[1].nonzero().flatten().tolist() == [4, 5] and not p_mask[1, 6:].any()
    with torch.no_grad():
        hidden = model.forward_hidden(ids, mask)
        q = (hidden * q_mask.unsqueeze(-1)).sum(1) / q_mask.sum(1, keepdim=True)
        p = (hidden * p_mask.unsqueeze(-1)).sum(1) / p_mask.sum(1, keepdim=True)
        head = model.heads[str(model.config.num_layers)]
        expect = head(torch.stack([q, p], 1))
        # with a zero MLP output layer the score is exactly s * cos(q, p)
        cos = torch.nn.functional.cosine_similarity(q, p, dim=-1)
        got = model(ids, mask)
        exits = model.forward_exits(ids, mask)
        pad = torch.full((3, 5), model.config.pad_token_id, dtype=ids.dtype)
        padded = model(torch.cat([ids, pad], 1), torch.cat([mask, torch.zeros_like(pad)], 1))
        head.out.weight.zero_()
        head.out.bias.zero_()
        cos_only = model(ids, mask)
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exits[model.config.num_layers], got, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, got, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cos_only, model.config.pair_cos_init * cos, atol=1e-4, rtol=1e-4)
    assert set(exits) == {2, model.config.num_layers}


def test_pair_pooling_roundtrip_and_needs_ids(tmp_path):
    model = _tiny(pooling="pair")
    ids, mask = _pairs(model)
    with torch.no_grad():
        model.heads[str(model.config.num_layers)].cos_scale.fill_(7.5)
        ref = model(ids, mask)
    loaded = ViRanker.from_pretrained(model.save_pretrained(tmp_path / "m")).eval()
    assert loaded.config.pooling == "pair"
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask), ref)
        with pytest.raises(ValueError, match="input_ids"):
            loaded._pool(loaded.forward_hidden(ids, mask), mask)
