"""MRR@10 / NDCG@10 per source domain of the judged passage, from ``search.eval --per-query-out`` files.

    python -m search.eval ../shared/data/nanibot-qa --pipeline bm25 --per-query-out var/domain/bm25.json
    ...
    python bench/eval_by_domain.py ../shared/data/nanibot-qa var/domain/bm25.json var/domain/hybrid.json ...

A passage's domain is its ``title`` mapped by :func:`domain_of` (nanibot-qa: ``Wikipedia``, a regulation
section name, or empty for news and other text). Prints a markdown table; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def domain_of(title: str) -> str:
    """nanibot-qa titles → ``wikipedia`` | ``regulation`` (a section name) | ``untitled`` (news and other)."""
    if title == "Wikipedia":
        return "wikipedia"
    return "regulation" if title.strip() else "untitled"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="BEIR dir (corpus.jsonl, qrels/<split>.tsv)")
    ap.add_argument("per_query", type=Path, nargs="+", help="search.eval --per-query-out files, one per pipeline")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()

    with (args.dataset / "corpus.jsonl").open(encoding="utf-8") as f:
        title = {d["_id"]: str(d.get("title", "")) for d in map(json.loads, f)}
    rows = (args.dataset / "qrels" / f"{args.split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    domain = {q: domain_of(title[p]) for q, p, *_ in (r.split("\t") for r in rows if r.strip())}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in args.per_query:
        per_query = json.loads(path.read_text(encoding="utf-8"))
        groups: dict[str, list[dict]] = defaultdict(list)
        for qid, m in per_query.items():
            groups[domain[qid]].append(m)
        out[path.stem] = {
            d: {"queries": len(ms), **{k: round(sum(m[k] for m in ms) / len(ms), 4) for k in ("mrr@10", "ndcg@10")}}
            for d, ms in sorted(groups.items())
        }
    domains = sorted({d for r in out.values() for d in r})
    print("| pipeline | " + " | ".join(f"{d} MRR@10 (n)" for d in domains) + " |")
    print("|---|" + "---:|" * len(domains))
    for name, r in out.items():
        cells = [f"{r[d]['mrr@10']:.4f} ({r[d]['queries']})" if d in r else "" for d in domains]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
