"""Where ViRanker keeps its data, read from the environment at call time.

- ``VIRANKER_HOME`` — data root (default ``<repo>/var``). Holds ``indexes/<name>/`` and
  ``cache/embeddings.sqlite``.
- ``QDRANT_URL`` / ``QDRANT_API_KEY`` — when ``QDRANT_URL`` is set, vectors go to that Qdrant server
  (collection ``<index>__<generation>``) instead of a local-mode path inside the generation.
- ``VIRANKER_VECTOR_ENGINE`` — the embedded engine for a *new* vector path: ``edge`` (default: the Qdrant
  engine in-process, ``qdrant-edge-py``) or ``local`` (``qdrant-client``'s pure-Python local mode). An existing
  path is always opened with the engine that wrote it (see :mod:`indexing.vectors`).

Every function reads the environment when called (not at import), so tests and the CLI can change it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "home",
    "indexes_dir",
    "index_dir",
    "cache_path",
    "qdrant_url",
    "qdrant_api_key",
    "vector_engine",
    "VECTOR_ENGINES",
    "DEFAULT_VECTOR_ENGINE",
    "validate_index_name",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTOR_ENGINES = ("edge", "local")
DEFAULT_VECTOR_ENGINE = "edge"
#: Builds of at least this many passages give the embedded engine an HNSW graph (``VIRANKER_HNSW_MIN_PASSAGES``)
DEFAULT_HNSW_MIN_PASSAGES = 50_000
_INDEX_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def home(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$VIRANKER_HOME``, else ``<repo>/var`` (not created here)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("VIRANKER_HOME", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "var"


def validate_index_name(name: str) -> str:
    """Return ``name`` if it is a safe index name (letters, digits, ``._-``; max 64), else raise ValueError.

    Index names become directory names and Qdrant collection prefixes, so no path separators.
    """
    if not isinstance(name, str) or not _INDEX_NAME_RE.match(name) or "__" in name:
        raise ValueError(
            f"invalid index name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, no '__')"
        )
    return name


def indexes_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/indexes``."""
    return home(root) / "indexes"


def index_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/indexes/<name>`` after validating ``name``."""
    return indexes_dir(root) / validate_index_name(name)


def cache_path(root: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/cache/embeddings.sqlite`` (the embedding cache shared by all indexes)."""
    return home(root) / "cache" / "embeddings.sqlite"


def qdrant_url() -> str | None:
    """``$QDRANT_URL`` stripped, or None when unset/empty (local mode)."""
    url = os.environ.get("QDRANT_URL", "").strip()
    return url or None


def qdrant_api_key() -> str | None:
    """``$QDRANT_API_KEY`` or None."""
    key = os.environ.get("QDRANT_API_KEY", "").strip()
    return key or None


def vector_engine() -> str:
    """``$VIRANKER_VECTOR_ENGINE`` lower-cased (``edge`` or ``local``), default :data:`DEFAULT_VECTOR_ENGINE`.

    Raises ValueError for any other value (a typo must not silently pick an engine).
    """
    engine = os.environ.get("VIRANKER_VECTOR_ENGINE", "").strip().lower() or DEFAULT_VECTOR_ENGINE
    if engine not in VECTOR_ENGINES:
        raise ValueError(f"VIRANKER_VECTOR_ENGINE={engine!r}: choose one of {', '.join(VECTOR_ENGINES)}")
    return engine


def hnsw_min_passages() -> int | None:
    """``$VIRANKER_HNSW_MIN_PASSAGES`` (default :data:`DEFAULT_HNSW_MIN_PASSAGES`): a full build of at least
    this many passages builds an HNSW graph for the embedded vector engine before it serves; ``0`` = never.

    Exact search over 118k vectors of 384 floats takes ~18–25 ms here, the graph ~2.5 ms (recall@10 0.994 on
    real e5 vectors) for ~2 CPU-minutes of build at that size. Raises ValueError for a non-integer value."""
    raw = os.environ.get("VIRANKER_HNSW_MIN_PASSAGES", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_HNSW_MIN_PASSAGES
    except ValueError:
        raise ValueError(f"VIRANKER_HNSW_MIN_PASSAGES={raw!r} is not an integer") from None
    return value if value > 0 else None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one, else the machine's count; at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
