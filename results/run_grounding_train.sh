#!/usr/bin/env bash
# Training for grounding (issue 25), on the quality-filtered training rows, three seeds each, greedy test letters:
#   STEP sft: today's targets (filtered), sentence-masked targets (mask) and sentence-deleted targets (delete), both
#             with the applicant's sign-off: nine trainings started together (results/run_smollm2.sh: train, merge,
#             test letters; the first run also writes the base model's letters).
#   STEP dpo: DPO (prefer.py) on top of each SFT run of DPO_ON (default mask), the seeds together; merged and tested
#             the same way, into OUT_DIR/dpo<DPO_TAG>-<variant>-<seed>. DPO_ARGS: prefer.py's settings (e.g.
#             "--learning_rate 5e-5"); PAIRS_FROM=<tag>: reuse the pairs that run sampled (same SFT run and sampling
#             settings: prefer.py --resume keeps them) instead of sampling again. VALIDATION=1 also writes the
#             validation letters (to choose DPO's settings on; never the test rows).
#   STEP sft-only: the SFT runs of SFT_VARIANTS (default mask) trained and merged, no letters (DPO's starting point).
# Usage: bash results/run_grounding_train.sh DATA_DIR OUT_DIR sft|sft-only|dpo      (SEEDS="42 43 44" by default)
# Then, on any machine, for every run folder R under OUT_DIR:
#   python metrics.py --run R --train_data DATA_DIR
#   python scripts/seeds.py --grounding filtered=OUT_DIR/filtered-42,OUT_DIR/filtered-43,... mask=... delete=...
set -euo pipefail
DATA=$1; OUT_DIR=$2; STEP=$3
PY=${PY:-python3}
SEEDS=${SEEDS:-42 43 44}
CFG=configs/smollm2-gpu.yaml
T0=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - T0 )) s"; }
if [ "$STEP" = sft ]; then
  VARIANTS="filtered mask delete" SEEDS="$SEEDS" bash results/run_smollm2.sh "$DATA" "$OUT_DIR"
  stamp "sft: train, merge, test letters"
elif [ "$STEP" = sft-only ]; then
  VARIANTS="${SFT_VARIANTS:-mask}" SEEDS="$SEEDS" NO_TEST=1 bash results/run_smollm2.sh "$DATA" "$OUT_DIR"
  stamp "sft: train, merge"
elif [ "$STEP" = dpo ]; then
  pids=()
  read -r -a dpo_args <<< "${DPO_ARGS:-}"
  for variant in ${DPO_ON:-mask}; do for seed in $SEEDS; do  # 135M models leave most of the GPU idle
    run=$OUT_DIR/dpo${DPO_TAG:-}-$variant-$seed; resume=()
    if [ -n "${PAIRS_FROM+x}" ]; then
      mkdir -p "$run" && cp "$OUT_DIR/dpo$PAIRS_FROM-$variant-$seed/pairs.partial.jsonl" "$run/" && resume=(--resume)
    fi
    ( $PY prefer.py --run "$OUT_DIR/$variant-$seed" --output_dir "$run" "${resume[@]}" "${dpo_args[@]}" \
      && $PY merge.py --config $CFG --run "$run" \
      && $PY test.py --config $CFG --run "$run" --data "$DATA" --models finetuned \
      && if [ -n "${VALIDATION:-}" ]; then $PY test.py --config $CFG --run "$run" --models finetuned --split validation; fi
    ) > "$run.log" 2>&1 & pids+=($!)
  done; done
  status=0; for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ $status = 0 ] || { tail -n 5 "$OUT_DIR"/dpo*.log; exit 1; }
  stamp "dpo: pairs, training, merge, test letters"
else
  echo "STEP must be sft, sft-only or dpo" >&2; exit 2
fi
