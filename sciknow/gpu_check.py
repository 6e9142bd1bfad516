"""One command that exercises the whole GPU path (`bash scripts/gpu_check.sh`), for a machine with one CUDA GPU.

No GPU has ever run sciknow's GPU path on this project's machines; this check is prepared so that the first one
that does answers in one go (<= 8 min on one GPU). On SmolLM2-135M and Qwen2.5-Coder-1.5B (the offline packages,
no hub download) it runs, each through `experiment.run` on two contents of one suite document for two epochs:
full-parameter training (fp32 weights, bf16 autocast, TF32, gradient checkpointing), LoRA on bf16 weights, nf4
QLoRA through bitsandbytes on CUDA, DeepSpeed ZeRO-3 on one GPU (the one-GPU config, and the paper's CPU-offload
config), each followed by batched answering of 10 questions. Every step asserts that the loss went down,
that answers were produced, and the levers its record reports (TF32, autocast, ZeRO-3's gathered evaluation);
then the DeepSpeed steps must answer at least GATHERED_EVAL_MIN_SPEED of the LoRA steps' speed, and fp32 matmuls
must run TF32_MIN_SPEEDUP faster than at full precision (on GPUs with TF32). It prints a table of training and answering tokens/s and peak GPU memory, and exits 1 when any step failed, 2 when
there is no CUDA device (nothing was checked), 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import REPO_ROOT, SUITE_DIR, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec

SMOLLM2, QWEN = "smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"
ONE_GPU = str(REPO_ROOT / "configs" / "deepspeed_zero3_one_gpu.json")
OFFLOAD = str(REPO_ROOT / "configs" / "deepspeed_zero3_offload.json")
DOCUMENT = "astro-sevrinne"  # a suite document: 5 questions and their paraphrases
NO_CUDA = 2


@dataclass(frozen=True)
class Step:
    name: str
    model: str
    precision: str
    train: dict[str, Any]
    levers: dict[str, Any] = field(default_factory=dict)  # what the record's `levers` must say


def steps() -> list[Step]:
    lora = {"method": "lora", "lr": 2e-4, "lora_r": 16, "lora_alpha": 48}
    return [
        Step("full fp32 + bf16 autocast + checkpointing", SMOLLM2, "fp32",
             {"method": "full", "lr": 1e-4, "autocast": "bf16", "gradient_checkpointing": True},
             {"autocast": "bf16", "gradient_checkpointing": True}),
        Step("LoRA on bf16 weights", SMOLLM2, "bf16", lora),
        Step("QLoRA nf4", SMOLLM2, "nf4", lora),
        Step("DeepSpeed ZeRO-3, one GPU, bf16", SMOLLM2, "fp32",
             {"method": "deepspeed", "lr": 1e-4, "deepspeed_config": ONE_GPU}, {"eval_weights": "gathered"}),
        Step("LoRA on bf16 weights", QWEN, "bf16", lora),
        Step("QLoRA nf4", QWEN, "nf4", lora),
        Step("DeepSpeed ZeRO-3, CPU offload (paper)", QWEN, "fp32",
             {"method": "deepspeed", "lr": 1e-5, "deepspeed_config": OFFLOAD}, {"eval_weights": "gathered"}),
    ]


def config(step: Step) -> RunConfig:
    return RunConfig(task="gpu_check", model=ModelSpec(name=step.model, precision=step.precision),
                     data=DataSpec(knowledge_set=str(SUITE_DIR), documents=[DOCUMENT], contents=["C1", "C2"]),
                     train=TrainSpec(epochs=2, max_length=512, **step.train),
                     eval=EvalSpec(max_new_tokens=48, paraphrases=True, batch_size=64),
                     tags={"gpu_check": step.name})


def problems(record: dict[str, Any], step: Step, cuda: bool) -> list[str]:
    """What is wrong with a step's record: status, loss, answers, levers."""
    if record["status"] != "ok":
        return [f"status {record['status']}: {record['error']}"]
    found = []
    losses = [e["loss"] for e in record["per_epoch"]]
    if not (len(losses) == 2 and losses[1] < losses[0]):
        found.append(f"loss did not decrease: {losses}")
    answers = [p["answer"] for p in record["predictions"]]
    if len(answers) != 10 or not all(answers):
        found.append(f"expected 10 non-empty answers, got {answers}")
    expected = {**step.levers, "float32_matmul": "high" if cuda else "highest"}
    for name, value in expected.items():
        if record["levers"].get(name) != value:
            found.append(f"levers.{name} = {record['levers'].get(name)!r}, expected {value!r}")
    return found


def measure(record: dict[str, Any], tokenizer) -> dict[str, Any]:
    """Training and answering tokens/s and peak GPU memory of a finished record."""
    last = record["per_epoch"][-1]
    answer_tokens = sum(len(tokenizer(p["answer"], add_special_tokens=False).input_ids)
                        for e in record["per_epoch"] for p in e["predictions"])
    eval_s = sum(e["eval_s"] for e in record["per_epoch"])
    peak = record.get("peak_gpu_bytes")
    return {"train_tok_s": last["tokens"] / last["train_s"], "answer_tok_s": answer_tokens / eval_s,
            "peak_gpu_gb": peak / 2**30 if peak is not None else float("nan")}


def run_step(step: Step, results_path, cuda: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from . import experiment, models

    start = time.perf_counter()
    record = experiment.run(config(step), results_path, progress=False)
    row = {"step": step.name, "model": step.model, "wall_s": time.perf_counter() - start,
           "problems": problems(record, step, cuda)}
    if record["status"] == "ok":
        row.update(measure(record, AutoTokenizer.from_pretrained(models.resolve(step.model))))
    return row


# ZeRO-3's evaluation on weights gathered once answers at least this fraction of the LoRA step's speed on the
# same model; streaming every layer in for every token (from host memory with offload) is an order slower.
GATHERED_EVAL_MIN_SPEED = 0.2
TF32_MIN_SPEEDUP = 1.5  # fp32 matmuls in TF32 vs full precision, on a GPU that has TF32 (Ampere and later)


def gathered_eval_problems(rows: list[dict[str, Any]]) -> list[str]:
    """Does each DeepSpeed step answer about as fast as the LoRA step on the same model?"""
    found = []
    for ds in (r for r in rows if r["step"].startswith("DeepSpeed") and "answer_tok_s" in r):
        lora = [r for r in rows if r["model"] == ds["model"] and r["step"].startswith("LoRA") and "answer_tok_s" in r]
        if lora and ds["answer_tok_s"] < GATHERED_EVAL_MIN_SPEED * lora[0]["answer_tok_s"]:
            found.append(f"{ds['model']}: DeepSpeed answers at {ds['answer_tok_s']:.1f} tok/s, LoRA at "
                         f"{lora[0]['answer_tok_s']:.1f}: is ZeRO-3 streaming the weights for every token?")
    return found


def tf32_speedup(size: int = 4096, repeats: int = 20) -> float:
    """How much faster fp32 matmuls run at the precision models.load sets ("high": TF32) than at "highest"."""
    a = torch.randn(size, size, device="cuda")

    def seconds(precision: str) -> float:
        torch.set_float32_matmul_precision(precision)
        a @ a  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ a
        torch.cuda.synchronize()
        return time.perf_counter() - start

    try:
        return seconds("highest") / seconds("high")
    finally:
        torch.set_float32_matmul_precision("high")


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'model':<28} {'step':<42} {'train tok/s':>11} {'answer tok/s':>12} {'peak GPU GB':>11} " \
             f"{'wall s':>6}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        numbers = (f"{r['train_tok_s']:>11.0f} {r['answer_tok_s']:>12.1f} {r['peak_gpu_gb']:>11.2f}"
                   if "train_tok_s" in r else f"{'-':>11} {'-':>12} {'-':>11}")
        lines.append(f"{r['model']:<28} {r['step']:<42} {numbers} {r['wall_s']:>6.0f}  "
                     + ("ok" if not r["problems"] else "FAIL: " + "; ".join(r["problems"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=None, help="also append the runs' records to this JSONL file")
    parser.add_argument("--probe", action="store_true", help="only check that a CUDA device is there")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda}); nothing "
              "was checked. Run it on a machine with an NVIDIA GPU and the CUDA torch (README: SCIKNOW_TORCH).",
              file=sys.stderr)
        return NO_CUDA
    if args.probe:
        return 0
    print(f"gpu_check: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f}"
          f" GB), torch {torch.__version__}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}", flush=True)
    rows = []
    for step in steps():
        try:
            rows.append(run_step(step, args.results, cuda=True))
        except Exception as err:  # noqa: BLE001 - every step is reported, then the exit code says it failed
            traceback.print_exc()
            rows.append({"step": step.name, "model": step.model, "wall_s": float("nan"),
                         "problems": [f"{type(err).__name__}: {err}"]})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rows))
    failed = [r for r in rows if r["problems"]]
    print(f"\ngpu_check: {len(rows) - len(failed)} of {len(rows)} steps ok")
    speedup = tf32_speedup()
    print(f"gpu_check: fp32 matmul {speedup:.1f}x faster in TF32 than at full precision")
    later_problems = gathered_eval_problems(rows)
    if torch.cuda.get_device_capability() >= (8, 0) and speedup < TF32_MIN_SPEEDUP:
        later_problems.append(f"TF32 speed-up {speedup:.2f} < {TF32_MIN_SPEEDUP}: is TF32 off?")
    for problem in later_problems:
        print(f"gpu_check: FAIL: {problem}")
    return 1 if failed or later_problems else 0


if __name__ == "__main__":
    sys.exit(main())
