#!/usr/bin/env bash
# Quick start, command 2: set up, then run the whole test suite (tiny random models for most tests, the
# embedded SmolLM2 for a few end-to-end ones, a real PostgreSQL server on loopback for the multi-worker sweep).
# Extra arguments go to pytest, e.g. `-m "not slow"` or `-k keyword`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -ra --durations=15 "$@"
