"""Section `sweep`: one sweep trial end to end, `sciknow.experiment.run` vs the original recipe.

sciknow is timed twice per repeat: the first trial of a sweep (the process holds no model yet, so
`experiment.run` loads it from the converted cache) and a later trial (the process reuses its model). The
original recipe reloads the model from disk in every trial, attaches LoRA with `get_peft_model`, trains with one
`Trainer` and answers with a new pipeline per epoch. Reported: wall times (target ≥2×) and both final scores.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from benchmarks.common import LR, MAX_SCORE_DIFF, Report, log, median, polyai, timed
from benchmarks.recipe import HFRecipe, epoch_orders, pipeline_answers
from sciknow import experiment, models
from sciknow.config import PAPER_SELECTED_GROUPS, POLYAI_SET, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec
from sciknow.data import KnowledgeSet
from sciknow.scores import keyword_score
from sciknow.train import tokenize


def sweep_config(args: argparse.Namespace, contents: list[str]) -> RunConfig:
    """The benchmarked trial: LoRA on the paper's groups (r=100, α=300), PolyAI contents, per-epoch evaluation."""
    return RunConfig(
        task="bench", model=ModelSpec(name=args.model),
        data=DataSpec(knowledge_set=str(POLYAI_SET), contents=contents, n_irrelevant=0),
        train=TrainSpec(method="lora", lr=LR["lora"], lr_schedule="linear_per_epoch", epochs=args.sweep_epochs,
                        max_length=args.max_length, seed=0, lora_r=100, lora_alpha=300,
                        layer_groups=list(PAPER_SELECTED_GROUPS)),
        eval=EvalSpec(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
    )


def sciknow_trial(config: RunConfig, first: bool) -> float | None:
    """One trial through the public path; `first`: as the first trial of a sweep, with no model in the process."""
    if first:
        models.forget()  # experiment.run then loads the model (models.get), as a sweep's first trial does
    return experiment.run(config, None, False)["final_score"]  # None if diverged before its first evaluation


def original_trial(config: RunConfig, args: argparse.Namespace, k: KnowledgeSet) -> float:
    """The original recipe's trial on knowledge set `k`: reload the model, fresh LoRA adapters, `train()` + a
    pipeline per epoch."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = models.resolve(args.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # reload per trial
    tok = AutoTokenizer.from_pretrained(path)
    spec = config.train
    torch.manual_seed(spec.seed)
    model = get_peft_model(model, LoraConfig(
        r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=models.lora_target_modules(model, spec.layer_groups)))
    examples = tokenize(tok, [k.content(c).text for c in config.data.contents], spec.max_length)
    score = 0.0
    with tempfile.TemporaryDirectory() as out:
        recipe = HFRecipe(model, tok, examples, spec, out)
        for order in epoch_orders(len(examples), spec.epochs, spec.seed):
            recipe.epoch(order)
            model.eval()
            answers = pipeline_answers(model, tok, [q.question for q in k.questions], args.max_new_tokens)
            score = sum(keyword_score(a, q.keywords) for a, q in zip(answers, k.questions)) / len(answers)
    return score


def bench_sweep(args: argparse.Namespace, report: Report) -> None:
    k = polyai()
    contents = [c.id for c in k.contents][: args.sweep_contents]
    config = sweep_config(args, contents)
    log(f"sweep trial: {len(contents)} contents, {args.sweep_epochs} epochs, {args.sweep_repeats} repeats")
    t = {"first": [], "later": [], "original": []}
    scores = {}
    for r in range(args.sweep_repeats):
        dt, scores["first"] = timed(sciknow_trial, config, True)
        t["first"].append(dt)
        dt, scores["later"] = timed(sciknow_trial, config, False)
        t["later"].append(dt)
        dt, scores["original"] = timed(original_trial, config, args, k)
        t["original"].append(dt)
        log(f"  repeat {r}: sciknow first {t['first'][-1]:.1f}s, later {t['later'][-1]:.1f}s "
            f"(score {scores['later']}), original {t['original'][-1]:.1f}s (score {scores['original']})")
    what = (f"LoRA paper groups r=100 α=300, {len(contents)} contents, {args.sweep_epochs} epochs with per-epoch "
            f"eval, max_length={args.max_length}, max_new_tokens={args.max_new_tokens}")
    for name, label in (("first", "first trial incl. model load"), ("later", "later trial (model reused)")):
        speed = median(t["original"]) / median(t[name])
        report.row("sweep", f"{label}: wall time", median(t[name]), median(t["original"]), "s",
                   f"{what}; original reloads the model every trial", higher_is_better=False, target="≥2×",
                   met="yes" if speed >= 2 else "no")
    s_s, s_o = scores["later"], scores["original"]
    same = s_s is not None and s_o is not None and abs(s_s - s_o) <= MAX_SCORE_DIFF
    note = "sciknow run diverged" if s_s is None else f"sciknow's first trial: {scores['first']}"
    report.row("sweep", "final keyword score", s_s, s_o, "score", note, target="same", met="yes" if same else "no")
