"""Rebuild the shipped demo corpus and bundled development sets from ``../shared/data``.

    python assets/build_demo.py [--shared ../shared/data] [--wiki-paragraphs 5000] [--seed 13]

Writes (deterministically, same inputs → same bytes):

- ``assets/demo/corpus.jsonl``: the 240 XQuAD-vi paragraphs plus ``--wiki-paragraphs`` Vietnamese
  Wikipedia paragraphs (whole articles sampled with a fixed seed, at most 12 paragraphs each), lines
  ``{"_id", "title", "text", "source", "url"}``.
- ``assets/benchmarks/xquad-vi/`` and ``assets/benchmarks/nanibot-qa-test/``: the development sets in
  BEIR layout (the app's Evaluate tab and ``search.eval`` use them; the app never reads ``../shared``).
- ``assets/demo/wiki_ids.txt``: ids of the Wikipedia paragraphs in the demo, so training can exclude them.
- with ``--vectors``: ``assets/demo/vectors-e5-small.{npy,json}``, the demo passages embedded by the
  default embedder through the same ingestion and embedding path as the app (``indexing.corpus``,
  ``indexing.build.embedding_text``, the embedding cache), so the first start needs no embedding.

Licenses and credits: ``assets/ATTRIBUTION.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote

ASSETS = Path(__file__).resolve().parent
MAX_PER_ARTICLE = 12


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def sample_wiki(paragraphs: list[dict], n: int, seed: int) -> list[dict]:
    """Whole articles in a seeded random order, at most ``MAX_PER_ARTICLE`` paragraphs each, until ``n``."""
    by_title: dict[str, list[dict]] = defaultdict(list)
    for p in paragraphs:
        by_title[p["title"]].append(p)
    titles = sorted(by_title)
    random.Random(seed).shuffle(titles)
    picked: list[dict] = []
    for title in titles:
        for p in by_title[title][:MAX_PER_ARTICLE]:
            if len(picked) == n:
                return picked
            picked.append(p)
    return picked


def build(shared: Path, wiki_paragraphs: int, seed: int) -> None:
    xquad = _read_jsonl(shared / "xquad-vi" / "corpus.jsonl")
    rows = [
        {"_id": d["_id"], "title": d["title"], "text": d["text"], "source": "XQuAD-vi",
         "url": "https://github.com/google-deepmind/xquad"}
        for d in xquad
    ]
    wiki = sample_wiki(_read_jsonl(shared / "viwiki" / "paragraphs.jsonl.gz"), wiki_paragraphs, seed)
    rows += [
        {"_id": p["_id"], "title": p["title"], "text": p["text"], "source": "Wikipedia tiếng Việt",
         "url": "https://vi.wikipedia.org/wiki/" + quote(p["title"].replace(" ", "_"))}
        for p in wiki
    ]
    _write_jsonl(ASSETS / "demo" / "corpus.jsonl", rows)
    (ASSETS / "demo" / "wiki_ids.txt").write_text("".join(p["_id"] + "\n" for p in wiki), encoding="utf-8")

    bench = ASSETS / "benchmarks"
    dst = bench / "xquad-vi"
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "SOURCE.md"):
        shutil.copyfile(shared / "xquad-vi" / name, dst / name)

    src = shared / "nanibot-qa"
    dst = bench / "nanibot-qa-test"
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    test_queries = [q for q in _read_jsonl(src / "queries.jsonl") if q["_id"].startswith("nanibot-test-")]
    _write_jsonl(dst / "queries.jsonl", test_queries)
    shutil.copyfile(src / "corpus.jsonl", dst / "corpus.jsonl")
    shutil.copyfile(src / "qrels" / "test.tsv", dst / "qrels" / "test.tsv")
    shutil.copyfile(src / "SOURCE.md", dst / "SOURCE.md")
    print(f"demo corpus: {len(xquad)} XQuAD-vi + {len(wiki)} Wikipedia paragraphs "
          f"({len({p['title'] for p in wiki})} articles); benchmarks: xquad-vi, nanibot-qa-test")


def build_vectors(embedder_name: str = "e5-small") -> None:
    """Embed the demo passages (as the app ingests them) → ``assets/demo/vectors-e5-small.{npy,json}``."""
    import sys

    sys.path.insert(0, str(ASSETS.parent))
    from indexing.build import embedding_text, save_precomputed
    from indexing.corpus import load_corpus
    from indexing.embed_cache import embed_with_cache
    from search.embedders import load_embedder

    passages, report = load_corpus(ASSETS / "demo" / "corpus.jsonl")
    print(report.summary())
    embedder = load_embedder(embedder_name)
    vectors = embed_with_cache(embedder, [embedding_text(p) for p in passages], batch_size=256, progress=True)
    meta = save_precomputed(ASSETS / "demo" / "vectors-e5-small", passages, vectors, embedder.model_id)
    print(f"wrote {meta} ({len(passages)} vectors, model {embedder.model_id})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ASSETS.parent.parent / "shared" / "data")
    parser.add_argument("--wiki-paragraphs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--vectors", action="store_true", help="also (re)compute the demo's e5-small vectors")
    args = parser.parse_args()
    build(args.shared, args.wiki_paragraphs, args.seed)
    if args.vectors:
        build_vectors()


if __name__ == "__main__":
    main()
