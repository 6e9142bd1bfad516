#!/usr/bin/env bash
# Open JupyterLab with this checkout's venv and kernel. It serves the repo root, so the file browser reaches runs/
# (tables, figures), README.md and data/, and opens on notebooks/. Extra arguments go to jupyter lab.
# These machines run everything as root, where jupyter refuses to start without --allow-root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/jupyter ]] || bash scripts/setup.sh
extra=()
[[ $(id -u) -eq 0 ]] && extra+=(--allow-root)
exec .venv/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks "${extra[@]}" "$@"
