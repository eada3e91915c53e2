"""Measure and fit the Search tab's "no good match" thresholds: real questions vs generated gibberish.

    OMP_NUM_THREADS=2 python bench/no_match.py [--data ../shared/data] [--home /tmp/no-match-home]
        [--fit-n 400] [--heldout-n 400] [--max-real-flagged 0.01] [--write]

Index: the demo corpus (``assets/demo/corpus.jsonl``) plus every ``nanibot-qa`` paragraph, built once under
``--home`` with the product code (``indexing.build``, e5-small vectors; the embedding cache of
``$VIRANKER_HOME`` is copied in first so the demo paragraphs are not embedded again). Queries go through
:class:`search.service.SearchService` (pipeline ``hybrid``, top 10), and
:func:`search.ui.confidence.match_signals` reads the two signals the app uses.

- **fit**: ``nanibot-qa`` *train* questions (``--fit-n`` sampled) vs gibberish drawn with seed 1;
- **held out** (reported, never fitted on): ``nanibot-qa`` *test* questions and ``xquad-vi`` questions vs
  gibberish drawn with seed 2.

Gibberish (:func:`gibberish`): keyboard mash, digit runs, pronounceable non-words ("foobarbaz"-like) and
consonant clusters, 2-5 tokens — text with no meaning in any index. The thresholds are chosen on the fit set by
a grid search: the most gibberish caught while at most ``--max-real-flagged`` of the real questions are flagged.
Signals are cached in ``<home>/signals.json``. ``--write`` stores them in :data:`search.ui.confidence.NO_MATCH_FILE`. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing.jsonl import read_jsonl  # noqa: E402
from search.ui.confidence import NO_MATCH_FILE, MatchSignals, NoMatchConfig, is_no_match, match_signals  # noqa: E402

INDEX = "nomatch"
_CONS = "bcdfghjklmnpqrstvwxz"
_VOW = "aeiouy"


def gibberish(rng: random.Random) -> str:
    """One nonsense query of 2-5 tokens (see the module docstring)."""
    def token() -> str:
        kind = rng.random()
        if kind < 0.3:  # keyboard mash
            return "".join(rng.choice("qwertyuiopasdfghjklzxcvbnm") for _ in range(rng.randint(3, 8)))
        if kind < 0.45:  # digits
            return "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 6)))
        if kind < 0.8:  # pronounceable non-word
            return "".join(rng.choice(_CONS) + rng.choice(_VOW) for _ in range(rng.randint(2, 4))) + rng.choice(
                ["", "z", "x", "k", "rb"])
        return "".join(rng.choice(_CONS) for _ in range(rng.randint(3, 5)))  # consonant cluster
    return " ".join(token() for _ in range(rng.randint(2, 5)))


def _queries(path: Path, prefix: str) -> list[str]:
    return [r["text"] for r in read_jsonl(path) if str(r["_id"]).startswith(prefix)]


def build_index(home: Path, data: Path) -> None:
    """The demo corpus + nanibot-qa paragraphs as index ``nomatch`` under ``home`` (skipped when built)."""
    from indexing import generations as gens

    os.environ["VIRANKER_HOME"] = str(home)
    if gens.current(home / "indexes" / INDEX) is not None:
        return
    from indexing.build import build_generation
    from indexing.corpus import load_corpus
    from indexing.embedders import load_embedder

    passages, _ = load_corpus([REPO / "assets" / "demo" / "corpus.jsonl", data / "nanibot-qa" / "corpus.jsonl"])
    build_generation(INDEX, passages, load_embedder("e5-small"), root=home, progress=False)


def signals(service, queries: list[str], cache: dict[str, list]) -> list[MatchSignals]:
    """The signals of each query (``cache``: query → ``[dense_top, coverage]``, filled here)."""
    for q in queries:
        if q not in cache:
            s = match_signals(service.search(q, "hybrid", 10))
            cache[q] = [s.dense_top, s.coverage]
    return [MatchSignals(*cache[q]) for q in queries]


def flagged(sigs: list[MatchSignals], cfg: NoMatchConfig) -> np.ndarray:
    return np.array([is_no_match(s, cfg) for s in sigs], dtype=bool)


def fit(real: list[MatchSignals], gib: list[MatchSignals], max_real_flagged: float) -> NoMatchConfig:
    """Grid search over (min_dense, min_coverage): most gibberish flagged with at most ``max_real_flagged`` of
    the real questions flagged; ties → the lower thresholds (flag less)."""
    dense_grid = np.round(np.arange(0.70, 0.90001, 0.005), 3)
    cov_grid = np.round(np.arange(0.05, 0.76, 0.05), 2)
    best = (-1.0, 0.0, 0.0, 0.0)
    for d in dense_grid:
        for c in cov_grid:
            cfg = NoMatchConfig(float(d), float(c))
            fr = flagged(real, cfg).mean()
            if fr > max_real_flagged:
                continue
            rec = flagged(gib, cfg).mean()
            key = (rec, -fr, -d, -c)
            if key > (best[0], -best[1], -best[2], -best[3]):
                best = (rec, fr, float(d), float(c))
    return NoMatchConfig(best[2], best[3])


def report(real: list[MatchSignals], gib: list[MatchSignals], cfg: NoMatchConfig) -> dict[str, float]:
    """Precision / recall of the "no match" flag for gibberish, and the share of real questions flagged."""
    fr, fg = flagged(real, cfg), flagged(gib, cfg)
    tp, fp = int(fg.sum()), int(fr.sum())
    return {"gibberish_recall": round(float(fg.mean()), 4), "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "real_flagged": round(float(fr.mean()), 4), "real_kept": round(float(1 - fr.mean()), 4), "n_real": len(real),
            "n_gibberish": len(gib)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--home", type=Path, default=Path("/tmp/no-match-home"))
    ap.add_argument("--fit-n", type=int, default=400)
    ap.add_argument("--heldout-n", type=int, default=400)
    ap.add_argument("--max-real-flagged", type=float, default=0.01)
    ap.add_argument("--write", action="store_true", help=f"store the thresholds in {NO_MATCH_FILE}")
    args = ap.parse_args()

    cache_src = Path(os.environ.get("VIRANKER_HOME") or REPO / "var") / "cache"
    (args.home / "cache").mkdir(parents=True, exist_ok=True)
    if cache_src.is_dir() and not (args.home / "cache" / "embeddings.sqlite").exists():
        for f in cache_src.glob("embeddings.sqlite*"):
            shutil.copy2(f, args.home / "cache" / f.name)
    t0 = time.time()
    build_index(args.home, args.data)
    from search.service import SearchService

    rng = random.Random(0)
    nb = args.data / "nanibot-qa" / "queries.jsonl"
    fit_real = rng.sample(_queries(nb, "nanibot-train"), min(args.fit_n, len(_queries(nb, "nanibot-train"))))
    held_real = _queries(nb, "nanibot-test")
    xq = _queries(args.data / "xquad-vi" / "queries.jsonl", "")
    held_real += rng.sample(xq, min(args.heldout_n, len(xq)))
    g1, g2 = random.Random(1), random.Random(2)
    fit_gib = [gibberish(g1) for _ in range(args.fit_n)]
    held_gib = [gibberish(g2) for _ in range(args.heldout_n)] + ["qwxz zzkj 12345 foobarbaz"]

    cache_file = args.home / "signals.json"  # reruns (other thresholds / --write) search nothing again
    cache = json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
    with SearchService(INDEX, root=args.home) as svc:
        s_fit_real, s_fit_gib = signals(svc, fit_real, cache), signals(svc, fit_gib, cache)
        s_held_real, s_held_gib = signals(svc, held_real, cache), signals(svc, held_gib, cache)
    cache_file.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
    cfg = fit(s_fit_real, s_fit_gib, args.max_real_flagged)
    fit_rep, held_rep = report(s_fit_real, s_fit_gib, cfg), report(s_held_real, s_held_gib, cfg)
    demo_q = is_no_match(s_held_gib[-1], cfg)
    meta = {"fitted_by": "bench/no_match.py", "pipeline": "hybrid", "embedder": "e5-small",
            "index": "demo corpus + nanibot-qa paragraphs",
            "fit": {"real": "nanibot-qa train questions", "gibberish_seed": 1, **fit_rep},
            "heldout": {"real": "nanibot-qa test + xquad-vi questions", "gibberish_seed": 2, **held_rep},
            "max_real_flagged": args.max_real_flagged}
    cfg = NoMatchConfig(cfg.min_dense, cfg.min_coverage, meta)
    for name, rep in (("fit", fit_rep), ("held-out", held_rep)):
        print(f"{name}: min_dense={cfg.min_dense} min_coverage={cfg.min_coverage} -> {rep}")
    print("held-out real questions flagged:", [q for q, s in zip(held_real, s_held_real, strict=True)
                                               if is_no_match(s, cfg)][:10])
    if args.write:
        print("wrote", cfg.save(NO_MATCH_FILE))
    print(json.dumps({"bench": "no_match", "min_dense": cfg.min_dense, "min_coverage": cfg.min_coverage,
                      "fit": fit_rep, "heldout": held_rep, "demo_gibberish_flagged": demo_q,
                      "seconds": round(time.time() - t0, 1)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
