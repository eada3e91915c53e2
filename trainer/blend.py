"""Fit the learned blend (:mod:`search.blend`) on training questions and store it in a reranker's model dir.

    python -m trainer.blend --model-dir assets/models/viranker-small --beir var/devsets/nanibot-train-hard \\
        --split train [--holdout 0.3] [--first-stage hybrid] [--out-json var/train/blend.json]

1. Every training question goes through the real pipeline (``<first-stage>+viranker`` with the reranker's order
   alone, ``rerank_blend=1.0``, and ``blend_features=True``) → its reranked window with every stage's signals.
2. Questions are split (seeded, by query) into a fitting part and a held-back part.
3. A LightGBM ``LGBMRanker`` (lambdarank) is fitted on the fitting part; windows without a relevant passage
   teach nothing and are left out of the fit (they still count in the held-back metrics).
4. The guard: on the held-back part (split by positive passage), MRR@10 of the blend vs the first stage's order
   (pytrec_eval per query, paired t-test). The blend is written into the model dir only when it beats the first
   stage with p < 0.05 (:func:`guard_passes`); otherwise ``inference.json``'s ``learned_blend`` entry is removed
   and the report says why.

Output: ``blend.lgb.txt`` + the ``learned_blend`` entry of ``inference.json`` (features, training data, held-back
metrics), and a JSON report as the last line on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.blend import BLEND_FILE, Candidate, LearnedBlend, candidate, feature_matrix
from search.metrics import evaluate_per_query
from search.significance import paired_test

FIRST_STAGE_KEY = {"bm25": "bm25", "dense": "dense", "hybrid": "fusion"}
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15,
    "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
    "lambdarank_truncation_level": 20, "verbose": -1,
}


@dataclass
class Window:
    """One question's reranked window: candidates in first-stage order, and which are relevant."""

    qid: str
    candidates: list[Candidate]
    relevant: set[str] = field(default_factory=set)

    def labels(self) -> np.ndarray:
        return np.array([int(c.id in self.relevant) for c in self.candidates], dtype=np.int32)


def collect_windows(pipe: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                    first_stage: str, reranker_name: str, progress: bool = True) -> list[Window]:
    """Run ``<first_stage>+<reranker_name>`` for every query → its :class:`Window` (candidates ordered by the
    first stage). ``pipe``: a :class:`search.pipeline.Pipeline` built with ``rerank_blend=1.0`` and
    ``blend_features=True``."""
    qids = [q for q in queries if q in qrels]
    results = pipe.search_many([queries[q] for q in qids], f"{first_stage}+{reranker_name}", pipe.rerank_top,
                               progress=progress)
    key = FIRST_STAGE_KEY[first_stage]
    windows = []
    for qid, res in zip(qids, results, strict=True):
        hits = [h for h in res.hits if "rerank_raw" in h.stage_scores]
        hits.sort(key=lambda h: h.stage_ranks.get(key, 1 << 30))
        cands = [candidate(h.id, h.stage_scores["rerank_raw"], h.stage_scores, h.stage_ranks, h.text) for h in hits]
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        windows.append(Window(qid, cands, relevant))
    return windows


def split_windows(windows: Sequence[Window], holdout: float, seed: int) -> tuple[list[Window], list[Window]]:
    """Seeded split → (fit, held back), by **positive passage**: questions that share a relevant passage fall on
    the same side. (Split by question, 8–9 questions per Nanibot paragraph leak: the blend learns a paragraph's
    own signals, e.g. its length, and the guard passes on held-back questions about the same paragraphs while the
    test set loses; measured, docs/benchmarks.md "Learned blend".)"""
    parent = list(range(len(windows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, w in enumerate(windows):  # union questions through shared relevant passages
        for pid in w.relevant:
            if pid in owner:
                parent[find(i)] = find(owner[pid])
            else:
                owner[pid] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(windows)):
        groups.setdefault(find(i), []).append(i)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    held: set[int] = set()
    target = holdout * len(windows)
    for g in order:
        if len(held) >= target:
            break
        held.update(groups[g])
    return ([w for i, w in enumerate(windows) if i not in held], [w for i, w in enumerate(windows) if i in held])


def save_windows(path: str | Path, windows: Sequence[Window]) -> None:
    """Collected windows → JSONL (one question a line), so a refit does not score them again."""
    with open(path, "w", encoding="utf-8") as fh:
        for w in windows:
            fh.write(json.dumps({"qid": w.qid, "relevant": sorted(w.relevant), "candidates": [
                {"id": c.id, "rerank": c.rerank, "stage_scores": dict(c.stage_scores),
                 "stage_ranks": dict(c.stage_ranks), "length": c.length} for c in w.candidates]},
                ensure_ascii=False) + "\n")


def load_windows(path: str | Path) -> list[Window]:
    """Inverse of :func:`save_windows`."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out.append(Window(r["qid"], [Candidate(**c) for c in r["candidates"]], set(r["relevant"])))
    return out


def _per_query_mrr(windows: Sequence[Window], orders: Sequence[Sequence[str]]) -> dict[str, float]:
    qrels = {w.qid: {d: 1 for d in w.relevant} for w in windows}
    run = {w.qid: {pid: float(len(o) - r) for r, pid in enumerate(o)} for w, o in zip(windows, orders, strict=True)}
    per_query = evaluate_per_query(qrels, run, ["mrr@10"])
    return {q: v["mrr@10"] for q, v in per_query.items()}


def held_back_report(blend: LearnedBlend, held: Sequence[Window]) -> dict[str, Any]:
    """MRR@10 on the held-back windows: first stage, reranker alone, blend; paired tests of the blend."""
    first = [[c.id for c in w.candidates] for w in held]
    alone = [[c.id for c in sorted(w.candidates, key=lambda c: -c.rerank)] for w in held]
    blended = [[pid for pid, _ in blend.rank(w.candidates)] for w in held]
    m_first, m_alone, m_blend = (_per_query_mrr(held, o) for o in (first, alone, blended))
    qids = [w.qid for w in held]
    vs_first = paired_test([m_first[q] for q in qids], [m_blend[q] for q in qids], "mrr@10")
    vs_alone = paired_test([m_alone[q] for q in qids], [m_blend[q] for q in qids], "mrr@10")
    mean = lambda m: round(float(np.mean([m[q] for q in qids])), 4) if qids else float("nan")  # noqa: E731
    return {"queries": len(qids), "mrr@10_first_stage": mean(m_first), "mrr@10_reranker_alone": mean(m_alone),
            "mrr@10_blend": mean(m_blend), "blend_vs_first_stage": vs_first.as_dict(),
            "blend_vs_reranker_alone": vs_alone.as_dict()}


def fit_blend(fit: Sequence[Window], params: Mapping[str, Any] | None = None, seed: int = 13) -> LearnedBlend:
    """LightGBM lambdarank on the windows that hold a relevant candidate → :class:`LearnedBlend`."""
    import lightgbm

    useful = [w for w in fit if w.labels().any()]
    if len(useful) < 10:
        raise ValueError(f"only {len(useful)} training windows hold a relevant passage; need at least 10")
    x = np.vstack([feature_matrix(w.candidates) for w in useful])
    y = np.concatenate([w.labels() for w in useful])
    model = lightgbm.LGBMRanker(**{**DEFAULT_PARAMS, **(params or {}), "random_state": seed})
    from search.blend import FEATURES

    model.fit(x, y, group=[len(w.candidates) for w in useful], feature_name=list(FEATURES))
    return LearnedBlend(model.booster_, {"fit_queries": len(useful)})


def write_blend(model_dir: str | Path, blend: LearnedBlend | None, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Store (or, with ``blend`` None, remove) the learned blend in ``model_dir`` → the new inference.json dict."""
    model_dir = Path(model_dir)
    path = model_dir / "inference.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if blend is None:
        data.pop("learned_blend", None)
        (model_dir / BLEND_FILE).unlink(missing_ok=True)
    else:
        blend.meta.update(meta)
        data["learned_blend"] = blend.save(model_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return data


def run(model_dir: str | Path, beir: str | Path, split: str = "train", first_stage: str = "hybrid",
        holdout: float = 0.3, seed: int = 13, params: Mapping[str, Any] | None = None,
        extra_corpus: str | None = None, extra_limit: int | None = None, progress: bool = True,
        max_queries: int | None = None, windows_out: str | None = None) -> dict[str, Any]:
    """Collect windows on ``beir``/``split`` (a seeded sample of ``max_queries`` questions when given: scoring
    every window with the reranker is the cost), fit, guard on the held-back part, write → report dict."""
    from indexing.embedders import load_embedder
    from reranker.backends import load_reranker
    from search.eval import load_beir, open_eval_index
    from search.pipeline import Pipeline

    dataset = load_beir(beir, split=split, extra_corpus=extra_corpus, extra_limit=extra_limit)
    if max_queries is not None and max_queries < len(dataset.queries):
        keep = sorted(random.Random(seed).sample(sorted(dataset.queries), max_queries))
        dataset.queries = {q: dataset.queries[q] for q in keep}
    embedder = load_embedder("e5-small") if first_stage != "bm25" else None
    snapshot = open_eval_index(dataset, embedder, progress=progress)
    reranker = load_reranker("viranker", path=model_dir)
    pipe = Pipeline.from_snapshot(snapshot, embedder, rerankers={"viranker": reranker}, rerank_blend=1.0,
                                  blend_features=True)
    windows = collect_windows(pipe, dataset.queries, dataset.qrels, first_stage, "viranker", progress)
    if windows_out:
        save_windows(windows_out, windows)
    return fit_and_write(model_dir, windows, f"{Path(beir).name}/{split}", first_stage, holdout, seed, params)


def guard_passes(report: Mapping[str, Any], max_p: float = 0.05) -> bool:
    """Store a blend only when it beats the first stage on the held-back questions, significantly (paired t-test
    p < ``max_p``). "Not worse on average" is not enough: a blend that passed it on 90 held-back Nanibot train
    questions (+0.007, p 0.66) lost 0.019 MRR@10 on nanibot-test-hard (docs/benchmarks.md "Learned blend")."""
    vs = report["blend_vs_first_stage"]
    return vs["mean_diff"] > 0 and vs["t_pvalue"] < max_p


def fit_and_write(model_dir: str | Path, windows: Sequence[Window], trained_on: str, first_stage: str = "hybrid",
                  holdout: float = 0.3, seed: int = 13, params: Mapping[str, Any] | None = None,
                  max_p: float = 0.05) -> dict[str, Any]:
    """Split (by positive passage), fit, guard on the held-back part, write (or remove) → report dict."""
    fit, held = split_windows(windows, holdout, seed)
    blend = fit_blend(fit, params, seed)
    report = held_back_report(blend, held)
    keep = guard_passes(report, max_p)
    meta = {"trained_on": trained_on, "questions": len(windows), "split": "by positive passage",
            "first_stage": first_stage, "holdout": holdout,
            "seed": seed, "held_back": report}
    write_blend(model_dir, blend if keep else None, meta)
    return {"written": keep, "reason": None if keep else f"the blend did not beat the first stage on the held-back "
            f"questions with paired p < {max_p}: not stored", "windows": len(windows), "fit": len(fit), **meta}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.blend", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, help="ViRanker model dir to score with and write into")
    p.add_argument("--beir", required=True, help="BEIR dir of training questions (never an evaluation set)")
    p.add_argument("--split", default="train")
    p.add_argument("--first-stage", default="hybrid", choices=sorted(FIRST_STAGE_KEY))
    p.add_argument("--holdout", type=float, default=0.3, help="share of questions held back for the guard")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--extra-corpus", help="distractor paragraphs (JSONL, .gz ok) added to the index")
    p.add_argument("--extra-limit", type=int)
    p.add_argument("--max-queries", type=int, help="a seeded sample of this many questions (default: all)")
    p.add_argument("--windows-out", help="save the collected windows here (JSONL) for refits")
    p.add_argument("--windows-in", help="refit from saved windows (no scoring); --beir names what they came from")
    p.add_argument("--out-json", help="also write the report here")
    args = p.parse_args(argv)
    if not 0.05 <= args.holdout <= 0.9:
        p.error("--holdout must be in [0.05, 0.9]")
    if args.windows_in:
        report = fit_and_write(args.model_dir, load_windows(args.windows_in), f"{Path(args.beir).name}/{args.split}",
                               args.first_stage, args.holdout, args.seed)
    else:
        report = run(args.model_dir, args.beir, args.split, args.first_stage, args.holdout, args.seed,
                     extra_corpus=args.extra_corpus, extra_limit=args.extra_limit, max_queries=args.max_queries,
                     windows_out=args.windows_out)
    line = json.dumps(report, ensure_ascii=False)
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
