"""ViRanker training: mined triplets → Lightning fit → exported ``from_pretrained`` model directory.

Modules (one concept each):

- :mod:`trainer.ict` — Inverse Cloze Task pairs (a sentence → the rest of its paragraph).
- :mod:`trainer.mine` — hybrid hard negatives (BM25 top-20 → e5 cosine → MMR), resumable FlagEmbedding JSONL
  writer; :mod:`trainer.pool` (groups, near-duplicates, blocklist of demo/eval passages, pool vectors) and
  :mod:`trainer.searchers` (the BM25 first stages over the pool).
- :mod:`trainer.data` — groups (1 positive + n negatives), length bucketing, the ``RerankDataModule``;
  :mod:`trainer.augment` (diacritic / sentence augmentation), :mod:`trainer.candidates` (validation pairs).
- :mod:`trainer.config` — ``FitConfig``: the loss and optimizer defaults, written once.
- :mod:`trainer.losses` — triplet ranking / listwise softmax / BCE losses, multi-exit weighting.
- :mod:`trainer.optim` — AdamW / Lion, warmup + cosine schedule.
- :mod:`trainer.module` — the ``RerankerModule`` (LightningModule) and the time-budget schedule callback.
- :mod:`trainer.export` — checkpoint → vocabulary-pruned fp16 model dir with a model card.
- ``python -m trainer``: :mod:`trainer.__main__` dispatches to :mod:`trainer.cli_mine` (``mine``,
  ``candidates``), :mod:`trainer.cli_fit` and :mod:`trainer.cli_export`.

The shipped run (``python -m trainer --help`` for every option)::

    python -m trainer mine --pool ../shared/data/viwiki/paragraphs.jsonl.gz --pool-sample 2500 --ict 2500 \\
        --beir ../shared/data/nanibot-qa --out var/train/triplets-hybrid.jsonl
    python -m trainer candidates --out var/train/dev-candidates.jsonl
    bash bench/train_ablations.sh        # the ablation runs (docs/benchmarks.md §3c), same data
    python -m trainer fit --config trainer/configs/viranker-small-cpu.yaml   # validates, checkpoints, exports
    python -m trainer fit --config trainer/configs/viranker-gated-cpu.yaml   # e5 bi-encoder + gated cross attention
    python -m trainer fit --config trainer/configs/viranker-joint-cpu.yaml   # its ablation (= the shipped recipe)
    python -m trainer export runs/viranker-small-cpu/checkpoints/final.ckpt assets/models/viranker-small
"""
