"""What a newcomer meets in JupyterLab: every notebook asks for the checkout's kernel, and opening, running and
saving a notebook through the checkout's own Jupyter server leaves `git status` clean."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = {"display_name": "sciknow", "language": "python", "name": "sciknow"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_asks_for_the_checkouts_sciknow_kernel(notebook):
    assert json.loads(notebook.read_text())["metadata"]["kernelspec"] == KERNEL


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(notebook):
    # papermill reads `name = value  # comment` lines; one it cannot parse is missing from `--help-notebook` and
    # its `-p` is warned about as "unknown" (though injected): every assignment of the cell must parse.
    from papermill.inspection import inspect_notebook

    cell = next(c for c in json.loads(notebook.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    assigned = re.findall(r"^([A-Za-z_]\w*) *=", "".join(cell["source"]), re.M)
    assert assigned and [name for name in assigned if name not in inspect_notebook(str(notebook))] == []


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The checkout's Jupyter server (the venv's config plus configs/jupyter) on a loopback port, with a token."""

    def __init__(self, home: Path, command: list[str]):
        self.port, self.token = free_port(), "test-token"
        env = {**os.environ, "PYTHONPATH": str(REPO), "JUPYTER_CONFIG_DIR": str(home / "config"),
               "JUPYTER_CONFIG_PATH": str(REPO / "configs" / "jupyter"), "JUPYTER_RUNTIME_DIR": str(home / "rt")}
        self.log = (home / "server.log").open("w")
        self.process = subprocess.Popen(
            [*command, f"--port={self.port}", "--ServerApp.ip=127.0.0.1", "--no-browser",
             f"--IdentityProvider.token={self.token}"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.call("GET", "api/status")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter server did not start: {(home / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)

    def request(self, method: str, path: str, body: dict | None = None) -> urllib.request.Request:
        return urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        with urllib.request.urlopen(self.request(method, path, body), timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def language_info(python_version: str) -> dict:
    """What the ipykernel reports and JupyterLab writes into a notebook it opens."""
    return {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
            "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3", "version": python_version}


def as_the_lab_saves_it(notebook: dict, kernelspec: dict, python_version: str) -> dict:
    """The notebook after JupyterLab opened it, ran every code cell and saved it."""
    notebook = json.loads(json.dumps(notebook))
    notebook["metadata"]["kernelspec"] = kernelspec
    notebook["metadata"]["language_info"] = language_info(python_version)
    for count, cell in enumerate((c for c in notebook["cells"] if c["cell_type"] == "code"), start=1):
        cell["execution_count"] = count
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": f"ran cell {count}\n"}]
    return notebook


def test_saving_every_notebook_through_the_jupyter_server_leaves_git_status_clean(tmp_path):
    """A checkout set up like scripts/setup.sh does it (nbstripout filter + the server's save hook)."""
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    for dotfile in (".gitattributes", ".gitignore"):
        shutil.copy(REPO / dotfile, checkout)
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, checkout / "notebooks")
    git(checkout, "init", "-q")
    subprocess.run(["bash", str(REPO / "scripts" / "git_notebook_filter.sh"), str(Path(sys.executable).parents[1])],
                   cwd=checkout, check=True)
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notebooks")
    assert git(checkout, "status", "--porcelain") == ""

    server = Server(tmp_path, [sys.executable, "-m", "jupyter_server", f"--ServerApp.root_dir={checkout}",
                               "--allow-root"])
    try:
        specs = server.call("GET", "api/kernelspecs")["kernelspecs"]
        assert "sciknow" in specs, "the sciknow kernel is not installed in the venv: run scripts/setup.sh"
        spec = specs["sciknow"]["spec"]
        kernelspec = {"display_name": spec["display_name"], "language": spec["language"], "name": "sciknow"}
        # Every notebook, then two of them again from another Python version (as on another machine): the
        # language_info differs, git must not see it.
        for python_version, notebooks in (("3.10.12", NOTEBOOKS), ("3.13.1", NOTEBOOKS[1::6])):
            for notebook in notebooks:
                api_path = f"api/contents/notebooks/{notebook.name}"
                opened = server.call("GET", api_path + "?content=1")["content"]
                saved = as_the_lab_saves_it(opened, kernelspec, python_version)
                server.call("PUT", api_path, {"type": "notebook", "format": "json", "content": saved})
                on_disk = json.loads((checkout / "notebooks" / notebook.name).read_text())
                assert on_disk["metadata"]["language_info"]["version"] == python_version  # the Lab's save landed
            assert git(checkout, "status", "--porcelain") == "", f"after saving with Python {python_version}"
        # A real edit still shows.
        edited = server.call("GET", f"api/contents/notebooks/{NOTEBOOKS[0].name}?content=1")["content"]
        edited["cells"][0]["source"] += "\nedited"
        server.call("PUT", f"api/contents/notebooks/{NOTEBOOKS[0].name}",
                    {"type": "notebook", "format": "json", "content": edited})
        assert git(checkout, "status", "--porcelain").strip() == f"M notebooks/{NOTEBOOKS[0].name}"
    finally:
        server.stop()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "jupyter").exists(), reason="no .venv here (scripts/setup.sh)")
def test_lab_sh_serves_the_repo_root_and_opens_on_the_notebooks(tmp_path):
    server = Server(tmp_path, ["bash", str(REPO / "scripts" / "lab.sh")])
    try:
        names = {item["name"] for item in server.call("GET", "api/contents")["content"]}
        assert {"README.md", "notebooks", "data", "sciknow"} <= names  # runs/ too, once a notebook ran
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(NoRedirect).open(server.request("GET", ""), timeout=60)
        assert redirect.value.code == 302 and redirect.value.headers["Location"].startswith("/lab/tree/notebooks")
    finally:
        server.stop()
