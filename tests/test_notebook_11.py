"""Notebook 11 (the knowledge-forgetting frontier) under papermill with smoke parameters on the tiny model."""
import numpy as np
import pandas as pd
import papermill
import pytest

from conftest import REPO
from sciknow.config import SHARED_DIR

PLOS = SHARED_DIR / "corpora" / "plos-starter"  # replay texts and perplexity abstracts


@pytest.mark.skipif(not PLOS.is_dir(), reason=f"{PLOS} is absent (CI has it; or set SCIKNOW_SHARED)")
def test_notebook_11_writes_the_frontier_table_and_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIKNOW_SHARED", str(SHARED_DIR))
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/11_forgetting_frontier.ipynb"), str(tmp_path / "11.ipynb"),
        parameters={"model": "tiny-llama", "documents": 2, "contents": '["C1"]', "epochs": 2,
                    "full_lrs": "[0.001, 0.1]", "lora_lrs": "[0.01]", "replay_texts": 1, "replay_lr": 0.001,
                    "reach": 0.0, "n_probe_mmlu": 8, "n_probe_texts": 1, "n_probe_locality": 3, "max_new_tokens": 4,
                    "bootstrap_resamples": 200, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "frontier_11.csv").set_index("recipe")
    assert list(table.index) == ["full 0.001", "full 0.1", "LoRA 0.01", "full 0.001 + replay"]
    assert (table["documents"] == 2).all() and table["pareto"].any()
    for metric in ("gain", "paraphrase_gain", "mmlu_loss", "mmlu_p_loss", "perplexity_rise", "locality"):
        assert table[metric].notna().all(), metric
        assert (table[f"{metric}_low"] <= table[metric] + 1e-12).all() and \
               (table[metric] <= table[f"{metric}_high"] + 1e-12).all(), metric
    # reach = 0: every run reaches it after its first epoch (steps = texts per epoch: 1, or 2 with one replay text)
    assert (table["reached"] == 1).all()
    assert table.loc["full 0.001", "steps_to_reach"] == 1 and table.loc["full 0.001 + replay", "steps_to_reach"] == 2
    per_run = pd.read_csv(out / "frontier_runs_11.csv")
    assert len(per_run) == 4 * 2 and per_run["locality"].between(0, 1).all()
    # The table's means are the per-run values averaged over documents.
    assert np.isclose(table.loc["full 0.1", "mmlu_loss"], per_run[per_run["recipe"] == "full 0.1"]["mmlu_loss"].mean())
    assert (out / "fig11_frontier.png").stat().st_size > 10_000
    # What replay buys: its runs minus full-parameter at the same lr, paired by document.
    bought = pd.read_csv(out / "replay_11.csv").set_index("metric")
    assert set(bought["recipe"]) == {"full 0.001 + replay"} and set(bought["baseline"]) == {"full 0.001"}
    assert {"gain", "mmlu_loss", "mmlu_p_loss", "perplexity_rise", "locality"} <= set(bought.index)
    pair = per_run.set_index(["recipe", "document"])["perplexity_rise"]
    assert np.isclose(bought.loc["perplexity_rise", "mean"],
                      (pair["full 0.001 + replay"] - pair["full 0.001"]).mean())
