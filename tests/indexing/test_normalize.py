"""Normalization cases: tone-mark placement, NFC/NFD, đ, case, text without diacritics."""

import unicodedata

import pytest

from indexing.normalize import fold, folded_syllables, has_diacritics, normalize, syllables, words


@pytest.mark.parametrize(
    ("old", "new"),
    [("hoà", "hòa"), ("thuý", "thúy"), ("Hoà Bình", "Hòa Bình"), ("khoẻ", "khỏe"), ("HOÀ", "HÒA")],
)
def test_old_and_new_tone_placement_match(old: str, new: str) -> None:
    assert normalize(old) == normalize(new) == new


def test_nfd_input_equals_nfc_input() -> None:
    text = "Thủ đô của Việt Nam là Hà Nội"
    assert normalize(unicodedata.normalize("NFD", text)) == text
    assert syllables(unicodedata.normalize("NFD", text)) == syllables(text)


def test_fold_maps_d_bar_explicitly() -> None:
    assert fold("Đà Nẵng đẹp") == "Da Nang dep"
    # NFD + dropping combining marks alone would leave đ: make sure we don't rely on it.
    assert "đ" not in fold(unicodedata.normalize("NFD", "đường"))


def test_case_and_punctuation_kept_by_normalize() -> None:
    assert normalize("Hoà Bình,  3.5% \"x\"\u200b\x07") == 'Hòa Bình, 3.5% "x"'


def test_syllables_lowercase_after_normalization() -> None:
    assert syllables("HOÀ BÌNH!") == ["hòa", "bình"]
    assert folded_syllables("thủ đô của Việt Nam") == ["thu", "do", "cua", "viet", "nam"]


def test_query_without_diacritics_folds_to_the_same_tokens() -> None:
    assert folded_syllables("thu do cua viet nam") == folded_syllables("Thủ đô của Việt Nam")


def test_has_diacritics() -> None:
    assert has_diacritics("đi") and has_diacritics("hòa") and not has_diacritics("hoa")


def test_words_segment_before_lowercasing() -> None:
    assert words("Thủ đô của Việt Nam là Hà Nội.") == ["thủ_đô", "của", "việt_nam", "là", "hà_nội"]


def test_empty_and_whitespace() -> None:
    assert normalize("   \n\t ") == "" and syllables("") == [] and fold("") == ""
