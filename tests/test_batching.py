"""Guard the batched evaluation path (tiny random Llama, so this runs in seconds): questions are decoded
`batch_size` at a time, prompts are prefilled in chunks whose KV caches are joined, finished rows leave the
batch, every step after the prefill feeds one token per row (KV cache), and the answers equal
`model.generate`'s greedy answers token for token."""
from __future__ import annotations

import pytest
import torch

from sciknow import evaluate, models
from sciknow.config import ModelSpec
from sciknow.evaluate import build_prompt, end_token_ids, generate_answers, greedy_decode

from conftest import tiny_with_large_weights

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
    """The tiny random Llama with larger weights (std 0.3): as built it answers every prompt with the same
    newline token, which would make these comparisons pass whatever the batching did."""
    torch.set_num_threads(1)  # tiny model: threads only add synchronisation cost
    return tiny_with_large_weights(0)


def _prompt_ids(tiny, questions=QUESTIONS) -> list[list[int]]:
    tok = tiny.tokenizer
    return [tok(build_prompt(tok, q), add_special_tokens=False).input_ids for q in questions]


def _reference(tiny, prompt: list[int], max_new_tokens: int, stop_ids: set[int]) -> list[int]:
    """`model.generate`, greedy, one prompt at a time (no padding): tokens up to and including the end token."""
    out = tiny.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(stop_ids),
                              pad_token_id=tiny.tokenizer.pad_token_id)[0, len(prompt):].tolist()
    end = next((i for i, t in enumerate(out) if t in stop_ids), None)
    return out if end is None else out[:end + 1]


@pytest.fixture
def forward_batches(tiny):
    """(rows, tokens) of every forward pass of the model while the test runs."""
    shapes: list[tuple[int, int]] = []
    handle = tiny.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    yield shapes
    handle.remove()


def test_one_decode_per_batch(tiny, monkeypatch):
    sizes: list[int] = []
    original = evaluate.greedy_decode
    monkeypatch.setattr(evaluate, "greedy_decode", lambda model, prompts, *a, **k: sizes.append(len(prompts)) or
                        original(model, prompts, *a, **k))
    answers = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=4, batch_size=8)
    assert len(answers) == 8 and sizes == [8], f"expected one batch of 8, got {sizes}"
    sizes.clear()
    generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=2, batch_size=3)
    assert sizes == [3, 3, 2]


@pytest.mark.parametrize("chunk", [3, 8])
def test_tokens_equal_model_generate(tiny, monkeypatch, chunk):
    """Chunked prefill (3: three chunks whose caches are joined; 8: one) and rows leaving the batch at different
    steps change nothing."""
    monkeypatch.setattr(evaluate, "PREFILL_CHUNK", chunk)
    prompts = sorted(_prompt_ids(tiny), key=len)
    pad = tiny.tokenizer.pad_token_id
    free = greedy_decode(tiny.model, prompts, 8, end_token_ids(tiny.model, tiny.tokenizer), pad)
    assert len({tuple(new) for new in free}) == len(prompts), "answers should differ between prompts"
    # Declare tokens from the middle of two answers end tokens, so rows finish at different steps.
    stop_ids = end_token_ids(tiny.model, tiny.tokenizer) | {free[1][2], free[5][4]}
    batched = greedy_decode(tiny.model, prompts, 8, stop_ids, pad)
    assert batched == [_reference(tiny, p, 8, stop_ids) for p in prompts]
    assert len({len(new) for new in batched}) > 1, "rows should end at different steps"


def test_batched_answers_equal_one_by_one(tiny):
    batched = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=8, batch_size=8)
    single = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=8, batch_size=1)
    assert batched == single


def test_answers_keep_question_order(tiny):
    forward = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, max_new_tokens=4, batch_size=8)
    backward = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS[::-1], max_new_tokens=4, batch_size=8)
    assert backward == forward[::-1]


def test_decoding_uses_kv_cache(tiny, forward_batches, monkeypatch):
    """With the KV cache only the prefill reads prompts (the chat template's common start once, then each
    chunk's rest); every later pass feeds one token per row. Without it each step re-reads the prompt: answers
    stay the same, evaluation gets much slower."""
    monkeypatch.setattr(evaluate, "PREFILL_CHUNK", 2)
    generate_answers(tiny.model, tiny.tokenizer, QUESTIONS[:4], max_new_tokens=4, batch_size=4)
    shared = evaluate._shared_prefix_length(_prompt_ids(tiny, QUESTIONS[:4]))
    assert shared >= evaluate.MIN_SHARED_PREFIX, "SmolLM2's chat template starts every prompt alike"
    prefix, prefill, decode = forward_batches[0], forward_batches[1:3], forward_batches[3:]
    assert prefix == (1, shared)
    assert [rows for rows, _ in prefill] == [2, 2] and all(tokens > 1 for _, tokens in prefill)
    assert decode and all(tokens == 1 for _, tokens in decode), f"later steps should feed one token: {decode}"


def test_finished_rows_leave_the_batch(tiny, forward_batches):
    """Make row 0's first token an end token: it stops at once, the others decode on with one row fewer and
    produce exactly what they produce without it."""
    prompts = _prompt_ids(tiny)[:4]
    stop_ids = end_token_ids(tiny.model, tiny.tokenizer)
    alone = greedy_decode(tiny.model, prompts, 6, stop_ids, tiny.tokenizer.pad_token_id)
    first = alone[0][0]
    assert all(first not in new for new in alone[1:]), "prompts whose answers do not share that token"
    forward_batches.clear()
    out = greedy_decode(tiny.model, prompts, 6, stop_ids | {first}, tiny.tokenizer.pad_token_id)
    assert out[0] == [first] and out[1:] == alone[1:]
    assert [rows for rows, tokens in forward_batches if tokens == 1][0] == 3


def test_stop_function_ends_a_row(tiny):
    prompts = _prompt_ids(tiny)[:2]
    stop_ids = end_token_ids(tiny.model, tiny.tokenizer)
    free = greedy_decode(tiny.model, prompts, 6, stop_ids, tiny.tokenizer.pad_token_id)
    stopped = greedy_decode(tiny.model, prompts, 6, stop_ids, tiny.tokenizer.pad_token_id,
                            stop=lambda tokens: len(tokens) == 2)
    assert stopped == [new[:2] for new in free]


def test_shared_prefix_read_once_changes_no_token(tiny, monkeypatch):
    """The chat template's common start read once (today) against read with every prompt (before): the same
    tokens, in chunks whose caches are joined and rows that finish early."""
    prompts = sorted(_prompt_ids(tiny), key=len)
    stop_ids = end_token_ids(tiny.model, tiny.tokenizer)
    free = greedy_decode(tiny.model, prompts, 8, stop_ids, tiny.tokenizer.pad_token_id)
    stop_ids |= {free[1][2], free[5][4]}
    monkeypatch.setattr(evaluate, "PREFILL_CHUNK", 3)
    shared = greedy_decode(tiny.model, prompts, 8, stop_ids, tiny.tokenizer.pad_token_id)
    monkeypatch.setattr(evaluate, "MIN_SHARED_PREFIX", 10 ** 6)
    whole = greedy_decode(tiny.model, prompts, 8, stop_ids, tiny.tokenizer.pad_token_id)
    assert shared == whole and len({len(new) for new in shared}) > 1


def test_no_shared_prefix_without_a_common_start():
    assert evaluate._shared_prefix_length([[1] * 20]) == 0  # one prompt: nothing to share
    assert evaluate._shared_prefix_length([[1] * 20, [2] + [1] * 19]) == 0
    assert evaluate._shared_prefix_length([[1] * 20, [1] * 9 + [2]]) == 9
    assert evaluate._shared_prefix_length([[1] * 9, [1] * 20]) == 8  # every prompt keeps a token of its own
    assert evaluate._shared_prefix_length([[1] * 5 + [2], [1] * 5 + [3]]) == 0  # below MIN_SHARED_PREFIX


@pytest.mark.slow
def test_smollm2_suite_answers_equal_model_generate_and_whole_prompts(monkeypatch):
    """SmolLM2 on a suite document's questions and paraphrases (notebook 08's 48 tokens, one batch): the same
    greedy tokens as `model.generate` one prompt at a time, and as reading every prompt whole."""
    from sciknow.config import SUITE_DIR
    from sciknow.data import load_suite

    smol = models.load(ModelSpec(name="smollm2-135m-instruct"))
    kset = load_suite(SUITE_DIR, ["astro-sevrinne"])[0]
    prompts = sorted(_prompt_ids(smol, [x for q in kset.questions[:3] for x in (q.question, q.paraphrase)]), key=len)
    stop_ids = end_token_ids(smol.model, smol.tokenizer)
    with torch.no_grad():
        shared = greedy_decode(smol.model, prompts, 48, stop_ids, smol.tokenizer.pad_token_id)
        monkeypatch.setattr(evaluate, "MIN_SHARED_PREFIX", 10 ** 6)
        whole = greedy_decode(smol.model, prompts, 48, stop_ids, smol.tokenizer.pad_token_id)
        reference = [_reference(smol, p, 48, stop_ids) for p in prompts]
    assert shared == whole == reference
