"""The learned blend: features, LightGBM fit, the held-back guard, storage in a model dir, use in the pipeline."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from search.blend import FEATURES, BlendError, LearnedBlend, candidate, feature_matrix, learned_blend_of
from search.pipeline import Pipeline
from tests.search.test_pipeline import HashEmbedder, LengthReranker, bm25, passages, restorer, vectors  # noqa: F401
from trainer.blend import Window, fit_blend, guard_passes, held_back_report, split_windows, write_blend


def _window(qid: str, rng: random.Random, signal: str, n: int = 12, rel_at: int | None = None) -> Window:
    """Synthetic window: the relevant passage has the best ``signal`` (``bm25_exact`` or ``fusion_rank``);
    the reranker's score is noise; the first-stage (fusion) rank puts it at ``rel_at`` (random if None)."""
    rel = rng.randrange(n) if rel_at is None else rel_at
    cands = []
    for i in range(n):
        exact = 9.0 + rng.random() if (signal == "bm25_exact" and i == rel) else 5.0 * rng.random()
        scores = {"bm25": rng.random() * 10, "dense": rng.random(), "fusion": 1 - i / n, "bm25_exact": exact,
                  "bm25_folded": rng.random() * 8}
        ranks = {"bm25": rng.randrange(1, 100), "dense": rng.randrange(1, 100), "fusion": i + 1}
        cands.append(candidate(f"{qid}-p{i}", rng.gauss(0, 1), scores, ranks, "một hai ba " * rng.randrange(5, 40)))
    return Window(qid, cands, {f"{qid}-p{rel}"})


def test_feature_matrix_columns_gaps_and_missing_values():
    a = candidate("a", 2.0, {"bm25": 10.0, "fusion": 0.9, "dense": 0.8}, {"bm25": 1, "fusion": 1, "dense": 2},
                  "Hà Nội là thủ đô")
    b = candidate("b", 5.0, {"fusion": 0.5, "dense": 0.9}, {"fusion": 2, "dense": 1}, "Huế")  # BM25 missed it
    x = feature_matrix([a, b])
    col = {n: j for j, n in enumerate(FEATURES)}
    assert x.shape == (2, len(FEATURES)) and x.dtype == np.float32
    assert x[:, col["rerank_rank"]].tolist() == [2, 1] and x[:, col["rerank_gap"]].tolist() == [-3, 0]
    assert x[0, col["bm25"]] == 10 and np.isnan(x[1, col["bm25"]]) and np.isnan(x[1, col["bm25_rank"]])
    assert x[0, col["bm25_gap"]] == 0 and x[:, col["length"]].tolist() == [5, 1]
    assert np.isnan(x[:, col["bm25_exact"]]).all()  # not computed: missing, not zero
    assert feature_matrix([]).shape == (0, len(FEATURES))


def test_fit_learns_the_signal_and_the_guard_keeps_it(tmp_path):
    rng = random.Random(0)
    windows = [_window(f"q{i}", rng, "bm25_exact") for i in range(240)]
    fit, held = split_windows(windows, 0.3, seed=1)
    assert len(held) == 72 and not {w.qid for w in fit} & {w.qid for w in held}
    blend = fit_blend(fit, {"n_estimators": 60})
    rep = held_back_report(blend, held)
    assert rep["mrr@10_blend"] > 0.95 > 0.5 > rep["mrr@10_first_stage"]  # first stage puts it anywhere
    assert rep["blend_vs_first_stage"]["t_pvalue"] < 1e-6 and rep["blend_vs_first_stage"]["mean_diff"] > 0
    assert guard_passes(rep)
    # stored in a model dir, read back through inference.json, same scores
    (tmp_path / "inference.json").write_text(json.dumps({"rerank_blend": 0.3}))
    data = write_blend(tmp_path, blend, {"held_back": rep})
    assert data["rerank_blend"] == 0.3 and data["learned_blend"]["features"] == list(FEATURES)

    class Model:
        settings, path = data, tmp_path

    again = learned_blend_of(Model())
    np.testing.assert_allclose(again.scores(held[0].candidates), blend.scores(held[0].candidates))
    assert again.meta["held_back"]["queries"] == 72
    write_blend(tmp_path, None, {})  # removed again
    assert "learned_blend" not in json.loads((tmp_path / "inference.json").read_text())
    assert not (tmp_path / "blend.lgb.txt").exists()


def test_a_blend_worse_than_the_first_stage_is_caught(tmp_path):
    """Fitted where the relevant passage is always last in the first stage, judged where it is always first."""
    rng = random.Random(3)
    fit = [_window(f"f{i}", rng, "fusion_rank", rel_at=11) for i in range(150)]
    held = [_window(f"h{i}", rng, "fusion_rank", rel_at=0) for i in range(60)]
    rep = held_back_report(fit_blend(fit, {"n_estimators": 40}), held)
    assert rep["mrr@10_first_stage"] == 1.0 and rep["mrr@10_blend"] < rep["mrr@10_first_stage"]
    assert not guard_passes(rep)
    # "better on average" without evidence is not enough either
    tie = {"blend_vs_first_stage": {"mean_diff": 0.007, "t_pvalue": 0.66}}
    assert not guard_passes(tie) and guard_passes({"blend_vs_first_stage": {"mean_diff": 0.05, "t_pvalue": 0.01}})


def test_fit_needs_windows_with_a_relevant_passage():
    rng = random.Random(5)
    windows = [_window(f"q{i}", rng, "bm25_exact") for i in range(30)]
    for w in windows:
        w.relevant = set()
    with pytest.raises(ValueError, match="relevant"):
        fit_blend(windows)


def test_pipeline_uses_the_models_learned_blend(bm25, vectors, restorer, tmp_path):  # noqa: F811
    rng = random.Random(7)
    blend = fit_blend([_window(f"q{i}", rng, "bm25_exact") for i in range(120)], {"n_estimators": 30})
    data = write_blend(tmp_path, blend, {})

    class Shipped(LengthReranker):
        settings, path = data, tmp_path

    model = Shipped()
    pipe = Pipeline(bm25, vectors, HashEmbedder(), {"m": model}, restorer, depth=8, rerank_top=5)
    res = pipe.search("cấp lại hộ chiếu", "hybrid+m", top_k=5)
    assert "blend" in res.timings_ms
    assert all("bm25_exact" in h.stage_scores or "bm25_folded" in h.stage_scores or "bm25" not in h.stage_ranks
               for h in res.hits)
    cands = [candidate(h.id, h.stage_scores["rerank_raw"], h.stage_scores, h.stage_ranks, h.text) for h in res.hits]
    assert [h.id for h in res.hits] == [pid for pid, _ in blend.rank(sorted(
        cands, key=lambda c: c.stage_ranks["fusion"]))]
    # an explicit fixed blend wins over the learned one
    fixed = Pipeline(bm25, vectors, HashEmbedder(), {"m": model}, restorer, depth=8, rerank_top=5, rerank_blend=1.0)
    assert "blend" not in fixed.search("cấp lại hộ chiếu", "hybrid+m", top_k=5).timings_ms
    # a blend that names a missing file is an error, not silently ignored
    (tmp_path / "blend.lgb.txt").unlink()
    broken = Pipeline(bm25, vectors, HashEmbedder(), {"m": Shipped()}, restorer, depth=8, rerank_top=5)
    with pytest.raises(BlendError, match="missing"):
        broken.search("cấp lại hộ chiếu", "hybrid+m", top_k=5)


def test_learned_blend_refuses_other_features(tmp_path):
    import lightgbm

    x = np.random.default_rng(0).random((40, 3))
    model = lightgbm.LGBMRanker(n_estimators=2, verbose=-1, min_child_samples=2).fit(
        x, np.tile([1, 0, 0, 0], 10), group=[4] * 10)
    with pytest.raises(BlendError, match="features"):
        LearnedBlend(model.booster_)


def test_questions_about_the_same_passage_stay_on_one_side():
    """A split by question would let the blend learn a passage's own signals and pass the guard on held-back
    questions about the same passage (what happened with Nanibot's 8-9 questions per paragraph)."""
    rng = random.Random(11)
    windows = []
    for i in range(90):
        w = _window(f"q{i}", rng, "bm25_exact")
        w.relevant = {f"para{i % 20}"}  # 20 passages, 4-5 questions each
        windows.append(w)
    fit, held = split_windows(windows, 0.3, seed=2)
    fit_p = {p for w in fit for p in w.relevant}
    held_p = {p for w in held for p in w.relevant}
    assert not fit_p & held_p and 20 <= len(held) <= 40 and len(fit) + len(held) == 90


def test_saved_windows_refit_identically(tmp_path):
    from trainer.blend import load_windows, save_windows

    rng = random.Random(13)
    windows = [_window(f"q{i}", rng, "bm25_exact") for i in range(40)]
    save_windows(tmp_path / "w.jsonl", windows)
    again = load_windows(tmp_path / "w.jsonl")
    assert [w.qid for w in again] == [w.qid for w in windows]
    np.testing.assert_array_equal(feature_matrix(again[3].candidates), feature_matrix(windows[3].candidates))
    assert again[3].relevant == windows[3].relevant
