#!/usr/bin/env bash
# The letter service on a GPU, once per decoding engine: serve.py on a run folder, then bench/serve_load.py at 1 and
# 8 concurrent clients (8 requests each; random weights run every letter to the cap, so each costs the same).
#
#   bash bench/serve_gpu.sh RUN OUT [ENGINES] [MAX_NEW_TOKENS]
#   bash bench/serve_gpu.sh /tmp/coverlora-genbench/run bench/results/serve_gpu slots,staged 256
#
# RUN is any run folder with merged/ (bench/gen_bench.py leaves a random Llama-2-7B one). Writes OUT/<engine>.json
# (serve_load's results) and OUT/<engine>.log (the service's log).
set -euo pipefail
run=$1 out=$2 engines=${3:-slots,staged} tokens=${4:-256} port=${PORT:-8765}
mkdir -p "$out"
for engine in ${engines//,/ }; do
  python3 serve.py --run "$run" --kv_cache "$engine" --port "$port" --max_new_tokens "$tokens" > "$out/$engine.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 300); do  # the model loads before the service answers
    curl -sf --max-time 2 "http://127.0.0.1:$port/healthz" > /dev/null && break
    kill -0 $pid 2>/dev/null || { tail -5 "$out/$engine.log"; exit 1; }
    sleep 1
  done
  python3 bench/serve_load.py --url "http://127.0.0.1:$port" --levels 1,8 --requests 8 --max_new_tokens "$tokens" \
      --out "$out/$engine.json"
  kill $pid && wait $pid 2>/dev/null || true
done
