"""The GPU run's data from a pack (torch + numpy only): dense hard negatives, token groups, dev pairs.

Mining follows :class:`trainer.mine.NegativeMiner`'s hybrid recipe with the start's own bi-encoder path: the pack's
BM25 candidates (positives, their groups and near-duplicate texts already removed) -> drop those whose cosine to a
positive exceeds ``dup_cosine`` -> order by cosine to the query -> MMR (:func:`trainer.mine.mmr_select`) picks
``n_mine`` hard, mutually different negatives; too few are topped up with random passages of other groups.

A training group is ``(query, [positive, n_neg negatives])`` as :class:`trainer.data.GroupDataset` builds it, on
token ids: the positive of an inverse-cloze question has its sentence cut out (the pack's ``q_cut``), and then each
negative that was not truncated loses one random sentence (``match_ict_lengths``); a query is replaced by its folded
(or half-folded) form with probability ``fold_prob``. Random choices depend on (seed, pass, index) only: the batch
sampler hands out indices offset by ``pass * len(records)``, so worker processes need no shared state.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from reranker.tokenizer import build_segment_pair, collate
from trainer.data import BucketBatchSampler
from trainer.gpu.packio import Pack

__all__ = ["embed_rows", "mine_negatives", "train_records", "TokenGroupDataset", "PassBatchSampler",
           "GroupCollator", "DevPairs", "DevCollator", "PackDataModule", "FOLD_SUFFIX"]

FOLD_SUFFIX = "~fold"  # dev query id suffix of the diacritic-free variant


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha1(":".join(map(str, parts)).encode()).digest()[:8], "big"))


def positive_tokens(pack: Pack, row: int, pos: int) -> list[int]:
    """Content ids of passage ``pos`` as question ``row``'s positive (its inverse-cloze sentence cut out)."""
    toks = pack["passages"].row_list(pos)
    a, b = (int(x) for x in pack["q_cut"][row])
    if a >= 0 and pos == int(pack["q_pos"][row][0]):
        return toks[:a] + toks[b:]
    return toks


def drop_sentence(toks: list[int], starts: Sequence[int], rng: random.Random) -> list[int]:
    """``toks`` without one of its sentences (``starts``: where sentences 2.. begin); unchanged with one sentence
    (token form of :func:`trainer.augment.drop_random_sentence`)."""
    bounds = [0, *[s for s in starts if 0 < s < len(toks)], len(toks)]
    if len(bounds) < 3:
        return toks
    k = rng.randrange(len(bounds) - 1)
    return toks[: bounds[k]] + toks[bounds[k + 1] :]


@torch.no_grad()
def embed_rows(model: torch.nn.Module, pack: Pack, kind: str, rows: np.ndarray, device: torch.device,
               batch_size: int = 512, amp: bool = False) -> torch.Tensor:
    """L2-normalized bi-encoder vectors (n, d) float32 of passages or queries (``kind``) ``rows``, from the gated
    model's segment means; the other segment is only its prefix (the cross path is closed, so it does not matter)."""
    pq = pack["prefix_query"].tolist()
    pp = pack["prefix_passage"].tolist()
    src = pack["passages" if kind == "passage" else "queries"]
    ml, mq = int(model.config.max_length), int(model.config.max_query_length)
    rows = np.asarray(rows, np.int64)
    order = np.argsort(-src.lengths()[rows], kind="stable")
    out = torch.zeros(len(rows), model.config.hidden_size)
    was = model.training
    model.eval()
    for s in range(0, len(rows), batch_size):
        idx = order[s : s + batch_size]
        seqs = [build_segment_pair(pq, pp + src.row_list(int(r)), mq, ml) if kind == "passage"
                else build_segment_pair(pq + src.row_list(int(r)), pp, mq, ml) for r in rows[idx]]
        b = collate(seqs, 8)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            q, p = model.segment_embeddings(b["input_ids"].to(device), b["attention_mask"].to(device))
        v = p if kind == "passage" else q
        out[torch.as_tensor(idx)] = F.normalize(v.float(), dim=-1).cpu()
    model.train(was)
    return out


def mine_negatives(pack: Pack, rows: np.ndarray, pvec: torch.Tensor, qvec: torch.Tensor, n_mine: int,
                   n_min: int, mmr_lambda: float = 0.7, dup_cosine: float = 0.95,
                   seed: int = 13) -> tuple[list[list[int]], dict[str, int]]:
    """Negatives (passage indices) for each question of ``rows`` (``qvec[i]`` is row ``rows[i]``'s vector,
    ``pvec`` every passage's) and counts of what happened; at least ``n_min`` each (random fill-ins)."""
    from trainer.mine import mmr_select

    P = pvec.numpy()
    groups = pack["passage_group"]
    stats = {"mined": 0, "dropped_duplicates": 0, "filled_random": 0}
    out: list[list[int]] = []
    for i, row in enumerate(np.asarray(rows, np.int64)):
        pos = pack["q_pos"][row].astype(np.int64)
        c = pack["q_cands"][row]
        c = c[c >= 0].astype(np.int64)
        qv = qvec[i].numpy()
        chosen: list[int] = []
        if len(c):
            cv = P[c]
            dup = (cv @ P[pos].T).max(1) > dup_cosine
            stats["dropped_duplicates"] += int(dup.sum())
            c, cv = c[~dup], cv[~dup]
            order = np.argsort(-(cv @ qv), kind="stable")
            c, cv = c[order], cv[order]
            chosen = [int(c[j]) for j in mmr_select(qv, cv, n_mine, mmr_lambda)]
        stats["mined"] += len(chosen)
        if len(chosen) < n_min:
            rng = _rng(seed, "fill", int(row))
            bad = set(groups[pos].tolist())
            tries = 0
            while len(chosen) < n_min and tries < 100 * n_min:
                tries += 1
                j = rng.randrange(len(groups))
                if groups[j] not in bad and j not in chosen:
                    chosen.append(j)
                    stats["filled_random"] += 1
        out.append(chosen)
    return out, stats


def train_records(pack: Pack, rows: np.ndarray, negs: list[list[int]],
                  source_weights: dict[str, float] | None) -> list[dict[str, Any]]:
    """One record per training question (``{"row", "negs", "source"}``), repeated per ``source_weights``
    (:func:`trainer.data.weight_sources`)."""
    from trainer.data import weight_sources

    names = pack.sources
    recs = [{"row": int(r), "negs": n, "source": names[int(pack["q_source"][r])]}
            for r, n in zip(rows, negs, strict=True)]
    return weight_sources(recs, source_weights)


class TokenGroupDataset(Dataset):
    """Records -> groups ``{"query": ids, "passages": [ids of pos, neg_1..neg_n]}`` (prefixes included).
    Index ``pass * len(self) + i`` is record i in pass ``pass`` (see :class:`PassBatchSampler`)."""

    def __init__(self, pack: Pack, records: Sequence[dict], n_neg: int, seed: int = 13, fold_prob: float = 0.25,
                 fold_partial: float = 0.5, match_ict_lengths: bool = True) -> None:
        if n_neg < 1:
            raise ValueError("n_neg must be >= 1")
        self.pack, self.records, self.n_neg, self.seed = pack, list(records), n_neg, seed
        self.fold_prob, self.fold_partial, self.match_ict_lengths = fold_prob, fold_partial, match_ict_lengths
        self.pq = pack["prefix_query"].tolist()
        self.pp = pack["prefix_passage"].tolist()
        self.truncated = pack["passage_full_len"] > pack["passages"].lengths()
        plen = pack["passages"].lengths()
        qlen = pack["queries"].lengths()
        self.lengths = [int(qlen[r["row"]] + max(plen[pack["q_pos"][r["row"]]].max(), plen[r["negs"]].max()
                                                  if r["negs"] else 0)) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.records)
        epoch, i = divmod(int(index), n)
        r = self.records[i]
        row, pack = r["row"], self.pack
        rng = _rng(self.seed, epoch, i)
        pos = int(rng.choice(pack["q_pos"][row].tolist()))
        negs = [x for x in r["negs"] if x != pos]
        negs = rng.sample(negs, self.n_neg) if len(negs) >= self.n_neg else list(negs)
        tries = 0
        while len(negs) < self.n_neg and tries < 100:  # borrow from other records, as GroupDataset does
            tries += 1
            other = self.records[rng.randrange(n)]
            cand = rng.choice(other["negs"] or pack["q_pos"][other["row"]].tolist())
            if cand not in pack["q_pos"][row] and cand not in negs:
                negs.append(int(cand))
        passages = [positive_tokens(pack, row, pos)]
        cut = bool(pack["q_removed"][row])
        for x in negs:
            toks = pack["passages"].row_list(x)
            if self.match_ict_lengths and cut and not self.truncated[x]:
                toks = drop_sentence(toks, pack["passage_sents"][x].tolist(), rng)
            passages.append(toks)
        q = pack["queries"]
        if self.fold_prob > 0 and rng.random() < self.fold_prob:
            q = pack["queries_half" if rng.random() < self.fold_partial else "queries_fold"]
        return {"query": self.pq + q.row_list(row), "passages": [self.pp + p for p in passages]}


class PassBatchSampler(BucketBatchSampler):
    """:class:`trainer.data.BucketBatchSampler` that reshuffles on every pass by itself and offsets the indices of
    pass ``e`` by ``e * n`` (Lightning calls ``set_epoch`` only on plain samplers, never on a batch sampler)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes = 0

    def __iter__(self) -> Iterator[list[int]]:
        e = self.passes
        self.passes += 1
        self.set_epoch(e)
        n = len(self.lengths)
        return iter([[i + e * n for i in b] for b in self._batches()])


@dataclass
class GroupCollator:
    """Groups -> one padded batch of ``B * G`` pairs (``reranker.tokenizer.build_segment_pair`` + ``collate``)."""

    max_query_length: int = 32
    max_length: int = 160
    pad_to_multiple_of: int | None = 8

    def __call__(self, groups: Sequence[dict]) -> dict[str, Any]:
        g = len(groups[0]["passages"])
        if any(len(x["passages"]) != g for x in groups):
            raise ValueError("all groups in a batch must have the same size")
        seqs = [build_segment_pair(x["query"], p, self.max_query_length, self.max_length)
                for x in groups for p in x["passages"]]
        batch = collate(seqs, self.pad_to_multiple_of)
        batch["group_size"] = g
        batch["architecture"] = "gated"
        return batch


class DevPairs(Dataset):
    """Every (dev question, BM25 candidate) pair, as written and with the query folded (``FOLD_SUFFIX``);
    ``qrels`` / ``first_stage`` for the metrics."""

    def __init__(self, pack: Pack, rows: np.ndarray, fold: bool = True) -> None:
        pq, pp = pack["prefix_query"].tolist(), pack["prefix_passage"].tolist()
        self.pairs: list[tuple[str, str, list[int], list[int]]] = []
        self.qrels: dict[str, dict[str, int]] = {}
        self.first_stage: dict[str, dict[str, float]] = {}
        self.source: dict[str, str] = {}
        variants = [("", "queries"), (FOLD_SUFFIX, "queries_fold")] if fold else [("", "queries")]
        for row in np.asarray(rows, np.int64):
            cands = pack["q_cands"][row]
            scores = pack["q_cand_scores"][row]
            for suffix, name in variants:
                qid = f"q{row}{suffix}"
                q = pq + pack[name].row_list(int(row))
                self.qrels[qid] = {f"p{int(p)}": 1 for p in pack["q_pos"][row]}
                self.first_stage[qid] = {f"p{int(c)}": float(s) for c, s in zip(cands, scores, strict=True) if c >= 0}
                self.source[qid] = pack.sources[int(pack["q_source"][row])]
                self.pairs += [(qid, f"p{int(c)}", q, pp + pack["passages"].row_list(int(c))) for c in cands if c >= 0]
        self.pairs.sort(key=lambda x: -(len(x[2]) + len(x[3])))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str, list[int], list[int]]:
        return self.pairs[i]


@dataclass
class DevCollator:
    max_query_length: int = 32
    max_length: int = 160

    def __call__(self, pairs: Sequence[tuple[str, str, list[int], list[int]]]) -> dict[str, Any]:
        batch = collate([build_segment_pair(q, p, self.max_query_length, self.max_length) for _, _, q, p in pairs], 8)
        batch["architecture"] = "gated"
        batch["qids"] = [p[0] for p in pairs]
        batch["pids"] = [p[1] for p in pairs]
        return batch


class PackDataModule(L.LightningDataModule):
    """Training groups and dev pairs of a pack for Lightning (the sets are built before ``fit``)."""

    def __init__(self, train_set: TokenGroupDataset, val_set: DevPairs, batch_size: int, eval_batch_size: int,
                 max_query_length: int, max_length: int, bucket_multiplier: int = 50, num_workers: int = 0,
                 seed: int = 13) -> None:
        super().__init__()
        self.train_set, self.val_set = train_set, val_set
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.mq, self.ml = max_query_length, max_length
        self.bucket_multiplier, self.num_workers, self.seed = bucket_multiplier, num_workers, seed
        self._val_batches: list[dict[str, Any]] | None = None

    def train_dataloader(self) -> DataLoader:
        sampler = PassBatchSampler(self.train_set.lengths, self.batch_size, self.bucket_multiplier, True, True,
                                   self.seed)
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=GroupCollator(self.mq, self.ml), persistent_workers=False,
                          pin_memory=torch.cuda.is_available(),
                          timeout=120 if self.num_workers else 0)  # a hung worker ends fit (and the run exports)

    def val_dataloader(self) -> DataLoader:
        """The dev batches, collated once (validation runs every few hundred steps; re-collating 16k pairs in the
        main process each time would cost more than scoring them)."""
        if self._val_batches is None:
            col = DevCollator(self.mq, self.ml)
            pairs = self.val_set.pairs
            self._val_batches = [col(pairs[i : i + self.eval_batch_size])
                                 for i in range(0, len(pairs), self.eval_batch_size)]
        return DataLoader(self._val_batches, batch_size=None, shuffle=False, num_workers=0)
