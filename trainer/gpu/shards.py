"""Trained weights as size-capped safetensors shards (what comes back from the GPU machine: at most 8 files of at
most 16 MiB each, 64 MiB in all) and their reassembly.

Shards hold every state-dict entry except those named in ``exclude`` (the frozen word embeddings, rebuilt exactly
from e5 where the model is unpacked), floating-point parameters cast to ``dtype``. Names:
``model-00001-of-00003.safetensors``, ...; each file's metadata names its index and the excluded keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trainer.gpu.packio import sha256_file

__all__ = ["MIB", "write_shards", "read_shards", "shard_names"]

MIB = 2**20


def shard_names(directory: str | Path) -> list[Path]:
    """The shard files of ``directory``, in order (FileNotFoundError when there are none or some are missing)."""
    files = sorted(Path(directory).glob("model-*-of-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model-*-of-*.safetensors shards in {directory}")
    n = int(files[0].stem.split("-of-")[1])
    want = [Path(directory) / f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    if files != want:
        raise FileNotFoundError(f"{directory}: expected shards {[p.name for p in want]}, found {[p.name for p in files]}")
    return files


def write_shards(state: dict[str, torch.Tensor], out_dir: str | Path, dtype: torch.dtype = torch.float16,
                 max_bytes: int = 15 * MIB, exclude: Sequence[str] = (), max_files: int = 7) -> list[dict]:
    """``state`` minus ``exclude`` -> shards of at most ``max_bytes`` each in ``out_dir``; returns
    ``[{"name", "bytes", "sha256", "tensors"}]``. ValueError when a tensor alone exceeds ``max_bytes`` or more than
    ``max_files`` shards would be needed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        if name in exclude:
            continue
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(dtype)
        t = t.contiguous()
        nbytes = t.numel() * t.element_size()
        if nbytes > max_bytes:
            raise ValueError(f"{name} alone is {nbytes} bytes > {max_bytes}")
        if size + nbytes > max_bytes and groups[-1]:
            groups.append({})
            size = 0
        groups[-1][name] = t
        size += nbytes
    if len(groups) > max_files:
        raise ValueError(f"{len(groups)} shards needed, at most {max_files} allowed")
    n = len(groups)
    info = []
    for i, g in enumerate(groups, start=1):
        path = out_dir / f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file(g, str(path), metadata={"format": "pt", "shard": f"{i}/{n}", "excluded": ",".join(exclude)})
        info.append({"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "tensors": len(g)})
    return info


def read_shards(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``directory``'s shards, merged (ValueError on a key in two shards)."""
    state: dict[str, torch.Tensor] = {}
    for path in shard_names(directory):
        part = load_file(str(path))
        both = set(part) & set(state)
        if both:
            raise ValueError(f"{path.name}: keys already in an earlier shard: {sorted(both)[:3]}")
        state.update(part)
    return state
