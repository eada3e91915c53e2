"""Validation candidates: a candidates JSONL (``python -m trainer candidates``: per query its first-stage top-k
``{"query_id", "query", "positives": [ids], "candidates": [{"id", "text", "score"}]}``) → flattened pairs and
their batches, so each validation pass reranks a fixed, small set of pairs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from indexing.jsonl import read_jsonl

__all__ = ["CandidateCollator", "CandidateDataset", "load_candidates"]


def load_candidates(
    path: str | os.PathLike[str], max_queries: int | None = None, max_candidates: int | None = None
) -> list[dict]:
    """Candidates JSONL → records (first ``max_queries`` queries, first ``max_candidates`` candidates each)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"validation candidates {path} not found (run `python -m trainer candidates`)"
        )
    out = []
    for rec in read_jsonl(path):
        rec["candidates"] = rec["candidates"][:max_candidates] if max_candidates else rec["candidates"]
        out.append(rec)
        if max_queries and len(out) >= max_queries:
            break
    return out


class CandidateDataset(Dataset):
    """Flattened (query_id, passage_id, query, text) pairs of a candidates file, longest first."""

    def __init__(self, records: Sequence[dict]) -> None:
        self.pairs = [
            (str(r["query_id"]), str(c["id"]), str(r["query"]), str(c["text"]))
            for r in records
            for c in r["candidates"]
        ]
        self.pairs.sort(key=lambda p: -(len(p[2]) + len(p[3])))
        self.qrels = {str(r["query_id"]): {str(p): 1 for p in r["positives"]} for r in records}
        self.first_stage = {
            str(r["query_id"]): {
                str(c["id"]): float(c.get("score", -i)) for i, c in enumerate(r["candidates"])
            }
            for r in records
        }

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str, str, str]:
        return self.pairs[i]


@dataclass
class CandidateCollator:
    """(qid, pid, query, text) pairs → an :func:`encode_pairs` batch + ``qids`` / ``pids`` lists."""

    tokenizer: Any
    max_query_length: int = 32
    max_length: int = 192
    architecture: str = "joint"

    def __call__(self, pairs: Sequence[tuple[str, str, str, str]]) -> dict[str, Any]:
        from reranker.tokenizer import encode_pairs

        batch = encode_pairs(
            self.tokenizer,
            [p[2] for p in pairs],
            [p[3] for p in pairs],
            self.max_query_length,
            self.max_length,
            architecture=self.architecture,
        )
        batch["architecture"] = self.architecture
        batch["qids"] = [p[0] for p in pairs]
        batch["pids"] = [p[1] for p in pairs]
        return batch
