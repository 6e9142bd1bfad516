"""Benchmark suite: sciknow against the original study's recipe, side by side in one process.

    python -m benchmarks.run [--quick | --standard] [--model tiny-llama] [--only eval,train,sweep,...]

Every comparison is a ratio of two timings taken in the same run, on the same inputs, interleaved
(A, B, A, B, ...) so that load from other jobs on the machine hits both sides alike; each number is the
median of the repeats. Results: benchmarks/results/bench.md and bench.csv (rewritten after every section,
so a long run leaves partial results behind). Exit status 1 if a correctness check fails.

The original recipe (Hatakeyama-Sato et al. 2023) as reproduced here:
  * evaluation: `pipeline("text-generation")` called once per question, greedy, max_new_tokens=100;
  * training: HF `Trainer`, batch size 1, a fresh `trainer.train()` per epoch with a generation pass after it;
  * a sweep trial reloads the model from disk.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sciknow import models  # noqa: E402
from sciknow.config import (  # noqa: E402
    PAPER_SELECTED_GROUPS, POLYAI_SET, SHARED_DIR, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec,
)
from sciknow.data import load_knowledge_set  # noqa: E402
from sciknow.evaluate import build_prompt, generate_answers  # noqa: E402
from sciknow.qa import load_mmlu  # noqa: E402
from sciknow.scores import keyword_score, mc_correct  # noqa: E402

RESULTS = Path(os.environ.get("SCIKNOW_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
MMLU_DIR = SHARED_DIR / "reference" / "mmlu"
PLOS_DIR = SHARED_DIR / "corpora" / "plos-starter"
SECTIONS = "machine,eval,train,optim,profile,sweep"
LR = {"lora": 1e-4, "full": 1e-5}
MAX_SCORE_DIFF = 0.02  # issue: scores of the two sides within 0.02
MIN_IDENTICAL = 0.95  # issue: >= 95 % identical answers
MAX_EPOCH_LOSS_DIFF = 1e-3  # per-epoch mean training loss, sciknow vs HF Trainer (same data, seed, optimizer)

# Sizes per preset; every one can be overridden by its flag. Times are for an idle 2-core CPU and SmolLM2-135M
# (LoRA step on 1x200 tokens ~2 s, full-parameter step ~4 s, greedy decoding ~0.09 s/token at batch 1).
PRESETS = {
    # The sizes: hours.
    "paper": dict(repeats=3, mmlu_repeats=3, max_new_tokens=100, n_mmlu=50, train_texts=42, train_epochs=2,
                  train_repeats=3, max_length=256, sweep_contents=12, sweep_epochs=10, sweep_repeats=2,
                  decode_tokens=32, profile_steps=4),
    # 16 min: full-size evaluation (5 PolyAI x3, 50 MMLU x100 tokens x1), training on the 12 PolyAI contents
    # for 2 epochs (6 min with the generation passes), a 4-content 3-epoch sweep trial (4 min).
    "standard": dict(repeats=3, mmlu_repeats=1, max_new_tokens=100, n_mmlu=50, train_texts=12, train_epochs=2,
                     train_repeats=1, max_length=256, sweep_contents=4, sweep_epochs=3, sweep_repeats=1,
                     decode_tokens=32, profile_steps=4),
    # Minutes, for iteration (smoke runs: add --model tiny-llama).
    "quick": dict(repeats=2, mmlu_repeats=1, max_new_tokens=24, n_mmlu=16, train_texts=4, train_epochs=2,
                  train_repeats=1, max_length=128, sweep_contents=2, sweep_epochs=2, sweep_repeats=1,
                  decode_tokens=16, profile_steps=2),
}

ROWS: list[dict] = []  # one row per measured quantity -> bench.csv
NOTES: list[str] = []  # free text -> bench.md
EXPLANATIONS: dict[str, str] = {}  # title -> paragraph in bench.md
FAILURES: list[str] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def row(section: str, metric: str, sciknow: float | None, original: float | None, unit: str, note: str = "",
        higher_is_better: bool = True, target: str = "", met: str = "") -> None:
    ratio = None
    if sciknow not in (None, 0) and original not in (None, 0):
        ratio = sciknow / original if higher_is_better else original / sciknow
    ROWS.append({"section": section, "metric": metric, "sciknow": sciknow, "original": original, "unit": unit,
                 "speedup": ratio, "target": target, "met": met, "note": note})


def check(ok: bool, failure: str) -> str:
    """Record a failed correctness check (-> exit status 1); returns the table's `met` cell."""
    if not ok:
        FAILURES.append(failure)
    return "yes" if ok else "NO"


def fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def write_results(args: argparse.Namespace, started: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    keys = ["section", "metric", "sciknow", "original", "unit", "speedup", "target", "met", "note"]
    with open(RESULTS / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        for r in ROWS:
            w.writerow({k: fmt(r[k]) for k in keys})
    lines = [
        "# sciknow benchmark", "",
        f"Command: `{' '.join([Path(sys.executable).name, '-m', 'benchmarks.run'] + sys.argv[1:])}`  ",
        f"Wall time so far: {time.perf_counter() - started:.0f} s; torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at end {os.getloadavg()[0]:.1f}", "",
        f"Settings: {vars(args)}", "",
        "All timings are medians of interleaved repeats; `speedup` = sciknow / original for rates "
        "(original / sciknow for times).", "",
        "| section | metric | sciknow | original | unit | speedup | target | met | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ROWS:
        lines.append("| " + " | ".join(fmt(r[k]).replace("|", "/") for k in keys) + " |")
    for title, text in EXPLANATIONS.items():
        lines += ["", f"## {title}", "", text]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    if FAILURES:
        lines += ["", "## FAILED checks", ""] + [f"- {f}" for f in FAILURES]
    (RESULTS / "bench.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- inputs

def polyai():
    return load_knowledge_set(POLYAI_SET)


def mmlu_items(n: int):
    """`n` MMLU college chemistry + physics items (half each); asked with their numbered choices, answered freely."""
    half = (n + 1) // 2
    items = load_mmlu(MMLU_DIR / "college_chemistry_test.csv")[:half] + \
        load_mmlu(MMLU_DIR / "college_physics_test.csv")[:half]
    return items[:n]


def train_texts(n: int) -> list[str]:
    """The first `n` of: PolyAI's 12 contents, its 10 irrelevant texts, then PLOS introductions (seed 0)."""
    from sciknow.corpus import irrelevant_texts

    k = polyai()
    texts = [c.text for c in k.contents] + [c.text for c in k.irrelevant_texts]
    if n > len(texts):
        texts += irrelevant_texts(PLOS_DIR, n - len(texts), 0)
    return texts[:n]


# ----------------------------------------------------------------------------------------------- recipe

def pipeline_answers(model, tokenizer, questions: list[str], max_new_tokens: int) -> list[str]:
    """The original study's evaluation: one pipeline call per question, greedy, same chat-template prompt."""
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    answers = []
    for q in questions:
        out = pipe(build_prompt(tokenizer, q), max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                   return_full_text=False, pad_token_id=tokenizer.pad_token_id)
        answers.append(out[0]["generated_text"].strip())
    return answers


def epoch_orders(n: int, epochs: int, seed: int) -> list[list[int]]:
    """sciknow.train's data order (one randperm per epoch from a seeded generator), so both sides see it."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g).tolist() for _ in range(epochs)]


class HFRecipe:
    """The original study's training loop: ONE HF `Trainer` whose `train()` is called once per epoch
    (num_train_epochs=1, batch size 1). AdamW's state carries over between calls; the default linear schedule
    restarts with every call, decaying lr to 0 within each epoch (sciknow: `lr_schedule="linear_per_epoch"`).
    Each epoch sees the data in sciknow's order, so loss curves compare step by step."""

    def __init__(self, model, tokenizer, examples: list[torch.Tensor], spec: TrainSpec, output_dir: str) -> None:
        from torch.utils.data import SequentialSampler
        from transformers import PrinterCallback, Trainer, TrainingArguments

        from sciknow.train import collate

        class InOrder(Trainer):  # the dataset is handed over already in this epoch's order
            def _get_train_sampler(self, train_dataset=None):
                return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        self.examples = examples
        targs = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=1, num_train_epochs=1, learning_rate=spec.lr,
            lr_scheduler_type="linear", warmup_steps=0, weight_decay=spec.weight_decay,
            max_grad_norm=spec.max_grad_norm,
            # HF's default on torch >= 2.8; sciknow uses the same fused AdamW (`sciknow.train.adamw`). Pinned so
            # the comparison stays like for like if either default changes.
            optim="adamw_torch_fused",
            logging_strategy="no", save_strategy="no", report_to="none", seed=spec.seed, use_cpu=True,
            disable_tqdm=True, remove_unused_columns=False,
        )
        self.trainer = InOrder(model=model, args=targs, train_dataset=[],
                               data_collator=lambda feats: collate([f["input_ids"] for f in feats],
                                                                   tokenizer.pad_token_id))
        self.trainer.remove_callback(PrinterCallback)  # it prints the end-of-train metrics dict

    def epoch(self, order: list[int]) -> None:
        self.trainer.train_dataset = [{"input_ids": self.examples[i]} for i in order]
        self.trainer.train()


@contextmanager
def step_losses(model: torch.nn.Module, out: list[float]):
    """Append the loss of every training forward pass to `out`: the same numbers on both sides, neither loop touched."""
    def hook(module, args, output):
        if module.training and getattr(output, "loss", None) is not None:
            out.append(output.loss.detach().item())

    handle = model.register_forward_hook(hook)
    try:
        yield out
    finally:
        handle.remove()


@contextmanager
def count_generated(model, pad_id: int, counts: list[int]):
    """Append the number of tokens each `model.generate` call produced (padding excluded) to `counts`: the
    tokens the pipeline really decoded, not re-tokenized text."""
    def counting(*args, **kwargs):
        out = generate(*args, **kwargs)
        prompt = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        sequences = getattr(out, "sequences", out)
        counts.append(int((sequences[:, prompt.shape[1]:] != pad_id).sum()))
        return out

    generate = model.generate
    model.generate = counting  # an instance attribute shadows the method until deleted
    try:
        yield counts
    finally:
        del model.generate


@contextmanager
def count_decoded(pad_id: int, counts: list[int]):
    """The same count for sciknow's evaluator, which decodes with `sciknow.evaluate.greedy_decode`."""
    from sciknow import evaluate

    def counting(*args, **kwargs):
        out = decode(*args, **kwargs)
        counts.append(sum(t != pad_id for tokens in out for t in tokens))
        return out

    decode = evaluate.greedy_decode
    evaluate.greedy_decode = counting
    try:
        yield counts
    finally:
        evaluate.greedy_decode = decode


def epoch_means(step_loss: list[float], steps_per_epoch: int) -> list[float]:
    return [statistics.fmean(step_loss[i:i + steps_per_epoch]) for i in range(0, len(step_loss), steps_per_epoch)]


# ----------------------------------------------------------------------------------------------- sections

def bench_machine(args) -> dict:
    log("machine: matmul peak and memory bandwidth")
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    peak = median([2 * n ** 3 / timed(torch.mm, a, b)[0] for _ in range(args.machine_repeats)])
    src = torch.empty(64 * 2 ** 20)  # 256 MiB of fp32
    dst = torch.empty_like(src)
    dst.copy_(src)
    bw = median([2 * src.numel() * 4 / timed(dst.copy_, src)[0] for _ in range(args.machine_repeats)])
    # Threads: is the second core worth having right now? (matmul at 1 vs all threads, interleaved)
    threads = torch.get_num_threads()
    by_threads = {1: [], os.cpu_count(): []}
    for _ in range(args.machine_repeats):
        for t in by_threads:
            torch.set_num_threads(t)
            by_threads[t].append(2 * n ** 3 / timed(torch.mm, a, b)[0])
    torch.set_num_threads(threads)
    row("machine", "fp32 matmul 2048² peak", peak / 1e9, None, "GFLOP/s", f"median of {args.machine_repeats}")
    row("machine", "memory bandwidth (256 MiB copy, read+write)", bw / 1e9, None, "GB/s")
    row("machine", f"matmul with {os.cpu_count()} threads vs 1 thread", median(by_threads[os.cpu_count()]) / 1e9,
        median(by_threads[1]) / 1e9, "GFLOP/s", "'original' column = 1 thread")
    NOTES.append(f"torch.get_num_threads() = {threads} of os.cpu_count() = {os.cpu_count()} "
                 f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); load average {os.getloadavg()}.")
    return {"peak": peak, "bw": bw}


def bench_decode_bound(args, loaded, machine) -> None:
    """Batch-1 decoding tokens/s against the weight-streaming bound (parameter bytes / bandwidth)."""
    log("machine: decoding vs weight-streaming bound")
    model, tok = loaded.model, loaded.tokenizer
    x = tok([build_prompt(tok, "What is polymer chemistry?")], return_tensors="pt", add_special_tokens=False)
    n = args.decode_tokens
    gen = lambda k: model.generate(**x, max_new_tokens=k, min_new_tokens=k, do_sample=False,  # noqa: E731
                                   pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        gen(2)
        rates = []
        for _ in range(args.repeats):  # (n+1 tokens) - (1 token) = n decoding steps, without the prefill
            t1, _ = timed(gen, 1)
            tn, _ = timed(gen, n + 1)
            rates.append(n / max(tn - t1, 1e-9))
    rate = median(rates)
    # Thread check on the real workload: 8 decoding steps with all cores vs 1 thread, interleaved.
    threads, by = torch.get_num_threads(), {os.cpu_count(): [], 1: []}
    with torch.no_grad():
        for _ in range(args.repeats):
            for t in by:
                torch.set_num_threads(t)
                by[t].append(timed(gen, 8)[0])
    torch.set_num_threads(threads)
    row("machine", f"8-token generate: {os.cpu_count()} threads vs 1 thread", median(by[os.cpu_count()]),
        median(by[1]), "s", "'original' column = 1 thread; speedup > 1 means all cores is faster",
        higher_is_better=False)
    bound = machine["bound"]
    row("machine", "batch-1 decode tokens/s vs weight-streaming bound", rate, bound, "tokens/s",
        f"bound = {machine['bw'] / 1e9:.1f} GB/s / {machine['param_bytes'] / 1e6:.0f} MB params")
    row("machine", "batch-1 decode: fraction of weight-streaming bound", rate / bound, None, "fraction")


def bench_eval(args, loaded, machine, name: str, questions: list[str], score: Callable[[int, str], float],
               score_name: str, repeats: int) -> None:
    """sciknow's batched evaluator vs one pipeline call per question; `score(i, answer)` scores answer i."""
    log(f"eval {name}: {len(questions)} questions, {repeats} repeats")
    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    t_b, t_p = [], []
    for r in range(repeats):
        with count_decoded(tok.pad_token_id, []) as tokens_b:
            dt, batched = timed(generate_answers, model, tok, questions, args.max_new_tokens, args.batch_size)
        t_b.append(dt)
        with count_generated(model, tok.pad_token_id, []) as tokens_p:
            dt, per_q = timed(pipeline_answers, model, tok, questions, args.max_new_tokens)
        t_p.append(dt)
        log(f"  repeat {r}: batched {t_b[-1]:.1f}s, pipeline {t_p[-1]:.1f}s")
    n = len(questions)
    speed = median(t_p) / median(t_b)
    row("eval", f"{name}: answers/s (batch_size={args.batch_size})", n / median(t_b), n / median(t_p),
        "answers/s", f"{n} questions, max_new_tokens={args.max_new_tokens}, {repeats} repeats",
        target=f"≥5× (issue: on 50 questions; here {n})" if name == "mmlu" else "",
        met=("yes" if speed >= 5 else "no") if name == "mmlu" else "")
    same = sum(a == b for a, b in zip(batched, per_q)) / n
    row("eval", f"{name}: identical answers", same, None, "fraction", target=f"≥{MIN_IDENTICAL}",
        met=check(same >= MIN_IDENTICAL, f"eval {name}: only {same:.0%} of batched answers equal the pipeline's"))
    s_b = statistics.fmean(score(i, a) for i, a in enumerate(batched))
    s_p = statistics.fmean(score(i, a) for i, a in enumerate(per_q))
    row("eval", f"{name}: {score_name}", s_b, s_p, "score", target=f"|Δ| ≤ {MAX_SCORE_DIFF}",
        met=check(abs(s_b - s_p) <= MAX_SCORE_DIFF, f"eval {name}: {score_name} {s_b:.3f} (batched) vs "
                  f"{s_p:.3f} (pipeline)"))
    # Decoding rate: generated tokens (padding excluded) per second across the batch, prefill included, next to
    # the batch-1 weight-streaming bound.
    tps_b, tps_p = sum(tokens_b) / median(t_b), sum(tokens_p) / median(t_p)
    row("machine", f"{name} eval: generated tokens/s, batched evaluator vs per-question pipeline", tps_b, tps_p,
        "tokens/s", f"{sum(tokens_b)} vs {sum(tokens_p)} tokens" +
        (f"; batch-1 bound = {machine['bound']:.1f} tokens/s" if machine else ""))
    if machine:
        row("machine", f"{name} eval: batched evaluator tokens/s / batch-1 weight-streaming bound",
            tps_b / machine["bound"], tps_p / machine["bound"], "fraction",
            "a batch streams the weights once per step for all its rows, so > 1 is possible; "
            "'original' column = per-question pipeline")
    # Where answers differ: is it batching (padding) or something else? Re-answer those one by one.
    diff = [i for i in range(n) if batched[i] != per_q[i]]
    if diff:
        solo = generate_answers(model, tok, [questions[i] for i in diff], args.max_new_tokens, batch_size=1)
        solo_eq_pipe = sum(solo[j] == per_q[i] for j, i in enumerate(diff))
        NOTES.append(f"eval {name}: {len(diff)} answers differ between batched and pipeline; answered one by one "
                     f"with generate_answers(batch_size=1), {solo_eq_pipe} of them equal the pipeline's "
                     f"(so {solo_eq_pipe} differences come from batching/left padding). First difference: "
                     f"batched={batched[diff[0]][:120]!r} pipeline={per_q[diff[0]][:120]!r}")


def bench_train(args, loaded, machine, texts: list[str], questions: list[str]) -> None:
    """Both recipes train for `train_epochs` epochs with a generation pass (the PolyAI questions) after each.

    Timed separately: the training steps (sciknow: `train()` minus its generation passes; original: the
    `trainer.train()` calls, including building each epoch's Trainer) and the generation passes (sciknow:
    batched `generate_answers`; original: pipeline per question). tokens/s counts training steps only.
    """
    from sciknow.train import tokenize, train

    tok = loaded.tokenizer
    for method in ("lora", "full"):
        spec = TrainSpec(method=method, lr=LR[method], lr_schedule="linear_per_epoch", epochs=args.train_epochs,
                         batch_size=1,
                         max_length=args.max_length, seed=0, lora_r=100, lora_alpha=300,
                         layer_groups=list(PAPER_SELECTED_GROUPS))
        examples = tokenize(tok, texts, spec.max_length)
        n_tokens = sum(len(e) for e in examples) * spec.epochs
        log(f"train {method}: {len(texts)} texts x {spec.epochs} epochs = {n_tokens} tokens, "
            f"{args.train_repeats} repeats")
        t = {"sk_train": [], "sk_gen": [], "hf_train": [], "hf_gen": []}
        for r in range(args.train_repeats):
            with models.trainable(loaded, spec) as model:
                loss_s, gen_s = [], []

                def generation_pass(stats):  # what experiment.run does after each epoch
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
        row("train", f"{method}: tokens/s (training steps only)", tps_s, tps_o, "tokens/s",
            f"{what}; original includes building its Trainer")
        row("train", f"{method}: generation pass after each epoch ({len(questions)} questions)",
            m["sk_gen"] / spec.epochs, m["hf_gen"] / spec.epochs, "s", "batched vs pipeline per question",
            higher_is_better=False)
        row("train", f"{method}: {spec.epochs} epochs incl. generation passes", m["sk_train"] + m["sk_gen"],
            m["hf_train"] + m["hf_gen"], "s", "the original recipe's whole training time", higher_is_better=False)
        # Loss curves: same data order, seed, initial adapters and optimizer, so they should agree closely.
        steps = len(examples)
        if len(loss_s) != len(loss_o) or len(loss_s) != steps * spec.epochs:
            check(False, f"train {method}: loss curves have {len(loss_s)} (sciknow) and {len(loss_o)} (HF) steps, "
                         f"expected {steps * spec.epochs}")
        else:
            # Same data order, seed, initial weights, optimizer and schedule: every epoch must agree.
            ep_s, ep_o = epoch_means(loss_s, steps), epoch_means(loss_o, steps)
            d_epoch = max(abs(a - b) for a, b in zip(ep_s, ep_o))
            row("train", f"{method}: max |Δ epoch mean loss|", d_epoch, None, "nats",
                f"per epoch: sciknow {[round(x, 4) for x in ep_s]}, HF {[round(x, 4) for x in ep_o]}",
                target=f"≤ {MAX_EPOCH_LOSS_DIFF}",
                met=check(d_epoch <= MAX_EPOCH_LOSS_DIFF, f"train {method}: epoch mean losses differ by {d_epoch:.4f}"))
            row("train", f"{method}: max |Δ step loss|", max(abs(a - b) for a, b in zip(loss_s, loss_o)), None,
                "nats", "same order, seed, fused AdamW; step curves in notes")
        NOTES.append(f"train {method} step losses, sciknow: {[round(x, 3) for x in loss_s]}")
        NOTES.append(f"train {method} step losses, HF Trainer: {[round(x, 3) for x in loss_o]}")
        if method == "full":
            params = sum(p.numel() for p in loaded.model.parameters())
            frac = 6 * params * tps_s / machine["peak"]
            row("machine", "full-parameter training FLOP/s (6·N·tokens/s)", 6 * params * tps_s / 1e9,
                6 * params * tps_o / 1e9, "GFLOP/s", f"N={params}; training steps only",
                target="≥70% of matmul peak", met="yes" if frac >= 0.7 else "no (see profile section)")
            row("machine", "full-parameter training: fraction of matmul peak", frac, 6 * params * tps_o /
                machine["peak"], "fraction")


MATMUL = "matmul (aten::mm/addmm/bmm)"
ATTENTION = "attention kernel (SDPA)"
LOSS = "softmax + cross-entropy"
EMBEDDING = "embedding (fwd + dense bwd)"
OPTIMIZER = "optimizer (AdamW step, zero_grad) + grad-norm clipping"
OTHER = "other: elementwise, RMSNorm, rotary, grad accumulation, copies, autograd overhead"
KINDS = [MATMUL, ATTENTION, LOSS, EMBEDDING, OPTIMIZER, OTHER]


def event_kind(event) -> str:
    """What a profiled op works for. Ops inside the optimizer or the embedding's forward/backward count there
    (they are generic fill_/sqrt/div/index ops by name); the rest by their own name."""
    e = event
    while e is not None:
        if e.name.startswith("Optimizer."):
            return OPTIMIZER
        if e.name == "aten::embedding" or "EmbeddingBackward" in e.name:
            return EMBEDDING
        e = e.cpu_parent
    name = event.name
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return MATMUL
    if "scaled_dot_product" in name or "flash_attention" in name:
        return ATTENTION
    if "softmax" in name or "nll_loss" in name or "cross_entropy" in name:
        return LOSS
    if name in ("aten::_foreach_norm", "aten::linalg_vector_norm"):  # clip_grad_norm_ (no profiler range)
        return OPTIMIZER
    return OTHER


def profile_seconds(prof) -> tuple[dict[str, float], float]:
    """Profiled self CPU seconds per kind of op, and the FLOP/s the matmul ops reached by themselves."""
    seconds = dict.fromkeys(KINDS, 0.0)
    mm_flops = 0
    for e in prof.events():  # the raw events key_averages() sums, with their parents
        kind = event_kind(e)
        seconds[kind] += e.self_cpu_time_total / 1e6
        if kind == MATMUL:
            mm_flops += e.flops
    return seconds, mm_flops / max(seconds[MATMUL], 1e-12)


def bench_profile(args, loaded, machine, texts: list[str]) -> None:
    """torch.profiler over a few full-parameter steps: where training time goes, and why not 70 % of peak."""
    from torch.profiler import ProfilerActivity, profile

    from sciknow.train import train

    steps = min(args.profile_steps, len(texts) - 1)
    log(f"profile: {steps} full-parameter training steps after a warm-up step")
    spec = TrainSpec(method="full", lr=LR["full"], epochs=1, max_length=args.max_length, seed=0)
    prof = profile(activities=[ProfilerActivity.CPU], with_flops=True)
    forwards = 0

    def start_at_second_step(module, args):  # the first step also creates AdamW's moment buffers: a one-off
        nonlocal forwards
        forwards += 1
        if forwards == 2:
            prof.start()

    with models.trainable(loaded, spec) as model:
        handle = model.register_forward_pre_hook(start_at_second_step)
        train(model, loaded.tokenizer, texts[: steps + 1], spec, progress=False)
        prof.stop()
        handle.remove()
    averages = prof.key_averages()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile_full_train.txt").write_text(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    seconds, mm_rate = profile_seconds(prof)
    total = sum(seconds.values())
    shares = {k: v / total for k, v in seconds.items()}
    for kind, share in shares.items():
        row("profile", f"full-parameter step time: {kind}", share, None, "fraction",
            f"torch.profiler self CPU time, {steps} steps")
    row("profile", "matmul ops' own rate", mm_rate / 1e9, machine["peak"] / 1e9, "GFLOP/s",
        "profiler FLOP counts / time in matmul ops; 'original' column = 2048² matmul peak")
    # AdamW moves ~28 bytes per parameter per step (reads param, grad, 2 moments; writes param, 2 moments).
    n_params = sum(p.numel() for p in loaded.model.parameters())
    opt_step, opt_bound = seconds[OPTIMIZER] / steps, 28 * n_params / machine["bw"]
    row("profile", "optimizer + clipping time per step vs memory-bandwidth bound", opt_step, opt_bound, "s",
        "bound = 28 bytes/parameter / measured bandwidth", higher_is_better=False)
    trained = next((r for r in ROWS if r["metric"].startswith("full-parameter training: fraction")), None)
    achieved = f"{trained['sciknow']:.0%} of" if trained else "a fraction of"
    cfg, peak = loaded.model.config, machine["peak"]
    mm_eff = mm_rate / peak
    optim = {r["metric"]: r["sciknow"] for r in ROWS if r["section"] == "optim"}
    fused = ""
    if optim:
        t_fused, t_default = optim["AdamW step, fused=True"], optim["AdamW step, default (for-loop)"]
        fused = (f" (the `optim` rows time one AdamW step on these parameters at {t_fused * 1e3:.0f} ms fused vs "
                 f"{t_default * 1e3:.0f} ms for torch's default for-loop, which sciknow used before)")
    EXPLANATIONS["Why full-parameter training is not at 70 % of the matmul peak"] = (
        f"Full-parameter training runs at {achieved} the fp32 matmul peak ({peak / 1e9:.1f} GFLOP/s, a square "
        f"2048² `torch.mm`). A profile of {steps} steps after a warm-up step (batch 1, ≤{args.max_length} tokens; "
        f"`profile_full_train.txt`; self CPU time per op, attributed through the profiler's call tree) splits the "
        f"step time into: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + ". "
        f"Nearly all FLOPs are matmul FLOPs, so the fraction of peak is about (matmul share of the time) × "
        f"(matmul ops' own rate / peak) = {shares[MATMUL]:.0%} × {mm_eff:.0%} = {shares[MATMUL] * mm_eff:.0%}; "
        f"70 % needs both factors above ~84 %. The matmul ops reach {mm_rate / 1e9:.1f} GFLOP/s = {mm_eff:.0%} "
        f"of the square-matmul peak: at batch 1 one side of every matmul is the sequence (≤{args.max_length} "
        f"rows) against {cfg.hidden_size}- to {cfg.intermediate_size}-wide weights and the {cfg.vocab_size}-row "
        f"output layer, thinner than 2048². The other {1 - shares[MATMUL]:.0%} of the time does O(1) FLOPs per "
        f"byte, so at best it runs at memory speed ({machine['bw'] / 1e9:.0f} GB/s here, i.e. "
        f"~{machine['bw'] / 8e9:.0f} G float reads+writes/s against {peak / 1e9:.0f} GFLOP/s): on this CPU it "
        f"cannot be made to count toward the matmul peak, only made shorter. Of it, the optimizer + clipping "
        f"take {opt_step * 1e3:.0f} ms per step, {opt_step / opt_bound:.1f}× the {opt_bound * 1e3:.0f} ms "
        f"needed just to move AdamW's ~28 bytes per parameter at the measured bandwidth with sciknow's fused "
        f"AdamW{fused}.")


def bench_optim(args, loaded) -> None:
    """AdamW implementations on the model's parameter shapes; sciknow uses fused=True (`sciknow.train.adamw`)."""
    log("optim: AdamW step, default vs foreach vs fused")
    params = [p.detach().clone().requires_grad_() for p in loaded.model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    variants = {"default (for-loop)": {}, "foreach=True": {"foreach": True}, "fused=True": {"fused": True}}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.optim_repeats):  # interleaved, one optimizer (and its moment buffers) alive at a time
        for name, kwargs in variants.items():
            opt = torch.optim.AdamW(params, lr=1e-6, **kwargs)
            opt.step()  # creates the moment buffers
            times[name].append(median([timed(opt.step)[0] for _ in range(3)]))
            del opt
    base = median(times["default (for-loop)"])
    n = sum(p.numel() for p in params)
    for name, ts in times.items():
        row("optim", f"AdamW step, {name}", median(ts), base, "s",
            f"{n / 1e6:.0f}M params, {len(params)} tensors; 'original' column = torch's default (for-loop); "
            f"sciknow uses fused=True",
            higher_is_better=False)
    del params


def bench_sweep(args, loaded) -> None:
    """One sweep trial end to end: sciknow `experiment.run` vs the original recipe (reloads the model per trial).

    sciknow is timed twice per repeat: the first trial of a sweep (the model is loaded from the converted cache
    inside `experiment.run`) and a later trial (the process already holds the model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sciknow import experiment
    from sciknow.train import tokenize

    k = polyai()
    contents = [c.id for c in k.contents][: args.sweep_contents]
    config = RunConfig(
        task="bench", model=ModelSpec(name=args.model),
        data=DataSpec(knowledge_set=str(POLYAI_SET), contents=contents, n_irrelevant=0),
        train=TrainSpec(method="lora", lr=LR["lora"], lr_schedule="linear_per_epoch", epochs=args.sweep_epochs,
                        max_length=args.max_length,
                        seed=0, lora_r=100, lora_alpha=300, layer_groups=list(PAPER_SELECTED_GROUPS)),
        eval=EvalSpec(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
    )

    def sciknow_trial(first: bool) -> float | None:
        if first:
            models._current = None  # nothing loaded yet: experiment.run loads the model (models.get)
        rec = experiment.run(config, None, False)
        return rec["final_score"]  # None if the run diverged before its first evaluation

    def original() -> float:
        from peft import LoraConfig, get_peft_model

        path = models.resolve(args.model)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # reload per trial
        tok = AutoTokenizer.from_pretrained(path)
        spec = config.train
        torch.manual_seed(spec.seed)
        model = get_peft_model(model, LoraConfig(
            r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=models.lora_target_modules(model, spec.layer_groups)))
        examples = tokenize(tok, [k.content(c).text for c in contents], spec.max_length)
        score = 0.0
        with tempfile.TemporaryDirectory() as out:
            recipe = HFRecipe(model, tok, examples, spec, out)
            for order in epoch_orders(len(examples), spec.epochs, spec.seed):
                recipe.epoch(order)
                model.eval()
                answers = pipeline_answers(model, tok, [q.question for q in k.questions], args.max_new_tokens)
                score = sum(keyword_score(a, q.keywords) for a, q in zip(answers, k.questions)) / len(answers)
        return score

    log(f"sweep trial: {len(contents)} contents, {args.sweep_epochs} epochs, {args.sweep_repeats} repeats")
    t = {"first": [], "later": [], "original": []}
    scores = {}
    for r in range(args.sweep_repeats):
        dt, scores["first"] = timed(sciknow_trial, True)
        t["first"].append(dt)
        dt, scores["later"] = timed(sciknow_trial, False)
        t["later"].append(dt)
        dt, scores["original"] = timed(original)
        t["original"].append(dt)
        log(f"  repeat {r}: sciknow first {t['first'][-1]:.1f}s, later {t['later'][-1]:.1f}s "
            f"(score {scores['later']}), original {t['original'][-1]:.1f}s (score {scores['original']})")
    what = (f"LoRA paper groups r=100 α=300, {len(contents)} contents, {args.sweep_epochs} epochs with per-epoch "
            f"eval, max_length={args.max_length}, max_new_tokens={args.max_new_tokens}")
    for name, label in (("first", "first trial incl. model load"), ("later", "later trial (model reused)")):
        speed = median(t["original"]) / median(t[name])
        row("sweep", f"{label}: wall time", median(t[name]), median(t["original"]), "s",
            f"{what}; original reloads the model every trial", higher_is_better=False, target="≥2×",
            met="yes" if speed >= 2 else "no")
    s_s, s_o = scores["later"], scores["original"]
    same = s_s is not None and s_o is not None and abs(s_s - s_o) <= MAX_SCORE_DIFF
    note = "sciknow run diverged" if s_s is None else f"sciknow's first trial: {scores['first']}"
    row("sweep", "final keyword score", s_s, s_o, "score", note, target="same", met="yes" if same else "no")


# ----------------------------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="paper", help="sizes (default: the issue's, hours)")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", help="= --preset quick (minutes)")
    p.add_argument("--standard", dest="preset", action="store_const", const="standard",
                   help="= --preset standard (16 min on an idle 2-core CPU)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="e.g. tiny-llama for smoke runs")
    p.add_argument("--only", default=SECTIONS, help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--repeats", type=int, help="repeats of the PolyAI evaluation and decoding timings")
    p.add_argument("--mmlu-repeats", type=int, help="repeats of the MMLU evaluation timings")
    p.add_argument("--batch-size", type=int, default=EvalSpec.batch_size, help="sciknow evaluator batch size")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--n-mmlu", type=int, help="size of the MMLU question set")
    p.add_argument("--train-texts", type=int, help="training texts: 12 PolyAI contents, 10 irrelevant, then PLOS")
    p.add_argument("--train-epochs", type=int)
    p.add_argument("--train-repeats", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--sweep-contents", type=int, help="PolyAI contents trained in the sweep trial")
    p.add_argument("--sweep-epochs", type=int)
    p.add_argument("--sweep-repeats", type=int, help="sweep trials per side (median)")
    p.add_argument("--threads", type=int, help="torch threads for the whole run (default: torch's)")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.machine_repeats = 5
    args.optim_repeats = 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = set(args.only.split(","))
    if unknown := sections - set(SECTIONS.split(",")):
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.manual_seed(0)
    log(f"settings: {vars(args)}")
    loaded = models.load(ModelSpec(name=args.model))
    machine = None
    if sections & {"machine", "eval", "train", "profile"}:  # the limits every other section is compared with
        machine = bench_machine(args)
        machine["param_bytes"] = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        machine["bound"] = machine["bw"] / machine["param_bytes"]
        write_results(args, started)
    if "machine" in sections:
        bench_decode_bound(args, loaded, machine)
        write_results(args, started)
    k = polyai()
    if "eval" in sections:
        bench_eval(args, loaded, machine, "polyai", [q.question for q in k.questions],
                   lambda i, a: keyword_score(a, k.questions[i].keywords), "keyword score", args.repeats)
        write_results(args, started)
        items = mmlu_items(args.n_mmlu)
        bench_eval(args, loaded, machine, "mmlu", [it.instruction for it in items],
                   lambda i, a: float(mc_correct(a, items[i].gold)), "accuracy (first digit 1-4)", args.mmlu_repeats)
        write_results(args, started)
    texts = train_texts(args.train_texts) if sections & {"train", "profile"} else []
    if "train" in sections:
        bench_train(args, loaded, machine, texts, [q.question for q in k.questions])
        write_results(args, started)
    if "optim" in sections:
        bench_optim(args, loaded)
        write_results(args, started)
    if "profile" in sections:
        bench_profile(args, loaded, machine, texts)
        write_results(args, started)
    if "sweep" in sections:
        bench_sweep(args, loaded)
        write_results(args, started)
    log(f"done in {time.perf_counter() - started:.0f}s -> {RESULTS / 'bench.md'}")
    for f in FAILURES:
        log(f"FAILED: {f}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
