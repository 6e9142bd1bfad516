"""Answer questions with batched greedy decoding and score the answers.

Evaluation is where a sweep spends much of its time, so decoding is batched and wastes little work:
  * prompts are sorted by length and answered `batch_size` at a time;
  * the prompts' common start (a chat template's system text) is read once, and its KV cache copied into each
    chunk of the prefill (the same greedy tokens: tests compare with reading every prompt whole);
  * each batch's prompts are read (prefilled) in chunks of `PREFILL_CHUNK` similar-length prompts, so little
    compute goes into padding, and the chunks' KV caches are then joined, left-padded, into one batch;
  * decoding runs greedily on that batch with the KV cache, and a row leaves the batch as soon as it emits an
    end token (or, for plain prompts, starts a new "Question:"), so later steps only compute rows still talking.
  * on a CPU, fp32 linear layers compute with weights prepacked once per call (`packed_linears`): the few rows
    of a decoding step then stream the weights near the memory's bandwidth.
`model.generate` keeps computing finished rows until the longest answer ends and reads every prompt padded to
the longest one; transformers' continuous batching (`generate_batch`) avoids both but is tuned for GPUs (the
three timed on CPU: README, Performance).
Greedy decoding makes answers reproducible; the tests check them token for token against `model.generate`.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from . import packed_linears
from .data import Question
from .scores import keyword_score

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
PLAIN_STOP = "\nQuestion:"  # a base model goes on to invent the next question: its answer ends there
PREFILL_CHUNK = 8  # prompts read together; sorted by length, so a chunk pads little
MIN_SHARED_PREFIX = 8  # tokens: a shorter common start of the prompts is read with each prompt, not once


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
    batch_size: int = 64,
    prompt_style: str = "auto",
    progress: bool = False,
    stop_repetition: bool = False,
) -> list[str]:
    """Greedy answers to `questions`, in their order.

    `stop_repetition` (for writers, not for scored answers): a row stops as soon as it ends in a loop (the same
    n-gram again and again, `repeated_tail`) and keeps one copy of it. Greedy decoding that falls into such a loop
    never leaves it, and would otherwise spend the whole token budget on it."""
    chat = uses_chat_template(tokenizer, prompt_style)
    # Chat templates write their own BOS; a plain prompt needs the tokenizer's (Gemma degenerates without it).
    prompts = [tokenizer(build_prompt(tokenizer, q, prompt_style), add_special_tokens=not chat).input_ids
               for q in questions]
    stop_ids = end_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch_size = answer_batch_size(model, batch_size, max(map(len, prompts), default=0) + max_new_tokens)
    stop_text = None if chat else PLAIN_STOP
    # Sort by length so each batch pads little; answers are put back in the original order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with packed_linears.packed(model):  # fp32 on a CPU: weights prepacked for skinny products
            for start in tqdm(range(0, len(order), batch_size), desc="answering", disable=not progress, leave=False):
                idx = order[start:start + batch_size]
                new_tokens = greedy_decode(model, [prompts[i] for i in idx], max_new_tokens, stop_ids, pad_id,
                                           _stop_test(tokenizer, stop_text, stop_repetition))
                for i, tokens in zip(idx, new_tokens):
                    if stop_repetition and (cut := repeated_tail(tokens)):
                        tokens = tokens[:len(tokens) - cut]
                    text = tokenizer.decode(tokens, skip_special_tokens=True)
                    answers[i] = (text.split(stop_text)[0] if stop_text else text).strip()
    finally:
        model.train(was_training)
    return answers


KV_MEMORY_SHARE = 0.5  # of the free GPU memory, for a batch's KV cache (the rest: activations, the join's layer)


def kv_bytes_per_token(model: PreTrainedModel) -> int:
    """KV-cache bytes of one token over all layers: keys and values of every key-value head (no grouped-query
    attention in Llama-2-7B: 0.5 MB per token in bf16)."""
    config = model.config.get_text_config(decoder=True)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dtype = model.dtype if model.dtype.is_floating_point else torch.float32
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def answer_batch_size(model: PreTrainedModel, requested: int, tokens_per_row: int) -> int:
    """`requested` rows, fewer on a GPU when their KV cache (`tokens_per_row`: longest prompt + new tokens) would
    take more than KV_MEMORY_SHARE of the free memory: the default 64 x 1k-token open-book prompts is 34 GB
    on Llama-2-7B."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return requested
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(requested, int(free * KV_MEMORY_SHARE) // (kv_bytes_per_token(model) * tokens_per_row)))


# A greedy loop: the last tokens are REPEAT_COPIES or more copies of one n-gram of at most REPEAT_PERIOD tokens,
# spanning at least REPEAT_MIN_SPAN tokens (so "\n\n", "..." or a table rule "|---|---|" is not a loop).
REPEAT_PERIOD = 8
REPEAT_COPIES = 4
REPEAT_MIN_SPAN = 16


def repeated_tail(tokens: Sequence[int]) -> int:
    """How many tokens to cut so that a looping tail keeps one copy of its n-gram; 0 when `tokens` does not end
    in a loop (REPEAT_PERIOD, REPEAT_COPIES, REPEAT_MIN_SPAN)."""
    n = len(tokens)
    for period in range(1, REPEAT_PERIOD + 1):
        span = period * max(REPEAT_COPIES, -(-REPEAT_MIN_SPAN // period))
        if n >= span and all(tokens[n - 1 - i] == tokens[n - 1 - i - period] for i in range(span - period)):
            return span - period
    return 0


def end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The tokenizer's end token plus the model's generation-config ones (Gemma-3 also ends turns with
    <end_of_turn>): the tokens at which `model.generate` and pipelines stop."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def _stop_test(tokenizer: PreTrainedTokenizerBase, stop_text: str | None, stop_repetition: bool):
    """greedy_decode's `stop`: the stop text, and with `stop_repetition` also a repeated tail (or None)."""
    text_stop = _text_stop(tokenizer, stop_text)
    if not stop_repetition:
        return text_stop
    return lambda tokens: repeated_tail(tokens) > 0 or bool(text_stop and text_stop(tokens))


def _text_stop(tokenizer: PreTrainedTokenizerBase, stop_text: str | None):
    """A test on a row's tokens so far: does its text end with `stop_text`? (None: no stop text.)"""
    if not stop_text:
        return None
    tail = len(tokenizer(stop_text, add_special_tokens=False).input_ids) + 2  # tokens that can hold stop_text
    return lambda tokens: stop_text in tokenizer.decode(tokens[-tail:], skip_special_tokens=True)


def greedy_decode(model: PreTrainedModel, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                  pad_id: int, stop=None) -> list[list[int]]:
    """Greedy continuations of `prompts` (token ids), decoded as one batch that drops finished rows.

    Each continuation ends with its end token (in `stop_ids`), at the step where `stop(tokens)` first holds,
    or after `max_new_tokens` tokens. Rows share one left-padded timeline: row r's tokens sit at positions
    0, 1, ... of its own (explicit `position_ids`), and the attention mask hides its padding.
    A step's bookkeeping is a few tensor ops on the whole batch; only a `stop` test looks at rows one by one.
    """
    cache, mask, logits = prefill(model, prompts, pad_id)
    cache_kwarg = cache_argument(model)
    device = logits.device
    stop_tensor = torch.tensor(sorted(stop_ids), device=device)
    prompt_width = mask.shape[1]
    # Every step's attention mask at once: step s attends to the prompt columns plus s + 1 new ones.
    mask = torch.cat([mask, mask.new_ones(len(prompts), max_new_tokens)], dim=1)
    positions = mask[:, :prompt_width].sum(1, keepdim=True)  # position of each row's next token
    live = torch.arange(len(prompts), device=device)  # live row -> prompt index
    new_tokens = torch.full((len(prompts), max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = [max_new_tokens] * len(prompts)
    for step in range(max_new_tokens):
        next_ids = logits.argmax(-1)
        new_tokens[live, step] = next_ids
        finished = torch.isin(next_ids, stop_tensor)
        if stop is not None:
            so_far = new_tokens[live, :step + 1].tolist()
            finished |= torch.tensor([stop(tokens) for tokens in so_far], device=device)
        if step == max_new_tokens - 1:
            break
        if finished.any():  # finished rows leave the batch and its KV cache
            for row in live[finished].tolist():
                lengths[row] = step + 1
            keep = (~finished).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            # The index on the CPU: indexing moves it to each cache layer's device (a model split over GPUs).
            cache.batch_select_indices(keep.cpu())
            live, next_ids, mask, positions = live[keep], next_ids[keep], mask[keep], positions[keep]
        logits = model(input_ids=next_ids[:, None], attention_mask=mask[:, :prompt_width + step + 1],
                       position_ids=positions + step, use_cache=True, **{cache_kwarg: cache}).logits[:, -1]
    return [tokens[:n] for tokens, n in zip(new_tokens.tolist(), lengths)]


def _left_pad(prompts: list[list[int]], pad_id: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, length - len(p):] = torch.tensor(p)
        mask[row, length - len(p):] = 1
    return ids.to(device), mask.to(device)


def cache_argument(model: PreTrainedModel) -> str:
    """The name under which the model's forward takes a KV cache: `cache` in recent transformers 5 releases,
    `past_key_values` before (deprecated since, and removed in 5.40). A PEFT model passes it to its base model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def prefill(model: PreTrainedModel, prompts: list[list[int]], pad_id: int):
    """Read the prompts (sorted by length) in chunks of PREFILL_CHUNK; return one left-padded KV cache for all
    of them, its attention mask, and each prompt's next-token logits."""
    device = next(model.parameters()).device
    longest = max(len(p) for p in prompts)
    window = getattr(model.config.get_text_config(decoder=True), "sliding_window", None)
    # A sliding-window layer keeps only its last `window` tokens, so a chunk's cache could not be padded to
    # the batch's timeline: read long prompts as one padded batch, as `generate` does.
    chunk = len(prompts) if window and longest > window else PREFILL_CHUNK
    cache_kwarg = cache_argument(model)
    # The prompts' common start (a chat template's system text) is read once; every chunk then reads only its
    # prompts' rest after a copy of its KV cache, as [shared | padding | rest] with the padding masked.
    shared = 0 if window else _shared_prefix_length(prompts)
    prefix = _read_prefix(model, prompts[0][:shared], device, cache_kwarg) if shared else None
    caches, masks, logits = [], [], []
    for start in range(0, len(prompts), chunk):
        part = [p[shared:] for p in prompts[start:start + chunk]]
        ids, mask = _left_pad(part, pad_id, max(len(p) for p in part), device)
        positions = shared + (mask.cumsum(1) - 1).clamp(min=0)
        if prefix is None:
            cache = DynamicCache(config=model.config)
        else:
            cache = DynamicCache(ddp_cache_data=[(k.expand(len(part), -1, -1, -1), v.expand(len(part), -1, -1, -1))
                                                 for k, v in prefix], config=model.config)
            mask = torch.cat([mask.new_ones(len(part), shared), mask], dim=1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1, **{cache_kwarg: cache})
        caches.append(cache)
        masks.append(mask)
        logits.append(out.logits[:, -1])
    if len(caches) == 1:
        return caches[0], masks[0], logits[0]
    cache, mask = join_caches(model, caches, masks)
    return cache, mask, torch.cat(logits)


def join_caches(model: PreTrainedModel, caches: list[DynamicCache], masks: list[torch.Tensor]):
    """One left-padded cache (and its attention mask) from the chunks' caches, which are emptied on the way:
    layer by layer, each chunk's keys and values are freed as soon as they are copied, so the join needs the
    chunks' memory plus about one layer, not twice the KV memory (+34 GB for Llama-2-7B, 1k-token prompts x 64)."""
    longest = max(m.shape[1] for m in masks)
    joined = DynamicCache(config=model.config)
    for i, layer in enumerate(joined.layers):
        keys, values = (_join_layer([c.layers[i] for c in caches], name, longest) for name in ("keys", "values"))
        layer.update(keys, values)  # copies this one layer, freed on the next line
        del keys, values
    mask = torch.cat([torch.nn.functional.pad(m, (longest - m.shape[1], 0)) for m in masks])
    return joined, mask


def _join_layer(layers: list, name: str, longest: int) -> torch.Tensor:
    """The chunks' `name` ("keys" or "values", [rows, heads, tokens, dim]) of one layer, left-padded to `longest`
    tokens and stacked; each chunk's tensor is dropped from its layer once copied."""
    rows, first = sum(getattr(layer, name).shape[0] for layer in layers), getattr(layers[0], name)
    out = first.new_zeros((rows, first.shape[1], longest, first.shape[3]))
    del first  # no reference may outlive its chunk's copy
    row = 0
    for layer in layers:
        part = getattr(layer, name)
        out[row:row + part.shape[0], :, longest - part.shape[2]:] = part
        row += part.shape[0]
        setattr(layer, name, None)
        del part
    return out


def keyword_prediction(question: Question, prompt: str, answer: str) -> dict:
    """One answer as recorded: question, the prompt as the model saw it, answer, keyword score, keywords found."""
    return {"question_id": question.id, "question": question.question, "prompt": prompt, "answer": answer,
            "score": keyword_score(answer, question.keywords),
            "found": [k for k in question.keywords if k in answer], "keywords": list(question.keywords)}


def _shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens at the start of every prompt that are read once for all (0: fewer than MIN_SHARED_PREFIX, or one
    prompt); every prompt keeps at least one token of its own, whose logits give its first answer token."""
    if len(prompts) < 2:
        return 0
    n = len(os.path.commonprefix(prompts))
    n = min(n, min(len(p) for p in prompts) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def _read_prefix(model: PreTrainedModel, prefix: list[int], device, cache_kwarg: str) -> list[tuple]:
    """(keys, values) per layer of the KV cache of `prefix` at positions 0, 1, ..., batch size 1."""
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=1,
          position_ids=torch.arange(len(prefix), device=device)[None], **{cache_kwarg: cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


def answer_and_score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    max_new_tokens: int = 100,
    batch_size: int = 64,
    prompt_style: str = "auto",
) -> tuple[float, list[dict]]:
    """Keyword score of the model on `questions` and every prediction (question, answer, per-question score)."""
    answers = generate_answers(model, tokenizer, [q.question for q in questions], max_new_tokens, batch_size,
                               prompt_style)
    predictions = [keyword_prediction(q, build_prompt(tokenizer, q.question, prompt_style), a)
                   for q, a in zip(questions, answers)]
    return sum(p["score"] for p in predictions) / len(predictions), predictions

