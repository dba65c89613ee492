#!/usr/bin/env bash
# The whole pipeline on the CPU, offline: train → merge → test → metrics with configs/demo-cpu.yaml.
# Extra arguments go to every stage, e.g.:  bash scripts/demo.sh --output_dir runs/demo2
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
start=$(date +%s)
for stage in train merge test metrics; do
  t0=$(date +%s)
  if [ "$stage" = train ] && [ -f "runs/demo/adapter/adapter_config.json" ] && [ "$*" = "" ]; then
    echo "== train: runs/demo already trained (delete runs/demo to retrain)"
  else
    echo "== $stage"
    $PY "$stage.py" --config configs/demo-cpu.yaml "$@"
  fi
  echo "== $stage took $(( $(date +%s) - t0 )) s"
done
echo "== demo pipeline took $(( $(date +%s) - start )) s; report: runs/demo/report.md"
