"""Benchmark search without diacritics: restorer accuracy/speed, and every pipeline with stripped queries.

    OMP_NUM_THREADS=2 python bench/diacritics.py [--data ../shared/data] [--distractors 10000]
        [--out var/bench/diacritics.json] [--skip-pipelines] [--pool 50000]

Part 1 — :class:`search.diacritics.DiacriticRestorer` accuracy. Gold = the dataset's queries (normalized);
input = the same queries folded (``indexing.normalize.fold``). Reported: syllable accuracy (share of
syllables restored exactly, case-insensitive), accuracy on *ambiguous* syllables (folded form has more than
one marked form in the model), query exact-match rate, restore CPU time per query (p50/p95 ms, thread CPU
time), build time (wall) and file size. Models: built from the evaluated corpus itself (what the product does: the index's passages),
from the shipped demo corpus (``assets/demo/corpus.jsonl``), and from a ``--pool`` paragraph viwiki pool;
ablations: bigram instead of trigram, no question seed.

Part 2 — every pipeline (``bm25``, ``dense``, ``hybrid`` and any available ``+reranker``) with intact queries,
with ``--strip-query-diacritics`` (routing + restoration, the product default), stripped with BM25 on the
folded field only (``routed_bm25="folded"``), and stripped but searched as typed (``as_typed``: no routing), on ``nanibot-qa`` test and ``xquad-vi+viwiki`` (same index and cache as
``bench/dense_hybrid.py``). Output: markdown tables on stdout and a JSON file.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing.normalize import fold, normalize  # noqa: E402
from search.diacritics import DiacriticRestorer  # noqa: E402
from search.eval import load_beir, open_eval_index, run_eval  # noqa: E402
from search.pipeline import Pipeline  # noqa: E402

METRICS = ("ndcg@3", "mrr@3", "ndcg@10", "mrr@10", "recall@100")
_WORD = re.compile(r"\w+")


def _jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _texts(rows: Iterable[dict]) -> Iterator[str]:
    for r in rows:
        title, text = r.get("title") or "", r.get("text") or ""
        yield f"{title}. {text}" if title else text


def restorer_accuracy(restorer: DiacriticRestorer, queries: list[str]) -> dict[str, float]:
    """Restore ``fold(q)`` for each gold query ``q`` → accuracy and timing figures."""
    ok = total = amb_ok = amb_total = exact = 0
    times = []
    for q in queries:
        gold = normalize(q)
        typed = fold(gold)
        start = time.thread_time()  # CPU time: wall time on a shared, overloaded machine says little
        out = restorer.restore(typed)
        times.append((time.thread_time() - start) * 1000)
        g, o = _WORD.findall(gold.lower()), _WORD.findall(out.lower())
        if len(g) != len(o):  # cannot happen (restoration keeps tokens); count as all wrong
            total += len(g)
            continue
        all_ok = True
        for gs, os_ in zip(g, o, strict=True):
            total += 1
            hit = gs == os_
            ok += hit
            all_ok &= hit
            if len(restorer.candidates(fold(gs))) > 1:
                amb_total += 1
                amb_ok += hit
        exact += all_ok
    return {"syllable_accuracy": round(ok / total, 4), "ambiguous_accuracy": round(amb_ok / max(amb_total, 1), 4),
            "ambiguous_share": round(amb_total / total, 4), "query_exact": round(exact / len(queries), 4),
            "ms_p50": round(float(np.percentile(times, 50)), 3), "ms_p95": round(float(np.percentile(times, 95)), 3),
            "syllables": total, "queries": len(queries)}


def build(texts: Iterable[str], tmp: Path, **kw) -> tuple[DiacriticRestorer, dict]:
    start = time.perf_counter()
    r = DiacriticRestorer.from_texts(texts, **kw)
    seconds = time.perf_counter() - start
    path = r.save(tmp / "restorer.npz")
    return r, {"build_s": round(seconds, 1), "size_mb": round(path.stat().st_size / 1e6, 2), "forms": len(r),
               "bigrams": len(r.bigram), "trigrams": len(r.trigram)}


def part1(data: Path, distractors: int, pool: int, tmp: Path) -> dict:
    xq = load_beir(data / "xquad-vi", "test", data / "viwiki" / "paragraphs.jsonl.gz", distractors)
    nb = load_beir(data / "nanibot-qa", "test")
    sets = {"nanibot-qa-test": list(nb.queries.values()), "xquad-vi": list(xq.queries.values())}
    corpora = {
        "own corpus (nanibot-qa)": (lambda: (f"{p.title}. {p.text}" for p in nb.passages), ["nanibot-qa-test"], {}),
        "own corpus (xquad-vi+viwiki)": (lambda: (f"{p.title}. {p.text}" for p in xq.passages), ["xquad-vi"], {}),
        "demo corpus (assets/demo)": (lambda: _texts(_jsonl(REPO / "assets" / "demo" / "corpus.jsonl")),
                                      list(sets), {}),
        "demo corpus, bigram": (lambda: _texts(_jsonl(REPO / "assets" / "demo" / "corpus.jsonl")), list(sets),
                                {"order": 2}),
        "demo corpus, no question seed": (lambda: _texts(_jsonl(REPO / "assets" / "demo" / "corpus.jsonl")),
                                          list(sets), {"question_seed": False}),
    }
    if pool:
        corpora[f"viwiki pool ({pool:,} paragraphs)"] = (
            lambda: _texts(itertools.islice(_jsonl(data / "viwiki" / "paragraphs.jsonl.gz"), pool)), list(sets),
            {"min_count": 2})
    out = {}
    for name, (texts, targets, kw) in corpora.items():
        print(f"restorer: {name}", file=sys.stderr)
        r, info = build(texts(), tmp, **kw)
        info["accuracy"] = {t: restorer_accuracy(r, sets[t]) for t in targets}
        out[name] = info
    return out


def part2(data: Path, distractors: int, only: str | None = None) -> dict:
    from reranker.backends import available_rerankers
    from search.embedders import load_embedder

    embedder = load_embedder("e5-small")
    rerankers = [n for n, s in available_rerankers().items() if s.startswith("available")]
    pipelines = ["bm25", "dense", "hybrid"] + [f"hybrid+{r}" for r in rerankers]
    cases = {"nanibot-qa-test": lambda: load_beir(data / "nanibot-qa", "test"),
             "xquad-vi+viwiki": lambda: load_beir(data / "xquad-vi", "test", data / "viwiki" / "paragraphs.jsonl.gz",
                                                  distractors)}
    modes = {"intact": {}, "stripped (routed: restored query)": {"strip_diacritics": True},
             "stripped, BM25 on the folded field only": {"strip_diacritics": True, "_routed_bm25": "folded"},
             "stripped, as typed (no routing)": {"strip_diacritics": True, "as_typed": True}}
    out: dict = {}
    for label, ds in cases.items():
        if only and label != only:
            continue
        ds = ds()
        out[label] = {}
        with open_eval_index(ds, embedder) as snap:
            restorer = DiacriticRestorer.for_generation(snap.path)
            shared = OrderedDict()  # query vectors shared by all runs on this index
            for pipeline in pipelines:
                for mode, kw in modes.items():
                    kw = dict(kw)
                    pipe_kw = {"routed_bm25": kw.pop("_routed_bm25")} if "_routed_bm25" in kw else {}
                    pipe = Pipeline.from_snapshot(snap, embedder, restorer=restorer, query_cache=shared,
                                                  query_cache_size=100_000, **pipe_kw)
                    rep = run_eval(ds, pipeline, pipe, progress=False, **kw)
                    out[label].setdefault(pipeline, {})[mode] = {k: rep.metrics[k] for k in METRICS}
                    print(f"{label} {pipeline} {mode}: mrr@10 {rep.metrics['mrr@10']}", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--distractors", type=int, default=10000)
    ap.add_argument("--pool", type=int, default=50000, help="viwiki paragraphs for the large restorer (0: skip)")
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "diacritics.json")
    ap.add_argument("--skip-pipelines", action="store_true")
    ap.add_argument("--skip-restorer", action="store_true")
    ap.add_argument("--only", help="pipelines part: only this dataset label")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    if not args.skip_restorer:
        report["restorer"] = part1(args.data, args.distractors, args.pool, args.out.parent)
    if not args.skip_pipelines:
        report["pipelines"] = part2(args.data, args.distractors, args.only)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    for name, info in report.get("restorer", {}).items():
        for target, acc in info["accuracy"].items():
            print(f"| {name} | {target} | {acc['syllable_accuracy']:.4f} | {acc['ambiguous_accuracy']:.4f} | "
                  f"{acc['query_exact']:.3f} | {acc['ms_p50']:.2f} / {acc['ms_p95']:.2f} | {info['build_s']} | "
                  f"{info['size_mb']} |")
    for label, per in report.get("pipelines", {}).items():
        print(f"\n### {label}\n\n| pipeline | queries | " + " | ".join(METRICS) + " |\n|---|---|" + "---|" * len(METRICS))
        for pipeline, modes in per.items():
            for mode, m in modes.items():
                print(f"| {pipeline} | {mode} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    print(json.dumps({"out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
