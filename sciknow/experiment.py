"""`run(config) -> record`: the one path every task takes.

knowledge set(s) -> training texts -> train (full | LoRA | QLoRA | DeepSpeed) -> answer the questions after
every epoch (closed and/or open book; + forgetting probes) -> scores -> one result record, appended to the
results store. Notebooks and sweeps call this; nothing else trains or evaluates. `replicate` runs one
condition over documents x seeds.
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
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import memory, models, results
from .config import SCHEMA_VERSION, RunConfig, identity_dict
from .run_kinds import run_kind
from .train import Diverged, EpochStats, levers, train


class StopRun(Exception):
    """Raised by an `on_epoch` callback to stop a run early (a pruned sweep trial): recorded as "pruned"."""


def config_id(config: RunConfig) -> str:
    """Stable id of a configuration: equal configs (seed included) get equal ids, so sweeps can resume.
    Speed-only fields (the evaluation batch) do not count."""
    return hashlib.sha1(json.dumps(identity_dict(config), sort_keys=True).encode()).hexdigest()[:12]


def recorded_config_id(record: dict[str, Any]) -> str | None:
    """The id a stored record's config has under today's schema (older records are migrated), or None when the
    record's config is no longer valid."""
    try:
        return config_id(RunConfig.from_record(record))
    except (ValueError, KeyError, TypeError):
        return None


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "python": sys.version.split()[0]}


def _inside_deepspeed_launcher() -> bool:
    return "LOCAL_RANK" in os.environ


def run(config: RunConfig, results_path: str | Path | None = None, progress: bool = True,
        run_id: str | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        write_if: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Run one experiment and return its record (also appended to `results_path` when given and `write_if(record)`
    is true: a worker whose trial was taken for dead leaves the record to the worker that retries it).

    A diverged run is recorded with the epochs it finished; any other error is recorded as failed and re-raised.
    `on_epoch(entry)` runs after each evaluated epoch; if it raises `StopRun` the run ends as "pruned".
    """
    if config.train.method == "deepspeed" and not _inside_deepspeed_launcher():
        return _run_with_deepspeed_launcher(config, results_path, run_id, write_if)
    record: dict[str, Any] = {
        "run_id": run_id or uuid.uuid4().hex[:12], "config_id": config_id(config), "schema": SCHEMA_VERSION,
        "task": config.task, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "ok", "error": None, "config": config.to_dict(), "versions": versions(), "per_epoch": [],
    }
    start = time.perf_counter()
    models.reset_peak_gpu_memory()
    try:
        evaluation = Evaluation(config)
        texts = evaluation.training_texts()
        record["n_texts"] = len(texts)
        memory.check_fits(config)  # a full-parameter run too large for this machine fails before loading
        loaded = models.get(config.model, deepspeed=config.train.method == "deepspeed")
        with models.trainable(loaded, config.train) as model:
            record["load_s"] = round(time.perf_counter() - start, 2)  # wall_s = load_s + answer_s + training
            record["answer_s"] = 0.0
            record["levers"] = levers(model, config.train)
            record["metrics_before"] = evaluation.prepare(model, loaded.tokenizer)

            def evaluate(stats: EpochStats) -> None:
                final = stats.epoch == config.train.epochs
                eval_start = time.perf_counter()
                entry = {"epoch": stats.epoch, "loss": results.clean_float(stats.loss), "steps": stats.steps,
                         "tokens": stats.tokens, **evaluation.evaluate(model, loaded.tokenizer, final),
                         "train_s": round(stats.train_s, 3), "eval_s": round(time.perf_counter() - eval_start, 3),
                         "elapsed_s": round(time.perf_counter() - start, 2)}  # run time so far (steps to a score)
                record["answer_s"] = round(record["answer_s"] + entry["eval_s"], 2)
                record["per_epoch"].append(entry)
                if on_epoch:
                    on_epoch(entry)

            def evaluate_when_due(stats: EpochStats) -> None:
                # Inside train's per-epoch callback even for the last epoch only: DeepSpeed's engine is alive
                # there, and its ZeRO-3 weights are gathered for the evaluation.
                if stats.epoch in wanted:
                    evaluate(stats)

            wanted = set(evaluated_epochs(config))

            if config.train.epochs == 0:  # the untrained baseline is a run like any other
                evaluate(EpochStats(epoch=0, loss=float("nan"), steps=0, tokens=0))
            else:
                train(model, loaded.tokenizer, texts, config.train, on_epoch=evaluate_when_due, progress=progress)
        record["peak_gpu_bytes"] = models.peak_gpu_memory()
    except StopRun as err:
        record.update(status="pruned", error=str(err))
    except Diverged as err:
        record.update(status="diverged", error=str(err))
    except BaseException as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}")
        _finish(record, start, results_path, write_if)
        raise
    return _finish(record, start, results_path, write_if)


def evaluated_epochs(config: RunConfig) -> list[int]:
    """The epochs after which `run` asks the questions: every epoch (`eval.every_epoch`), or `eval.at_epochs` and
    the last."""
    epochs = config.train.epochs
    if config.eval.every_epoch or epochs == 0:
        return list(range(1, epochs + 1)) or [0]
    return sorted({*config.eval.at_epochs, epochs})


class Evaluation:
    """What a run is scored on, prepared once per run: its kind (the texts it trains on and the suite that asks
    it, see run_kinds) and the forgetting/locality probes."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.kind = run_kind(config)  # files, questions and the retrieval index are read here, before a model loads
        self.suite = self.kind.suite
        self.probes = None

    def training_texts(self) -> list[str]:
        return self.kind.training_texts()

    def prepare(self, model, tokenizer) -> dict[str, float]:
        """Before training: the untrained model's probe metrics (and the answers locality compares against)."""
        e = self.config.eval
        if not e.probes:
            return {}
        from . import probes

        spec = probes.ProbeSpec(
            n_mmlu=e.n_probe_mmlu if "mmlu" in e.probes else 0, mmlu_seed=e.probe_seed,
            mmlu_metrics=tuple(e.probe_mmlu_metrics), mmlu_draw=e.probe_mmlu_draw,
            n_perplexity=e.n_probe_texts if "perplexity" in e.probes else 0, perplexity_seed=e.probe_seed,
            n_locality=e.n_probe_locality if "locality" in e.probes else 0, batch_size=e.batch_size,
            prompt_style=e.prompt_style)
        self.probes = probes.Probes(spec)
        return _clean(self.probes.prepare(model, tokenizer))

    def evaluate(self, model, tokenizer, final: bool) -> dict[str, Any]:
        """One epoch's score, metrics and predictions."""
        result = self.suite.evaluate(model, tokenizer)
        metrics = dict(result.metrics or {})
        if self.probes is not None and (final or self.config.eval.probe_every_epoch):
            metrics.update(self.probes.measure(model, tokenizer))
        entry: dict[str, Any] = {"score": results.clean_float(result.score)}
        if metrics:
            entry["metrics"] = _clean(metrics)
        entry["predictions"] = result.predictions
        return entry


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: results.clean_float(float(v)) if isinstance(v, (int, float)) and v is not None else v
            for k, v in metrics.items()}


def _finish(record: dict[str, Any], start: float, results_path: str | Path | None,
            write_if: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any]:
    scores = [e["score"] for e in record["per_epoch"] if e["score"] is not None]
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["best_score"] = max(scores) if scores else None
    record["final_score"] = scores[-1] if scores else None
    record["predictions"] = record["per_epoch"][-1]["predictions"] if scores else []
    if record["per_epoch"] and "metrics" in record["per_epoch"][-1]:
        record["final_metrics"] = record["per_epoch"][-1]["metrics"]
    if results_path is not None and (write_if is None or write_if(record)):
        results.append(results_path, record)
    return record


def run_many(configs: Iterable[RunConfig], results_path: str | Path, progress: bool = True) -> list[dict]:
    """Run configs one after another, skipping those already finished in `results_path` (resumable).

    With `progress`, a line per finished run (status, score, time, an ETA from the runs so far) is printed, so a
    terminal running the notebook headless shows where it is, not only a bar."""
    configs = list(configs)
    done = finished_ids(results_path)
    todo = [c for c in configs if config_id(c) not in done]
    if progress and len(todo) < len(configs):
        print(f"{len(configs) - len(todo)} of {len(configs)} runs already in {results_path}: skipped")
    records = []
    start = time.perf_counter()
    for i, config in enumerate(tqdm(todo, desc="runs", disable=not progress), start=1):
        if config_id(config) in finished_ids(results_path):  # another process sharing the file ran it meanwhile
            continue
        record = run(config, results_path, progress=progress)
        records.append(record)
        if progress:
            tqdm.write(progress_line("run", i, len(todo), record, time.perf_counter() - start))
    return records


def progress_line(kind: str, done: int, total: int, record: dict[str, Any], elapsed_s: float) -> str:
    """The line printed per finished run (or replication unit): status, final score, time, and an ETA from the
    `done` of `total` finished in `elapsed_s`."""
    eta = elapsed_s / done * max(total - done, 0)
    score = record["final_score"]  # None for a failed run
    return (f"{kind} {done}/{total} {record['status']}: final score {score if score is None else f'{score:.3f}'} "
            f"({record['wall_s']:.0f} s, ETA {eta / 60:.0f} min) {record['config'].get('tags') or ''}")


def finished_ids(results_path: str | Path) -> set[str]:
    """Config ids (under today's schema) of the runs finished in `results_path`: a resumed job skips them."""
    return {cid for r in results.finished(results_path) if (cid := recorded_config_id(r))}


def recorded(config: RunConfig, results_path: str | Path) -> dict[str, Any] | None:
    """The last finished record of `config` in `results_path`, or None."""
    cid = config_id(config)
    found = [r for r in results.finished(results_path) if recorded_config_id(r) == cid]
    return found[-1] if found else None


def run_once(config: RunConfig, results_path: str | Path, progress: bool = True) -> dict[str, Any]:
    """The finished record of `config` in `results_path`, running it first if there is none (e.g. the untrained
    baseline of a sweep: re-running the notebook reads it instead of evaluating again)."""
    return recorded(config, results_path) or run(config, results_path, progress=progress)


def replicate(condition: RunConfig, documents: Sequence[str], seeds: Sequence[int], joint: bool = False,
              ) -> list[RunConfig]:
    """One training condition over documents x seeds, as configs for `run_many`.

    `joint=False` is the paper's protocol: one document per model, the weights restored between documents (one
    run per document and seed). `joint=True` trains all documents together, a body of knowledge (one run per
    seed). `condition.data.knowledge_set` must be a suite folder. The seed sets `train.seed` (data order, LoRA
    initialisation) and `data.irrelevant_seed`.
    """
    if not Path(condition.data.knowledge_set).is_dir():
        raise ValueError(f"replicate: data.knowledge_set={condition.data.knowledge_set!r} is not a suite folder")
    if not documents or not seeds:
        raise ValueError(f"replicate: need documents and seeds (got {list(documents)!r}, {list(seeds)!r})")
    groups = [list(documents)] if joint else [[doc] for doc in documents]
    return [condition.replace(**{"data.documents": group, "train.seed": seed, "data.irrelevant_seed": seed})
            for seed in seeds for group in groups]


def question_scores(configs: Iterable[RunConfig], results_path: str | Path):
    """One row per run, evaluated epoch and asked question (document, variant, book, question_id, score), with the
    run's config columns, tags, steps and tokens: the input of `sciknow.stats`."""
    import pandas as pd

    epochs = epochs_for(configs, results_path)
    if not len(epochs):
        return epochs
    answers = results.predictions_table(results_path)
    keep = [c for c in answers.columns if c not in ("task", "prompt", "found", "keywords")]
    table = epochs.drop(columns=["score"]).merge(answers[keep], on=["run_id", "epoch"])
    table = table.rename(columns={"train.seed": "seed"})
    if "document" not in table:  # single-set runs: the document is the set itself
        table["document"] = table["data.knowledge_set"].map(lambda p: Path(p).stem)
    return pd.DataFrame(table)


def epochs_for(configs: Iterable[RunConfig], results_path: str | Path):
    """The per-epoch results table restricted to these configs (a results file may hold other runs too). A config
    recorded more than once (two processes that ran it at the same time) counts once: its last finished run."""
    ids = {config_id(c) for c in configs}
    table = results.epochs_table(results_path)
    if not len(table):
        return table
    last: dict[str, str] = {}  # config id -> run id of its last finished run
    for record in results.finished(results_path):
        if (cid := recorded_config_id(record)) in ids:
            last[cid] = record["run_id"]
    return table[table["run_id"].isin(set(last.values()))].reset_index(drop=True)


def deepspeed_command(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """DeepSpeed's launcher running `sciknow.experiment` with `arguments` on one GPU, and its environment.

    The GPU is the first one CUDA_VISIBLE_DEVICES shows, named by its physical number with `--include` (with
    `--num_gpus 1` the runner drops CUDA_VISIBLE_DEVICES and takes physical GPU 0), and removed from the
    environment as the runner itself does. The rendezvous port is a free one: two runs at once would both take
    the default 29500."""
    import socket

    env = dict(os.environ)
    visible = env.pop("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    command = [launcher, "--include", f"localhost:{visible}", "--master_port", str(port),
               "--module", "sciknow.experiment", *arguments]
    return command, env


def _run_with_deepspeed_launcher(config: RunConfig, results_path: str | Path | None,
                                 run_id: str | None, write_if: Callable[[dict[str, Any]], bool] | None
                                 ) -> dict[str, Any]:
    """DeepSpeed wants its own launcher process; run this same function there and read its record back. The
    launcher's output goes to a log next to the results (`record["log"]`): follow a long run with `tail -f`."""
    run_id = run_id or uuid.uuid4().hex[:12]
    log_dir = Path(results_path).parent if results_path is not None else Path(tempfile.gettempdir())
    log = log_dir / "logs" / f"deepspeed-{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config_file, out = Path(tmp) / "config.json", Path(tmp) / "result.jsonl"
        config_file.write_text(config.to_json())
        command, env = deepspeed_command(["--config", str(config_file), "--results", str(out), "--run-id", run_id])
        with open(log, "w") as stream:
            proc = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
        records = results.read(out)
        if not records:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"deepspeed run failed (exit {proc.returncode}; log {log}):\n{tail}")
    record = {**records[-1], "log": str(log)}
    if results_path is not None and (write_if is None or write_if(record)):
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
