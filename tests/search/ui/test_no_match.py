"""Readable scores and the "no good match" state (search.ui.confidence), the fitted thresholds in
assets/config/no_match.json, and the Search tab's handler on the test kit's index."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from search.results import Hit
from search.ui.confidence import (
    NO_MATCH_FILE,
    MatchSignals,
    NoMatchConfig,
    is_no_match,
    query_coverage,
    readable_score,
)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import no_match as bench  # noqa: E402


def _hit(ranks, scores, score=1.0):
    return Hit("p", "d", "t", "x", score, 1, ranks, scores)


def test_scores_name_their_scale_and_are_not_min_max():
    s = readable_score(_hit({"bm25": 1, "dense": 1, "fusion": 1, "rerank": 1},
                            {"bm25": 9.0, "dense": 0.9, "fusion": 1.0, "rerank": 0.3, "rerank_raw": 12.0,
                             "rerank_prob": 0.42}))
    assert (s.kind, s.text) == ("prob", "42%") and "xác suất" in s.scale
    s = readable_score(_hit({"rerank": 1}, {"rerank_raw": 12.0}))
    assert s.kind == "logit" and s.text == "+12.00" and s.bar is None
    s = readable_score(_hit({"bm25": 2, "dense": 1, "fusion": 1}, {"bm25": 3.2, "dense": 0.81, "fusion": 0.5}))
    assert s.kind == "fused" and s.text == "0.500" and "tương đối" in s.scale
    assert s.detail == "BM25 3.20 · cosine 0.810"  # the retrievers' own scores behind it
    s = readable_score(_hit({"dense": 1}, {"dense": 0.812}))
    assert s.kind == "cosine" and s.text == "0.812" and s.bar == pytest.approx(0.812)
    s = readable_score(_hit({"bm25": 1}, {"bm25": 14.25}))
    assert s.kind == "bm25" and s.text == "14.25" and "BM25" in s.scale


def test_coverage_and_decision():
    assert query_coverage("qwxz zzkj 12345 foobarbaz", ["Năm 1936 Debye nhận giải Nobel"]) == 0.0
    assert query_coverage("Đà Lạt nằm trên cao nguyên nào", ["Đà Lạt nằm trên cao nguyên Lâm Viên"]) == 1.0
    assert query_coverage("da lat", ["Đà Lạt"]) == 1.0  # folded
    assert query_coverage("là gì", ["x"]) == 1.0  # nothing but question words: nothing to judge
    cfg = NoMatchConfig(0.85, 0.5)
    assert is_no_match(MatchSignals(0.80, 0.0), cfg)
    assert not is_no_match(MatchSignals(0.90, 0.0), cfg)  # the dense retriever is confident
    assert not is_no_match(MatchSignals(0.80, 0.6), cfg)  # most of the query is in a top hit
    assert is_no_match(MatchSignals(None, 0.2), cfg)  # BM25 only: coverage decides
    assert not is_no_match(MatchSignals(0.1, 0.0), NoMatchConfig())  # no thresholds: never


def test_config_round_trip_and_shipped_thresholds(tmp_path, monkeypatch):
    path = NoMatchConfig(0.8, 0.4, {"x": 1}).save(tmp_path / "c.json")
    assert NoMatchConfig.load(path) == NoMatchConfig(0.8, 0.4, {"x": 1})
    monkeypatch.setenv("VIRANKER_NO_MATCH", str(path))
    assert NoMatchConfig.load().min_dense == 0.8
    assert NoMatchConfig.load(tmp_path / "missing.json").min_coverage == 0.0
    shipped = json.loads(NO_MATCH_FILE.read_text(encoding="utf-8"))
    assert shipped["meta"]["fitted_by"] == "bench/no_match.py"
    held = shipped["meta"]["heldout"]
    assert held["gibberish_recall"] >= 0.95 and held["precision"] >= 0.9 and held["real_kept"] >= 0.95


def test_bench_fit_picks_a_separating_threshold():
    real = [MatchSignals(0.88 + 0.01 * (i % 5), 0.3 + 0.1 * (i % 7)) for i in range(100)]
    gib = [MatchSignals(0.78 + 0.01 * (i % 5), 0.0) for i in range(100)]
    cfg = bench.fit(real, gib, max_real_flagged=0.0)
    assert bench.report(real, gib, cfg)["gibberish_recall"] == 1.0
    assert bench.report(real, gib, cfg)["real_flagged"] == 0.0
    g = bench.gibberish(random.Random(1))
    assert g == bench.gibberish(random.Random(1)) and 2 <= len(g.split()) <= 5


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    from search.ui.handlers import Handlers
    from tests import app_testkit as kit

    with kit.running_app(tmp_path_factory.mktemp("no-match-home")) as ra:
        yield Handlers(ra.backend)


@pytest.mark.slow
def test_gibberish_shows_no_good_match(handlers):
    view = handlers.search_view("qwxz zzkj 12345 foobarbaz", "hybrid", None)
    assert view.no_match and "Không tìm thấy kết quả phù hợp" in view.notice
    view = handlers.search_view("Đà Lạt cao nguyên", "hybrid", None)
    assert not view.no_match and "Không tìm thấy kết quả phù hợp" not in view.notice
    body, _ = handlers.results_page(view, 5)
    first = body.split("</li>")[0]
    assert "điểm hợp nhất (tương đối" in first and "cosine " in first and "BM25 " in first  # scales named
