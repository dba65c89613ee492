#!/usr/bin/env bash
# The SmolLM2 quality result (results/README.md): train on the full data with and without the quality filter, for
# several seeds, merge, and generate the test letters, all through the stage scripts. The runs of one step start
# together: a 135M model leaves most of a GPU idle, so one H200 runs six trainings in about the time of one.
# Usage: bash results/run_smollm2.sh DATA_DIR OUT_DIR [extra train args...]
#   SEEDS="42 43 44" (default)  VARIANTS="full filtered" (default)  VALIDATION=1 also writes validation letters.
#   BASE=0 skips the base model's letters (they do not depend on the training args). NO_TEST=1 stops after merge.
#   Variants: full (all training rows), filtered (scripts/filter.py's quality rules), and on the filtered rows
#   mask / delete (the verifier's unbacked sentences get no loss / leave the target; the sign-off names the
#   applicant: train.py --unbacked_sentences, --sign_off).
# Then, on any machine: python metrics.py --run OUT_DIR/full-42 --train_data DATA_DIR   (and so on for each run)
set -euo pipefail
DATA=$1; OUT_DIR=$2; shift 2
PY=${PY:-python3}
SEEDS=${SEEDS:-42 43 44}
VARIANTS=${VARIANTS:-full filtered}
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
# Every step's runs in parallel; the first failure fails the script once all have ended.
together() {
  local pids=() status=0
  for run in "${RUNS[@]}"; do "$@" "$run" > "$OUT_DIR/$(basename "$run").$STEP.log" 2>&1 & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ $status = 0 ] || { tail -n 5 "$OUT_DIR"/*."$STEP".log; exit 1; }
}
mkdir -p "$OUT_DIR"
$PY scripts/filter.py "$DATA" "$OUT_DIR/data-filtered" > "$OUT_DIR/filter.log"
$PY -c "from coverlora.models import embedded_model_path; embedded_model_path()"  # convert once, before the runs
stamp "filter and conversion"
RUNS=()
for variant in $VARIANTS; do for seed in $SEEDS; do RUNS+=("$OUT_DIR/$variant-$seed"); done; done

train_one() {
  local run=$1 name variant; name=$(basename "$1"); variant=${name%-*}; local data=$DATA targets=()
  case $variant in
    full) targets=(--unbacked_sentences train --sign_off false) ;;  # the letters as they are, whatever the preset
    filtered) data=$OUT_DIR/data-filtered; targets=(--unbacked_sentences train --sign_off false) ;;
    mask|delete) data=$OUT_DIR/data-filtered; targets=(--unbacked_sentences "$variant" --sign_off true) ;;
    *) echo "unknown variant: $variant (full, filtered, mask, delete)" >&2; return 2 ;;
  esac
  $PY train.py --config configs/smollm2-gpu.yaml --data "$data" --output_dir "$run" --seed "${name##*-}" \
    "${targets[@]}" "${TRAIN_ARGS[@]}"
}
TRAIN_ARGS=("$@")
STEP=train together train_one
stamp train
STEP=merge together $PY merge.py --config configs/smollm2-gpu.yaml --run
stamp merge

test_one() {
  # The base model's letters do not depend on the seed or the data: the first run writes them.
  local models=finetuned
  [ "$1" = "${RUNS[0]}" ] && [ "${BASE:-1}" != 0 ] && models=base,finetuned
  $PY test.py --config configs/smollm2-gpu.yaml --run "$1" --data "$DATA" --models $models
  if [ -n "${VALIDATION:-}" ]; then
    $PY test.py --config configs/smollm2-gpu.yaml --run "$1" --models $models --split validation
  fi
}
[ -n "${NO_TEST:-}" ] && exit 0  # NO_TEST=1: trained and merged only
STEP=test together test_one
stamp test
