"""The Search tab as a visitor sees it, in headless Chromium (issue 18): ``lang="vi"`` and one ``h1``, results as
a list with headings and named scores, "no good match" for gibberish, diacritic alternatives with one click,
the document view, "Xem thêm", filters, CSV / JSON export, ``?q=`` in the URL, the examples collapsing after
a search and no generation id outside Admin.

Runs on the test kit's tiny index (tests/app_testkit.py). Without /usr/bin/chromium the tests are skipped,
unless ``CI`` is set (then they fail). ``SCREENSHOTS=<dir>`` also saves a screenshot per step.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import app_testkit as kit
from tests.e2e import browser_kit as bk
from tests.e2e.browser_kit import box as _box
from tests.e2e.browser_kit import mark_stale as _mark_stale
from tests.e2e.browser_kit import wait_fresh as _wait_fresh

pytestmark = [pytest.mark.browser, pytest.mark.slow]
bk.require_chromium()
sync_api = pytest.importorskip("playwright.sync_api")
SHOTS = os.environ.get("SCREENSHOTS")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with kit.running_app(tmp_path_factory.mktemp("search-ux-home")) as ra:
        yield ra


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = bk.launch(p)
        yield b
        b.close()


@pytest.fixture()
def page(browser, served):
    context, pg = bk.open_page(browser, served.url, accept_downloads=True)
    yield pg
    context.close()


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _search(page, query: str) -> None:
    box = _box(page, "search-query")
    box.fill(query)
    _mark_stale(page, "#search-results")
    box.press("Enter")
    _wait_fresh(page, "#search-results", "ol.vr-hits")


def test_language_heading_and_no_generation_id(page, served):
    page.wait_for_function("() => document.documentElement.lang === 'vi'")
    assert page.locator("h1").count() == 1 and "ViRanker" in page.locator("h1").inner_text()
    page.wait_for_function("() => document.querySelector('#status-banner').innerText.trim().length > 0")
    assert served.backend.current_generation() not in page.locator("#status-banner").inner_text()
    text = page.locator("#tab-search").inner_text()
    assert "Cách tìm" in text and "Số kết quả mỗi trang" in text and "Pipeline" not in text and "Top-k" not in text


def test_results_list_scores_examples_collapse_and_url(page, served):
    assert page.locator("#search-examples button").first.is_visible()
    _search(page, "Đà Lạt cao nguyên")
    items = page.locator("#search-results ol.vr-hits > li.vr-hit")
    assert items.count() >= 1 and items.first.locator("h3").inner_text().startswith("Đà Lạt")
    first = items.first.inner_text()  # the default pipeline reranks: a probability, else a named scale
    assert "xác suất liên quan" in first or "điểm hợp nhất (tương đối" in first, first
    assert page.locator("#search-results h2").inner_text() == "Kết quả"
    assert "kết quả" in page.locator("#search-summary").inner_text()
    page.wait_for_function("() => new URL(location.href).searchParams.get('q') === 'Đà Lạt cao nguyên'")
    assert not page.locator("#search-examples button").first.is_visible()  # collapsed after the search
    _shot(page, "search-results")
    # the URL state is read on load
    page.goto(served.url + "?q=" + "s%C3%B4ng%20H%E1%BB%93ng")
    page.wait_for_selector("#search-results ol.vr-hits")
    assert _box(page, "search-query").input_value() == "sông Hồng"
    assert "Sông Hồng" in page.locator("#search-results li.vr-hit").first.inner_text()


def test_gibberish_shows_no_good_match(page):
    _search(page, "qwxz zzkj 12345 foobarbaz")
    page.wait_for_selector("#no-match")
    assert "Không tìm thấy kết quả phù hợp" in page.locator("#search-notice").inner_text()
    _shot(page, "search-no-match")


def test_alternatives_one_click(page):
    _search(page, "pho ha noi")  # the tiny corpus knows "phở" and "phố"
    assert "phở hà nội" in page.locator("#search-notice").inner_text()
    page.wait_for_selector("#search-alternatives", state="visible")
    assert "Có phải bạn muốn tìm" in page.locator("#search-alternatives").inner_text()
    alt = page.locator("#search-alt-0")
    text = alt.inner_text().strip()
    assert text == "phố hà nội"
    _shot(page, "search-alternatives")
    _mark_stale(page, "#search-results")
    alt.click()
    _wait_fresh(page, "#search-results", "ol.vr-hits")
    assert _box(page, "search-query").input_value() == text
    assert "chính xác" in page.locator("#search-notice").inner_text()


def test_document_view_more_filters_and_export(page):
    _search(page, "Hà Nội")
    page.locator("#search-results button.vr-open").first.click()
    page.wait_for_selector("#search-doc-panel", state="visible")
    page.wait_for_selector("#search-doc #doc-title")
    doc = page.locator("#search-doc").inner_text()
    assert "Tệp nguồn" in doc and "corpus.jsonl" in doc and "Trường dữ liệu gốc" in doc
    _shot(page, "search-document")
    page.locator("#search-doc-close").click()
    page.wait_for_selector("#search-doc-panel", state="hidden")
    # paging: one result per page, then "Xem thêm"
    page.locator("#search-topk input[type=number]").fill("1")
    page.locator("#search-topk input[type=number]").press("Enter")
    _search(page, "Hà Nội")
    assert page.locator("#search-results li.vr-hit").count() == 1
    page.locator("#search-more").click()
    page.wait_for_function("() => document.querySelectorAll('#search-results li.vr-hit').length === 2")
    # filter by source: only XQuAD-vi hits remain
    page.locator("#search-tools").get_by_text("Bộ lọc và tải kết quả").first.click()
    page.locator("#search-filter-source input").click()
    options = page.get_by_role("option")
    labels = options.all_inner_texts()
    assert any("Wikipedia tiếng Việt" in t for t in labels), labels
    page.get_by_role("option", name="Wikipedia tiếng Việt", exact=False).first.click()
    page.wait_for_function("() => document.querySelector('#search-summary').innerText.includes('bộ lọc')")
    for src in page.locator("#search-results li.vr-hit .vr-hitmeta").all_inner_texts():
        assert "Wikipedia tiếng Việt" in src
    with page.expect_download() as dl:
        page.locator("#search-export-csv").click()
    body = Path(dl.value.path()).read_text(encoding="utf-8")
    assert body.startswith("rank,id,doc_id,title,score,score_scale,source,text") and "Wikipedia tiếng Việt" in body
    with page.expect_download() as dl:
        page.locator("#search-export-json").click()
    assert '"hits"' in Path(dl.value.path()).read_text(encoding="utf-8")
