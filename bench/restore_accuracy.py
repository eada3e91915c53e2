"""Accuracy of the diacritic restorer on common question words in context, and of its k-best alternatives.

    OMP_NUM_THREADS=1 python bench/restore_accuracy.py [--corpus assets/demo/corpus.jsonl] [--k 3]
        [--cases assets/diacritics/question_words.txt] [--order 3]

Builds :class:`indexing.restorer.DiacriticRestorer` from the corpus the way an index build does
(:func:`indexing.restorer.restorer_text` per passage), folds every case of ``--cases`` (correctly marked
queries, one a line) and restores it. Reports syllable accuracy (over the syllables that lost marks), query
accuracy (every syllable right) and top-k query accuracy (the right query among :meth:`restore_k`'s ``k``
alternatives), plus the queries still wrong. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing.jsonl import read_jsonl  # noqa: E402
from indexing.normalize import fold, normalize  # noqa: E402
from indexing.restorer import DiacriticRestorer, restorer_text  # noqa: E402

CASES = REPO / "assets" / "diacritics" / "question_words.txt"
DEMO_CORPUS = REPO / "assets" / "demo" / "corpus.jsonl"


def load_cases(path: Path = CASES) -> list[str]:
    """Correctly marked queries (lower-case, NFC), ``#`` comments and blank lines skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [normalize(s.strip()).lower() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def corpus_restorer(corpus: Path = DEMO_CORPUS, **kw) -> DiacriticRestorer:
    """The restorer an index build makes from ``corpus`` (BEIR JSONL)."""
    return DiacriticRestorer.from_texts((restorer_text(r.get("title"), r.get("text")) for r in read_jsonl(corpus)),
                                        **kw)


def accuracy(restorer: DiacriticRestorer, cases: list[str], k: int = 3) -> dict:
    """→ ``{"syllable_acc", "query_acc", "topk_acc", "k", "n_queries", "n_syllables", "wrong": [...]}``."""
    syl_ok = syl_n = q_ok = topk_ok = 0
    wrong = []
    for gold in cases:
        folded = fold(gold)
        alts = [a.lower() for a in restorer.restore_k(folded, k)]
        best = alts[0] if alts else folded
        g, b = gold.split(), best.split()
        for gs, bs, fs in zip(g, b, folded.split(), strict=True):
            if gs != fs:  # the syllable lost marks when folded
                syl_n += 1
                syl_ok += gs == bs
        q_ok += best == gold
        topk_ok += gold in alts
        if best != gold:
            wrong.append({"gold": gold, "got": best, "in_top_k": gold in alts})
    n = len(cases)
    return {"syllable_acc": round(syl_ok / max(syl_n, 1), 4), "query_acc": round(q_ok / max(n, 1), 4),
            "topk_acc": round(topk_ok / max(n, 1), 4), "k": k, "n_queries": n, "n_syllables": syl_n,
            "wrong": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEMO_CORPUS)
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--order", type=int, default=3)
    args = ap.parse_args()
    t0 = time.time()
    restorer = corpus_restorer(args.corpus, order=args.order)
    built = time.time() - t0
    res = accuracy(restorer, load_cases(args.cases), args.k)
    for w in res["wrong"]:
        print(f"  wrong: {w['got']!r} (gold {w['gold']!r}; in top-{args.k}: {w['in_top_k']})")
    print(json.dumps({"bench": "restore_accuracy", "corpus": args.corpus.name, "order": args.order,
                      **{k: v for k, v in res.items() if k != "wrong"}, "build_s": round(built, 1),
                      "restorer": repr(restorer)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
