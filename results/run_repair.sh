#!/usr/bin/env bash
# Greedy, best-of-N grounded decoding and sentence repair on the SmolLM2 result, on the same rows, through the
# stage scripts (README's grounded letters; results/README.md).
# Usage: bash results/run_repair.sh DATA_DIR OUT_DIR STEP
#   STEP train: the quality-filtered model (seed 42), merged; greedy letters of both models for the test rows and
#               the fine-tuned model's greedy validation letters.
#   STEP tune:  repair on the validation rows for each TRIES:TEMPERATURE in SETTINGS (default "2:0.7 4:0.7 4:1.0"),
#               one after the other, then scripts/tune_repair.py picks one (validation only).
#   STEP threshold: repair at the flag threshold scripts/repair_threshold.py chose on the readings' validation
#               part (THRESHOLD, default 0.06), for each TRIES:TEMPERATURE in THRESHOLD_SETTINGS (default
#               "2:0.7 4:0.7"): validation letters (for scripts/tune_repair.py) and test letters.
#   STEP test:  the fine-tuned model's greedy letters alone (the time repair is held to), repair on the test rows
#               with the chosen setting, then grounded decoding (8 samples at 0.7). On a GPU all three decode on
#               the slot engine (kv_cache auto).
# Then, on any machine: python metrics.py --run OUT_DIR/filtered-42 --train_data DATA_DIR (and repair, grounded).
set -euo pipefail
DATA=$1; OUT_DIR=$2; STEP=$3
PY=${PY:-python3}
CFG=configs/smollm2-gpu.yaml
SETTINGS=${SETTINGS:-2:0.7 4:0.7 4:1.0}
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
mkdir -p "$OUT_DIR"
RUN=$OUT_DIR/filtered-42
copy_run() { rm -rf "$2"; cp -r "$1" "$2"; rm -f "$2"/eval*.csv "$2"/eval*.jsonl "$2"/test*_config.yaml; }

if [ "$STEP" = train ]; then
  $PY scripts/filter.py "$DATA" "$OUT_DIR/data-filtered" > "$OUT_DIR/filter.log"
  $PY -c "from coverlora.models import embedded_model_path; embedded_model_path()"
  stamp "filter and conversion"
  $PY train.py --config $CFG --data "$OUT_DIR/data-filtered" --output_dir "$RUN" > "$RUN.train.log" 2>&1
  stamp train
  $PY merge.py --config $CFG --run "$RUN" > "$RUN.merge.log" 2>&1
  stamp merge
  $PY test.py --config $CFG --run "$RUN" --data "$DATA" > "$RUN.test.log" 2>&1
  stamp "greedy test letters (base and fine-tuned)"
  $PY test.py --config $CFG --run "$RUN" --split validation --models finetuned > "$RUN.validation.log" 2>&1
  stamp "greedy validation letters"
elif [ "$STEP" = tune ]; then
  runs=()
  for setting in $SETTINGS; do
    tries=${setting%:*}; t=${setting#*:}; run=$OUT_DIR/repair-k$tries-t$t; runs+=("$run")
    copy_run "$RUN" "$run"
    $PY test.py --config $CFG --run "$run" --split validation --models finetuned --decoding repair \
      --repair_tries "$tries" --temperature "$t" > "$run.validation.log" 2>&1 || { tail -n 5 "$run.validation.log"; exit 1; }
    stamp "repair K$tries T$t on the validation rows"
  done
  $PY scripts/tune_repair.py "$RUN" "${runs[@]}" --out "$OUT_DIR/repair_validation.md" | tee "$OUT_DIR/tune.log"
elif [ "$STEP" = threshold ]; then
  threshold=${THRESHOLD:-0.06}
  for setting in ${THRESHOLD_SETTINGS:-2:0.7 4:0.7}; do
    tries=${setting%:*}; t=${setting#*:}; run=$OUT_DIR/repair-thr$threshold-k$tries-t$t
    copy_run "$RUN" "$run"
    flags=(--models finetuned --decoding repair --repair_tries "$tries" --temperature "$t" --repair_threshold "$threshold")
    $PY test.py --config $CFG --run "$run" --split validation "${flags[@]}" > "$run.validation.log" 2>&1
    $PY test.py --config $CFG --run "$run" --data "$DATA" "${flags[@]}" > "$run.test.log" 2>&1
    stamp "repair at threshold $threshold, K$tries T$t: validation and test letters"
  done
elif [ "$STEP" = test ]; then
  read -r _ tries t threshold < <(grep '^chosen:' "$OUT_DIR/tune.log")
  chosen=(--repair_tries "$tries" --temperature "$t" ${threshold:+--repair_threshold "$threshold"})
  copy_run "$RUN" "$OUT_DIR/greedy"; copy_run "$RUN" "$OUT_DIR/repair"; copy_run "$RUN" "$OUT_DIR/grounded"
  # one after the other: each stage's time is its own (the manifests' seconds, eval.csv's per-row seconds)
  $PY test.py --config $CFG --run "$OUT_DIR/greedy" --data "$DATA" --models finetuned > "$OUT_DIR/greedy.test.log" 2>&1
  stamp "greedy test letters (fine-tuned alone)"
  $PY test.py --config $CFG --run "$OUT_DIR/repair" --data "$DATA" --models finetuned --decoding repair "${chosen[@]}" \
    > "$OUT_DIR/repair.test.log" 2>&1
  stamp "repair test letters"
  $PY test.py --config $CFG --run "$OUT_DIR/grounded" --data "$DATA" --models finetuned --decoding grounded \
    --candidates 8 --temperature 0.7 > "$OUT_DIR/grounded.test.log" 2>&1
  stamp "grounded test letters"
fi
