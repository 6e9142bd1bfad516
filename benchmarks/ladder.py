"""The model-size ladder measured: parameters, peak RSS, training and answering tokens/s, the untrained suite score.

    python -m benchmarks.ladder [--models a,b] [--precisions fp32,nf4] [--documents 24] [--threads 1]

Each (model, precision) runs in its own process, one after another, so its peak RSS (`ru_maxrss`) is its own.
In that process, through the ordinary path (`ModelSpec(name=...)`, `models.get`, `experiment.run`):
- the parameter count from the config (`sciknow.memory`), and the training method: full-parameter when the fit
  estimate with AdamW state is within `--budget-gib` (24 GiB, the issue's bound) and the weights are not 4-bit,
  else LoRA with the paper's setting (r 100, alpha 300, its selected layer groups);
- answering: the untrained model on the questions and paraphrases of `--documents` suite documents (spread over
  fields; all 24 = 120 questions + 120 paraphrases), greedy, `--max-new-tokens`, batched as every run is;
  answering tokens/s = answer tokens / wall time of that run; the score, and every keyword found untrained;
- training: one epoch over the 5 contents of one suite document (5 steps, batch 1, up to 512 tokens each);
  training tokens/s = tokens / seconds of the epoch; with the ladder's method, and with LoRA (notebook 10's).
Results: `ladder.csv` and `ladder.md` under benchmarks/results (rewritten after each model).
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

LADDER = "smollm2-135m-instruct,gemma3-270m,qwen2.5-coder-0.5b-instruct,qwen2.5-coder-1.5b-instruct"
GIB = 1 << 30


def measure(name: str, precision: str, documents: int, max_new_tokens: int, budget_gib: float) -> dict:
    """Everything for one model and precision, in this process (see the module docstring)."""
    import torch

    from sciknow import conditions, experiment, memory, models
    from sciknow.config import PAPER_SELECTED_GROUPS, SUITE_DIR, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec
    from sciknow.data import load_suite, training_texts
    from sciknow.train import train

    spec = ModelSpec(name=name, precision=precision)
    full = TrainSpec(method="full", lr=1e-4, epochs=1)
    fits = memory.full_training_fits(spec, full, budget=(int(budget_gib * GIB), f"{budget_gib:g} GiB"))
    lora = TrainSpec(method="lora", lr=2e-4, epochs=1, lora_r=100, lora_alpha=300,
                     layer_groups=list(PAPER_SELECTED_GROUPS))
    train_spec = full if fits else lora
    row = {"model": name, "precision": precision, "parameters": memory.parameter_count(name),
           "method": train_spec.method, "threads": torch.get_num_threads()}

    began = time.perf_counter()
    loaded = models.get(spec)
    row["load_s"] = round(time.perf_counter() - began, 1)

    ksets = load_suite(SUITE_DIR)
    names = conditions.spread_documents(ksets, documents)
    untrained = RunConfig(task="ladder", model=spec,
                          data=DataSpec(knowledge_set=str(SUITE_DIR), documents=names),
                          train=TrainSpec(method=train_spec.method, epochs=0),
                          eval=EvalSpec(max_new_tokens=max_new_tokens, paraphrases=True))
    record = experiment.run(untrained, progress=False)
    answers = record["predictions"]
    answer_tokens = sum(len(loaded.tokenizer(p["answer"], add_special_tokens=False).input_ids) for p in answers)
    row |= {"questions": len(answers), "answer_s": record["wall_s"], "answer_tokens": answer_tokens,
            "answer_tok_s": round(answer_tokens / record["wall_s"], 1), "untrained_original": record["final_score"],
            "untrained_paraphrase": record["per_epoch"][-1]["metrics"]["paraphrase_score"],
            "found_untrained": [f"{p['document']}/{p['question_id']} ({p['variant']}): {k}"
                                for p in answers for k in p["found"]]}

    document = DataSpec(knowledge_set=str(SUITE_DIR), documents=names[:1],
                        contents=list(conditions.STYLE_CONTENTS))
    texts = training_texts(document, load_suite(SUITE_DIR, names[:1]))
    # The ladder's method, then (when that was full-parameter) LoRA as notebook 10 trains every model.
    runs = {"train": train_spec} | ({"lora": lora} if train_spec.method == "full" else {})
    for key, spec_ in runs.items():
        with models.trainable(loaded, spec_) as model:
            began = time.perf_counter()
            stats = train(model, loaded.tokenizer, texts, spec_, progress=False)[-1]
            seconds = time.perf_counter() - began
        row |= {f"{key}_steps": stats.steps, f"{key}_tokens": stats.tokens, f"{key}_s": round(seconds, 1),
                f"{key}_tok_s": round(stats.tokens / seconds, 1), f"{key}_loss": round(stats.loss, 3)}
    if "lora" not in runs:  # the ladder's method was LoRA already
        row |= {k.replace("train_", "lora_"): v for k, v in row.items() if k.startswith("train_")}
    row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2)
    return row


def write(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "ladder.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    lines = ["| model | precision | parameters | method | peak RSS | training tok/s | LoRA training tok/s | "
             "answering tok/s | untrained original | untrained paraphrase | questions |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['parameters'] / 1e6:,.0f}M | {r['method']} | "
                     f"{r['peak_rss_gib']:.1f} GiB | {r['train_tok_s']} | {r.get('lora_tok_s', '')} | {r['answer_tok_s']} | "
                     f"{r['untrained_original']:.2f} | {r['untrained_paraphrase']:.2f} | {r['questions']} |")
    found = [f"- {r['model']} {r['precision']}: {f}" for r in rows for f in r["found_untrained"]]
    lines += ["", "Keywords found untrained:", *(found or ["- none"])]
    (out / "ladder.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=LADDER)
    p.add_argument("--precisions", default="fp32", help="comma-separated, e.g. fp32,nf4")
    p.add_argument("--documents", type=int, default=24, help="suite documents answered (24 = all 120 questions)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="as notebook 08")
    p.add_argument("--budget-gib", type=float, default=24.0, help="full-parameter training when it fits in this")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process: one model
    args = p.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.models, args.precisions, args.documents, args.max_new_tokens,
                                 args.budget_gib)))
        return 0
    rows = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            command = [sys.executable, "-m", "benchmarks.ladder", "--one", "--models", name, "--precisions",
                       precision, "--documents", str(args.documents), "--max-new-tokens", str(args.max_new_tokens),
                       "--budget-gib", str(args.budget_gib), "--threads", str(args.threads)]
            began = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if proc.returncode:
                print(f"{name} {precision}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{name} {precision} ({time.perf_counter() - began:.0f} s): {rows[-1]}", flush=True)
            write(rows, Path(args.out))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
