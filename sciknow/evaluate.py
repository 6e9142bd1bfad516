"""Answer questions with batched greedy generation and score the answers.

Batching is where evaluation time goes: prompts are sorted by length and generated together with left padding
and the KV cache, and each sequence stops at its end token. Greedy decoding makes answers reproducible.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data import Question
from .scores import keyword_score

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
PLAIN_STOP = "\nQuestion:"  # a base model goes on to invent the next question: its answer ends there


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, prompt_style: str = "auto") -> bool:
    return prompt_style == "chat" or (prompt_style == "auto" and bool(tokenizer.chat_template))


def build_prompt(tokenizer: PreTrainedTokenizerBase, question: str, prompt_style: str = "auto") -> str:
    """The model's chat template when it has one ("auto"/"chat"), otherwise a plain Question/Answer prompt."""
    if uses_chat_template(tokenizer, prompt_style):
        if not tokenizer.chat_template:
            raise ValueError("prompt_style='chat' but the tokenizer has no chat template")
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(question=question)


@torch.no_grad()
def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    max_new_tokens: int = 100,
    batch_size: int = 8,
    prompt_style: str = "auto",
    progress: bool = False,
) -> list[str]:
    """Greedy answers to `questions`, in their order."""
    prompts = [build_prompt(tokenizer, q, prompt_style) for q in questions]
    chat = uses_chat_template(tokenizer, prompt_style)
    # Chat templates write their own BOS; a plain prompt needs the tokenizer's (Gemma degenerates without it).
    add_special = not chat
    # Sort by length so each batch pads little; answers are put back in the original order.
    order = sorted(range(len(prompts)), key=lambda i: len(tokenizer(prompts[i]).input_ids))
    answers: list[str] = [""] * len(prompts)
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only models generate after the last prompt token
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="answering", disable=not progress, leave=False):
            idx = order[start:start + batch_size]
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=add_special).to(model.device)
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = (text if chat else text.split(PLAIN_STOP)[0]).strip()
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return answers


def answer_and_score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    max_new_tokens: int = 100,
    batch_size: int = 8,
    prompt_style: str = "auto",
) -> tuple[float, list[dict]]:
    """Keyword score of the model on `questions` and every prediction (question, answer, per-question score)."""
    answers = generate_answers(model, tokenizer, [q.question for q in questions], max_new_tokens, batch_size,
                               prompt_style)
    predictions = [
        {"question_id": q.id, "question": q.question, "prompt": build_prompt(tokenizer, q.question, prompt_style),
         "answer": a, "score": keyword_score(a, q.keywords),
         "found": [k for k in q.keywords if k in a], "keywords": list(q.keywords)}
        for q, a in zip(questions, answers)
    ]
    return sum(p["score"] for p in predictions) / len(predictions), predictions
