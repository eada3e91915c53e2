"""The analyst's side of issue 18 in headless Chromium (Debian's /usr/bin/chromium, pip playwright): Compare
offers and ticks only systems that can run (the unavailable reranker listed with its reason, no warning),
a reranker is added from a local model dir (refused outside the allowed folders, with a Vietnamese
message), a benchmark question shows each system's metrics; Evaluate shows paired p-values and its empty
states.

The app runs in-process on the test kit's tiny index (tests/app_testkit.py); without /usr/bin/chromium the
tests are skipped, unless ``CI`` is set (then they fail).
"""

from __future__ import annotations

import os

import pytest

from tests import app_testkit as kit
from tests.e2e import browser_kit as bk

TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]
bk.require_chromium()

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with kit.running_app(tmp_path_factory.mktemp("analyst-browser-home")) as ra:
        yield ra


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as p:
        browser = bk.launch(p)
        context, pg = bk.open_page(browser, served.url, width=1400, height=1000, timeout_ms=TIMEOUT_MS)
        yield pg
        context.close()
        browser.close()


_box, _mark_stale = bk.box, bk.mark_stale


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).first.click()


def _wait_fresh(page, sel: str, child: str) -> None:
    bk.wait_fresh(page, sel, child, timeout=TIMEOUT_MS)


def _checkboxes(page, elem_id: str) -> dict[str, bool]:
    """``{label: checked}`` of a CheckboxGroup."""
    labels = page.locator(f"#{elem_id} label")
    out = {}
    for i in range(labels.count()):
        lab = labels.nth(i)
        out[lab.inner_text().strip()] = lab.locator("input").is_checked()
    return out


def _compare(page, query: str) -> tuple[str, str]:
    box = _box(page, "compare-query")
    box.fill(query)
    _mark_stale(page, "#compare-results")
    page.locator("#compare-button").click()
    _wait_fresh(page, "#compare-results", "table.vr-cmp")
    return page.locator("#compare-results").inner_text(), page.locator("#compare-stats").inner_html()


def test_stock_compare_ticks_only_available_systems(page):
    _tab(page, "So sánh")
    page.wait_for_selector("#compare-systems label")
    boxes = _checkboxes(page, "compare-systems")
    assert not any("phoranker" in name for name in boxes), boxes  # not offered: its weights are missing
    ticked = [n for n, on in boxes.items() if on]
    assert set(ticked) == {"hybrid", "hybrid+overlap", "hybrid+viranker"}, ticked
    unavailable = page.locator("#compare-unavailable").inner_text()
    assert "hybrid+phoranker" in unavailable and "PHORANKER_PATH" in unavailable and "Không khả dụng" in unavailable
    # worded in Vietnamese by the status's reason code (not_downloaded), not its English detail
    assert "chưa có trong bộ nhớ đệm Hugging Face" in unavailable and "is not set" not in unavailable
    results, stats = _compare(page, kit.BENCH_QUERY)
    assert "không khả dụng" not in stats and "vr-warn" not in stats  # a stock Compare shows no warning
    # the benchmark question: every system's own metrics on it
    metrics = page.locator("#compare-query-metrics")
    assert metrics.count() == 1
    text = metrics.inner_text()
    assert "NDCG@10" in text and "MRR@10" in text and "Recall@10" in text
    for name in ticked:
        assert name in text


def test_add_a_reranker_from_a_local_model_dir(page, served):
    _tab(page, "So sánh")
    page.locator("#compare-add-model").get_by_text("Thêm reranker từ thư mục mô hình").first.click()
    path = _box(page, "compare-model-path")
    path.wait_for(state="visible")
    help_text = page.locator("#compare-model-help").inner_text()
    assert "assets/models" in help_text and str(served.home) not in help_text  # no server paths shown

    def add(text: str) -> str:
        _mark_stale(page, "#compare-model-msg")
        path.fill(text)
        page.locator("#compare-model-add").click()
        _wait_fresh(page, "#compare-model-msg", ".vr-notice")
        return page.locator("#compare-model-msg").inner_text()

    assert "không được chứa" in add("../tiny-viranker")  # traversal refused
    assert "thư mục cho phép" in add(str(served.home / "tiny-viranker"))  # a real model dir, but outside
    (served.home / "models").mkdir(exist_ok=True)
    os.symlink(served.home / "tiny-viranker", served.home / "models" / "escape")
    assert "thư mục cho phép" in add("escape")  # a symlink inside leading out
    (served.home / "models" / "empty").mkdir()
    assert "không phải là thư mục mô hình" in add("empty")
    kit.tiny_viranker_dir(served.home / "models" / "tiny")
    msg = add("tiny")
    assert "Đã nạp reranker local-tiny" in msg
    page.wait_for_function("() => document.querySelector('#compare-systems').innerText.includes('hybrid+local-tiny')")
    boxes = _checkboxes(page, "compare-systems")
    assert "bm25+local-tiny" in boxes
    for name, on in boxes.items():  # three at most: untick all but the new one and bm25
        if on != (name in ("hybrid+local-tiny", "bm25")):
            page.locator("#compare-systems").get_by_label(name, exact=True).click()
    assert {n for n, on in _checkboxes(page, "compare-systems").items() if on} == {"hybrid+local-tiny", "bm25"}
    results, stats = _compare(page, kit.BENCH_QUERY)
    assert "hybrid+local-tiny" in results and "không khả dụng" not in stats
    assert "hybrid+local-tiny" in page.locator("#compare-query-metrics").inner_text()


def test_evaluate_shows_p_values_and_empty_states(page, served):
    import app as app_module

    page.reload()  # a new page: it offers the reranker loaded in the previous test too
    page.wait_for_selector("#search-query textarea, #search-query input")
    _tab(page, "Đánh giá")
    page.wait_for_selector("#eval-button")
    assert "Chưa có kết quả" in page.locator("#eval-empty").inner_text()
    page.wait_for_function("() => document.querySelector('#eval-systems').innerText.includes('hybrid+local-tiny')")
    boxes = _checkboxes(page, "eval-systems")
    assert [n for n, on in boxes.items() if on] == ["bm25", "hybrid", "hybrid+overlap"]  # + first available reranker
    assert not any("phoranker" in n for n in boxes)  # only systems that can run are offered
    _mark_stale(page, "#eval-significance")
    page.locator("#eval-button").click()
    page.wait_for_function("() => document.querySelector('#eval-status').innerText.includes('tiny-bench')",
                           timeout=120_000)
    page.wait_for_function("() => document.querySelector('#eval-significance').innerText.includes('hybrid+overlap')")
    sig = page.locator("#eval-significance").inner_text()
    assert "p (t-test cặp)" in sig and "p (Wilcoxon)" in sig and "Kết luận" in sig
    assert sig.count("NDCG@10") == 3 and sig.count("MRR@10") == 3  # 3 pairs × 2 metrics
    heads = page.locator("#eval-metrics thead th").all_inner_texts()  # Vietnamese headers, metric names kept
    assert any("Hệ thống" in h for h in heads) and any("Số câu hỏi" in h for h in heads), heads
    assert any("NDCG@10" in h for h in heads) and not any(h.strip() in ("system", "queries") for h in heads)
    # the "most different" table: rows, or the empty-state text saying why (as the same run gives server-side)
    *_, diff, _files, _sig, _empty = app_module.Handlers(served.backend).evaluate(
        "tiny-bench", None, ["bm25", "hybrid", "hybrid+overlap"], 120)
    empty_text = page.locator("#eval-empty").inner_text()
    if diff.empty:
        assert "Không có câu hỏi nào" in empty_text
    else:
        assert empty_text.strip() == "" and diff.iloc[0]["Mã câu hỏi"] in page.locator("#eval-perquery").inner_text()
    # one system: nothing to test, and the page says so
    for name in ("hybrid", "hybrid+overlap"):
        page.locator("#eval-systems").get_by_label(name, exact=True).click()
    _mark_stale(page, "#eval-empty")
    page.locator("#eval-button").click()
    _wait_fresh(page, "#eval-empty", ".vr-notice")
    assert "ít nhất hai hệ thống" in page.locator("#eval-empty").inner_text()
