"""Replication units fanned out to worker processes, on this machine or others, through Optuna's RDB storage.

A replication (notebook 08: conditions x documents x seeds) is a list of RunConfigs, one per unit. `run_many`
puts each unit not yet finished into an Optuna study as a WAITING trial carrying its config, and workers claim
them: `study.optimize` pops one WAITING trial at a time, and the storage hands each one to exactly one worker.
A worker runs the unit with `experiment.run` (its record goes to the worker's results file, and into the
trial, so a machine without the shared file still delivers it), and marks the trial COMPLETE.

Why Optuna's storage and not Dask: the sweeps already use it (one dependency, one worker CLI, the same
SQLite file locally and PostgreSQL across machines, the same dashboard), and it brings what a replication needs
to lose nothing: running trials send heartbeats, and a trial whose worker died (SIGKILL, lost machine) is failed
by the next live worker and re-enqueued with the same config (`RetryHeartbeatStaleTrialCallback`); a worker
waits while other workers' units are running, so a retry always finds someone. Nothing is counted twice: a
unit whose record is already in the results file (its worker died after writing it), or already complete in
the study, is read, not run again; and the tables keep one record per config id (`experiment.epochs_for`).

Workers, started by `run_many` (`workers` = N local processes) or by hand, on any machine that has the repo::

    python -m sciknow.sweep worker --replication --storage postgresql://user:pw@host/db --study 08 \\
        --results runs/08_what_makes_knowledge_stick/results.jsonl
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from . import experiment, heartbeats, results
from .config import SCHEMA_VERSION, RunConfig
from .secrets import redact

KIND = "replication"  # the study attribute that marks a replication study (a sweep study has a "setup")
MAX_RETRY = 3  # a unit whose worker died is re-enqueued up to this many times


def submit(study_name: str, store: RDBStorage, configs: Iterable[RunConfig]) -> optuna.Study:
    """Open (or create) the replication study and enqueue every config that is not in it yet, one WAITING trial
    each, carrying the config (and its schema) as trial attributes."""
    study = optuna.create_study(study_name=study_name, storage=store, load_if_exists=True)
    if "setup" in study.user_attrs:
        raise ValueError(f"study {study_name!r} is a sweep study; give the replication another --study name")
    study.set_user_attr("kind", KIND)
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)  # a failed unit is enqueued again
    queued = {t.user_attrs.get("unit") for t in study.get_trials(deepcopy=False, states=live)}
    for config in configs:
        unit = experiment.config_id(config)
        if unit not in queued:
            queued.add(unit)
            study.enqueue_trial({}, user_attrs={"unit": unit, "config": config.to_dict(), "schema": SCHEMA_VERSION})
    return study


def _complete(study: optuna.Study) -> dict[str, Any]:
    """unit -> its finished record, from the study's COMPLETE trials."""
    return {t.user_attrs["unit"]: t.user_attrs["record"]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "record" in t.user_attrs}


class UnitObjective:
    """Run the claimed unit (or read it when it is already finished) and keep its record in the trial."""

    def __init__(self, results_path: str | Path) -> None:
        self.results_path = Path(results_path)
        self.ran = 0  # units this worker finished

    def __call__(self, trial: optuna.Trial) -> float:
        if "config" not in trial.user_attrs:  # no WAITING unit was left: optimize made a fresh, empty trial
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("no unit left to claim")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            config = RunConfig.from_record({"config": trial.user_attrs["config"],
                                            "schema": trial.user_attrs["schema"]})
            # enqueued twice, or run by a worker that was taken for dead: already done, so read it
            record = _complete(trial.study).get(trial.user_attrs["unit"]) or experiment.recorded(
                config, self.results_path)
            if record is None:
                # Under heavy load a live worker's heartbeat can go stale: its unit is failed and retried
                # elsewhere. Only the worker whose trial is still running writes the record (a failed run's
                # too), so each unit is written once.
                record = experiment.run(config, self.results_path, progress=False,
                                        write_if=lambda _: heartbeats.still_running(trial))
                if not heartbeats.still_running(trial):
                    raise RuntimeError(f"unit {trial.user_attrs['unit']} was taken for dead and retried by another "
                                       "worker while it ran here; its record is left to that worker")
        except Exception as err:
            if heartbeats.still_running(trial):
                trial.set_user_attr("fail_reason", redact(f"{type(err).__name__}: {err}")[:2000])
            raise
        trial.set_user_attr("record", record)
        self.ran += 1
        return 0.0


def work(study_name: str, store: RDBStorage, results_path: str | Path, poll_s: float = 2.0) -> int:
    """Claim and run units of the study until none is waiting and none is running elsewhere (a unit whose
    worker dies goes back to WAITING once its heartbeat is stale, and is claimed here). Returns the number of
    units this worker finished."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        raise ValueError(f"study {study_name!r} does not exist in this storage: submit its units first "
                         "(replication.run_many, or notebook 08 with this storage_url)") from None
    if study.user_attrs.get("kind") != KIND:
        raise ValueError(f"study {study_name!r} holds no replication units (made by sciknow.replication.submit)")
    objective = UnitObjective(results_path)
    while True:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if TrialState.WAITING in states:
            heartbeats.run_one_trial(study, objective)
        elif TrialState.RUNNING in states:
            heartbeats.fail_stale_trials(study)
            time.sleep(poll_s)
        else:
            return objective.ran


def _worker_command(study_name: str, store: RDBStorage, results_path: Path) -> list[str]:
    return [sys.executable, "-m", "sciknow.sweep", "worker", "--replication", "--storage", store.url,
            "--study", study_name, "--results", str(results_path),
            "--heartbeat-interval", str(store.heartbeat_interval), "--grace-period", str(store.grace_period)]


def run_many(configs: Sequence[RunConfig], results_path: str | Path, store: RDBStorage | None = None,
             study_name: str = "replication", workers: int = 1, threads: int = 0, poll_s: float = 2.0
             ) -> list[dict[str, Any]]:
    """Run every config once (finished ones in `results_path` are skipped), leaving one record per config in
    `results_path`, as `experiment.run_many` does; returns the records of the units run (with a storage: every
    unit of `configs` the study finished).

    `store` None: in this process, one unit after another (`workers` must be 1). With a storage: the units go to
    the study `study_name`, and `workers` worker processes started here claim them (each with `threads` torch
    threads; 0 = this machine's cores split between them), while this process waits. `workers=0` starts none and
    waits for workers started elsewhere (`python -m sciknow.sweep worker --replication ...`); their records are
    copied from the study into `results_path`. Raises naming the units that did not finish.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers={workers!r}: expected an int >= 0")
    results_path = Path(results_path)
    if store is None:
        if workers != 1:
            raise ValueError(f"workers={workers}: several workers need a storage (sweep.storage(url, run_dir))")
        return experiment.run_many(configs, results_path)
    done = experiment.finished_ids(results_path)
    pending = [c for c in configs if experiment.config_id(c) not in done]
    study = submit(study_name, store, pending)
    threads = threads or max(1, (os.cpu_count() or 1) // max(workers, 1))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    helpers = [subprocess.Popen(_worker_command(study_name, store, results_path), env=env) for _ in range(workers)]
    progress = Progress(study, map(experiment.config_id, pending))
    try:
        while progress.report() and (not helpers or any(h.poll() is None for h in helpers)):
            heartbeats.fail_stale_trials(study)
            time.sleep(poll_s)
    finally:
        for helper in helpers:
            helper.wait()
    if failed := [h.returncode for h in helpers if h.returncode]:
        print(f"sciknow.replication: {len(failed)} worker(s) exited with code(s) {failed}", file=sys.stderr)
    return collect(study, configs, results_path)


class Progress:
    """A line per unit the workers finish, as `experiment.run_many` prints one per run (the workers' own output
    does not reach a notebook): its status, final score, time, and an ETA from the units finished so far.
    Counts only `units` (this call's), once each: a study shared with other submissions, or a unit finished
    twice (run by a worker taken for dead), does not change the count."""

    def __init__(self, study: optuna.Study, units: Iterable[str]) -> None:
        self.study, self.start = study, time.perf_counter()
        self.units = set(units)
        self.seen = set(_complete(study)) & self.units  # finished before this call (a resumed study)
        self.before = len(self.seen)

    def report(self) -> bool:
        """Print this call's units finished since the last call; whether any of them is waiting or running."""
        trials = self.study.get_trials(deepcopy=False)
        total = len(self.units) - self.before
        for trial in trials:
            unit = trial.user_attrs.get("unit")
            if (trial.state == TrialState.COMPLETE and unit in self.units and unit not in self.seen
                    and "record" in trial.user_attrs):
                self.seen.add(unit)
                print(experiment.progress_line("unit", len(self.seen) - self.before, total,
                                               trial.user_attrs["record"], time.perf_counter() - self.start),
                      flush=True)
        return any(t.state in (TrialState.WAITING, TrialState.RUNNING) and t.user_attrs.get("unit") in self.units
                   for t in trials)


def collect(study: optuna.Study, configs: Sequence[RunConfig], results_path: str | Path) -> list[dict[str, Any]]:
    """The records of `configs`, each appended to `results_path` if it is not there yet (a unit run on another
    machine); raises naming the units with no finished record, and why their trials failed."""
    in_file = {r["run_id"] for r in results.finished(results_path)}
    done = experiment.finished_ids(results_path)
    complete = _complete(study)
    records, missing = [], []
    for config in configs:
        unit = experiment.config_id(config)
        record = complete.get(unit)
        if record is None:
            if unit not in done:
                missing.append(unit)
            continue
        if record["run_id"] not in in_file:
            results.append(results_path, record)
        records.append(record)
    if missing:
        reasons = {t.user_attrs["unit"]: f"{t.state.name} ({t.user_attrs.get('fail_reason', 'its worker died')})"
                   for t in study.get_trials(deepcopy=False) if t.user_attrs.get("unit") in missing}
        raise RuntimeError(f"study {study.study_name!r}: {len(missing)} unit(s) not finished: "
                           + "; ".join(f"{u}: {reasons.get(u, 'never claimed')}" for u in missing[:5]))
    return records
