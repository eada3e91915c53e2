"""``<html lang="vi">`` in the HTML the server sends (issue 18), before any script runs: the pure rewrite and
the real app through HTTP."""

from __future__ import annotations

import re

import pytest

from search.ui.html_lang import set_html_lang

httpx = pytest.importorskip("httpx")

from tests import app_testkit as kit  # noqa: E402


@pytest.mark.parametrize(("given", "want"), [
    (b'<!doctype html><html lang="en" class="x"><head>', b'<!doctype html><html lang="vi" class="x"><head>'),
    (b"<html LANG='en-US'><body>", b'<html lang="vi"><body>'),
    (b"<html><body>", b'<html lang="vi"><body>'),
    (b"<p>no document tag</p>", b"<p>no document tag</p>"),
])
def test_set_html_lang(given: bytes, want: bytes) -> None:
    assert set_html_lang(given, "vi") == want


@pytest.mark.slow
def test_served_page_says_vietnamese_and_json_is_untouched(tmp_path) -> None:
    with kit.running_app(tmp_path) as ra:
        page = httpx.get(ra.url, timeout=30)
        assert page.status_code == 200
        head = page.text[:400].lower()
        assert re.search(r'<html\s+lang="vi"', head) and 'lang="en"' not in head, head
        assert int(page.headers["content-length"]) == len(page.content)
        status = httpx.get(ra.url.rstrip("/") + "/api/v1/status", timeout=30)
        assert status.status_code == 200 and status.headers["content-type"].startswith("application/json")
