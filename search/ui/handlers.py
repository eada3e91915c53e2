"""All tabs' event handlers on one object, as plain methods (the Gradio wiring is in each tab's ``build``)."""

from __future__ import annotations

from search.ui.backend import Backend
from search.ui.messages import banner_html
from search.ui.tab_admin import AdminHandlers
from search.ui.tab_compare import CompareHandlers
from search.ui.tab_evaluate import EvaluateHandlers
from search.ui.tab_search import SearchHandlers

__all__ = ["Handlers"]


class Handlers(SearchHandlers, CompareHandlers, EvaluateHandlers, AdminHandlers):
    """The UI's event handlers: ``search`` (Search tab), ``compare`` (Compare), ``evaluate`` (Evaluate),
    ``login`` … ``delete`` (Admin), and :meth:`banner` (the page-top status)."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    def banner(self) -> tuple[str, bool]:
        """→ (banner HTML, keep polling?). Polling goes on while a build runs, while nothing serves, and
        while a failed build is shown (so the page notices a retry)."""
        st = self.b.status()
        return banner_html(self.b), bool(st["building"] or st["generation"] is None or st["failure"] is not None)
