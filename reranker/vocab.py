"""Vocabulary pruning for shipping a ViRanker model.

e5-small's word-embedding table (250,037 x 384) is ~80% of the model's weights, but Vietnamese text uses a
small part of the XLM-R vocabulary. Pruning keeps the rows a corpus uses (+ the specials), saves the
old->new id map next to the model (``vocab_map.safetensors``) and applies it right after tokenization:

    ids (old) --VocabMap.apply--> ids (new; unknown ids -> <unk>) --> pruned model

On text whose tokens were all kept, the pruned model scores exactly like the unpruned one (same rows,
same computation). Specials 0..3 (<s>, <pad>, </s>, <unk>) keep their ids.

A pruned model dir also carries a **pruned tokenizer** (:func:`prune_tokenizer_json`): the Unigram model keeps the
kept pieces with their scores, renumbered to the new ids, so it emits the model's ids directly (no vocab map:
``AutoTokenizer`` and stock tooling work on the dir) and the dir ships 2.7 MB instead of XLM-R's 17 MB
``tokenizer.json``. On text whose full-vocabulary tokens were all kept it tokenizes exactly as
``VocabMap.apply(full tokenizer)`` (the best Unigram path uses kept pieces only, and it is still there); on text
with a dropped piece the full path maps that piece to ``<unk>`` while the pruned tokenizer segments it into kept
pieces (it loses less). :func:`tokenizer_emits_model_ids` tells the two kinds apart.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from reranker.factory import RerankerModel
from reranker.tokenizer import UNK_ID

VOCAB_MAP_NAME = "vocab_map.safetensors"
ALWAYS_KEEP = (0, 1, 2, 3)  # <s>, <pad>, </s>, <unk>


@dataclass
class VocabMap:
    """Old (tokenizer) ids -> new (pruned model) ids. ``kept_ids[new] == old``; unknown old ids -> <unk>."""

    kept_ids: torch.Tensor  # (n_new,) int64, strictly increasing
    old_vocab_size: int
    unk_id: int = UNK_ID  # old id of <unk>
    old_to_new: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kept = torch.as_tensor(self.kept_ids, dtype=torch.long).flatten()
        if kept.numel() == 0 or not bool((kept[1:] > kept[:-1]).all()):
            raise ValueError("kept_ids must be non-empty and strictly increasing")
        if int(kept[0]) < 0 or int(kept[-1]) >= self.old_vocab_size:
            raise ValueError(f"kept_ids must lie in [0, {self.old_vocab_size})")
        if kept[: len(ALWAYS_KEEP)].tolist() != list(ALWAYS_KEEP):
            raise ValueError(f"kept_ids must start with the specials {ALWAYS_KEEP}")
        self.kept_ids = kept
        new_unk = int(torch.searchsorted(kept, torch.tensor(self.unk_id)))
        self.old_to_new = torch.full((self.old_vocab_size,), new_unk, dtype=torch.long)
        self.old_to_new[kept] = torch.arange(kept.numel())

    @property
    def new_vocab_size(self) -> int:
        return int(self.kept_ids.numel())

    def apply(self, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Map old ids (any shape) to new ids; ids the corpus never used become <unk>."""
        t = torch.as_tensor(ids, dtype=torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.old_vocab_size):
            raise ValueError(f"token id outside the original vocabulary [0, {self.old_vocab_size})")
        return self.old_to_new[t]

    def coverage(self, ids: torch.Tensor | Sequence[int]) -> float:
        """Fraction of ``ids`` that survive pruning (not mapped to <unk>)."""
        t = torch.as_tensor(ids, dtype=torch.long).flatten()
        if t.numel() == 0:
            return 1.0
        new = self.old_to_new[t]
        return float(((new != self.old_to_new[self.unk_id]) | (t == self.unk_id)).float().mean())

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / VOCAB_MAP_NAME
        save_file(
            {"kept_ids": self.kept_ids.contiguous(), "old_vocab_size": torch.tensor([self.old_vocab_size]),
             "unk_id": torch.tensor([self.unk_id])},
            str(path), metadata={"format": "pt", "content": "viranker vocab map"},
        )
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> VocabMap | None:
        """The map saved in ``model_dir``, or None when the model is not pruned."""
        path = Path(model_dir) / VOCAB_MAP_NAME
        if not path.is_file():
            return None
        t = load_file(str(path))
        return cls(t["kept_ids"], int(t["old_vocab_size"][0]), int(t["unk_id"][0]))


def collect_token_ids(
    tokenizer: Any, texts: Iterable[str], batch_size: int = 1000, extra_ids: Iterable[int] = ()
) -> torch.Tensor:
    """Sorted unique token ids used by ``texts`` (tokenized without specials) + specials + ``extra_ids``."""
    seen: set[int] = set(ALWAYS_KEEP) | {int(i) for i in extra_ids}
    batch: list[str] = []

    def flush() -> None:
        if batch:
            for ids in tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]:
                seen.update(ids)
            batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    return torch.tensor(sorted(seen), dtype=torch.long)


def prune_vocab(
    model: RerankerModel, kept_ids: torch.Tensor | Sequence[int]
) -> tuple[RerankerModel, VocabMap]:
    """A copy of ``model`` whose word embeddings keep only ``kept_ids`` rows, and the id map to use with it.

    ``kept_ids`` is sorted/deduplicated and the specials are added. The original model is left untouched.
    """
    old_vocab = model.config.vocab_size
    kept = torch.unique(torch.cat([torch.as_tensor(ALWAYS_KEEP), torch.as_tensor(kept_ids, dtype=torch.long)]))
    vmap = VocabMap(kept, old_vocab)
    pruned = copy.deepcopy(model)
    old = model.embeddings.word
    emb = nn.Embedding(vmap.new_vocab_size, old.embedding_dim, padding_idx=model.config.pad_token_id)
    emb.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        emb.weight.copy_(old.weight[kept.to(old.weight.device)])
    pruned.embeddings.word = emb
    pruned.config = model.config.replace(vocab_size=vmap.new_vocab_size)
    return pruned, vmap


def prune_tokenizer_json(tokenizer_json: str | dict[str, Any], vmap: VocabMap) -> dict[str, Any]:
    """A Hugging Face ``tokenizer.json`` (Unigram, XLM-R) → the same tokenizer over ``vmap``'s kept pieces only,
    renumbered to the new ids (scores, normalizer, pre-tokenizer and pair template unchanged).

    Added tokens whose id was not kept (``<mask>``) are dropped; the template's special ids are remapped.
    Raises ValueError for a non-Unigram model or a tokenizer smaller than the kept ids need.
    """
    data = json.loads(tokenizer_json) if isinstance(tokenizer_json, str) else copy.deepcopy(tokenizer_json)
    model = data.get("model", {})
    if model.get("type") != "Unigram":
        raise ValueError(f"only Unigram tokenizers can be pruned, got {model.get('type')!r}")
    vocab = model["vocab"]
    kept = vmap.kept_ids.tolist()
    if kept[-1] >= len(vocab):
        raise ValueError(f"kept id {kept[-1]} is outside the tokenizer's {len(vocab)} pieces")
    new_of = {old: new for new, old in enumerate(kept)}
    model["vocab"] = [vocab[old] for old in kept]
    model["unk_id"] = new_of[int(model.get("unk_id", vmap.unk_id))]
    data["added_tokens"] = [dict(t, id=new_of[t["id"]]) for t in data.get("added_tokens", []) if t["id"] in new_of]
    post = data.get("post_processor") or {}
    for spec in (post.get("special_tokens") or {}).values():
        spec["ids"] = [new_of[i] for i in spec["ids"]]
    return data


def save_pruned_tokenizer(tokenizer: Any, vmap: VocabMap, out_dir: str | Path) -> Any:
    """Write the pruned form of ``tokenizer`` (a ``PreTrainedTokenizerFast`` over the full vocabulary) into
    ``out_dir`` (tokenizer.json + tokenizer_config.json) and return it as a loaded tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from reranker.tokenizer import SPECIAL_TOKENS

    pruned = Tokenizer.from_str(json.dumps(prune_tokenizer_json(tokenizer.backend_tokenizer.to_str(), vmap)))
    specials = {k: v for k, v in SPECIAL_TOKENS.items() if pruned.token_to_id(v) is not None}
    fast = PreTrainedTokenizerFast(tokenizer_object=pruned, model_max_length=512, **specials)
    fast.padding_side = "right"
    fast.save_pretrained(str(out_dir))
    return fast


def tokenizer_emits_model_ids(tokenizer: Any, vmap: VocabMap | None, model_vocab_size: int) -> bool:
    """True when ``tokenizer``'s ids index the model's embedding rows as they are (an unpruned model, or the
    pruned tokenizer of a pruned one); False when they must go through ``vmap`` first (the full XLM-R tokenizer
    in front of a pruned model)."""
    return vmap is None or len(tokenizer) == model_vocab_size
