"""The training set of the learned blend (trainer.blend): Nanibot **train** questions against their paragraphs plus
the viwiki distractors of the hard dev sets, so the blend is fitted where the first stage has to work.

    python bench/build_blend_trainset.py [--data ../shared/data] [--devsets var/devsets] \\
        [--out var/train/nanibot-train-blend]

Corpus: the Nanibot paragraphs named by ``qrels/train.tsv`` (never a test paragraph) + every ``vw-*`` paragraph of
``<devsets>/*-hard/corpus.jsonl`` (viwiki text only: no XQuAD-vi or Nanibot test passage, and their vectors are in
the embedding cache already). Queries: the train split only. Prints one JSON line last (sizes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--devsets", type=Path, default=Path("var/devsets"))
    p.add_argument("--out", type=Path, default=Path("var/train/nanibot-train-blend"))
    args = p.parse_args(argv)
    nb = args.data / "nanibot-qa"
    lines = (nb / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    qrels = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    train_pids = {pid for _, pid, _ in qrels}
    train_qids = {qid for qid, _, _ in qrels}
    corpus = [r for r in read_jsonl(nb / "corpus.jsonl") if r["_id"] in train_pids]
    seen = {r["_id"] for r in corpus}
    for dev in sorted(args.devsets.glob("*-hard/corpus.jsonl")):
        for r in read_jsonl(dev):
            if str(r["_id"]).startswith("vw-") and r["_id"] not in seen:
                seen.add(r["_id"])
                corpus.append(r)
    if len(corpus) == len(train_pids):
        print(f"error: no distractors found under {args.devsets} (build the hard dev sets first)", file=sys.stderr)
        return 2
    queries = [r for r in read_jsonl(nb / "queries.jsonl") if r["_id"] in train_qids]
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(args.out / name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (args.out / "qrels" / "train.tsv").write_text("\n".join(["query-id\tcorpus-id\tscore"] + ["\t".join(q) for q in qrels])
                                                  + "\n", encoding="utf-8")
    print(json.dumps({"out": str(args.out), "passages": len(corpus), "train_paragraphs": len(train_pids),
                      "distractors": len(corpus) - len(train_pids), "queries": len(queries)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
