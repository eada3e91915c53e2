"""Markdown tables from the raw outputs in this folder (metrics JSON + significance JSON).

    python docs/results/hard_devsets/summarize.py
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("mrr@10", "ndcg@3", "ndcg@10", "recall@100")

for name in ("xquad-vi-hard", "nanibot-test-hard", "hard-mini"):
    rows = {p: HERE / f"{name}.{p}.json" for p in ("bm25", "dense", "hybrid")}
    if not all(f.is_file() for f in rows.values()):
        continue
    print(f"\n**{name}**\n\n| pipeline | " + " | ".join(METRICS) + " | queries |\n|---|" + "---|" * (len(METRICS) + 1))
    for p, f in rows.items():
        m = json.loads(f.read_text())
        print(f"| {p} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + f" | {m['queries']} |")
    sig = [(b, HERE / f"{name}.hybrid_vs_{b}.significance.json") for b in ("bm25", "dense")]
    if all(f.is_file() for _, f in sig):
        print("\n| hybrid vs | metric | mean diff | wins / ties / losses | t-test p | Wilcoxon p | n |\n|---|---|---|---|---|---|---|")
        for b, f in sig:
            s = json.loads(f.read_text())
            for k in METRICS:
                r = s[k]
                print(f"| {b} | {k} | {r['mean_diff']:+.4f} | {r['wins']} / {r['ties']} / {r['losses']} | "
                      f"{r['t_pvalue']:.2g} | {r['wilcoxon_pvalue']:.2g} | {r['n']} |")
