"""The package's shape: no import cycles and the core never imports the producers (lazy and type-hint imports
count), and notebooks run this checkout."""
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
PRODUCERS = "make"  # sciknow/make/: pipelines that write the files the core reads


def module_files() -> dict[str, Path]:
    """Dotted module name under sciknow ("config", "make.augment", "make" for its __init__) -> file."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name:
            files[name] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """module -> the sciknow modules it imports anywhere in its code: top level, inside functions, and under
    `if TYPE_CHECKING:` too (a type hint is a dependency of the reader, and a cycle through one is still a cycle)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name.removeprefix("sciknow.") for a in node.names if a.name.startswith("sciknow.")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: "." is this package, ".." its parent
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                elif node.module == "sciknow" or (node.module or "").startswith("sciknow."):
                    base = node.module.removeprefix("sciknow").lstrip(".")
                else:
                    continue
                for alias in node.names:  # "from sciknow import io" imports the module io
                    full = f"{base}.{alias.name}" if base else alias.name
                    targets.add(full if full in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def is_producer(module: str) -> bool:
    return module == PRODUCERS or module.startswith(PRODUCERS + ".")


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


def test_the_core_never_imports_the_producers():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() if not is_producer(m)
                    for t in targets if is_producer(t))
    assert not upward, f"core modules import sciknow.make: {upward}"


def test_the_graph_sees_type_hint_relative_and_producer_imports(tmp_path, monkeypatch):
    """The rules above are only as good as the graph: it must see every kind of import they guard against."""
    fake = tmp_path / "sciknow"
    (fake / "make").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "make" / "__init__.py").write_text("")
    (fake / "make" / "writer.py").write_text("from ..core import f\nfrom . import other\n")
    (fake / "make" / "other.py").write_text("")
    (fake / "core.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from .make.writer import W\ndef f():\n    from sciknow import plain\n")
    (fake / "plain.py").write_text("import sciknow.core\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = import_graph()
    assert graph == {"make": set(), "make.writer": {"core", "make.other"}, "make.other": set(),
                     "core": {"make.writer", "plain"}, "plain": {"core"}}
    assert find_cycle(graph) == ["core", "make.writer", "core"]  # through the type hint


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
