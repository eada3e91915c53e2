"""Scores of a model dir before and after ``python -m reranker.compact``: the same pairs through every loader.

    OMP_NUM_THREADS=2 python bench/compact_parity.py OLD_DIR NEW_DIR [--pairs 120] [--onnx] [--crossencoder]

Pairs: nanibot-qa test questions (``assets/benchmarks/nanibot-qa-test``) x passages (each question's judged
passage and a seeded random other one, alternately). For ``quantize`` False and True the scorer of each dir
runs at its ``inference.json`` exit layer; reported: max |Δ logit| new vs old, and the Platt calibration's max
|Δ probability| (the dir's own ``inference.json`` parameters on both). ``--crossencoder``: sentence-transformers
``CrossEncoder(NEW_DIR, trust_remote_code=True)`` vs our fp32 scorer on NEW_DIR. ``--onnx``: the fp32 ONNX graph
of NEW_DIR (:class:`reranker.onnx_export.OnnxScorer`) vs our fp32 scorer. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "assets" / "benchmarks" / "nanibot-qa-test"


def load_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (question, passage) pairs: even i → the judged passage, odd i → a random other one."""
    corpus = {j["_id"]: j["text"] for j in map(json.loads, (DATA / "corpus.jsonl").open(encoding="utf-8"))}
    queries = {j["_id"]: j["text"] for j in map(json.loads, (DATA / "queries.jsonl").open(encoding="utf-8"))}
    qrels = next((DATA / "qrels").glob("*.tsv")).read_text(encoding="utf-8").splitlines()[1:]
    rows = [r.split("\t")[:2] for r in qrels if r.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    ids = sorted(corpus)
    pairs = []
    for i, (qid, did) in enumerate(rows[:n]):
        if i % 2:
            did = rng.choice([x for x in ids if x != did])
        pairs.append((queries[qid], corpus[did]))
    return pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--pairs", type=int, default=120)
    p.add_argument("--onnx", action="store_true")
    p.add_argument("--crossencoder", action="store_true")
    args = p.parse_args(argv)

    from reranker.calibration import read_calibration
    from reranker.inference import ViRankerScorer, read_inference_settings

    pairs = load_pairs(args.pairs)
    qs, ps = [q for q, _ in pairs], [d for _, d in pairs]
    res: dict = {"pairs": len(pairs), "old": args.old, "new": args.new}
    cal = read_calibration(read_inference_settings(args.new))
    fp32_new = None
    for quantize in (False, True):
        old = ViRankerScorer.from_pretrained(args.old, quantize=quantize).score_pairs(qs, ps)
        new_scorer = ViRankerScorer.from_pretrained(args.new, quantize=quantize)
        new = new_scorer.score_pairs(qs, ps)
        tag = "int8" if quantize else "fp32"
        res[f"exit_layer_{tag}"] = new_scorer.exit_layer
        res[f"max_abs_logit_diff_{tag}"] = float(np.abs(new - old).max())
        res[f"logit_range_{tag}"] = [float(old.min()), float(old.max())]
        if cal is not None:
            res[f"max_abs_calibrated_diff_{tag}"] = float(np.abs(cal(new) - cal(old)).max())
        if not quantize:
            fp32_new = new
    if args.crossencoder:
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(args.new, trust_remote_code=True, device="cpu", local_files_only=True)
        full = ViRankerScorer.from_pretrained(args.new, quantize=False, exit_layer=None)
        tok = full.tokenizer  # only pairs both sides see whole (no truncation: the two truncate differently)
        fit = [(q, d) for q, d in pairs if len(tok(q)["input_ids"]) - 2 <= full.max_query_length
               and len(tok(q, d)["input_ids"]) <= full.max_length]
        got = ce.predict(fit, batch_size=16)
        ours = full.score_pairs([q for q, _ in fit], [d for _, d in fit])
        res["crossencoder_pairs"] = len(fit)
        res["crossencoder_max_abs_diff"] = float(np.abs(got - ours).max())
    if args.onnx:
        import os

        from reranker.onnx_export import OnnxScorer

        with tempfile.TemporaryDirectory() as tmp:
            os.environ["VIRANKER_ONNX_CACHE"] = tmp
            onnx = OnnxScorer.from_pretrained(args.new, quantize=False).score_pairs(qs, ps)
        res["onnx_fp32_max_abs_diff"] = float(np.abs(onnx - fp32_new).max())
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
