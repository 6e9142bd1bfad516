"""`run(config) -> record`: the one path every task takes.

knowledge set -> training texts -> train (full | LoRA | QLoRA | DeepSpeed) -> answer the questions after every
epoch -> keyword score -> one result record, appended to the results store. Notebooks and sweeps call this;
nothing else trains or evaluates.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import models, results
from .config import LATER_DEFAULTS, SPEED_ONLY, RunConfig
from .data import load_knowledge_set, training_texts
from .evaluate import answer_and_score
from .train import Diverged, EpochStats, train


def config_id(config: RunConfig) -> str:
    """Stable id of a configuration: equal configs (seed included) get equal ids, so sweeps can resume."""
    d = config.to_dict()
    for section, defaults in LATER_DEFAULTS.items():  # fields added later count only when set
        for name, default in defaults.items():
            if d[section].get(name) == default:
                del d[section][name]
    for section, fixed in SPEED_ONLY.items():
        d[section].update(fixed)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "python": sys.version.split()[0]}


def _inside_deepspeed_launcher() -> bool:
    return "LOCAL_RANK" in os.environ


def run(config: RunConfig, results_path: str | Path | None = None, progress: bool = True,
        run_id: str | None = None) -> dict[str, Any]:
    """Run one experiment and return its record (also appended to `results_path` when given).

    A diverged run is recorded with the epochs it finished; any other error is recorded as failed and re-raised.
    """
    if config.train.method == "deepspeed" and not _inside_deepspeed_launcher():
        return _run_with_deepspeed_launcher(config, results_path, run_id)
    record: dict[str, Any] = {
        "run_id": run_id or uuid.uuid4().hex[:12], "config_id": config_id(config), "task": config.task,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": "ok", "error": None,
        "config": config.to_dict(), "versions": versions(), "per_epoch": [],
    }
    start = time.perf_counter()
    try:
        kset = None if config.data.dataset else load_knowledge_set(config.data.knowledge_set)
        texts = training_texts(config.data, kset)
        record["n_texts"] = len(texts)
        loaded = models.get(config.model)
        judge = None
        if config.eval.suite == "paper":
            from . import paperqa

            judge = paperqa.make_judge(config.eval.judge)
        with models.trainable(loaded, config.train) as model:

            def evaluate(stats: EpochStats) -> None:
                e = config.eval
                metrics = None
                if e.suite == "paper":  # score = ROUGE-2 on held-out descriptive Q&A; the rest in `metrics`
                    metrics, predictions = paperqa.evaluate_paper(
                        model, loaded.tokenizer, config.data.dataset, e.n_qa, e.n_mc, e.n_mmlu, e.max_new_tokens,
                        e.mc_max_new_tokens, e.batch_size, e.prompt_style, judge)
                    metrics = {k: results.clean_float(float(v)) for k, v in metrics.items()}
                    score = metrics["rouge2"]
                else:
                    score, predictions = answer_and_score(
                        model, loaded.tokenizer, kset.questions, e.max_new_tokens, e.batch_size, e.prompt_style)
                entry = {"epoch": stats.epoch, "loss": results.clean_float(stats.loss), "steps": stats.steps,
                         "tokens": stats.tokens, "score": score}
                if metrics is not None:
                    entry["metrics"] = metrics
                entry["predictions"] = predictions
                record["per_epoch"].append(entry)

            if config.train.epochs == 0:  # the untrained baseline is a run like any other
                evaluate(EpochStats(epoch=0, loss=float("nan"), steps=0, tokens=0))
            else:
                history = train(model, loaded.tokenizer, texts, config.train,
                                on_epoch=evaluate if config.eval.every_epoch else None, progress=progress)
                if not config.eval.every_epoch:
                    evaluate(history[-1])
    except Diverged as err:
        record.update(status="diverged", error=str(err))
    except BaseException as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}")
        _finish(record, start, results_path)
        raise
    return _finish(record, start, results_path)


def _finish(record: dict[str, Any], start: float, results_path: str | Path | None) -> dict[str, Any]:
    scores = [e["score"] for e in record["per_epoch"] if e["score"] is not None]
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["best_score"] = max(scores) if scores else None
    record["final_score"] = scores[-1] if scores else None
    record["predictions"] = record["per_epoch"][-1]["predictions"] if scores else []
    if record["per_epoch"] and "metrics" in record["per_epoch"][-1]:  # paper suite only
        record["final_metrics"] = record["per_epoch"][-1]["metrics"]
    if results_path is not None:
        results.append(results_path, record)
    return record


def run_many(configs: Iterable[RunConfig], results_path: str | Path, progress: bool = True) -> list[dict]:
    """Run configs one after another, skipping those already finished in `results_path` (resumable)."""
    configs = list(configs)
    done = results.finished_config_ids(results_path)
    records = []
    for config in tqdm(configs, desc="runs", disable=not progress):
        if config_id(config) in done:
            continue
        records.append(run(config, results_path, progress=progress))
    return records


def run_once(config: RunConfig, results_path: str | Path, progress: bool = True) -> dict[str, Any]:
    """The finished record of `config` in `results_path`, running it first if there is none (e.g. the untrained
    baseline of a sweep: re-running the notebook reads it instead of evaluating again)."""
    cid = config_id(config)
    recorded = [r for r in results.finished(results_path) if r["config_id"] == cid]
    return recorded[-1] if recorded else run(config, results_path, progress=progress)


def epochs_for(configs: Iterable[RunConfig], results_path: str | Path):
    """The per-epoch results table restricted to these configs (a results file may hold other runs too)."""
    ids = {config_id(c) for c in configs}
    table = results.epochs_table(results_path)
    return table[table["config_id"].isin(ids)].reset_index(drop=True) if len(table) else table


def _run_with_deepspeed_launcher(config: RunConfig, results_path: str | Path | None,
                                 run_id: str | None) -> dict[str, Any]:
    """DeepSpeed wants its own launcher process; run this same function there and read its record back."""
    run_id = run_id or uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory() as tmp:
        config_file, out = Path(tmp) / "config.json", Path(tmp) / "result.jsonl"
        config_file.write_text(config.to_json())
        launcher = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
        command = [launcher, "--num_gpus", "1", "--module", "sciknow.experiment",
                   "--config", str(config_file), "--results", str(out), "--run-id", run_id]
        proc = subprocess.run(command, capture_output=True, text=True)
        records = results.read(out)
        if not records:
            raise RuntimeError(f"deepspeed run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    record = records[-1]
    if results_path is not None:
        results.append(results_path, record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one sciknow experiment from a RunConfig JSON file.")
    parser.add_argument("--config", required=True, help="RunConfig as JSON")
    parser.add_argument("--results", required=True, help="results JSONL to append to")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)  # set by the launcher
    args = parser.parse_args()
    config = RunConfig.from_dict(json.loads(Path(args.config).read_text()))
    run(config, args.results, run_id=args.run_id)


if __name__ == "__main__":
    main()
