"""The Admin tab: log in, index statistics, uploads, build progress, generations (switch, rollback, rebuild)
and deletes. Every handler checks the server-side session token first (:meth:`indexing.admin.AdminAuth`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from indexing.admin import BuildBusy, NothingToRetry
from search.ui import messages as msg
from search.ui.context import PRIVATE, UiContext, client_key
from search.ui.render import notice_html, progress_html
from search.ui.upload_guard import clear_cookie_js, delete_temp_uploads, set_cookie_js

if TYPE_CHECKING:
    from search.ui.backend import Backend

__all__ = ["AdminHandlers", "build"]


class AdminHandlers:
    """The Admin tab's handlers (a part of :class:`search.ui.handlers.Handlers`)."""

    b: Backend
    DENIED = msg.DENIED

    def login(self, password: str, client: str) -> tuple[str | None, str]:
        """→ (session token or None, message HTML)."""
        res = self.b.auth.check(client, password)
        if res.ok:
            return res.token, notice_html(msg.LOGGED_IN, "info")
        return None, notice_html(msg.auth_message(res), "error" if self.b.auth.enabled else "warn")

    def logout(self, token: str | None) -> tuple[None, str]:
        """Revoke the session token."""
        self.b.auth.revoke(token)
        return None, notice_html(msg.LOGGED_OUT, "info")

    def admin_view(self, token: str | None) -> tuple[str, Any, list[str]]:
        """→ (statistics HTML, generations table, generation names) — or a refusal without a valid token."""
        import pandas as pd

        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error"), pd.DataFrame(), []
        st = self.b.admin_stats()
        rows = "".join(f"<tr><th>{html.escape(v)}</th><td>{msg.admin_stat_html(k, st.get(k, '—'))}</td></tr>"
                       for k, v in msg.ADMIN_STAT_LABELS.items())
        generations = self.b.admin_generations()
        df = pd.DataFrame(msg.generation_rows(generations), columns=msg.GENERATION_COLUMNS)
        names = [g["name"] for g in generations if g["status"] == "complete"]
        return f"<table class='vr-results vr-stats'>{rows}</table>", df, names

    def upload(self, token: str | None, files: Any, mode: str) -> tuple[str, bool]:
        """Validate the uploaded files and start a build → (report HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error"), False
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            return notice_html(msg.NO_FILES, "info"), False
        try:
            text = self.b.admin_start_upload(paths, [Path(p).name for p in paths], mode)
        except Exception as err:  # noqa: BLE001 - UploadError, IngestError, busy: all shown to the admin
            return f"<pre class='vr-notice vr-error'>{html.escape(str(err))}</pre>", False
        finally:
            delete_temp_uploads(paths)  # copied into the index's uploads/ (or refused): Gradio's copies go
        return f"<pre class='vr-notice vr-info'>{html.escape(text)}</pre>", True

    def build_status(self, token: str | None) -> tuple[str, bool]:
        """→ (build progress + log HTML, keep polling?)."""
        if not self.b.auth.valid_token(token):
            return "", False
        snap = self.b.job.snapshot()
        if snap.get("label") is None:
            return msg.NO_BUILD_YET, False
        head = progress_html(snap)
        if snap.get("error"):
            head += notice_html(msg.build_step_failed((snap.get("failure") or {}).get("stage"), snap["error"]), "error")
        elif not snap["running"] and isinstance(snap.get("result"), dict):
            head += notice_html(msg.build_done(snap["result"].get("generation")), "info")
        log = html.escape("\n".join(snap.get("log", [])[-12:]))
        return f"<div id='admin-build'>{head}<pre class='vr-log'>{log}</pre></div>", bool(snap["running"])

    def rollback(self, token: str | None) -> str:
        """Switch back to the previous generation → message HTML."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error")
        try:
            gen = self.b.admin_rollback()
        except Exception as err:  # noqa: BLE001
            return notice_html(msg.admin_failed("rollback", err), "warn")
        return notice_html(msg.rolled_back(gen), "info")

    def switch(self, token: str | None, gen: str | None) -> str:
        """Serve the chosen generation → message HTML."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error")
        if not gen:
            return notice_html(msg.PICK_GENERATION, "info")
        try:
            self.b.admin_switch(gen)
        except Exception as err:  # noqa: BLE001
            return notice_html(msg.admin_failed("switch", err), "warn")
        return notice_html(msg.serving(gen), "info")

    def rebuild(self, token: str | None) -> tuple[str, bool]:
        """Start a rebuild of the current passages → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error"), False
        try:
            text = self.b.admin_start_rebuild()
        except Exception as err:  # noqa: BLE001
            return notice_html(msg.admin_failed("rebuild", err), "warn"), False
        return notice_html(text, "info"), True

    def retry_build(self, token: str | None) -> tuple[str, bool]:
        """Start the failed build again → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error"), False
        try:
            text = self.b.admin_retry_build()
        except BuildBusy:
            return notice_html(msg.BUILD_BUSY, "info"), True
        except NothingToRetry:
            return notice_html(msg.NOTHING_TO_RETRY, "info"), False
        return notice_html(text, "info"), True

    def delete(self, token: str | None, ids_text: str) -> tuple[str, bool]:
        """Start deleting the listed ids (comma / whitespace separated) → (message HTML, start polling?)."""
        if not self.b.auth.valid_token(token):
            return notice_html(msg.DENIED, "error"), False
        ids = [i for i in (ids_text or "").replace(",", " ").split() if i]
        try:
            text = self.b.admin_start_delete(ids)
        except Exception as err:  # noqa: BLE001
            return notice_html(msg.admin_failed("delete", err), "warn"), False
        return notice_html(text, "info"), True


def build(ctx: UiContext) -> None:
    """The tab's layout and events (inside ``gr.Blocks`` / ``gr.Tabs``)."""
    h, auth = ctx.handlers, ctx.backend.auth
    admin = {**PRIVATE, "concurrency_limit": 1, "concurrency_id": "admin"}
    with gr.Tab("Admin", id="admin", elem_id="tab-admin"):
        token = gr.State(None)
        # the token again, briefly, for the login's js to put in the upload cookie (search.ui.upload_guard)
        cookie_box = gr.Textbox(visible="hidden", elem_id="admin-session")
        if not auth.enabled:
            gr.HTML(notice_html(msg.AUTH_DISABLED, "warn"), elem_id="admin-disabled")
        with gr.Row(equal_height=True) as login_row:
            pw = gr.Textbox(label="Mật khẩu admin", type="password", elem_id="admin-password", scale=4,
                            interactive=auth.enabled)
            login = gr.Button("Đăng nhập", elem_id="admin-login", scale=1, interactive=auth.enabled)
        login_msg = gr.HTML(elem_id="admin-login-msg")
        with gr.Column(visible=False, elem_id="admin-panel") as panel:
            with gr.Row():
                refresh = gr.Button("Làm mới", size="sm", elem_id="admin-refresh")
                logout = gr.Button("Đăng xuất", size="sm", elem_id="admin-logout")
            astats = gr.HTML(elem_id="admin-stats")
            gr.Markdown("### Tải tài liệu lên")
            files = gr.File(label="JSONL / CSV / TXT / MD hoặc ZIP (tối đa 50 MB)", file_count="multiple",
                            file_types=[".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt", ".md", ".zip"],
                            type="filepath", elem_id="admin-files")
            umode = gr.Radio([("Thêm vào chỉ mục hiện tại", "add"),
                              ("Thay thế: thế hệ mới chỉ gồm các tệp này", "replace")],
                             value="add", label="Cách xây", elem_id="admin-mode")
            ubtn = gr.Button("Kiểm tra & xây thế hệ mới", variant="primary", elem_id="admin-upload")
            ureport = gr.HTML(elem_id="admin-upload-report")
            bstatus = gr.HTML(elem_id="admin-build-status")
            with gr.Row():
                bretry = gr.Button("Thử xây lại", size="sm", elem_id="admin-retry-build", scale=0, min_width=160)
                bretry_msg = gr.HTML(elem_id="admin-retry-msg")
            btimer = gr.Timer(1.0, active=False)
            gr.Markdown("### Thế hệ chỉ mục")
            agens = gr.Dataframe(elem_id="admin-generations", interactive=False)
            with gr.Row():
                gpick = gr.Dropdown([], label="Thế hệ", elem_id="admin-gen-pick", scale=3)
                gswitch = gr.Button("Phục vụ thế hệ này", elem_id="admin-switch", scale=1)
                groll = gr.Button("Quay lui", elem_id="admin-rollback", scale=1)
                grebuild = gr.Button("Xây lại", elem_id="admin-rebuild", scale=1)
            gmsg = gr.HTML(elem_id="admin-gen-msg")
            gr.Markdown("### Xoá tài liệu theo id")
            with gr.Row(equal_height=True):
                dids = gr.Textbox(label="Id đoạn văn hoặc tài liệu (cách nhau bởi dấu phẩy / xuống dòng)",
                                  lines=2, elem_id="admin-delete-ids", scale=4)
                dbtn = gr.Button("Xoá", variant="stop", elem_id="admin-delete", scale=1)
            dmsg = gr.HTML(elem_id="admin-delete-msg")

    def _login(password, request: gr.Request):
        tok, message = h.login(password, client_key(request))
        ok = tok is not None
        view = h.admin_view(tok) if ok else ("", None, [])
        bs = h.build_status(tok) if ok else ("", False)
        return (tok, message, gr.Textbox(value=""), gr.Column(visible=ok), gr.Row(visible=not ok), view[0],
                view[1], gr.Dropdown(choices=view[2], value=None), bs[0], gr.Timer(active=bs[1]), tok or "")

    login_out = [token, login_msg, pw, panel, login_row, astats, agens, gpick, bstatus, btimer, cookie_box]
    set_cookie = {"fn": None, "inputs": [cookie_box], "outputs": [cookie_box], "js": set_cookie_js, **PRIVATE,
                  "queue": False}
    login.click(_login, [pw], login_out, **admin).then(**set_cookie)
    pw.submit(_login, [pw], login_out, **admin).then(**set_cookie)

    def _logout(tok):
        _, message = h.logout(tok)
        return None, message, gr.Column(visible=False), gr.Row(visible=True), "", None

    logout.click(_logout, [token], [token, login_msg, panel, login_row, astats, agens], **PRIVATE, queue=False).then(
        None, None, None, js=clear_cookie_js, **PRIVATE, queue=False)

    def _view(tok):
        st, df, names = h.admin_view(tok)
        return st, df, gr.Dropdown(choices=names, value=None)

    view_out = [astats, agens, gpick]
    refresh.click(_view, [token], view_out, **PRIVATE, queue=False)

    def _upload(tok, fs, m):
        rep, poll = h.upload(tok, fs, m)
        return rep, gr.Timer(active=poll)

    ubtn.click(_upload, [token, files, umode], [ureport, btimer], **admin)

    def _tick(tok):
        text, poll = h.build_status(tok)
        st, df, names = h.admin_view(tok) if not poll else (gr.skip(), gr.skip(), None)
        dd = gr.Dropdown(choices=names, value=None) if names is not None else gr.skip()
        return text, gr.Timer(active=poll), st, df, dd, h.banner()[0]

    btimer.tick(_tick, [token], [bstatus, btimer, astats, agens, gpick, ctx.banner], **PRIVATE, queue=False)

    def _roll(tok):
        return (h.rollback(tok), *_view(tok))

    groll.click(_roll, [token], [gmsg, *view_out], **admin)

    def _switch(tok, gen):
        return (h.switch(tok, gen), *_view(tok))

    gswitch.click(_switch, [token, gpick], [gmsg, *view_out], **admin)

    def _rebuild(tok):
        message, poll = h.rebuild(tok)
        return message, gr.Timer(active=poll)

    grebuild.click(_rebuild, [token], [gmsg, btimer], **admin)

    def _retry(tok):
        message, poll = h.retry_build(tok)
        return message, gr.Timer(active=poll), h.banner()[0], gr.Timer(active=poll)

    bretry.click(_retry, [token], [bretry_msg, btimer, ctx.banner, ctx.banner_timer], **admin)

    def _delete(tok, ids):
        message, poll = h.delete(tok, ids)
        return message, gr.Timer(active=poll)

    dbtn.click(_delete, [token, dids], [dmsg, btimer], **admin)
