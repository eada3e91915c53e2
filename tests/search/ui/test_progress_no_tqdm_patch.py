"""Progress reaches the page through the project's callbacks, never by patching tqdm (issue 13).

Building the UI used to create ``gr.Progress(track_tqdm=True)`` as a default argument, which makes Gradio
patch tqdm process-wide; a tqdm bar already alive in the background demo build then died on its next
update (``AttributeError: 'tqdm_asyncio' object has no attribute '_progress'``).
"""

from __future__ import annotations

import inspect
import io
import threading

import gradio as gr
import pytest
import tqdm
import tqdm.auto

import app as app_module
from tests import app_testkit as kit

_METHODS = ("__init__", "update", "close", "__iter__", "__exit__")


def _tqdm_state() -> tuple:
    return (tqdm.tqdm, tqdm.auto.tqdm, {m: tqdm.tqdm.__dict__.get(m) for m in _METHODS})


@pytest.fixture()
def backend(tmp_path):
    return app_module.Backend("tqdm-check", demo_corpus=None, precomputed=None, benchmarks_dir=tmp_path / "none",
                              reranker_status=lambda: dict(kit.RERANKER_STATUS))


def test_build_ui_leaves_tqdm_alone_and_live_bars_keep_updating(backend):
    before = _tqdm_state()
    assert not hasattr(tqdm.tqdm, "__init__orig__"), "tqdm was patched before this test"
    # a bar alive in another thread before the UI is built, like the demo build's bm25/qdrant bars
    created, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def background_bar() -> None:
        try:
            bar = tqdm.auto.tqdm(total=20, desc="bm25", file=io.StringIO(), mininterval=0)
            bar.update(1)
            created.set()
            go_on.wait(30)
            for _ in range(9):
                bar.update(1)
            counts.append(bar.n)
            bar.close()
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)
            created.set()

    t = threading.Thread(target=background_bar)
    t.start()
    assert created.wait(30)
    main_bar = tqdm.auto.tqdm(total=5, file=io.StringIO(), mininterval=0)
    demo = app_module.build_ui(backend)
    go_on.set()
    t.join(30)
    main_bar.update(2)  # a bar created before build_ui, updated after it
    main_bar.close()
    assert not errors, errors
    assert counts == [10] and main_bar.n == 2
    assert _tqdm_state() == before
    assert tqdm.auto.tqdm is before[1] and tqdm.tqdm is before[0]
    assert not hasattr(tqdm.tqdm, "__init__orig__")
    # and no registered event asks Gradio to track tqdm
    progress_params = []
    for block_fn in demo.fns.values():
        fn = getattr(block_fn, "fn", None)
        if fn is None:
            continue
        for p in inspect.signature(fn).parameters.values():
            if isinstance(p.default, gr.Progress):
                progress_params.append(p.default)
    assert progress_params, "the Evaluate handler should take a gr.Progress"
    assert not any(p.track_tqdm for p in progress_params)


def test_run_eval_reports_progress_through_the_callback(tmp_path):
    from search.eval import load_beir, open_eval_index, run_eval
    from search.pipeline import Pipeline

    ds = load_beir(kit.write_benchmark(tmp_path / "b") / "tiny-bench")
    stages: list[tuple[str, int, int]] = []
    snap = open_eval_index(ds, None, cache_dir=tmp_path / "cache", progress=False,
                           progress_callback=lambda s, d, t: stages.append((s, d, t)))
    try:
        assert any(s == "bm25" for s, _, _ in stages)
        calls: list[tuple[int, int]] = []
        rep = run_eval(ds, "bm25", Pipeline.from_snapshot(snap, None), progress=False, batch=1,
                       progress_callback=lambda d, t: calls.append((d, t)))
    finally:
        snap.close()
    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert rep.metrics["queries"] == 2


def test_evaluate_tab_drives_gr_progress_from_callbacks(tmp_path, monkeypatch):
    """The Evaluate path (Handlers.evaluate → run_evaluation) reports through ``progress(frac, desc=...)``
    for the evaluation index build and per query batch of each system, rising to 1."""
    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path / "home"))  # a fresh eval cache: the index is built
    emb = kit.HashEmbedder()
    backend = app_module.Backend("eval-progress", demo_corpus=None, precomputed=None, embedder=emb,
                                 benchmarks_dir=kit.write_benchmark(tmp_path / "benchmarks"),
                                 reranker_status=lambda: dict(kit.RERANKER_STATUS),
                                 rerankers={"overlap": kit.OverlapReranker()})
    seen: list[tuple[float, str]] = []

    def progress(frac: float, desc: str | None = None) -> None:
        seen.append((float(frac), str(desc)))

    status, metrics, *_ = app_module.Handlers(backend).evaluate("tiny-bench", None, ["bm25", "hybrid+overlap"], 0,
                                                               progress)
    assert list(metrics["Hệ thống"]) == ["bm25", "hybrid+overlap"], status
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    descs = [d for _, d in seen]
    assert any(d.startswith("bm25 (1/2): 2/2 câu hỏi") for d in descs), descs
    assert any(d.startswith("hybrid+overlap (2/2): 2/2 câu hỏi") for d in descs), descs
    assert any(d.startswith("chỉ mục: bm25") for d in descs), descs
