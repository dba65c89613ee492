#!/usr/bin/env bash
# Does QLoRA need peft's fp32 upcast of the frozen norms and embeddings (kbit_upcast all), or can they stay bf16
# (kbit_upcast none, 37% faster on a 7B step)? Real SmolLM2-135M runs on the full data, 4-bit NF4, 3 seeds each:
# the train and validation loss curves (train_log.jsonl) and the test letters, then, on any machine,
#   python metrics.py --run OUT_DIR/upcast-all/full-42 --train_data DATA_DIR   (and so on for each run)
# and python bench/kbit_upcast_table.py OUT_DIR for the comparison. After that, the 7B speed of both paths.
# Usage (GPU): bash bench/kbit_upcast.sh DATA_DIR OUT_DIR
set -euo pipefail
DATA=$1; OUT_DIR=$2
PY=${PY:-python3}
mkdir -p "$OUT_DIR"
$PY -c "from coverlora.models import embedded_model_path; embedded_model_path()"  # convert once, before the runs
# Both variants' six runs share the GPU at once (a 135M model leaves most of it idle); base letters are skipped.
for upcast in all none; do
  VARIANTS=full BASE=0 bash results/run_smollm2.sh "$DATA" "$OUT_DIR/upcast-$upcast" \
    --quantization nf4 --precision bf16 --kbit_upcast "$upcast" > "$OUT_DIR/upcast-$upcast.log" 2>&1 &
done
wait
tail -n 3 "$OUT_DIR"/upcast-*.log
# The 7B shape's training speed on both paths (the h100 preset: NF4, packed 8192, flex attention, Liger).
TQDM_DISABLE=1 $PY bench/train_bench.py --configs qlora_pack8k_flex_liger,qlora_pack8k_flex_liger_bf16res \
  --steps 8 --warmup 2 --train-csv "$DATA/train.csv" --ckpt-dir /tmp/rand7b --out-dir "$OUT_DIR" --tag kbit-upcast
