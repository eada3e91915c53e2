"""The diacritic restorer: an index-time artifact (``diacritics.npz`` in each generation) the search side loads.

:class:`DiacriticRestorer` is a syllable language model built from the indexed corpus itself
(:meth:`DiacriticRestorer.from_texts`): every folded syllable maps to the marked forms seen in the corpus, and a
Kneser-Ney-smoothed trigram (optionally bigram) model over marked syllables picks the most likely sequences with a
beam search (:meth:`DiacriticRestorer.restore` the best, :meth:`DiacriticRestorer.restore_k` the k best).
Syllables the user typed *with* marks (``đ`` included) are kept exactly as typed and only serve as context; letter case is preserved; non-syllable text (digits, punctuation, spacing) is copied unchanged. Saved
as a compressed ``.npz`` (no pickle) next to the index generation (:data:`RESTORER_FILE`); what it learns from
per passage is :func:`restorer_text`. Query-side detection (:func:`search.diacritics.diacritic_level`) lives in
``search/diacritics.py``.

>>> r = DiacriticRestorer.from_texts(["Thủ đô của Việt Nam là Hà Nội.", "Hà Nội có nhiều hồ."])
>>> r.restore("Thu do cua Viet Nam la Ha Noi")
'Thủ đô của Việt Nam là Hà Nội'
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from indexing.jsonl import read_jsonl
from indexing.ngram_counts import NgramCounts, history_stats
from indexing.normalize import fold, has_diacritics, normalize

__all__ = ["DiacriticRestorer", "RESTORER_FILE", "QUESTION_SEED", "QUESTION_SEED_WEIGHT", "restorer_text"]

RESTORER_FILE = "diacritics.npz"
_TOKEN_RE = re.compile(r"\w+")
_BOS, _EOS = "<s>", "</s>"
_FORMAT_VERSION = 1
#: Absolute discount of the Kneser-Ney smoothing (the usual 0.75; 0.5 and 0.9 measured no better on
#: assets/diacritics/question_words.txt, bench/restore_accuracy.py).
KN_DISCOUNT = 0.75

#: Hand-written generic question patterns, counted :data:`QUESTION_SEED_WEIGHT` times on top of the corpus.
#: Indexed passages are declarative prose, so question words ("ai", "đâu", "bao nhiêu", "gì") are rare there
#: and lose to frequent look-alikes ("Ai Cập" makes "ai" + anything unlikely; "đầu" outnumbers "đâu").
#: Queries are mostly questions; this small prior puts the question forms back in their usual places.
QUESTION_SEED = """
Ai là người sáng lập? Ai đã phát minh ra nó? Ai là tác giả? Do ai tổ chức? Ai chịu trách nhiệm? Ai quản lý?
Của ai? Bởi ai? Cho ai? Với ai? Ai được phép? Ai có quyền? Ai sẽ xem xét?
Cái gì? Đó là gì? Nó là gì? Là gì vậy? Tên là gì? Làm gì? Dùng để làm gì? Có ý nghĩa gì? Vì lý do gì?
Ở đâu? Nằm ở đâu? Diễn ra ở đâu? Đến từ đâu? Bắt nguồn từ đâu? Đi đâu? Nhờ đâu? Từ đâu?
Khi nào? Vào năm nào? Năm nào? Lúc nào? Bao giờ? Từ khi nào? Vào thời gian nào? Khi nào thì?
Bao nhiêu? Có bao nhiêu người? Giá bao nhiêu? Bao nhiêu năm? Là bao nhiêu? Mất bao lâu? Bao lâu? Bao xa?
Có mấy? Mấy loại? Mấy năm? Mấy người? Thứ mấy?
Tại sao? Vì sao? Sao vậy? Như thế nào? Thế nào? Ra sao? Bằng cách nào? Làm thế nào để? Làm sao để?
Có phải không? Có không? Được không? Đúng không? Phải không? Hay không? Có được không? Có cần không?
Cái nào? Loại nào? Người nào? Nước nào? Thành phố nào? Trường nào? Điều kiện nào? Trường hợp nào?
Sinh viên cần làm gì? Thủ tục như thế nào? Cần những giấy tờ gì? Ở đâu có? Quy định ra sao? Thì sao?
"""
QUESTION_SEED_WEIGHT = 3


def _segments(text: str) -> Iterator[list[str]]:
    """Lower-cased, normalized text → runs of alphabetic syllables; punctuation and digits end a run."""
    run: list[str] = []
    last_end = 0
    for m in _TOKEN_RE.finditer(text):
        token = m.group(0)
        if not token.isalpha() or text[last_end:m.start()].strip():
            if run:
                yield run
            run = []
        if token.isalpha():
            run.append(token)
        last_end = m.end()
    if run:
        yield run


def _apply_case(typed: str, restored: str) -> str:
    """Copy the upper-case letters of ``typed`` onto ``restored`` (same length when both are NFC syllables)."""
    if typed.islower() or len(typed) != len(restored):
        return restored.upper() if typed.isupper() else restored
    return "".join(r.upper() if t.isupper() else r for t, r in zip(typed, restored, strict=True))


class DiacriticRestorer:
    """Syllable n-gram model over marked forms; restores the marks of syllables typed without them.

    Build with :meth:`from_texts` (or :meth:`load`); use :meth:`restore`. Thread-safe after construction
    (read-only).
    """

    def __init__(
        self,
        vocab: list[str],
        unigram: np.ndarray,
        bigram: dict[int, int] | NgramCounts,
        trigram: dict[int, int] | NgramCounts | None = None,
        max_candidates: int = 12,
        beam: int = 32,
    ) -> None:
        """Low-level constructor; ``vocab[0]`` is ``<s>``, ``vocab[1]`` is ``</s>``; keys are ``a*V+b`` and
        ``(a*V+b)*V+c`` over vocab ids (dicts or :class:`~indexing.ngram_counts.NgramCounts`: sorted arrays,
        what :meth:`load` gives — 16 bytes per n-gram, where a dict took ~100)."""
        if vocab[:2] != [_BOS, _EOS]:
            raise ValueError("vocab must start with '<s>', '</s>'")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.unigram = np.asarray(unigram, dtype=np.int64)
        self.bigram = NgramCounts.from_mapping(bigram)
        self.trigram = NgramCounts.from_mapping(trigram)
        self.order = 3 if self.trigram else 2
        self.max_candidates = max_candidates
        self.beam = beam
        V = len(vocab)
        self._V = V
        self._total = int(self.unigram[2:].sum())
        # statistics of each history: total count and number of distinct continuations (the KN back-off mass);
        # a bigram's history is one vocab id (dense arrays), a trigram's a pair (sorted sparse arrays)
        hist, totals, types = history_stats(self.bigram, V)
        self._hist_count = np.zeros(V, dtype=np.int64)
        self._hist_types = np.zeros(V, dtype=np.int64)
        self._hist_count[hist], self._hist_types[hist] = totals, types
        # Kneser-Ney continuation counts: in how many distinct contexts each form appears
        self._cont = np.bincount(self.bigram.keys_ % V, minlength=V).astype(np.int64)
        self._cont_total = int(self._cont.sum())
        hist2, totals2, types2 = history_stats(self.trigram, V)
        self._hist2, self._hist2_types = NgramCounts(hist2, totals2), NgramCounts(hist2, types2)
        by_folded: dict[str, list[int]] = {}
        for i, word in enumerate(vocab[2:], start=2):
            by_folded.setdefault(fold(word), []).append(i)
        self._candidates = {
            f: sorted(ids, key=lambda i: -self.unigram[i])[:max_candidates] for f, ids in by_folded.items()
        }

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        order: int = 3,
        max_candidates: int = 12,
        min_count: int = 1,
        question_seed: bool = True,
    ) -> DiacriticRestorer:
        """Count syllable n-grams over ``texts`` (passages; normalized here) → a restorer.

        Args:
            texts: any iterable of strings (consumed once).
            order: 3 (trigram, default) or 2 (bigram: ~3x smaller and faster, ~1 point less accurate).
            max_candidates: marked forms kept per folded syllable (most frequent first).
            min_count: n-grams (orders >= 2) seen fewer times are dropped (shrinks big corpora).
            question_seed: also count :data:`QUESTION_SEED` (x :data:`QUESTION_SEED_WEIGHT`).
        """
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order}")
        index: dict[str, int] = {_BOS: 0, _EOS: 1}
        uni: Counter[int] = Counter()
        bi: Counter[tuple[int, int]] = Counter()
        tri: Counter[tuple[int, int, int]] = Counter()
        if question_seed:
            texts = itertools.chain([QUESTION_SEED] * QUESTION_SEED_WEIGHT, texts)
        for text in texts:
            for run in _segments(normalize(text).lower()):
                ids = [0] + [index.setdefault(s, len(index)) for s in run] + [1]
                uni.update(ids[1:-1])
                bi.update(zip(ids, ids[1:], strict=False))
                if order == 3:
                    tri.update(zip(ids, ids[1:], ids[2:], strict=False))
        vocab = list(index)
        V = len(vocab)
        unigram = np.zeros(V, dtype=np.int64)
        for i, c in uni.items():
            unigram[i] = c
        bigram = {a * V + b: c for (a, b), c in bi.items() if c >= min_count}
        trigram = {(a * V + b) * V + c: n for (a, b, c), n in tri.items() if n >= min_count}
        return cls(vocab, unigram, bigram, trigram, max_candidates=max_candidates)

    # ------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the model as a compressed ``.npz`` (no pickled objects); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        bi_keys, bi_vals = self.bigram.keys_, self.bigram.counts  # sorted: loading needs no sort
        tri_keys, tri_vals = self.trigram.keys_, self.trigram.counts
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp.npz")  # unique per writer
        np.savez_compressed(
            tmp,
            version=np.array([_FORMAT_VERSION, self.max_candidates]),
            vocab=np.array(self.vocab, dtype=str),
            unigram=self.unigram,
            bigram_keys=bi_keys,
            bigram_counts=bi_vals,
            trigram_keys=tri_keys,
            trigram_counts=tri_vals,
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DiacriticRestorer:
        """Read a model written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            version, max_candidates = (int(x) for x in data["version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"{path}: restorer format {version}, expected {_FORMAT_VERSION}")
            vocab = data["vocab"].tolist()
            bigram = NgramCounts(data["bigram_keys"], data["bigram_counts"])
            trigram = NgramCounts(data["trigram_keys"], data["trigram_counts"])
            return cls(vocab, data["unigram"], bigram, trigram, max_candidates=max_candidates)

    @classmethod
    def for_generation(cls, generation_dir: str | Path, texts: Iterable[str] | None = None) -> DiacriticRestorer:
        """The restorer saved in ``generation_dir`` (:data:`RESTORER_FILE`); built from ``texts`` (or the
        generation's ``passages.jsonl``) and saved there when missing."""
        generation_dir = Path(generation_dir)
        path = generation_dir / RESTORER_FILE
        if path.exists():
            return cls.load(path)
        if texts is None:
            texts = _passage_texts(generation_dir / "passages.jsonl")
        restorer = cls.from_texts(texts)
        with contextlib.suppress(OSError):  # read-only generation: keep the in-memory model
            restorer.save(path)
        return restorer

    # -------------------------------------------------------------------------------------- scoring
    def _logp(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """log P(w | u, v) for arrays of vocab ids (-1: unknown; ``u = -1``: bigram only): interpolated Kneser-Ney
        — a trigram over the bigram P(w | v), itself over the continuation probability of ``w`` (add-one over the
        vocabulary for unseen forms), each with the absolute discount :data:`KN_DISCOUNT`.

        Absolute discounting keeps a history seen once or twice from being trusted as a certainty: Witten-Bell
        gave one "… bóng đến." (1 of 1 continuation) more weight than three "bóng đèn" (1 of 3)."""
        V, D = self._V, KN_DISCOUNT
        u, v, w = (np.asarray(x, dtype=np.int64) for x in (u, v, w))
        vk, wk = np.maximum(v, 0), np.maximum(w, 0)
        p_c = (np.where(w >= 0, self._cont[wk], 0) + 1) / (self._cont_total + V)
        n = np.where(v >= 0, self._hist_count[vk], 0)
        c = np.where(w >= 0, self.bigram.lookup(vk * V + wk), 0)
        p_bi = np.where(n == 0, p_c, (np.maximum(c - D, 0.0) + D * self._hist_types[vk] * p_c) / np.maximum(n, 1))
        if not self.trigram:
            return np.log(p_bi)
        h = np.maximum(u, 0) * V + vk
        n2 = np.where((u >= 0) & (v >= 0) & (w >= 0), self._hist2.lookup(h), 0)
        c2 = self.trigram.lookup(h * V + wk)
        p = np.where(n2 == 0, p_bi,
                     (np.maximum(c2 - D, 0.0) + D * self._hist2_types.lookup(h) * p_bi) / np.maximum(n2, 1))
        return np.log(p)

    def candidates(self, syllable: str) -> list[str]:
        """Marked forms (lower-case, most frequent first) the model may choose for an unmarked ``syllable``."""
        return [self.vocab[i] for i in self._candidates.get(syllable.lower(), [])]

    def _options(self, token: str) -> list[tuple[str, int]]:
        low = token.lower()
        if not low.isascii() or has_diacritics(low):
            return [(low, self.index.get(low, -1))]  # typed with marks: kept as typed
        ids = self._candidates.get(low)
        if not ids:
            return [(low, self.index.get(low, -1))]
        return [(self.vocab[i], i) for i in ids]

    def _kbest(self, tokens: list[str], k: int = 1) -> list[tuple[float, list[str]]]:
        """Beam search over one run of syllables → up to ``k`` ``(log-probability, lower-case forms)``, best
        first.

        A state is the last two chosen words (what the next probability depends on); each state keeps its ``k``
        best paths, and the :attr:`beam` best states go on (k = 1 is Viterbi with beam pruning). The end of the
        run scores ``</s>``.
        """
        options = [self._options(t) for t in tokens]
        # state (u, v) -> [(score, path of candidate indices)], best first
        states: dict[tuple[int, int], list[tuple[float, tuple[int, ...]]]] = {(-1, 0): [(0.0, ())]}
        for cands in options:
            new: dict[tuple[int, int], list[tuple[float, tuple[int, ...]]]] = {}
            items = list(states.items())
            ws = [w for _, w in cands]
            lps = iter(self._logp([u for (u, _), _ in items for _ in ws], [v for (_, v), _ in items for _ in ws],
                                  ws * len(items)).tolist())  # every (state, candidate) at once
            for (_u, v), paths in items:
                for ci, w in enumerate(ws):
                    lp = next(lps)
                    bucket = new.setdefault((v, w if w >= 0 else -2 - ci), [])
                    bucket.extend((s + lp, path + (ci,)) for s, path in paths)
            for paths in new.values():
                paths.sort(key=lambda sp: -sp[0])
                del paths[k:]
            if len(new) > self.beam:
                keep = sorted(new, key=lambda key: -new[key][0][0])[: self.beam]
                new = {key: new[key] for key in keep}
            states = new
        items = list(states.items())
        ends = self._logp([u for (u, _), _ in items], [v for (_, v), _ in items], [1] * len(items)).tolist()
        finals = [(s + end, path) for ((_, paths), end) in zip(items, ends, strict=True) for s, path in paths]
        finals.sort(key=lambda sp: -sp[0])
        return [(s, [options[pos][ci][0] for pos, ci in enumerate(path)]) for s, path in finals[:k]]

    @staticmethod
    def _runs(query: str) -> list[list[re.Match[str]]]:
        """Runs of alphabetic syllables separated only by spaces (digits and punctuation end a run)."""
        runs: list[list[re.Match[str]]] = []
        last_end = 0
        for m in _TOKEN_RE.finditer(query):
            if not m.group(0).isalpha():
                last_end = m.end()
                runs.append([])
                continue
            if not runs or query[last_end:m.start()].strip():
                runs.append([])
            runs[-1].append(m)
            last_end = m.end()
        return [run for run in runs if run]

    def restore(self, query: str) -> str:
        """Query → the same query with marks added to syllables typed without them.

        Marked syllables, case, digits, punctuation and spacing stay as typed; unknown syllables stay as typed.
        """
        return self.restore_k(query, 1)[0]

    def restore_k(self, query: str, k: int = 3) -> list[str]:
        """Query → up to ``k`` distinct restorations, most likely first (``[0]`` is :meth:`restore`).

        Alternatives come from the k-best paths of every run of syllables, combined by total log-probability
        (so a query with one ambiguous word gets that word's alternatives). Fewer than ``k`` come back when the
        model knows fewer readings; case, marked syllables and non-syllable text stay as typed.

        >>> r = DiacriticRestorer.from_texts(["Bóng đèn sáng.", "Bóng đèn tắt.", "Ngôi đền cổ."], question_seed=False)
        >>> r.restore_k("bong den", 3)
        ['bóng đèn', 'bóng đền']
        """
        query = normalize(query)
        runs = self._runs(query)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        per_run = [self._kbest([m.group(0) for m in run], k) for run in runs]
        # combine the runs' k-best lists: best total scores first (runs are few, k small)
        combos: list[tuple[float, list[list[str]]]] = [(0.0, [])]
        for kb in per_run:
            combos = sorted(((s + s2, forms + [f]) for s, forms in combos for s2, f in kb), key=lambda x: -x[0])[:k]
        out: list[str] = []
        for _, chosen_runs in combos:
            pieces, cursor = [], 0
            for run, chosen in zip(runs, chosen_runs, strict=True):
                for m, form in zip(run, chosen, strict=True):
                    pieces.append(query[cursor:m.start()])
                    pieces.append(_apply_case(m.group(0), form))
                    cursor = m.end()
            pieces.append(query[cursor:])
            text = "".join(pieces)
            if text not in out:
                out.append(text)
        return out or [query]

    def update(self, added: Iterable[str] = (), removed: Iterable[str] = ()) -> DiacriticRestorer:
        """A new restorer with the counts of ``added`` texts added and those of ``removed`` texts (counted
        before, e.g. deleted passages) taken away: the model :meth:`from_texts` builds from the changed corpus
        (its defaults: ``min_count`` 1 keeps every count), without reading the rest of the corpus again. Forms
        no longer seen are dropped. Removing text that was never counted raises ValueError.
        :func:`indexing.restorer_update.update_saved` does the same from file to file without building either model in memory.
        """
        from indexing.restorer_update import updated_tables

        t = updated_tables({"vocab": self.vocab, "unigram": self.unigram,
                            "bigram": (self.bigram.keys_, self.bigram.counts),
                            "trigram": (self.trigram.keys_, self.trigram.counts)}, added, removed, self.order)
        return type(self)(t["vocab"], t["unigram"], NgramCounts(*t["bigram"]), NgramCounts(*t["trigram"]),
                          max_candidates=self.max_candidates, beam=self.beam)

    def __len__(self) -> int:
        """Number of syllable forms known (without ``<s>``/``</s>``)."""
        return self._V - 2

    def __repr__(self) -> str:
        return (f"DiacriticRestorer(forms={len(self)}, bigrams={len(self.bigram)}, "
                f"trigrams={len(self.trigram)}, order={self.order})")


def restorer_text(title: str | None, text: str | None) -> str:
    """What the restorer learns from for one passage: "title. text" (titles carry useful names)."""
    title, text = title or "", text or ""
    return f"{title}. {text}" if title else text


def _passage_texts(path: Path) -> Iterator[str]:
    """``passages.jsonl`` → :func:`restorer_text` strings."""
    for row in read_jsonl(path):
        yield restorer_text(row.get("title"), row.get("text"))
