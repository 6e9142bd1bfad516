"""Section `levers`: each throughput lever of `sciknow.train` on and off, with its numerical check.

The workload is notebook 08's: one suite document per run, its five contents (original + four rewrites), batch 1,
`--lever-epochs` epochs; then the document's questions and their paraphrases asked greedily. Each setting trains
from the same weights in the same order; settings alternate within every repeat (A, B, C, A, B, C, ...).

Checked against the fp32 reference (issue targets): every epoch's mean loss within MAX_LOSS_REL (relative); the
greedy answers after training identical on at least MIN_IDENTICAL of the questions; the keyword score within
MAX_KEYWORD_DIFF. A lever that misses a check is reported, not failed: it stays opt-in (see README, Performance).
The calibration row runs the fp32 reference with another data-order seed: the same checks on a change that is no
lever at all say how chaotic these short runs are.
tokens/s counts the training steps only; `torch.compile`'s compile time is counted against the run it serves.
"""
from __future__ import annotations

import argparse
import dataclasses

from benchmarks.common import MIN_IDENTICAL, Report, log, median, timed
from sciknow import models
from sciknow.config import PAPER_SELECTED_GROUPS, SUITE_DIR, DataSpec, EvalSpec, TrainSpec
from sciknow.conditions import spread_documents
from sciknow.data import KnowledgeSet, load_suite, training_texts
from sciknow.suites import KeywordSuite
from sciknow.train import levers, tokenize, train

NB08_LR = {"lora": 2e-4, "full": 1e-4}  # notebook 08's defaults
MAX_LOSS_REL = 0.01
MAX_KEYWORD_DIFF = 0.05
# name -> TrainSpec changes; the first is the reference (today's loop before the levers: fp32, eager). The last
# is no lever: the reference with another data order, to show how far the checks move without any numerics change.
SETTINGS = {
    "fp32 (reference)": dict(autocast="off"),
    "bf16 autocast": dict(autocast="bf16"),
    "compile": dict(autocast="off", compile=True),
    "compile + bf16 autocast": dict(autocast="bf16", compile=True),
    "fp32, data-order seed 1 (calibration)": dict(autocast="off", seed=1),
}


def bench_levers(args: argparse.Namespace, report: Report, loaded: models.LoadedModel,
                 hf_tokens_per_s: dict[str, float]) -> None:
    """`hf_tokens_per_s`: the original recipe's (HF Trainer) tokens/s per method from section `train`, if it ran."""
    ksets = load_suite(SUITE_DIR)
    names = spread_documents(ksets, args.lever_documents)
    by_name = {k.name: k for k in ksets}
    settings = {k: v for k, v in SETTINGS.items() if args.lever_compile or "compile" not in k}
    for method in ("lora", "full"):
        base = TrainSpec(method=method, lr=NB08_LR[method], epochs=args.lever_epochs, batch_size=1,
                         max_length=512, seed=0, lora_r=100, lora_alpha=300,
                         layer_groups=list(PAPER_SELECTED_GROUPS))
        runs: dict[str, list[dict]] = {name: [] for name in settings}
        for r in range(args.lever_repeats):
            for name, changes in settings.items():
                spec = dataclasses.replace(base, **changes)
                for doc in names:
                    runs[name].append(_one_run(loaded, spec, by_name[doc], r))
                last = runs[name][-len(names):]
                log(f"levers {method} {name} (repeat {r}): {sum(x['train_s'] for x in last):.1f}s training "
                    f"({sum(x['tokens'] for x in last) / sum(x['train_s'] for x in last):.0f} tokens/s), "
                    f"{sum(x['eval_s'] for x in last):.1f}s answering, levers {last[0]['levers']}")
        _report(report, method, names, runs, hf_tokens_per_s.get(method))


def _one_run(loaded: models.LoadedModel, spec: TrainSpec, kset: KnowledgeSet, repeat: int) -> dict:
    data = DataSpec(knowledge_set=str(SUITE_DIR), documents=[kset.name], contents=["C1", "C2", "C3", "C4", "C5"])
    texts = training_texts(data, [kset])
    suite = KeywordSuite([kset], EvalSpec(paraphrases=True, max_new_tokens=48))
    with models.trainable(loaded, spec) as model:
        active = levers(model, spec)
        train_s, history = timed(train, model, loaded.tokenizer, texts, spec, progress=False)
        eval_s, result = timed(suite.evaluate, model, loaded.tokenizer)
    tokens = sum(len(e) for e in tokenize(loaded.tokenizer, texts, spec.max_length)) * spec.epochs
    return {"document": kset.name, "repeat": repeat, "train_s": train_s, "eval_s": eval_s, "tokens": tokens,
            "levers": active, "losses": [h.loss for h in history], "score": result.score,
            "paraphrase_score": result.metrics["paraphrase_score"],
            "answers": [p["answer"] for p in result.predictions]}


def _report(report: Report, method: str, names: list[str], runs: dict[str, list[dict]],
            hf_tps: float | None) -> None:
    ref_name = next(iter(runs))
    per_repeat = {name: _totals(rs, len(names)) for name, rs in runs.items()}
    ref = per_repeat[ref_name]
    ref_first = runs[ref_name][:len(names)]  # every repeat computes the same numbers; the first one is checked
    for name, totals in per_repeat.items():
        tps = median([t["tokens"] / t["train_s"] for t in totals])
        ref_tps = median([t["tokens"] / t["train_s"] for t in ref])
        what = f"{len(names)} suite documents x 5 contents x {len(runs[name][0]['losses'])} epochs, batch 1"
        report.row("levers", f"{method}: {name}: training tokens/s", tps, ref_tps, "tokens/s",
                   f"{what}; vs the fp32 loop" + (f"; vs HF Trainer {tps / hf_tps:.2f}x" if hf_tps else ""))
        run_s = median([t["train_s"] + t["eval_s"] for t in totals])
        ref_run_s = median([t["train_s"] + t["eval_s"] for t in ref])
        report.row("levers", f"{method}: {name}: train + answer, all documents", run_s, ref_run_s, "s",
                   "answers after the last epoch (questions and paraphrases)", higher_is_better=False)
        if name == ref_name:
            continue
        first = runs[name][:len(names)]
        rel = max(abs(a - b) / b for x, y in zip(first, ref_first) for a, b in zip(x["losses"], y["losses"]))
        report.row("levers", f"{method}: {name}: max relative epoch-loss difference", rel, None, "fraction",
                   "every epoch of every document vs fp32", target=f"≤ {MAX_LOSS_REL}",
                   met="yes" if rel <= MAX_LOSS_REL else "no")
        pairs = [(a, b) for x, y in zip(first, ref_first) for a, b in zip(x["answers"], y["answers"])]
        same = sum(a == b for a, b in pairs) / len(pairs)
        report.row("levers", f"{method}: {name}: answers identical to fp32", same, None, "fraction",
                   f"{len(pairs)} questions and paraphrases", target=f"≥ {MIN_IDENTICAL}",
                   met="yes" if same >= MIN_IDENTICAL else "no")
        diff = max(abs(_mean(first, key) - _mean(ref_first, key)) for key in ("score", "paraphrase_score"))
        report.row("levers", f"{method}: {name}: |Δ keyword score| (questions, paraphrases)", diff, None, "score",
                   f"means over documents: {_mean(first, 'score'):.3f} vs {_mean(ref_first, 'score'):.3f}, "
                   f"{_mean(first, 'paraphrase_score'):.3f} vs {_mean(ref_first, 'paraphrase_score'):.3f}",
                   target=f"≤ {MAX_KEYWORD_DIFF}", met="yes" if diff <= MAX_KEYWORD_DIFF else "no")
        report.notes.append(f"levers {method} {name}: epoch losses {[[round(v, 4) for v in x['losses']] for x in first]}"
                            f" vs fp32 {[[round(v, 4) for v in y['losses']] for y in ref_first]}")


def _totals(runs: list[dict], per_repeat: int) -> list[dict]:
    """Sums over the documents of each repeat."""
    out = []
    for i in range(0, len(runs), per_repeat):
        chunk = runs[i:i + per_repeat]
        out.append({k: sum(x[k] for x in chunk) for k in ("train_s", "eval_s", "tokens")})
    return out


def _mean(runs: list[dict], key: str) -> float:
    return sum(x[key] for x in runs) / len(runs)
