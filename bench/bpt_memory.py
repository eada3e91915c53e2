"""Blockwise Parallel Transformer vs eager attention: CPU peak memory, exactness and speed at long lengths.

Peak memory is measured honestly for torch allocations: every variant runs in its own fresh subprocess,
which records its peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) right before and right after
one forward of a single e5-small-sized encoder layer (384 hidden, 12 heads, 1536 FFN; random weights, fixed
seed) on an 8192-token sequence under ``torch.inference_mode``. The difference is the extra peak that the
forward needed. (tracemalloc would not see torch's allocations.)

Variants: ``bpt`` (blockwise attention + chunked FFN, config block sizes), ``eager`` (materialized
L x L scores + whole FFN, what a plain implementation does), ``sdpa`` (torch's fused attention, whole FFN).
Exactness: max |bpt - eager| over the layer outputs. Speed: blockwise attention alone vs
``torch.nn.functional.scaled_dot_product_attention`` on the same q, k, v (best of ``--repeats``).

Usage: ``OMP_NUM_THREADS=2 python bench/bpt_memory.py --json``; the last stdout line is one JSON object
{"max_abs_diff", "peak_mem_ratio_8192", "time_ratio_vs_sdpa", ...}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _layer_and_input(seq_len: int, block: int, pad: int):
    import torch

    from reranker.config import ViRankerConfig
    from reranker.model import EncoderLayer

    torch.manual_seed(0)
    cfg = ViRankerConfig(attn_block_size=block, ffn_chunk_size=block, dropout=0.0, attention_dropout=0.0)
    layer = EncoderLayer(cfg).eval()
    x = torch.randn(1, seq_len, cfg.hidden_size)
    mask = torch.ones(1, seq_len, dtype=torch.bool)
    if pad:
        mask[0, seq_len - pad :] = False  # some right padding, so the mask path is measured too
    return cfg, layer, x, mask


def child(variant: str, seq_len: int, block: int, pad: int, out_path: str) -> None:
    """Run one variant once in this (fresh) process; print {"variant", "peak_delta_mb", "seconds"}."""
    import numpy as np
    import torch

    cfg, layer, x, mask = _layer_and_input(seq_len, block, pad)
    rope = None
    with torch.inference_mode():
        layer(x[:, :64], mask[:, :64], rope, variant, False)  # warm-up: kernels, thread pool
        before = _maxrss_mb()
        t0 = time.perf_counter()
        y = layer(x, mask, rope, variant, False)
        seconds = time.perf_counter() - t0
        after = _maxrss_mb()
    np.save(out_path, y.numpy())
    print(json.dumps({"variant": variant, "peak_delta_mb": after - before, "seconds": seconds,
                      "baseline_mb": before}))


def run_child(variant: str, seq_len: int, block: int, pad: int, out_path: str) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--seq-len", str(seq_len), "--block", str(block),
           "--pad", str(pad), "--out", out_path]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def attention_speed(seq_len: int, block: int, repeats: int) -> dict:
    """Best-of-N seconds: blockwise attention vs torch SDPA on (1, 12, L, 32) q/k/v; interleaved runs."""
    import torch
    import torch.nn.functional as F

    from reranker.bpt import blockwise_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 12, seq_len, 32) for _ in range(3))
    fns = {"bpt": lambda: blockwise_attention(q, k, v, None, block_size=block),
           "sdpa": lambda: F.scaled_dot_product_attention(q, k, v)}
    best = dict.fromkeys(fns, float("inf"))
    outs = {}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                outs[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    best["max_abs_diff_vs_sdpa"] = float((outs["bpt"] - outs["sdpa"]).abs().max())
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON summary line")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--block", type=int, default=128, help="attn_block_size = ffn_chunk_size")
    ap.add_argument("--pad", type=int, default=192, help="right-padding tokens inside the sequence")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=["bpt", "eager", "sdpa"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.seq_len, args.block, args.pad, args.out)
        return

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        mem = {}
        outs = {}
        for variant in ("bpt", "sdpa", "eager"):
            path = str(Path(tmp) / f"{variant}.npy")
            mem[variant] = run_child(variant, args.seq_len, args.block, args.pad, path)
            outs[variant] = np.load(path)
            if not args.json:
                print(mem[variant], file=sys.stderr)
    real = slice(0, args.seq_len - args.pad)  # padded positions' outputs are not meaningful
    max_abs_diff = float(np.abs(outs["bpt"][:, real] - outs["eager"][:, real]).max())
    speed = attention_speed(args.seq_len, args.block, args.repeats)
    res = {
        "max_abs_diff": max_abs_diff,
        "peak_mem_ratio_8192" if args.seq_len == 8192 else f"peak_mem_ratio_{args.seq_len}":
            round(mem["bpt"]["peak_delta_mb"] / mem["eager"]["peak_delta_mb"], 5),
        "time_ratio_vs_sdpa": round(speed["bpt"] / speed["sdpa"], 3),
        "seq_len": args.seq_len,
        "block_size": args.block,
        "peak_delta_mb": {v: round(m["peak_delta_mb"], 1) for v, m in mem.items()},
        "layer_forward_s": {v: round(m["seconds"], 3) for v, m in mem.items()},
        "attention_s": {"bpt": round(speed["bpt"], 3), "sdpa": round(speed["sdpa"], 3)},
        "attention_max_abs_diff_vs_sdpa": speed["max_abs_diff_vs_sdpa"],
        "max_abs_diff_sdpa_vs_eager": float(np.abs(outs["sdpa"][:, real] - outs["eager"][:, real]).max()),
        "threads": __import__("torch").get_num_threads(),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
