"""``python -m search query`` while the app serves the same index (issue 18).

The app holds the index's vector store (the embedded Qdrant engines: one process per path, no read-only
open), so the CLI sends the query to the running app's JSON API, found through
``$VIRANKER_HOME/run/app-<index>.json`` (:mod:`search.app_registry`). The app runs in-process on the test
kit's tiny index; the CLI runs as a separate process, as a user would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search import app_registry

ROOT = Path(__file__).resolve().parents[2]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIRANKER_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "search", "query", "--index", "test", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_registry_roundtrip_and_dead_process(tmp_path: Path):
    path = app_registry.register("demo", "http://127.0.0.1:7860", root=tmp_path)
    assert path == tmp_path / "run" / "app-demo.json"
    found = app_registry.find_app("demo", tmp_path)
    assert found is not None and found.url == "http://127.0.0.1:7860/" and found.pid == os.getpid()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "pid": int(dead.stdout)}))
    assert app_registry.find_app("demo", tmp_path) is None  # its process is gone
    app_registry.unregister("demo", tmp_path)
    assert path.exists()  # not this process's record: left alone
    app_registry.register("demo", "http://127.0.0.1:7861/", root=tmp_path)
    app_registry.unregister("demo", tmp_path)
    assert not path.exists() and app_registry.find_app("demo", tmp_path) is None


def test_search_via_an_app_that_does_not_answer(tmp_path: Path):
    from tests.app_testkit import free_port

    app = app_registry.RunningApp(f"http://127.0.0.1:{free_port()}/", "demo", os.getpid(), 0.0)
    with pytest.raises(app_registry.AppUnreachable) as err:
        app_registry.search_via_app(app, "Hà Nội", "bm25", 3, timeout=5)
    assert err.value.status == 0


@pytest.mark.slow
def test_cli_query_while_the_app_runs(tmp_path: Path):
    pytest.importorskip("gradio_client")
    from tests import app_testkit as kit

    home = tmp_path / "home"
    home.mkdir()
    with kit.running_app(home) as ra:
        assert ra.backend.search("Hà Nội", "hybrid", 3).hits  # the app now holds the vector store
        assert app_registry.find_app("test", home) is not None

        res = _cli(home, "--pipeline", "hybrid", "-k", "3", "thủ đô Việt Nam")
        assert res.returncode == 0, res.stderr
        assert "through the running app" in res.stderr and ra.url in res.stderr
        assert "hn" in res.stdout and "[hybrid] 3 hits" in res.stdout, res.stdout

        res = _cli(home, "--json", "-k", "2", "Đà Lạt ở đâu")  # the default pipeline: the app's
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["pipeline"] != "bm25" and [h["rank"] for h in out["hits"]] == [1, 2]
        assert out["hits"][0]["id"] == "dl"

        res = _cli(home, "--pipeline", "bm25", "-k", "2", "Đà Lạt")  # BM25 needs no vectors: read locally
        assert res.returncode == 0 and "running app" not in res.stderr and "dl" in res.stdout

        res = _cli(home, "--pipeline", "hybrid", "--app", "never", "Đà Lạt")
        assert res.returncode == 2 and "vector" in res.stderr
    app_registry.unregister("test", home)  # an in-process launch leaves its record (its pid lives on)
    res = _cli(home, "--app", "always", "Đà Lạt")
    assert res.returncode == 2 and "no running app is registered" in res.stderr
