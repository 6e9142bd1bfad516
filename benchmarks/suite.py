"""Section `suite`: notebook 08's replication units timed by part, and one answering pass against its bound.

Units: notebook 08's conditions (`conditions.conditions`: untrained, 1/3/5 contents, step-matched, translations;
full-parameter, constant lr 1e-4, E = --suite-epochs, answers after every epoch) on --suite-documents suite
documents, seed 0, each one `experiment.run`. Its record splits the wall time: `load_s` (config, texts, the
process's model, weights reset), `answer_s` (every answering pass), training the rest. The model is loaded
before the first unit (its cold load has its own row), as notebook 08 reuses it across units.

Answering pass: one document's 5 questions and 5 paraphrases, 48 new tokens, one batch
(`evaluate.generate_answers`, notebook 08's EvalSpec), with the packed weights it uses by default, with packed
weights but each layer's sibling products separate, and with torch's default kernel (`sciknow.packed_linears`),
interleaved. Its bound on this machine: each decoding step streams the weights once at the measured copy
bandwidth, or computes its live rows' products at the measured fp32 matmul peak, whichever is slower (at 10 rows a
product does 5 FLOPs per fp32 weight byte, so below a peak of 5x the bandwidth decoding is compute-bound); the
prefill runs at the peak (2 FLOPs per weight per prompt token; the output layer only for each prompt's last
token). Pass, bandwidth and peak are sampled interleaved, medians of --repeats.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmarks.common import Report, log, median, timed
from benchmarks.machine import Yardstick
from sciknow import conditions, experiment, models, packed_linears, replication, sweep
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
    _step_products(args, report, loaded)
    _output_layer_rows(args, report, loaded)
    _units(args, report, documents)
    _workers_scaling(args, report, documents)


def answering_bound(loaded: models.LoadedModel, prompts: list[list[int]], lengths: list[int],
                    peak: float, bandwidth: float) -> tuple[float, float, float]:
    """Bounds of a pass whose answers have `lengths` tokens (the first from the prefill, one decoding step per
    further token, finished rows leaving): (seconds streaming the weights once per decoding step at `bandwidth`;
    seconds of the decoding steps with each step the slower of that streaming and its live rows' products at
    `peak`; seconds of the prefill at `peak`)."""
    model = loaded.model
    weights = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.get_input_embeddings().weight  # a lookup per token
    output = model.get_output_embeddings().weight  # a product per row, in the prefill for each prompt's last token
    inner = weights - embedding.numel() - (0 if output is embedding else output.numel())
    prefill_flops = 2 * inner * sum(map(len, prompts)) + 2 * output.numel() * len(prompts)
    step_bytes_s = weight_bytes / bandwidth
    rows = [sum(n > step for n in lengths) for step in range(1, max(lengths))]
    stream_s = len(rows) * step_bytes_s
    step_s = sum(max(step_bytes_s, 2 * (inner + output.numel()) * r / peak) for r in rows)
    return stream_s, step_s, prefill_flops / peak


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
    passes, separate_passes, default_passes, peaks, bandwidths = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved, so every kernel sees the same machine
        peaks.append(yardstick.peak())
        bandwidths.append(yardstick.bandwidth())
        passes.append(timed(generate_answers, model, tok, questions, max_new_tokens, EvalSpec.batch_size)[0])
        with _siblings(()):  # q/k/v and gate/up as separate products
            separate_passes.append(
                timed(generate_answers, model, tok, questions, max_new_tokens, EvalSpec.batch_size)[0])
        with torch.backends.mkldnn.flags(enabled=False):  # torch's default fp32 kernel (no packed weights)
            default_passes.append(
                timed(generate_answers, model, tok, questions, max_new_tokens, EvalSpec.batch_size)[0])
    stream_s, step_s, prefill_s = answering_bound(loaded, prompts, lengths, median(peaks), median(bandwidths))
    bound_s = step_s + prefill_s
    what = (f"{len(questions)} questions, {tokens} tokens, {steps} decoding steps; bound = {step_s:.2f} s of "
            f"decoding steps, each the slower of streaming the weights at {median(bandwidths) / 1e9:.1f} GB/s and "
            f"its rows' products at {median(peaks) / 1e9:.0f} GFLOP/s (streaming alone {stream_s:.2f} s), + "
            f"{prefill_s:.2f} s prefill; 'original' column = bound")
    for kernel, times in (("packed weights (default)", passes), ("packed, sibling products apart", separate_passes),
                          ("torch's default kernel", default_passes)):
        pass_s = median(times)
        report.row("suite", f"answering pass, {kernel}: time vs its bound", pass_s, bound_s, "s",
                   f"{what}; bound/time = {bound_s / pass_s:.2f}; passes {[round(p, 2) for p in times]}",
                   higher_is_better=False, target=f"≥ {MIN_FRACTION_OF_BOUND} of bound",
                   met="yes" if bound_s / pass_s >= MIN_FRACTION_OF_BOUND else "no")
        report.row("suite", f"answering tokens/s, {kernel}, vs bound", tokens / pass_s, tokens / bound_s,
                   "tokens/s", "'original' column = the bound's tokens/s")


@contextlib.contextmanager
def _siblings(groups: tuple) -> Iterator[None]:
    """`packed_linears.SIBLINGS` set to `groups` within the block (() computes every product apart)."""
    kept, packed_linears.SIBLINGS = packed_linears.SIBLINGS, groups
    try:
        yield
    finally:
        packed_linears.SIBLINGS = kept


def _step_products(args: argparse.Namespace, report: Report, loaded: models.LoadedModel) -> None:
    """A decoding step's products alone, by kernel: every linear layer of the model in its order at 10 rows (new
    inputs every step, one per width, so siblings share theirs as in the model), the weights streamed from memory;
    against the step's FLOPs at the measured matmul peak. What the library kernels reach is the limit of a pass."""
    model, rows = loaded.model, packed_linears.DECODE_ROWS_HINT
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    widths = {m.in_features for m in linears}
    flops = 2 * rows * sum(m.weight.numel() for m in linears)

    def fresh() -> dict[int, torch.Tensor]:
        return {width: torch.randn(rows, width) for width in widths}

    def modules(inputs):
        for m in linears:
            m(inputs[m.in_features])

    def default_kernel(inputs):
        for m in linears:
            torch.nn.functional.linear(inputs[m.in_features], m.weight, m.bias)

    mkl = [(torch.ops.mkl._mkl_reorder_linear_weight(m.weight.detach(), rows), m) for m in linears] \
        if torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear") else []

    def mkl_packed(inputs):
        for weight, m in mkl:
            torch.ops.mkl._mkl_linear(inputs[m.in_features], weight, m.weight, m.bias, rows)

    def packed_step(siblings: tuple) -> float:
        """One step inside `packed_linears.packed` with these siblings, timed after a first one (packing the
        weights is not part of a step)."""
        with _siblings(siblings), packed_linears.packed(model):
            modules(fresh())
            return timed(modules, fresh())[0]

    def plain_step(step) -> float:
        step(fresh())
        return timed(step, fresh())[0]

    arms = {"oneDNN packed, siblings as one (default)": lambda: packed_step(packed_linears.SIBLINGS),
            "oneDNN packed, sibling products apart": lambda: packed_step(()),
            "torch's default kernel": lambda: plain_step(default_kernel)}
    if mkl:
        arms["MKL packed GEMM (torch.ops.mkl)"] = lambda: plain_step(mkl_packed)
    with torch.no_grad():
        peak, times = _interleaved(args.repeats, arms)
    for arm, ts in times.items():
        report.row("suite", f"decoding step's products, {arm}", median(ts), flops / peak, "s",
                   f"{len(linears)} linear layers at {rows} rows, {flops / 1e9:.2f} GFLOP; 'original' column = at "
                   f"the {peak / 1e9:.0f} GFLOP/s matmul peak; steps {[round(t * 1e3, 1) for t in ts]} ms",
                   higher_is_better=False)


def _interleaved(repeats: int, arms: dict) -> tuple[float, dict[object, list[float]]]:
    """(the median matmul peak, each arm's seconds): `repeats` rounds of a peak sample and one call of every arm
    (a function returning the seconds it timed), in turn, so every arm sees the same machine."""
    yardstick, peaks, times = Yardstick(), [], {arm: [] for arm in arms}
    for _ in range(repeats):
        peaks.append(yardstick.peak())
        for arm, step in arms.items():
            times[arm].append(step())
    return median(peaks), times


OUTPUT_ROWS = (1, 10, 40, 80)  # one row; a decoding step's; wider, as in a prefill


def _output_layer_rows(args: argparse.Namespace, report: Report, loaded: models.LoadedModel) -> None:
    """The output layer (the model's largest product) on its packed weight at more and more rows, against the
    matmul peak: how far the kernel stays from the peak at a decoding step's rows, and how near it comes wider."""
    model = loaded.model
    layer = model.get_output_embeddings()

    def product(rows: int) -> float:  # timed after a first call on the same inputs
        inputs = torch.randn(rows, layer.in_features)
        layer(inputs)
        return timed(layer, inputs)[0]

    with torch.no_grad(), packed_linears.packed(model):
        peak, times = _interleaved(args.repeats, {rows: lambda rows=rows: product(rows) for rows in OUTPUT_ROWS})
    for rows, ts in times.items():
        gflops = 2 * rows * layer.weight.numel() / median(ts) / 1e9
        report.row("suite", f"output layer at {rows} row(s), packed: GFLOP/s vs the matmul peak", gflops,
                   peak / 1e9, "GFLOP/s",
                   f"{layer.in_features} x {layer.out_features}, {median(ts) * 1e3:.2f} ms, "
                   f"{layer.weight.numel() * layer.weight.element_size() / median(ts) / 1e9:.1f} GB/s of weights; "
                   "'original' column = the matmul peak")


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
