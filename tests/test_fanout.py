"""Replication units fanned out to worker processes through Optuna's RDB storage (sciknow.replication): the same
tables as a serial run, and a unit whose worker is SIGKILLed is finished by another, once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
from optuna.trial import TrialState

from sciknow import experiment, replication, results, sweep
from test_replication import condition, suite  # noqa: F401  (the two-document suite fixture)

from conftest import REPO, take_for_dead_when_running

KEYS = ["tag.condition", "document", "seed", "epoch", "variant", "question_id"]


def units(suite, epochs: int):  # noqa: F811
    """2 documents x 2 seeds of the tiny model trained on 2 texts."""
    base = condition(suite, **{"train.epochs": epochs, "eval.every_epoch": False, "data.contents": ["C1", "C2"],
                               "tags": {"condition": "two"}})
    return experiment.replicate(base, ["alpha", "beta"], [0, 1])


def worker(store, study: str, results_path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sciknow.sweep", "worker", "--replication", "--storage", store.url, "--study",
               study, "--results", str(results_path), "--heartbeat-interval", "1", "--grace-period", "3"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_workers_give_the_same_question_scores_as_one_serial_run(suite, tmp_path, capsys):  # noqa: F811
    configs = units(suite, epochs=40)  # long enough (about 3 s a unit) that a worker starting late still gets one
    serial, fanned = tmp_path / "serial.jsonl", tmp_path / "fanned" / "results.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same kernels, so the same floating-point sums
    try:
        replication.run_many(configs, serial, workers=1)  # no storage: this process, one unit after another
    finally:
        torch.set_num_threads(threads)
    store = sweep.storage(None, tmp_path / "fanned", heartbeat_interval=2, grace_period=30,
                          max_retry=replication.MAX_RETRY)
    replication.run_many(configs, fanned, store, study_name="08", workers=2, threads=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("unit ")]
    assert [line.split(":")[0] for line in lines] == [f"unit {i}/4 ok" for i in range(1, 5)]  # a line per unit

    a, b = (experiment.question_scores(configs, p).sort_values(KEYS).reset_index(drop=True)
            for p in (serial, fanned))
    assert len(a) == len(b) == 4 * 2  # 4 units x (question + paraphrase), last epoch only
    assert a[KEYS + ["score", "answer", "steps"]].equals(b[KEYS + ["score", "answer", "steps"]])
    study = optuna.load_study(study_name="08", storage=store)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(done) == 4 and len({t.user_attrs["worker"] for t in done}) == 2  # both processes ran units
    assert len(results.read(fanned)) == 4  # one record per unit
    # a second call finds every unit finished: nothing is run or enqueued again
    n_trials = len(study.get_trials(deepcopy=False))
    assert len(replication.run_many(configs, fanned, store, study_name="08", workers=1)) == 4
    assert len(results.read(fanned)) == 4 and len(study.get_trials(deepcopy=False)) == n_trials


def test_a_unit_whose_worker_is_killed_is_finished_by_another_once(suite, tmp_path):  # noqa: F811
    configs = units(suite, epochs=20)[:2]
    path = tmp_path / "results.jsonl"
    store = sweep.storage(None, tmp_path, heartbeat_interval=1, grace_period=3, max_retry=replication.MAX_RETRY)
    study = replication.submit("kill", store, configs)
    first = worker(store, "kill", path)
    deadline = time.monotonic() + 300
    claimed = []
    while not claimed and time.monotonic() < deadline and first.poll() is None:
        claimed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if "worker" in t.user_attrs]
        time.sleep(0.1)
    assert claimed, first.communicate()[0][-3000:]
    first.send_signal(signal.SIGKILL)  # mid-unit: claimed, its record not written
    first.wait()
    killed_unit = claimed[0].user_attrs["unit"]
    assert killed_unit not in experiment.finished_ids(path)

    second = worker(store, "kill", path)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    trials = study.get_trials(deepcopy=False)
    complete = [t.user_attrs["unit"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(experiment.config_id(c) for c in configs)  # every unit, once
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == claimed[0].number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and "finished 2" in output
    assert [t.state for t in trials if t.number == claimed[0].number] == [TrialState.FAIL]
    records = results.read(path)
    assert sorted(experiment.recorded_config_id(r) for r in records) == sorted(complete)  # no duplicate
    replication.collect(study, configs, path)  # every unit has its record: no error
    assert len(experiment.question_scores(configs, path)) == 2 * 2


def test_a_live_worker_taken_for_dead_leaves_the_record_to_the_retry(suite, tmp_path):  # noqa: F811
    """Under heavy load a live worker's heartbeat can go stale: another worker fails its unit and retries it. The
    unit must still be recorded once, and the worker that was taken for dead must go on."""
    configs = units(suite, epochs=40)[:1]
    path = tmp_path / "results.jsonl"
    store = sweep.storage(None, tmp_path, heartbeat_interval=1, grace_period=3, max_retry=replication.MAX_RETRY)
    study = replication.submit("taken", store, configs)

    other = take_for_dead_when_running(study, store)
    assert replication.work("taken", store, path, poll_s=0.1) == 1  # the retry; the first run was not counted
    other.join()
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == trials[0].number
    records = results.read(path)
    assert len(records) == 1 and records[0]["run_id"] == trials[1].user_attrs["record"]["run_id"]
    assert replication.collect(study, configs, path) == records


def test_a_failing_unit_is_recorded_as_failed_and_named(suite, tmp_path):  # noqa: F811
    """A unit whose run fails leaves a `failed` record (as a serial run would) and a FAIL trial with the reason."""
    configs = units(suite, epochs=1)[:1]
    path = tmp_path / "results.jsonl"
    store = sweep.storage(None, tmp_path)
    study = replication.submit("failing", store, configs)
    (suite / "alpha.json").unlink()  # the document vanished after its unit was submitted
    assert replication.work("failing", store, path, poll_s=0.1) == 0
    records = results.read(path)
    assert [r["status"] for r in records] == ["failed"] and "alpha" in records[0]["error"]
    with pytest.raises(RuntimeError, match=r"1 unit\(s\) not finished: .*FAIL \(.*alpha"):
        replication.collect(study, configs, path)


def test_progress_counts_this_calls_units_once(suite, tmp_path, capsys):  # noqa: F811
    """A study shared with an earlier submission, and a unit finished twice (enqueued again, as for a worker taken
    for dead): the progress lines count this call's units, each once, and stop waiting once they are finished."""
    configs = units(suite, epochs=1)
    ids = [experiment.config_id(c) for c in configs]
    store = sweep.storage(None, tmp_path)
    study = replication.submit("shared", store, configs[:2])  # an earlier call's units
    progress = replication.Progress(replication.submit("shared", store, configs[2:]), ids[2:])

    def claim(unit: str) -> optuna.Trial:  # as a worker does: the oldest waiting unit
        trial = study.ask()
        assert trial.user_attrs["unit"] == unit
        return trial

    def finish(trial: optuna.Trial) -> None:
        trial.set_user_attr("record", {"status": "ok", "final_score": 0.5, "wall_s": 1.0, "config": {}})
        study.tell(trial, 0.0)

    finish(claim(ids[0]))  # the earlier call's unit: no line
    assert progress.report()
    claim(ids[1])  # the earlier call's other unit stays running elsewhere
    finish(claim(ids[2]))
    study.enqueue_trial({}, user_attrs={"unit": ids[2]})  # the same unit again
    finish(claim(ids[3]))
    assert progress.report()  # this call's ids[2] is waiting again
    finish(claim(ids[2]))
    assert not progress.report()  # ids[1] is still running, but it is not this call's
    lines = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("unit ")]
    assert lines == ["unit 1/2 ok", "unit 2/2 ok"]


def test_workers_and_studies_are_checked(suite, tmp_path, capsys):  # noqa: F811
    configs = units(suite, epochs=1)[:1]
    with pytest.raises(ValueError, match="workers=2: several workers need a storage"):
        replication.run_many(configs, tmp_path / "r.jsonl", workers=2)
    with pytest.raises(ValueError, match="workers=-1"):
        replication.run_many(configs, tmp_path / "r.jsonl", workers=-1)
    store = sweep.storage(None, tmp_path)
    optuna.create_study(study_name="search", storage=store).set_user_attr("setup", {"task": "2b"})
    with pytest.raises(ValueError, match="'search' is a sweep study"):
        replication.submit("search", store, configs)
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["worker", "--replication", "--storage", store.url, "--study", "nothing-here"])
    assert exit_.value.code == 2 and "study 'nothing-here' does not exist" in capsys.readouterr().err
