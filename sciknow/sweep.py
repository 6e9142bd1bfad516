"""Optuna searches over LoRA settings (paper Tasks 2a and 2b), resumable and shareable between workers.

Each trial picks which contents C1..Cn of the knowledge set to train on, which of the nine layer groups get
LoRA adapters, how many irrelevant texts N to mix in, and r, lora_alpha, lr and epochs (`suggest_config`);
then it calls `sciknow.experiment.run`, the one training/evaluation path, and returns one number:

* Task 2a (random search, Fig. S1): the keyword score.
* Task 2b (TPE, Fig. 3): score x log10(N). As in the paper, N = 1 gives log10(1) = 0, so every N = 1 trial
  is worth 0 whatever its score: the search is pushed towards configurations that survive many irrelevant
  texts. Opt-in `floor` (the untrained score) makes it (score - floor) x log10(N), so that learning nothing
  earns nothing. The raw score is always kept as the trial's user attr "score" for the analyses.

"score" is the score after the last epoch by default (`epoch_score="last"`: the model you get by training
that many epochs); `epoch_score="best"` takes the best epoch instead (optimistic: it selects on the test
questions, and makes `epochs` an upper bound).

Storage and workers. A study lives in an Optuna RDB storage: by default a SQLite file in the run folder,
fine for one process. Several processes or machines share one study through PostgreSQL (SQLite is not safe
for concurrent writers; a local throwaway server: `scripts/start_postgres.sh` prints its URL). Create the
study once (a notebook with `storage_url=...`, or a first worker), then start any number of workers::

    python -m sciknow.sweep worker --storage postgresql://user:pw@host:5432/sciknow --study task2b \\
        --task 2b --n-trials 100 --model smollm2-135m-instruct --results runs/04_task2b/results.jsonl

The first worker (or notebook) to open a study records its setup (task, base RunConfig, search space, epoch
score) in the study; later workers read it from there, so all workers search the same space. Workers stop
once the study holds `n_trials` finished trials (complete, pruned, or failed by the objective). Trials send
a heartbeat; a trial whose worker died (SIGKILL, lost machine) is marked FAIL after `grace_period` seconds
by the next worker that starts a trial, and re-enqueued once (`RetryHeartbeatStaleTrialCallback`, the
Optuna 5 name of `RetryFailedTrialCallback`). Watch a study live with
``optuna-dashboard sqlite:///runs/04_task2b/optuna.sqlite3`` (or the postgresql:// URL).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from . import experiment
from .config import LAYER_GROUPS, RunConfig
from .data import load_knowledge_set

# The paper's search space (Tasks 2a/2b). Notebooks narrow these for CPU runs via `SearchSpace(...)`.
N_IRRELEVANT = (1, 5000)  # int, log scale
LORA_R = (1, 1024)  # int, log scale
LORA_ALPHA = (1, 1024)  # int, log scale
LR = (1e-5, 1e-2)  # float, log scale
EPOCHS = (1, 30)  # int
# When a trial switches everything off, it still needs something to train: these are forced on (and the
# trial's user attrs say so). C1 is the original text; v_proj is the classic LoRA target.
FALLBACK_CONTENT_INDEX = 0
FALLBACK_GROUP = "v_proj"
EPOCH_SCORES = ("last", "best")
TASKS = ("2a", "2b")


@dataclass
class SearchSpace:
    """Bounds of the LoRA search space (inclusive); the defaults are the paper's."""

    n_irrelevant: tuple[int, int] = N_IRRELEVANT
    lora_r: tuple[int, int] = LORA_R
    lora_alpha: tuple[int, int] = LORA_ALPHA
    lr: tuple[float, float] = LR
    epochs: tuple[int, int] = EPOCHS
    layer_groups: tuple[str, ...] = LAYER_GROUPS

    def capped(self, pool_size: int) -> SearchSpace:
        """The space with N capped at the number of irrelevant texts the pool actually holds."""
        low, high = self.n_irrelevant
        if pool_size < low:
            raise ValueError(f"the irrelevant-text pool holds {pool_size} texts; the space needs N >= {low}")
        if pool_size < high:
            print(f"sciknow.sweep: N irrelevant capped at {pool_size} (the pool size; requested up to {high})")
        return dataclasses.replace(self, n_irrelevant=(low, min(high, pool_size)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        return cls(**{k: tuple(v) for k, v in d.items()})


def irrelevant_pool_size(config: RunConfig) -> int:
    """How many irrelevant texts `config.data.irrelevant_source` can supply (the cap on N)."""
    source = config.data.irrelevant_source
    if source == "knowledge_set":
        return len(load_knowledge_set(config.data.knowledge_set).irrelevant_texts)
    from . import corpus

    papers, _ = corpus.load_corpus(source, progress=False)
    return sum(len(corpus.chunk_words(p.introduction)) for p in papers if p.introduction)


def content_ids(config: RunConfig) -> list[str]:
    """The contents C1..Cn of the knowledge set, in file order (the training order)."""
    return [c.id for c in load_knowledge_set(config.data.knowledge_set).contents]


def suggest_config(trial: optuna.Trial, base: RunConfig, space: SearchSpace, contents: list[str]) -> RunConfig:
    """Sample one LoRA configuration; `base` supplies everything the search does not touch."""
    used = [cid for cid in contents if trial.suggest_categorical(f"content_{cid}", [True, False])]
    groups = [g for g in space.layer_groups if trial.suggest_categorical(f"layer_{g}", [True, False])]
    n_irrelevant = trial.suggest_int("n_irrelevant", *space.n_irrelevant, log=True)
    r = trial.suggest_int("lora_r", *space.lora_r, log=True)
    alpha = trial.suggest_int("lora_alpha", *space.lora_alpha, log=True)
    lr = trial.suggest_float("lr", *space.lr, log=True)
    epochs = trial.suggest_int("epochs", *space.epochs)
    if not used:
        used = [contents[FALLBACK_CONTENT_INDEX]]
        trial.set_user_attr("forced_content", used[0])
    if not groups:
        groups = [FALLBACK_GROUP]
        trial.set_user_attr("forced_layer_group", FALLBACK_GROUP)
    return base.replace(**{
        "data.contents": used, "data.n_irrelevant": n_irrelevant, "train.method": "lora",
        "train.layer_groups": groups, "train.lora_r": r, "train.lora_alpha": alpha, "train.lr": lr,
        "train.epochs": epochs, "tags": {**base.tags, "trial": trial.number},
    })


def baseline_params(base: RunConfig, space: SearchSpace, contents: list[str]) -> dict[str, Any]:
    """The base configuration as trial params (clamped into the space): every content, the base's adapters."""
    def clamp(value, bounds):
        return type(bounds[0])(min(max(value, bounds[0]), bounds[1]))

    t = base.train
    params: dict[str, Any] = {f"content_{cid}": True for cid in contents}
    params |= {f"layer_{g}": g in t.layer_groups for g in space.layer_groups}
    params |= {"n_irrelevant": clamp(max(base.data.n_irrelevant, 1), space.n_irrelevant),
               "lora_r": clamp(t.lora_r, space.lora_r), "lora_alpha": clamp(t.lora_alpha, space.lora_alpha),
               "lr": clamp(t.lr, space.lr), "epochs": clamp(t.epochs, space.epochs)}
    return params


def objective_value(task: str, score: float, n_irrelevant: int, floor: float = 0.0) -> float:
    """Task 2a: the score. Task 2b: (score - floor) x log10(N), which is 0 at N = 1 (see the module docstring).

    `floor` is the untrained model's score (0 = the paper's objective): without it a model that learned nothing
    still earns floor x log10(N) on a set whose questions leak keywords, and the search climbs by raising N."""
    if task == "2a":
        return score
    if task == "2b":
        return (score - floor) * math.log10(n_irrelevant)
    raise ValueError(f"task={task!r} (expected one of {TASKS})")


class TrialFailed(RuntimeError):
    """The run diverged or raised: the trial is recorded as FAIL with this reason and the sweep goes on."""


def run_trial(trial: optuna.Trial, config: RunConfig, results_path: str | Path) -> dict[str, Any]:
    """One trial's `experiment.run`, recorded in the trial's user attrs (config, run id, worker, per-epoch scores
    and losses, wall time). A run that raises or diverges raises `TrialFailed` with the reason kept as
    "fail_reason": the trial is recorded as FAIL and the sweep goes on."""
    run_id = f"{trial.study.study_name}-t{trial.number}"
    trial.set_user_attr("config", config.to_dict())
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("config_id", experiment.config_id(config))
    try:
        record = experiment.run(config, results_path, progress=False, run_id=run_id)
    except Exception as err:
        trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}"[:2000])
        raise TrialFailed(str(err)) from err
    trial.set_user_attr("per_epoch_score", [e["score"] for e in record["per_epoch"]])
    trial.set_user_attr("per_epoch_loss", [e["loss"] for e in record["per_epoch"]])
    trial.set_user_attr("wall_s", record["wall_s"])
    if record["status"] != "ok":
        trial.set_user_attr("fail_reason", f"{record['status']}: {record['error']}")
        raise TrialFailed(record["error"])
    return record


def make_objective(task: str, base: RunConfig, space: SearchSpace, results_path: str | Path,
                   epoch_score: str = "last", n_trials: int | None = None,
                   floor: float = 0.0) -> Callable[[optuna.Trial], float]:
    """The objective of Task 2a/2b: one `experiment.run` per trial, per-epoch scores kept as user attrs."""
    if epoch_score not in EPOCH_SCORES:
        raise ValueError(f"epoch_score={epoch_score!r} (expected one of {EPOCH_SCORES})")
    if epoch_score == "best":  # the best epoch needs every epoch evaluated
        base = base.replace(**{"eval.every_epoch": True})
    contents = content_ids(base)

    def objective(trial: optuna.Trial) -> float:
        if n_trials is not None and _is_surplus(trial, n_trials):
            trial.set_user_attr("surplus", True)
            raise TrialFailed("surplus: other workers already filled the study")
        config = suggest_config(trial, base, space, contents)
        record = run_trial(trial, config, results_path)
        score = record["final_score"] if epoch_score == "last" else record["best_score"]
        trial.set_user_attr("score", score)
        return objective_value(task, score, config.data.n_irrelevant, floor)

    return objective


# --- storage, study, running -------------------------------------------------------------------------------

def default_url(run_dir: str | Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'optuna.sqlite3'}"


def _with_driver(url: str) -> str:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; we ship psycopg2-binary, so name it unless psycopg exists.
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def storage(url: str | None = None, run_dir: str | Path = ".", heartbeat_interval: int = 30,
            grace_period: int | None = None, max_retry: int = 1) -> RDBStorage:
    """An RDB storage (default: SQLite file `run_dir/optuna.sqlite3`) whose dead trials get failed and retried.

    Every running trial writes a heartbeat each `heartbeat_interval` s; a trial silent for `grace_period` s
    (default 2 x interval) is marked FAIL by the next worker starting a trial and re-enqueued `max_retry` times.
    """
    if url is None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        url = default_url(run_dir)
    url = _with_driver(url)
    # SQLite: wait for a lock instead of failing at once; PostgreSQL: survive dropped idle connections.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period or 2 * heartbeat_interval,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))


def make_sampler(kind: str, seed: int | None = None, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """"random" (Task 2a) or "tpe" (Task 2b, constant liar so parallel workers spread out)."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, constant_liar=True)
    raise ValueError(f"sampler={kind!r} (expected 'random' or 'tpe')")


def open_study(name: str, storage: optuna.storages.BaseStorage | str, sampler: str = "random",
               seed: int | None = 0, direction: str = "maximize", setup: dict[str, Any] | None = None,
               baseline: dict[str, Any] | None = None, n_startup_trials: int = 10) -> optuna.Study:
    """Create or resume a study; on creation record `setup` and enqueue the `baseline` params (once).

    The sampler seed is offset by the number of trials already in the study, so a resumed seeded search
    continues with new draws instead of repeating its first ones.
    """
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(sampler, None if seed is None else seed + n_existing, n_startup_trials)
    if setup is not None and "setup" not in study.user_attrs:
        study.set_user_attr("setup", setup)
    if baseline is not None and not study.user_attrs.get("baseline_enqueued"):
        study.enqueue_trial(baseline, user_attrs={"baseline": True}, skip_if_exists=True)
        study.set_user_attr("baseline_enqueued", True)
    return study


def counted(trial: FrozenTrial) -> bool:
    """Does the trial count towards n_trials? Complete, pruned, or failed *by the objective* (it has a reason).

    Failed without a reason means its worker died (heartbeat) or it was a surplus trial: it was retried or
    never run, so it does not count.
    """
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs)


def n_counted(study: optuna.Study) -> int:
    return sum(counted(t) for t in study.get_trials(deepcopy=False))


def _is_surplus(trial: optuna.Trial, n_trials: int) -> bool:
    # Two workers may both see "one trial to go" and ask at once: the later-numbered trial yields.
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(counted(t) or t.state == TrialState.RUNNING for t in earlier) >= n_trials


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
               timeout_s: float | None = None, poll_s: float = 2.0) -> optuna.Study:
    """Run trials until the study holds `n_trials` counted trials (resuming never redoes finished ones).

    While other workers' trials are still running and would complete the count, wait for them: they either
    finish or go stale (dead worker) and get retried, in which case this worker runs the retry.
    `timeout_s`: start no new trial after this many seconds (a time budget; re-running resumes).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.monotonic()
    while (done := n_counted(study)) < n_trials:
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            print(f"sciknow.sweep: time budget of {timeout_s:.0f} s used; {done}/{n_trials} trials done")
            break
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if done + len(running) >= n_trials:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial -> FAIL + WAITING retry
            time.sleep(poll_s)
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,))
    return study


# --- analysis ---------------------------------------------------------------------------------------------

LOG_COLUMNS = ("n_irrelevant", "lora_r", "lora_alpha", "lr", "total_texts")
# Trial user attrs copied into the trials frame when a trial has them (Task 4 adds text counts).
ATTR_COLUMNS = ("run_id", "wall_s", "fail_reason", "baseline", "forced_content", "forced_layer_group", "forced_text",
                "total_texts", "n_instruction_texts")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, score, any further metrics (Task 4: mc, mmlu, judge), params
    (bools as 0/1), log10 of log-scale params, and n_contents / n_layer_groups as actually trained (after the
    at-least-one rules)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value,
                               "score": t.user_attrs.get("score")}
        row |= t.user_attrs.get("metrics") or {}
        row |= {k: int(v) if isinstance(v, bool) else v for k, v in t.params.items()}
        config = t.user_attrs.get("config")
        if config:
            row["n_contents"] = len(config["data"]["contents"])
            row["n_layer_groups"] = len(config["train"]["layer_groups"])
        row |= {k: t.user_attrs[k] for k in ATTR_COLUMNS if k in t.user_attrs}
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in LOG_COLUMNS:
        if col in df:
            df[f"log10_{col}"] = np.log10(df[col].astype(float))
    return df


def param_columns(df: pd.DataFrame) -> list[str]:
    """The parameter columns of a trials frame, log-scale ones as their log10."""
    cols = [c for c in df.columns if c.startswith(("content_", "layer_"))]
    return cols + [f"log10_{c}" if c in LOG_COLUMNS else c for c in (*LOG_COLUMNS, "epochs") if c in df]


def correlations(df: pd.DataFrame, columns: list[str], target: str = "score") -> pd.Series:
    """Pearson r of each column with `target` over the rows where `target` is known (NaN if constant)."""
    data = df.dropna(subset=[target])
    y = data[target].astype(float)
    out = {}
    for col in columns:
        x = data[col].astype(float)
        out[col] = x.corr(y) if x.std() > 0 and y.std() > 0 else float("nan")
    return pd.Series(out, name=f"r({target})")


def resolve_knowledge_set(name: str) -> str:
    """"paper": the paper's polymer set (C1..C12) when ../shared has it, else the repo's default set;
    "default": the repo's default set; anything else: a path (relative paths against the repo root)."""
    from .config import DEFAULT_KNOWLEDGE_SET, POLYAI_SET, REPO_ROOT

    if name == "paper":
        return str(POLYAI_SET if POLYAI_SET.exists() else DEFAULT_KNOWLEDGE_SET)
    if name == "default":
        return str(DEFAULT_KNOWLEDGE_SET)
    return str(REPO_ROOT / name)  # an absolute `name` stays as it is


def best_config(study: optuna.Study) -> RunConfig:
    """The RunConfig of the best complete trial, ready to re-run with `experiment.run`."""
    return RunConfig.from_dict(study.best_trial.user_attrs["config"])


# --- command line -----------------------------------------------------------------------------------------

def setup_dict(task: str, base: RunConfig, space: SearchSpace, epoch_score: str, results: str,
               floor: float = 0.0) -> dict[str, Any]:
    return {"task": task, "base": base.to_dict(), "space": space.to_dict(), "epoch_score": epoch_score,
            "results": results, "floor": floor}


def prepare(name: str, store: optuna.storages.BaseStorage, task: str, base: RunConfig, space: SearchSpace,
            results_path: str | Path, epoch_score: str = "last", n_trials: int | None = None,
            sampler: str | None = None, seed: int | None = 0, n_startup_trials: int = 10, floor: float = 0.0,
            ) -> tuple[optuna.Study, Callable[[optuna.Trial], float]]:
    """Open (or create) a Task 2a/2b study and its objective; an existing study's recorded setup wins."""
    space = space.capped(irrelevant_pool_size(base))
    setup = setup_dict(task, base, space, epoch_score, str(results_path), floor)
    study = open_study(name, store, sampler or ("random" if task == "2a" else "tpe"), seed,
                       setup=setup, baseline=baseline_params(base, space, content_ids(base)),
                       n_startup_trials=n_startup_trials)
    stored = study.user_attrs["setup"]
    if stored != setup:
        print(f"sciknow.sweep: study {name!r} exists; using its recorded setup (task {stored['task']})")
    base, space = RunConfig.from_dict(stored["base"]), SearchSpace.from_dict(stored["space"])
    objective = make_objective(stored["task"], base, space, results_path, stored["epoch_score"], n_trials,
                               stored.get("floor", 0.0))  # studies from before the floor option have none
    return study, objective


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sciknow.sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run trials of a shared study until it holds --n-trials")
    w.add_argument("--storage", default=None, help="RDB URL (postgresql://... for several workers)")
    w.add_argument("--run-dir", default="runs/sweep", help="default SQLite storage and results location")
    w.add_argument("--study", required=True)
    w.add_argument("--task", choices=TASKS, default="2b")
    w.add_argument("--n-trials", type=int, required=True)
    w.add_argument("--base", default=None, help="base RunConfig JSON file (a new study only)")
    w.add_argument("--model", default=None, help="override base model.name (a new study only)")
    w.add_argument("--space", default=None, help="SearchSpace JSON, e.g. '{\"epochs\": [1, 5]}' (new study)")
    w.add_argument("--epoch-score", choices=EPOCH_SCORES, default="last")
    w.add_argument("--floor", type=float, default=0.0, help="Task 2b: untrained score subtracted (new study)")
    w.add_argument("--results", default=None, help="results JSONL (default RUN_DIR/results.jsonl)")
    w.add_argument("--seed", type=int, default=None, help="sampler seed (default random: workers differ)")
    w.add_argument("--n-startup-trials", type=int, default=10)
    w.add_argument("--heartbeat-interval", type=int, default=30)
    w.add_argument("--grace-period", type=int, default=None)
    w.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    args = parser.parse_args(argv)

    base = RunConfig.from_dict(json.loads(Path(args.base).read_text())) if args.base else RunConfig()
    base = base.replace(task=args.task, **({"model.name": args.model} if args.model else {}))
    space = SearchSpace.from_dict({**SearchSpace().to_dict(), **json.loads(args.space or "{}")})
    results_path = args.results or str(Path(args.run_dir) / "results.jsonl")
    store = storage(args.storage, args.run_dir, args.heartbeat_interval, args.grace_period)
    study, objective = prepare(args.study, store, args.task, base, space, results_path, args.epoch_score,
                               args.n_trials, seed=args.seed, n_startup_trials=args.n_startup_trials,
                               floor=args.floor)
    run_trials(study, objective, args.n_trials, args.timeout)
    print(f"study {args.study}: {n_counted(study)} trials counted")


if __name__ == "__main__":
    main()
