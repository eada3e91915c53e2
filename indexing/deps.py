"""Why an optional third-party package failed to import, in words a user can act on.

A package that is installed but does not import (e.g. a release built against an older ``transformers``)
must not be reported as "weights missing" or "pip install X": the fix is the tested versions in
``constraints.txt``. :func:`import_failure` turns the ImportError into ``(reason, how_to_fix)``.
"""

from __future__ import annotations

from importlib import metadata

CONSTRAINTS_HINT = 'pip install -c constraints.txt -e .  (the tested versions, from the repository root)'


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def module_distribution(module: str | None, default: str = "transformers") -> str:
    """The distribution that provides top-level module ``module`` (``sentence_transformers`` →
    ``sentence-transformers``); ``default`` when unknown."""
    if not module:
        return default
    top = module.split(".")[0]
    dists = metadata.packages_distributions().get(top)
    return dists[0] if dists else top


def import_failure(dist: str, err: BaseException, related: tuple[str, ...] = ("transformers",)) -> tuple[str, str]:
    """``(reason, how_to_fix)`` for ``import <dist>`` having raised ``err``.

    Not installed → "pip install" with the lock; installed but broken → the installed versions of ``dist``
    and ``related`` packages are named, and the fix is the tested set.
    """
    version = installed_version(dist)
    if version is None:
        return f"{dist} is not installed", CONSTRAINTS_HINT
    others = ", ".join(f"{r} {installed_version(r) or 'missing'}" for r in related if r != dist)
    reason = (f"{dist} {version} is installed but cannot be imported ({type(err).__name__}: {err})"
              + (f"; installed: {others}" if others else ""))
    return reason, f"install the tested versions: {CONSTRAINTS_HINT}"
