"""What the headless-Chromium tests share (Debian's /usr/bin/chromium driven by pip playwright; never
``playwright install``): the executable and its flags, the skip-or-fail rule, and small page helpers.

``require_chromium()`` at a test module's top: without /usr/bin/chromium the module is skipped, unless ``CI`` is
set (then it fails: CI must run the browser tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000


def require_chromium() -> None:
    """Skip the calling test module when Chromium is missing (fail instead under ``CI``)."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI is set but /usr/bin/chromium is missing: install Debian's chromium package")
    pytest.skip("/usr/bin/chromium not found (install Debian's chromium; `playwright install` is not used)",
                allow_module_level=True)


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a ``sync_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def open_page(browser: Any, url: str, *, width: int = 1280, height: int = 900, timeout_ms: int = TIMEOUT_MS,
              **context_kw: Any) -> tuple[Any, Any]:
    """A new context + page on ``url``, waited until the Search box is there → ``(context, page)``."""
    context = browser.new_context(viewport={"width": width, "height": height}, **context_kw)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_selector("#search-query textarea, #search-query input")
    return context, page


def box(page: Any, elem_id: str) -> Any:
    """The text input (textarea or input) of the Gradio component ``elem_id``."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def mark_stale(page: Any, sel: str) -> None:
    """Tag the current children of ``sel`` so that :func:`wait_fresh` can tell new output from old."""
    page.evaluate("(sel) => document.querySelectorAll(sel + ' *').forEach(e => e.dataset.stale = '1')", sel)


def wait_fresh(page: Any, sel: str, child: str, timeout: int = TIMEOUT_MS) -> None:
    """Wait until ``sel`` holds a ``child`` element rendered after :func:`mark_stale`."""
    page.wait_for_function(
        "([sel, child]) => { const c = document.querySelector(sel + ' ' + child); return c && !c.dataset.stale; }",
        arg=[sel, child], timeout=timeout,
    )
