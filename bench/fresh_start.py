"""Fresh starts: ``python app.py`` on an empty ``VIRANKER_HOME``, N times, timed to the first served result.

    python bench/fresh_start.py [--starts 5] [--timeout 240] [--query "thủ đô của Việt Nam"] [--keep DIR]

Each start runs exactly like ``tests/e2e/test_app_start.py`` (:func:`tests.app_testkit.fresh_start`): a new empty
home, ``GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1``, a free port; it polls ``/status``
until the background demo build is done, searches once through ``/search`` (hybrid: the vectors must be
there), and stops the app with SIGTERM. Prints one line per start (seconds from spawn to the first served
search result, ok or the error); the LAST line is one JSON object
``{"starts": N, "ok": k, "seconds": [...], "median_s": ...}`` (``seconds`` of the successful starts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app_testkit import FRESH_START_QUERY, fresh_start  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per start (default 240)")
    p.add_argument("--query", default=FRESH_START_QUERY)
    p.add_argument("--keep", default=None, help="keep the homes and app logs in this folder")
    args = p.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="viranker-fresh-"))
    base.mkdir(parents=True, exist_ok=True)
    seconds: list[float] = []
    ok = 0
    for i in range(args.starts):
        res = fresh_start(base / f"home-{i}", timeout=args.timeout, query=args.query)
        if res.ok:
            ok += 1
            seconds.append(round(res.seconds, 2))
            top = res.hits[0]["title"] if res.hits else ""
            print(f"start {i + 1}/{args.starts}: ok, {res.seconds:.1f} s to the first result "
                  f"({len(res.hits)} hits, top: {top!r})", flush=True)
        else:
            print(f"start {i + 1}/{args.starts}: FAILED after "
                  f"{'-' if res.seconds is None else f'{res.seconds:.1f} s'}: {res.error}", flush=True)
            print(res.output_tail(2000), file=sys.stderr, flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    median = round(statistics.median(seconds), 2) if seconds else None
    print(json.dumps({"starts": args.starts, "ok": ok, "seconds": seconds, "median_s": median}))
    return 0 if ok == args.starts else 1


if __name__ == "__main__":
    sys.exit(main())
