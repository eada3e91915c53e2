"""Bundled benchmarks for the app: BEIR dev sets, example questions and the metrics of one judged query.

- :class:`Benchmark` — one BEIR folder's queries and qrels, with a lookup by (normalized) query text;
- :func:`bundled_benchmarks` — the dataset names the Evaluate tab offers;
- :func:`default_eval_dataset` — its default: the bundled hard dev set (:data:`DEFAULT_EVAL_SETS`);
- :func:`examples_in_index` — a few benchmark questions per set whose relevant passages are indexed;
- :func:`single_query_metrics` — NDCG@10 / MRR@10 of one result (the Compare tab, for benchmark queries);
- :func:`load_examples` — the Search tab's example questions (``assets/demo/examples.txt``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexing.normalize import normalize

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"
DEMO_DIR = ASSETS / "demo"
EXAMPLES_FILE = DEMO_DIR / "examples.txt"
BENCHMARKS_DIR = ASSETS / "benchmarks"

__all__ = ["Benchmark", "bundled_benchmarks", "default_eval_dataset", "examples_in_index", "single_query_metrics",
           "load_examples", "query_key", "DEFAULT_EVAL_SETS", "QUERY_METRICS"]

# The Evaluate tab's default, first present wins: hard-mini (bench/build_hard_devsets.py --bundle, listed in
# assets/benchmarks/hard-devsets.json "bundle") separates bm25, hybrid and reranked pipelines; on xquad-vi
# every system scores 1.000.
DEFAULT_EVAL_SETS = ("hard-mini", "xquad-vi")
QUERY_METRICS = ("ndcg@10", "mrr@10", "recall@10")  # the Compare tab's per-system metrics of a judged query


def load_examples(path: Path = EXAMPLES_FILE) -> list[str]:
    """Example queries: one per line, ``#`` comments and blank lines skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def query_key(text: str) -> str:
    """A query's lookup key: normalized, lower-cased, single-spaced, without trailing ``?.!``."""
    return " ".join(normalize(text or "").lower().split()).rstrip(" ?.!")


@dataclass
class Benchmark:
    """A BEIR dev set: queries, qrels (doc ids) and a lookup by query text."""

    name: str
    path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    by_text: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, split: str = "test") -> Benchmark:
        """Read ``queries.jsonl`` and ``qrels/<split>.tsv`` with :func:`indexing.beir.load_beir`."""
        from indexing.beir import load_beir

        data = load_beir(path, split=split)
        queries = {str(q): str(t) for q, t in data.queries.items()}
        qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in data.qrels.items()}
        queries = {q: t for q, t in queries.items() if q in qrels}
        return cls(path.name, path, queries, qrels, {query_key(t): q for q, t in queries.items()})


def bundled_benchmarks(folder: Path = BENCHMARKS_DIR) -> list[str]:
    """Names of the BEIR folders under ``assets/benchmarks``."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "corpus.jsonl").is_file() and (p / "qrels").is_dir())


def default_eval_dataset(names: Iterable[str]) -> str | None:
    """The first of :data:`DEFAULT_EVAL_SETS` among ``names``, else the first name (None for none)."""
    names = list(names)
    return next((n for n in DEFAULT_EVAL_SETS if n in names), names[0] if names else None)


def examples_in_index(benchmarks: Iterable[Benchmark], known_docs: set[str], per_set: int = 4) -> list[str]:
    """Up to ``per_set`` questions per benchmark whose judged documents are all in ``known_docs`` (every
    set's first questions when ``known_docs`` is empty: the index is not built yet)."""
    out: list[str] = []
    for bench in benchmarks:
        picked = [t for q, t in bench.queries.items() if not known_docs or set(bench.qrels[q]) <= known_docs]
        out += picked[:per_set]
    return out


def single_query_metrics(result: Any, relevant: Mapping[str, int], qid: str) -> dict[str, float]:
    """:data:`QUERY_METRICS` (NDCG@10, MRR@10, recall@10) of one result for one judged query, via
    :func:`search.metrics.evaluate` (documents ranked as the hits are)."""
    from search.metrics import evaluate

    run: dict[str, float] = {}
    for h in result.hits:  # qrels are on document ids; a document scores as its best passage
        run.setdefault(h.doc_id, float(len(result.hits) - h.rank + 1))
    return evaluate({qid: dict(relevant)}, {qid: run}, metrics=QUERY_METRICS)
