"""Notebook 09 (train vs retrieve, and what training costs) under papermill with smoke parameters."""
import pandas as pd
import papermill

from conftest import REPO


def test_notebook_09_writes_scores_recall_and_cost_tables(tmp_path):
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/09_train_vs_retrieve.ipynb"), str(tmp_path / "09.ipynb"),
        parameters={"model": "tiny-llama", "documents": 2, "epochs": 1, "contents": '["C1", "C2"]', "lr": 1e-3,
                    "distractors": "[0, 2]", "recall_distractors": "[0, 3]", "cost_lrs": "[0.001, 0.01]",
                    "cost_epochs": 1, "max_new_tokens": 6, "bootstrap_resamples": 200, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_09.csv", index_col=0)
    assert set(table.index) == {"untrained, closed book", "trained, closed book", "untrained, open book, 0 distractors",
                                "untrained, open book, 2 distractors", "trained, open book, 0 distractors",
                                "trained, open book, 2 distractors"}
    for variant in ("original", "paraphrase"):
        assert (table[f"{variant}_ci_low"] <= table[f"{variant}_mean"] + 1e-12).all()
        assert (table[f"{variant}_mean"] <= table[f"{variant}_ci_high"] + 1e-12).all()
    opened = table[table.index.str.contains("open")]
    assert opened["recall_at_k"].between(0, 1).all() and (table["n_documents"] == 2).all()
    assert table.loc["trained, open book, 0 distractors", "recall_at_k"] == 1.0  # 2 documents, k = 3
    recall = pd.read_csv(out / "recall_09.csv")
    assert set(recall["distractors"]) == {0, 3} and (recall["mean"] == 1.0).any()
    cost = pd.read_csv(out / "cost_09.csv")
    assert set(cost["epoch"]) == {0, 1} and {"mmlu_continuation_acc", "perplexity", "locality"} <= set(cost.columns)
    assert (cost.loc[cost["epoch"] == 0, "locality"] == 1.0).all()
    diffs = pd.read_csv(out / "differences_09.csv")
    assert len(diffs) == 10 and set(diffs["variant"]) == {"original", "paraphrase"}
    assert ((diffs["ci_low"] <= diffs["mean"] + 1e-12) & (diffs["mean"] <= diffs["ci_high"] + 1e-12)).all()
    # The untrained tiny model scores 0 closed-book: retrieval's gain is its open-book score, paired per question.
    gain = diffs[(diffs["comparison"] == "retrieval's gain") & (diffs["variant"] == "original")].iloc[0]
    assert gain["mean"] == table.loc["untrained, open book, 0 distractors", "original_mean"]
    for name in ("fig09_scores.png", "fig09_differences.png", "fig09_recall.png", "fig09_cost.png"):
        assert (out / name).stat().st_size > 10_000
