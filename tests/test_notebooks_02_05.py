"""Notebooks 02 (Task 1b) and 05 (Task 3) run end to end under papermill with smoke parameters.

The tiny random Llama (`tiny-llama`), one epoch, 8 new tokens and N in {0, 2}: each notebook takes well under two
minutes on a CPU. The assertions are on what the notebooks leave behind: the table CSV, the figure, the results.
"""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sciknow.config import REPO_ROOT, SHARED_DIR

papermill = pytest.importorskip("papermill")

NOTEBOOKS = REPO_ROOT / "notebooks"
PLOS = SHARED_DIR / "corpora" / "plos-starter"
# The shared PLOS corpus when this checkout has it; else the knowledge set's own irrelevant texts.
IRRELEVANT = "" if PLOS.is_dir() else "knowledge_set"
SMOKE = {"epochs": 1, "max_new_tokens": 8, "max_length": 64, "n_contents": [1], "n_irrelevant": [0, 2],
         "irrelevant_source": IRRELEVANT, "threads": 1}


def execute(name: str, tmp_path, **parameters) -> None:
    papermill.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=parameters,
                               cwd=str(NOTEBOOKS), progress_bar=False, kernel_name="python3")


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_scores(values) -> None:
    values = list(values)
    assert values and all(0.0 <= v <= 1.0 and not math.isnan(v) for v in values), values


@pytest.mark.timeout(600)
def test_notebook_02_task1b_smoke(tmp_path):
    out = tmp_path / "out02"
    # A list parameter as text, as papermill's `-p n_irrelevant '[0, 2]'` passes it.
    parameters = {**SMOKE, "n_irrelevant": "[0, 2]"}
    execute("02_task1b_irrelevant_texts.ipynb", tmp_path, model="tiny-llama", out_dir=str(out), **parameters)
    table = pd.read_csv(out / "table_1b.csv", index_col=0)
    assert list(table.index) == [1]  # one row per number of contents
    assert list(table.columns) == ["untrained", "0", "2"]  # the baseline, then one column per N
    assert_scores(table.to_numpy().ravel())
    runs = records(out / "results.jsonl")
    assert [r["status"] for r in runs] == ["ok"] * 3
    by_n = {r["config"]["data"]["n_irrelevant"]: r for r in runs if r["config"]["train"]["epochs"]}
    assert by_n[2]["n_texts"] == by_n[0]["n_texts"] + 2  # the irrelevant texts were mixed in
    assert all(r["config"]["train"]["max_length"] == 64 for r in runs)
    assert (out / "fig1b.png").stat().st_size > 10_000
    # Re-running resumes: nothing is trained twice.
    execute("02_task1b_irrelevant_texts.ipynb", tmp_path, model="tiny-llama", out_dir=str(out), **parameters)
    assert len(records(out / "results.jsonl")) == 3


@pytest.mark.timeout(600)
def test_notebook_05_task3_smoke(tmp_path):
    out = tmp_path / "out05"
    execute("05_task3_model_size_bits.ipynb", tmp_path, models=["tiny-llama"], precisions=["fp32", "nf4"],
            adapter_sets=["selected"], lora_r=8, lora_alpha=24, out_dir=str(out), **SMOKE)
    table = pd.read_csv(out / "table_3.csv", index_col=0)
    assert list(table.index) == ["tiny-llama fp32 selected", "tiny-llama nf4 selected"]
    assert list(table.columns) == ["untrained", "contents=1 N=0", "contents=1 N=2"]
    assert_scores(table.to_numpy().ravel())
    runs = records(out / "results.jsonl")
    assert [r["status"] for r in runs] == ["ok"] * 6  # per precision: untrained + N=0 + N=2
    trained = [r for r in runs if r["config"]["train"]["epochs"]]
    assert {r["config"]["model"]["precision"] for r in trained} == {"fp32", "nf4"}
    assert all(r["config"]["train"]["method"] == "lora" and r["config"]["train"]["lora_r"] == 8 for r in trained)
    assert all(r["config"]["train"]["layer_groups"] == ["embed_tokens", "v_proj", "o_proj", "gate_proj",
                                                        "down_proj", "lm_head"] for r in trained)
    assert (out / "fig4.png").stat().st_size > 10_000
