"""Whoosh bulk-build variants on the same viwiki paragraphs: time, CPU, disk, memory, and identical results.

    nice -n 10 python bench/bm25_build.py [--sizes 20000] [--variants baseline,parts2,...] [--queries 100]
        [--data /work/shared/data] [--work DIR] [--out var/bench/bm25_build.json] [--json]

Per size N, the first N paragraphs of ``viwiki/paragraphs.jsonl.gz`` (normalized as ingestion does,
:func:`bench.scaling.read_paragraphs`) are indexed by each variant in turn, in one run, each in a fresh interpreter (its own memory and CPU):

=========================  ===============================================================================
``baseline``               the build before this bench: one writer (``procs=1``, ``limitmb=256``), Whoosh's
                           posting pool, and the old analyzer (``exact`` and ``folded`` each normalize)
``cache``                  ``baseline`` with the analyzer sharing one normalization between the two fields
``limitmb1024``            ``cache`` with ``limitmb=1024`` (Whoosh's pool spills fewer or no runs)
``whoosh-procs2``          Whoosh's ``MpWriter`` (``ix.writer(procs=2)``): batches of 100 to 2 workers, merged
``whoosh-procs2-multiseg`` the same with ``multisegment=True`` (no merge: one segment per worker)
``compact``                ``BM25Index.build(procs=1)``: :class:`~indexing.bm25_pool.CompactPostingPool`
``parts2``                 ``BM25Index.build(procs=2)``: contiguous halves in 2 processes, compact pools,
                           segments in input order, no merge (``parts4``: quarters)
``parts2-whoosh-pool``     ``parts2`` with Whoosh's pool (``compact_pool=False``)
``parts2-merged``          ``parts2`` then one ``optimize`` merge into a single segment (cost of one segment)
=========================  ===============================================================================

Reported per variant: ``wall_s``, ``cpu_s`` (this process + its reaped children, ``getrusage``), the peak size
of the index directory during the build (``peak_disk_mb``: Whoosh's spilled runs live in it), the peak memory of
this process plus its children (``peak_mem_mb``: sum of PSS, sampled every 0.5 s; ``mem_start_mb`` before the
build), ``index_mb``, ``segments``, and the
query p50 over ``--queries`` real questions (``assets/benchmarks/nanibot-qa-test``, k = 100, field ``both``,
after 20 other questions as warm-up; fresh open). Every variant's top-100 (ids in rank order, scores within
1e-6) is compared with ``baseline``'s for those questions (``same_results``; ``same_up_to_ties`` when only the
order of equal scores differs), as are the live field-length totals in ``BM25Config`` (``same_lengths``).

The machine's cores are shared: the load average is recorded at the start and end of each variant and of
the run; compare ratios within one run. The last line is one JSON object (``--json`` prints only that).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from whoosh import index as whoosh_index  # noqa: E402

from bench.scaling import DEFAULT_DATA, read_paragraphs  # noqa: E402
from indexing import bm25  # noqa: E402
from indexing import normalize as _normalize  # noqa: E402
from indexing.bm25 import INDEX_NAME, BM25Config, BM25Index, _document  # noqa: E402
from indexing.bm25_edit import LIVE_LENGTHS_KEY  # noqa: E402
from indexing.passages import Passage  # noqa: E402

QUERIES = REPO / "assets" / "benchmarks" / "nanibot-qa-test" / "queries.jsonl"
VARIANTS = ("baseline", "cache", "limitmb1024", "whoosh-procs2", "whoosh-procs2-multiseg", "compact", "parts2",
            "parts2-whoosh-pool", "parts2-merged", "parts4")
DEFAULT_VARIANTS = ("baseline", "cache", "limitmb1024", "whoosh-procs2", "whoosh-procs2-multiseg", "compact",
                    "parts2", "parts2-whoosh-pool")
WARMUP = 20
TOL = 1e-6


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def uptime() -> str:
    """``uptime``'s load averages (1, 5, 15 min)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """User + system CPU of this process and of every child it has reaped."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (files vanishing during the walk are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total


class Sampler(threading.Thread):
    """Samples the size of ``path`` and the memory of this process tree (sum of PSS: pages shared after a fork
    counted once) every ``every`` seconds until stopped."""

    def __init__(self, path: Path, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.path, self.every = path, every
        self.peak_disk = self.peak_rss = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._stop_event.wait(self.every):
            self.peak_disk = max(self.peak_disk, dir_bytes(self.path))
            rss = 0
            for p in [me, *me.children(recursive=True)]:
                with suppress(psutil.Error):
                    rss += p.memory_full_info().pss  # forked children share the parent's pages
            self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextmanager
def old_analyzer():
    """The analyzer as it was before the shared normalization: each field calls its normalize function."""
    names = {"exact": "syllables", "folded": "folded_syllables", "words": "words"}
    saved = bm25.NormalizeTokenizer.tokens
    bm25.NormalizeTokenizer.tokens = lambda self, value: getattr(_normalize, names[self.kind])(value)
    try:
        yield
    finally:
        bm25.NormalizeTokenizer.tokens = saved


def build_whoosh_mp(path: Path, passages: Sequence[Passage], multisegment: bool) -> None:
    """What :meth:`BM25Index.build` writes, with Whoosh's own multiprocessing writer (``procs=2``)."""
    BM25Index.build(path, [], procs=1).close()  # empty index + config exactly as build writes them
    ix = whoosh_index.open_dir(path, indexname=INDEX_NAME)
    writer = ix.writer(procs=2, limitmb=256, multisegment=multisegment)
    try:
        for p in passages:
            writer.add_document(**_document(p, False))
        writer.commit()
    except BaseException:
        writer.cancel()
        raise
    with ix.reader() as reader:
        cfg = BM25Config.load(path)
        cfg[LIVE_LENGTHS_KEY] = {f: int(reader.field_length(f)) for f in ix.schema.scorable_names()}
        cfg.save(path)
    ix.close()


def build_variant(name: str, path: Path, passages: Sequence[Passage]) -> None:
    """Build ``passages`` at ``path`` the way variant ``name`` does (module docstring)."""
    if name == "baseline":
        with old_analyzer():
            BM25Index.build(path, passages, procs=1, limitmb=256, compact_pool=False).close()
    elif name in ("cache", "limitmb1024"):
        BM25Index.build(path, passages, procs=1, limitmb=256 if name == "cache" else 1024, compact_pool=False).close()
    elif name in ("whoosh-procs2", "whoosh-procs2-multiseg"):
        build_whoosh_mp(path, passages, multisegment=name.endswith("multiseg"))
    elif name in ("compact", "parts2", "parts4", "parts2-whoosh-pool"):
        procs = {"compact": 1, "parts4": 4}.get(name, 2)
        BM25Index.build(path, passages, procs=procs, limitmb=256, compact_pool=name != "parts2-whoosh-pool").close()
    elif name == "parts2-merged":
        BM25Index.build(path, passages, procs=2, limitmb=256).close()
        ix = whoosh_index.open_dir(path, indexname=INDEX_NAME)
        ix.writer(limitmb=256).commit(optimize=True)  # live lengths stay the build's exact totals
        ix.close()
    else:
        raise SystemExit(f"unknown variant {name!r}; choose from {VARIANTS}")


def serve(path: Path, queries: list[str], n: int) -> tuple[list[list[tuple[str, float]]], float, int, dict]:
    """Open fresh, warm up, time ``n`` queries → (results, p50 ms, segments, live lengths)."""
    with BM25Index.open(path) as ix:
        for q in queries[n:n + WARMUP]:
            ix.search(q, k=100)
        results, ms = [], []
        for q in queries[:n]:
            t = time.perf_counter()
            results.append(ix.search(q, k=100))
            ms.append((time.perf_counter() - t) * 1000)
        segments = len(ix._searcher.reader().leaf_readers())
        lengths = dict(ix.config.get(LIVE_LENGTHS_KEY) or {})
    return results, statistics.median(ms), segments, lengths


def tie_groups(hits: list[tuple[str, float]]) -> list[set[str]]:
    """Ids of consecutive hits whose scores are equal (within TOL), in rank order."""
    groups: list[set[str]] = []
    last = None
    for pid, score in hits:
        if last is None or abs(score - last) > TOL:
            groups.append(set())
        groups[-1].add(pid)
        last = score
    return groups


def compare(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> tuple[bool, bool, int]:
    """(same ids in the same order with scores within TOL; the same up to the order of equal scores — the last
    group of equal scores may hold other ids of that score, cut at k; number of queries that differ)."""
    same, ties, differ = True, True, 0
    for g, w in zip(got, want, strict=True):
        scores_equal = len(g) == len(w) and all(abs(a[1] - b[1]) <= TOL for a, b in zip(g, w, strict=True))
        if scores_equal and [a[0] for a in g] == [b[0] for b in w]:
            continue
        same, differ = False, differ + 1
        if not scores_equal or tie_groups(g)[:-1] != tie_groups(w)[:-1]:
            ties = False
    return same, ties, differ


def run_variant(name: str, work: Path, passages: Sequence[Passage], queries: list[str],
                n_queries: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build with variant ``name`` under ``work``, measure, serve → (row, {"results", "lengths"})."""
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    load_start = uptime()
    mem_start = psutil.Process().memory_full_info().pss
    sampler = Sampler(path)
    sampler.start()
    c0, t0 = cpu_seconds(), time.perf_counter()
    try:
        build_variant(name, path / "ix", passages)
    finally:
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        sampler.stop()
    results, p50, segments, lengths = serve(path / "ix", queries, n_queries)
    row: dict[str, Any] = {
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_ms_per_passage": round(cpu / len(passages) * 1000, 3),
        "peak_disk_mb": round(sampler.peak_disk / 2**20, 1), "peak_mem_mb": round(sampler.peak_rss / 2**20, 1),
        "mem_start_mb": round(mem_start / 2**20, 1),
        "index_mb": round(dir_bytes(path / "ix") / 2**20, 1), "segments": segments,
        "query_p50_ms": round(p50, 2), "load_start": load_start, "load_end": uptime(),
    }
    shutil.rmtree(path, ignore_errors=True)
    return row, {"results": results, "lengths": lengths}


def one_variant(args: argparse.Namespace) -> None:
    """Child mode (``--one NAME --n N``): one variant in a fresh process; row and results to ``--one-out``."""
    queries = [json.loads(line)["text"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line]
    passages = read_paragraphs(args.data / "viwiki" / "paragraphs.jsonl.gz", args.n)
    row, answers = run_variant(args.one, args.work, passages, queries, args.queries)
    args.one_out.write_text(json.dumps({"row": row, **answers}, ensure_ascii=False), encoding="utf-8")


def spawn_variant(name: str, n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run one variant in a fresh interpreter (memory and CPU of that build alone) → its ``--one-out`` JSON."""
    out_file = work / f"{name}-{n}.json"
    cmd = [sys.executable, __file__, "--one", name, "--n", str(n), "--queries", str(args.queries), "--data",
           str(args.data), "--work", str(work), "--one-out", str(out_file)]
    subprocess.run(cmd, check=True)
    got = json.loads(out_file.read_text(encoding="utf-8"))
    out_file.unlink()
    return got


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000", help="comma-separated passage counts")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated, from {VARIANTS}")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=None, help="build folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "bm25_build.json")
    ap.add_argument("--json", action="store_true", help="print only the final JSON line")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        one_variant(args)
        return {}
    variants = [v for v in args.variants.split(",") if v]
    if "baseline" in variants:
        variants = ["baseline"] + [v for v in variants if v != "baseline"]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {VARIANTS}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bm25_build-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"bench": "bm25_build", "load_start": uptime(), "cpus": os.cpu_count(),
                              "queries": args.queries, "variants": variants, "results": {}}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        rows: dict[str, Any] = {}
        reference = None
        for name in variants:
            log(f"n={n} {name}")
            got = spawn_variant(name, n, args, work)
            row = got["row"]
            if reference is None:
                reference = got
            else:
                same, ties, differ = compare(got["results"], reference["results"])
                row.update(same_results=same, same_up_to_ties=ties, queries_differing=differ,
                           same_lengths=got["lengths"] == reference["lengths"])
            rows[name] = row
            log(f"n={n} {name}: {row}")
            if not args.json:
                out(json.dumps({"n": n, "variant": name, **row}, ensure_ascii=False))
        base = rows[variants[0]]
        for row in rows.values():
            row["wall_vs_first"] = round(row["wall_s"] / base["wall_s"], 3)
            row["cpu_vs_first"] = round(row["cpu_s"] / base["cpu_s"], 3)
        report["results"][str(n)] = {"reference": variants[0], "variants": rows}
    report["load_end"] = uptime()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(report, ensure_ascii=False)
    args.out.write_text(line + "\n", encoding="utf-8")
    out(line)
    return report


if __name__ == "__main__":
    main()
