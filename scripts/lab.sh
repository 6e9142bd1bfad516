#!/usr/bin/env bash
# Open the notebooks in JupyterLab with this checkout's venv and kernel. Extra arguments go to jupyter lab.
# These machines run everything as root, where jupyter refuses to start without --allow-root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/jupyter ]] || bash scripts/setup.sh
extra=()
[[ $(id -u) -eq 0 ]] && extra+=(--allow-root)
exec .venv/bin/jupyter lab notebooks "${extra[@]}" "$@"
