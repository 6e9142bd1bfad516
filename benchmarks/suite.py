"""Section `suite`: notebook 08's replication units timed by part, and one answering pass against its bound.

Units: notebook 08's conditions (`conditions.conditions`: untrained, 1/3/5 contents, step-matched, translations;
full-parameter, constant lr 1e-4, E = --suite-epochs, answers after every epoch) on --suite-documents suite
documents, seed 0, each one `experiment.run`. Its record splits the wall time: `load_s` (config, texts, the
process's model, weights reset), `answer_s` (every answering pass), training the rest. The model is loaded
before the first unit (its cold load has its own row), as notebook 08 reuses it across units.

Answering pass: one document's 5 questions and 5 paraphrases, 48 new tokens, one batch
(`evaluate.generate_answers`, notebook 08's EvalSpec), with the packed weights it uses by default and with torch's
default kernel (`sciknow.packed_linears`), interleaved. Its bound on this machine: each decoding step streams the
weights once at the measured copy bandwidth, and the prefill runs at the measured fp32 matmul peak
(2 FLOPs per weight per prompt token; the embedding table only as the output layer of each prompt's last
token). Pass, bandwidth and peak are sampled interleaved, medians of --repeats.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Report, log, median, timed
from benchmarks.machine import Yardstick
from sciknow import conditions, experiment, models, replication, sweep
from sciknow.config import SUITE_DIR, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec
from sciknow.data import load_suite
from sciknow.evaluate import build_prompt, end_token_ids, generate_answers, greedy_decode

MIN_FRACTION_OF_BOUND = 0.70  # issue 22's target for an answering pass
NB08 = dict(lr=1e-4, max_new_tokens=48, n_contents=(1, 3, 5), controls=("step-matched", "translations"))


def bench_suite(args: argparse.Namespace, report: Report, loaded: models.LoadedModel) -> None:
    ksets = load_suite(SUITE_DIR)
    documents = conditions.spread_documents(ksets, args.suite_documents)
    kset = next(k for k in ksets if k.name == documents[0])
    _answering_pass(args, report, loaded, [x for q in kset.questions for x in (q.question, q.paraphrase)])
    _units(args, report, documents)
    _workers_scaling(args, report, documents)


def answering_bound(loaded: models.LoadedModel, prompts: list[list[int]], decoding_steps: int,
                    peak: float, bandwidth: float) -> tuple[float, float]:
    """(seconds streaming the weights over the decoding steps, seconds of prefill at the matmul peak)."""
    model = loaded.model
    weights = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()  # a lookup per token; the output layer per prompt
    prefill_flops = 2 * (weights - embedding) * sum(map(len, prompts)) + 2 * embedding * len(prompts)
    return decoding_steps * weight_bytes / bandwidth, prefill_flops / peak


def _answering_pass(args: argparse.Namespace, report: Report, loaded: models.LoadedModel,
                    questions: list[str]) -> None:
    log(f"suite: one answering pass ({len(questions)} questions, 48 new tokens) vs its bound")
    model, tok = loaded.model, loaded.tokenizer
    max_new_tokens = NB08["max_new_tokens"]
    prompts = [tok(build_prompt(tok, q), add_special_tokens=False).input_ids for q in questions]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        lengths = [len(t) for t in greedy_decode(model, sorted(prompts, key=len), max_new_tokens,
                                                 end_token_ids(model, tok), tok.pad_token_id)]
    model.train(was_training)
    tokens, steps = sum(lengths), max(lengths) - 1  # the first token of every answer comes from the prefill
    yardstick = Yardstick()
    passes, default_passes, peaks, bandwidths = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so both kernels see the same machine
        peaks.append(yardstick.peak())
        bandwidths.append(yardstick.bandwidth())
        passes.append(timed(generate_answers, model, tok, questions, max_new_tokens, EvalSpec.batch_size)[0])
        with torch.backends.mkldnn.flags(enabled=False):  # torch's default fp32 kernel (no packed weights)
            default_passes.append(
                timed(generate_answers, model, tok, questions, max_new_tokens, EvalSpec.batch_size)[0])
    stream_s, prefill_s = answering_bound(loaded, prompts, steps, median(peaks), median(bandwidths))
    bound_s = stream_s + prefill_s
    what = (f"{len(questions)} questions, {tokens} tokens, {steps} decoding steps; bound = {stream_s:.2f} s "
            f"streaming {steps} x weights at {median(bandwidths) / 1e9:.1f} GB/s + {prefill_s:.2f} s prefill at "
            f"{median(peaks) / 1e9:.0f} GFLOP/s; 'original' column = bound")
    for kernel, times in (("packed weights (default)", passes), ("torch's default kernel", default_passes)):
        pass_s = median(times)
        report.row("suite", f"answering pass, {kernel}: time vs its bound", pass_s, bound_s, "s",
                   f"{what}; bound/time = {bound_s / pass_s:.2f}; passes {[round(p, 2) for p in times]}",
                   higher_is_better=False, target=f"≥ {MIN_FRACTION_OF_BOUND} of bound",
                   met="yes" if bound_s / pass_s >= MIN_FRACTION_OF_BOUND else "no")
        report.row("suite", f"answering tokens/s, {kernel}, vs bound", tokens / pass_s, tokens / bound_s,
                   "tokens/s", "'original' column = the bound's tokens/s")


def _base(args: argparse.Namespace) -> RunConfig:
    """Notebook 08's run, before the conditions change it."""
    return RunConfig(task="08", model=ModelSpec(name=args.model), data=DataSpec(knowledge_set=str(SUITE_DIR)),
                     train=TrainSpec(method="full", lr=NB08["lr"], lr_schedule="constant", epochs=args.suite_epochs,
                                     max_length=512),
                     eval=EvalSpec(max_new_tokens=NB08["max_new_tokens"], paraphrases=True))


def _units(args: argparse.Namespace, report: Report, documents: list[str]) -> None:
    spec = ModelSpec(name=args.model)
    models.forget()
    load_s, _ = timed(models.get, spec)
    report.row("suite", "model load (cold, from the converted cache)", load_s, None, "s",
               higher_is_better=False)
    named = conditions.conditions(_base(args), args.suite_epochs, NB08["n_contents"], NB08["controls"])
    for name, condition in named.items():
        records = [experiment.run(c, progress=False) for c in experiment.replicate(condition, documents, [0])]
        failed = [r["error"] for r in records if r["status"] != "ok"]
        if failed:
            report.failures.append(f"suite unit {name}: {failed[0]}")
            continue
        wall, load, answer = (median([r[k] for r in records]) for k in ("wall_s", "load_s", "answer_s"))
        passes = len(records[0]["per_epoch"])
        log(f"suite unit {name}: {wall:.1f}s = loading {load:.1f} + training {wall - load - answer:.1f} "
            f"+ answering {answer:.1f} ({passes} passes)")
        what = f"median over {len(documents)} document(s), E = {args.suite_epochs}"
        report.row("suite", f"unit {name}: wall time", wall, None, "s", what, higher_is_better=False)
        report.row("suite", f"unit {name}: loading", load, None, "s", what, higher_is_better=False)
        report.row("suite", f"unit {name}: training", wall - load - answer, None, "s", what,
                   higher_is_better=False)
        report.row("suite", f"unit {name}: answering", answer, None, "s", f"{what}; {passes} passes",
                   higher_is_better=False)


def _workers_scaling(args: argparse.Namespace, report: Report, documents: list[str]) -> None:
    """The same units (5 contents on each document) in one worker with all the cores' threads, and in one worker
    per core with a thread each: workers started by `replication.run_many`, each loading the model cold."""
    units = experiment.replicate(conditions.conditions(_base(args), args.suite_epochs, NB08["n_contents"], ())
                                 ["5 contents"], documents, [0])
    cores = len(os.sched_getaffinity(0))
    for workers in sorted({1, cores}):
        threads = cores // workers
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            replication.run_many(units, Path(tmp) / "results.jsonl", sweep.storage(None, tmp), study_name="bench",
                                 workers=workers, threads=threads, poll_s=0.5)
            wall = time.perf_counter() - start
        log(f"suite: {len(units)} units in {workers} worker(s) x {threads} thread(s): {wall:.1f} s")
        report.row("suite", f"workers: {len(units)} units, {workers} x {threads} thread(s), wall time", wall, None,
                   "s", f"5 contents on {len(units)} document(s), E = {args.suite_epochs}; cold model load per worker",
                   higher_is_better=False)
