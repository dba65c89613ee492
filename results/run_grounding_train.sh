#!/usr/bin/env bash
# Training for grounding (issue 25): sentence-masked and sentence-deleted targets with the applicant's sign-off,
# on all 813 training rows, three seeds each (results/run_smollm2.sh does the training, merging and test letters);
# then DPO (prefer.py) on top of each masked run, merged and tested the same way.
# Usage: bash results/run_grounding_train.sh DATA_DIR OUT_DIR      (SEEDS="42 43 44" by default)
# Then, on any machine, for every run folder R under OUT_DIR/*/:
#   python metrics.py --run R --train_data DATA_DIR
#   python scripts/seeds.py --grounding masked=OUT_DIR/mask/full-42,OUT_DIR/mask/full-43,... (one list per variant)
set -euo pipefail
DATA=$1; OUT_DIR=$2
PY=${PY:-python3}
SEEDS=${SEEDS:-42 43 44}
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
for targets in mask delete; do
  VARIANTS=full BASE=0 SEEDS="$SEEDS" bash results/run_smollm2.sh "$DATA" "$OUT_DIR/$targets" \
    --unbacked_sentences "$targets" --sign_off true
  stamp "$targets: train, merge, test letters"
done
pids=()
for seed in $SEEDS; do  # one 135M model leaves most of the GPU idle: the seeds run together
  run=$OUT_DIR/mask/full-$seed
  ( $PY prefer.py --run "$run" --output_dir "$OUT_DIR/dpo/full-$seed" \
    && $PY merge.py --config configs/smollm2-gpu.yaml --run "$OUT_DIR/dpo/full-$seed" \
    && $PY test.py --config configs/smollm2-gpu.yaml --run "$OUT_DIR/dpo/full-$seed" --data "$DATA" --models finetuned
  ) > "$OUT_DIR/dpo-$seed.log" 2>&1 & pids+=($!)
done
status=0; for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status = 0 ] || { tail -n 5 "$OUT_DIR"/dpo-*.log; exit 1; }
stamp "dpo: pairs, training, merge, test letters"
