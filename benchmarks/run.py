"""Benchmark suite: sciknow against the original study's recipe, side by side in one process.

    python -m benchmarks.run [--quick] [--only eval,train,sweep,machine,profile]

Every comparison is a ratio of two timings taken in the same run, on the same inputs, interleaved
(A, B, A, B, ...) so that load from other jobs on the machine hits both sides alike; each number is the
median of the repeats. Results: benchmarks/results/bench.md and bench.csv (rewritten after every section,
so a long run leaves partial results behind).

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
from sciknow.scores import keyword_score  # noqa: E402

RESULTS = Path(os.environ.get("SCIKNOW_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
MODEL = "smollm2-135m-instruct"
MMLU_DIR = SHARED_DIR / "reference" / "mmlu"
PLOS_DIR = SHARED_DIR / "corpora" / "plos-starter"

ROWS: list[dict] = []  # one row per measured quantity -> bench.csv
NOTES: list[str] = []  # free text -> bench.md
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
    if sciknow is not None and original not in (None, 0):
        ratio = sciknow / original if higher_is_better else original / sciknow
    ROWS.append({"section": section, "metric": metric, "sciknow": sciknow, "original": original, "unit": unit,
                 "speedup": ratio, "target": target, "met": met, "note": note})


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
    lines += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    if FAILURES:
        lines += ["", "## FAILED checks", ""] + [f"- {f}" for f in FAILURES]
    (RESULTS / "bench.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- inputs

def polyai():
    return load_knowledge_set(POLYAI_SET)


def mmlu_questions(n: int) -> list[str]:
    """`n` MMLU college chemistry + physics questions (half each), asked free-form (no options)."""
    out: list[str] = []
    for name in ("college_chemistry_test.csv", "college_physics_test.csv"):
        with open(MMLU_DIR / name, newline="") as f:
            out += [r[0] for r in csv.reader(f)][: (n + 1) // 2]
    return out[:n]


def train_texts(n_plos: int) -> list[str]:
    """PolyAI's 12 contents + its 10 irrelevant texts + `n_plos` PLOS introductions (seed 0)."""
    from sciknow.corpus import irrelevant_texts

    k = polyai()
    return [c.text for c in k.contents] + [c.text for c in k.irrelevant_texts] + irrelevant_texts(PLOS_DIR, n_plos, 0)


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


def hf_trainer_epoch(model, tokenizer, examples: list[torch.Tensor], order: list[int], spec: TrainSpec,
                     losses: list[float]) -> None:
    """One `trainer.train()` call over one epoch, batch size 1, fresh Trainer (and so fresh AdamW) each time."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sciknow.train import collate

    class InOrder(Trainer):  # the same data order as sciknow, so loss curves are comparable step by step
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    dataset = [{"input_ids": examples[i]} for i in order]
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=1, num_train_epochs=1, learning_rate=spec.lr,
            lr_scheduler_type="constant", weight_decay=spec.weight_decay, max_grad_norm=spec.max_grad_norm,
            logging_steps=1, save_strategy="no", report_to="none", seed=spec.seed, use_cpu=True,
            disable_tqdm=True, remove_unused_columns=False,
        )
        trainer = InOrder(model=model, args=targs, train_dataset=dataset,
                          data_collator=lambda feats: collate([f["input_ids"] for f in feats], tokenizer.pad_token_id),
                          callbacks=[Losses()])
        trainer.train()


# ----------------------------------------------------------------------------------------------- sections

def bench_machine(args) -> dict:
    log("machine: matmul peak and memory bandwidth")
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    mm = [2 * n ** 3 / timed(torch.mm, a, b)[0] for _ in range(args.machine_repeats)]
    peak = median(mm)
    src = torch.empty(64 * 2 ** 20)  # 256 MiB of fp32
    dst = torch.empty_like(src)
    dst.copy_(src)
    bw = median([2 * src.numel() * 4 / timed(dst.copy_, src)[0] for _ in range(args.machine_repeats)])
    # Threads: is the second core worth having right now? (matmul at 1 vs 2 threads, interleaved)
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
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bound = machine["bw"] / param_bytes
    x = tok([build_prompt(tok, "What is polymer chemistry?")], return_tensors="pt", add_special_tokens=False)
    n = args.decode_tokens
    gen = lambda k: model.generate(**x, max_new_tokens=k, min_new_tokens=k, do_sample=False,  # noqa: E731
                                   pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        gen(2)
        rates = []
        for _ in range(args.repeats):
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
    row("machine", "batch-1 decode tokens/s vs weight-streaming bound", rate, bound, "tokens/s",
        f"bound = {machine['bw'] / 1e9:.1f} GB/s / {param_bytes / 1e6:.0f} MB params; "
        f"fraction = {rate / bound:.2f}")


def bench_eval(args, loaded, name: str, questions: list[str], keywords: list[tuple] | None) -> None:
    log(f"eval {name}: {len(questions)} questions, {args.repeats} repeats")
    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    t_b, t_p = [], []
    batched = per_q = None
    for r in range(args.repeats):
        dt, batched = timed(generate_answers, model, tok, questions, args.max_new_tokens, args.batch_size)
        t_b.append(dt)
        dt, per_q = timed(pipeline_answers, model, tok, questions, args.max_new_tokens)
        t_p.append(dt)
        log(f"  repeat {r}: batched {t_b[-1]:.1f}s, pipeline {t_p[-1]:.1f}s")
    n = len(questions)
    same = sum(a == b for a, b in zip(batched, per_q)) / n
    speed = (n / median(t_b)) / (n / median(t_p))
    target = "≥5× on the 50-question set" if name != "polyai" else ""
    met = ("yes" if speed >= 5 else "no") if target else ""
    row("eval", f"{name}: answers/s (batch_size={args.batch_size})", n / median(t_b), n / median(t_p),
        "answers/s", f"{n} questions, max_new_tokens={args.max_new_tokens}", target=target, met=met)
    row("eval", f"{name}: identical answers", same, None, "fraction", target="≥0.95",
        met="yes" if same >= 0.95 else "no")
    if same < 0.95:
        FAILURES.append(f"eval {name}: only {same:.0%} of batched answers equal the per-question pipeline's")
    if keywords is not None:
        s_b = sum(keyword_score(a, k) for a, k in zip(batched, keywords)) / n
        s_p = sum(keyword_score(a, k) for a, k in zip(per_q, keywords)) / n
        row("eval", f"{name}: keyword score", s_b, s_p, "score", higher_is_better=True, target="|Δ| ≤ 0.02",
            met="yes" if abs(s_b - s_p) <= 0.02 else "no")
        if abs(s_b - s_p) > 0.02:
            FAILURES.append(f"eval {name}: keyword score {s_b:.3f} (batched) vs {s_p:.3f} (pipeline)")
    # Where answers differ: is it batching (padding) or something else? Re-answer those one by one.
    diff = [i for i in range(n) if batched[i] != per_q[i]]
    if diff:
        solo = generate_answers(model, tok, [questions[i] for i in diff], args.max_new_tokens, batch_size=1)
        solo_eq_pipe = sum(solo[j] == per_q[i] for j, i in enumerate(diff))
        NOTES.append(f"eval {name}: {len(diff)} answers differ between batched and pipeline; answered one by one "
                     f"with generate_answers(batch_size=1), {solo_eq_pipe} of them equal the pipeline's "
                     f"(so {solo_eq_pipe} differences come from batching/left padding). First difference: "
                     f"batched={batched[diff[0]][:120]!r} pipeline={per_q[diff[0]][:120]!r}")


def bench_train(args, loaded, texts: list[str]) -> None:
    from sciknow.train import tokenize, train

    for method in ("lora", "full"):
        spec = TrainSpec(method=method, lr=args.lr[method], epochs=1, batch_size=1, max_length=args.max_length,
                         seed=0, lora_r=100, lora_alpha=300, layer_groups=list(PAPER_SELECTED_GROUPS))
        examples = tokenize(loaded.tokenizer, texts, spec.max_length)
        n_tokens = sum(len(e) for e in examples)
        log(f"train {method}: {len(texts)} texts, {n_tokens} tokens/epoch, {args.train_repeats} repeats")
        t_s, t_o, loss_s, loss_o = [], [], [], []
        for r in range(args.train_repeats):
            with models.trainable(loaded, spec) as model:
                curve: list[float] = []
                step = 0

                def hook(m, a, out):  # record per-step losses of sciknow's loop without touching it
                    nonlocal step
                    if m.training and getattr(out, "loss", None) is not None:
                        curve.append(float(out.loss))
                        step += 1
                h = (model.base_model.model if method == "lora" else model).register_forward_hook(hook)
                dt, _ = timed(train, model, loaded.tokenizer, texts, spec, progress=False)
                h.remove()
                t_s.append(dt)
                loss_s = curve
            with models.trainable(loaded, spec) as model:
                curve = []
                order = epoch_orders(len(examples), 1, spec.seed)[0]
                torch.manual_seed(spec.seed)
                dt, _ = timed(hf_trainer_epoch, model, loaded.tokenizer, examples, order, spec, curve)
                t_o.append(dt)
                loss_o = curve
            log(f"  repeat {r}: sciknow {t_s[-1]:.1f}s, HF Trainer {t_o[-1]:.1f}s")
        tps_s, tps_o = n_tokens / median(t_s), n_tokens / median(t_o)
        row("train", f"{method}: tokens/s", tps_s, tps_o, "tokens/s",
            f"{len(texts)} texts, max_length={spec.max_length}, 1 epoch, lr={spec.lr}")
        max_dloss = max(abs(a - b) for a, b in zip(loss_s, loss_o)) if loss_s and loss_o else float("nan")
        row("train", f"{method}: max |Δ step loss|", max_dloss, None, "nats",
            "same order, seed, AdamW; both curves in notes")
        NOTES.append(f"train {method} step losses, sciknow: {[round(x, 3) for x in loss_s]}")
        NOTES.append(f"train {method} step losses, HF Trainer: {[round(x, 3) for x in loss_o]}")
        if method == "full":
            params = sum(p.numel() for p in loaded.model.parameters())
            flops = 6 * params * tps_s
            ROWS.append({"section": "machine", "metric": "full-parameter training FLOP/s (6·N·tokens/s)",
                         "sciknow": flops / 1e9, "original": 6 * params * tps_o / 1e9, "unit": "GFLOP/s",
                         "speedup": None, "target": "≥70% of matmul peak", "met": "", "note": f"N={params}"})


def bench_profile(args, loaded, texts: list[str]) -> None:
    """torch.profiler over a few full-parameter steps: where training time goes."""
    from torch.profiler import ProfilerActivity, profile

    from sciknow.train import train

    log("profile: full-parameter training steps")
    spec = TrainSpec(method="full", lr=1e-5, epochs=1, max_length=args.max_length, seed=0)
    with models.trainable(loaded, spec) as model:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            train(model, loaded.tokenizer, texts[: args.profile_steps], spec, progress=False)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile_full_train.txt").write_text(table)
    NOTES.append("full-parameter training profile (torch.profiler, self CPU time): results/profile_full_train.txt")


def bench_sweep(args, loaded) -> None:
    """One sweep trial end to end: sciknow `experiment.run` (model in memory) vs the original recipe."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sciknow import experiment
    from sciknow.train import tokenize

    k = polyai()
    contents = [c.id for c in k.contents][: args.sweep_contents]
    config = RunConfig(
        task="bench", model=ModelSpec(name=MODEL),
        data=DataSpec(knowledge_set=str(POLYAI_SET), contents=contents, n_irrelevant=0),
        train=TrainSpec(method="lora", lr=args.lr["lora"], epochs=args.sweep_epochs, max_length=args.max_length,
                        seed=0, lora_r=100, lora_alpha=300, layer_groups=list(PAPER_SELECTED_GROUPS)),
        eval=EvalSpec(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
    )
    models._current = loaded  # as in a sweep: the model is already loaded in this process

    def original() -> float:
        from peft import LoraConfig, get_peft_model

        path = models.resolve(MODEL)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # reload per trial
        tok = AutoTokenizer.from_pretrained(path)
        spec = config.train
        torch.manual_seed(spec.seed)
        model = get_peft_model(model, LoraConfig(
            r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=models.lora_target_modules(model, spec.layer_groups)))
        examples = tokenize(tok, [k.content(c).text for c in contents], spec.max_length)
        score = 0.0
        for order in epoch_orders(len(examples), spec.epochs, spec.seed):
            hf_trainer_epoch(model, tok, examples, order, spec, [])
            model.eval()
            answers = pipeline_answers(model, tok, [q.question for q in k.questions], args.max_new_tokens)
            score = sum(keyword_score(a, q.keywords) for a, q in zip(answers, k.questions)) / len(answers)
        return score

    log(f"sweep trial: {len(contents)} contents, {args.sweep_epochs} epochs, {args.sweep_repeats} repeats")
    t_s, t_o, sc_s, sc_o = [], [], None, None
    for r in range(args.sweep_repeats):
        dt, rec = timed(experiment.run, config, None, False)
        t_s.append(dt)
        sc_s = rec["final_score"]
        dt, sc_o = timed(original)
        t_o.append(dt)
        log(f"  repeat {r}: sciknow {t_s[-1]:.1f}s (score {sc_s}), original {t_o[-1]:.1f}s (score {sc_o})")
    speed = median(t_o) / median(t_s)
    row("sweep", "one trial wall time", median(t_s), median(t_o), "s",
        f"LoRA paper groups r=100 α=300, {len(contents)} contents, {args.sweep_epochs} epochs with per-epoch "
        f"eval, max_length={args.max_length}, max_new_tokens={args.max_new_tokens}", higher_is_better=False,
        target="≥2×", met="yes" if speed >= 2 else "no")
    row("sweep", "final keyword score", sc_s, sc_o, "score", target="same",
        met="yes" if abs(sc_s - sc_o) <= 0.02 else "no")


# ----------------------------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes for iteration (minutes)")
    p.add_argument("--only", default="machine,eval,train,profile,sweep", help="comma-separated sections")
    p.add_argument("--repeats", type=int, default=None, help="repeats of the evaluation timings")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--n-mmlu", type=int, default=None, help="size of the MMLU free-form question set")
    p.add_argument("--sweep-epochs", type=int, default=None)
    p.add_argument("--sweep-contents", type=int, default=None, help="PolyAI contents trained in the sweep trial")
    p.add_argument("--train-texts", type=int, default=None, help="texts in the training-throughput epoch (≤42)")
    p.add_argument("--train-repeats", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the whole run (default: torch's)")
    args = p.parse_args(argv)
    q = args.quick
    defaults = dict(repeats=2 if q else 3, max_new_tokens=24 if q else 100, n_mmlu=16 if q else 50,
                    sweep_epochs=2 if q else 10, sweep_contents=2 if q else 12, train_texts=4 if q else 42,
                    train_repeats=1 if q else 3, max_length=128 if q else 256)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.batch_size = 8
    args.machine_repeats = 5
    args.decode_tokens = 16 if q else 32
    args.n_plos = 2 if q else 20  # 12 PolyAI contents + 10 PolyAI irrelevant + n_plos PLOS introductions
    args.profile_steps = 2 if q else 4
    args.sweep_repeats = 1
    args.lr = {"lora": 1e-4, "full": 1e-5}
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = set(args.only.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.manual_seed(0)
    log(f"settings: {vars(args)}")
    machine = bench_machine(args) if sections & {"machine", "train"} else None
    write_results(args, started)
    loaded = models.load(ModelSpec(name=MODEL))
    if "machine" in sections:
        bench_decode_bound(args, loaded, machine)
        write_results(args, started)
    if "eval" in sections:
        k = polyai()
        bench_eval(args, loaded, "polyai", [q.question for q in k.questions], [q.keywords for q in k.questions])
        write_results(args, started)
        bench_eval(args, loaded, "mmlu", mmlu_questions(args.n_mmlu), None)
        write_results(args, started)
    texts = train_texts(args.n_plos)[: args.train_texts] if sections & {"train", "profile"} else []
    if "train" in sections:
        bench_train(args, loaded, texts)
        for r in ROWS:
            if r["metric"].startswith("full-parameter training FLOP/s") and machine:
                frac = r["sciknow"] * 1e9 / machine["peak"]
                r["note"] += f"; fraction of matmul peak = {frac:.2f}"
                r["met"] = "yes" if frac >= 0.7 else "no (see profile)"
        write_results(args, started)
    if "profile" in sections:
        bench_profile(args, loaded, texts)
        write_results(args, started)
    if "sweep" in sections:
        bench_sweep(args, loaded)
        write_results(args, started)
    log(f"done in {time.perf_counter() - started:.0f}s -> {RESULTS / 'bench.md'}")
    if FAILURES:
        for f in FAILURES:
            log(f"FAILED: {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
