"""Why a model cannot run here, as a typed code: :class:`UnavailableReason`, shared by every layer.

Carried by :class:`indexing.embedders.EmbedderUnavailable` (an embedding model) and by the reranker errors and
statuses of :mod:`reranker.availability` (which re-exports it from here: indexing is the lowest layer, so the
code lives here and the reranker layer imports it down). A UI words the code (``search.ui.messages``), never
the English ``reason`` / ``how_to_fix`` text, which stays for logs and technical users.

:func:`package_reason` decides missing vs broken for a package that failed to import: by whether the
distribution is installed (:func:`indexing.deps.installed_version`), never by the error's message.
"""

from __future__ import annotations

from enum import StrEnum

from indexing.deps import installed_version

__all__ = ["UnavailableReason", "package_reason", "EmbedderUnavailable"]


class UnavailableReason(StrEnum):
    """Why a model is unavailable (one code per failure mode of :mod:`reranker.backends` and
    :mod:`indexing.embedders`)."""

    NOT_A_DIRECTORY = "not_a_directory"  # the given path / $ENV / cached snapshot is not a directory
    NO_CONFIG = "no_config"  # the model dir has no config.json
    NO_WEIGHTS = "no_weights"  # the model dir has no weights file (or not the one asked for: sparse_linear.pt)
    NO_TOKENIZER = "no_tokenizer"  # the model dir has no tokenizer files, or one with the wrong vocabulary
    NO_DEFAULT_MODEL = "no_default_model"  # ViRanker: nothing in assets/models/viranker-small, $VIRANKER_MODEL unset
    NOT_DOWNLOADED = "not_downloaded"  # a hub model: its $ENV unset and not in the local Hugging Face cache
    PACKAGE_MISSING = "package_missing"  # a package the backend needs is not installed
    PACKAGE_BROKEN = "package_broken"  # ... is installed but does not import (an incompatible version)
    LOAD_FAILED = "load_failed"  # the files are there but loading them failed (corrupt / incompatible)
    UNSPECIFIED = "unspecified"  # a status or error from elsewhere that carries no code


def package_reason(dist: str) -> UnavailableReason:
    """The code for an import of distribution ``dist`` that failed: ``PACKAGE_MISSING`` when it is not
    installed, else ``PACKAGE_BROKEN`` (installed but it does not import)."""
    if installed_version(dist) is None:
        return UnavailableReason.PACKAGE_MISSING
    return UnavailableReason.PACKAGE_BROKEN


class Unavailable(RuntimeError):
    """A model cannot be loaded here. ``name``; ``reason`` / ``how_to_fix``: English detail; ``code``: the
    :class:`UnavailableReason`; ``env``: the environment variable that points at the model (None when none);
    ``hub_id``: the Hugging Face id it was looked up as; ``package``: the distribution at fault (package codes).
    Subclasses name their ``kind`` ("embedder", "reranker") for the message."""

    kind = "model"

    def __init__(self, name: str, reason: str, how_to_fix: str,
                 code: UnavailableReason = UnavailableReason.UNSPECIFIED, *, env: str | None = None,
                 hub_id: str | None = None, package: str | None = None) -> None:
        self.name, self.reason, self.how_to_fix = name, reason, how_to_fix
        self.code, self.env, self.hub_id, self.package = UnavailableReason(code), env, hub_id, package
        super().__init__(f"{self.kind} {name!r} unavailable: {reason}. {how_to_fix}")


class EmbedderUnavailable(Unavailable):
    """The embedding model cannot be loaded here (weights missing, broken tokenizer, package missing); each raise
    site in :mod:`indexing.embedders` sets ``code``. :mod:`indexing.embedders` re-exports it."""

    kind = "embedder"
