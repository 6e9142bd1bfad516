"""Benchmark suite: sciknow against the original study's recipe, side by side in one process.

    python -m benchmarks.run [--quick | --standard] [--model tiny-llama] [--only eval,train,sweep,...]

Every comparison is a ratio of two timings taken in the same run, on the same inputs, interleaved
(A, B, A, B, ...) so that load from other jobs on the machine hits both sides alike; each number is the
median of the repeats. Results: benchmarks/results/bench.md and bench.csv (rewritten after every section,
so a long run leaves partial results behind). Exit status 1 if a correctness check fails.

Sections, one module each: machine (limits of this CPU), eval (batched evaluator vs pipeline per question),
train (sciknow.train vs HF Trainer), levers (each throughput lever on and off), optim (AdamW variants), profile (where a training step's time goes), sweep
(one experiment.run trial vs the original recipe's), suite (notebook 08's units by part; an answering pass vs
its bound), writers (the offline writer models as writers of knowledge
sets; not in the default sections: it needs `scripts/setup.sh --writers`). The original recipe is in benchmarks/recipe.py.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`: import `benchmarks` from the repo, not its own folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from benchmarks.common import OPTIONAL_SECTIONS, RESULTS, SECTIONS, Report, log, mmlu_items, parse_args, polyai, train_texts  # noqa: E402
from benchmarks.eval import bench_eval  # noqa: E402
from benchmarks.levers import bench_levers  # noqa: E402
from benchmarks.machine import bench_decode_bound, bench_machine  # noqa: E402
from benchmarks.optim import bench_optim  # noqa: E402
from benchmarks.profile import bench_profile  # noqa: E402
from benchmarks.suite import bench_suite  # noqa: E402
from benchmarks.sweep import bench_sweep  # noqa: E402
from benchmarks.train import bench_train  # noqa: E402
from benchmarks.writers import bench_writers  # noqa: E402
from sciknow import models  # noqa: E402
from sciknow.config import ModelSpec  # noqa: E402
from sciknow.scores import keyword_score, mc_correct  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    sections = set(args.only.split(","))
    known = f"{SECTIONS},{OPTIONAL_SECTIONS}"
    if unknown := sections - set(known.split(",")):
        raise SystemExit(f"--only: unknown section(s) {sorted(unknown)}; choose from {known}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.manual_seed(0)
    log(f"settings: {vars(args)}")
    report = Report()
    loaded = models.load(ModelSpec(name=args.model))  # the benchmark's own copy; sweep trials use models.get
    machine = None
    if sections & {"machine", "eval", "train", "profile"}:  # the limits every other section is compared with
        machine = bench_machine(args, report, loaded)
        report.write(args, started)
    if "machine" in sections:
        bench_decode_bound(args, report, loaded, machine)
        report.write(args, started)
    k = polyai() if sections & {"eval", "train"} else None  # the shared folder only when needed
    if "eval" in sections:
        bench_eval(args, report, loaded, machine, "polyai", [q.question for q in k.questions],
                   lambda i, a: keyword_score(a, k.questions[i].keywords), "keyword score", args.repeats)
        report.write(args, started)
        items = mmlu_items(args.n_mmlu)
        bench_eval(args, report, loaded, machine, "mmlu", [it.instruction for it in items],
                   lambda i, a: float(mc_correct(a, items[i].gold)), "accuracy (first digit 1-4)", args.mmlu_repeats)
        report.write(args, started)
    texts = train_texts(args.train_texts) if sections & {"train", "profile"} else []
    if "train" in sections:
        bench_train(args, report, loaded, machine, texts, [q.question for q in k.questions])
        report.write(args, started)
    if "levers" in sections:
        hf = {r["metric"].split(":")[0]: r["original"] for r in report.rows
              if r["section"] == "train" and r["metric"].endswith("tokens/s (training steps only)")}
        bench_levers(args, report, loaded, hf)
        report.write(args, started)
    if "optim" in sections:
        bench_optim(args, report, loaded)
        report.write(args, started)
    if "profile" in sections:  # after train and optim: its explanation quotes their rows
        bench_profile(args, report, loaded, machine, texts)
        report.write(args, started)
    if "sweep" in sections:
        bench_sweep(args, report)
        report.write(args, started)
    if "suite" in sections:
        bench_suite(args, report, loaded)
        report.write(args, started)
    if "writers" in sections:
        bench_writers(args, report)
        report.write(args, started)
    log(f"done in {time.perf_counter() - started:.0f}s -> {RESULTS / 'bench.md'}")
    for f in report.failures:
        log(f"FAILED: {f}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
