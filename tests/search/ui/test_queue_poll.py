"""Gradio's queue polls less often (search.ui.layout.slow_queue_poll): an idle app no longer burns ~9% of a core.

The attribute names are Gradio's own (``Queue.sleep_when_free``, ``Queue.progress_update_sleep_when_free``):
if a Gradio upgrade renames them, the first test fails here instead of the setting silently doing nothing.
"""

from __future__ import annotations

import gradio as gr

from search.ui.layout import PROGRESS_POLL_S, QUEUE_POLL_S, slow_queue_poll


def _queued() -> gr.Blocks:
    with gr.Blocks() as page:
        gr.Textbox()
    page.queue()
    return page


def test_the_queue_polls_every_20_ms_not_every_ms() -> None:
    page = _queued()
    assert page._queue.sleep_when_free < QUEUE_POLL_S  # Gradio's default (1 ms on Linux) is what we change
    assert slow_queue_poll(page)
    assert page._queue.sleep_when_free == QUEUE_POLL_S == 0.02
    assert page._queue.progress_update_sleep_when_free == PROGRESS_POLL_S


def test_a_slower_setting_is_kept_and_a_page_without_queue_is_left_alone() -> None:
    page = _queued()
    page._queue.sleep_when_free = 0.5
    assert slow_queue_poll(page) and page._queue.sleep_when_free == 0.5
    with gr.Blocks() as bare:
        gr.Textbox()
    bare._queue = None
    assert not slow_queue_poll(bare)
