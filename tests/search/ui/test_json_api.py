"""The JSON HTTP API (``/api/v1/...``) and the serving lanes, through the real app (issue 19).

An in-process app over the test kit's tiny index; requests over HTTP with httpx. The lane test slows the
kit's word-overlap reranker down so reranked searches hold their lane for a while.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from search.ui.lanes import Lane, LaneBusy, Lanes  # noqa: E402
from tests import app_testkit as kit  # noqa: E402
from tests.e2e.test_security import call  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    with kit.running_app(tmp_path_factory.mktemp("json-api-home")) as ra:
        yield ra


def api(served: Any, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{served.url}api/v1/{path}", json=body, timeout=60)


# ------------------------------------------------------------------------------------------- JSON API
def test_search_get_and_post(served) -> None:
    got = httpx.get(f"{served.url}api/v1/search", params={"query": "Hà Nội", "pipeline": "bm25", "top_k": 3},
                    timeout=60)
    posted = api(served, "search", query="Hà Nội", pipeline="bm25", top_k=3)
    assert got.status_code == posted.status_code == 200
    body = posted.json()
    assert body["hits"] == got.json()["hits"] and body["pipeline"] == "bm25"
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3] and body["hits"][0]["id"] == "hn"
    assert {"id", "title", "text", "score", "rank", "doc_id", "normalized_score"} <= set(body["hits"][0])
    assert "total" in body["timings_ms"]


def test_status_and_compare(served) -> None:
    st = httpx.get(f"{served.url}api/v1/status", timeout=60).json()
    assert st["ready"] and st["index"] == "test" and str(served.home) not in str(st)
    out = api(served, "compare", query="Đà Lạt", pipelines=["bm25", "hybrid+overlap"], top_k=3).json()
    assert set(out["results"]) == {"bm25", "hybrid+overlap"} and out["results"]["bm25"][0]["id"] == "dl"
    one = api(served, "compare", query="Đà Lạt", pipelines="bm25", top_k=3).json()
    assert list(one["results"]) == ["bm25"]  # a string is one pipeline, not its characters


@pytest.mark.parametrize(("body", "kind"), [
    ({"query": 5}, "BadInput"),
    ({"query": ["Hà Nội"]}, "BadInput"),
    ({"query": ""}, "EmptyQuery"),
    ({"query": "Hà Nội", "top_k": "Infinity"}, "BadInput"),
    ({"query": "Hà Nội", "top_k": float("nan")}, "BadInput"),
    ({"query": "Hà Nội", "pipeline": 3}, "BadRequest"),
    ({"query": "Hà Nội", "pipeline": "no-such"}, None),
])
def test_bad_requests_get_a_400_with_a_typed_error(served, body, kind) -> None:
    if body.get("top_k") != body.get("top_k"):  # NaN is not JSON: send it as the string a client would
        body = {**body, "top_k": "NaN"}
    r = api(served, "search", **body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["message"] and "Traceback" not in err["message"] and "OverflowError" not in r.text
    if kind:
        assert err["type"] == kind


def test_malformed_body_is_a_400(served) -> None:
    r = httpx.post(f"{served.url}api/v1/search", content=b"{not json", timeout=60)
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest"


def test_gradio_client_still_works(served) -> None:
    from gradio_client import Client

    client = Client(served.url, verbose=False, analytics_enabled=False)
    assert client.predict("Hà Nội", "bm25", 2, api_name="/search")[0]["id"] == "hn"
    assert list(client.predict("Hà Nội", "bm25", 2, api_name="/compare")["results"]) == ["bm25"]


# ----------------------------------------------------------------------------------------------- lanes
def test_lane_refuses_when_its_waiting_room_is_full() -> None:
    lane = Lane("rerank", limit=1, max_waiting=1)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lane.slot():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    def wait_for_slot() -> None:
        with lane.slot():
            pass

    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    deadline = time.monotonic() + 5
    while lane.stats()["waiting"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(LaneBusy), lane.slot():
        pass
    release.set()
    holder.join(5)
    waiter.join(5)
    lanes = Lanes()
    assert lanes.lane_for(["bm25", "hybrid"]) is lanes.fast
    assert lanes.lane_for(["bm25", "hybrid+viranker"]) is lanes.rerank


@pytest.mark.parametrize("path", ["gradio", "json"])
def test_a_cheap_search_does_not_wait_behind_reranked_ones(served, monkeypatch, path) -> None:
    original = kit.OverlapReranker.rerank

    def slow(self, query, passages):  # noqa: ANN001, ANN202
        time.sleep(1.5)
        return original(self, query, passages)

    monkeypatch.setattr(kit.OverlapReranker, "rerank", slow)

    def search(http: Any, pipeline: str) -> bool:
        if path == "json":
            return http.post(f"{served.url}api/v1/search", json={"query": "Hà Nội", "pipeline": pipeline},
                             timeout=120).status_code == 200
        return call(http, served.url, "search", "Hà Nội", pipeline, 3)[0] == "complete"

    results: list[bool] = []

    def heavy() -> None:
        with httpx.Client() as http:
            results.append(search(http, "hybrid+overlap"))

    threads = [threading.Thread(target=heavy) for _ in range(8)]  # 8 × 1.5 s on one reranker: ~12 s of work
    for t in threads:
        t.start()
    time.sleep(1.0)  # all in flight: one reranking, the others waiting for their lane
    with httpx.Client() as http:
        t0 = time.perf_counter()
        assert search(http, "bm25")
        cheap = time.perf_counter() - t0
    for t in threads:
        t.join(60)
    assert results == [True] * 8
    assert cheap < 1.0, f"a bm25 search waited {cheap:.2f} s behind reranked ones"


# ---------------------------------------------------------------------------------------- bounded memory
def test_session_state_is_bounded(served) -> None:
    from search.ui.layout import MAX_SESSIONS

    holder = served.demo.state_holder
    assert served.demo.state_session_capacity == MAX_SESSIONS <= 1000  # Gradio's default keeps 10,000
    with httpx.Client() as http:
        for _ in range(MAX_SESSIONS + 30):  # every call is a new session
            assert call(http, served.url, "status")[0] == "complete"
    assert len(holder.session_data) <= MAX_SESSIONS
