"""Pipeline: real Whoosh BM25 + in-memory Qdrant, a small deterministic embedder and fake rerankers."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from indexing.bm25 import BM25Index
from indexing.corpus import Passage
from indexing.normalize import syllables
from indexing.vectors import VectorStore
from reranker.backends import ModelUnavailable, RerankScores
from search.diacritics import RESTORER_FILE, DiacriticRestorer
from search.errors import VectorsUnavailable
from search.fusion import RRF_K
from search.pipeline import Pipeline, QueryError, SearchResult, parse_pipeline
from search.results import Note, NoteCode

TEXTS = {
    "passport": ("Hộ chiếu", "Công dân làm thủ tục cấp lại hộ chiếu tại cơ quan quản lý xuất nhập cảnh."),
    "hanoi": ("Hà Nội", "Hà Nội là thủ đô của Việt Nam, có nhiều hồ như hồ Gươm và hồ Tây."),
    "tuition": ("Học phí", "Sinh viên phải đóng học phí trước khi đăng ký học phần của học kỳ mới."),
    "market": ("Chợ", "Người dân đi chợ mua cá, mua thịt và rau xanh mỗi buổi sáng."),
    "hue": ("Huế", "Huế là cố đô của Việt Nam với kinh thành và các lăng tẩm."),
    "rice": ("Lúa gạo", "Đồng bằng sông Cửu Long là vựa lúa lớn nhất của Việt Nam."),
    "id-card": ("Căn cước", "Công dân đủ mười bốn tuổi được cấp thẻ căn cước công dân."),
    "exam": ("Thi cử", "Sinh viên vắng thi không có lý do bị điểm không của học phần."),
}


class HashEmbedder:
    """Bag of *marked* syllables hashed into 64 dims: sensitive to diacritics like a real model is."""

    name = "hash-64"
    model_id = "test/hash-64"
    dim = 64

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for s in syllables(t):
                out[i, int(hashlib.md5(s.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))


class LengthReranker:
    """Prefers shorter passages; records what it was asked."""

    name = "shortest"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def rerank(self, query: str, passages: list[str]) -> RerankScores:
        self.calls.append((query, list(passages)))
        return RerankScores.from_raw([-len(p) / 10 for p in passages])


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(pid, pid, title, text, "test") for pid, (title, text) in TEXTS.items()]


@pytest.fixture(scope="module")
def bm25(tmp_path_factory: pytest.TempPathFactory, passages: list[Passage]) -> BM25Index:
    index = BM25Index.build(tmp_path_factory.mktemp("bm25") / "bm25", passages)
    yield index
    index.close()


@pytest.fixture(scope="module")
def vectors(passages: list[Passage]) -> VectorStore:
    store = VectorStore.open(":memory:", "passages")
    emb = HashEmbedder()
    store.create(emb.dim)
    store.upsert([p.id for p in passages], emb.encode_passages([f"{p.title} {p.text}" for p in passages]))
    yield store
    store.close()


@pytest.fixture(scope="module")
def restorer() -> DiacriticRestorer:
    return DiacriticRestorer.from_texts([f"{t}. {x}" for t, x in TEXTS.values()] * 2)


@pytest.fixture()
def pipe(bm25, vectors, restorer) -> Pipeline:
    return Pipeline(bm25, vectors, HashEmbedder(), {"shortest": LengthReranker()}, restorer, depth=8, rerank_top=3)


def test_parse_pipeline():
    assert parse_pipeline("hybrid+viranker") == ("hybrid", "viranker")
    assert parse_pipeline("BM25") == ("bm25", None)
    assert parse_pipeline("bm25+phoranker") == ("bm25", "phoranker")
    for bad in ["sparse", "hybrid+", "hybrid+Vi Ranker", "", "+viranker"]:
        with pytest.raises(ValueError):
            parse_pipeline(bad)


def test_bm25_pipeline(pipe: Pipeline):
    res = pipe.search("cấp lại hộ chiếu", "bm25", top_k=3)
    assert isinstance(res, SearchResult)
    assert res.pipeline == "bm25" and res.diacritics == "full" and res.searched_query == "cấp lại hộ chiếu"
    top = res.hits[0]
    assert top.id == "passport" and top.rank == 1 and top.title == "Hộ chiếu" and "hộ chiếu" in top.text
    assert top.stage_ranks == {"bm25": 1} and top.score == top.stage_scores["bm25"] > 0
    assert [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))
    assert all(a.score >= b.score for a, b in zip(res.hits, res.hits[1:], strict=False))
    assert {"validate", "diacritics", "bm25", "total"} <= set(res.timings_ms)
    assert "dense" not in res.timings_ms


def test_dense_and_hybrid_rrf_scores(bm25, vectors, restorer):
    pipe = Pipeline(bm25, vectors, HashEmbedder(), restorer=restorer, depth=8, fusion="rrf")
    dense = pipe.search("thủ đô Việt Nam", "dense", top_k=5)
    assert dense.hits[0].stage_ranks["dense"] == 1 and "embed" in dense.timings_ms
    res = pipe.search("thủ đô Việt Nam", "hybrid", top_k=8)
    assert res.hits[0].id == "hanoi"
    for hit in res.hits:
        ranks = hit.stage_ranks
        expected = sum(1 / (RRF_K + ranks[s]) for s in ("bm25", "dense") if s in ranks)
        assert hit.score == pytest.approx(expected)
        assert ranks["fusion"] == hit.rank
    assert {"bm25", "embed", "dense", "fusion"} <= set(res.timings_ms)


def test_default_fusion_is_equal_weight_minmax(bm25, vectors, restorer):
    from search.fusion import weighted_minmax

    emb = HashEmbedder()
    pipe = Pipeline(bm25, vectors, emb, restorer=restorer, depth=8)
    assert pipe.fusion == "minmax" and pipe.fusion_kwargs == {"weights": [0.5, 0.5]}
    res = pipe.search("thủ đô Việt Nam", "hybrid", top_k=8)
    expected = dict(weighted_minmax([bm25.search("thủ đô Việt Nam", 8),
                                     vectors.search(emb.encode_queries(["thủ đô Việt Nam"])[0], 8)], [0.5, 0.5]))
    assert res.hits[0].id == "hanoi"
    for hit in res.hits:
        assert hit.score == pytest.approx(expected[hit.id]) and hit.stage_ranks["fusion"] == hit.rank


def test_weighted_minmax_fusion(bm25, vectors, restorer):
    pipe = Pipeline(bm25, vectors, HashEmbedder(), restorer=restorer, fusion="minmax",
                    fusion_kwargs={"weights": [1.0, 0.0]})
    hybrid = [h.id for h in pipe.search("đi chợ mua cá", "hybrid", top_k=3).hits]
    bm = [h.id for h in pipe.search("đi chợ mua cá", "bm25", top_k=3).hits]
    assert hybrid[0] == bm[0] == "market"


def test_reranker_reorders_the_top_window(pipe: Pipeline):
    first = pipe.search("Việt Nam", "hybrid", top_k=6)
    res = pipe.search("Việt Nam", "hybrid+shortest", top_k=6)
    window = [h.id for h in first.hits[:3]]
    reranked = sorted(window, key=lambda pid: len(TEXTS[pid][1]))
    assert [h.id for h in res.hits[:3]] == reranked
    assert [h.id for h in res.hits[3:]] == [h.id for h in first.hits[3:]]  # the rest keeps first-stage order
    for h in res.hits[:3]:
        assert h.stage_ranks["rerank"] == h.rank and "fusion" in h.stage_ranks
        assert h.score == pytest.approx(1 / (1 + np.exp(len(TEXTS[h.id][1]) / 10)))
        assert h.stage_scores["rerank_raw"] == pytest.approx(-len(TEXTS[h.id][1]) / 10)
    assert "rerank" in res.timings_ms and res.pipeline == "hybrid+shortest"
    assert Note(NoteCode.RERANK_WINDOW, {"top": 3}) in res.notes
    assert any("not reranked" in str(n) for n in res.notes)  # the English text (CLI, JSON)


def test_rerank_blend_mixes_reranker_and_first_stage(bm25, vectors, restorer):
    from search.fusion import weighted_minmax

    kw = dict(depth=8, rerank_top=4)
    first = Pipeline(bm25, vectors, HashEmbedder(), restorer=restorer, **kw).search("Việt Nam", "hybrid", top_k=4)
    fs = [(h.id, h.score) for h in first.hits]
    rr = [(pid, -len(TEXTS[pid][1]) / 10) for pid, _ in fs]
    for alpha in (0.0, 0.3, 1.0):
        pipe = Pipeline(bm25, vectors, HashEmbedder(), {"shortest": LengthReranker()}, restorer, rerank_blend=alpha,
                        **kw)
        got = [(h.id, h.score) for h in pipe.search("Việt Nam", "hybrid+shortest", top_k=4).hits]
        if alpha == 0.0:
            assert [g[0] for g in got] == [pid for pid, _ in fs]  # first-stage order back
        if alpha == 1.0:
            assert [g[0] for g in got] == sorted((pid for pid, _ in fs), key=lambda pid: len(TEXTS[pid][1]))
        else:
            expect = dict(weighted_minmax([rr, fs], [alpha, 1 - alpha]))
            assert [g[0] for g in got] == sorted(expect, key=lambda pid: -expect[pid])
            assert all(score == pytest.approx(expect[pid]) for pid, score in got)
    with pytest.raises(ValueError, match="rerank_blend"):
        Pipeline(bm25, rerank_blend=1.5)
    # without a pipeline setting the reranker's own recommendation applies; the pipeline's wins over it
    own = LengthReranker()
    own.blend = 0.3
    pipe = Pipeline(bm25, vectors, HashEmbedder(), {"shortest": own}, restorer, **kw)
    assert pipe.blend_for(own) == 0.3 and pipe.blend_for(LengthReranker()) == 1.0
    expect = dict(weighted_minmax([rr, fs], [0.3, 0.7]))
    got = [h.id for h in pipe.search("Việt Nam", "hybrid+shortest", top_k=4).hits]
    assert got == sorted(expect, key=lambda pid: -expect[pid])
    assert Pipeline(bm25, rerank_blend=1.0).blend_for(own) == 1.0


def test_routing_restores_query_for_dense_and_reranker(bm25, vectors, restorer):
    emb, rr = HashEmbedder(), LengthReranker()
    pipe = Pipeline(bm25, vectors, emb, {"shortest": rr}, restorer, depth=8, rerank_top=3)
    res = pipe.search("cap lai ho chieu", "hybrid+shortest", top_k=3)
    assert res.diacritics == "none" and res.query == "cap lai ho chieu"
    assert res.searched_query == "cấp lại hộ chiếu"
    assert emb.seen == ["cấp lại hộ chiếu"] and rr.calls[0][0] == "cấp lại hộ chiếu"
    assert "passport" in [h.id for h in res.hits]
    assert Note(NoteCode.RESTORED, {"query": "cấp lại hộ chiếu"}) in res.notes
    # BM25 searched the restored query on both fields: same scores as a direct search for it
    direct = dict(bm25.search("cấp lại hộ chiếu", 8, field="both"))
    for h in res.hits:
        if "bm25" in h.stage_scores:
            assert h.stage_scores["bm25"] == pytest.approx(direct[h.id])


def test_as_typed_switches_routing_off(bm25, vectors, restorer):
    emb = HashEmbedder()
    pipe = Pipeline(bm25, vectors, emb, restorer=restorer)
    res = pipe.search("cap lai ho chieu", "dense", top_k=3, as_typed=True)
    assert res.searched_query == "cap lai ho chieu" and res.diacritics == "none"
    assert emb.seen == ["cap lai ho chieu"]


def test_routing_without_restorer_still_uses_folded_bm25(bm25):
    pipe = Pipeline(bm25)
    res = pipe.search("hoc phi hoc ky", "bm25", top_k=2)
    assert res.hits[0].id == "tuition" and res.searched_query == "hoc phi hoc ky"


def test_routed_bm25_folded_variant(bm25, restorer):
    pipe = Pipeline(bm25, restorer=restorer, routed_bm25="folded")
    res = pipe.search("cap lai ho chieu", "bm25", top_k=2)
    assert res.hits[0].id == "passport" and res.searched_query == "cấp lại hộ chiếu"
    direct = dict(bm25.search("cap lai ho chieu", 2, field="folded"))
    assert res.hits[0].stage_scores["bm25"] == pytest.approx(direct["passport"])


@pytest.mark.parametrize("query", ["", "   ", "\x00\x01 \u200b", "?!...", None])
def test_bad_queries_raise_query_error(pipe: Pipeline, query):
    with pytest.raises(QueryError):
        pipe.search(query, "bm25")


def test_control_characters_stripped_and_long_queries_truncated(pipe: Pipeline):
    res = pipe.search("hộ\x00 chiếu\x07", "bm25", top_k=1)
    assert res.searched_query == "hộ chiếu" and res.hits[0].id == "passport"
    long = " ".join(["hộ chiếu"] * 50)  # 100 syllables
    res = pipe.search(long, "bm25", top_k=1)
    assert len(re.findall(r"\w+", res.searched_query)) == 64
    assert Note(NoteCode.TRUNCATED_SYLLABLES, {"limit": 64}) in res.notes
    assert "query truncated to 64 syllables" in res.to_dict()["notes"]
    res = pipe.search("hộchiếu" * 100, "bm25", top_k=1)  # 700 characters, one token
    assert len(res.searched_query) == 512 and Note(NoteCode.TRUNCATED_CHARS, {"limit": 512}) in res.notes


def test_errors_for_unknown_or_unavailable_parts(bm25, vectors):
    with pytest.raises(ValueError, match="unknown pipeline"):
        Pipeline(bm25).search("hộ chiếu", "sparse")
    with pytest.raises(VectorsUnavailable, match="needs vectors") as info:
        Pipeline(bm25).search("hộ chiếu", "hybrid")
    assert isinstance(info.value, ValueError) and info.value.reason == "no vectors"
    with pytest.raises(KeyError, match="not configured"):
        Pipeline(bm25, rerankers={}).search("hộ chiếu", "bm25+viranker")

    def loader(name: str):
        raise ModelUnavailable(name, "no weights", "set VIRANKER_MODEL")

    with pytest.raises(ModelUnavailable, match="VIRANKER_MODEL"):
        Pipeline(bm25, rerankers=loader).search("hộ chiếu", "bm25+viranker")
    with pytest.raises(ValueError):
        Pipeline(bm25).search("hộ chiếu", "bm25", top_k=0)


def test_search_many_matches_search(pipe: Pipeline):
    queries = ["thủ đô Việt Nam", "cap lai ho chieu", "học phí"]
    many = pipe.search_many(queries, "hybrid", top_k=4)
    for q, r in zip(queries, many, strict=True):
        single = pipe.search(q, "hybrid", top_k=4)
        assert [h.id for h in r.hits] == [h.id for h in single.hits]
        assert r.searched_query == single.searched_query
    assert pipe.pipelines() == ["bm25", "dense", "hybrid"]
    assert Pipeline(pipe.bm25).pipelines() == ["bm25"]


def test_result_to_dict_is_json_able(pipe: Pipeline):
    import json

    d = pipe.search("hộ chiếu", "hybrid+shortest", top_k=2).to_dict()
    json.dumps(d)
    assert d["hits"][0]["stage_ranks"]["rerank"] == 1


def test_from_snapshot_builds_restorer_into_generation(tmp_path, passages):
    from indexing.build import build_generation, open_generation

    emb = HashEmbedder()
    build_generation("t", passages, emb, root=tmp_path, progress=False)
    with open_generation("t", root=tmp_path) as snap:
        pipe = Pipeline.from_snapshot(snap, embedder=emb)
        assert (snap.path / RESTORER_FILE).exists()
        res = pipe.search("ha noi thu do", "hybrid", top_k=2)
        assert res.searched_query == "hà nội thủ đô" and res.hits[0].id == "hanoi"

        class Other(HashEmbedder):
            model_id = "test/other"

        with pytest.raises(ValueError, match="same model"):
            Pipeline.from_snapshot(snap, embedder=Other())


# ------------------------------------------------------------------------------------------ SearchService
def _service(root, **kw):
    from search.service import SearchService

    return SearchService("svc", root=root, check_interval=0.0, embedder_loader=lambda name: HashEmbedder(), **kw)


def test_service_searches_current_generation_and_reopens(tmp_path, passages):
    from indexing.build import build_generation
    from search.service import ServiceError

    svc = _service(tmp_path, reranker_loader=lambda name: LengthReranker())
    with pytest.raises(ServiceError, match="build it first"):
        svc.search("hộ chiếu", "bm25")
    build_generation("svc", passages[:4], HashEmbedder(), root=tmp_path, progress=False)
    res = svc.search("cap lai ho chieu", "hybrid", top_k=3)
    assert res.hits[0].id == "passport" and res.searched_query == "cấp lại hộ chiếu"
    first_gen = svc.generation
    old_state = svc._state
    assert svc.search("Huế cố đô", "bm25", top_k=8).hits[0].id != "hue"  # not indexed yet

    build_generation("svc", passages, HashEmbedder(), root=tmp_path, progress=False)  # CURRENT moves
    res = svc.search("Huế cố đô", "bm25", top_k=3)
    assert res.hits[0].id == "hue" and svc.generation != first_gen
    assert old_state.closed  # the old generation's BM25 searcher and Qdrant client were released
    assert svc.default_pipeline == "hybrid"  # no "viranker" from this loader's status listing
    status = svc.status()
    assert status["generation"] == svc.generation and status["counts"]["passages"] == len(passages)
    assert "hybrid" in status["pipelines"]
    svc.close()


def test_service_compare_and_unavailable_reranker(tmp_path, passages):
    from indexing.build import build_generation

    def loader(name: str):
        if name == "shortest":
            return LengthReranker()
        raise ModelUnavailable(name, "no weights here", "set VIRANKER_MODEL=<dir>")

    build_generation("svc", passages, HashEmbedder(), root=tmp_path, progress=False)
    with _service(tmp_path, reranker_loader=loader) as svc:
        out = svc.compare("thủ đô Việt Nam", ["bm25", "hybrid", "hybrid+shortest", "hybrid+viranker"], top_k=3)
        assert [h.id for h in out["hybrid+shortest"].hits] and out["bm25"].hits[0].id == "hanoi"
        assert isinstance(out["hybrid+viranker"], ModelUnavailable)
        with pytest.raises(ModelUnavailable, match="VIRANKER_MODEL"):
            svc.search("thủ đô", "bm25+viranker")
        status = svc.reranker_status()
        assert status["shortest"] == "loaded" and status["viranker"].startswith("unavailable: ")
        with pytest.raises(QueryError):
            svc.compare("   ", ["bm25", "hybrid"])


def test_service_applies_the_rerankers_own_blend(tmp_path, passages):
    from indexing.build import build_generation
    from search.fusion import weighted_minmax

    blended = LengthReranker()
    blended.blend = 0.3
    build_generation("svc", passages, HashEmbedder(), root=tmp_path, progress=False)
    with _service(tmp_path, reranker_loader=lambda name: blended) as svc:
        first = svc.search("Việt Nam", "hybrid", top_k=20).hits[: svc_rerank_top(svc)]
        got = svc.search("Việt Nam", "hybrid+shortest", top_k=len(first)).hits
    fs = [(h.id, h.score) for h in first]
    rr = [(h.id, -len(h.text) / 10) for h in first]
    expect = dict(weighted_minmax([rr, fs], [0.3, 0.7]))
    assert [h.id for h in got] == sorted(expect, key=lambda pid: -expect[pid])
    assert all(h.score == pytest.approx(expect[h.id]) for h in got)


def svc_rerank_top(svc) -> int:
    with svc._lease() as state:
        return state.pipeline.rerank_top


def test_service_is_thread_safe_across_generation_swaps(tmp_path, passages):
    import threading

    from indexing.build import build_generation

    build_generation("svc", passages, HashEmbedder(), root=tmp_path, progress=False)
    errors: list[BaseException] = []
    with _service(tmp_path) as svc:
        svc.search("hộ chiếu", "hybrid")

        def worker(i: int) -> None:
            try:
                for j in range(12):
                    q = ["thủ đô Việt Nam", "cap lai ho chieu", "học phí"][(i + j) % 3]
                    res = svc.search(q, ["bm25", "dense", "hybrid"][j % 3], top_k=3)
                    assert res.hits
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        build_generation("svc", passages[::-1], HashEmbedder(), root=tmp_path, progress=False)
        for t in threads:
            t.join()
        svc.search("hộ chiếu", "bm25")
        assert not errors, errors[:3]
        assert svc._state.users == 0


def test_cli_query(tmp_path, passages, capsys: pytest.CaptureFixture[str]):
    import json

    from indexing.build import build_generation
    from search.__main__ import main

    build_generation("cli", passages, None, root=tmp_path, progress=False)  # BM25 only
    assert main(["query", "--index", "cli", "--root", str(tmp_path), "-k", "2", "cap lai ho chieu"]) == 0
    out = capsys.readouterr().out
    assert "searched: cấp lại hộ chiếu" in out and "  1. " in out and "passport — Hộ chiếu" in out
    assert "[bm25] 2 hits" in out
    assert main(["query", "--index", "cli", "--root", str(tmp_path), "--json", "thủ", "đô"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "hanoi"
    assert main(["query", "--index", "cli", "--root", str(tmp_path), "--pipeline", "hybrid", "Huế"]) == 2
    assert "needs vectors" in capsys.readouterr().err
    assert main(["query", "--index", "missing", "--root", str(tmp_path), "Huế"]) == 2
    assert "build it first" in capsys.readouterr().err
    assert main(["query", "--index", "cli", "--root", str(tmp_path), "  "]) == 2


def test_pipeline_config_and_keyword_overrides(bm25):
    from search.pipeline import PipelineConfig

    cfg = PipelineConfig(depth=7, rerank_top=2)
    pipe = Pipeline(bm25, config=cfg, fusion="rrf")  # keywords override the config
    assert (pipe.depth, pipe.rerank_top, pipe.fusion) == (7, 2, "rrf") and pipe.config.depth == 7
    assert pipe.fusion_kwargs == {}  # rrf: no min-max default weights carried over from the base config
    assert Pipeline(bm25, config=PipelineConfig(fusion="rrf"), fusion="minmax").fusion_kwargs == {"weights": [0.5, 0.5]}
    with pytest.raises(TypeError, match="unknown Pipeline argument"):
        Pipeline(bm25, rerank_depth=3)
    with pytest.raises(ValueError, match="depth"):
        PipelineConfig(depth=0)

