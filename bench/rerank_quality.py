"""Reranker quality on fixed first-stage candidates: a ViRanker model dir or trainer checkpoint, per exit layer,
alone and blended with the first stage, with queries as written and with their diacritics stripped.

    python bench/rerank_quality.py MODEL [MODEL ...] --candidates var/train/nanibot-test-top20.jsonl [--json]

``MODEL`` is a ``from_pretrained`` directory (e.g. ``assets/models/viranker-small``), a trainer checkpoint
(``runs/<run>/checkpoints/final.ckpt``) or ``e5-zero-shot`` (the untrained starting point). Candidates come from ``python -m trainer candidates`` (per query its
first-stage top-k with scores). For every model and head (``exit_layer``) the script reports MRR@10 and
NDCG@10 (pytrec_eval via ``trainer.module.ranking_metrics``) of

* ``first_stage`` — the candidates' own order,
* ``rerank`` — the reranker's order alone,
* ``blend@a`` — ``search.pipeline.blend_with_first_stage`` with reranker weight ``a`` (``--alphas``),

each for the queries as written and (``--strip``, default on) with diacritics removed by
``indexing.normalize.fold`` (the reranker then sees the folded query, the first stage keeps its order: this
isolates the reranker's robustness). Scoring uses ``reranker.inference.ViRankerScorer`` exactly as the app.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexing.normalize import fold  # noqa: E402
from reranker.factory import RerankerModel  # noqa: E402
from reranker.factory import load_model as factory_load_model  # noqa: E402
from reranker.inference import ViRankerScorer  # noqa: E402
from reranker.tokenizer import load_tokenizer  # noqa: E402
from reranker.vocab import VocabMap  # noqa: E402
from search.pipeline import blend_with_first_stage  # noqa: E402
from trainer.data import load_candidates  # noqa: E402
from trainer.module import ranking_metrics  # noqa: E402


def load_model(path: Path) -> tuple[RerankerModel, VocabMap | None]:
    """A model dir, a trainer checkpoint, or an untrained starting point → (eval-mode model, vocab map or None):
    ``e5-zero-shot`` (the joint recipe: e5-small's first 6 layers, RoPE, pair head, exit at 3) or
    ``e5-gated-zero-shot`` (the gated start: all 12 e5 layers, closed cross gates, exit at 6; scores = e5's
    own cosine)."""
    from reranker.e5_init import build_from_e5

    if str(path) == "e5-zero-shot":
        return build_from_e5(num_layers=6, rope=True, pooling="pair", exit_layers=(3,), max_length=160,
                             max_query_length=32).eval(), None
    if str(path) == "e5-gated-zero-shot":
        return build_from_e5(num_layers=12, architecture="gated", exit_layers=(6,), max_length=160,
                             max_query_length=32).eval(), None
    if path.is_dir():
        return factory_load_model(path).eval(), VocabMap.load(path)
    from trainer.export import load_checkpoint_model

    model, _ = load_checkpoint_model(path)
    return model.eval(), None


def metrics(qrels: dict, run: dict) -> dict[str, float]:
    """MRR@10 / NDCG@10 (``trainer.module.ranking_metrics``, pytrec_eval), rounded for the report."""
    return {k: round(v, 4) for k, v in ranking_metrics(qrels, run, 10).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--candidates", type=Path, default=ROOT / "var/train/nanibot-test-top20.jsonl")
    p.add_argument("--alphas", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    p.add_argument("--no-strip", action="store_true", help="skip the stripped-diacritics pass")
    p.add_argument("--max-length", type=int, default=None, help="pair length (default: the model's)")
    p.add_argument("--long-passages", default=None, choices=["windows", "truncate"],
                   help="default: the model's own (windows for joint, truncate for gated)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantization (as the scorer's option)")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries of the candidates file")
    p.add_argument("--layers", type=int, nargs="*", default=None, help="heads to score (default: all)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    recs = load_candidates(args.candidates, args.limit)
    qrels = {r["query_id"]: {pid: 1 for pid in r["positives"]} for r in recs}
    first = {r["query_id"]: [(c["id"], float(c.get("score", -i))) for i, c in enumerate(r["candidates"])]
             for r in recs}
    tok = load_tokenizer()
    out: dict = {"candidates": str(args.candidates), "queries": len(recs),
                 "pairs": sum(len(r["candidates"]) for r in recs),
                 "first_stage": metrics(qrels, {q: dict(v) for q, v in first.items()}), "models": {}}
    variants = [("as_written", lambda q: q)] + ([] if args.no_strip else [("stripped", fold)])
    for path in args.models:
        model, vmap = load_model(path)
        res: dict = {}
        for layer in args.layers or model.config.all_exit_layers:
            scorer = ViRankerScorer(model, tok, vmap, exit_layer=layer, num_threads=args.threads,
                                    max_length=args.max_length, long_passages=args.long_passages,
                                    quantize=args.quantize)
            for vname, qfun in variants:
                t = time.perf_counter()
                bar = tqdm(recs, desc=f"{path.name} L{layer} {vname}", unit="q", file=sys.stderr)
                scores = {r["query_id"]: scorer.score(qfun(r["query"]), [c["text"] for c in r["candidates"]])
                          for r in bar}
                secs = time.perf_counter() - t
                rr = {r["query_id"]: [(c["id"], float(s)) for c, s in zip(r["candidates"], scores[r["query_id"]],
                                                                          strict=True)] for r in recs}
                row = {"rerank": metrics(qrels, {q: dict(v) for q, v in rr.items()}),
                       "pairs_per_s": round(out["pairs"] / secs, 1)}
                for a in args.alphas:
                    row[f"blend@{a}"] = metrics(qrels, {q: dict(blend_with_first_stage(first[q], rr[q], a))
                                                        for q in rr})
                res[f"L{layer}/{vname}"] = row
                print(f"{path} L{layer} {vname}: {json.dumps(row)}", file=sys.stderr, flush=True)
        out["models"][str(path)] = res
    print(json.dumps(out, ensure_ascii=False) if args.json else json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
