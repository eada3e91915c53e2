#!/usr/bin/env bash
# hybrid+viranker (learned blend in the model dir) on the hard dev sets, per-query files for paired tests.
#   MODEL=var/models/gated-step0 bash docs/results/gated/run_default_evals.sh TAG
set -euo pipefail
tag=${1:-step0}
out=docs/results/gated
PY=${PY:-python}
export VIRANKER_MODEL=${MODEL:-var/models/gated-step0}
$PY -m search.eval var/devsets/nanibot-test-hard --pipeline hybrid+viranker --json --no-progress \
    --per-query-out $out/nanibot-test-hard.$tag.per_query.json > $out/nanibot-test-hard.$tag.json
$PY -m search.eval var/devsets/xquad-vi-hard --pipeline hybrid+viranker --json --no-progress --sample 300 \
    --per-query-out $out/xquad-vi-hard.s300.$tag.per_query.json > $out/xquad-vi-hard.s300.$tag.json
