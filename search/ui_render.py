"""Moved to :mod:`search.ui.render`; this name stays importable for older callers."""

from search.ui.render import *  # noqa: F403
from search.ui.render import __all__  # noqa: F401
