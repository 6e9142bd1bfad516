"""One sweep stack for every study (Tasks 2a, 2b, 4, and any registered in `sciknow.studies`): Optuna trials over
`experiment.run`, resumable and shared between workers; the worker CLI also runs replication units
(`sciknow.replication`).

`prepare` validates a study's space and base config, then opens or creates the study: the first process records
the setup in the study and enqueues the base config as the baseline trial; later processes use the recorded setup
and say what differs. A trial keeps only its run id (results.jsonl holds the run), reports its value per epoch
(`trial.report`; `pruner="median"` is opt-in), and counts toward `n_trials` whatever its end. Optional
`forgetting_penalty` subtracts λ x the MMLU accuracy lost. Heartbeats re-enqueue a dead worker's trial
(`RetryHeartbeatStaleTrialCallback`); setups and trial attributes are redacted (`sciknow.secrets`).
Commands, storage (SQLite; PostgreSQL for many machines) and the dashboard: README, "Sweeps (Tasks 2a, 2b, 4)".
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from . import heartbeats, results, studies
from .config import SCHEMA_VERSION, RunConfig
from .probes import accuracy_key
from .secrets import redact

EPOCH_SCORES = ("last", "best")
SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median")
MAX_CONSECUTIVE_FAILURES = 5


class TrialFailed(RuntimeError):
    """The run diverged or raised: the trial is recorded as FAIL with this reason and the sweep goes on."""


class SweepStopped(RuntimeError):
    """A worker gave up before its budget: too many trials in a row failed (the message says why)."""


def _set(target: optuna.Trial | optuna.Study, key: str, value: Any) -> None:
    """A user attribute, never holding a secret."""
    target.set_user_attr(key, redact(value))


# --- the recorded setup -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """What a study searches, recorded once in the study (the first process to create it wins)."""

    task: str
    base: RunConfig
    space: studies.Space
    epoch_score: str = "last"
    floor: float = 0.0  # subtracted from the score by the studies whose objective uses it (2b, 4)
    sampler: str = "tpe"
    pruner: str = "none"
    results: str = ""  # where the creating process wrote its records (the trials frame's default)
    # value -= forgetting_penalty x max(0, MMLU accuracy before training - after), from the run's "mmlu" probe
    # (`forgetting`, on its first metric: the cloze form's log-likelihood accuracy by default); 0 keeps the paper's
    # objective.
    forgetting_penalty: float = 0.0

    def __post_init__(self) -> None:
        definition = studies.get(self.task)
        problems = []
        if not isinstance(self.space, definition.space):
            problems.append(f"space is a {type(self.space).__name__}; task {self.task} needs a "
                            f"{definition.space.__name__}")
        if self.epoch_score not in EPOCH_SCORES:
            problems.append(f"epoch_score={self.epoch_score!r} (expected one of {EPOCH_SCORES})")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler={self.sampler!r} (expected one of {SAMPLERS})")
        if self.pruner not in PRUNERS:
            problems.append(f"pruner={self.pruner!r} (expected one of {PRUNERS})")
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float)) or not math.isfinite(self.floor):
            problems.append(f"floor={self.floor!r} (expected a finite number: the untrained score is unknown, e.g. "
                            "a Task 4 dataset without held-out descriptive Q&A to score)")
        penalty = self.forgetting_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not (
                math.isfinite(penalty) and penalty >= 0):
            problems.append(f"forgetting_penalty={penalty!r} (expected a finite number >= 0)")
        elif penalty and "mmlu" not in self.base.eval.probes:
            problems.append(f"forgetting_penalty={penalty!r} needs the MMLU probe: add 'mmlu' to the base's "
                            f"eval.probes (now {self.base.eval.probes})")
        if problems:
            raise ValueError(f"sweep setup for task {self.task}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "base": self.base.to_dict(), "schema": SCHEMA_VERSION, "space": self.space.to_dict(),
                "epoch_score": self.epoch_score, "floor": self.floor, "sampler": self.sampler,
                "pruner": self.pruner, "results": self.results, "forgetting_penalty": self.forgetting_penalty}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Setup:
        """A recorded setup, validated again (a study recorded by older code may hold a bad space); its base config
        is migrated from the config schema it was recorded with (none recorded: schema 1)."""
        definition = studies.get(d["task"])
        base = RunConfig.from_record({"config": d["base"], "schema": d.get("schema", 1)})
        return cls(d["task"], base, definition.space.from_dict(d["space"], "recorded space"),
                   d.get("epoch_score", "last"), d.get("floor", 0.0), d.get("sampler", definition.sampler),
                   d.get("pruner", "none"), d.get("results", ""), d.get("forgetting_penalty", 0.0))


def differences(recorded: dict[str, Any], requested: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """'field: recorded X, requested Y' for every (dotted) field in which two setups differ."""
    a, b = results.flatten(recorded), results.flatten(requested)
    return [f"{k}: recorded {a.get(k)!r}, requested {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k.split(".")[0] not in ignore]


def _experiment() -> ModuleType:
    # Imported when a run starts: torch takes seconds to load (minutes on a busy machine), and a worker with a
    # bad setup should be refused before that.
    from . import experiment

    return experiment


def untrained_score(base: RunConfig, results_path: str | Path) -> float:
    """The base model's score before training (an epochs = 0 run, recorded once in `results_path`)."""
    return _experiment().run_once(base.replace(**{"train.epochs": 0}), results_path, progress=False)["final_score"]


# --- objective ----------------------------------------------------------------------------------------------

def forgetting(before: dict[str, Any], after: dict[str, Any], key: str = "mmlu_continuation_acc") -> float:
    """How much MMLU accuracy training cost: max(0, before - after) of the "mmlu" probe's `key` (sciknow.probes;
    the study uses the accuracy of the first of eval.probe_mmlu_metrics)."""
    return max(0.0, before[key] - after[key])


class Objective:
    """One trial: suggest a RunConfig, run it (reporting the value after every evaluated epoch), return the
    study's value. Any error becomes a FAIL trial with its reason; a pruned run becomes a PRUNED trial."""

    def __init__(self, setup: Setup, results_path: str | Path, n_trials: int | None = None) -> None:
        self.setup = setup
        self.definition = studies.get(setup.task)
        self.results_path = Path(results_path)
        self.n_trials = n_trials

    def value(self, score: float, config: RunConfig, before: dict | None = None, after: dict | None = None) -> float:
        """The task's objective, minus the forgetting penalty when the study has one and `after` holds the MMLU
        probe (the trial's final value; the per-epoch values reported to the pruner carry no penalty)."""
        value = self.definition.objective(score, config, self.setup.floor)
        key = accuracy_key(config.eval.probe_mmlu_metrics[0])
        if self.setup.forgetting_penalty and after and key in after:
            value -= self.setup.forgetting_penalty * forgetting(before or {}, after, key)
        return value

    def _fail(self, trial: optuna.Trial, reason: str) -> TrialFailed:
        reason = redact(reason)[:2000]
        _set(trial, "fail_reason", reason)
        return TrialFailed(reason)

    def __call__(self, trial: optuna.Trial) -> float:
        if self.n_trials is not None and _is_surplus(trial, self.n_trials):
            _set(trial, "surplus", True)
            raise TrialFailed("surplus: other workers already filled the study")
        run_id = f"{trial.study.study_name}-t{trial.number}"
        _set(trial, "run_id", run_id)
        _set(trial, "worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            experiment = _experiment()
            config = self.definition.suggest(trial, self.setup.base, self.setup.space)

            def report(entry: dict[str, Any]) -> None:  # the pruner sees the objective without the penalty
                if entry.get("score") is None:
                    return
                trial.report(self.value(entry["score"], config), entry["epoch"])
                if trial.should_prune():
                    raise experiment.StopRun(f"pruned by {type(trial.study.pruner).__name__} after epoch "
                                             f"{entry['epoch']}")

            # A live worker taken for dead (its heartbeat late under load) leaves the record to the trial's retry.
            record = experiment.run(config, self.results_path, progress=False, run_id=run_id, on_epoch=report,
                                    write_if=lambda _: heartbeats.still_running(trial))
        except Exception as err:  # `from None`: Optuna logs the traceback, and the cause's text is not redacted
            raise self._fail(trial, f"{type(err).__name__}: {err}") from None
        if record["status"] == "pruned":
            _set(trial, "score", record["final_score"])
            raise optuna.TrialPruned(record["error"])
        if record["status"] != "ok":
            raise self._fail(trial, f"{record['status']}: {record['error']}")
        score = record["final_score"] if self.setup.epoch_score == "last" else record["best_score"]
        if score is None:
            raise self._fail(trial, "the run recorded no score (its evaluation suite scored no item)")
        _set(trial, "score", score)
        if self.setup.forgetting_penalty:
            _set(trial, "forgetting", forgetting(record["metrics_before"], record["final_metrics"],
                                                 accuracy_key(config.eval.probe_mmlu_metrics[0])))
        return self.value(score, config, record.get("metrics_before"), record.get("final_metrics"))


# --- storage, study, running --------------------------------------------------------------------------------

def default_url(run_dir: str | Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'optuna.sqlite3'}"


def _with_driver(url: str) -> str:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; we ship psycopg2-binary, so name it unless psycopg exists.
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
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period or 2 * heartbeat_interval,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))


def make_sampler(kind: str, seed: int | None = None, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """"random" (Task 2a) or "tpe" (Tasks 2b, 4; constant liar so parallel workers spread out)."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, constant_liar=True)
    raise ValueError(f"sampler={kind!r} (expected one of {SAMPLERS})")


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    """"none" (every trial runs all its epochs) or "median" (MedianPruner with Optuna's defaults)."""
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner()
    raise ValueError(f"pruner={kind!r} (expected one of {PRUNERS})")


def prepare(name: str, store: optuna.storages.BaseStorage | str, task: str, base: RunConfig, space: Any,
            results_path: str | Path, epoch_score: str = "last", n_trials: int | None = None,
            sampler: str | None = None, seed: int | None = 0, n_startup_trials: int = 10,
            floor: float | str | None = None, pruner: str = "none",
            forgetting_penalty: float = 0.0) -> tuple[optuna.Study, Objective]:
    """Open (or create) a study of any task and its objective; an existing study's recorded setup wins.

    `space`: the task's space dataclass (or a dict of its fields). `floor`: a number, "untrained" (the base's
    untrained score, computed only when the study is created), or None for the task's default. The sampler seed
    is offset by the number of trials already in the study, so a resumed seeded search draws new points.
    """
    definition = studies.get(task)
    if isinstance(space, dict):
        space = definition.space.from_dict(space)
    space = definition.fit(base, space)
    if epoch_score == "best" or pruner != "none":  # the best epoch, and pruning, need every epoch evaluated
        base = base.replace(**{"eval.every_epoch": True})
    floor = definition.default_floor if floor is None else floor
    requested = Setup(task, base, space, epoch_score, 0.0 if floor == "untrained" else floor,
                      sampler or definition.sampler, pruner, str(Path(results_path).resolve()), forgetting_penalty)
    study = optuna.create_study(study_name=name, storage=store, direction="maximize", load_if_exists=True)
    setup = _recorded_setup(study, requested, untrained_floor=floor == "untrained")
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(setup.sampler, None if seed is None else seed + n_existing, n_startup_trials)
    study.pruner = make_pruner(setup.pruner)
    if not study.user_attrs.get("baseline_enqueued"):
        study.enqueue_trial(studies.get(setup.task).baseline(setup.base, setup.space), user_attrs={"baseline": True},
                            skip_if_exists=True)
        _set(study, "baseline_enqueued", True)
    return study, Objective(setup, results_path, n_trials)


def _recorded_setup(study: optuna.Study, requested: Setup, untrained_floor: bool) -> Setup:
    """The study's setup: `requested` if the study is new (recorded now, with the base's untrained score as its
    floor if `untrained_floor`), else the recorded one, saying how it differs from `requested`."""
    if "setup" not in study.user_attrs:
        if untrained_floor:
            requested = dataclasses.replace(requested, floor=untrained_score(requested.base, requested.results))
        _set(study, "setup", requested.to_dict())
    recorded = study.user_attrs["setup"]
    diffs = differences(recorded, json.loads(json.dumps(redact(requested.to_dict()))),
                        ignore=("results",) + (("floor",) if untrained_floor else ()))
    if diffs:
        print(f"sciknow.sweep: study {study.study_name!r} exists; its recorded setup wins over this call's "
              f"({len(diffs)} difference(s)): " + "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else ""))
    setup = Setup.from_dict(recorded)
    if diffs:  # check the recorded base on this machine too (its knowledge set or dataset must be here)
        studies.get(setup.task).fit(setup.base, setup.space)
    return setup


# Not Optuna's MaxTrialsCallback: it counts trials by state once a trial has ended. Here a FAIL counts only with a
# fail_reason (a dead worker's FAIL is retried, a surplus trial never ran), and a worker must also check before it
# starts a trial, waiting while other workers' running trials would fill the study, so that none runs a surplus one.
def counted(trial: FrozenTrial) -> bool:
    """Does the trial count towards n_trials? Complete, pruned, or failed by the objective (it has a reason).

    Failed without a reason means its worker died (heartbeat: its retry counts instead) or it was a surplus
    trial that never ran.
    """
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs)


def n_counted(study: optuna.Study) -> int:
    return sum(counted(t) for t in study.get_trials(deepcopy=False))


def _is_surplus(trial: optuna.Trial, n_trials: int) -> bool:
    # Two workers may both see "one trial to go" and ask at once: the later-numbered trial yields.
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(counted(t) or t.state == TrialState.RUNNING for t in earlier) >= n_trials


def run_trials(study: optuna.Study, objective: Objective, n_trials: int, timeout_s: float | None = None,
               poll_s: float = 2.0, max_failures: int | None = MAX_CONSECUTIVE_FAILURES) -> optuna.Study:
    """Run trials until the study holds `n_trials` counted trials (resuming never redoes finished ones).

    While other workers' trials are still running and would complete the count, wait for them: they either
    finish or go stale (dead worker) and get retried, in which case this worker runs the retry.
    `timeout_s`: start no new trial after this many seconds (a time budget; re-running resumes).
    `max_failures`: raise `SweepStopped` once this many of this worker's trials failed in a row (None: never).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.monotonic()
    failures: list[str] = []  # this worker's failures since its last complete or pruned trial

    def watch(_: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL and not trial.user_attrs.get("surplus"):
            failures.append(trial.user_attrs.get("fail_reason", "failed without a reason"))
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            failures.clear()

    while (done := n_counted(study)) < n_trials:
        if max_failures and len(failures) >= max_failures:
            raise SweepStopped(f"study {study.study_name!r}: {len(failures)} trials in a row failed, stopping "
                               f"({done}/{n_trials} trials done); the last: {failures[-1]}")
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            print(f"sciknow.sweep: time budget of {timeout_s:.0f} s used; {done}/{n_trials} trials done")
            break
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if done + len(running) >= n_trials:
            heartbeats.fail_stale_trials(study)
            time.sleep(poll_s)
            continue
        heartbeats.run_one_trial(study, objective, callbacks=[watch])
    return study


# --- analysis -----------------------------------------------------------------------------------------------

def _distributions(study: optuna.Study) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every parameter's distribution, in the order the trials first suggested them."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            out.setdefault(name, dist)
    return out


def _param_columns(name: str, dist: optuna.distributions.BaseDistribution) -> list[str]:
    if isinstance(dist, CategoricalDistribution):
        if all(isinstance(c, bool) for c in dist.choices):
            return [name]  # True/False as 1/0
        return [f"{name}_{c}" for c in dist.choices[1:]]  # one 0/1 column per choice but the first
    return [f"log10_{name}" if getattr(dist, "log", False) else name]


def param_columns(study: optuna.Study) -> list[str]:
    """The study's parameters as numeric trials-frame columns: booleans as 0/1, other choices as 0/1 indicator
    columns ("adapters_all"), log-scale parameters as their log10 ("log10_lr")."""
    return [c for name, dist in _distributions(study).items() for c in _param_columns(name, dist)]


def _records_by_run(path: str | Path) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in results.read(path) if "run_id" in r}  # a re-run id: its last record


def trials_frame(study: optuna.Study, results_path: str | Path | None = None) -> pd.DataFrame:
    """One row per trial: number, state, value, score, params (bools as 0/1, indicator and log10 columns as in
    `param_columns`), run_id, worker, fail_reason, baseline, duration_s; joined by run id with the run's record
    in results.jsonl (default: the path recorded with the study): status, wall_s, n_texts, the final epoch's
    metrics (Task 4: rouge2, mc, mmlu, judge; with probes also mmlu_continuation_acc, perplexity, locality and
    their untrained values before_*), `forgetting` (studies with a forgetting penalty) and the study's config-derived columns (Task 2: n_contents,
    n_layer_groups; Task 4: total_texts, n_instruction_texts; forced_* when a fallback was forced)."""
    setup = study.user_attrs.get("setup", {})
    definition = studies.get(setup["task"]) if "task" in setup else None
    path = results_path or setup.get("results")
    records = _records_by_run(path) if path else {}
    dists = _distributions(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value,
                               "score": t.user_attrs.get("score")}
        for name, value in t.params.items():
            dist = dists[name]
            if isinstance(dist, CategoricalDistribution) and not isinstance(value, bool):
                row[name] = value
                row |= {f"{name}_{c}": int(value == c) for c in dist.choices[1:]}
            else:
                row[name] = int(value) if isinstance(value, bool) else value
                if getattr(dist, "log", False):
                    row[f"log10_{name}"] = math.log10(value)
        row |= {k: t.user_attrs[k] for k in ("run_id", "worker", "fail_reason", "baseline", "forgetting")
                if k in t.user_attrs}
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        record = records.get(t.user_attrs.get("run_id", ""))
        if record is not None:
            row |= {"status": record.get("status"), "wall_s": record.get("wall_s"), "n_texts": record.get("n_texts")}
            row |= record.get("final_metrics") or {}
            row |= {f"before_{k}": v for k, v in (record.get("metrics_before") or {}).items()}  # probes, untrained
            if definition is not None:
                row |= definition.columns(record["config"])
        rows.append(row)
    df = pd.DataFrame(rows)
    columns = ["number", "state", "value", "score", "status", "wall_s", "n_texts"]
    if definition is not None:  # the study's columns, named by applying its column function to the base
        columns += list(definition.metrics) + list(definition.columns(setup["base"]))
    for col in columns + param_columns(study):  # present even when no trial got that far
        if col not in df:
            df[col] = np.nan
    return df


def correlations(df: pd.DataFrame, columns: list[str], target: str = "score") -> pd.Series:
    """Pearson r of each column with `target` over the rows where `target` is known (NaN if constant)."""
    data = df.dropna(subset=[target])
    y = data[target].astype(float)
    out = {}
    for col in columns:
        x = data[col].astype(float)
        out[col] = x.corr(y) if x.std() > 0 and y.std() > 0 else float("nan")
    return pd.Series(out, name=f"r({target})")


def best_record(study: optuna.Study, results_path: str | Path | None = None) -> dict[str, Any]:
    """The results.jsonl record of the best complete trial."""
    path = results_path or study.user_attrs["setup"]["results"]
    run_id = study.best_trial.user_attrs["run_id"]
    record = _records_by_run(path).get(run_id)
    if record is None:
        raise KeyError(f"{path}: no record of run {run_id!r} (the best trial); pass the results file it wrote to")
    return record


def best_config(study: optuna.Study, results_path: str | Path | None = None) -> RunConfig:
    """The RunConfig of the best complete trial, ready to re-run with `experiment.run`."""
    return RunConfig.from_record(best_record(study, results_path))


# --- command line -------------------------------------------------------------------------------------------

def _floor(text: str) -> float | str:
    if text == "untrained":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--floor {text!r}: expected a number or 'untrained'") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sciknow.sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run trials of a shared study until it holds --n-trials, or (--replication) "
                                      "claim replication units until none is left")
    w.add_argument("--storage", default=None, help="RDB URL (postgresql://... for several workers)")
    w.add_argument("--run-dir", default="runs/sweep", help="default SQLite storage and results location")
    w.add_argument("--study", required=True)
    w.add_argument("--replication", action="store_true",
                   help="the study holds replication units (sciknow.replication), not a search")
    w.add_argument("--task", choices=tuple(studies.STUDIES), default="2b")
    w.add_argument("--n-trials", type=int, default=None, help="a sweep's trial budget (required without "
                                                              "--replication)")
    w.add_argument("--base", default=None, help="base RunConfig JSON file (a new study only)")
    w.add_argument("--model", default=None, help="override base model.name (a new study only)")
    w.add_argument("--dataset", default=None, help="task 4: dataset folder built by notebook 06 (a new study only)")
    w.add_argument("--space", default=None, help="the task's space fields as JSON, e.g. '{\"epochs\": [1, 5]}'")
    w.add_argument("--epoch-score", choices=EPOCH_SCORES, default="last")
    w.add_argument("--floor", type=_floor, default=None,
                   help="score subtracted by the 2b/4 objectives: a number or 'untrained' (default: 0 for 2a/2b, "
                        "untrained for 4; a new study only)")
    w.add_argument("--pruner", choices=PRUNERS, default="none", help="stop weak trials early (a new study only)")
    w.add_argument("--forgetting-penalty", type=float, default=0.0,
                   help="subtract this x the MMLU probe's accuracy drop from each value (needs 'mmlu' in the base's "
                        "eval.probes; a new study only; default 0 = the paper's objective)")
    w.add_argument("--results", default=None, help="results JSONL (default RUN_DIR/results.jsonl)")
    w.add_argument("--seed", type=int, default=None, help="sampler seed (default random: workers differ)")
    w.add_argument("--n-startup-trials", type=int, default=10)
    w.add_argument("--heartbeat-interval", type=int, default=30)
    w.add_argument("--grace-period", type=int, default=None)
    w.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    w.add_argument("--max-failures", type=int, default=MAX_CONSECUTIVE_FAILURES,
                   help="stop (exit 1) after this many trials in a row failed; 0 = never")
    args = parser.parse_args(argv)
    results_path = args.results or str(Path(args.run_dir) / "results.jsonl")
    if args.replication:
        from . import replication

        store = storage(args.storage, args.run_dir, args.heartbeat_interval, args.grace_period,
                        max_retry=replication.MAX_RETRY)
        try:
            ran = replication.work(args.study, store, results_path)
        except ValueError as err:  # no such study, or a sweep study
            print(f"sciknow.sweep: {redact(str(err))}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"study {args.study}: this worker finished {ran} replication unit(s)")
        return
    if args.n_trials is None:
        parser.error("--n-trials is required for a sweep (or give --replication)")

    definition = studies.get(args.task)
    try:  # a bad setup is reported in one line, before any trial runs
        if args.base:
            base = RunConfig.from_dict(json.loads(Path(args.base).read_text()), where=args.base)
            base = base.replace(**({"data.dataset": args.dataset} if args.dataset else {}))
        else:
            base = definition.default_base(args.dataset)
        base = base.replace(task=args.task, **({"model.name": args.model} if args.model else {}))
        try:
            space = definition.space.from_dict(json.loads(args.space or "{}"))
        except json.JSONDecodeError as err:
            raise studies.SpaceError(f"--space: invalid JSON ({err.msg} at character {err.pos})") from None
        store = storage(args.storage, args.run_dir, args.heartbeat_interval, args.grace_period)
        study, objective = prepare(args.study, store, args.task, base, space, results_path, args.epoch_score,
                                   args.n_trials, seed=args.seed, n_startup_trials=args.n_startup_trials,
                                   floor=args.floor, pruner=args.pruner,
                                   forgetting_penalty=args.forgetting_penalty)
    except (ValueError, OSError) as err:
        print(f"sciknow.sweep: {redact(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        run_trials(study, objective, args.n_trials, args.timeout, max_failures=args.max_failures)
    except SweepStopped as err:
        print(f"sciknow.sweep: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"study {args.study}: {n_counted(study)} trials counted")


if __name__ == "__main__":
    main()
