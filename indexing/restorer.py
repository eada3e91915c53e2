"""The diacritic restorer: an index-time artifact (``diacritics.npz`` in each generation) the search side loads.

:class:`DiacriticRestorer` is a syllable language model built from the indexed corpus itself
(:meth:`DiacriticRestorer.from_texts`): every folded syllable maps to the marked forms seen in the corpus, and a
Witten-Bell-smoothed bigram (optionally trigram) model over marked syllables picks the most likely sequence with
Viterbi decoding. Syllables the user typed *with* marks (``đ`` included) are kept exactly as typed and only serve
as context; letter case is preserved; non-syllable text (digits, punctuation, spacing) is copied unchanged. Saved
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
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from indexing.jsonl import read_jsonl
from indexing.normalize import fold, has_diacritics, normalize

__all__ = ["DiacriticRestorer", "RESTORER_FILE", "QUESTION_SEED", "QUESTION_SEED_WEIGHT", "restorer_text"]

RESTORER_FILE = "diacritics.npz"
_TOKEN_RE = re.compile(r"\w+")
_BOS, _EOS = "<s>", "</s>"
_FORMAT_VERSION = 1

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
        bigram: dict[int, int],
        trigram: dict[int, int] | None = None,
        max_candidates: int = 12,
        beam: int = 32,
    ) -> None:
        """Low-level constructor; ``vocab[0]`` is ``<s>``, ``vocab[1]`` is ``</s>``; keys are ``a*V+b`` and
        ``(a*V+b)*V+c`` over vocab ids."""
        if vocab[:2] != [_BOS, _EOS]:
            raise ValueError("vocab must start with '<s>', '</s>'")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.unigram = np.asarray(unigram, dtype=np.int64)
        self.bigram = bigram
        self.trigram = trigram or {}
        self.order = 3 if self.trigram else 2
        self.max_candidates = max_candidates
        self.beam = beam
        V = len(vocab)
        self._V = V
        self._total = int(self.unigram[2:].sum())
        # Witten-Bell statistics of each history: total count and number of distinct continuations.
        self._hist_count: dict[int, int] = Counter()
        self._hist_types: dict[int, int] = Counter()
        for key, count in bigram.items():
            self._hist_count[key // V] += count
            self._hist_types[key // V] += 1
        self._hist2_count: dict[int, int] = Counter()
        self._hist2_types: dict[int, int] = Counter()
        for key, count in self.trigram.items():
            self._hist2_count[key // V] += count
            self._hist2_types[key // V] += 1
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
        bi_keys = np.fromiter(self.bigram.keys(), dtype=np.int64, count=len(self.bigram))
        bi_vals = np.fromiter(self.bigram.values(), dtype=np.int64, count=len(self.bigram))
        tri_keys = np.fromiter(self.trigram.keys(), dtype=np.int64, count=len(self.trigram))
        tri_vals = np.fromiter(self.trigram.values(), dtype=np.int64, count=len(self.trigram))
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
            bigram = dict(zip(data["bigram_keys"].tolist(), data["bigram_counts"].tolist(), strict=True))
            trigram = dict(zip(data["trigram_keys"].tolist(), data["trigram_counts"].tolist(), strict=True))
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
    def _p_uni(self, w: int) -> float:
        count = int(self.unigram[w]) if w >= 0 else 0
        return (count + 1) / (self._total + self._V)

    def _p_bi(self, v: int, w: int) -> float:
        p_uni = self._p_uni(w)
        if v < 0:
            return p_uni
        n = self._hist_count.get(v, 0)
        if n == 0:
            return p_uni
        t = self._hist_types[v]
        c = self.bigram.get(v * self._V + w, 0) if w >= 0 else 0
        return (c + t * p_uni) / (n + t)

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

    def _decode(self, tokens: list[str]) -> list[str]:
        """Viterbi over one run of syllables → the chosen lower-case forms."""
        options = [self._options(t) for t in tokens]
        log = math.log
        if self.order == 2:
            # state: candidate index at the current position
            scores = [log(self._p_bi(0, w)) for _, w in options[0]]
            back: list[list[int]] = []
            for pos in range(1, len(options)):
                prev = options[pos - 1]
                new_scores, pointers = [], []
                for _, w in options[pos]:
                    best, arg = -math.inf, 0
                    for j, (_, v) in enumerate(prev):
                        s = scores[j] + log(self._p_bi(v, w))
                        if s > best:
                            best, arg = s, j
                    new_scores.append(best)
                    pointers.append(arg)
                scores = new_scores
                back.append(pointers)
            final = [s + log(self._p_bi(w, 1)) for s, (_, w) in zip(scores, options[-1], strict=True)]
            j = max(range(len(final)), key=final.__getitem__)
            path = [j]
            for pointers in reversed(back):
                j = pointers[j]
                path.append(j)
            path.reverse()
            return [options[pos][k][0] for pos, k in enumerate(path)]
        return self._decode_trigram(options)

    def _decode_trigram(self, options: list[list[tuple[str, int]]]) -> list[str]:
        """Trigram Viterbi with beam pruning.

        A state is (candidate index at pos-1, candidate index at pos); -1 stands for ``<s>``. States that end in
        the same candidate and whose two-word history never occurs in the corpus all continue with the same
        (bigram back-off) scores, so only the best of them is expanded; seen histories add their trigram counts.
        """
        log, V, inf = math.log, self._V, math.inf
        tri, h2_count, h2_types = self.trigram, self._hist2_count, self._hist2_types

        def expand(prev_states: dict[tuple[int, int], float], pos: int, cands: list[tuple[str, int]]):
            """→ (scores of new states (j, k), back-pointers (j, k) -> i)."""
            groups: dict[int, list[tuple[int, float]]] = {}
            for (i, j), score in prev_states.items():
                groups.setdefault(j, []).append((i, score))
            out: dict[tuple[int, int], float] = {}
            ptr: dict[tuple[int, int], int] = {}

            def offer(key: tuple[int, int], score: float, i: int) -> None:
                if score > out.get(key, -inf):
                    out[key] = score
                    ptr[key] = i

            for j, members in groups.items():
                v = 0 if j < 0 else options[pos - 1][j][1]
                p_bi = [self._p_bi(v, w) for _, w in cands]
                log_bi = [log(p) for p in p_bi]
                unseen_i, unseen_score = None, -inf
                for i, score in members:
                    u = 0 if i < 0 else options[pos - 2][i][1]
                    h = u * V + v if u >= 0 and v >= 0 and j >= 0 else -1
                    n = h2_count.get(h, 0) if h >= 0 else 0
                    if n == 0:
                        if score > unseen_score:
                            unseen_i, unseen_score = i, score
                        continue
                    t = h2_types[h]
                    base, back_off = h * V, log(t / (n + t))
                    for k, (_, w) in enumerate(cands):
                        c = tri.get(base + w, 0) if w >= 0 else 0
                        s = score + (log((c + t * p_bi[k]) / (n + t)) if c else log_bi[k] + back_off)
                        offer((j, k), s, i)
                if unseen_i is not None:
                    for k in range(len(cands)):
                        offer((j, k), unseen_score + log_bi[k], unseen_i)
            return out, ptr

        # position 0: the only history is <s> (state (-1, -1) stands for it)
        states, _ = expand({(-1, -1): 0.0}, 0, options[0])
        states = {(-1, k): s for (_, k), s in states.items()}
        back: list[dict[tuple[int, int], int]] = [{}]
        for pos in range(1, len(options)):
            states, pointers = expand(states, pos, options[pos])
            if len(states) > self.beam:
                keep = sorted(states, key=states.__getitem__, reverse=True)[: self.beam]
                states = {key: states[key] for key in keep}
            back.append(pointers)
        last = len(options) - 1
        final, final_ptr = expand(states, last + 1, [(_EOS, 1)]) if last >= 0 else ({}, {})
        (j, _), _ = max(final.items(), key=lambda kv: kv[1])
        i = final_ptr[(j, 0)]
        path = [j]
        for pos in range(last, 0, -1):
            path.append(i)
            i, j = back[pos][(i, j)], i
        path.reverse()
        return [options[pos][k][0] for pos, k in enumerate(path)]

    def restore(self, query: str) -> str:
        """Query → the same query with marks added to syllables typed without them.

        Marked syllables, case, digits, punctuation and spacing stay as typed; unknown syllables stay as typed.
        """
        query = normalize(query)
        matches = list(_TOKEN_RE.finditer(query))
        runs: list[list[re.Match[str]]] = []
        last_end = 0
        for m in matches:
            if not m.group(0).isalpha():
                last_end = m.end()
                runs.append([])
                continue
            if not runs or query[last_end:m.start()].strip():
                runs.append([])
            runs[-1].append(m)
            last_end = m.end()
        pieces, cursor = [], 0
        for run in runs:
            if not run:
                continue
            chosen = self._decode([m.group(0) for m in run])
            for m, form in zip(run, chosen, strict=True):
                pieces.append(query[cursor:m.start()])
                pieces.append(_apply_case(m.group(0), form))
                cursor = m.end()
        pieces.append(query[cursor:])
        return "".join(pieces)

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
