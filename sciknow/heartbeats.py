"""Trials of workers that died, or were taken for dead: failed and retried (Optuna's heartbeats), shared by
sweeps and replication units (both on an RDB storage with heartbeats, `sweep.storage`)."""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's `fail_stale_trials`, also for a worker that died between starting its trial and its first
    heartbeat.

    Optuna finds a trial stale only from its last heartbeat, so such a trial would stay RUNNING forever and the
    workers waiting for it would wait forever. A trial RUNNING for longer than the grace period without any
    heartbeat gets one written on its behalf: it goes stale one grace period later, unless its worker lives.
    """
    store = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDBStorage in a cache
    if isinstance(store, RDBStorage) and store.heartbeat_interval is not None:
        grace = timedelta(seconds=store.grace_period or 2 * store.heartbeat_interval)
        now = datetime.now()  # datetime_start is the worker's local time, as Optuna writes it
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.datetime_start and now - trial.datetime_start > grace and not _has_heartbeat(store, trial):
                store.record_heartbeat(trial._trial_id)
    with warnings.catch_warnings():  # "experimental", like the heartbeats it serves
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _has_heartbeat(store: RDBStorage, trial: FrozenTrial) -> bool:
    # Optuna has no public reader of heartbeats; this is the query its `_get_stale_trial_ids` makes.
    from optuna.storages._rdb import models

    session = store.scoped_session()
    try:
        return models.TrialHeartbeatModel.where_trial_id(trial._trial_id, session) is not None
    finally:
        session.close()


def still_running(trial: optuna.Trial) -> bool:
    """Whether `trial` is still RUNNING in its study: false once another worker took its worker for dead."""
    return trial.number in {t.number for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def run_one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], float],
                  callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
    """`study.optimize` for one trial, catching the objective's exceptions (the trial fails with its reason).

    A live worker whose heartbeat went stale under load has its trial failed and retried by another worker;
    Optuna then raises "Cannot tell a FAIL trial" here when the objective returns. That ends this call quietly:
    the trial's retry counts instead.
    """
    claimed: list[int] = []

    def tracked(trial: optuna.Trial) -> float:
        claimed.append(trial.number)
        return objective(trial)

    try:
        study.optimize(tracked, n_trials=1, catch=(Exception,), callbacks=list(callbacks))
    except ValueError:
        failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        if not claimed or claimed[0] not in failed:
            raise
        print(f"trial {claimed[0]} of study {study.study_name!r} was taken for dead (its heartbeat was late) and "
              "retried by another worker", file=sys.stderr)
