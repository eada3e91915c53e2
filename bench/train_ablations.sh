#!/usr/bin/env bash
# Training ablations of issue 5 §4 and issue 8 §4 at equal, short budgets, then each model's held-out
# reranking quality. Resumable: a finished step (mined file, final checkpoint, result log) is skipped.
#
#   bash bench/train_ablations.sh [STEPS]        # default 250 steps per run (~17 min each on 2 CPU cores)
#
# Variants (all else as trainer/configs/viranker-small-cpu.yaml; one change each against `base`):
#   base      hybrid hard negatives, triplet loss, AdamW 5e-5, 25% of queries folded (diacritics stripped)
#   no-fold   no diacritic augmentation                                   (issue 8 §4)
#   random    random negatives instead of hybrid hard negatives          (issue 5 §4)
#   lion      Lion, lr 2e-5, weight decay 0.1                              (issue 5 §4)
#   listwise  listwise softmax cross-entropy instead of the triplet loss  (issue 5 §4)
# Each model is then scored at its layer-3 head (the shipped one) on 120 held-out Nanibot test questions x
# BM25 top-20, queries as written and without diacritics.
# Results: runs/ablations/<variant>/rerank_quality.log (last line JSON); docs/benchmarks.md §3c.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-250}
DATA=${VIRANKER_DATA:-../shared/data}
OUT=runs/ablations
mkdir -p var/train "$OUT"
export OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false

mine() {  # $1 strategy, $2 output
    [ -s "$2.meta.json" ] && return 0
    python -m trainer mine --pool "$DATA/viwiki/paragraphs.jsonl.gz" --pool-sample 2500 --ict 2500 \
        --beir "$DATA/nanibot-qa" --beir-split train --beir-prefix nanibot-train- \
        --strategy "$1" --seed 13 --out "$2"
}
while pgrep -f "trainer mine" > /dev/null; do sleep 15; done  # a mining run already under way
mine hybrid var/train/triplets-hybrid.jsonl
mine random var/train/triplets-random.jsonl
[ -s var/train/dev-candidates.jsonl ] || python -m trainer candidates --out var/train/dev-candidates.jsonl
[ -s var/train/nanibot-test-top20.jsonl ] || python -m trainer candidates --beir "$DATA/nanibot-qa" \
    --split test --k 20 --max-queries 0 --all-queries --out var/train/nanibot-test-top20.jsonl

declare -A OVERRIDES=(
    [base]=""
    [no-fold]="data.fold_prob=0.0"
    [random]="data.train_files=[var/train/triplets-random.jsonl]"
    [lion]="optim.name=lion optim.lr=2.0e-5 optim.weight_decay=0.1"
    [listwise]="loss.name=listwise"
)
for v in base no-fold random lion listwise; do
    run="$OUT/$v"
    if [ ! -f "$run/checkpoints/final.ckpt" ]; then
        resume=""
        [ -f "$run/checkpoints/last.ckpt" ] && resume="--resume"
        # shellcheck disable=SC2086
        python -m trainer fit --config trainer/configs/viranker-small-cpu.yaml --no-export $resume \
            trainer.run_dir="$run" trainer.max_steps="$STEPS" trainer.max_time=null \
            trainer.val_check_interval=50 ${OVERRIDES[$v]} > "$run.fit.log" 2>&1
    fi
    [ -s "$run/rerank_quality.log" ] || python bench/rerank_quality.py "$run/checkpoints/final.ckpt" \
        --limit 120 --layers 3 --alphas 0.3 --json > "$run/rerank_quality.log" 2> "$run/rerank_quality.err"
    tail -1 "$run/rerank_quality.log"
done
