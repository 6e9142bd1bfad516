"""Section `eval`: sciknow's batched evaluator vs the original recipe's pipeline call per question.

Both sides answer the same questions greedily with the same prompts. Checked: at least MIN_IDENTICAL of the
answers are identical and the two scores differ by at most MAX_SCORE_DIFF. Also reported (section `machine`):
generated tokens/s of each side against the batch-1 weight-streaming bound.
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from benchmarks.common import MAX_SCORE_DIFF, MIN_IDENTICAL, Machine, Report, log, median, timed
from benchmarks.recipe import pipeline_answers
from sciknow.evaluate import generate_answers
from sciknow.models import LoadedModel


@contextmanager
def count_generated(model: torch.nn.Module, counts: list[int]) -> Iterator[list[int]]:
    """Append the number of tokens each inference forward pass of `model` decodes to `counts`: one per row of its
    logits (a prefill gives each row its first new token, every later step one more per row still decoding).
    Both sides decode through `model`'s forward, so one hook counts the tokens they really decoded (end tokens
    included), neither loop touched."""
    def hook(module, args, output):
        if not module.training:
            counts.append(output.logits.shape[0])

    handle = model.register_forward_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()


def bench_eval(args: argparse.Namespace, report: Report, loaded: LoadedModel, machine: Machine | None, name: str,
               questions: list[str], score: Callable[[int, str], float], score_name: str, repeats: int) -> None:
    """sciknow's batched evaluator vs one pipeline call per question; `score(i, answer)` scores answer i."""
    log(f"eval {name}: {len(questions)} questions, {repeats} repeats")
    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    t_b, t_p = [], []
    for r in range(repeats):
        with count_generated(model, []) as tokens_b:
            dt, batched = timed(generate_answers, model, tok, questions, args.max_new_tokens, args.batch_size)
        t_b.append(dt)
        with count_generated(model, []) as tokens_p:
            dt, per_q = timed(pipeline_answers, model, tok, questions, args.max_new_tokens)
        t_p.append(dt)
        log(f"  repeat {r}: batched {t_b[-1]:.1f}s, pipeline {t_p[-1]:.1f}s")
    n = len(questions)
    speed = median(t_p) / median(t_b)
    report.row("eval", f"{name}: answers/s (batch_size={args.batch_size})", n / median(t_b), n / median(t_p),
               "answers/s", f"{n} questions, max_new_tokens={args.max_new_tokens}, {repeats} repeats",
               target=f"≥5× (issue: on 50 questions; here {n})" if name == "mmlu" else "",
               met=("yes" if speed >= 5 else "no") if name == "mmlu" else "")
    same = sum(a == b for a, b in zip(batched, per_q)) / n
    report.row("eval", f"{name}: identical answers", same, None, "fraction", target=f"≥{MIN_IDENTICAL}",
               met=report.check(same >= MIN_IDENTICAL,
                                f"eval {name}: only {same:.0%} of batched answers equal the pipeline's"))
    s_b = statistics.fmean(score(i, a) for i, a in enumerate(batched))
    s_p = statistics.fmean(score(i, a) for i, a in enumerate(per_q))
    report.row("eval", f"{name}: {score_name}", s_b, s_p, "score", target=f"|Δ| ≤ {MAX_SCORE_DIFF}",
               met=report.check(abs(s_b - s_p) <= MAX_SCORE_DIFF,
                                f"eval {name}: {score_name} {s_b:.3f} (batched) vs {s_p:.3f} (pipeline)"))
    # Decoding rate: generated tokens per second across the batch, prefill included, next to the batch-1
    # weight-streaming bound. Both counts are of the last repeat (greedy: every repeat decodes the same tokens).
    tps_b, tps_p = sum(tokens_b) / median(t_b), sum(tokens_p) / median(t_p)
    report.row("machine", f"{name} eval: generated tokens/s, batched evaluator vs per-question pipeline", tps_b,
               tps_p, "tokens/s", f"{sum(tokens_b)} vs {sum(tokens_p)} tokens" +
               (f"; batch-1 bound = {machine.bound:.1f} tokens/s" if machine else ""))
    if machine:
        report.row("machine", f"{name} eval: batched evaluator tokens/s / batch-1 weight-streaming bound",
                   tps_b / machine.bound, tps_p / machine.bound, "fraction",
                   "a batch streams the weights once per step for all its rows, so > 1 is possible; "
                   "'original' column = per-question pipeline")
    # Where answers differ: is it batching (padding) or something else? Re-answer those one by one.
    diff = [i for i in range(n) if batched[i] != per_q[i]]
    if diff:
        solo = generate_answers(model, tok, [questions[i] for i in diff], args.max_new_tokens, batch_size=1)
        solo_eq_pipe = sum(solo[j] == per_q[i] for j, i in enumerate(diff))
        report.notes.append(
            f"eval {name}: {len(diff)} answers differ between batched and pipeline; answered one by one with "
            f"generate_answers(batch_size=1), {solo_eq_pipe} of them equal the pipeline's (so {solo_eq_pipe} "
            f"differences come from batching/left padding). First difference: batched={batched[diff[0]][:120]!r} "
            f"pipeline={per_q[diff[0]][:120]!r}")
