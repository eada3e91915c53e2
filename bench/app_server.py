"""Start ``python app.py`` for a benchmark on this machine (a home whose demo index is built) and talk to it.

Used by ``bench/lanes.py``, ``bench/load_test.py`` and ``bench/soak.py``: :func:`serve` starts the app on a
free port over ``--home`` (the first start builds the demo index there from ``assets/demo``, with its
precomputed vectors; later starts reuse it), waits until ``/api/v1/status`` says it serves, yields the URL
and the process, and stops it with SIGTERM. :func:`gradio_call` runs one Gradio ``/gradio_api/call/<name>``
round trip over plain HTTP (what ``gradio_client`` does, without its start-up cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.app_testkit import free_port, gradio_call, stop_process  # noqa: E402 - one copy, shared with the tests

__all__ = ["serve", "gradio_call", "percentiles", "machine", "load_queries"]


@contextmanager
def serve(home: Path, *, args: Sequence[str] = (), timeout: float = 600.0,
          log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python app.py --port <free> *args`` with ``VIRANKER_HOME=home`` → ``(url, process)`` once it serves."""
    import httpx

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "VIRANKER_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    log = log or home.parent / f"{home.name}.app.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not serve within {timeout:.0f} s; see {log}")
            try:
                st = httpx.get(f"{url}api/v1/status", timeout=5).json()
                if st.get("build_failed"):
                    raise RuntimeError(f"demo build failed: {st.get('message')}")
                if st.get("ready") and not st.get("building"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        yield url, proc
    finally:
        stop_process(proc)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of ``values`` (ms), rounded; zeros when empty."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {k: round(float(v), 1) for k, v in (("p50", np.percentile(a, 50)), ("p95", np.percentile(a, 95)),
                                               ("p99", np.percentile(a, 99)), ("mean", a.mean()), ("max", a.max()))}


def machine() -> dict[str, Any]:
    """CPU count and load averages (the machine is shared: numbers depend on what else runs)."""
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load]}


def load_queries(limit: int = 2000) -> list[str]:
    """Example queries + bundled dev-set questions (without ``#`` comments), de-duplicated."""
    out: list[str] = []
    ex = ROOT / "assets" / "demo" / "examples.txt"
    if ex.is_file():
        out += [s.strip() for s in ex.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]
    for qfile in sorted((ROOT / "assets" / "benchmarks").glob("*/queries.jsonl")):
        with open(qfile, encoding="utf-8") as fh:
            for line in fh:
                try:
                    text = json.loads(line).get("text")
                except ValueError:
                    continue
                if text:
                    out.append(text)
    out = list(dict.fromkeys(out))[:limit]
    if not out:
        raise SystemExit("no queries found under assets/")
    return out
