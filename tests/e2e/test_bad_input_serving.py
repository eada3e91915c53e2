"""Bad input checklist, part 2 (listed in tests/e2e/test_bad_input.py's docstring): the Qdrant server down (a
typed error saying why, the real cause in Admin status, a build failing before its expensive stages), model
server paths hidden from visitors, and the admin's messages in Vietnamese by reason code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from indexing import generations as gens
from indexing import settings
from indexing.build import build_generation
from tests.e2e.test_bad_input import PASSAGES, HashEmbedder, _free_port, _server_generation


def test_qdrant_down_says_why_and_admin_status_shows_the_cause(tmp_path: Path, monkeypatch) -> None:
    """Dense/hybrid with the Qdrant server down: a typed error whose message names the vector server (not
    "no vectors yet"), BM25's fallback notice says so too, and the Admin status shows the real cause."""
    from app import Backend, Handlers
    from search.errors import VectorStoreDown
    from search.service import SearchService
    from search.ui import messages as msg
    from search.ui.api import make_api

    root, _, _ = _server_generation(tmp_path, monkeypatch)
    dead = str(settings.qdrant_url())
    monkeypatch.setenv("VIRANKER_HOME", str(root))
    svc = SearchService("srv", root=root, embedder_loader=lambda n: HashEmbedder(), default_reranker=None,
                        vector_retry_s=3600.0)
    with pytest.raises(VectorStoreDown) as err:
        svc.search("thủ đô Việt Nam", "hybrid")
    assert dead in err.value.reason and "not reachable" in err.value.reason
    text = msg.friendly_error(err.value)
    assert text != msg.NO_VECTORS and "Qdrant" in text and dead not in text  # why, without the server address
    backend = Backend("srv", service_factory=lambda name: svc, demo_corpus=None, reranker_status=lambda: {},
                      admin_password="pw")
    notice = Handlers(backend).search("thủ đô Việt Nam", "hybrid", None, 3)[0]
    assert "Qdrant" in notice and "chưa có vector" not in notice
    cause = backend.admin_stats()["vector_store"]
    assert f"Qdrant server at {dead}" in cause and "not reachable" in cause
    status = make_api(backend)["admin_status"]("pw", None)
    assert f"Qdrant server at {dead}" in status["stats"]["vector_store"]
    svc.close()


def test_build_with_unreachable_qdrant_fails_before_the_passage_and_bm25_stages(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    from indexing.vectors import VectorServerUnreachable

    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("QDRANT_URL", dead)
    stages: list[str] = []
    t = time.perf_counter()
    with pytest.raises(VectorServerUnreachable) as err:
        build_generation("dead", PASSAGES, HashEmbedder(), tmp_path / "home", progress=False,
                         progress_callback=lambda stage, done, total, **kw: stages.append(stage))
    assert time.perf_counter() - t < 3.0
    assert err.value.url == dead and "unset QDRANT_URL" in str(err.value)
    assert stages == []  # neither passages nor BM25 ran
    idx = settings.index_dir("dead", tmp_path / "home")
    assert not list(idx.glob(f"{gens.GENERATIONS_DIR}/*/bm25*")) and gens.current(idx) is None


def test_model_server_paths_are_not_shown_to_visitors(tmp_path: Path, monkeypatch) -> None:
    """Search/Compare and the public API show model names and reasons, never the model's server path; the
    Admin status has the full reranker status."""
    from app import Backend, Handlers
    from reranker.backends import ModelUnavailable
    from search.ui import messages as msg
    from search.ui.api import make_api

    secret = "/srv/secret-home/assets/models"
    status = {"viranker": f"available: {secret}/viranker",
              "phoranker": f"unavailable: no model at {secret}/phoranker and $PHORANKER_PATH is not set. "
                           f"export one into {secret}/phoranker or set PHORANKER_PATH"}
    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path / "home"))
    backend = Backend("none", demo_corpus=None, reranker_status=lambda: dict(status), admin_password="pw")
    public = backend.rerankers()
    assert public["viranker"].startswith("available") and public["phoranker"].startswith("unavailable")
    assert secret not in repr(public) and "PHORANKER_PATH" in public["phoranker"]
    compare_list = Handlers(backend).compare_state()[1]
    assert secret not in compare_list and "phoranker" in compare_list
    err = ModelUnavailable("viranker", f"no model at {secret}/viranker", f"train one into {secret}/viranker")
    assert secret not in msg.friendly_error(err) and "viranker" in msg.friendly_error(err)
    assert secret not in repr(make_api(backend)["status"]())
    assert f"{secret}/viranker" in repr(make_api(backend)["admin_status"]("pw", None)["rerankers"])


@pytest.mark.parametrize(("reason", "words"), [("wrong", "Sai mật khẩu"), ("wait", "chờ"), ("disabled", "tắt")])
def test_admin_login_results_are_worded_in_vietnamese_by_reason(reason: str, words: str) -> None:
    from indexing.admin import AdminAuth
    from search.ui import messages as msg

    auth = AdminAuth(None if reason == "disabled" else "pw", base_delay=60.0)
    res = auth.check("c", "nope")
    if reason == "wait":
        res = auth.check("c", "pw")
    assert res.reason == reason
    text = msg.auth_message(res)
    assert words in text and text != res.message
    if reason != "disabled":
        assert msg.auth_message(auth.check("d", "pw")) == msg.LOGGED_IN


def test_admin_action_messages_are_vietnamese(tmp_path: Path, monkeypatch) -> None:
    from app import Backend, Handlers

    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path / "home"))
    backend = Backend("none", demo_corpus=None, reranker_status=lambda: {}, admin_password="pw")
    h, token = Handlers(backend), backend.auth.check("c", "pw").token
    deleted, _ = h.delete(token, " ")
    rebuilt, _ = h.rebuild(token)
    assert "Không xoá được" in deleted and "no ids" not in deleted
    assert "Không xây lại được" in rebuilt and "no generation" not in rebuilt and "chưa có thế hệ" in rebuilt
