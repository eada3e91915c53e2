"""Paths on the trainer's command line: inputs found as given or under the repository, outputs under it."""

from __future__ import annotations

from pathlib import Path

from indexing.settings import REPO_ROOT

__all__ = ["resolve", "resolve_out"]


def resolve(path: str) -> Path:
    """An input path: as given when absolute or existing, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


def resolve_out(path: str | Path) -> Path:
    """An output path: as given when absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p
