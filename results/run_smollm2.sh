#!/usr/bin/env bash
# The SmolLM2 quality result (results/README.md): train on the full data with and without the quality
# filter, merge, and generate the test letters (and the validation letters) — all through the stage scripts.
# Usage: bash results/run_smollm2.sh DATA_DIR OUT_DIR [extra train args...]
set -euo pipefail
DATA=$1; OUT_DIR=$2; shift 2
PY=${PY:-python3}
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
$PY scripts/filter.py "$DATA" "$OUT_DIR/data-filtered"
stamp filter
for variant in full filtered; do
  data=$DATA; [ $variant = filtered ] && data=$OUT_DIR/data-filtered
  run=$OUT_DIR/$variant
  $PY train.py --config configs/smollm2-gpu.yaml --data "$data" --output_dir "$run" "$@"
  stamp "$variant train"
  $PY merge.py --config configs/smollm2-gpu.yaml --run "$run"
  stamp "$variant merge"
  models=base,finetuned; [ $variant = filtered ] && models=finetuned
  $PY test.py --config configs/smollm2-gpu.yaml --run "$run" --models $models ${TEST_ARGS:-}
  stamp "$variant test"
  if [ -z "${SKIP_VALIDATION:-}" ]; then
    $PY test.py --config configs/smollm2-gpu.yaml --run "$run" --models $models --split validation ${TEST_ARGS:-}
    stamp "$variant validation"
  fi
done
