"""Multiple choice by log-likelihood, with lm-evaluation-harness's conventions (zero-shot MMLU).

Each choice is scored by the summed log-probability of its continuation after the item's context; the chosen
answer is the choice with the highest sum. Two formulations, named as lm-eval 0.4 names its tasks:

* `mmlu_continuation` (the "cloze" form, the default): the context is

      The following are questions (with answers) about {subject}.\\n\\nQuestion: {question}\\nAnswer:

  and each continuation is " " + the choice's text. lm-eval reports `acc` and `acc_norm` (the sum divided by
  the choice's length in characters).
* `mmlu` (the letter form): the context lists the choices,

      The following are multiple choice questions (with answers) about {subject}.\\n\\n{question}\\nA. {a}\\n
      B. {b}\\nC. {c}\\nD. {d}\\nAnswer:

  and the continuations are " A", " B", " C", " D".

Tokenization follows lm-eval's `_encode_pair`: context = tokenizer(context) (with the tokenizer's default special
tokens), continuation = tokenizer(context + continuation)[len(context):]. No chat template: every model gets the
same prompt.

Besides accuracy, `p_correct` is the probability of the right answer after a softmax over the four choices'
log-likelihoods: continuous, so a change caused by training shows in it long before accuracy moves.

Speed: an item's four choices share one context. They are packed into one row (context, then each choice's
tokens) with a mask that lets each choice see the context and itself only and position ids that restart after
the context, so the context is computed once instead of four times; rows are left-padded so every context ends
at the same column (a batch takes rows only while its padding stays within `MAX_PADDING` of its tokens), and
logits are computed only for the columns that predict choice tokens. The numbers equal scoring each choice
separately up to float rounding (tests/test_loglik.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import packed_linears
from .config import MMLU_FORMS as FORMS  # lm-eval's task names for the cloze and the letter form
from .multiple_choice import LETTERS, MCItem

_LOGITS_BUDGET = 2 ** 26  # floats of logits per forward pass (256 MB in fp32): bounds the batch for big vocabularies
MAX_PADDING = 0.1  # a batch's left padding, as a share of its tokens (see _batches)


def mmlu_request(subject: str, item: MCItem, form: str) -> tuple[str, list[str]]:
    """lm-eval's zero-shot (context, continuations) of one MMLU item in `form`."""
    if form == "mmlu_continuation":
        context = (f"The following are questions (with answers) about {subject}.\n\n"
                   f"Question: {item.question.strip()}\nAnswer:")
        return context, [f" {choice}" for choice in item.choices]
    if form == "mmlu":
        listed = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices))
        context = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                   f"{item.question.strip()}{listed}\nAnswer:")
        return context, [f" {letter}" for letter in LETTERS]
    raise ValueError(f"form={form!r}: expected one of {FORMS}")


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair` for causal models: trailing spaces of the context move to the continuation; the
    continuation's tokens are those of context + continuation after the context's own tokens."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation).input_ids
    context_ids = tokenizer(context).input_ids
    return context_ids, whole[len(context_ids):]


@dataclass(frozen=True)
class ChoiceScores:
    """Per item: the summed log-likelihood of each choice, the gold index (0-based) and each choice's length in
    characters (for lm-eval's acc_norm)."""

    loglik: np.ndarray  # [items, choices]
    gold: np.ndarray  # [items]
    lengths: np.ndarray  # [items, choices]

    @property
    def correct(self) -> np.ndarray:
        return (self.loglik.argmax(1) == self.gold).astype(float)

    @property
    def correct_norm(self) -> np.ndarray:
        return ((self.loglik / self.lengths).argmax(1) == self.gold).astype(float)

    @property
    def p_correct(self) -> np.ndarray:
        """Softmax over the choices' log-likelihoods, at the gold choice."""
        z = self.loglik - self.loglik.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return p[np.arange(len(self.gold)), self.gold]

    def summary(self, prefix: str) -> dict[str, float]:
        """{prefix_acc, prefix_acc_se (binomial), prefix_acc_norm, prefix_p, prefix_n}."""
        n, acc = len(self.gold), float(self.correct.mean())
        return {f"{prefix}_acc": acc, f"{prefix}_acc_se": math.sqrt(acc * (1 - acc) / n),
                f"{prefix}_acc_norm": float(self.correct_norm.mean()), f"{prefix}_p": float(self.p_correct.mean()),
                f"{prefix}_n": float(n)}

    def to_json(self) -> dict:
        return {"loglik": self.loglik.tolist(), "gold": self.gold.tolist(), "lengths": self.lengths.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ChoiceScores:
        return cls(np.array(d["loglik"], dtype=float), np.array(d["gold"], dtype=int),
                   np.array(d["lengths"], dtype=float))


def paired_change(before: ChoiceScores, after: ChoiceScores, prefix: str) -> dict[str, float]:
    """After minus before on the same items: accuracy and mean p_correct, each with the standard error of the
    mean of the per-item differences (sd / sqrt(n))."""
    if not np.array_equal(before.gold, after.gold):
        raise ValueError("paired_change: the two passes were not on the same items")
    out = {}
    for name, b, a in (("acc", before.correct, after.correct), ("p", before.p_correct, after.p_correct)):
        d = a - b
        out[f"{prefix}_{name}_change"] = float(d.mean())
        out[f"{prefix}_{name}_change_se"] = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return out


@torch.no_grad()
def score_requests(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   requests: Sequence[tuple[str, Sequence[str]]], batch_size: int = 16) -> list[list[float]]:
    """The summed log-likelihood of each continuation after its context, for (context, continuations) requests;
    each request's continuations share one packed row (see the module docstring)."""
    encoded = []
    for context, continuations in requests:
        pairs = [encode_pair(tokenizer, context, c) for c in continuations]
        if any(not cont for _, cont in pairs):
            raise ValueError(f"score_requests: a continuation of {context[-40:]!r} encodes to no tokens")
        encoded.append((pairs[0][0], [cont for _, cont in pairs]))
    limit = getattr(model.config, "max_position_embeddings", None)
    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    out: list[list[float]] = [[] for _ in encoded]
    was_training = model.training
    model.eval()
    try:
        with packed_linears.packed(model):  # fp32 on a CPU: weights prepacked for oneDNN
            for idx in _batches(encoded, batch_size, vocab):
                tail = _tail(encoded, idx)
                rows = [_pack(*encoded[i]) for i in idx]
                width = max(len(r[0]) for r in rows)  # longest context
                length = width + tail - 1
                if limit is not None and length > limit:
                    raise ValueError(f"score_requests: {length} tokens exceed the model's {limit} positions")
                ids, positions, mask = _left_padded(rows, width, length, _pad_id(tokenizer),
                                                    next(model.parameters()).dtype)
                keep = torch.arange(width - 1, length, device=device)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                               position_ids=positions.to(device), logits_to_keep=keep, use_cache=False).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
                for b, i in enumerate(idx):
                    out[i] = _choice_sums(logprobs[b], encoded[i][1])
    finally:
        model.train(was_training)
    return out


def _tail(encoded: list[tuple[list[int], list[list[int]]]], idx: list[int]) -> int:
    """Columns from a batch's last context column to its end: the longest packed continuations, plus one."""
    return max(sum(len(c) - 1 for c in encoded[i][1]) + 1 for i in idx)


def _batches(encoded: list[tuple[list[int], list[list[int]]]], batch_size: int, vocab: int) -> list[list[int]]:
    """Requests grouped into batches, longest contexts first. A batch takes the next request while it has fewer
    than `batch_size` rows, its left padding stays within MAX_PADDING of its tokens, and its logits within
    _LOGITS_BUDGET floats. Padding is not free: MMLU contexts run from 20 to 400 tokens and their choices from 1
    to 60, and 16 rows sorted by context length alone were half padding."""
    real = [len(context) + sum(len(c) - 1 for c in continuations) for context, continuations in encoded]

    def fits(rows: list[int]) -> bool:
        tail = _tail(encoded, rows)
        padded = len(rows) * (len(encoded[rows[0]][0]) + tail - 1)  # rows[0] has the longest context
        return (len(rows) <= batch_size and padded <= (1 + MAX_PADDING) * sum(real[j] for j in rows)
                and len(rows) * tail * vocab <= _LOGITS_BUDGET)

    batches: list[list[int]] = []
    for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0])):
        if batches and fits(batches[-1] + [i]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _left_padded(rows: list[tuple], width: int, length: int, pad_id: int, dtype: torch.dtype):
    """Token ids, position ids and the additive 4-d attention mask of packed `rows`, left-padded so that every
    context ends at column `width` - 1; a padding position attends to itself only."""
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    allowed = torch.eye(length, dtype=torch.bool).repeat(len(rows), 1, 1)
    for b, (context, tokens, pos, seen) in enumerate(rows):
        shift, n = width - len(context), len(tokens)
        ids[b, shift:shift + n] = torch.tensor(tokens)
        positions[b, shift:shift + n] = torch.tensor(pos)
        allowed[b, shift:shift + n, shift:shift + n] = seen
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return ids, positions, mask[:, None]


def _pack(context: list[int], continuations: list[list[int]]) -> tuple[list[int], list[int], list[int], torch.Tensor]:
    """One row: the context, then each continuation without its last token (the last token is only predicted).
    Returns (context, tokens, position ids, [n, n] attention allowed)."""
    n_ctx = len(context)
    tokens, pos = list(context), list(range(n_ctx))
    spans = []
    for cont in continuations:
        spans.append((len(tokens), len(cont) - 1))
        tokens += cont[:-1]
        pos += range(n_ctx, n_ctx + len(cont) - 1)
    seen = torch.zeros((len(tokens), len(tokens)), dtype=torch.bool)
    seen[:n_ctx, :n_ctx] = torch.ones(n_ctx, n_ctx, dtype=torch.bool).tril()
    for begin, size in spans:
        seen[begin:begin + size, :n_ctx] = True
        seen[begin:begin + size, begin:begin + size] = torch.ones(size, size, dtype=torch.bool).tril()
    return context, tokens, pos, seen


def _choice_sums(logprobs: torch.Tensor, continuations: list[list[int]]) -> list[float]:
    """Sum of each continuation's token log-probabilities; `logprobs` row 0 is the last context column (it
    predicts every continuation's first token), then the packed continuation columns in order."""
    sums, column = [], 1
    for cont in continuations:
        # Token j > 0 is predicted at the column of token j - 1 of the same continuation.
        rows = [0] + list(range(column, column + len(cont) - 1))
        sums.append(float(logprobs[rows, cont].sum()))
        column += len(cont) - 1
    return sums


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def score_mmlu(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: Sequence[tuple[str, MCItem]],
               form: str = "mmlu_continuation", batch_size: int = 16) -> ChoiceScores:
    """Log-likelihood scores of (subject, item) pairs in `form` (lm-eval's zero-shot prompt)."""
    requests = [mmlu_request(subject, item, form) for subject, item in items]
    loglik = score_requests(model, tokenizer, requests, batch_size)
    # lm-eval's acc_norm divides by the length of the choice as doc_to_choice gives it (no leading space).
    lengths = [[len(c) for c in (item.choices if form == "mmlu_continuation" else LETTERS)] for _, item in items]
    return ChoiceScores(np.array(loglik, dtype=float), np.array([item.gold - 1 for _, item in items]),
                        np.array(lengths, dtype=float))


def stratified_subset(items: Sequence[tuple[str, MCItem]], n: int, seed: int) -> list[tuple[str, MCItem]]:
    """`n` items spread evenly over subjects (-1: all): each subject's items shuffled by `seed`, then taken round
    by round, one per subject per round (subjects in a seeded order), so n = k x subjects gives k per subject."""
    by_subject: dict[str, list[tuple[str, MCItem]]] = {}
    for pair in items:
        by_subject.setdefault(pair[0], []).append(pair)
    if n == -1:
        return list(items)
    if not 1 <= n <= len(items):
        raise ValueError(f"stratified_subset: n={n} (there are {len(items)} items)")
    rng = random.Random(seed)
    subjects = sorted(by_subject)
    for subject in subjects:
        rng.shuffle(by_subject[subject])
    rng.shuffle(subjects)
    chosen: list[tuple[str, MCItem]] = []
    for k in range(max(map(len, by_subject.values()))):
        chosen += [by_subject[s][k] for s in subjects if k < len(by_subject[s])]
        if len(chosen) >= n:
            break
    return chosen[:n]


def items_digest(items: Sequence[tuple[str, MCItem]]) -> str:
    """A hash of the item set (subjects, questions, choices, answers, order)."""
    text = json.dumps([[s, it.question, list(it.choices), it.gold] for s, it in items])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model: PreTrainedModel) -> str:
    """A cheap hash of a model's weights: every parameter's name, shape, dtype and first 64 values. Training
    changes them all (full-parameter) or adds parameters (LoRA), so a trained model never matches its untrained
    fingerprint; reading every weight would cost seconds per 100M parameters."""
    h = hashlib.sha256(str(getattr(model.config, "_name_or_path", "")).encode())
    for name, p in model.named_parameters():
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(p.detach().reshape(-1)[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
