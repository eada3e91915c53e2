#!/usr/bin/env bash
# Runs hybrid, dense, bm25 on the hard dev sets (hybrid first: it builds the cached index with vectors,
# which the others reuse) and the paired significance tests. Usage: bash docs/results/hard_devsets/run_evals.sh [set ...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-python}
OUT=docs/results/hard_devsets
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for set in "${@:-xquad-vi-hard nanibot-test-hard}"; do
  for set1 in $set; do
    for p in hybrid dense bm25; do
      $PY -m search.eval var/devsets/$set1 --pipeline $p --json \
          --per-query-out $OUT/$set1.$p.per_query.json --report-out $OUT/$set1.$p.report.json \
          2> $OUT/$set1.$p.log | tail -n 1 > $OUT/$set1.$p.json
      cat $OUT/$set1.$p.json
    done
    for base in bm25 dense; do
      $PY -m search.significance $OUT/$set1.$base.per_query.json $OUT/$set1.hybrid.per_query.json \
          > $OUT/$set1.hybrid_vs_$base.significance.json
    done
  done
done
