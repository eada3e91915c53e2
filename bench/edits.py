"""Incremental add/delete end to end through the generation path (``indexing.edits``), at corpus sizes.

    OMP_NUM_THREADS=2 python bench/edits.py [--sizes 20000,115000] [--add 1000] [--delete 100]
        [--data /work/shared/data] [--work var/edits/bench] [--json]

Per size N: a generation of the first N viwiki paragraphs is built once with :func:`indexing.build.build_generation`
(BM25 + vectors + restorer; reused by a rerun when ``--work`` still holds it), then

- ``add_1k_s``: :func:`indexing.edits.add_passages` of the next ``--add`` paragraphs (wall seconds, new
  generation written and ``CURRENT`` swapped), ``add_1k_index_s`` the same without the ``embed`` stage
  (embedding the new passages is model time, counted apart: ``add_1k_embed_s``);
- ``delete_100_s``: :func:`indexing.edits.delete_passages` of ``--delete`` random passage ids (nothing embedded);
- the stage seconds of both manifests (``passages``, ``bm25``, ``embed``, ``vectors_copy``, ``vectors``,
  ``restorer``) and ``build_s`` (the full build, for scale).

Vectors are **random unit vectors** (dim 384, seeded by the text's sha1: :class:`RandomEmbedder`), so the vector
numbers are the engine's cost, not a model's. The engine is ``settings.vector_engine()`` (qdrant-edge by default).
The load average is recorded (the cores are shared). Prints one JSON line last; also writes ``<work>/edits.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scaling import DEFAULT_DATA, log, read_paragraphs  # noqa: E402
from indexing import generations as gens  # noqa: E402
from indexing import settings  # noqa: E402
from indexing.build import build_generation  # noqa: E402
from indexing.edits import add_passages, delete_passages  # noqa: E402

INDEX = "bench-edits"


class RandomEmbedder:
    """Unit vectors drawn from a generator seeded by the text's sha1 (dim 384): deterministic, no model."""

    model_id = "bench/random-unit-384"
    dim = 384
    name = "random"

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha1(t.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)

    encode_queries = encode_passages


def bench_size(n: int, n_add: int, n_delete: int, data: Path, work: Path) -> dict[str, object]:
    """Build N (once), then one incremental add and one delete → their seconds and stage seconds."""
    home = work / f"n{n}"
    corpus = read_paragraphs(data / "viwiki" / "paragraphs.jsonl.gz", n + n_add)
    base, extra = corpus[:n], corpus[n:]
    idx = settings.index_dir(INDEX, home)
    emb = RandomEmbedder()
    row: dict[str, object] = {"passages": n}
    marker = home / "built.json"
    if marker.is_file() and gens.current(idx) == json.loads(marker.read_text())["generation"]:
        row["build_s"] = json.loads(marker.read_text())["build_s"]
        log(f"n={n}: reusing the built generation")
    else:
        log(f"n={n}: full build")
        t = time.perf_counter()
        m = build_generation(INDEX, base, emb, home, progress=False, keep=None)
        row["build_s"] = round(time.perf_counter() - t, 2)
        row["build_stage_seconds"] = m["stage_seconds"]
        marker.write_text(json.dumps({"generation": m["generation"], "build_s": row["build_s"]}))
    base_gen = gens.current(idx)
    row["load_before"] = round(os.getloadavg()[0], 2)

    log(f"n={n}: add {n_add}")
    t = time.perf_counter()
    m = add_passages(INDEX, extra, emb, home, progress=False)
    row["add_1k_s"] = round(time.perf_counter() - t, 3)
    row["add_1k_embed_s"] = m["stage_seconds"].get("embed", 0.0)
    row["add_1k_index_s"] = round(row["add_1k_s"] - row["add_1k_embed_s"], 3)
    row["add_stage_seconds"] = m["stage_seconds"]
    assert m["counts"]["passages"] == n + n_add and m.get("incremental"), m["counts"]

    victims = random.Random(n).sample([p.id for p in base], n_delete)
    log(f"n={n}: delete {n_delete}")
    t = time.perf_counter()
    m = delete_passages(INDEX, victims, emb, home, progress=False)
    row["delete_100_s"] = round(time.perf_counter() - t, 3)
    row["delete_stage_seconds"] = m["stage_seconds"]
    assert m["counts"]["passages"] == n + n_add - n_delete, m["counts"]
    row["load_after"] = round(os.getloadavg()[0], 2)
    # back to the built generation, so that a rerun measures the same change again
    gens.switch(idx, base_gen)
    for g in gens.list_generations(idx):
        if g.name != base_gen:
            gens.delete_generation(idx, g.name)
    log(f"n={n}: {row}")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000")
    ap.add_argument("--add", type=int, default=1000)
    ap.add_argument("--delete", type=int, default=100)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=REPO / "var" / "edits" / "bench")
    ap.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = ap.parse_args(argv)
    results = {}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        results[str(n)] = bench_size(n, args.add, args.delete, args.data, args.work)
    out = {"bench": "edits", "vectors": "random unit vectors, dim 384 (engine cost only)",
           "engine": settings.vector_engine(), "embedding": "embed stage timed apart (add_1k_embed_s)",
           "results": results}
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "edits.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
