"""Benchmark the lexical retriever: Whoosh BM25 variants against a plain ``bm25s`` syllable baseline.

    OMP_NUM_THREADS=1 python bench/bm25_variants.py [--data ../shared/data] [--distractors 10000]

Datasets (BEIR layout under ``--data``; bench scripts may read ../shared, the app never does):

- ``xquad-vi+viwiki``: the 240 XQuAD-vi paragraphs plus ``--distractors`` Vietnamese Wikipedia paragraphs:
  the first ones in ``viwiki/paragraphs.jsonl.gz`` file order whose ``_id`` is not in the shipped demo
  corpus (``assets/demo/wiki_ids.txt``). No XQuAD-vi paragraph is in viwiki, so distractors are unjudged
  negatives. 1,190 test queries.
- ``nanibot-qa-test``: the nanibot-qa corpus (all 179 paragraphs of both splits, as shipped) and its 243 test
  queries (``qrels/test.tsv``).

Every document goes through the product's ingestion (``indexing.corpus.load_corpus``: normalization, and
splitting into passages of <= ``--max-words`` words). Retrieval runs on passages; a document's score is its
best passage's (MaxP), and runs are cut to 100 documents.

Variants (one Whoosh index per dataset, built with the ``words`` field so all variants share statistics):
``exact`` (syllables with diacritics), ``folded`` (syllables without), ``exact+folded`` (the product default:
exact boosted x2 OR folded), ``auto`` (``folded`` for a query without any diacritic, else the default),
``words`` (underthesea word segmentation, ``normalize.words``), and ``bm25s``
(``bm25s.BM25()`` defaults — Lucene BM25, k1=1.5, b=0.75 — over ``normalize.syllables(title + text)``).
Each is also run with the queries stripped of diacritics (``fold``), which is how many people type.

Metrics with pytrec_eval: NDCG@3/@10 (``ndcg_cut_3``/``ndcg_cut_10``), Recall@100 (``recall_100``), and
MRR@k as ``recip_rank`` on the run truncated to depth k (trec_eval's recip_rank has no cutoff). Run scores
are replaced by ``depth - rank`` so that trec_eval's tie-breaking cannot reorder a system's ranking.
Throughput is passages indexed per second (tokenization included), as wall clock and per CPU-second (the
latter is what to compare on a shared, loaded machine); latency is per query, top-150 passages, one query at a
time, p50/p95 wall-clock milliseconds, plus mean CPU ms per query. Output: markdown tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pytrec_eval  # noqa: E402

from indexing.bm25 import BM25Index  # noqa: E402
from indexing.corpus import Passage, load_corpus  # noqa: E402
from indexing.normalize import fold, syllables  # noqa: E402

PASSAGE_DEPTH = 150  # passages retrieved per query before MaxP aggregation
DOC_DEPTH = 100
SearchFn = Callable[[str, int], list[tuple[str, float]]]


# ------------------------------------------------------------------------------------------------- data
def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    return qrels


def distractors(data: Path, n: int) -> list[dict]:
    """First ``n`` viwiki paragraphs (file order) whose id is not in the shipped demo corpus."""
    demo_ids = set((REPO / "assets" / "demo" / "wiki_ids.txt").read_text(encoding="utf-8").split())
    out: list[dict] = []
    with gzip.open(data / "viwiki" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            if len(out) >= n:
                break
            d = json.loads(line)
            if d["_id"] not in demo_ids:
                out.append(d)
    return out


def load_dataset(name: str, data: Path, n_distractors: int, tmp: Path) -> tuple[list[dict], dict, dict]:
    """→ (corpus rows, queries {qid: text}, qrels)."""
    if name == "xquad-vi+viwiki":
        corpus = _read_jsonl(data / "xquad-vi" / "corpus.jsonl") + distractors(data, n_distractors)
        queries = {q["_id"]: q["text"] for q in _read_jsonl(data / "xquad-vi" / "queries.jsonl")}
        qrels = _read_qrels(data / "xquad-vi" / "qrels" / "test.tsv")
    elif name == "nanibot-qa-test":
        corpus = _read_jsonl(data / "nanibot-qa" / "corpus.jsonl")
        qrels = _read_qrels(data / "nanibot-qa" / "qrels" / "test.tsv")
        queries = {
            q["_id"]: q["text"]
            for q in _read_jsonl(data / "nanibot-qa" / "queries.jsonl")
            if q["_id"] in qrels
        }
    else:
        raise ValueError(name)
    return corpus, queries, qrels


# ---------------------------------------------------------------------------------------------- systems
class Bm25sBaseline:
    """Plain bm25s (defaults) over normalized syllables of title + text."""

    def __init__(self, passages: list[Passage]) -> None:
        import bm25s

        self.ids = [p.id for p in passages]
        tokens = [syllables(f"{p.title}\n{p.text}") for p in passages]
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        toks = syllables(query)
        if not toks:
            return []
        docs, scores = self.retriever.retrieve([toks], k=min(k, len(self.ids)), show_progress=False)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def run_queries(
    search: SearchFn, queries: dict[str, str], doc_of: dict[str, str]
) -> tuple[dict, list[float]]:
    """→ (run {qid: {doc_id: rank-based score}} at depth DOC_DEPTH, per-query latencies in ms)."""
    run: dict[str, dict[str, float]] = {}
    lat: list[float] = []
    for qid, text in queries.items():
        t = time.perf_counter()
        hits = search(text, PASSAGE_DEPTH)
        lat.append((time.perf_counter() - t) * 1000)
        ranked: list[str] = []
        seen: set[str] = set()
        for pid, _ in hits:  # hits are best-first, so the first passage of a doc is its best (MaxP)
            d = doc_of[pid]
            if d not in seen:
                seen.add(d)
                ranked.append(d)
            if len(ranked) == DOC_DEPTH:
                break
        run[qid] = {d: float(DOC_DEPTH - r) for r, d in enumerate(ranked)}
    return run, lat


def evaluate(run: dict, qrels: dict) -> dict[str, float]:
    """NDCG@3, MRR@3, NDCG@10, MRR@10, Recall@100 (means over judged queries)."""
    qrels = {q: r for q, r in qrels.items() if q in run}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_3", "ndcg_cut_10", "recall_100"}).evaluate(run)
    out = {
        "NDCG@3": statistics.fmean(v["ndcg_cut_3"] for v in full.values()),
        "NDCG@10": statistics.fmean(v["ndcg_cut_10"] for v in full.values()),
        "Recall@100": statistics.fmean(v["recall_100"] for v in full.values()),
    }
    for k in (3, 10):
        cut = {q: dict(sorted(d.items(), key=lambda x: -x[1])[:k]) for q, d in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        out[f"MRR@{k}"] = statistics.fmean(v["recip_rank"] for v in rr.values())
    return {k: out[k] for k in ("NDCG@3", "MRR@3", "NDCG@10", "MRR@10", "Recall@100")}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ------------------------------------------------------------------------------------------------- main
def bench_dataset(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    corpus, queries, qrels = load_dataset(name, args.data, args.distractors, tmp)
    src = tmp / f"{name}.jsonl"
    src.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus), encoding="utf-8")
    passages, report = load_corpus(src, max_words=args.max_words)
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    doc_of = {p.id: p.doc_id for p in passages}
    print(
        f"\n## {name}: {report.documents:,} documents -> {len(passages):,} passages, {len(queries):,} queries",
        file=sys.stderr,
    )

    def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
        """→ (result, wall passages/s, CPU passages/s); CPU time is robust to other load on the machine."""
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, len(passages) / (time.perf_counter() - t), len(passages) / (time.process_time() - c)

    default_ix, bm25_rate, bm25_cpu = timed(lambda: BM25Index.build(tmp / f"{name}-bm25", passages))
    default_ix.close()
    print(f"whoosh exact+folded build: {bm25_rate:,.0f} passages/s ({bm25_cpu:,.0f}/s CPU)", file=sys.stderr)
    ix, words_rate, words_cpu = timed(lambda: BM25Index.build(tmp / f"{name}-bm25w", passages, words=True))
    print(f"whoosh +words build: {words_rate:,.0f} passages/s ({words_cpu:,.0f}/s CPU)", file=sys.stderr)
    baseline, bm25s_rate, bm25s_cpu = timed(lambda: Bm25sBaseline(passages))

    systems: dict[str, tuple[SearchFn, float, float]] = {
        "whoosh exact": (lambda q, k: ix.search(q, k, field="exact"), bm25_rate, bm25_cpu),
        "whoosh folded": (lambda q, k: ix.search(q, k, field="folded"), bm25_rate, bm25_cpu),
        "whoosh exact+folded (default)": (lambda q, k: ix.search(q, k, field="both"), bm25_rate, bm25_cpu),
        "whoosh auto": (lambda q, k: ix.search(q, k, field="auto"), bm25_rate, bm25_cpu),
        "whoosh words": (lambda q, k: ix.search(q, k, field="words"), words_rate, words_cpu),
        "bm25s syllables (baseline)": (baseline.search, bm25s_rate, bm25s_cpu),
    }
    rows = []
    for qmode in ("as typed", "no diacritics"):
        qs = queries if qmode == "as typed" else {q: fold(t) for q, t in queries.items()}
        for sys_name, (fn, rate, cpu_rate) in systems.items():
            c = time.process_time()
            run, lat = run_queries(fn, qs, doc_of)
            cpu_ms = (time.process_time() - c) * 1000 / max(1, len(qs))
            m = evaluate(run, qrels)
            rows.append(
                {
                    "dataset": name,
                    "queries": qmode,
                    "system": sys_name,
                    **{k: round(v, 4) for k, v in m.items()},
                    "index_passages_per_s": round(rate, 1),
                    "index_cpu_passages_per_s": round(cpu_rate, 1),
                    "p50_ms": round(_pct(lat, 50), 2),
                    "p95_ms": round(_pct(lat, 95), 2),
                    "cpu_ms_per_query": round(cpu_ms, 2),
                }
            )
            print(
                f"  {qmode:14} {sys_name:32} NDCG@10 {m['NDCG@10']:.4f}  MRR@10 {m['MRR@10']:.4f}  "
                f"R@100 {m['Recall@100']:.4f}  p50 {_pct(lat, 50):.1f} ms",
                file=sys.stderr,
            )
    ix.close()
    return {
        "dataset": name,
        "documents": report.documents,
        "passages": len(passages),
        "queries": len(queries),
        "rows": rows,
    }


def markdown(results: list[dict]) -> str:
    cols = [
        "NDCG@3",
        "MRR@3",
        "NDCG@10",
        "MRR@10",
        "Recall@100",
        "index_passages_per_s",
        "index_cpu_passages_per_s",
        "p50_ms",
        "p95_ms",
        "cpu_ms_per_query",
    ]
    heads = [
        "NDCG@3",
        "MRR@3",
        "NDCG@10",
        "MRR@10",
        "R@100",
        "index p/s",
        "index p/CPU-s",
        "p50 ms",
        "p95 ms",
        "CPU ms/query",
    ]
    out = []
    for res in results:
        out.append(
            f"\n### {res['dataset']} ({res['documents']:,} docs, {res['passages']:,} passages, "
            f"{res['queries']:,} queries)\n"
        )
        out.append("| queries | system | " + " | ".join(heads) + " |")
        out.append("|---|---|" + "---:|" * len(heads))
        for r in res["rows"]:
            out.append(
                f"| {r['queries']} | {r['system']} | "
                + " | ".join(
                    f"{r[c]:.4f}" if c in heads or c.startswith(("NDCG", "MRR", "Recall")) else f"{r[c]:,}"
                    for c in cols
                )
                + " |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--distractors", type=int, default=10_000)
    parser.add_argument("--max-words", type=int, default=250)
    parser.add_argument("--datasets", nargs="+", default=["xquad-vi+viwiki", "nanibot-qa-test"])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bm25-bench-") as tmp:
        results = [bench_dataset(name, args, Path(tmp)) for name in args.datasets]
    print(markdown(results))
    summary = {
        "bench": "bm25_variants",
        "seconds": round(time.time() - started, 1),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "distractors": args.distractors,
        "max_words": args.max_words,
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
