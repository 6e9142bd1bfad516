"""End to end on the real embedded model (SmolLM2-135M-Instruct from its PyPI GGUF, converted once)."""
import pytest

from sciknow import experiment, models
from sciknow.config import DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec

pytestmark = pytest.mark.slow


def test_convert_train_answer(tmp_path):
    folder = models.resolve("smollm2-135m-instruct")
    assert (models.cache_dir() / "models" / "smollm2-135m-instruct" / "model.safetensors").exists()
    assert folder.startswith(str(models.cache_dir()))
    config = RunConfig(
        task="e2e", model=ModelSpec(), data=DataSpec(contents=["C1"]),
        train=TrainSpec(method="lora", lr=2e-4, epochs=1, lora_r=8, lora_alpha=16, layer_groups=["q_proj", "v_proj"]),
        eval=EvalSpec(max_new_tokens=24),
    )
    record = experiment.run(config, tmp_path / "results.jsonl", progress=False)
    assert record["status"] == "ok"
    answers = [p["answer"] for p in record["predictions"]]
    assert len(answers) == 5 and all(len(a.split()) >= 3 for a in answers)  # a real model says real words
    assert record["predictions"][0]["prompt"].startswith("<|im_start|>")  # SmolLM2's chat template
    assert 0 <= record["best_score"] <= 1
