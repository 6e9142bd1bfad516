"""Guard the batched evaluation path: 8 prompts with batch_size 8 are one `generate` call with batch 8, and the
batched answers equal one-by-one answers (tiny random Llama, so this runs in seconds)."""
from __future__ import annotations

import pytest
import torch

from sciknow import models
from sciknow.config import ModelSpec
from sciknow.evaluate import generate_answers

# Prompts of different lengths, so batching needs left padding.
QUESTIONS = [
    "What is a polymer?",
    "Name the monomer of polyethylene and describe how it is made industrially from ethylene gas.",
    "Why?",
    "Explain the glass transition temperature.",
    "What is the boiling point of water at sea level in degrees Celsius, and why does it change with altitude?",
    "Define entropy.",
    "Which catalyst is used in Ziegler-Natta polymerization?",
    "How are conductive polymers doped, and what happens to their band structure?",
]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)  # tiny model: threads only add synchronisation cost
    return models.load(ModelSpec(name=models.TINY_MODEL))


def _count_generate(model, monkeypatch, record: dict | None = None) -> list[tuple[int, ...]]:
    """Wrap `model.generate`: returns the input shape of every call; `record` maps each prompt's unpadded
    token ids to the token ids generated for it (up to the first end token), so answers compare exactly
    even where the decoded text is empty (the random model likes special tokens)."""
    shapes: list[tuple[int, ...]] = []
    original = model.generate

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        shapes.append(tuple(ids.shape))
        out = original(*args, **kwargs)
        if record is not None:
            mask, eos = kwargs["attention_mask"], kwargs["eos_token_id"]
            for row in range(ids.shape[0]):
                prompt = tuple(ids[row][mask[row].bool()].tolist())
                new = out[row, ids.shape[1]:].tolist()
                record[prompt] = new[: new.index(eos) + 1] if eos in new else new
        return out

    monkeypatch.setattr(model, "generate", counting)
    return shapes


def test_one_generate_call_per_batch(tiny, monkeypatch):
    shapes = _count_generate(tiny.model, monkeypatch)
    answers = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=4, batch_size=8)
    assert len(answers) == 8
    assert len(shapes) == 1, f"expected one batched generate call, got {len(shapes)}: {shapes}"
    assert shapes[0][0] == 8


def test_batches_of_three(tiny, monkeypatch):
    shapes = _count_generate(tiny.model, monkeypatch)
    generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=2, batch_size=3)
    assert [s[0] for s in shapes] == [3, 3, 2]


def test_batched_answers_equal_one_by_one(tiny, monkeypatch):
    batched_ids: dict = {}
    _count_generate(tiny.model, monkeypatch, batched_ids)
    batched = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=8, batch_size=8)
    single_ids: dict = {}
    monkeypatch.undo()
    _count_generate(tiny.model, monkeypatch, single_ids)
    single = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=8, batch_size=1)
    assert batched == single
    assert len(batched_ids) == len(QUESTIONS) and batched_ids == single_ids  # token for token
    assert any(len(new) > 1 for new in batched_ids.values()), "the tiny model should generate several tokens"


def test_answers_keep_question_order(tiny):
    forward = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=4, batch_size=8)
    backward = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS[::-1], max_new_tokens=4, batch_size=8)
    assert backward == forward[::-1]


def test_generation_uses_kv_cache(tiny, monkeypatch):
    """With the KV cache, only the first forward pass sees the whole prompt; every later one feeds just the
    new token. Without it each step re-reads the prompt: answers stay the same, evaluation gets much slower."""
    calls: list[dict] = []
    original = tiny.model.generate

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny.model, "generate", recording)
    lengths: list[int] = []
    handle = tiny.model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        generate_answers(tiny.model, tiny.tokenizer, QUESTIONS[:3], max_new_tokens=4, batch_size=3)
    finally:
        handle.remove()
    assert len(calls) == 1 and calls[0].get("use_cache", True) is not False
    assert tiny.model.generation_config.use_cache is not False
    assert lengths[0] > 1, "the first forward pass reads the (padded) prompt"
    assert len(lengths) > 1 and set(lengths[1:]) == {1}, f"later steps should feed one token each, got {lengths}"
