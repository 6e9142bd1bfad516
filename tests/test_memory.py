"""The fit check: a full-parameter run that cannot fit is refused before its model loads, with the estimate."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config

from sciknow import experiment, memory, models
from sciknow.config import ModelSpec, TrainSpec
from sciknow.results import read

# Llama-2-70B's shape (its config.json): about 69 billion parameters, no weights in the folder.
LLAMA_70B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
             "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
             "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5, "tie_word_embeddings": False}


@pytest.fixture
def llama_70b_folder(tmp_path):
    folder = tmp_path / "llama-70b-config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_70B))
    return folder


def test_impossible_full_run_is_refused_before_loading(llama_70b_folder, tmp_path):
    config = tiny_config(**{"model.name": str(llama_70b_folder), "train.epochs": 1})
    results = tmp_path / "results.jsonl"
    models.forget()
    # The folder holds no weights: had the run tried to load them, it would fail with OSError instead.
    with pytest.raises(memory.DoesNotFit) as err:
        experiment.run(config, results, progress=False)
    message = str(err.value)
    assert f"model.name={str(llama_70b_folder)!r} with train.method='full' does not fit" in message
    assert "68,977M parameters" in message and "AdamW state 513.9" in message and "GiB of RAM" in message
    assert "train.method='lora'" in message  # what to do instead
    assert models._current is None  # nothing was loaded
    [record] = read(results)
    assert record["status"] == "failed" and "DoesNotFit" in record["error"]


def test_lora_runs_are_not_checked(llama_70b_folder):
    lora = tiny_config(**{"model.name": str(llama_70b_folder), "train.method": "lora"})
    assert memory.check_fits(lora) is None


def test_estimate_counts_weights_gradients_adamw_and_snapshot():
    n = memory.parameter_count("tiny-llama")
    loaded = models.load(ModelSpec(name="tiny-llama"))
    assert n == sum(p.numel() for p in loaded.model.parameters())  # tied embeddings counted once
    estimate = memory.full_training_estimate(ModelSpec(name="tiny-llama"), TrainSpec())
    assert (estimate.parameters, estimate.weights, estimate.gradients, estimate.adamw) == (n, 4 * n, 4 * n, 8 * n)
    assert estimate.snapshot == (0 if torch.cuda.is_available() else 4 * n)
    assert estimate.activations > 0 and estimate.total > 20 * n
    half = memory.full_training_estimate(ModelSpec(name="tiny-llama", precision="bf16"), TrainSpec())
    assert half.weights == 2 * n and half.adamw == 4 * n
    # Longer texts need more activation memory.
    longer = memory.full_training_estimate(ModelSpec(name="tiny-llama"), TrainSpec(max_length=1024))
    assert longer.activations > estimate.activations


def test_check_fits_against_a_given_budget():
    config = tiny_config()
    small = (estimate_total := memory.full_training_estimate(config.model, config.train).total) - 1
    with pytest.raises(memory.DoesNotFit, match=r"against [0-9.]+ GiB of a tiny budget"):
        memory.check_fits(config, budget=(small, "a tiny budget"))
    assert memory.check_fits(config, budget=(estimate_total, "enough")).fits


def test_quantized_weights_have_no_full_training_estimate():
    with pytest.raises(ValueError, match="model.precision='nf4': full-parameter training needs one of"):
        memory.full_training_estimate(ModelSpec(name="tiny-llama", precision="nf4"), TrainSpec(method="lora"))


@pytest.mark.slow
def test_parameters_from_gguf_metadata_without_converting(tmp_path, monkeypatch):
    """A registered model not converted yet is counted from its GGUF header: nothing is converted or loaded."""
    monkeypatch.setenv("SCIKNOW_CACHE", str(tmp_path))
    assert memory.parameter_count("smollm2-135m-instruct") == 134_515_008
    assert not (tmp_path / "models").exists()
