"""Notebook 08 (the suite study) under papermill with smoke parameters; asserts on the table it writes."""
import pandas as pd
import papermill

from conftest import REPO


def test_notebook_08_writes_a_table_with_cis_and_steps_per_condition(tmp_path):
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/08_what_makes_knowledge_stick.ipynb"), str(tmp_path / "08.ipynb"),
        parameters={"model": "tiny-llama", "documents": 2, "epochs": 1, "n_contents": "[1, 2]",
                    "controls": '["step-matched", "token-matched"]', "max_new_tokens": 6, "max_length": 64,
                    "lr": 1e-3, "bootstrap_resamples": 200, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_08.csv", index_col=0)
    assert list(table.index) == ["untrained", "1 contents", "2 contents", "step-matched", "token-matched 2"]
    for variant in ("original", "paraphrase"):
        low, mean, high = (table[f"{variant}_{c}"] for c in ("ci_low", "mean", "ci_high"))
        assert ((low <= mean + 1e-12) & (mean <= high + 1e-12)).all()
    assert list(table["steps"]) == [0, 1, 2, 2, 2] and (table["n_documents"] == 2).all()
    diffs = pd.read_csv(out / "differences_08.csv")
    assert set(diffs["tag.condition"]) == {"2 contents", "token-matched 2"}
    for name in ("fig08_steps.png", "fig08_forest.png", "fig08_paraphrase.png"):
        assert (out / name).stat().st_size > 10_000
