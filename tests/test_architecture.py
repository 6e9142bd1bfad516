"""The package's shape: no import cycles (lazy imports inside functions count), and notebooks run this checkout."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "sciknow"


def import_graph() -> dict[str, set[str]]:
    """module -> the sciknow modules it imports anywhere in its code (top level, functions, TYPE_CHECKING aside)."""
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1 or base.startswith("sciknow"):
                    base = base.removeprefix("sciknow").lstrip(".")
                    targets |= {base.split(".")[0]} if base else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sciknow.")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt) and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node, [node])):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    print("\n".join(f"{m} -> {', '.join(sorted(t)) or '-'}" for m, t in sorted(graph.items())))
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": ["import sciknow\n", "print(sciknow.__file__)"]}],
            "metadata": {"kernelspec": {"display_name": "sciknow", "language": "python", "name": "sciknow"}},
            "nbformat": 4, "nbformat_minor": 5}


def test_a_notebook_imports_this_checkouts_sciknow_even_with_a_decoy_user_kernel(tmp_path):
    """setup.sh installs the kernel inside the venv; another clone's user-level "sciknow" kernel must not win."""
    decoy = tmp_path / "user-data" / "kernels" / "sciknow"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/other-clone/.venv/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sciknow", "language": "python"}))
    source, out = tmp_path / "where.ipynb", tmp_path / "out.ipynb"
    source.write_text(json.dumps(NOTEBOOK))
    env = {**os.environ, "JUPYTER_DATA_DIR": str(decoy.parent.parent)}  # the user-level data dir
    venv_bin = Path(sys.executable).parent
    done = subprocess.run([str(venv_bin / "papermill"), str(source), str(out), "-k", "sciknow", "--cwd",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    if "No such kernel" in done.stderr:
        pytest.fail("the sciknow kernel is not installed in the venv: run scripts/setup.sh")
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(out.read_text())["cells"][0]["outputs"][0]["text"]
    where = Path("".join(printed).strip())
    assert where.is_relative_to(REPO), f"the notebook imported {where}, not this checkout's sciknow"
