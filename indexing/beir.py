"""The BEIR dataset layout and TREC run files: the one reader of each, for every package.

A BEIR directory holds ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id", "text"}``)
and ``qrels/<split>.tsv`` (``query-id<TAB>corpus-id<TAB>score``, an optional header line). A TREC run file has
one ``qid Q0 doc rank score tag`` line per retrieved document.

- :func:`beir_files` — the three paths of a split, or :class:`FileNotFoundError` naming the missing one.
- :func:`read_qrels` — ``{query_id: {doc_id: relevance}}``; strict (the evaluation's reading) or lenient (the
  miner's: a missing score counts as relevant), optionally positives only and/or one id prefix.
- :func:`read_queries` / :func:`iter_corpus` — the rows of ``queries.jsonl`` / ``corpus.jsonl``.
- :func:`load_beir` → :class:`BeirDataset` — normalized passages, the judged queries and the qrels, with the
  corpus hash the evaluation cache keys on (optionally plus distractor passages from another JSONL file).
- :func:`write_trec_run` / :func:`read_trec_run`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing.jsonl import open_text, read_jsonl
from indexing.normalize import normalize

__all__ = [
    "BeirDataset",
    "QrelsError",
    "beir_files",
    "iter_corpus",
    "load_beir",
    "read_qrels",
    "read_queries",
    "read_trec_run",
    "write_trec_run",
]

QRELS_HEADER_IDS = ("query-id", "qid", "query_id")  # a first line starting with one of these is a header


class QrelsError(ValueError):
    """A qrels line that is not ``query-id<TAB>corpus-id<TAB>score``; ``path`` and ``line`` say where."""

    def __init__(self, path: str, line: int) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: expected query-id<TAB>corpus-id<TAB>score")


def beir_files(path: str | os.PathLike[str], split: str = "test") -> tuple[Path, Path, Path]:
    """``(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)`` of the BEIR directory ``path``; raises
    FileNotFoundError naming the first one missing."""
    path = Path(path)
    files = (path / "corpus.jsonl", path / "queries.jsonl", path / "qrels" / f"{split}.tsv")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: {path} is not a BEIR dataset with a {split!r} split")
    return files


def read_qrels(
    path: str | os.PathLike[str], *, strict: bool = True, positive_only: bool = False, id_prefix: str | None = None
) -> dict[str, dict[str, int]]:
    """A qrels TSV → ``{query_id: {doc_id: relevance}}`` (queries and documents in file order).

    A first line starting with ``query-id``/``qid``/``query_id`` is a header; blank lines are skipped; scores
    are read as ``int(float(score))``. ``strict`` True: a line with fewer than three columns raises
    :class:`QrelsError`. ``strict`` False: lines with fewer than two columns are skipped and a missing or empty
    score counts as relevance 1. ``positive_only`` drops pairs whose score is <= 0; ``id_prefix`` keeps only
    query ids starting with it. A score that is not a number raises ValueError.
    """
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] in QRELS_HEADER_IDS:
                continue
            if not line.strip():
                continue
            if len(parts) < 3 and (strict or len(parts) < 2):
                if strict:
                    raise QrelsError(os.fspath(path), lineno)
                continue
            raw = parts[2].strip() if len(parts) >= 3 else ""
            score = float(raw) if raw else 1.0
            if positive_only and score <= 0:
                continue
            if id_prefix and not parts[0].startswith(id_prefix):
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(score)
    return qrels


def read_queries(path: str | os.PathLike[str], ids: Container[str] | None = None) -> dict[str, str]:
    """``queries.jsonl`` → ``{query_id: text}`` in file order (only ``ids`` when given; a missing text is "")."""
    out: dict[str, str] = {}
    for row in read_jsonl(path):
        qid = str(row["_id"])
        if ids is None or qid in ids:
            out[qid] = str(row.get("text") or "")
    return out


def iter_corpus(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The rows of a ``corpus.jsonl`` (``.gz`` too), as parsed; a malformed line raises
    :class:`indexing.jsonl.JsonlError`."""
    return read_jsonl(path)


@dataclass
class BeirDataset:
    """A loaded BEIR dataset: passages (normalized), the split's queries and qrels."""

    path: Path
    split: str
    passages: list[Any]  # indexing.passages.Passage
    queries: dict[str, str]  # only queries judged in the split, in file order
    qrels: dict[str, dict[str, int]]
    corpus_sha256: str
    extra: int = 0  # distractor passages added


def _file_sha256(path: Path, h: Any | None = None) -> Any:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def load_beir(
    path: str | os.PathLike[str], split: str = "test", extra_corpus: str | os.PathLike[str] | None = None,
    extra_limit: int | None = None,
) -> BeirDataset:
    """Read a BEIR directory (and optional distractors: the first ``extra_limit`` rows of ``extra_corpus``) →
    :class:`BeirDataset`, one passage per document. Raises FileNotFoundError / ValueError (:class:`QrelsError`,
    :class:`indexing.jsonl.JsonlError`) with the offending file for a malformed dataset."""
    from indexing.passages import Passage

    path = Path(path)
    corpus_file, queries_file, qrels_file = beir_files(path, split)
    qrels = read_qrels(qrels_file)
    queries = read_queries(queries_file, qrels)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ValueError(f"{queries_file}: {len(missing)} judged queries have no text, e.g. {missing[:3]}")
    passages, seen = [], set()
    for row in iter_corpus(corpus_file):
        pid = str(row["_id"])
        if pid in seen:
            raise ValueError(f"{corpus_file}: duplicate _id {pid!r}")
        seen.add(pid)
        text = normalize(str(row.get("text") or ""))
        if text:
            passages.append(Passage(pid, pid, normalize(str(row.get("title") or "")), text, corpus_file.name))
    h = _file_sha256(corpus_file)
    n_extra = 0
    if extra_corpus is not None:
        extra_corpus = Path(extra_corpus)
        h.update(f"\0extra:{extra_corpus.name}:{extra_limit}\0".encode())
        rows = iter_corpus(extra_corpus)
        if extra_limit is not None:
            rows = itertools.islice(rows, extra_limit)
        for row in rows:
            pid = str(row["_id"])
            text = normalize(str(row.get("text") or ""))
            if pid in seen or not text:
                continue
            seen.add(pid)
            h.update(f"{pid}\t{text}\n".encode())
            passages.append(Passage(pid, pid, normalize(str(row.get("title") or "")), text, extra_corpus.name))
            n_extra += 1
    return BeirDataset(path, split, passages, queries, qrels, h.hexdigest(), n_extra)


def write_trec_run(path: str | os.PathLike[str], run: dict[str, list[str]], tag: str,
                   scores: dict[str, list[float]] | None = None) -> None:
    """Write ``{query_id: [doc ids best first]}`` as a TREC run (``qid Q0 doc rank score tag``; the tag keeps
    ``[A-Za-z0-9+-_.]``, other characters become ``_``). ``scores`` ``{query_id: [score per doc, same order]}``
    are the systems' own scores (``repr`` precision); without them a query's score is n+1-rank."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = "".join(c if c.isalnum() or c in "+-_." else "_" for c in tag) or "run"
    with open_text(path, "w") as f:
        for qid, docs in run.items():
            n = len(docs)
            own = (scores or {}).get(qid)
            if own is not None and len(own) != n:
                raise ValueError(f"query {qid!r}: {len(own)} scores for {n} documents")
            for rank, doc in enumerate(docs, start=1):
                score = repr(float(own[rank - 1])) if own is not None else str(n + 1 - rank)
                f.write(f"{qid} Q0 {doc} {rank} {score} {tag}\n")


def read_trec_run(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """A TREC run file (``.gz`` too) → ``{query_id: {doc_id: score}}``; lines with fewer than five fields are
    skipped."""
    run: dict[str, dict[str, float]] = {}
    with open_text(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run
