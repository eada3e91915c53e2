"""Trainer tests: losses, optimizers, augmentation, data pipeline, a tiny end-to-end fit, export → reload."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import yaml

from indexing.normalize import fold, has_diacritics
from trainer.data import (
    BucketBatchSampler,
    CandidateCollator,
    CandidateDataset,
    GroupCollator,
    GroupDataset,
    augment_diacritics,
    drop_random_sentence,
    load_triplets,
    strip_diacritics,
    weight_sources,
)
from trainer.losses import bce_loss, get_loss, listwise_ce_loss, multi_exit_loss, triplet_ranking_loss
from trainer.module import RerankerModule, build_model, ranking_metrics
from trainer.optim import Lion, build_optimizer, param_groups, warmup_cosine

TINY = dict(
    init="random",
    vocab_size=250037,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    exit_layers=[1],
    rope=True,
    use_bpt=True,
    attn_block_size=16,
    ffn_chunk_size=16,
    dropout=0.0,
    attention_dropout=0.0,
    max_query_length=16,
    max_length=48,
)


@pytest.fixture(scope="session")
def tokenizer():
    from reranker.tokenizer import load_tokenizer

    return load_tokenizer()


# ---------------------------------------------------------------------------------------------- losses
def test_triplet_loss_hand_checked():
    s = torch.tensor([[2.0, 1.5, -1.0], [0.0, 0.0, 0.5]])
    # row 0: max(0, 1-2+1.5)=0.5, max(0, 1-2-1)=0 ; row 1: max(0,1-0+0)=1, max(0,1-0+0.5)=1.5
    assert triplet_ranking_loss(s, margin=1.0).item() == pytest.approx((0.5 + 0 + 1 + 1.5) / 4)
    assert triplet_ranking_loss(torch.tensor([[5.0, 0.0, 1.0]]), margin=1.0).item() == 0.0


def test_listwise_and_bce_hand_checked():
    s = torch.tensor([[2.0, 1.5, -1.0]])
    expect = -math.log(math.exp(2) / (math.exp(2) + math.exp(1.5) + math.exp(-1)))
    assert listwise_ce_loss(s).item() == pytest.approx(expect, rel=1e-6)
    assert listwise_ce_loss(s, temperature=0.5).item() < expect  # sharper softmax, positive already on top
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expect_bce = -(math.log(sig(2.0)) + math.log(1 - sig(1.5)) + math.log(1 - sig(-1.0))) / 3
    assert bce_loss(s).item() == pytest.approx(expect_bce, rel=1e-6)
    with pytest.raises(ValueError):
        triplet_ranking_loss(torch.zeros(3))
    with pytest.raises(ValueError):
        get_loss("hinge")


def test_multi_exit_loss_weighted_sum():
    fn = get_loss("triplet", margin=1.0)
    s3 = torch.tensor([[0.0, 0.0]])  # loss 1
    s6 = torch.tensor([[0.0, 1.0]])  # loss 2
    total, per = multi_exit_loss({3: s3, 6: s6}, fn, {3: 0.5})
    assert per[3].item() == 1.0 and per[6].item() == 2.0
    assert total.item() == pytest.approx(0.5 * 1 + 1.0 * 2)


# ---------------------------------------------------------------------------------------------- optim
def test_warmup_cosine_shape():
    f = warmup_cosine(10, 110, min_ratio=0.1)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    f.total_steps = 60  # the time-budget callback shortens the schedule
    assert f(60) == pytest.approx(0.1)


def test_lion_step_is_sign_update_with_decoupled_decay():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    p.grad = torch.tensor([0.3, -0.001, 0.0])
    opt.step()
    # p*(1 - lr*wd) - lr*sign(0.1*g)
    expect = torch.tensor([1.0, -2.0, 3.0]) * (1 - 0.05) - 0.1 * torch.tensor([1.0, -1.0, 0.0])
    assert torch.allclose(p.detach(), expect)
    assert torch.allclose(opt.state[p]["exp_avg"], 0.01 * torch.tensor([0.3, -0.001, 0.0]))


def test_param_groups_skip_frozen_and_no_decay():
    model = build_model(dict(TINY, freeze_word_embeddings=True))
    assert not model.embeddings.word.weight.requires_grad
    groups = param_groups(model, 0.01)
    ids = {id(p) for g in groups for p in g["params"]}
    assert id(model.embeddings.word.weight) not in ids
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    not_decayed = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and all(p.dim() == 2 for p in decayed)
    one_d = [p for p in model.parameters() if p.requires_grad and p.dim() == 1]  # biases and LayerNorm
    assert {id(p) for p in one_d} <= {id(p) for p in not_decayed}
    assert id(model.embeddings.token_type.weight) in {id(p) for p in not_decayed}  # embeddings: no decay
    assert isinstance(build_optimizer("lion", model, 1e-4), Lion)
    assert isinstance(build_optimizer("adamw", model, 1e-4), torch.optim.AdamW)


# ---------------------------------------------------------------------------------------------- data
def test_diacritic_augmentation_strips_marks():
    rng = random.Random(0)
    q = "Thủ đô của Việt Nam là thành phố nào"
    assert strip_diacritics(q, rng, 1.0) == fold(q) == "Thu do cua Viet Nam la thanh pho nao"
    for seed in range(20):
        part = strip_diacritics(q, random.Random(seed), 0.5)
        words, orig = part.split(), q.split()
        assert len(words) == len(orig)
        assert any(w != o for w, o in zip(words, orig, strict=True))  # something folded
        assert all(w in (o, fold(o)) for w, o in zip(words, orig, strict=True))  # only folding happened
    assert augment_diacritics(q, rng, fold_prob=0.0) == q
    outs = [augment_diacritics(q, random.Random(s), fold_prob=1.0, fold_partial=0.0) for s in range(5)]
    assert all(not any(has_diacritics(w) for w in o.split()) for o in outs)
    n = sum(augment_diacritics(q, random.Random(s), 0.25) != q for s in range(2000))
    assert 0.2 < n / 2000 < 0.3


def _records(n: int = 24) -> list[dict]:
    topics = ["sông", "núi", "biển", "rừng", "phố", "làng", "chợ", "trường"]
    recs = []
    for i in range(n):
        t = topics[i % len(topics)]
        recs.append(
            {
                "query": f"{t} số {i} ở đâu",
                "pos": [f"{t} số {i} ở đâu: {t} số {i} nằm ở miền {t} đẹp nhất"],
                "neg": [
                    f"bài viết {j} nói về {topics[(i + j) % len(topics)]} khác hẳn {j * 3}"
                    for j in range(1, 4)
                ],
                "query_id": f"q{i}",
            }
        )
    return recs


def test_group_dataset_groups_and_fill(tmp_path):
    recs = _records()
    recs[0]["neg"] = recs[0]["neg"][:1]  # too few negatives: borrowed from other records
    ds = GroupDataset(recs, n_neg=3, seed=1, fold_prob=0.0)
    g = ds[0]
    assert g["passages"][0] == recs[0]["pos"][0] and len(g["passages"]) == 4
    assert recs[0]["pos"][0] not in g["passages"][1:] and len(set(g["passages"])) == 4
    assert ds[5] == ds[5]  # deterministic
    ds_fold = GroupDataset(recs, n_neg=3, seed=1, fold_prob=1.0, fold_partial=0.0)
    assert ds_fold[2]["query"] == fold(recs[2]["query"])
    path = tmp_path / "t.jsonl"
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + '\n{"query": "cut', encoding="utf-8"
    )
    assert len(load_triplets([path])) == len(recs)
    with pytest.raises(FileNotFoundError):
        load_triplets([tmp_path / "missing.jsonl"])


def test_bucket_batch_sampler_covers_and_buckets():
    lengths = [random.Random(i).randint(10, 500) for i in range(103)]
    s = BucketBatchSampler(lengths, batch_size=8, multiplier=4, shuffle=True, drop_last=False, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(103)) and len(batches) == len(s)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 150  # random batches would spread ~380
    s.set_epoch(1)
    assert list(s) != batches
    assert len(BucketBatchSampler(lengths, 8, drop_last=True)) == 12


def test_resumable_loader_continues_mid_epoch():
    from trainer.data import ResumableDataLoader

    def loader():
        s = BucketBatchSampler(list(range(40)), batch_size=4, multiplier=2, seed=5)
        return ResumableDataLoader(list(range(40)), batch_sampler=s, collate_fn=list)

    full = list(loader())
    first = loader()
    it = iter(first)
    seen = [next(it), next(it), next(it)]
    state = first.state_dict()
    assert state == {"epoch": 0, "batches": 3} and seen == full[:3]
    resumed = loader()
    resumed.load_state_dict(state)
    assert list(resumed) == full[3:]
    nxt = list(resumed)  # the next pass is the whole next epoch
    epoch1 = BucketBatchSampler(list(range(40)), batch_size=4, multiplier=2, seed=5)
    epoch1.set_epoch(1)
    assert nxt == list(epoch1) and nxt != full and resumed.state_dict()["epoch"] == 1


def test_each_pass_is_the_next_epoch_without_set_epoch():
    """Lightning never calls set_epoch on a batch sampler: a second pass must still be a new epoch (order and
    the dataset's augmentation seed), and an explicit set_epoch wins over the automatic step."""
    lengths = [random.Random(i).randint(10, 500) for i in range(64)]
    s = BucketBatchSampler(lengths, batch_size=4, multiplier=2, seed=7)
    first, second = list(s), list(s)
    assert second != first and s.epoch == 1
    ref = BucketBatchSampler(lengths, batch_size=4, multiplier=2, seed=7)
    ref.set_epoch(1)
    assert list(ref) == second
    s.set_epoch(5)
    fifth = BucketBatchSampler(lengths, batch_size=4, multiplier=2, seed=7)
    fifth.set_epoch(5)
    assert list(s) == list(fifth) and s.epoch == 5


def test_resume_at_the_end_of_an_epoch_starts_the_next():
    from trainer.data import ResumableDataLoader

    s = BucketBatchSampler(list(range(40)), batch_size=4, multiplier=2, seed=5)
    dl = ResumableDataLoader(list(range(40)), batch_sampler=s, collate_fn=list)
    dl.load_state_dict({"epoch": 0, "batches": len(s)})
    nxt = BucketBatchSampler(list(range(40)), batch_size=4, multiplier=2, seed=5)
    nxt.set_epoch(1)
    assert list(dl) == list(nxt)


def test_collators_dynamic_padding(tokenizer):
    groups = [GroupDataset(_records(), 3, fold_prob=0.0)[i] for i in range(2)]
    batch = GroupCollator(tokenizer, 16, 48, pad_to_multiple_of=8)(groups)
    assert batch["input_ids"].shape[0] == 8 and batch["group_size"] == 4
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] <= 48
    assert int(batch["attention_mask"].sum(1).max()) <= 48
    recs = [
        {
            "query_id": "a",
            "query": "hỏi",
            "positives": ["p1"],
            "candidates": [
                {"id": "p1", "text": "đúng", "score": 2.0},
                {"id": "p2", "text": "sai rồi nhé", "score": 1.0},
            ],
        }
    ]
    ds = CandidateDataset(recs)
    b = CandidateCollator(tokenizer, 16, 48)([ds[0], ds[1]])
    assert sorted(b["pids"]) == ["p1", "p2"] and ds.qrels == {"a": {"p1": 1}}


def test_ranking_metrics_hand_checked():
    m = ranking_metrics(
        {"q1": {"a": 1}, "q2": {"c": 1}}, {"q1": {"a": 0.1, "b": 0.9}, "q2": {"c": 3.0, "d": 1.0}}
    )
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)


# ---------------------------------------------------------------------------------------------- fit
def _eval_loss(module: RerankerModule, batch: dict) -> float:
    module.eval()
    with torch.no_grad():
        exits = module(batch["input_ids"], batch["attention_mask"])
        s = exits[module.model.config.num_layers].view(-1, batch["group_size"])
    module.train()
    return float(triplet_ranking_loss(s))


@pytest.mark.slow
def test_tiny_fit_lowers_loss(tokenizer):
    import lightning as L

    from trainer.data import RerankDataModule

    torch.manual_seed(0)
    recs = _records(32)
    dm = RerankDataModule(
        [], tokenizer=tokenizer, n_neg=3, batch_size=8, max_query_length=16, max_length=48, fold_prob=0.0
    )
    dm.train_set = GroupDataset(recs, 3, seed=0, fold_prob=0.0)
    fixed = GroupCollator(tokenizer, 16, 48)([dm.train_set[i] for i in range(16)])
    module = RerankerModule(dict(TINY), lr=3e-3, warmup_steps=2, total_steps=40, exit_weights={1: 0.5})
    before = _eval_loss(module, fixed)
    trainer = L.Trainer(
        max_steps=40,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        limit_val_batches=0,
    )
    trainer.fit(module, dm)
    after = _eval_loss(module, fixed)
    assert trainer.global_step == 40
    assert after < 0.6 * before, (before, after)


def _write_beir(d, n=6):
    (d / "qrels").mkdir(parents=True)
    topics = [
        "sông Hồng",
        "núi Bà Đen",
        "biển Nha Trang",
        "rừng Cúc Phương",
        "phố cổ Hội An",
        "chợ Bến Thành",
    ]
    with open(d / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(topics[:n]):
            f.write(
                json.dumps(
                    {"_id": f"p{i}", "title": "", "text": f"{t} là một địa danh nổi tiếng số {i}."},
                    ensure_ascii=False,
                )
                + "\n"
            )
    with open(d / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(topics[:n]):
            f.write(json.dumps({"_id": f"dev-q{i}", "text": f"{t} ở đâu"}, ensure_ascii=False) + "\n")
    (d / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"dev-q{i}\tp{i}\t1\n" for i in range(n)), encoding="utf-8"
    )


@pytest.mark.slow
def test_fit_cli_resume_export_reload(tmp_path, tokenizer):
    from reranker.inference import ViRankerScorer
    from reranker.model import ViRanker
    from trainer.__main__ import main
    from trainer.export import export_model, load_checkpoint_model

    train = tmp_path / "train.jsonl"
    train.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in _records(24)) + "\n", encoding="utf-8"
    )
    beir = tmp_path / "beir"
    _write_beir(beir)
    cands = tmp_path / "cands.jsonl"
    assert (
        main(
            [
                "candidates",
                "--beir",
                str(beir),
                "--k",
                "3",
                "--max-queries",
                "4",
                "--bm25",
                "bm25s",
                "--out",
                str(cands),
            ]
        )
        == 0
    )
    cand_recs = [json.loads(x) for x in cands.read_text(encoding="utf-8").splitlines()]
    assert len(cand_recs) == 4 and all(
        set(r["positives"]) & {c["id"] for c in r["candidates"]} for r in cand_recs
    )
    run_dir = tmp_path / "run"
    cfg = {
        "seed": 1,
        "model": dict(TINY),
        "data": {
            "train_files": [str(train)],
            "val_candidates": str(cands),
            "n_neg": 3,
            "batch_size": 4,
            "eval_batch_size": 8,
            "fold_prob": 0.25,
        },
        "loss": {"name": "triplet", "margin": 1.0, "exit_weights": {1: 0.5, 2: 1.0}},
        "optim": {"name": "lion", "lr": 1e-4, "weight_decay": 0.1, "warmup_steps": 1},
        "trainer": {
            "run_dir": str(run_dir),
            "max_steps": 2,
            "max_time": "00:00:10:00",
            "val_check_interval": 2,
            "checkpoint_every_n_steps": 1,
            "threads": 1,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
        "export": {
            "out_dir": str(tmp_path / "exported"),
            "vocab_corpus": [str(train), str(beir / "corpus.jsonl")],
        },
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    assert main(["fit", "--config", str(cfg_path), "--no-export"]) == 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert main(["fit", "--config", str(cfg_path), "--resume", "trainer.max_steps=4"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["global_step"] == 4
    assert "val/mrr@10" in summary["metrics"] and "val/ndcg@10_l1" in summary["metrics"]
    assert len(list((run_dir / "logs").glob("version_*/metrics.csv"))) == 2  # the resume kept the first log

    # export (fp16, pruned) -> reload -> same scores as the checkpoint's model within fp16 tolerance
    out = tmp_path / "exported"
    assert (out / "README.md").is_file() and "python -m trainer fit" in (out / "README.md").read_text()
    model, meta = load_checkpoint_model(run_dir / "checkpoints" / "final.ckpt")
    assert meta["global_step"] == 4
    q, ps = (
        "sông số 3 ở đâu",
        ["sông số 3 ở đâu: sông số 3 nằm ở miền sông đẹp nhất", "bài viết 2 nói về núi khác"],
    )
    ref = ViRankerScorer(model, tokenizer, attn_impl="eager").score(q, ps)
    reloaded = ViRankerScorer.from_pretrained(out, attn_impl="eager")
    assert reloaded.vocab_map is not None and reloaded.model.config.vocab_size < 5000
    assert next(reloaded.model.parameters()).dtype == torch.float32  # fp16 weights, fp32 compute
    assert torch.allclose(torch.tensor(reloaded.score(q, ps)), torch.tensor(ref), atol=2e-2)
    # same dtype (float32 export): exactly the same scores
    out32 = tmp_path / "exported32"
    export_model(model, out32, tokenizer=tokenizer, vocab_texts=[q, *ps], dtype="float32")
    again = ViRankerScorer(
        ViRanker.from_pretrained(out32),
        tokenizer,
        vocab_map=__import__("reranker.vocab", fromlist=["VocabMap"]).VocabMap.load(out32),
        attn_impl="eager",
    )
    assert (again.score(q, ps) == ref).all()


def test_checkpoint_loader_rejects_foreign_files(tmp_path):
    from trainer.export import load_checkpoint_model

    bad = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError):
        load_checkpoint_model(bad)


def test_fit_schedule_to_time_shrinks_schedule_and_stops():
    import time
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from trainer.module import FitScheduleToTime

    sched = warmup_cosine(5, 600)
    timer = Timer(duration="00:01:00:00")
    timer.time_remaining = lambda stage="train": 500.0  # seconds left in the budget
    trainer = SimpleNamespace(
        global_step=0,
        should_stop=False,
        callbacks=[timer],
        lr_scheduler_configs=[SimpleNamespace(scheduler=SimpleNamespace(lr_lambdas=[sched]))],
    )
    logged = {}
    module = SimpleNamespace(log=lambda k, v: logged.__setitem__(k, v))
    cb = FitScheduleToTime(max_steps=600, measure_after=10, every=25, reserve_s=100)
    cb.on_train_start(trainer, module)
    cb._t0 = time.monotonic() - 100.0  # 10 steps took 100 s
    trainer.global_step = 10
    cb.on_train_batch_end(trainer, module)
    assert sched.total_steps == pytest.approx(50, abs=1)  # 10 done + (500 - 100) s / 10 s per step
    assert logged["train/planned_steps"] == sched.total_steps and not trainer.should_stop
    trainer.global_step = sched.total_steps
    cb.on_train_batch_end(trainer, module)
    assert trainer.should_stop


def test_head_lr_scale_gives_heads_their_own_lr():
    model = build_model(dict(TINY))
    groups = param_groups(model, 0.01, lr=1e-4, head_lr_scale=20)
    head_ids = {id(p) for n, p in model.named_parameters() if n.startswith("heads.")}
    for g in groups:
        is_head = {id(p) in head_ids for p in g["params"]}
        assert len(is_head) == 1  # a group is all-head or all-encoder
        assert g["lr"] == pytest.approx(2e-3 if is_head.pop() else 1e-4)


def test_ict_length_matching_and_source_weights():
    rng = random.Random(0)
    text = "Câu một ở đây. Câu hai dài hơn một chút! Câu ba? Câu bốn."
    dropped = drop_random_sentence(text, rng)
    assert len(dropped.split(". ")) <= 3 and dropped != text and len(dropped) < len(text)
    assert drop_random_sentence("Chỉ một câu thôi.", rng) == "Chỉ một câu thôi."
    neg = "Một đoạn khác. Có ba câu. Và câu cuối."
    cut = {"query": "Câu hỏi giả.", "pos": ["Đoạn văn đã bị cắt câu."], "neg": [neg] * 3, "source": "ict"}
    kept = {**cut, "pos": ["Câu hỏi giả. Đoạn văn còn nguyên câu."]}
    real = {**cut, "source": "nanibot-qa-train"}
    for rec, shortened in ((cut, True), (kept, False), (real, False)):
        g = GroupDataset([rec, real], n_neg=3, seed=1, fold_prob=0.0)[0]
        assert all((len(n) < len(neg)) == shortened for n in g["passages"][1:]), rec
    g = GroupDataset([cut, real], n_neg=3, seed=1, fold_prob=0.0, match_ict_lengths=False)[0]
    assert g["passages"][1:] == [neg] * 3
    weighted = weight_sources([cut, real, kept], {"nanibot-qa-train": 2, "ict": 1})
    assert weighted == [cut, real, real, kept]
    assert weight_sources([cut, real], {"ict": 0}) == [real] and weight_sources([cut], None) == [cut]


# ---------------------------------------------------------------------------------------------- gated architecture
TINY_GATED_TRAIN = {**{k: v for k, v in TINY.items() if k != "rope"}, "architecture": "gated",
                    "max_position_embeddings": 66}


def _config_sections(name: str) -> dict:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "trainer" / "configs" / name
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_named_configs_validate_and_joint_is_the_shipped_recipe():
    from reranker.config import ViRankerConfig
    from reranker.e5_init import E5_DIMS

    small, joint, gated = (_config_sections(f"viranker-{n}-cpu.yaml") for n in ("small", "joint", "gated"))
    for section in ("data", "loss", "optim"):
        assert joint[section] == small[section], section
    assert {**small["model"], "architecture": "joint"} == joint["model"]
    assert joint["export"]["out_dir"] != small["export"]["out_dir"]  # the ablation never overwrites the shipped model
    for cfg, arch in ((joint, "joint"), (gated, "gated")):
        fields = {k: v for k, v in cfg["model"].items() if k not in ("init", "freeze_word_embeddings")}
        fields["exit_layers"] = tuple(fields["exit_layers"])
        c = ViRankerConfig(**{**E5_DIMS, **fields})
        assert c.architecture == arch and set(cfg["loss"]["exit_weights"]) == set(c.all_exit_layers)
    assert gated["model"]["num_layers"] == 12 and not ViRankerConfig(**{**E5_DIMS, "architecture": "gated"}).rope


def test_gates_train_at_the_head_lr():
    model = build_model(dict(TINY_GATED_TRAIN))
    groups = param_groups(model, 0.01, lr=1e-4, head_lr_scale=20)
    gate_ids = {id(p) for n, p in model.named_parameters() if n.endswith("cross_gate")}
    assert len(gate_ids) == TINY["num_layers"]
    fast = [g for g in groups if g["lr"] == pytest.approx(2e-3)]
    assert gate_ids <= {id(p) for g in fast for p in g["params"]}


def test_gated_collators_and_format_guard(tokenizer):
    groups = [GroupDataset(_records(), 3, fold_prob=0.0)[i] for i in range(2)]
    batch = GroupCollator(tokenizer, 16, 48, architecture="gated")(groups)
    assert batch["architecture"] == "gated"
    row = batch["input_ids"][0].tolist()
    assert row[0] == 0 and row[row.index(2) + 1] == 0  # <s> query: .. </s><s> passage: ..
    joint_batch = GroupCollator(tokenizer, 16, 48)(groups)
    module = RerankerModule(dict(TINY_GATED_TRAIN))
    with pytest.raises(ValueError, match="tokenized for 'joint'"):
        module.training_step(joint_batch, 0)
    assert module.training_step(batch, 0).requires_grad


@pytest.mark.slow
def test_gated_tiny_fit_opens_gates_and_logs_them(tmp_path, tokenizer):
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from trainer.data import RerankDataModule

    torch.manual_seed(0)
    recs = _records(32)
    dm = RerankDataModule([], tokenizer=tokenizer, n_neg=3, batch_size=8, max_query_length=16, max_length=48,
                          fold_prob=0.0, architecture="gated")
    dm.train_set = GroupDataset(recs, 3, seed=0, fold_prob=0.0)
    dm.val_set = CandidateDataset([
        {"query_id": f"q{i}", "query": r["query"], "positives": ["p"],
         "candidates": [{"id": "p", "text": r["pos"][0], "score": 0.0}]
         + [{"id": f"n{j}", "text": t, "score": 1.0 - j} for j, t in enumerate(r["neg"])]}
        for i, r in enumerate(recs[:6])
    ])
    module = RerankerModule(dict(TINY_GATED_TRAIN), lr=1e-3, head_lr_scale=10, warmup_steps=2, total_steps=20,
                            exit_weights={1: 0.5})
    assert module.model.gate_values().eq(0).all()
    trainer = L.Trainer(max_steps=20, accelerator="cpu", logger=CSVLogger(str(tmp_path)), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=10,
                        check_val_every_n_epoch=None,
                        num_sanity_val_steps=0, log_every_n_steps=1)
    trainer.fit(module, dm)
    gates = module.model.gate_values()
    assert trainer.global_step == 20 and gates.abs().min() > 0  # every gate opened a little
    with open(next(tmp_path.rglob("metrics.csv")), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    logged = [float(r["gates/mean_abs_tanh_l2"]) for r in rows if r.get("gates/mean_abs_tanh_l2")]
    assert len(logged) == 2 and logged[-1] == pytest.approx(float(gates[1].abs().mean()), rel=1e-5)
    assert any(r.get("val/mrr@10") for r in rows)


def test_fit_config_is_the_one_place_for_loss_and_optim_defaults():
    import inspect

    from trainer.config import FitConfig, LossConfig, OptimConfig
    from trainer.module import RerankerModule

    params = inspect.signature(RerankerModule.__init__).parameters
    kw = FitConfig().module_kwargs()
    assert {k: params[k].default for k in kw} == kw  # the module's defaults are the config's
    cfg = FitConfig.from_sections({"loss": {"name": "listwise", "temperature": "0.5"},
                                   "optim": {"lr": "3e-5", "warmup_steps": 20}})
    assert cfg.loss == LossConfig(name="listwise", temperature=0.5) and cfg.optim.lr == 3e-5
    assert cfg.optim == OptimConfig(lr=3e-5, warmup_steps=20)
    with pytest.raises(ValueError, match="unknown key"):
        FitConfig.from_sections({"optim": {"learning_rate": 1e-4}})
