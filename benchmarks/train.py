"""Section `train`: `sciknow.train.train` vs the original recipe's HF Trainer, LoRA and full-parameter.

Both sides train on the same texts in the same order from the same weights with the same fused AdamW and
per-epoch linear schedule, with a generation pass (the PolyAI questions) after each epoch. Checked: the two loss
curves have the same length and every epoch's mean loss agrees within MAX_EPOCH_LOSS_DIFF.

Timed separately: the training steps (sciknow: `train()` minus its generation passes; original: building the
Trainer and the `trainer.train()` calls) and the generation passes (sciknow: batched `generate_answers`;
original: pipeline per question). tokens/s counts training steps only.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmarks.common import LR, MAX_EPOCH_LOSS_DIFF, Machine, Report, log, median, timed
from benchmarks.recipe import HFRecipe, epoch_orders, pipeline_answers
from sciknow import models
from sciknow.config import PAPER_SELECTED_GROUPS, TrainSpec
from sciknow.evaluate import generate_answers
from sciknow.train import EpochStats, tokenize, train


@contextmanager
def step_losses(model: torch.nn.Module, out: list[float]) -> Iterator[list[float]]:
    """Append the loss of every training forward pass to `out`: the same numbers on both sides, neither loop touched."""
    def hook(module, args, output):
        if module.training and getattr(output, "loss", None) is not None:
            out.append(output.loss.detach().item())

    handle = model.register_forward_hook(hook)
    try:
        yield out
    finally:
        handle.remove()


def epoch_means(step_loss: list[float], steps_per_epoch: int) -> list[float]:
    return [statistics.fmean(step_loss[i:i + steps_per_epoch]) for i in range(0, len(step_loss), steps_per_epoch)]


def bench_train(args: argparse.Namespace, report: Report, loaded: models.LoadedModel, machine: Machine,
                texts: list[str], questions: list[str]) -> None:
    """Both recipes train for `train_epochs` epochs with a generation pass (the PolyAI questions) after each."""
    tok = loaded.tokenizer
    for method in ("lora", "full"):
        # fp32 like the HF Trainer's default, so that the loss curves must agree; section `levers` measures
        # autocast and the other levers against this loop.
        spec = TrainSpec(method=method, lr=LR[method], lr_schedule="linear_per_epoch", epochs=args.train_epochs,
                         batch_size=1, max_length=args.max_length, seed=0, lora_r=100, lora_alpha=300,
                         layer_groups=list(PAPER_SELECTED_GROUPS), autocast="off")
        examples = tokenize(tok, texts, spec.max_length)
        n_tokens = sum(len(e) for e in examples) * spec.epochs
        log(f"train {method}: {len(texts)} texts x {spec.epochs} epochs = {n_tokens} tokens, "
            f"{args.train_repeats} repeats")
        t = {"sk_train": [], "sk_gen": [], "hf_train": [], "hf_gen": []}
        for r in range(args.train_repeats):
            with models.trainable(loaded, spec) as model:
                loss_s, gen_s = [], []

                def generation_pass(stats: EpochStats) -> None:  # what experiment.run does after each epoch
                    gen_s.append(timed(generate_answers, model, tok, questions, args.max_new_tokens,
                                       args.batch_size)[0])

                with step_losses(model, loss_s):
                    dt, _ = timed(train, model, tok, texts, spec, on_epoch=generation_pass, progress=False)
                t["sk_train"].append(dt - sum(gen_s))
                t["sk_gen"].append(sum(gen_s))
            with models.trainable(loaded, spec) as model, tempfile.TemporaryDirectory() as out:
                loss_o, gen_o = [], 0.0
                with step_losses(model, loss_o):
                    train_o, recipe = timed(HFRecipe, model, tok, examples, spec, out)
                    for order in epoch_orders(len(examples), spec.epochs, spec.seed):
                        train_o += timed(recipe.epoch, order)[0]
                        model.eval()
                        gen_o += timed(pipeline_answers, model, tok, questions, args.max_new_tokens)[0]
                t["hf_train"].append(train_o)
                t["hf_gen"].append(gen_o)
            log(f"  repeat {r}: sciknow {t['sk_train'][-1]:.1f}s train + {t['sk_gen'][-1]:.1f}s generation, "
                f"HF Trainer {t['hf_train'][-1]:.1f}s + pipeline {t['hf_gen'][-1]:.1f}s")
        m = {k: median(v) for k, v in t.items()}
        tps_s, tps_o = n_tokens / m["sk_train"], n_tokens / m["hf_train"]
        what = f"{len(texts)} texts, max_length={spec.max_length}, {spec.epochs} epochs, lr={spec.lr}"
        report.row("train", f"{method}: tokens/s (training steps only)", tps_s, tps_o, "tokens/s",
                   f"{what}; original includes building its Trainer")
        report.row("train", f"{method}: generation pass after each epoch ({len(questions)} questions)",
                   m["sk_gen"] / spec.epochs, m["hf_gen"] / spec.epochs, "s", "batched vs pipeline per question",
                   higher_is_better=False)
        report.row("train", f"{method}: {spec.epochs} epochs incl. generation passes", m["sk_train"] + m["sk_gen"],
                   m["hf_train"] + m["hf_gen"], "s", "the original recipe's whole training time",
                   higher_is_better=False)
        check_loss_curves(report, method, loss_s, loss_o, len(examples), spec.epochs)
        if method == "full":
            params = sum(p.numel() for p in loaded.model.parameters())
            frac = 6 * params * tps_s / machine.peak
            report.row("machine", "full-parameter training FLOP/s (6·N·tokens/s)", 6 * params * tps_s / 1e9,
                       6 * params * tps_o / 1e9, "GFLOP/s", f"N={params}; training steps only",
                       target="≥70% of matmul peak", met="yes" if frac >= 0.7 else "no (see profile section)")
            report.row("machine", "full-parameter training: fraction of matmul peak", frac,
                       6 * params * tps_o / machine.peak, "fraction")


def check_loss_curves(report: Report, method: str, loss_s: list[float], loss_o: list[float], steps: int,
                      epochs: int) -> None:
    """Same data order, seed, initial weights, optimizer and schedule: the curves must have every step and every
    epoch's mean loss must agree."""
    if len(loss_s) != len(loss_o) or len(loss_s) != steps * epochs:
        report.check(False, f"train {method}: loss curves have {len(loss_s)} (sciknow) and {len(loss_o)} (HF) "
                            f"steps, expected {steps * epochs}")
    else:
        ep_s, ep_o = epoch_means(loss_s, steps), epoch_means(loss_o, steps)
        d_epoch = max(abs(a - b) for a, b in zip(ep_s, ep_o))
        report.row("train", f"{method}: max |Δ epoch mean loss|", d_epoch, None, "nats",
                   f"per epoch: sciknow {[round(x, 4) for x in ep_s]}, HF {[round(x, 4) for x in ep_o]}",
                   target=f"≤ {MAX_EPOCH_LOSS_DIFF}",
                   met=report.check(d_epoch <= MAX_EPOCH_LOSS_DIFF,
                                    f"train {method}: epoch mean losses differ by {d_epoch:.4f}"))
        report.row("train", f"{method}: max |Δ step loss|", max(abs(a - b) for a, b in zip(loss_s, loss_o)), None,
                   "nats", "same order, seed, fused AdamW; step curves in notes")
    report.notes.append(f"train {method} step losses, sciknow: {[round(x, 3) for x in loss_s]}")
    report.notes.append(f"train {method} step losses, HF Trainer: {[round(x, 3) for x in loss_o]}")
