"""Training and validation data for the reranker: groups, diacritic augmentation, bucketing, a DataModule.

Training records are FlagEmbedding JSONL lines ``{"query", "pos": [...], "neg": [...]}`` (what
``python -m trainer mine`` writes, or any other tool's). One training example is a *group*:
``(query, [positive, negative_1, ..., negative_n])``, the positive first. Records with fewer than ``n``
negatives borrow passages of other records (seeded).

Diacritic augmentation: with probability ``fold_prob`` a query loses its diacritics (``indexing.normalize.fold``)
— all of them, or with probability ``fold_partial`` only a random subset of its syllables — so the reranker
learns to score queries typed without marks.

Inverse-cloze length matching (``match_ict_lengths``): an ICT positive usually had its pseudo-query sentence
cut out, so it is a sentence shorter than a raw negative paragraph; a model can learn "shorter = relevant"
(74% of the first run's ICT triplets had a positive shorter than its negatives). For those records each
negative loses one random sentence too, so length carries no signal.

``source_weights`` repeats the records of a ``source`` (e.g. real questions ``nanibot-qa-train``: 2) so
real questions weigh more than pseudo-queries.

Batches are length-bucketed (sorted by length inside shuffled mega-buckets, then batch order shuffled) and
padded per batch (dynamic padding), tokenized with :func:`reranker.tokenizer.encode_pairs`.

Augmentation lives in :mod:`trainer.augment`, validation candidates in :mod:`trainer.candidates` (both
re-exported here). Validation uses a *candidates* JSONL (``python -m trainer candidates``): per query, its first-stage top-k
``{"query_id", "query", "positives": [ids], "candidates": [{"id", "text", "score"}]}``, so each validation
pass reranks a fixed, small set of pairs.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from indexing.jsonl import JsonlProblem, read_jsonl
from trainer.augment import augment_diacritics, drop_random_sentence, strip_diacritics
from trainer.candidates import CandidateCollator, CandidateDataset, load_candidates

__all__ = [
    "strip_diacritics",
    "augment_diacritics",
    "drop_random_sentence",
    "weight_sources",
    "load_triplets",
    "GroupDataset",
    "BucketBatchSampler",
    "GroupCollator",
    "ResumableDataLoader",
    "CandidateDataset",
    "CandidateCollator",
    "load_candidates",
    "RerankDataModule",
]

def weight_sources(records: Sequence[dict], weights: dict[str, float] | None) -> list[dict]:
    """Records with those of ``source`` s repeated ``round(weights[s])`` times (0 drops them); others once."""
    if not weights:
        return list(records)
    out: list[dict] = []
    for r in records:
        out += [r] * max(0, round(float(weights.get(str(r.get("source", "")), 1.0))))
    return out


def _query_was_cut(record: dict, positive: str) -> bool:
    """An ICT record whose pseudo-query is not inside the positive (it was cut out of the paragraph)."""
    return str(record.get("source", "")) == "ict" and record["query"].strip() not in positive


# ---------------------------------------------------------------------------------------------- training set
def load_triplets(paths: Sequence[str | os.PathLike[str]], max_records: int | None = None) -> list[dict]:
    """Read FlagEmbedding JSONL files → records with a non-empty ``query`` and ``pos`` (others are counted
    and reported in the raised error only when *no* record is usable)."""
    records: list[dict] = []
    bad = 0
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training file {path} not found (run `python -m trainer mine` first)")
        problems: list[JsonlProblem] = []  # e.g. a line still being written by a background mining job
        for rec in read_jsonl(path, skip_bad=True, problems=problems):
            if not isinstance(rec, dict) or not rec.get("query") or not rec.get("pos"):
                bad += 1
                continue
            rec.setdefault("neg", [])
            records.append(rec)
            if max_records and len(records) >= max_records:
                return records
        bad += len(problems)
    if not records:
        raise ValueError(f"no usable training records in {[str(p) for p in paths]} ({bad} malformed lines)")
    return records


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha1(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class GroupDataset(Dataset):
    """Records → groups ``{"query": str, "passages": [pos, neg_1..neg_n]}``; random choices are seeded by
    ``(seed, epoch, index)`` so a run is reproducible. Call :meth:`set_epoch` to vary them per epoch."""

    def __init__(
        self,
        records: Sequence[dict],
        n_neg: int = 3,
        seed: int = 13,
        fold_prob: float = 0.25,
        fold_partial: float = 0.5,
        match_ict_lengths: bool = True,
    ) -> None:
        if n_neg < 1:
            raise ValueError("n_neg must be >= 1")
        self.records = list(records)
        self.match_ict_lengths = match_ict_lengths
        self.n_neg = n_neg
        self.seed = seed
        self.fold_prob = fold_prob
        self.fold_partial = fold_partial
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def length(self, i: int) -> int:
        """A cheap length proxy (characters of the query + its longest passage) for bucketing."""
        r = self.records[i]
        return len(r["query"]) + max(len(p) for p in list(r["pos"]) + list(r["neg"]))

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        rng = _rng(self.seed, self.epoch, i)
        pos = rng.choice(r["pos"])
        negs = [n for n in r["neg"] if n not in r["pos"]]
        negs = rng.sample(negs, self.n_neg) if len(negs) >= self.n_neg else list(negs)
        tries = 0
        while len(negs) < self.n_neg and tries < 100 and len(self.records) > 1:
            tries += 1
            j = rng.randrange(len(self.records))
            if j == i:
                continue
            other = self.records[j]
            cand = rng.choice(list(other["pos"]) + list(other["neg"]))
            if cand not in r["pos"] and cand not in negs:
                negs.append(cand)
        if len(negs) < self.n_neg:
            raise ValueError(f"record {i} has too few negatives and the dataset too few records to fill them")
        if self.match_ict_lengths and _query_was_cut(r, pos):
            negs = [drop_random_sentence(n, rng) for n in negs]
        query = augment_diacritics(r["query"], rng, self.fold_prob, self.fold_partial)
        return {"query": query, "passages": [pos, *negs]}


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length: shuffle, cut into mega-buckets of ``batch_size * multiplier``, sort each
    by length, slice into batches, shuffle the batch order. Deterministic per ``(seed, epoch)``.

    Each new pass is the next epoch unless :meth:`set_epoch` was called since the last one: Lightning calls
    ``set_epoch`` on a loader's ``sampler`` and ``batch_sampler.sampler``, never on a batch sampler itself, so
    without this every epoch would repeat the first one's order and augmentations."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        multiplier: int = 50,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 13,
        dataset: GroupDataset | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.multiplier = max(1, multiplier)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.dataset = dataset
        self.skip = 0  # batches of the current epoch already trained (set when resuming mid-epoch)
        self._passes = 0  # passes started
        self._epoch_pinned = False  # set_epoch called since the last pass started

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_pinned = True
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            rng.shuffle(idx)
        mega = self.batch_size * self.multiplier
        batches: list[list[int]] = []
        for s in range(0, len(idx), mega):
            chunk = sorted(idx[s : s + mega], key=lambda i: self.lengths[i])
            batches += [chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        if self._passes and not self._epoch_pinned:
            self.set_epoch(self.epoch + 1)
        self._passes += 1
        self._epoch_pinned = False
        batches = self._batches()
        skip, self.skip = self.skip, 0
        return iter(batches[skip:])

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


@dataclass
class GroupCollator:
    """Groups → one padded batch of ``B * G`` pairs (+ ``group_size``) via :func:`encode_pairs`."""

    tokenizer: Any
    max_query_length: int = 32
    max_length: int = 192
    pad_to_multiple_of: int | None = 8
    architecture: str = "joint"  # the pair format of reranker.tokenizer.encode_pairs; stamped on the batch

    def __call__(self, groups: Sequence[dict]) -> dict[str, Any]:
        from reranker.tokenizer import encode_pairs

        g = len(groups[0]["passages"])
        if any(len(x["passages"]) != g for x in groups):
            raise ValueError("all groups in a batch must have the same size")
        queries = [x["query"] for x in groups for _ in range(g)]
        passages = [p for x in groups for p in x["passages"]]
        batch = encode_pairs(
            self.tokenizer,
            queries,
            passages,
            self.max_query_length,
            self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            architecture=self.architecture,
        )
        batch["group_size"] = g
        batch["architecture"] = self.architecture
        return batch


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`BucketBatchSampler` whose position goes into Lightning checkpoints.

    Lightning saves ``state_dict()`` of dataloaders that have one and calls ``load_state_dict`` on resume, so
    a run resumed mid-epoch continues with the next batches instead of replaying the epoch's first ones
    (at most the one batch Lightning prefetched is skipped).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0

    def __iter__(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        self._yielded = getattr(sampler, "skip", 0)
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.batch_sampler, "epoch", 0)), "batches": int(self._yielded)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.batch_sampler
        if isinstance(sampler, BucketBatchSampler):
            epoch, done = int(state.get("epoch", 0)), int(state.get("batches", 0))
            if done >= len(sampler):  # saved at the end of an epoch: go on with the next one
                epoch, done = epoch + 1, 0
            sampler.set_epoch(epoch)
            sampler.skip = done


# ---------------------------------------------------------------------------------------------- module
class RerankDataModule(L.LightningDataModule):
    """Training groups from FlagEmbedding JSONL files and validation pairs from a candidates JSONL.

    Args:
        train_files: JSONL paths. val_candidates: candidates JSONL (None = no validation).
        tokenizer: a tokenizer object, or None to use :func:`reranker.tokenizer.load_tokenizer`
        (``tokenizer_path`` when given).
        n_neg, batch_size (groups per batch), eval_batch_size (pairs), max_query_length, max_length,
        fold_prob / fold_partial (diacritic augmentation), bucket_multiplier, num_workers, seed,
        max_train_records, val_max_queries / val_max_candidates (keep validation cheap),
        match_ict_lengths (see the module docstring), source_weights ({source: repeats}),
        architecture (the model's pair format: "joint" or "gated", see reranker.tokenizer).
    """

    def __init__(
        self,
        train_files: Sequence[str],
        val_candidates: str | None = None,
        tokenizer: Any = None,
        tokenizer_path: str | None = None,
        n_neg: int = 3,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        max_query_length: int = 32,
        max_length: int = 192,
        fold_prob: float = 0.25,
        fold_partial: float = 0.5,
        bucket_multiplier: int = 50,
        num_workers: int = 0,
        seed: int = 13,
        max_train_records: int | None = None,
        val_max_queries: int | None = None,
        val_max_candidates: int | None = None,
        match_ict_lengths: bool = True,
        source_weights: dict[str, float] | None = None,
        architecture: str = "joint",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.train_files = [str(p) for p in train_files]
        self.val_candidates = val_candidates
        self._tokenizer = tokenizer
        self.train_set: GroupDataset | None = None
        self.val_set: CandidateDataset | None = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from reranker.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.hparams.tokenizer_path)
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            records = weight_sources(load_triplets(self.train_files, h.max_train_records), h.source_weights)
            self.train_set = GroupDataset(
                records, h.n_neg, h.seed, h.fold_prob, h.fold_partial, h.match_ict_lengths
            )
        if stage in (None, "fit", "validate") and self.val_set is None and self.val_candidates:
            self.val_set = CandidateDataset(
                load_candidates(self.val_candidates, h.val_max_queries, h.val_max_candidates)
            )

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        assert self.train_set is not None, "call setup('fit') first"
        lengths = [self.train_set.length(i) for i in range(len(self.train_set))]
        sampler = BucketBatchSampler(
            lengths, h.batch_size, h.bucket_multiplier, True, True, h.seed, self.train_set
        )
        return ResumableDataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=h.num_workers,
            collate_fn=GroupCollator(self.tokenizer, h.max_query_length, h.max_length,
                                     architecture=h.get("architecture", "joint")),
            persistent_workers=h.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        h = self.hparams
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_size=h.eval_batch_size,
            shuffle=False,
            num_workers=0,
            collate_fn=CandidateCollator(self.tokenizer, h.max_query_length, h.max_length,
                                         h.get("architecture", "joint")),
        )
