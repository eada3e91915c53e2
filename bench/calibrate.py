"""Fit a model's score calibration (Platt) on held-back questions and store it in its ``inference.json``.

Held-back questions: the nanibot-qa **train** questions that are not in the model's training file(s)
(``--exclude``, default ``var/train/triplets-hybrid.jsonl``: the miner left them out, so the model never saw
them), each against the first stage's top ``--k`` candidates (the project's BM25 over the nanibot-qa corpus),
labelled by the train qrels. Never XQuAD-vi or the Nanibot test split: those stay for evaluation.

The questions are split (seeded, by positive passage so that questions about one paragraph stay together)
into a fitting half and a checking half; the JSON reports log-loss and calibration on the checking half
(``sigmoid(raw)`` vs the fit), then the stored calibration is refitted on all held-back pairs. Each query's
candidates are scored in one call, as the search pipeline does, with the model dir's inference settings.

    OMP_NUM_THREADS=2 python bench/calibrate.py assets/models/viranker-small --write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("VIRANKER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def held_back_queries(beir: Path, exclude_files: list[Path]) -> list:
    """nanibot-qa train questions (``trainer.mine.MiningQuery``) whose text is in none of ``exclude_files``."""
    from trainer.mine import load_beir_train_queries, read_jsonl

    seen: set[str] = set()
    for f in exclude_files:
        if not f.is_file():
            raise FileNotFoundError(f"training file {f} not found: the held-back questions are defined against it")
        seen.update(str(r.get("query", "")) for r in read_jsonl(f))
    queries, _ = load_beir_train_queries(beir, "train")
    return [q for q in queries if q.query not in seen]


def split_by_passage(queries: list, seed: int) -> tuple[list, list]:
    """Seeded halves; questions sharing a positive passage land in the same half."""
    groups: dict[str, list] = {}
    for q in queries:
        groups.setdefault(sorted(q.positive_ids)[0], []).append(q)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    fit, check = [], []
    for k in keys:
        (fit if len(fit) <= len(check) else check).extend(groups[k])
    return fit, check


def score_queries(scorer, search, queries: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw scores, 0/1 labels) over every query's top-k candidates."""
    raw, labels = [], []
    for q in queries:
        hits = search(q.query, k)
        texts = [t for _, t in hits]
        raw.extend(scorer.score(q.query, texts).tolist())
        labels.extend(int(pid in q.positive_ids) for pid, _ in hits)
    return np.asarray(raw, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 5) -> list[dict]:
    """Per probability bin: pairs, mean predicted, observed rate."""
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (probs >= lo) & ((probs < hi) if hi < 1 else (probs <= hi))
        if m.any():
            out.append({"bin": [round(lo, 2), round(hi, 2)], "pairs": int(m.sum()),
                        "mean_p": round(float(probs[m].mean()), 3), "rate": round(float(labels[m].mean()), 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--beir", type=Path, default=DATA / "nanibot-qa")
    ap.add_argument("--exclude", type=Path, action="append", help="training file(s); default "
                    "var/train/triplets-hybrid.jsonl")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--write", action="store_true", help="store the calibration in the dir's inference.json")
    args = ap.parse_args(argv)

    from reranker.backends import sigmoid
    from reranker.calibration import fit_platt, log_loss, scorer_signature
    from reranker.inference import INFERENCE_NAME, ViRankerScorer, read_inference_settings
    from trainer.mine import ProjectBM25Searcher, read_jsonl

    root = Path(__file__).resolve().parents[1]
    exclude = args.exclude or [root / "var" / "train" / "triplets-hybrid.jsonl"]
    queries = held_back_queries(args.beir, exclude)
    fit_q, check_q = split_by_passage(queries, args.seed)
    scorer = ViRankerScorer.from_pretrained(args.model_dir)
    settings = read_inference_settings(args.model_dir)
    corpus = list(read_jsonl(args.beir / "corpus.jsonl"))
    text = {str(r["_id"]): r["text"] for r in corpus}
    with tempfile.TemporaryDirectory() as tmp:
        bm25 = ProjectBM25Searcher(corpus, index_name="calibration", root=tmp)

        def search(query: str, k: int) -> list[tuple[str, str]]:
            return [(pid, text[pid]) for pid, _ in bm25.search(query, k)]

        raw_fit, y_fit = score_queries(scorer, search, fit_q, args.k)
        raw_chk, y_chk = score_queries(scorer, search, check_q, args.k)
    half = fit_platt(raw_fit, y_fit)
    p_sig, p_cal = sigmoid(raw_chk).astype(np.float64), half(raw_chk).astype(np.float64)
    meta = {"data": f"{args.beir.name} train questions not in {', '.join(p.name for p in exclude)} "
                    f"x BM25 top-{args.k} over its corpus (held back from training; never the test splits)",
            "questions": len(queries), "seed": args.seed,
            "scorer": scorer_signature(scorer.served_layer, bool(settings.get("quantize", False)))}
    final = fit_platt(np.concatenate([raw_fit, raw_chk]), np.concatenate([y_fit, y_chk]), meta)
    res = {
        "model_dir": str(args.model_dir), "held_back_questions": len(queries),
        "fit_questions": len(fit_q), "check_questions": len(check_q),
        "check_pairs": int(len(y_chk)), "check_positives": int(y_chk.sum()),
        "check_log_loss_sigmoid": round(log_loss(p_sig, y_chk), 4),
        "check_log_loss_calibrated": round(log_loss(p_cal, y_chk), 4),
        "check_reliability_calibrated": reliability(p_cal, y_chk),
        "check_share_sigmoid_above_0.99": round(float((p_sig > 0.99).mean()), 3),
        "raw_range": [round(float(np.min(raw_chk)), 3), round(float(np.max(raw_chk)), 3)],
        "half_fit": {"a": round(half.a, 5), "b": round(half.b, 5)},
        "calibration": final.to_dict(),
    }
    if args.write:
        path = args.model_dir / INFERENCE_NAME
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        data["calibration"] = final.to_dict()
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        res["written"] = str(path)
    print(json.dumps(res, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
