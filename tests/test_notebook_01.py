"""Notebook 01 executed headless by papermill with smoke parameters; asserts on what it produced."""
import json

import pandas as pd
import papermill
import pytest

from conftest import REPO
from sciknow.conditions import spread_documents
from sciknow.config import SUITE_DIR
from sciknow.data import load_suite

NOTEBOOK = REPO / "notebooks/01_task1a_full_training.ipynb"
SMOKE = {"model": "tiny-llama", "n_contents": [1, 2], "epochs": 2, "max_new_tokens": 6, "lr": 1e-3}


def execute(tmp_path, **parameters) -> dict:
    """Run the notebook; return the executed notebook (its outputs)."""
    executed = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(executed), parameters={**SMOKE, **parameters},
                               cwd=str(REPO / "notebooks"), progress_bar=False)
    return json.loads(executed.read_text())


def cell_outputs(notebook: dict, code: str) -> list[dict]:
    """The outputs of the one code cell whose source contains `code`."""
    (cell,) = [c for c in notebook["cells"] if c["cell_type"] == "code" and code in "".join(c["source"])]
    return cell["outputs"]


def test_notebook_01_produces_table_and_figure(tmp_path):
    out = tmp_path / "run"
    executed = execute(tmp_path, out_dir=str(out))
    table = pd.read_csv(out / "table_1a.csv", index_col=0)
    assert list(table.index) == [1, 2]
    assert list(table.columns) == ["untrained", "1", "2"]
    assert table.stack().between(0, 1).all()
    assert (out / "fig1a.png").stat().st_size > 10_000
    assert sum(1 for _ in open(out / "results.jsonl")) == 3  # untrained + two trained runs
    # `run_many(...);` shows no return value (the records would fill pages).
    assert not [o for o in cell_outputs(executed, "experiment.run_many(") if o["output_type"] == "execute_result"]


@pytest.mark.timeout(900)
def test_notebook_01_replicated_over_documents_and_seeds_shows_cis(tmp_path):
    out = tmp_path / "run"
    executed = execute(tmp_path, documents=2, seeds=[0, 1], out_dir=str(out))
    table = pd.read_csv(out / "table_1a.csv")
    assert list(zip(table["contents"], table["epoch"])) == [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert ((table["ci_low"] <= table["mean"] + 1e-9) & (table["mean"] <= table["ci_high"] + 1e-9)).all()
    assert (table["n_documents"] == 2).all()
    assert list(table["n_seeds"]) == [1, 2, 2, 2, 2]  # the untrained model runs once per document
    assert list(table["steps"]) == [0, 1, 2, 2, 4]  # batch 1: one step per content per epoch
    assert (out / "fig1a.png").stat().st_size > 10_000
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(runs) == 2 + 2 * 2 * 2  # untrained per document + documents x seeds x n_contents
    names = spread_documents(load_suite(SUITE_DIR), 2)
    assert {r["config"]["data"]["documents"][0] for r in runs} == set(names)
    assert {r["config"]["train"]["seed"] for r in runs} == {0, 1}
    # The answers table shows every question whole (pandas cuts cells at 50 characters by default).
    shown = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in cell_outputs(executed, "display(said"))
    questions = [q.question for k in load_suite(SUITE_DIR, names) for q in k.questions]
    assert any(len(q) > 50 and q in shown for q in questions)
