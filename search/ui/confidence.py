"""Readable scores and the "no good match" decision for one search result (no Gradio).

Two questions the Search tab answers for a visitor:

- **What does a hit's score mean?** :func:`readable_score` → a :class:`ReadableScore` with the value *and its
  scale named*: the reranker's calibrated probability of relevance (``stage_scores["rerank_prob"]``, see
  :mod:`reranker.calibration`) where the pipeline recorded one, else the reranker's raw logit; for first-stage
  pipelines the retriever's own score — a BM25 score, the cosine similarity of the e5 vectors, or the fused
  score, labelled *relative* (min-max fusion scales each list within itself, so rank 1 of any query is near 1).
  Never a min-max "1.000" presented as confidence.
- **Is anything here a good match?** :func:`match_signals` measures two things no fusion rescales: the best
  cosine similarity of the dense retriever among the hits, and the *coverage* of the query's content syllables
  by the best of the top hits. :func:`is_no_match` compares them with the thresholds of a
  :class:`NoMatchConfig` — fitted by ``bench/no_match.py`` on real dev questions vs generated gibberish and
  stored in :data:`NO_MATCH_FILE` (``VIRANKER_NO_MATCH`` names another file), not written in the UI.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexing.normalize import fold, normalize

__all__ = ["ReadableScore", "readable_score", "score_scale", "MatchSignals", "match_signals", "query_coverage",
           "NoMatchConfig", "is_no_match", "NO_MATCH_FILE", "COVERAGE_STOPWORDS"]

NO_MATCH_FILE = Path(__file__).resolve().parents[2] / "assets" / "config" / "no_match.json"
_TOKEN_RE = re.compile(r"\w+")

#: Folded question / function words that appear in almost every passage: they say nothing about a match.
COVERAGE_STOPWORDS = frozenset(
    """la cua va co cac nhung duoc trong cho voi mot nay thi o nao gi ai khi bao nhieu the de den tu nhu ve da
    se dang bi ra vao len khong ma hay hoac cung con lai tai sao vi neu nen do rang nguoi nam""".split()  # noqa: SIM905
)


# ------------------------------------------------------------------------------------------ scores
@dataclass(frozen=True)
class ReadableScore:
    """One hit's score for people: ``value``, ``text`` (formatted), ``scale`` (the short name shown next to it,
    Vietnamese) and ``kind`` (``prob`` | ``logit`` | ``bm25`` | ``cosine`` | ``fused``); ``bar`` is a width in
    ``[0, 1]`` for a bar only where the scale is absolute (probability, cosine), else None."""

    value: float
    text: str
    scale: str
    kind: str
    bar: float | None = None
    detail: str = ""  # the retrievers' own scores behind a fused score ("BM25 9.21 · cosine 0.871")


SCALE_NAMES = {
    "prob": "xác suất liên quan (theo reranker)",
    "logit": "logit reranker (chưa hiệu chuẩn)",
    "bm25": "điểm BM25",
    "cosine": "độ tương đồng cosine (e5)",
    "fused": "điểm hợp nhất (tương đối trong danh sách)",
}


def score_scale(kind: str) -> str:
    """The Vietnamese name of a score ``kind`` (see :class:`ReadableScore`)."""
    return SCALE_NAMES.get(kind, kind)


def readable_score(hit: Any) -> ReadableScore:
    """A :class:`search.results.Hit` → its score on a named scale (see the module docstring).

    >>> from search.results import Hit
    >>> readable_score(Hit("p", "d", "", "", 0.9, 1, {"bm25": 1}, {"bm25": 12.5})).text
    '12.50'
    """
    scores: dict[str, float] = getattr(hit, "stage_scores", None) or {}
    ranks: dict[str, int] = getattr(hit, "stage_ranks", None) or {}
    if "rerank_prob" in scores:
        p = float(scores["rerank_prob"])
        return ReadableScore(p, f"{100 * p:.0f}%", score_scale("prob"), "prob", p)
    if "rerank_raw" in scores:
        raw = float(scores["rerank_raw"])
        return ReadableScore(raw, f"{raw:+.2f}", score_scale("logit"), "logit")
    if "fusion" in ranks or "fusion" in scores:
        v = float(scores.get("fusion", hit.score))
        parts = ([f"BM25 {scores['bm25']:.2f}"] if "bm25" in scores else []) + (
            [f"cosine {scores['dense']:.3f}"] if "dense" in scores else [])
        return ReadableScore(v, f"{v:.3f}", score_scale("fused"), "fused", None, " · ".join(parts))
    if "dense" in scores and "bm25" not in scores:
        v = float(scores["dense"])
        return ReadableScore(v, f"{v:.3f}", score_scale("cosine"), "cosine", max(0.0, min(1.0, v)))
    v = float(scores.get("bm25", hit.score))
    return ReadableScore(v, f"{v:.2f}", score_scale("bm25"), "bm25")


# ------------------------------------------------------------------------------------- no good match
def _content_syllables(text: str) -> list[str]:
    return [t for t in (fold(x.lower()) for x in _TOKEN_RE.findall(normalize(text or "")))
            if t not in COVERAGE_STOPWORDS]


def query_coverage(query: str, texts: Sequence[str]) -> float:
    """The largest share, over ``texts``, of the query's distinct content syllables (folded; question and
    function words left out) found in one text; 1.0 for a query with no content syllable.

    >>> query_coverage("thủ đô của Việt Nam", ["Hà Nội là thủ đô của Việt Nam"])
    1.0
    >>> query_coverage("qwxz zzkj 12345", ["Hà Nội là thủ đô"])
    0.0
    """
    q = set(_content_syllables(query))
    if not q:
        return 1.0
    best = 0.0
    for text in texts:
        best = max(best, len(q & set(_content_syllables(text))) / len(q))
    return best


@dataclass(frozen=True)
class MatchSignals:
    """What the no-match decision reads: ``dense_top`` (best dense cosine among the hits, None without a dense
    stage) and ``coverage`` (:func:`query_coverage` of the searched query over the top hits' title + text)."""

    dense_top: float | None
    coverage: float


def match_signals(result: Any, top: int = 3, depth: int = 10) -> MatchSignals:
    """A :class:`search.results.SearchResult` → :class:`MatchSignals` (``top``: hits read for coverage;
    ``depth``: hits read for the dense cosine — the thresholds were fitted on top-10 results)."""
    hits = list(getattr(result, "hits", []) or [])[:depth]
    dense = [float(h.stage_scores["dense"]) for h in hits if "dense" in (h.stage_scores or {})]
    query = getattr(result, "searched_query", "") or getattr(result, "query", "")
    texts = [f"{h.title} {h.text}" for h in hits[:top]]
    return MatchSignals(max(dense) if dense else None, query_coverage(query, texts) if hits else 0.0)


@dataclass(frozen=True)
class NoMatchConfig:
    """Thresholds of the no-match state: a result is "no good match" when its coverage is below
    ``min_coverage`` **and** (without a dense stage: always) its best dense cosine is below ``min_dense``.
    ``meta``: how they were measured (``bench/no_match.py``)."""

    min_dense: float = 0.0
    min_coverage: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> NoMatchConfig:
        """Read the thresholds from ``path`` (default ``$VIRANKER_NO_MATCH`` or :data:`NO_MATCH_FILE`); a
        missing file gives thresholds of 0 (never "no match")."""
        path = Path(path or os.environ.get("VIRANKER_NO_MATCH") or NO_MATCH_FILE)
        if not path.is_file():
            return cls(meta={"missing": str(path)})
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(float(data["min_dense"]), float(data["min_coverage"]), dict(data.get("meta", {})))

    def save(self, path: str | os.PathLike[str] = NO_MATCH_FILE) -> Path:
        """Write the thresholds as JSON → the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path


def is_no_match(signals: MatchSignals, config: NoMatchConfig) -> bool:
    """True when ``signals`` fall below both thresholds of ``config`` (see :class:`NoMatchConfig`)."""
    if signals.coverage >= config.min_coverage:
        return False
    return signals.dense_top is None or signals.dense_top < config.min_dense
