"""Training-data tests: ICT examples, MMR, hybrid / random negative mining, resumable JSONL output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.ict import make_ict_example, make_ict_examples, split_sentences
from trainer.mine import (
    Blocklist,
    Bm25sSearcher,
    MinerConfig,
    MiningQuery,
    NegativeMiner,
    VectorTable,
    done_query_ids,
    group_of,
    jaccard,
    load_beir_train_queries,
    mine_to_jsonl,
    mmr_select,
    read_jsonl,
    sample_pool,
    shingles,
    text_key,
)

PARA = {
    "_id": "vw-abc-0001",
    "title": "hà nội",
    "text": (
        "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam. "
        "Thành phố nằm ở phía tây bắc của trung tâm vùng đồng bằng châu thổ sông Hồng. "
        "Hà Nội có diện tích lớn nhất cả nước sau khi tỉnh Hà Tây sáp nhập vào năm 2008. "
        "Đây là trung tâm chính trị, văn hóa và giáo dục quan trọng bậc nhất của cả nước."
    ),
}


# ---------------------------------------------------------------------------------------------- ICT
def test_split_sentences_vietnamese():
    sents = split_sentences(PARA["text"])
    assert len(sents) == 4
    assert sents[0].startswith("Hà Nội là thủ đô")


def test_ict_removes_held_out_sentence_when_configured():
    for seed in range(20):
        ex = make_ict_example(PARA, seed=seed, remove_prob=1.0)
        assert ex is not None and ex.removed
        assert ex.query not in ex.positive
        assert ex.query in PARA["text"]
        assert len(ex.positive) < len(PARA["text"])


def test_ict_keeps_sentence_when_remove_prob_zero_and_is_deterministic():
    ex = make_ict_example(PARA, seed=3, remove_prob=0.0)
    assert ex is not None and not ex.removed and ex.query in ex.positive
    assert make_ict_example(PARA, seed=3, remove_prob=0.0) == ex


def test_ict_skips_short_sentences_and_single_sentence_paragraphs():
    assert make_ict_example({"_id": "x", "text": "Một câu duy nhất thôi mà dài đủ sáu âm tiết."}) is None
    short = {"_id": "y", "text": "Ngắn. Cũng ngắn. " + "Câu này thì dài hơn nhiều " * 5}
    ex = make_ict_example(short, min_query_syllables=6, min_context_syllables=1, remove_prob=1.0)
    assert ex is not None and len(ex.query.split()) >= 6


def test_ict_examples_count_and_remove_rate():
    paras = [dict(PARA, _id=f"vw-{i:03x}-0001") for i in range(200)]
    exs = make_ict_examples(paras, 150, seed=1, remove_prob=0.9)
    assert len(exs) == 150 and len({e.query_id for e in exs}) == 150
    rate = sum(e.removed for e in exs) / len(exs)
    assert 0.8 < rate < 0.97
    assert [e.query_id for e in make_ict_examples(paras, 150, seed=1)] == [e.query_id for e in exs]


# ---------------------------------------------------------------------------------------------- helpers
def test_group_of_and_shingles():
    assert group_of("vw-297364cbd8-0008") == "vw-297364cbd8"
    assert group_of("doc7#p3") == "doc7"
    assert group_of("nanibot-train-p001") == "nanibot-train-p001"
    a = shingles("một hai ba bốn năm")
    assert jaccard(a, a) == 1.0 and jaccard(a, shingles("sáu bảy tám chín mười")) == 0.0


def test_mmr_avoids_near_identical_pair():
    q = np.array([1.0, 0.0, 0.0])
    c0 = np.array([0.95, 0.31, 0.0])
    c1 = c0 + np.array([0.0, 0.0, 0.01])  # a near-copy of c0, equally relevant
    c2 = np.array([0.85, -0.2, 0.49])  # a bit less relevant, but different
    cands = np.stack([c0, c1, c2])
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    picked = mmr_select(q, cands, 2, lambda_=0.7)
    assert picked[0] in (0, 1) and picked[1] == 2
    # pure relevance (λ = 1) would take both copies
    assert sorted(mmr_select(q, cands, 2, lambda_=1.0)) == [0, 1]
    with pytest.raises(ValueError):
        mmr_select(q, cands, 2, lambda_=1.5)


def test_blocklist_blocks_ids_exact_and_near_duplicates():
    b = Blocklist()
    b.add_records([PARA])
    assert b.blocks(PARA["_id"], "anything")
    assert b.blocks("other", PARA["text"])
    assert b.blocks("other", PARA["text"].replace("2008", "2009") + " Thêm một câu.")
    assert not b.blocks("other", "Sông Cửu Long chảy qua nhiều tỉnh miền Tây Nam Bộ của Việt Nam.")


# ---------------------------------------------------------------------------------------------- mining
TOPICS = ["sông hồng", "phở bò", "bóng đá", "máy tính", "lúa gạo", "chùa một cột"]


def _pool(dim: int = 16, seed: int = 0) -> tuple[list[dict], VectorTable, np.ndarray]:
    rng = np.random.default_rng(seed)
    pool, vecs = [], []
    for t, topic in enumerate(TOPICS):
        base = rng.normal(size=dim)
        for j in range(5):
            text = f"Đoạn văn số {j} nói về {topic} với nội dung riêng {t * 10 + j} và chi tiết khác biệt {j * 7}."
            pool.append({"_id": f"vw-{t:02x}{j:02x}-0000", "title": topic, "text": text})
            v = base + 0.3 * rng.normal(size=dim)
            vecs.append(v / np.linalg.norm(v))
    vecs = np.asarray(vecs, np.float32)
    return pool, VectorTable([text_key(p["text"]) for p in pool], vecs), vecs


def _query_for(pool, vecs, i: int) -> tuple[MiningQuery, np.ndarray]:
    p = pool[i]
    q = MiningQuery(f"q{i}", f"nói về {p['title']}", (p["text"],), (p["_id"],), "test")
    return q, vecs[i]


def test_hybrid_mining_never_returns_positive_or_duplicate():
    pool, table, vecs = _pool()
    dup = dict(pool[0], _id="vw-ffff-0000")  # same text as pool[0] under another id (a duplicate)
    pool2 = pool + [dup]
    table2 = VectorTable([text_key(p["text"]) for p in pool], vecs)
    miner = NegativeMiner(pool2, Bm25sSearcher(pool2), table2, MinerConfig(n_neg=3, top_k=20))
    for i in range(len(pool)):
        q, qv = _query_for(pool, vecs, i)
        negs = miner.mine(q, qv)
        assert len(negs) == 3 and len(set(negs)) == 3
        assert pool[i]["_id"] not in negs
        assert all(miner.by_id[n]["text"] != pool[i]["text"] for n in negs)
    assert miner.stats.mined > 0


def test_hybrid_mining_prefers_lexical_and_dense_neighbours():
    pool, table, vecs = _pool()
    miner = NegativeMiner(pool, Bm25sSearcher(pool), table, MinerConfig(n_neg=3, exclude_same_group=False))
    q, qv = _query_for(pool, vecs, 0)
    negs = miner.mine(q, qv)
    # the other "sông hồng" paragraphs match the query both lexically and densely
    assert sum(miner.by_id[n]["title"] == "sông hồng" for n in negs) >= 2


def test_cosine_near_duplicate_is_dropped():
    pool, _, vecs = _pool()
    vecs = vecs.copy()
    vecs[1] = vecs[0]  # pool[1] is a dense near-duplicate of the positive pool[0]
    table = VectorTable([text_key(p["text"]) for p in pool], vecs)
    miner = NegativeMiner(pool, Bm25sSearcher(pool), table, MinerConfig(n_neg=3, exclude_same_group=False))
    q, qv = _query_for(pool, vecs, 0)
    assert pool[1]["_id"] not in miner.mine(q, qv)
    assert miner.stats.dropped_duplicates >= 1


def test_random_strategy_excludes_positives_and_is_deterministic():
    pool, _, _ = _pool()
    miner = NegativeMiner(pool, None, None, MinerConfig(strategy="random", n_neg=3))
    q = MiningQuery("q0", "x", (pool[0]["text"],), (pool[0]["_id"],))
    negs = miner.mine(q)
    assert len(negs) == 3 and pool[0]["_id"] not in negs
    assert negs == NegativeMiner(pool, None, None, MinerConfig(strategy="random", n_neg=3)).mine(q)
    with pytest.raises(ValueError):
        NegativeMiner(pool, None, None, MinerConfig(strategy="hybrid"))


def test_mine_to_jsonl_is_resumable_and_flagembedding_shaped(tmp_path):
    pool, table, vecs = _pool()
    qs = [_query_for(pool, vecs, i)[0] for i in range(6)]
    qvec = {q.query: vecs[i] for i, q in enumerate(qs)}

    def embed(texts):
        return np.stack([qvec[t] for t in texts])

    out = tmp_path / "t.jsonl"
    miner = NegativeMiner(pool, Bm25sSearcher(pool), table, MinerConfig())
    mine_to_jsonl(miner, qs[:3], out, embed, progress=False)
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"query": "cut off by a cra')  # a crash mid-line
    assert done_query_ids(out) == {"q0", "q1", "q2"}
    miner2 = NegativeMiner(pool, Bm25sSearcher(pool), table, MinerConfig())
    stats = mine_to_jsonl(miner2, qs, out, embed, progress=False)
    assert stats.queries == 3 and stats.skipped_done == 3
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["query_id"] for r in recs] == [f"q{i}" for i in range(6)]
    for r in recs:
        assert set(r) >= {"query", "pos", "neg"} and len(r["neg"]) == 3
        assert not set(r["pos"]) & set(r["neg"])
    # a fresh uninterrupted run writes the same records
    out2 = tmp_path / "u.jsonl"
    mine_to_jsonl(
        NegativeMiner(pool, Bm25sSearcher(pool), table, MinerConfig()), qs, out2, embed, progress=False
    )
    assert out2.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_load_beir_train_queries_reads_only_train(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(
        '{"_id": "p1", "title": "", "text": "đoạn một"}\n{"_id": "p2", "title": "", "text": "đoạn hai"}\n',
        encoding="utf-8",
    )
    (d / "queries.jsonl").write_text(
        '{"_id": "x-train-q1", "text": "câu một"}\n{"_id": "x-test-q1", "text": "câu hai"}\n',
        encoding="utf-8",
    )
    (d / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nx-train-q1\tp1\t1\nx-test-q1\tp2\t1\n"
    )
    qs, used = load_beir_train_queries(d, "train", "x-train-")
    assert [q.query_id for q in qs] == ["x-train-q1"] and qs[0].positives == ("đoạn một",)
    assert set(used) == {"p1"}
    with pytest.raises(FileNotFoundError):
        load_beir_train_queries(d, "dev")


def test_pool_sample_is_seeded_ordered_and_reads_gzip(tmp_path):
    """``mine --pool X.jsonl.gz --pool-sample N``: the same N records for the same seed, in file order."""
    import gzip

    records = [{"_id": str(i), "title": "", "text": f"đoạn văn số {i}"} for i in range(50)]
    path = tmp_path / "pool.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    pool = list(read_jsonl(path))
    assert pool == records
    a, b, c = sample_pool(pool, 10, seed=1), sample_pool(pool, 10, seed=1), sample_pool(pool, 10, seed=2)
    assert a == b and a != c and len(a) == 10
    assert [int(r["_id"]) for r in a] == sorted(int(r["_id"]) for r in a)
    assert sample_pool(pool, 0, seed=1) == pool and sample_pool(pool, 500, seed=1) == pool
