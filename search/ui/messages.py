"""The app's Vietnamese messages: errors chosen by exception class, notes by code, notices and the banner.

Everything the handlers and the backend say to a visitor or an admin is here (widget labels stay with their
widgets in the ``tab_*`` modules). Nothing is matched by message text: :func:`friendly_error` dispatches on
the classes of :mod:`search.errors` and the model errors of the layers below (``ModelUnavailable``,
``EmbedderUnavailable``, ``EmbedderMismatch``), :func:`note_vi` on :class:`search.results.NoteCode`, and why a
reranker or the index's embedder is unavailable (:func:`unavailable_vi`, :func:`reranker_status_vi`,
:func:`embedder_unavailable`) on the :class:`reranker.availability.UnavailableReason` its error or status carries.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from indexing.embedders import EmbedderMismatch, EmbedderUnavailable
from reranker.availability import ModelUnavailable, RerankerState, UnavailableReason, as_status
from search.errors import (
    EmptyQuery,
    IndexNotReady,
    NoSearchableTerms,
    QueryError,
    ServiceError,
    VectorStoreDown,
    VectorsUnavailable,
)
from search.results import Note, NoteCode
from search.ui.render import build_failure_html, build_failure_text, notice_html, progress_html, redact_paths

if TYPE_CHECKING:
    from indexing.admin import AuthResult
    from search.ui.backend import Backend

# ------------------------------------------------------------------------------------------- search
EMPTY_QUERY = "Hãy nhập câu hỏi hoặc từ khoá để tìm kiếm."
NO_TERMS = "Câu hỏi không có chữ hoặc số nào để tìm. Hãy nhập từ khoá khác."
NO_VECTORS = ("Chỉ mục hiện chưa có vector (đang được tính, hoặc chưa có mô hình embedding): "
              "hãy chọn pipeline BM25 trong lúc chờ.")
BM25_FALLBACK = ("Chỉ mục chưa có vector (đang được tính hoặc không có mô hình embedding): "
                 "kết quả dưới đây là của BM25.")
VECTOR_STORE_DOWN = ("Máy chủ vector (Qdrant) không phản hồi nên chưa tìm theo nghĩa (dense/hybrid) được: "
                     "hãy chọn pipeline BM25 trong lúc chờ. Quản trị viên xem nguyên nhân trong tab Admin.")
BM25_FALLBACK_STORE_DOWN = ("Máy chủ vector (Qdrant) không phản hồi (quản trị viên xem nguyên nhân trong tab Admin): "
                            "kết quả dưới đây là của BM25.")
SEARCHED_AS_TYPED = "<div class='vr-restored vr-muted'>Tìm chính xác như đã gõ (không thêm dấu).</div>"



def bm25_fallback(err: VectorsUnavailable) -> str:
    """The notice above BM25's results when the asked pipeline needs vectors it cannot have (``err``): the
    vector server is down (:class:`VectorStoreDown`) or the index has no vectors yet."""
    return BM25_FALLBACK_STORE_DOWN if isinstance(err, VectorStoreDown) else BM25_FALLBACK


# ------------------------------------------------------------------------------------------ compare
COMPARE_EMPTY_QUERY = "Hãy nhập một câu hỏi để so sánh."
COMPARE_NO_SYSTEM = "Chọn ít nhất một hệ thống (tối đa 3)."

# ----------------------------------------------------------------------------------------- evaluate
EVAL_NO_SYSTEM = "Chọn ít nhất một hệ thống để đánh giá."

# -------------------------------------------------------------------------------------------- admin
DENIED = "Bạn cần đăng nhập admin để làm việc này."
LOGGED_IN = "Đăng nhập thành công."
LOGGED_OUT = "Đã đăng xuất."
NO_FILES = "Chưa chọn tệp nào."
NO_BUILD_YET = "<div class='vr-muted'>Chưa có lần xây nào trong phiên này.</div>"
PICK_GENERATION = "Chọn một thế hệ."
BUILD_BUSY = "Đang có một lần xây chạy; hãy chờ nó xong."
NOTHING_TO_RETRY = "Không có lần xây nào thất bại để thử lại."
AUTH_DISABLED = ("Chức năng Admin đang tắt: chưa đặt mật khẩu admin. Hãy chạy ứng dụng với "
                 "VIRANKER_ADMIN_PASSWORD_FILE=<tệp>, VIRANKER_ADMIN_PASSWORD hoặc --admin-password <mật khẩu>.")
ADMIN_STAT_LABELS = {
    "index": "Chỉ mục", "generation": "Thế hệ đang phục vụ", "operation": "Thao tác tạo ra",
    "created": "Tạo lúc (UTC)", "passages": "Số đoạn văn", "documents": "Số tài liệu",
    "vectors": "Số vector", "vector_store": "Kho vector", "embedder": "Mô hình embedding", "build_seconds": "Thời gian xây (s)",
    "generations": "Số thế hệ", "disk_mb": "Dung lượng (MB)", "uploads": "Số lần tải lên",
    "rerankers": "Reranker",
}
GENERATION_COLUMNS = ["Thế hệ", "Trạng thái", "Tạo lúc (UTC)", "Đang phục vụ", "Số đoạn văn", "Số tài liệu"]
GENERATION_STATUS_VI = {"complete": "hoàn chỉnh", "incomplete": "chưa hoàn chỉnh"}  # indexing.generations
ADMIN_FAILED = {  # action → "could not ..." prefix
    "rollback": "Không quay lui được",
    "switch": "Không chuyển được",
    "rebuild": "Không xây lại được",
    "delete": "Không xoá được",
    "retry": "Không thử lại được",
    "status": "Không xem được trạng thái",
}


def auth_message(res: AuthResult) -> str:
    """A login result (:class:`indexing.admin.AuthResult`) → its Vietnamese text, chosen by ``res.reason``
    (``ok`` · ``wrong`` · ``wait`` · ``disabled``), never by its English message."""
    if res.reason == "ok":
        return LOGGED_IN
    if res.reason == "disabled":
        return AUTH_DISABLED
    if res.reason == "wait":
        return f"Vui lòng chờ {res.retry_after:.0f} giây trước lần thử tiếp theo."
    return f"Sai mật khẩu; lần thử tiếp theo được phép sau {res.retry_after:.0f} giây."


def compare_too_many(limit: int) -> str:
    """More systems ticked than the Compare tab runs."""
    return f"Chọn tối đa {limit} hệ thống."


def eval_failed(err: BaseException) -> str:
    """The evaluation could not start (bad dataset, upload or limit)."""
    return f"Không đánh giá được: {err}"


def eval_system_failed(name: str, message: str) -> str:
    """One system of an evaluation could not run."""
    return f"{name}: không chạy được — {message}"


def admin_failed(action: str, err: BaseException) -> str:
    """An admin action (a key of :data:`ADMIN_FAILED`) was refused or failed."""
    return f"{ADMIN_FAILED[action]}: {err}"


def build_step_failed(stage: Any, error: str) -> str:
    """The admin's build log: the build failed at ``stage``."""
    return (f"Thất bại ở bước {stage!r}: {error} — thế hệ đang phục vụ không thay đổi. "
            "Bấm «Thử xây lại» để chạy lại.")


def build_done(generation: Any) -> str:
    """The admin's build log: the build finished."""
    return f"Xong: thế hệ {generation} đang phục vụ."


def rolled_back(generation: str) -> str:
    """Rollback done."""
    return f"Đã quay lui: đang phục vụ {generation}."


def serving(generation: str) -> str:
    """Switch done."""
    return f"Đang phục vụ {generation}."


def retrying(label: str, attempt: Any) -> str:
    """A failed build was started again."""
    return f"Đang xây lại trong nền: {label} (lần {attempt})."


# ------------------------------------------------------------------------------------- index status
def index_building(stage: str) -> str:
    """Searches wait: the first build runs (``stage``: its current step)."""
    return f"Chỉ mục đang được xây dựng ({stage}). Vui lòng thử lại sau ít phút."


def index_building_short(stage_vi: str) -> str:
    """The public status while a build runs."""
    return f"Chỉ mục đang được xây dựng ({stage_vi})."


def index_open_failed(error: str) -> str:
    """The search service could not open the index."""
    return f"Không mở được chỉ mục: {error}"


def index_empty(index: str) -> str:
    """Nothing built and nothing to build from."""
    return f"Chỉ mục {index!r} chưa có dữ liệu. Hãy tải tài liệu lên trong tab Admin."


def index_ready(index: str, generation: str) -> str:
    """The public status when the index serves."""
    return f"Chỉ mục {index!r} sẵn sàng (thế hệ {generation})."


# ---------------------------------------------------------------------------- unavailable rerankers
_R = UnavailableReason
FIX_PACKAGES = "cài đúng các phiên bản đã kiểm thử: pip install -c constraints.txt -e ."
UNAVAILABLE_VI: dict[UnavailableReason, tuple[str, str]] = {  # code → (why, how to fix); {env} {hub_id} {package}
    _R.NOT_A_DIRECTORY: ("thư mục mô hình được chỉ định không tồn tại trên máy chủ",
                         "đặt {env} trỏ tới một thư mục mô hình có trên máy chủ"),
    _R.NO_CONFIG: ("thư mục mô hình thiếu tệp config.json",
                   "chép đủ các tệp của mô hình vào thư mục đó, hoặc đặt {env} trỏ tới một bản đầy đủ"),
    _R.NO_WEIGHTS: ("thư mục mô hình thiếu tệp trọng số (model.safetensors hoặc pytorch_model.bin)",
                    "chép đủ các tệp của mô hình vào thư mục đó, hoặc đặt {env} trỏ tới một bản đầy đủ"),
    _R.NO_TOKENIZER: ("thư mục mô hình thiếu tokenizer (tokenizer.json) hoặc tokenizer không khớp với mô hình",
                      "chép tokenizer.json (và tokenizer_config.json) của chính mô hình đó vào thư mục"),
    _R.NO_DEFAULT_MODEL: ("chưa có mô hình trong assets/models/viranker-small và chưa đặt {env}",
                          "huấn luyện hoặc xuất một mô hình ViRanker vào thư mục đó, hoặc đặt {env}=<thư mục mô hình>"),
    _R.NOT_DOWNLOADED: ("chưa đặt {env} và {hub_id} chưa có trong bộ nhớ đệm Hugging Face của máy chủ",
                        "tải {hub_id} trên một máy có mạng (huggingface-cli download {hub_id} --local-dir "
                        "<thư mục>) rồi đặt {env}=<thư mục>"),
    _R.PACKAGE_MISSING: ("máy chủ chưa cài thư viện {package}", FIX_PACKAGES),
    _R.PACKAGE_BROKEN: ("thư viện {package} đã cài nhưng không nạp được (phiên bản không tương thích)",
                        FIX_PACKAGES),
    _R.LOAD_FAILED: ("có tệp mô hình nhưng không nạp được (tệp hỏng hoặc không tương thích)",
                     "kiểm tra thư mục mô hình có đủ và đúng các tệp; quản trị viên xem chi tiết trong tab Admin"),
    _R.UNSPECIFIED: ("mô hình chưa dùng được trên máy chủ này",
                     "quản trị viên xem chi tiết trong tab Admin"),
}
STATE_VI = {RerankerState.AVAILABLE: "sẵn sàng", RerankerState.LOADED: "đã nạp",
            RerankerState.UNAVAILABLE: "chưa dùng được"}


class _Unavailability(Protocol):
    """What :func:`unavailable_vi` reads (a ``ModelUnavailable`` or a ``RerankerStatus``)."""

    code: UnavailableReason | None
    env: str | None
    hub_id: str | None
    package: str | None


def unavailable_vi(info: _Unavailability) -> tuple[str, str]:
    """Why a reranker is unavailable → (why, how to fix) in Vietnamese, chosen by ``info.code`` (a
    :class:`reranker.availability.UnavailableReason`; None → ``UNSPECIFIED``), never by the English text.
    ``info.env`` / ``hub_id`` / ``package`` fill in the names (no server path is ever shown)."""
    why, fix = UNAVAILABLE_VI[info.code or UnavailableReason.UNSPECIFIED]
    names = {"env": info.env or "biến môi trường của mô hình", "hub_id": info.hub_id or "mô hình",
             "package": info.package or "cần thiết"}
    return why.format_map(names), fix.format_map(names)


def model_unavailable(name: str, info: _Unavailability) -> str:
    """One sentence for visitors: reranker ``name`` cannot run, why and how an admin adds it."""
    why, fix = unavailable_vi(info)
    return f"Mô hình {name} chưa dùng được: {why}. Cách thêm: {fix}."


# ---------------------------------------------------------------------------- unavailable embedders
# An embedder with no $ENV (st:DIR, st:org/model) is fixed through the index's --embedder, not a variable:
EMBEDDER_NO_ENV_VI: dict[UnavailableReason, tuple[str | None, str]] = {  # code → (why or None: as above, fix)
    _R.NOT_A_DIRECTORY: (None, "chép mô hình vào đúng thư mục đã dùng khi xây chỉ mục, hoặc xây lại chỉ mục với "
                               "--embedder st:<thư mục mô hình có trên máy chủ>"),
    _R.NO_CONFIG: (None, "chép đủ các tệp của mô hình vào thư mục đó"),
    _R.NO_WEIGHTS: (None, "chép đủ các tệp của mô hình vào thư mục đó"),
    _R.NOT_DOWNLOADED: ("{hub_id} không phải thư mục trên máy chủ và chưa có trong bộ nhớ đệm Hugging Face",
                        "tải {hub_id} trên một máy có mạng (huggingface-cli download {hub_id} --local-dir "
                        "<thư mục>), chép sang máy chủ rồi xây lại chỉ mục với --embedder st:<thư mục>"),
}


def embedder_unavailable(err: EmbedderUnavailable) -> str:
    """One sentence for visitors: the index's embedding model cannot run, why and how an admin fixes it —
    chosen by ``err.code`` (as :func:`unavailable_vi` words rerankers; never the English text), the model
    named without its server path; dense search is off meanwhile, so BM25 is suggested."""
    why, fix = unavailable_vi(err)
    if err.env is None and err.code in EMBEDDER_NO_ENV_VI:
        own_why, fix = EMBEDDER_NO_ENV_VI[err.code]
        why = (own_why or why).format_map({"hub_id": err.hub_id or "mô hình"})
        fix = fix.format_map({"hub_id": err.hub_id or "mô hình"})
    kind, sep, arg = err.name.partition(":")  # "st:/srv/models/x" → "st:…/x"
    end = "" if fix.endswith(".") else "."  # (the lock's fix ends in "-e .")
    return (f"Mô hình embedding {kind}{sep}{redact_paths(arg)} chưa dùng được: {why}. Hãy dùng pipeline BM25. "
            f"Cách khắc phục: {fix}{end}")


def reranker_status_vi(name: str, status: str) -> str:
    """A reranker's status (``RerankerStatus`` or an old-style string) → ``sẵn sàng`` · ``đã nạp`` · ``chưa
    dùng được: <why>. Cách thêm: <fix>.``"""
    st = as_status(status, name)
    if st.usable:
        return STATE_VI[st.state]
    why, fix = unavailable_vi(st)
    return f"{STATE_VI[st.state]}: {why}. Cách thêm: {fix}."


def rerankers_json(statuses: Mapping[str, str]) -> dict[str, dict[str, str | None]]:
    """Reranker statuses → ``{name: {"state", "code", "message"}}`` for the public status API: the state and
    the :class:`~reranker.availability.UnavailableReason` as their values (``code`` None when usable), the
    message in Vietnamese (no server paths: callers pass :meth:`Backend.rerankers`)."""
    out: dict[str, dict[str, str | None]] = {}
    for name, status in statuses.items():
        st = as_status(status, name)
        out[name] = {"state": st.state.value, "code": None if st.code is None else st.code.value,
                     "message": reranker_status_vi(name, st)}
    return out


def admin_rerankers_html(statuses: Mapping[str, str]) -> str:
    """The Admin tab's reranker cell: each model's status in Vietnamese, with the English detail (its dir,
    or the technical reason) in small print for the admin."""
    items = []
    for name, status in statuses.items():
        st = as_status(status, name)
        detail = st.path if st.usable else str(st).partition(":")[2].strip()
        items.append(f"<li><b>{html.escape(name)}</b>: {html.escape(reranker_status_vi(name, st))}"
                     + (f"<div class='vr-muted'><code>{html.escape(detail)}</code></div>" if detail else "")
                     + "</li>")
    return f"<ul class='vr-rerankers'>{''.join(items)}</ul>" if items else "—"


def admin_stat_html(key: str, value: Any) -> str:
    """One value of the Admin tab's statistics table (a key of :data:`ADMIN_STAT_LABELS`) as HTML: the
    rerankers' statuses worded by :func:`admin_rerankers_html`, anything else escaped (``—`` for None)."""
    if key == "rerankers" and isinstance(value, Mapping):
        return admin_rerankers_html(value)
    return html.escape("—" if value is None else str(value))


def generation_rows(generations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Backend.admin_generations()`` → the Admin tab's generations table rows (:data:`GENERATION_COLUMNS`)."""
    return [dict(zip(GENERATION_COLUMNS, [g["name"], GENERATION_STATUS_VI.get(g["status"], g["status"]), g["created"],
                                          "✓" if g["current"] else "", g["counts"].get("passages"),
                                          g["counts"].get("documents")], strict=True)) for g in generations]


# --------------------------------------------------------------------------------- errors and notes
BUSY = "Máy chủ đang bận (quá nhiều tìm kiếm đang chờ). Hãy thử lại sau vài giây."


def friendly_error(err: BaseException) -> str:
    """An exception from searching → a message for users (no traceback), chosen by the exception's class."""
    if isinstance(err, EmptyQuery):
        return EMPTY_QUERY
    if isinstance(err, NoSearchableTerms):
        return NO_TERMS
    if isinstance(err, QueryError):
        return f"Câu hỏi không hợp lệ: {err}"
    if isinstance(err, IndexNotReady):
        return str(err)
    from search.ui.lanes import LaneBusy

    if isinstance(err, LaneBusy):
        return BUSY
    if isinstance(err, VectorStoreDown):
        return VECTOR_STORE_DOWN
    if isinstance(err, VectorsUnavailable):
        return NO_VECTORS
    if isinstance(err, ServiceError):
        return f"Không thể tìm: {err}"
    if isinstance(err, EmbedderMismatch):  # the index must be rebuilt for the embedder it now loads
        return f"Không thể tìm: {err}"
    if isinstance(err, ModelUnavailable):  # worded by its code; the English detail (with paths) is for Admin
        return model_unavailable(err.name, err)
    if isinstance(err, EmbedderUnavailable):  # worded by its code, as a reranker's; English detail not shown
        return embedder_unavailable(err)
    if isinstance(err, ValueError):
        return f"Không thể tìm: {err}"
    return f"Đã xảy ra lỗi khi tìm kiếm ({type(err).__name__}: {err}). Hãy thử lại."


def error_kind(err: BaseException) -> str:
    """The notice style of a search error: ``error`` (the build failed), ``info`` (the visitor can fix it, or
    the index is still being built), else ``warn``."""
    from search.errors import IndexBuildFailed

    if isinstance(err, IndexBuildFailed):
        return "error"
    if isinstance(err, (QueryError, IndexNotReady)):
        return "info"
    return "warn"


def note_vi(note: Note) -> str | None:
    """A pipeline note → its Vietnamese text for the UI (None: not shown as a notice, e.g. the restored query,
    which the page shows on its own)."""
    if note.code in (NoteCode.TRUNCATED_CHARS, NoteCode.TRUNCATED_SYLLABLES):
        unit = "ký tự" if note.code is NoteCode.TRUNCATED_CHARS else "âm tiết"
        return f"Câu hỏi quá dài: chỉ dùng {note.params['limit']} {unit} đầu tiên."
    if note.code is NoteCode.RERANK_WINDOW:
        top = int(note.params["top"])
        return f"Từ hạng {top + 1} trở đi là thứ tự trước rerank (chỉ {top} đoạn đầu được rerank)."
    if note.code is NoteCode.RESTORED:
        return None
    return str(note)


# ------------------------------------------------------------------------------------------- banner
def banner_html(backend: Backend) -> str:
    """Top-of-page status: the serving generation, the progress of a running build, or a failed build (what
    failed and what to do)."""
    st = backend.status()
    if st["building"]:
        extra = "" if st["generation"] is None else " Tìm kiếm vẫn hoạt động trên thế hệ hiện tại."
        return f"<div class='vr-banner'>⏳ {progress_html(st['build'])}<div class='vr-muted'>{extra}</div></div>"
    if st["failure"] is not None:
        return build_failure_html(st["failure"], backend.index, st["generation"])
    if st["generation"] is None:
        return notice_html(backend.not_ready_message(), "warn")
    # the generation id is an admin's detail (the Admin tab shows it), not a visitor's
    return f"<div class='vr-muted'>Chỉ mục <b>{html.escape(backend.index)}</b> sẵn sàng.</div>"


__all__ = [
    "friendly_error",
    "error_kind",
    "note_vi",
    "banner_html",
    "build_failure_text",
    "DENIED",
]
