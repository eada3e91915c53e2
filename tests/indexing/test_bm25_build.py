"""BM25 bulk build (:mod:`indexing.bm25_build`): the parallel parts build equals the single writer (ids, scores,
ties, live lengths, edits afterwards); failures leave no worker, no part folder and the directory as the single
writer leaves it; the analyzer's shared normalization gives the normalize functions' tokens exactly."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import re
from pathlib import Path

import pytest

from indexing import bm25_build, normalize
from indexing.bm25 import CONFIG_FILE, BM25Index, NormalizeTokenizer, make_schema
from indexing.bm25_build import BM25BuildError, default_procs, split_ranges
from indexing.bm25_edit import LIVE_LENGTHS_KEY
from indexing.corpus import Passage

VOCAB = ("hà nội thủ đô việt nam phở bún chả sông hồng huế cố đô thành phố đông dân hoà bình thuỷ chung "
         "con ma má mạ đèn sáng tắt điện núi rừng biển đảo")
SYLLABLES = VOCAB.split()


def corpus(n: int, seed: int = 7) -> list[Passage]:
    """``n`` deterministic passages of 3–14 syllables (many equal scores: short texts from a small vocabulary)."""
    out, x = [], seed
    for i in range(n):
        words = []
        for _ in range(3 + i % 12):
            x = (x * 1103515245 + 12345) % 2**31
            words.append(SYLLABLES[x % len(SYLLABLES)])
        title = words[0].title() if i % 3 else ""
        out.append(Passage(f"p{i}", f"d{i // 4}", title, " ".join(words).capitalize() + ".", "t"))
    return out


QUERIES = ["thủ đô hà nội", "pho bun cha", "con ma", "con má", "hoà bình", "thuy chung", "đèn sáng điện",
           "sông hồng", "đảo biển núi", "việt nam", "xyz"]


def results(ix: BM25Index) -> list[list[tuple[str, float]]]:
    return [ix.search(q, k=50, field=f) for q in QUERIES for f in ("both", "folded", "exact")]


SEGMENT_FILE = re.compile(r"^MAIN_([0-9a-z]+)\.")


def listing(path: Path) -> tuple[list[str], int]:
    """(the directory's entries other than segment files, number of distinct segment ids among its files).

    A cancelled Whoosh writer leaves its own unreferenced segment files behind (the next commit deletes them):
    one segment id, for the single writer as for the parent of a parallel build."""
    names = os.listdir(path)
    segids = {m.group(1) for n in names if (m := SEGMENT_FILE.match(n))}
    return sorted(n for n in names if not SEGMENT_FILE.match(n)), len(segids)


def test_split_ranges_and_default_procs() -> None:
    assert split_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_ranges(1, 2) == [(0, 1)] and split_ranges(0, 2) == []
    assert default_procs(bm25_build.PART_MIN_DOCS * 2 - 1) == 1
    assert default_procs(10**6) == min(bm25_build.DEFAULT_MAX_PROCS, len(os.sched_getaffinity(0)))


def test_schema_and_analyzers_pickle() -> None:
    for words in (False, True):
        schema = make_schema(words)
        again = pickle.loads(pickle.dumps(schema))
        assert again.names() == schema.names()
        assert all(again[f].analyzer == schema[f].analyzer for f in schema.scorable_names())


def test_shared_normalization_gives_the_normalize_functions_tokens() -> None:
    exact, folded = NormalizeTokenizer("exact"), NormalizeTokenizer("folded")
    texts = ["Thuý Kiều ĐÃ đến Hà Nội!", "Hoà bình\u200b và thuỷ chung", "HOÀ BÌNH", "ΟΔΟΣ Σ σ đường 2024km",
             "Ngày 2/9/1945, Chủ tịch Hồ Chí Minh đọc Tuyên ngôn Độc lập.", "", "   ", "đ Đ ð", "naïve café"]
    for _ in range(2):  # a second pass is served from the cache
        for t in texts + texts[::-1]:
            assert exact.tokens(t) == normalize.syllables(t), t
            assert folded.tokens(t) == normalize.folded_syllables(t), t
    got = exact.tokens(texts[0])
    got.append("poison")  # callers get their own list; the cached tokens are untouched
    assert exact.tokens(texts[0]) == normalize.syllables(texts[0])


@pytest.mark.parametrize("procs", [2, 3])
def test_parallel_parts_equal_the_single_writer(tmp_path: Path, procs: int) -> None:
    passages = corpus(120)
    with BM25Index.build(tmp_path / "one", passages, procs=1) as one, \
            BM25Index.build(tmp_path / "par", passages, procs=procs) as par:
        assert results(par) == results(one)  # ids in rank order (ties by docnum = input order) and scores
        assert par.config[LIVE_LENGTHS_KEY] == one.config[LIVE_LENGTHS_KEY]
        leaves = par._searcher.reader().leaf_readers()
        assert len(leaves) == procs and len(one._searcher.reader().leaf_readers()) == 1
        ids = par._searcher.reader().column_reader("id")
        assert [ids[d] for d in range(len(passages))] == [p.id for p in passages]  # input order
        assert par.get([p.id for p in passages[::7]]) == passages[::7]
    assert not [p for p in (tmp_path / "par").iterdir() if p.name.startswith(bm25_build.PART_PREFIX)]
    assert not mp.active_children()


@pytest.mark.slow
def test_spawned_parts_equal_the_single_writer(tmp_path: Path) -> None:
    """The ``spawn`` start method (no fork: the schema and documents are pickled to the workers)."""
    from whoosh import index as whoosh_index

    from indexing.bm25 import INDEX_NAME, _document

    passages = corpus(50)
    for name, kwargs in (("one", {"procs": 1}), ("spawn", {"procs": 2, "start_method": "spawn"})):
        BM25Index.build(tmp_path / name, [], procs=1).close()  # the empty index and config build writes
        ix = whoosh_index.open_dir(tmp_path / name, indexname=INDEX_NAME)
        assert bm25_build.write_documents(ix, [_document(p, False) for p in passages], **kwargs) == len(passages)
        ix.close()
    with BM25Index.open(tmp_path / "one") as one, BM25Index.open(tmp_path / "spawn") as spawned:
        assert results(spawned) == results(one)
        assert len(spawned._searcher.reader().leaf_readers()) == 2
    assert not mp.active_children()


def postings_of(ix: BM25Index) -> dict:
    """Every term's postings and statistics, every document's stored fields and lengths (docnum order)."""
    r = ix._searcher.reader()
    out: dict = {"stored": [r.stored_fields(d) for d in range(r.doc_count_all())]}
    for field in ("exact", "folded"):
        out[field + "_len"] = [r.doc_field_length(d, field) for d in range(r.doc_count_all())]
        for text, _info in r.iter_field(field):
            ti = r.term_info(field, text)
            m = r.postings(field, text)
            out[(field, text)] = (list(m.items_as("weight")), ti.doc_frequency(), ti.weight(), ti.min_length(),
                                  ti.max_length(), ti.max_weight())
    return out


@pytest.mark.parametrize("procs", [1, 2])
def test_compact_pool_writes_what_whoosh_pool_writes(tmp_path: Path, procs: int) -> None:
    passages = corpus(150)
    with BM25Index.build(tmp_path / "whoosh", passages, procs=1, compact_pool=False) as old, \
            BM25Index.build(tmp_path / "compact", passages, procs=procs) as new:
        assert postings_of(new) == postings_of(old)
        assert results(new) == results(old)
        assert new.config[LIVE_LENGTHS_KEY] == old.config[LIVE_LENGTHS_KEY]


def test_compact_pool_sorts_postings_that_arrive_out_of_order() -> None:
    from indexing.bm25_pool import CompactPostingPool

    items = [("f", b"b", 3, 1.0, b"\x01"), ("f", b"a", 2, 2.0, b"\x02"), ("f", b"b", 1, 1.0, b"\x01"),
             ("e", b"z", 0, 1.0, None), ("f", b"a", 5, 1.0, b"\x01")]
    pool = CompactPostingPool()
    for item in items:
        pool.add(item)
    assert list(pool.iter_postings()) == sorted(items, key=lambda t: (t[0], t[1], t[2]))
    assert pool.postings == 5 and pool.terms == 3 and pool.fieldnames == {"e", "f"}


@pytest.mark.parametrize("procs", [1, 2])
def test_a_full_pool_starts_a_new_segment_in_order(tmp_path: Path, procs: int) -> None:
    passages = corpus(80)
    with BM25Index.build(tmp_path / "one", passages, procs=1, compact_pool=False) as one, \
            BM25Index.build(tmp_path / "cut", passages, procs=procs, limitmb=0.004) as cut:  # ~4 KB a segment
        assert len(cut._searcher.reader().leaf_readers()) > 2 * procs
        ids = cut._searcher.reader().column_reader("id")
        assert [ids[d] for d in range(len(passages))] == [p.id for p in passages]
        assert results(cut) == results(one) and postings_of(cut)["stored"] == postings_of(one)["stored"]
        new = Passage("new", "new", "", "Phở bò Hà Nội.", "t")
        cut.apply([new], ["p1", "p60"])  # an edit on an index of many segments (the tail merge)
        live = [p for p in passages if p.id not in ("p1", "p60")] + [new]
        with BM25Index.build(tmp_path / "rebuilt", live, procs=1, compact_pool=False) as rebuilt:
            assert results(cut) == results(rebuilt)


def test_edits_on_a_parallel_build_score_like_a_rebuild(tmp_path: Path) -> None:
    passages = corpus(90)
    added = corpus(15, seed=99)
    added = [Passage(f"n{i}", p.doc_id, p.title, p.text, p.source) for i, p in enumerate(added)]
    doomed = {"p3", "p47", "p88"}
    ix = BM25Index.build(tmp_path / "inc", passages, procs=2, k1=1.3, b=0.7)
    ix.apply(added, sorted(doomed))
    live = [p for p in passages if p.id not in doomed] + added
    with BM25Index.build(tmp_path / "full", live, procs=1, k1=1.3, b=0.7) as full:
        assert results(ix) == results(full)
        assert ix.config[LIVE_LENGTHS_KEY] == full.config[LIVE_LENGTHS_KEY]
        assert ix.doc_count() == full.doc_count() == len(live)
    ix.close()


def test_progress_reaches_the_total_in_parallel(tmp_path: Path) -> None:
    seen: list[int] = []
    passages = corpus(2_300)
    BM25Index.build(tmp_path / "p", passages, procs=2, progress_callback=lambda _s, d, t: seen.append(d)).close()
    assert seen == sorted(seen) and seen[-1] == len(passages) and len(seen) >= 3


def failing_corpus() -> list[Passage]:
    passages = corpus(60)
    passages[40] = Passage("bad", "bad", "", 12345, "t")  # type: ignore[arg-type]  # not text: ValueError
    return passages


def failed_build(path: Path, passages, **kwargs) -> tuple[list[str], int]:
    with pytest.raises(ValueError, match="12345 is not unicode"):  # Whoosh's, raised in the worker for procs=2
        BM25Index.build(path, passages, **kwargs)
    return listing(path)


@pytest.mark.parametrize("kwargs", [{"procs": 1}, {"procs": 2}, {"procs": 2, "compact_pool": False}])
def test_a_failing_passage_leaves_the_directory_as_the_single_writer_does(tmp_path: Path, kwargs: dict) -> None:
    before = failed_build(tmp_path / "one", failing_corpus(), procs=1, compact_pool=False)  # the old build
    now = failed_build(tmp_path / "now", failing_corpus(), **kwargs)
    assert now[0] == before[0] == sorted([CONFIG_FILE, "MAIN_WRITELOCK", "_MAIN_0.toc"])  # an empty TOC
    assert now[1] <= 1 and before[1] <= 1  # only the cancelled writer's own files
    assert not mp.active_children()
    with BM25Index.open(tmp_path / "now") as ix:  # the empty index of a cancelled build, as before
        assert ix.doc_count() == 0


def test_a_failing_iterable_starts_no_worker(tmp_path: Path) -> None:
    def passages():
        yield from corpus(30)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        BM25Index.build(tmp_path / "g", passages(), procs=2)
    assert not mp.active_children()
    assert listing(tmp_path / "g")[0] == sorted([CONFIG_FILE, "_MAIN_0.toc"])  # no writer was opened


def test_a_dying_worker_is_a_typed_error_and_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("the patched worker reaches the child only through fork")
    real = bm25_build._write_part

    def dies_in_part_one(folder, *args):
        if Path(folder).name.startswith(bm25_build.PART_PREFIX + "1-"):
            os._exit(3)  # killed (e.g. out of memory): no report, no cleanup of its own
        real(folder, *args)

    monkeypatch.setattr(bm25_build, "_write_part", dies_in_part_one)
    with pytest.raises(BM25BuildError, match="code 3"):
        BM25Index.build(tmp_path / "k", corpus(40), procs=2)
    assert not mp.active_children()
    assert listing(tmp_path / "k")[0] == failed_build(tmp_path / "one", failing_corpus(), procs=1)[0]


def test_bench_compare_tells_tie_order_from_other_differences() -> None:
    from bench.bm25_build import compare

    want = [[("a", 2.0), ("b", 1.0), ("c", 1.0), ("d", 0.5)]]
    assert compare(want, want) == (True, True, 0)
    assert compare([[("a", 2.0), ("c", 1.0), ("b", 1.0), ("d", 0.5)]], want) == (False, True, 1)  # tie order
    assert compare([[("a", 2.0), ("b", 1.0), ("c", 1.0), ("e", 0.5)]], want) == (False, True, 1)  # cut-off tie
    assert compare([[("b", 2.0), ("a", 1.0), ("c", 1.0), ("d", 0.5)]], want) == (False, False, 1)  # other ids
    assert compare([[("a", 2.0), ("b", 1.1), ("c", 1.0), ("d", 0.5)]], want) == (False, False, 1)  # scores


@pytest.mark.slow
def test_bench_tiny_size_prints_every_variant(tmp_path: Path) -> None:
    import gzip
    import json
    import subprocess
    import sys

    data = tmp_path / "data" / "viwiki"
    data.mkdir(parents=True)
    with gzip.open(data / "paragraphs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for p in corpus(320):
            fh.write(json.dumps({"_id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n")
    repo = Path(__file__).resolve().parents[2]
    variants = "baseline,compact,parts2,whoosh-procs2-multiseg"
    res = subprocess.run([sys.executable, str(repo / "bench" / "bm25_build.py"), "--data", str(tmp_path / "data"),
                          "--sizes", "300", "--queries", "5", "--variants", variants, "--out",
                          str(tmp_path / "out.json"), "--json"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])["results"]["300"]["variants"]
    assert list(rows) == variants.split(",")
    for name in ("compact", "parts2"):
        assert rows[name]["same_results"] and rows[name]["same_lengths"], rows[name]
    assert rows["parts2"]["segments"] == 2 and rows["compact"]["segments"] == 1
    assert all(row["wall_s"] > 0 and row["cpu_s"] > 0 and row["index_mb"] > 0 for row in rows.values())
