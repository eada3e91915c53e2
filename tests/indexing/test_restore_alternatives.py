"""k-best diacritic restorations (``DiacriticRestorer.restore_k``) and accuracy on common question words.

The restorer is built from the demo corpus the way an index build does; the cases are
``assets/diacritics/question_words.txt`` (correctly marked queries, folded here), also read by
``bench/restore_accuracy.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from indexing.normalize import fold
from indexing.restorer import DiacriticRestorer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from restore_accuracy import accuracy, corpus_restorer, load_cases  # noqa: E402


@pytest.fixture(scope="module")
def demo_restorer() -> DiacriticRestorer:
    return corpus_restorer()


def test_restore_k_is_distinct_and_starts_with_restore():
    r = DiacriticRestorer.from_texts(["Bóng đèn sáng.", "Bóng đèn tắt.", "Ngôi đền cổ.", "Đến nơi rồi."],
                                     question_seed=False)
    alts = r.restore_k("Bong den 2 cai", 3)
    assert alts[0] == r.restore("Bong den 2 cai") == "Bóng đèn 2 cai"
    assert len(alts) == len(set(alts)) == 3
    assert {a.split()[1] for a in alts} == {"đèn", "đền", "đến"}
    assert all(a.endswith(" 2 cai") and a.startswith("Bóng ") for a in alts)  # case, digits, unknowns kept
    assert r.restore_k("đèn", 3) == ["đèn"]  # typed with marks: nothing to choose
    with pytest.raises(ValueError):
        r.restore_k("bong", 0)


def test_one_count_history_does_not_beat_three(tmp_path):
    """Witten-Bell trusted a trigram history seen once ("bóng đến." at a sentence end) over "bóng đèn" seen
    three times; Kneser-Ney's absolute discount does not."""
    texts = ["Anh sút bóng đến.", "Bóng đèn sáng lắm.", "Bóng đèn tắt rồi.", "Mua bóng đèn mới.", "Ra sân."]
    r = DiacriticRestorer.from_texts(texts, question_seed=False)
    r2 = DiacriticRestorer.load(r.save(tmp_path / "r.npz"))
    for query in ("ra bong den", "bong den"):  # the Witten-Bell model: "… bóng đến" both times
        assert r.restore(query) == r2.restore(query) == query.replace("bong den", "bóng đèn")


@pytest.mark.slow
def test_bong_den_offered_on_the_demo_corpus(demo_restorer):
    alts = demo_restorer.restore_k("ai la nguoi phat minh ra bong den", 3)
    assert alts[0] == "ai là người phát minh ra bóng đèn"  # the old model said "bóng đến"


@pytest.mark.slow
def test_question_word_accuracy(demo_restorer):
    cases = load_cases()
    assert len(cases) >= 50 and all(fold(c) != c for c in cases)
    res = accuracy(demo_restorer, cases, k=3)
    # measured: syllables 0.958, queries 0.76, right query among the top 3 0.92 (the old model: 0.955 / 0.74)
    assert res["syllable_acc"] >= 0.955
    assert res["query_acc"] >= 0.76
    assert res["topk_acc"] >= 0.9
