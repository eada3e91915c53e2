"""Checkpoint → shippable ``from_pretrained`` directory: vocabulary-pruned, fp16 safetensors, model card.

    ckpt (Lightning, with ``viranker_config``) → ViRanker (fp32) → prune_vocab(ids a Vietnamese corpus uses,
    with and without diacritics) → dtype (fp16 by default) → save_pretrained(dir, tokenizer, vocab_map)
    → README.md (data, steps, hardware, metrics, the command to reproduce)

The directory loads with ``reranker.factory.load_model`` / ``reranker.inference.ViRankerScorer`` (either
architecture; the config says which).
"""

from __future__ import annotations

import copy
import json
import os
import platform
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from indexing.jsonl import open_text
from reranker.config import ViRankerConfig
from reranker.factory import RerankerModel, create_model

__all__ = ["load_checkpoint_model", "iter_corpus_texts", "export_model", "upgrade_model_dir", "write_model_card"]

DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def load_checkpoint_model(ckpt_path: str | os.PathLike[str]) -> tuple[RerankerModel, dict[str, Any]]:
    """A Lightning checkpoint of :class:`trainer.module.RerankerModule` → (the model in fp32, eval mode,
    the checkpoint's metadata: global_step, epoch, hyper_parameters, callbacks' state)."""
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    if "viranker_config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path} is not a trainer checkpoint (no viranker_config / state_dict)")
    config = ViRankerConfig.from_dict(ckpt["viranker_config"])
    model = create_model(config)
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    meta = {k: ckpt.get(k) for k in ("global_step", "epoch", "hyper_parameters")}
    return model.float().eval(), meta


def iter_corpus_texts(
    paths: Sequence[str | os.PathLike[str]], fields: Sequence[str] = ("title", "text", "query", "pos", "neg")
) -> Iterator[str]:
    """Texts of JSONL files (``.gz`` allowed): the string (or list-of-strings) values of ``fields``."""
    for path in paths:
        with open_text(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                for name in fields:
                    v = rec.get(name)
                    if isinstance(v, str):
                        yield v
                    elif isinstance(v, list):
                        yield from (x for x in v if isinstance(x, str))


def _with_folded(texts: Iterable[str]) -> Iterator[str]:
    """Each text, then its diacritic-free form (queries typed without marks tokenize differently)."""
    from indexing.normalize import fold

    for t in texts:
        yield t
        f = fold(t)
        if f != t:
            yield f


def export_model(
    model: RerankerModel,
    out_dir: str | os.PathLike[str],
    tokenizer: Any = None,
    vocab_texts: Iterable[str] | None = None,
    dtype: str | torch.dtype = "float16",
    fold_vocab: bool = True,
) -> dict[str, Any]:
    """Write ``model`` as a ``from_pretrained`` dir; returns what was done (vocab sizes, dtype, bytes).

    ``vocab_texts``: when given, the word embeddings are pruned to the token ids those texts use (plus their
    folded forms when ``fold_vocab``, plus e5's ``query:`` / ``passage:`` pieces for a gated model) and
    ``vocab_map.safetensors`` is written; tokens outside it map to <unk>.
    """
    from reranker.tokenizer import load_tokenizer, prefix_ids
    from reranker.vocab import collect_token_ids, prune_vocab

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    out_dir = Path(out_dir)
    model = copy.deepcopy(model).float().eval()  # the caller's model is left as it was
    model.config = model.config.replace(gradient_checkpointing=False)
    vmap = None
    info: dict[str, Any] = {"vocab_size_before": model.config.vocab_size}
    if vocab_texts is not None:
        texts = _with_folded(vocab_texts) if fold_vocab else vocab_texts
        extra = prefix_ids(tokenizer) if model.config.architecture == "gated" else ()
        kept = collect_token_ids(tokenizer, texts, extra_ids=extra)
        model, vmap = prune_vocab(model, kept)
    info["vocab_size"] = model.config.vocab_size
    model = model.to(torch_dtype)
    model.save_pretrained(out_dir, tokenizer=tokenizer, vocab_map=vmap)
    info["dtype"] = str(torch_dtype).replace("torch.", "")
    info["parameters"] = model.num_parameters()
    info["weights_bytes"] = (out_dir / "model.safetensors").stat().st_size
    return info


def upgrade_model_dir(model_dir: str | os.PathLike[str], tokenizer: Any = None) -> list[str]:
    """Bring a dir written before model dirs carried their tokenizer and Hugging Face keys up to date, weights
    untouched: config.json gets ``model_type`` / ``architectures`` / ``auto_map``, the remote-code files are
    written, and the tokenizer (pruned when the dir has a vocab map) is saved. Returns the files written."""
    from reranker.hf_model import hf_config_extra, write_remote_code
    from reranker.tokenizer import load_tokenizer
    from reranker.vocab import VocabMap, save_pruned_tokenizer

    model_dir = Path(model_dir)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    ViRankerConfig.load(model_dir).save(model_dir, extra=hf_config_extra())
    written = ["config.json", *(p.name for p in write_remote_code(model_dir))]
    vmap = VocabMap.load(model_dir)
    if vmap is not None:
        save_pruned_tokenizer(tokenizer, vmap, model_dir)
    else:
        tokenizer.save_pretrained(str(model_dir))
    return [*written, "tokenizer.json", "tokenizer_config.json"]


_HEADS = {
    "cls": "on the first token",
    "mean": "on the mean of the pair's token states",
    "pair": "on the query and passage token means: MLP of their product and difference + a scaled cosine",
}


def _architecture_lines(cfg: dict[str, Any]) -> list[str]:
    """The model card's description of the architecture in ``cfg`` (a ViRankerConfig dict)."""
    if cfg.get("architecture") == "gated":
        return [
            "A Vietnamese reranker built on multilingual-e5-small's bi-encoder: query and passage are encoded as e5",
            "encodes them (`query: ` / `passage: ` segments, e5's absolute positions), scored by a learnable-scale",
            "cosine of the two mean-pooled segments plus an interaction MLP, with per-head tanh-gated cross-segment",
            "attention (RoPE on that path) that starts closed, so training starts exactly from e5's ranking;",
        ]
    return [
        "A Vietnamese cross-encoder reranker in the ViRanker style (arXiv 2509.09131): an XLM-R-family encoder",
        "initialized from multilingual-e5-small, rotary position embeddings (RoPE), Blockwise Parallel Transformer",
        f"layers and an MLP scoring head ({_HEADS.get(str(cfg.get('pooling', 'cls')), cfg.get('pooling'))}),",
    ]


def _fmt_metrics(metrics: dict[str, float]) -> str:
    if not metrics:
        return "_no validation metrics recorded_"
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
    return "\n".join(rows)


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (model cards must not leak a machine's
    absolute paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_model_card(out_dir: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """``README.md`` for an exported model from ``info`` (keys: config, export, train, data, metrics, commands)."""
    out_dir = Path(out_dir)
    cfg = info.get("config", {})
    gated = cfg.get("architecture") == "gated"
    train = info.get("train", {})
    data = info.get("data", {})
    commands = info.get("commands", {})
    hw = (
        info.get("hardware")
        or f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}"
    )
    lines = [
        "---",
        "language: vi",
        "license: mit",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        f"base_model: {info.get('base_model', 'intfloat/multilingual-e5-small')}",
        "tags: [reranker, cross-encoder, vietnamese, viranker]",
        "---",
        "",
        f"# {info.get('name', out_dir.name)}",
        "",
        *_architecture_lines(cfg),
        "trained on inverse-cloze and question–paragraph triplets with hybrid hard negatives",
        "(BM25 top-20 → dense re-rank → MMR) and a triplet ranking loss.",
        "",
        "## Model",
        "",
        f"- architecture: {cfg.get('architecture', 'joint')}; layers: {cfg.get('num_layers')}, hidden"
        f" {cfg.get('hidden_size')}, heads {cfg.get('num_heads')}, RoPE: {cfg.get('rope')}"
        + (f" (cross path: {cfg.get('cross_rope')})" if gated else "")
        + f", BPT: {cfg.get('use_bpt')}, early-exit heads at {cfg.get('exit_layers')}",
        f"- vocabulary: {info.get('export', {}).get('vocab_size')} of "
        f"{info.get('export', {}).get('vocab_size_before')} XLM-R pieces kept (ids a Vietnamese corpus uses,"
        " with and without diacritics; the dir's `tokenizer.json` is XLM-R's pruned to them, and"
        " `vocab_map.safetensors` maps full XLM-R ids, others to `<unk>`)",
        f"- weights: {info.get('export', {}).get('dtype')} safetensors, "
        f"{info.get('export', {}).get('parameters', 0) / 1e6:.1f} M parameters",
        f"- input: `{'<s> query: q </s><s> passage: p </s>' if gated else '<s> query </s></s> passage </s>'}`,"
        f" query ≤ {cfg.get('max_query_length')} tokens,"
        f" pair ≤ {cfg.get('max_length')} tokens; output: one relevance logit (sigmoid → [0, 1])",
        "",
        "## Training",
        "",
        f"- data: {data.get('description', '')}",
        f"- files: {', '.join(map(str, data.get('train_files', [])))} ({data.get('records', '?')} records)",
        f"- steps: {train.get('global_step')} optimizer steps (epoch {train.get('epoch')}),"
        f" batch {train.get('batch_size')} groups × (1 positive + {train.get('n_neg')} negatives)",
        f"- loss: {train.get('loss')}, optimizer: {train.get('optimizer')}, lr {train.get('lr')},"
        " warmup + cosine decay, gradient clipping 1.0",
        f"- wall time: {train.get('wall_time', '?')}",
        f"- hardware: {hw}",
        "",
        "## Validation (reranking fixed first-stage candidates)",
        "",
        f"{info.get('validation_note', '')}",
        "",
        _fmt_metrics(info.get("metrics", {})),
        "",
        "The exported weights are those of the last step (no checkpoint selection on these numbers).",
        "",
        "## Reproduce",
        "",
        "```bash",
        *[c for c in commands.values()],
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from reranker import ViRankerCrossEncoder",
        f"model = ViRankerCrossEncoder.from_pretrained({_display_path(out_dir)!r})",
        'model.rank("thủ đô của việt nam", ["Hà Nội là thủ đô ...", "..."], top_k=5)  # [{corpus_id, score}]',
        'model.predict([("thủ đô của việt nam", "Hà Nội là thủ đô ...")])  # raw logits',
        "```",
        "",
        "With this package installed, stock tooling loads the dir as well: `CrossEncoder(dir, trust_remote_code=True)`",
        "(sentence-transformers) and `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`.",
        "Calibrated scores (`compute_score(..., normalize=True)`): fit them with `python bench/calibrate.py <dir> --write`.",
        "",
        "## Data licenses",
        "",
        "Training text: Vietnamese Wikipedia paragraphs (CC BY-SA 3.0) and nanibot-qa train questions (MIT).",
        "No XQuAD-vi or nanibot-qa test question, and no passage of the demo corpus, was used for training.",
        "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
