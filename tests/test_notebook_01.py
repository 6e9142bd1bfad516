"""Notebook 01 executed headless by papermill with smoke parameters; asserts on what it produced."""
import pandas as pd
import papermill

from conftest import REPO


def test_notebook_01_produces_table_and_figure(tmp_path):
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/01_task1a_full_training.ipynb"), str(tmp_path / "01.ipynb"),
        parameters={"model": "tiny-llama", "n_contents": [1, 2], "epochs": 2, "max_new_tokens": 6,
                    "lr": 1e-3, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_1a.csv", index_col=0)
    assert list(table.index) == [1, 2]
    assert list(table.columns) == ["untrained", "1", "2"]
    assert table.stack().between(0, 1).all()
    assert (out / "fig1a.png").stat().st_size > 10_000
    assert sum(1 for _ in open(out / "results.jsonl")) == 3  # untrained + two trained runs
