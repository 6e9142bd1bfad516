"""Notebook 10 (model size on the suite) under papermill with smoke parameters: two random tiny Llamas of
different sizes stand in for the ladder, the larger one also in nf4; asserts the size table and the differences."""
import pandas as pd
import papermill
import pytest
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from conftest import REPO
from sciknow import models


@pytest.fixture
def wider_tiny_llama(tmp_path):
    """tiny-llama with 4 layers instead of 2: a second, larger size on the ladder."""
    small = models.resolve("tiny-llama")
    config = LlamaConfig.from_pretrained(small)
    config.num_hidden_layers = 4
    folder = tmp_path / "tiny-llama-4-layers"
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(small).save_pretrained(folder)
    return str(folder)


@pytest.mark.timeout(900)
def test_notebook_10_writes_the_size_table_and_differences(tmp_path, wider_tiny_llama):
    out = tmp_path / "run"
    larger = wider_tiny_llama
    papermill.execute_notebook(
        str(REPO / "notebooks/10_model_size.ipynb"), str(tmp_path / "10.ipynb"),
        parameters={"models": f'["tiny-llama", "{larger}"]', "nf4_models": [larger], "documents": 2, "epochs": 1,
                    "lr": 1e-3, "lora_r": 8, "lora_alpha": 24, "max_new_tokens": 6, "max_length": 64,
                    "bootstrap_resamples": 200, "threads": 1, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_10.csv")
    conditions = ["untrained", "5 contents", "step-matched"]
    assert list(zip(table["model"], table["precision"], table["condition"])) == (
        [("tiny-llama", "fp32", c) for c in conditions] + [(larger, "fp32", c) for c in conditions]
        + [(larger, "nf4", c) for c in conditions])
    small_n, large_n = table["parameters"].iloc[0], table["parameters"].iloc[-1]
    assert small_n == sum(p.numel() for p in models.load(models.ModelSpec(name="tiny-llama")).model.parameters())
    assert large_n > small_n
    assert list(table["steps"]) == [0, 5, 5] * 3  # 5 contents x 1 epoch = the original x 5 epochs
    assert (table["n_documents"] == 2).all()
    for variant in ("original", "paraphrase"):
        low, mean, high = (table[f"{variant}_{c}"] for c in ("ci_low", "mean", "ci_high"))
        assert ((low <= mean + 1e-12) & (mean <= high + 1e-12)).all() and mean.between(0, 1).all()

    sizes = pd.read_csv(out / "sizes_10.csv")  # fp32 only: nf4 has one model
    assert set(zip(sizes["precision"], sizes["model"], sizes["baseline"])) == {("fp32", larger, "tiny-llama")}
    assert len(sizes) == 4 and (sizes["n_documents"] == 2).all()  # 2 conditions x 2 question forms
    advantage = pd.read_csv(out / "advantage_10.csv")
    assert len(advantage) == 6 and set(advantage["condition"]) == {"5 contents"}  # 3 settings x 2 forms
    assert set(advantage["baseline"]) == {"step-matched"}
    assert len(pd.read_csv(out / "advantage_sizes_10.csv")) == 2
    nf4 = pd.read_csv(out / "nf4_10.csv")
    assert set(nf4["model"]) == {larger} and set(nf4["precision"]) == {"nf4"} and len(nf4) == 4
    for name in ("fig10_size.png", "fig10_sizes.png", "fig10_advantage.png", "fig10_nf4.png"):
        assert (out / name).stat().st_size > 10_000
