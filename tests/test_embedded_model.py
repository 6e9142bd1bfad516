"""End to end on the real embedded model (SmolLM2-135M-Instruct from its PyPI GGUF, converted once)."""
import pytest

from sciknow import experiment, models
from sciknow.config import LAYER_GROUPS, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec

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


def test_gemma3_base_model_answers_plain_prompts():
    """The second offline model: a base model without a chat template, so prompts are plain Question/Answer.
    Its BOS token must be added (without it Gemma degenerates) and its answer ends where it starts inventing
    the next question."""
    from sciknow.evaluate import build_prompt, generate_answers

    loaded = models.load(ModelSpec(name="gemma3-270m"))
    assert type(loaded.model).__name__ == "Gemma3ForCausalLM" and not loaded.tokenizer.chat_template
    groups = {name.split(".")[-1] for name, _ in loaded.model.named_modules()}
    assert set(LAYER_GROUPS) <= groups  # the paper's nine layer groups exist under the same names
    assert build_prompt(loaded.tokenizer, "Q?") == "Question: Q?\nAnswer:"
    answers = generate_answers(loaded.model, loaded.tokenizer, ["What is the capital of France?"], max_new_tokens=16)
    assert "Paris" in answers[0] and "Question" not in answers[0]
