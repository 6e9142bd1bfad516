#!/usr/bin/env bash
# Configure the git checkout in the current folder to commit notebooks through nbstripout (.gitattributes): no
# outputs, no language_info (it names this machine's Python version), cell ids kept.
#   bash scripts/git_notebook_filter.sh VENV     (scripts/setup.sh calls it with the checkout's venv)
# With the Jupyter save hook (sciknow/notebook_git.py), opening, running and saving a notebook changes nothing git sees.
set -euo pipefail
venv=$(cd "${1:?usage: git_notebook_filter.sh VENV}" && pwd)
strip="\"$venv/bin/python\" -m nbstripout --keep-id --extra-keys metadata.language_info"
git config filter.nbstripout.clean "$strip"
git config filter.nbstripout.smudge cat
git config filter.nbstripout.required true
git config diff.ipynb.textconv "$strip -t"
