#!/usr/bin/env bash
# Grounded decoding and the claim filter on the SmolLM2 result (results/README.md), through the stage scripts:
#   - trains the quality-filtered model (seed 42) and one trained on data the claim checker also filtered;
#   - writes grounded-decoding candidates (greedy + CANDIDATES samples per row) at each temperature in TEMPERATURES,
#     for the validation rows (to tune on) and the test rows (to report the setting validation chose);
#   - writes the claim-filtered model's greedy test letters.
# Usage: bash results/run_grounded.sh DATA_DIR CLAIMS_DATA_DIR OUT_DIR
#   CLAIMS_DATA_DIR: python scripts/filter.py DATA_DIR CLAIMS_DATA_DIR --claims (run where MiniLM is installed).
# Then choose N and the temperature on validation and score test: python scripts/tune_candidates.py --help
set -euo pipefail
DATA=$1; CLAIMS_DATA=$2; OUT_DIR=$3
PY=${PY:-python3}
CANDIDATES=${CANDIDATES:-8}
TEMPERATURES=${TEMPERATURES:-0.7 1.0}
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
wait_all() { local status=0; for pid in "$@"; do wait "$pid" || status=1; done; return $status; }
mkdir -p "$OUT_DIR"
$PY scripts/filter.py "$DATA" "$OUT_DIR/data-filtered" > "$OUT_DIR/filter.log"
$PY -c "from coverlora.models import embedded_model_path; embedded_model_path()"
stamp "filter and conversion"

$PY train.py --config configs/smollm2-gpu.yaml --data "$OUT_DIR/data-filtered" --output_dir "$OUT_DIR/filtered-42" \
  > "$OUT_DIR/filtered-42.train.log" 2>&1 & a=$!
$PY train.py --config configs/smollm2-gpu.yaml --data "$CLAIMS_DATA" --output_dir "$OUT_DIR/claims-42" \
  > "$OUT_DIR/claims-42.train.log" 2>&1 & b=$!
wait_all $a $b
for run in filtered-42 claims-42; do $PY merge.py --config configs/smollm2-gpu.yaml --run "$OUT_DIR/$run" & done; wait
stamp "train and merge"

pids=()
$PY test.py --config configs/smollm2-gpu.yaml --run "$OUT_DIR/claims-42" --data "$DATA" --models finetuned \
  > "$OUT_DIR/claims-42.test.log" 2>&1 & pids+=($!)
for t in $TEMPERATURES; do
  run=$OUT_DIR/grounded-t$t
  cp -r "$OUT_DIR/filtered-42" "$run"
  (  # one stage at a time per run folder (its lock); the temperatures run side by side
    for split in validation test; do
      data_args=(); [ $split = test ] && data_args=(--data "$DATA")
      $PY test.py --config configs/smollm2-gpu.yaml --run "$run" --split $split "${data_args[@]}" --models finetuned \
        --decoding grounded --candidates "$CANDIDATES" --temperature "$t" \
        > "$run.$split.log" 2>&1
    done
  ) & pids+=($!)
done
wait_all "${pids[@]}" || { tail -n 5 "$OUT_DIR"/*.log; exit 1; }
stamp test
