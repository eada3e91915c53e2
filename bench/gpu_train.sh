#!/usr/bin/env bash
# The prepared GPU run (docs/gpu.md): train the gated ViRanker from the pack on one GPU in < 9 minutes and leave
# in $OUT what comes back: model-0000i-of-0000n.safetensors (fp16, <= 15 MiB each), vocab_map.safetensors,
# gpu_run.json (config, learning curve, gates, timings) and train.log.
#
#   on the device machine (the run tool, carry ["var/gpu_pack"]):  bash bench/gpu_train.sh
#   here, on CPU, at tiny size:                                  OUT=/tmp/o bash bench/gpu_train.sh --device cpu --tiny
#
# Extra arguments go to `python -m trainer.gpu.train` (e.g. trainer.max_time=00:00:04:00 data.batch_size=64).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-var/gpu_out}
PACK=${PACK:-var/gpu_pack}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log="$OUT/train.log"
{
  date -u +"start %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__)"
  du -sh "$PACK" 2>&1
} 2>&1 | tee "$log"
"$PY" -m trainer.gpu.train --pack "$PACK" --out "$OUT" "$@" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
{ date -u +"end %Y-%m-%dT%H:%M:%SZ rc=$rc"; ls -l "$OUT"; } 2>&1 | tee -a "$log"
exit "$rc"
