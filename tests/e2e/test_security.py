"""Security regressions through the real app (issue 19): the admin throttle cannot be bypassed or aimed with
``X-Forwarded-For``, and a trusted proxy's header is honoured only when one is configured.

Requests go over HTTP to an in-process app (``tests/app_testkit.py``); a second loopback source address
(127.0.0.2) stands for another machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from indexing.admin import AdminAuth  # noqa: E402
from tests import app_testkit as kit  # noqa: E402

pytestmark = pytest.mark.slow


class RecordingAuth(AdminAuth):
    """The app's :class:`AdminAuth` (default policy), recording the client key of every attempt."""

    def __init__(self, password: str | None, **kw: Any) -> None:
        super().__init__(password, **kw)
        self.keys: list[str] = []

    def check(self, client: str, password: str | None):  # noqa: ANN201 - AuthResult
        self.keys.append(client)
        return super().check(client, password)


def call(http: Any, url: str, api: str, *data: Any, headers: dict[str, str] | None = None) -> tuple[str, Any]:
    """One Gradio ``/gradio_api/call/<api>`` round trip → (last SSE event name, its data)."""
    return kit.gradio_call(http, url, api, *data, headers=headers)


def from_address(addr: str) -> Any:
    """An HTTP client whose connections come from ``addr`` (a loopback address: another "machine")."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=addr))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    with kit.running_app(tmp_path_factory.mktemp("security-home")) as ra:
        yield ra


def test_100_forged_forwarded_for_get_at_most_5_checks_and_another_admin_is_unaffected(served) -> None:
    auth = RecordingAuth(kit.ADMIN_PASSWORD)  # the default policy, as `python app.py` runs it
    served.backend.auth = auth
    t0 = time.monotonic()
    with from_address("127.0.0.1") as attacker:
        # first aim at the admin's address, then spray 99 more fake addresses
        forged = ["127.0.0.2"] * 5 + [f"10.{i // 250}.{i % 250}.7" for i in range(95)]
        events = [call(attacker, served.url, "admin_status", "wrong", headers={"X-Forwarded-For": ip})
                  for ip in forged]
    elapsed = time.monotonic() - t0
    assert len(events) == 100 and all(e == "error" for e, _ in events)
    assert set(auth.keys) == {"127.0.0.1"}  # the connection's address, never the header
    assert elapsed < 60 and auth.password_checks <= 5, (auth.password_checks, elapsed)
    # the admin on another machine logs in at once with the right password
    with from_address("127.0.0.2") as admin:
        event, data = call(admin, served.url, "admin_status", kit.ADMIN_PASSWORD)
    assert event == "complete", data
    assert data[0]["stats"]["index"] == "test"


def test_the_right_password_is_accepted_after_the_back_off(served) -> None:
    auth = RecordingAuth(kit.ADMIN_PASSWORD, base_delay=0.5, max_delay=1.0)
    served.backend.auth = auth
    with from_address("127.0.0.1") as http:
        for _ in range(7):  # more checked failures than the old lockout (5) allowed
            call(http, served.url, "admin_status", "wrong")
            time.sleep(1.05)
        call(http, served.url, "admin_status", "wrong")
        event, _ = call(http, served.url, "admin_status", kit.ADMIN_PASSWORD)
        assert event == "error"  # still inside the (capped) back-off
        time.sleep(1.1)  # ... which never exceeds max_delay: no lockout
        event, data = call(http, served.url, "admin_status", kit.ADMIN_PASSWORD)
    assert event == "complete", data


def test_a_configured_trusted_proxy_is_honoured_right_most_untrusted_hop(tmp_path: Path, monkeypatch) -> None:
    import app as app_module

    monkeypatch.setenv("VIRANKER_HOME", str(tmp_path))
    monkeypatch.setenv("VIRANKER_TRUSTED_PROXIES", "127.0.0.1, 10.9.0.0/16")
    auth = RecordingAuth(kit.ADMIN_PASSWORD, base_delay=0.01, max_delay=0.01)
    backend = app_module.Backend("proxied", demo_corpus=None, auth=auth, reranker_status=lambda: {})
    with kit.serve_backend(backend) as (url, _), from_address("127.0.0.1") as proxy, \
            from_address("127.0.0.2") as direct:
        call(proxy, url, "admin_status", "wrong", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.9.1.1"})
        time.sleep(0.05)
        call(direct, url, "admin_status", "wrong", headers={"X-Forwarded-For": "6.6.6.6"})  # not a proxy
    # the client's own hop (203.0.113.5) behind the trusted 10.9.x proxy; the spoofable left part is ignored
    assert auth.keys == ["203.0.113.5", "127.0.0.2"]


# ------------------------------------------------------------------------------------------------ uploads
def _upload(http: Any, url: str, name: str, data: bytes, cookie: str | None = None) -> Any:
    return http.post(f"{url}gradio_api/upload", files=[("files", (name, data, "application/octet-stream"))],
                     cookies={"viranker_admin": cookie} if cookie else None, timeout=60)


def test_anonymous_uploads_are_refused_and_keep_nothing(served) -> None:
    from gradio.utils import get_upload_folder

    served.backend.auth = AdminAuth(kit.ADMIN_PASSWORD)
    folder = Path(get_upload_folder())
    before = set(folder.rglob("*")) if folder.is_dir() else set()
    with httpx.Client() as http:
        r = _upload(http, served.url, "big.jsonl", b"x" * 100_000)
        forged = _upload(http, served.url, "big.jsonl", b"x" * 1000, cookie="forged-token")
    assert r.status_code == 403 and forged.status_code == 403
    after = set(folder.rglob("*")) if folder.is_dir() else set()
    assert not [p for p in after - before if p.is_file()]


def test_admin_uploads_have_a_size_and_rate_limit(served) -> None:
    from search.ui.upload_guard import delete_temp_uploads

    served.backend.auth = AdminAuth(kit.ADMIN_PASSWORD)
    token = served.backend.auth.check("test", kit.ADMIN_PASSWORD).token
    with httpx.Client() as http:
        ok = _upload(http, served.url, "a.jsonl", b'{"_id": "n1", "text": "xin chao"}\n', cookie=token)
        assert ok.status_code == 200, ok.text
        assert delete_temp_uploads(ok.json()) == 1  # the Admin tab's clean-up removes Gradio's copy
        codes = [_upload(http, served.url, "b.txt", b"x", cookie=token).status_code for _ in range(20)]
    assert codes.count(429) >= 1 and codes[0] == 200  # 20 a minute per client


def test_a_skipped_duplicate_does_not_rewrite_the_documents_origin(served, tmp_path: Path) -> None:
    import app as app_module

    backend = served.backend
    backend.auth = AdminAuth(kit.ADMIN_PASSWORD)
    handlers = app_module.Handlers(backend)
    before = backend.doc_meta()["hn"]
    upload = tmp_path / "dup.jsonl"
    kit.write_corpus(upload, [{"_id": "hn", "title": "Giả mạo", "text": "Một bản sao có nguồn khác.",
                               "source": "kẻ giả mạo", "url": "https://evil.example/"},
                              {"_id": "new-doc", "title": "Mới", "text": "Một tài liệu mới về Huế.",
                               "source": "Nguồn mới", "url": "https://new.example/"}])
    tok = backend.auth.check("test", kit.ADMIN_PASSWORD).token
    report, polling = handlers.upload(tok, [str(upload)], "add")
    assert polling, report
    assert backend.job.wait(120) and not backend.job.snapshot()["error"]
    backend._meta = None
    meta = backend.doc_meta()
    assert meta["hn"] == before  # "skipped" means skipped: the origin stays
    assert meta["new-doc"]["url"] == "https://new.example/"


def test_refused_uploads_keep_no_folder_and_no_temp_file(served) -> None:
    from gradio.utils import get_upload_folder

    import app as app_module

    backend = served.backend
    backend.auth = AdminAuth(kit.ADMIN_PASSWORD)
    backend.job.wait(120)
    temp = Path(get_upload_folder()) / "test-security-refused"
    temp.mkdir(parents=True, exist_ok=True)
    only_dups = kit.write_corpus(temp / "dups.jsonl", [{"_id": "hn", "text": "đã có"}])
    batches = set(backend.uploads_dir.iterdir()) if backend.uploads_dir.is_dir() else set()
    tok = backend.auth.check("test", kit.ADMIN_PASSWORD).token
    report, polling = app_module.Handlers(backend).upload(tok, [str(only_dups)], "add")
    assert not polling and "Không có gì để lập chỉ mục" in report
    assert (set(backend.uploads_dir.iterdir()) if backend.uploads_dir.is_dir() else set()) == batches
    assert not only_dups.exists() and not temp.exists()


def test_upload_guard_size_limit_declared_and_streamed() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from search.ui.upload_guard import COOKIE, UploadGuard

    async def upload(request):  # noqa: ANN001, ANN202 - a stand-in for Gradio's route: reads the whole body
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/gradio_api/upload", upload, methods=["POST"])],
                    middleware=[Middleware(UploadGuard, valid_token=lambda t: t == "ok", max_bytes=1000)])
    with TestClient(app) as client:
        client.cookies.set(COOKIE, "ok")
        assert client.post("/gradio_api/upload", content=b"x" * 900).text == "900"
        assert client.post("/gradio_api/upload", content=b"x" * 1001).status_code == 413  # declared length
        streamed = client.post("/gradio_api/upload", content=iter([b"x" * 600, b"x" * 600]))  # chunked
        assert streamed.status_code == 413
