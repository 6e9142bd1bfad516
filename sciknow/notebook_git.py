"""Keep `git status` clean when JupyterLab saves a notebook whose committed content it did not change.

Notebooks are committed through the nbstripout clean filter (scripts/git_notebook_filter.sh): no outputs, no
execution counts, no `language_info`. But git compares a file's size with its index entry before it runs any
filter, so when JupyterLab opens an unedited notebook, adds `language_info` (or the user runs it) and saves,
`git status` calls the file modified while `git diff` is empty. The Jupyter server runs this hook after every save
(configs/jupyter/jupyter_server_config.json, installed into the venv by scripts/setup.sh): when the
filtered file still equals what the index holds, it re-adds the file, which stages nothing (the same blob) and
refreshes the recorded size, so `git status` agrees with `git diff`. A real edit is left alone.
"""
import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)


def refresh_index_after_save(os_path: str, model=None, contents_manager=None) -> bool:
    """Jupyter `post_save_hook`: True when the saved notebook matched the index and its entry was refreshed.

    Never raises: a failing hook would make the server refuse the save; git problems are logged instead.
    """
    path = Path(os_path)
    if path.suffix != ".ipynb":
        return False
    try:
        staged = _git(path.parent, "ls-files", "--stage", "--", path.name)
        if staged.returncode != 0 or not staged.stdout:
            return False  # not in a git checkout, or an untracked notebook
        index_blob = staged.stdout.split()[1]
        # hash-object applies the path's clean filter (nbstripout), as `git add` would.
        filtered = _git(path.parent, "hash-object", "--", path.name)
        if filtered.returncode != 0:
            log.warning("notebook_git: git hash-object failed on %s: %s", path, filtered.stderr.strip())
            return False
        if filtered.stdout.strip() != index_blob:
            return False  # a real change: git status should show it
        refreshed = _git(path.parent, "update-index", "--", path.name)
        if refreshed.returncode != 0:
            log.warning("notebook_git: git update-index failed on %s: %s", path, refreshed.stderr.strip())
            return False
        return True
    except (OSError, subprocess.TimeoutExpired) as error:  # git missing or hung: the save itself succeeded
        log.warning("notebook_git: could not refresh git's index for %s: %s", path, error)
        return False
