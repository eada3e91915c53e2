"""Diacritic level detection and corpus-built diacritic restoration."""

from __future__ import annotations

import doctest
import json
import time

import pytest

from indexing import restorer as restorer_module
from indexing.normalize import fold
from indexing.restorer import RESTORER_FILE, DiacriticRestorer
from search import diacritics
from search.diacritics import diacritic_level, is_folded_syllable

CORPUS = [
    "Hộ chiếu là giấy tờ tùy thân do cơ quan nhà nước cấp cho công dân.",
    "Công dân có thể làm thủ tục cấp lại hộ chiếu tại cơ quan quản lý xuất nhập cảnh.",
    "Thủ đô của Việt Nam là Hà Nội. Hà Nội có nhiều hồ đẹp như hồ Gươm và hồ Tây.",
    "Sinh viên phải đóng học phí trước khi đăng ký học phần của học kỳ mới.",
    "Đại học Bách khoa Hà Nội được thành lập năm 1956.",
    "Người dân đi chợ mua cá, mua thịt và rau xanh.",
]


@pytest.fixture(scope="module")
def restorer() -> DiacriticRestorer:
    return DiacriticRestorer.from_texts(CORPUS * 3)


@pytest.mark.parametrize(
    ("query", "level"),
    [
        ("lam lai ho chieu o dau", "none"),
        ("LAM LAI HO CHIEU", "none"),
        ("làm lại hộ chiếu ở đâu", "full"),
        ("Ai là tác giả?", "full"),  # "ai" is unmarked Vietnamese, 3 of 4 marked
        ("Ai làm ra dota?", "partial"),  # 1 of 3 ("dota" is not a Vietnamese syllable)
        ("làm lai ho chieu o dau", "partial"),
        ("đi cho mua ca", "partial"),  # đ is a mark
        ("Josh Norman 2015", "full"),  # no Vietnamese syllables: nothing to restore
        ("", "full"),
        ("Panthers thua bao nhieu diem", "none"),
    ],
)
def test_diacritic_level(query: str, level: str):
    assert diacritic_level(query) == level


def test_is_folded_syllable():
    for ok in ["nguoi", "nghieng", "khuya", "gi", "a", "truong", "quyen"]:
        assert is_folded_syllable(ok), ok
    for bad in ["panthers", "josh", "kuechly", "xyz", "fb", "street"]:
        assert not is_folded_syllable(bad), bad


def test_restore_basic(restorer: DiacriticRestorer):
    assert restorer.restore("cap lai ho chieu") == "cấp lại hộ chiếu"
    assert restorer.restore("thu do cua Viet Nam la Ha Noi") == "thủ đô của Việt Nam là Hà Nội"
    assert restorer.restore("sinh vien dong hoc phi") == "sinh viên đóng học phí"


def test_restore_keeps_marked_syllables_as_typed(restorer: DiacriticRestorer):
    # the corpus prefers "hộ chiếu", but the user typed "hồ" with marks: never overwritten
    assert restorer.restore("cap lai hồ chieu") == "cấp lại hồ chiếu"
    # a typed đ stays, even without the rest of its marks ("Đai")
    assert restorer.restore("Đai hoc Bach khoa") == "Đai học Bách khoa"
    # fully marked queries come back unchanged
    query = "Thủ đô của Việt Nam là Hà Nội"
    assert restorer.restore(query) == query


def test_restore_keeps_case_digits_punctuation_and_unknown_words(restorer: DiacriticRestorer):
    assert restorer.restore("DAI HOC Bach Khoa thanh lap nam 1956?") == "ĐẠI HỌC Bách Khoa thành lập năm 1956?"
    assert restorer.restore("Ha NOI, ho Guom!") == "Hà NỘI, hồ Gươm!"
    assert restorer.restore("iPhone xyz ho chieu") == "iPhone xyz hộ chiếu"
    assert restorer.restore("") == ""
    assert restorer.restore("  2024 ...  ") == "2024 ..."  # normalized: outer whitespace collapsed


def test_restore_output_folds_back_to_input(restorer: DiacriticRestorer):
    typed = "nguoi dan di cho mua ca va rau xanh o Ha Noi"
    restored = restorer.restore(typed)
    assert fold(restored) == typed
    assert restored == "người dân đi chợ mua cá và rau xanh ở Hà Nội"


def test_bigram_model_also_restores():
    bigram = DiacriticRestorer.from_texts(CORPUS * 3, order=2)
    assert bigram.order == 2 and not bigram.trigram
    assert bigram.restore("cap lai ho chieu") == "cấp lại hộ chiếu"
    with pytest.raises(ValueError, match="order"):
        DiacriticRestorer.from_texts(CORPUS, order=4)


def test_candidates(restorer: DiacriticRestorer):
    assert set(restorer.candidates("ho")) >= {"hộ", "hồ"}
    assert restorer.candidates("HO")[0] in {"hộ", "hồ"}
    assert restorer.candidates("zzz") == []


def test_save_load_roundtrip(tmp_path, restorer: DiacriticRestorer):
    path = restorer.save(tmp_path / "gen" / RESTORER_FILE)
    loaded = DiacriticRestorer.load(path)  # np.load(allow_pickle=False) inside: no pickled objects
    assert len(loaded) == len(restorer) and loaded.order == restorer.order
    for q in ["cap lai ho chieu", "thu do cua Viet Nam", "DAI HOC bach khoa"]:
        assert loaded.restore(q) == restorer.restore(q)
    assert not list(tmp_path.glob("gen/*.tmp*"))


def test_for_generation_builds_from_passages_and_caches(tmp_path):
    gen = tmp_path / "gen-1"
    gen.mkdir()
    with open(gen / "passages.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(CORPUS):
            f.write(json.dumps({"id": str(i), "doc_id": str(i), "title": "", "text": text, "source": ""}) + "\n")
    first = DiacriticRestorer.for_generation(gen)
    assert (gen / RESTORER_FILE).exists()
    (gen / "passages.jsonl").unlink()  # the second call must read the saved model
    second = DiacriticRestorer.for_generation(gen)
    assert second.restore("ho chieu") == first.restore("ho chieu") == "hộ chiếu"


def test_restore_is_fast_on_long_queries(restorer: DiacriticRestorer):
    query = " ".join(["cap lai ho chieu o ha noi cho sinh vien"] * 7)  # 63 syllables
    restorer.restore(query)
    start = time.perf_counter()
    for _ in range(5):
        restorer.restore(query)
    per_query_ms = (time.perf_counter() - start) / 5 * 1000
    assert per_query_ms < 20, per_query_ms


def test_doctests():
    for module in (diacritics, restorer_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
