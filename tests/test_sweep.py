"""The one sweep stack (sweep.py) for Tasks 2a, 2b and 4: the prepare/resume rule, the budget and failure guards,
per-epoch reports and pruning, the trials frame joined with results.jsonl, kill-and-resume, the worker CLI, and
notebooks 03/04 end to end.

The trial-running tests use the random 2-layer `tiny-llama` with tiny budgets: they test the plumbing, not the
science (its scores are 0).
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sciknow import results, studies, sweep
from sciknow.config import REPO_ROOT, EvalSpec, ModelSpec, RunConfig, TrainSpec
from test_paper_datasets import FILES, build_small

from conftest import take_for_dead_when_running

# Smallest useful trials for tiny-llama: a few seconds each.
TINY_SPACE = {"n_irrelevant": [1, 3], "lora_r": [1, 4], "lora_alpha": [1, 4], "epochs": [1, 1]}
TRIAL_ATTRS = {"run_id", "worker", "score", "baseline", "fail_reason"}  # all a trial keeps; the run is in results


def tiny_base(task: str = "2b") -> RunConfig:
    return RunConfig(task=task, model=ModelSpec(name="tiny-llama"), train=TrainSpec(method="lora", max_length=32),
                     eval=EvalSpec(max_new_tokens=2, every_epoch=False))


def tiny_space(**changes) -> studies.SearchSpace:
    return studies.SearchSpace.from_dict({**TINY_SPACE, **changes})


def worker_command(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sciknow.sweep", "worker", "--run-dir", str(run_dir), *args]


# --- validation at startup, the budget and the failure guard ------------------------------------------------

def test_bad_space_worker_exits_nonzero_within_seconds(tmp_path):
    """The issue's command: it used to create hundreds of FAIL trials a minute and never exit."""
    command = worker_command(tmp_path, "--study", "bad", "--task", "2a", "--n-trials", "2", "--model", "tiny-llama",
                             "--space", '{"epochs": [3, 1]}')
    start = time.monotonic()
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "space.epochs=(3, 1) (low > high)" in proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"  # it never loads torch: a few seconds on an idle machine
    assert not (tmp_path / "optuna.sqlite3").exists()  # refused before a storage or study was made


@pytest.mark.parametrize("args, message", [
    (["--space", '{"lr": [0, 0.001]}'], "space.lr=(0.0, 0.001) (must be > 0 (log scale))"),
    (["--space", '{"layer_groups": ["v_prj"]}'], "unknown name 'v_prj' (did you mean 'v_proj'?)"),
    (["--space", '{"epoch": [1, 2]}'], "unknown field 'epoch' (did you mean 'epochs'?)"),
    (["--space", '{"epochs": [1, 2'], "--space: invalid JSON"),
    (["--space", '{"n_irrelevant": [20, 30]}'], "the irrelevant-text pool holds 10 texts"),
    (["--task", "4"], "task 4 needs a dataset folder built by notebook 06 (--dataset)"),
    (["--task", "4", "--dataset", "/nonexistent/ds"], "/nonexistent/ds: no built dataset here; run notebook 06"),
    (["--task", "4", "--dataset", "/nonexistent/ds", "--space", '{"genres": ["abstract-targt"]}'],
     "unknown name 'abstract-targt' (did you mean 'abstract-target'?)"),
    (["--epoch-score", "last", "--base", "/nonexistent/base.json"], "/nonexistent/base.json"),
])
def test_worker_refuses_a_bad_setup_by_name(tmp_path, capsys, args, message):
    argv = ["worker", "--run-dir", str(tmp_path), "--study", "bad", "--task", "2a", "--n-trials", "2",
            "--model", "tiny-llama", *args]
    with pytest.raises(SystemExit) as exit_:
        sweep.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_consecutive_failures_stop_a_worker_with_the_reason(tmp_path):
    """Every trial fails before training (a model that cannot load): the worker stops after K, exit 1, saying why."""
    command = worker_command(tmp_path, "--study", "fails", "--task", "2b", "--n-trials", "10", "--model",
                             "/nonexistent/model", "--space", json.dumps(TINY_SPACE), "--max-failures", "2")
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 trials in a row failed, stopping (2/10 trials done)" in proc.stderr
    assert "'/nonexistent/model'" in proc.stderr  # the last reason
    study = optuna.load_study(study_name="fails", storage=sweep.default_url(tmp_path))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert all("OSError" in t.user_attrs["fail_reason"] for t in study.trials)
    assert sweep.n_counted(study) == 2  # errors before training count towards the budget


def test_every_trial_counts_towards_the_budget(tmp_path):
    """Diverging trials are FAIL with their reason, and they use up the budget: the worker stops at n_trials."""
    store = sweep.storage(None, tmp_path)
    study, objective = sweep.prepare("d", store, "2b", tiny_base(), tiny_space(lr=[10.0, 1000.0]),
                                     tmp_path / "r.jsonl", n_trials=2)
    setup = objective.setup  # a second trial like the baseline (every content and adapter), at lr 1000
    study.enqueue_trial({**studies.baseline_lora(setup.base, setup.space), "lr": 1000.0})
    sweep.run_trials(study, objective, 2)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2 and sweep.n_counted(study) == 2
    assert all(t.user_attrs["fail_reason"].startswith("diverged: loss exploded") for t in study.trials)
    records = results.read(tmp_path / "r.jsonl")
    assert [r["status"] for r in records] == ["diverged"] * 2
    assert [r["run_id"] for r in records] == [t.user_attrs["run_id"] for t in study.trials]


def test_sweep_goes_on_after_a_failure_and_trials_point_to_their_runs(tmp_path):
    """The enqueued baseline runs first, a diverging trial fails with its reason, the next one completes. Each
    trial keeps its run id and score; the trials frame gets the rest from results.jsonl."""
    store = sweep.storage(None, tmp_path)
    results_path = tmp_path / "r.jsonl"
    study, objective = sweep.prepare("t", store, "2b", tiny_base(), tiny_space(lr=[1e-3, 1000.0]), results_path,
                                     n_trials=3)
    like_baseline = studies.baseline_lora(objective.setup.base, objective.setup.space)  # every content and adapter
    study.enqueue_trial({**like_baseline, "lr": 1000.0})
    study.enqueue_trial({"lr": 1e-3, "n_irrelevant": 3})
    sweep.run_trials(study, objective, 3)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["baseline"] is True and trials[0].params["lr"] == 1e-3  # base lr clamped
    assert trials[1].user_attrs["fail_reason"].startswith("diverged")
    for t in trials:
        assert set(t.user_attrs) <= TRIAL_ATTRS and t.user_attrs["run_id"] == f"t-t{t.number}"

    frame = sweep.trials_frame(study)
    records = {r["run_id"]: r for r in results.read(results_path)}
    assert list(frame.status) == ["ok", "diverged", "ok"]
    for _, row in frame.iterrows():
        config = records[row.run_id]["config"]
        assert row.n_contents == len(config["data"]["contents"]) and row.n_irrelevant == config["data"]["n_irrelevant"]
        assert row.n_layer_groups == len(config["train"]["layer_groups"])
        assert row.wall_s == records[row.run_id]["wall_s"]
    assert frame.log10_lr.tolist() == pytest.approx([-3, 3, -3])
    assert sweep.param_columns(study)[-5:] == ["log10_n_irrelevant", "log10_lora_r", "log10_lora_alpha", "log10_lr",
                                               "epochs"]
    assert set(sweep.param_columns(study)) <= set(frame.columns)
    best = sweep.best_config(study)
    assert best == RunConfig.from_record(records[study.best_trial.user_attrs["run_id"]])
    # Re-opening the study neither re-enqueues the baseline nor runs more trials.
    study2, objective2 = sweep.prepare("t", store, "2b", tiny_base(), tiny_space(lr=[1e-3, 1000.0]), results_path,
                                       n_trials=3)
    sweep.run_trials(study2, objective2, 3)
    assert len(study2.trials) == 3


def test_floor_is_recorded_with_the_study_and_used_by_its_objective(tmp_path):
    """A real tiny-model trial at N = 10: the random model scores 0, so the objective is (0 - floor) x 1."""
    store = sweep.storage(None, tmp_path)
    space = tiny_space(n_irrelevant=[10, 10])
    study, objective = sweep.prepare("f", store, "2b", tiny_base(), space, tmp_path / "r.jsonl", n_trials=1,
                                     floor=0.25)
    sweep.run_trials(study, objective, 1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["score"] == 0.0
    assert trial.value == pytest.approx(-0.25)
    assert trial.intermediate_values == {1: pytest.approx(-0.25)}  # reported after its (only) evaluated epoch
    # Re-opened without the option, the recorded setup (and so its floor) wins.
    study2, objective2 = sweep.prepare("f", store, "2b", tiny_base(), space, tmp_path / "r.jsonl", n_trials=1)
    assert study2.user_attrs["setup"]["floor"] == 0.25 and objective2.setup.floor == 0.25
    with pytest.raises(ValueError, match="floor=nan"):
        sweep.prepare("g", store, "2b", tiny_base(), space, tmp_path / "r.jsonl", floor=float("nan"))


def test_median_pruner_stops_a_weak_trial_and_records_it_as_pruned(tmp_path):
    """Five trials at N = 1 are worth 0 after every epoch; a trial at N = 10 with floor 0.5 is worth -0.5 after
    epoch 1, below their median: it is pruned there, its run is recorded as "pruned" with one epoch, and it counts."""
    store = sweep.storage(None, tmp_path)
    results_path = tmp_path / "r.jsonl"
    study, objective = sweep.prepare("p", store, "2b", tiny_base(), tiny_space(n_irrelevant=[1, 10], epochs=[2, 2]),
                                     results_path, n_trials=6, floor=0.5, pruner="median")
    assert objective.setup.base.eval.every_epoch  # pruning needs every epoch evaluated
    for n in [1] * 4 + [10]:  # the baseline (N = 1) is already enqueued
        study.enqueue_trial({"n_irrelevant": n})
    sweep.run_trials(study, objective, 6)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    assert all(t.intermediate_values == {1: 0.0, 2: 0.0} for t in trials[:5])
    assert trials[5].intermediate_values == {1: pytest.approx(-0.5)}
    record = {r["run_id"]: r for r in results.read(results_path)}[trials[5].user_attrs["run_id"]]
    assert record["status"] == "pruned" and "MedianPruner" in record["error"]
    assert [e["epoch"] for e in record["per_epoch"]] == [1]
    assert sweep.n_counted(study) == 6
    assert list(sweep.trials_frame(study).state) == ["COMPLETE"] * 5 + ["PRUNED"]


# --- one prepare for every task -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if len(FILES) < 14:
        pytest.skip("shared PLOS corpus not available")
    out = tmp_path_factory.mktemp("sweep_dataset")
    build_small(out)
    return out


def task_setup(task: str, request) -> tuple[RunConfig, studies.Space, studies.Space, dict]:
    """(base, space, changed space, prepare kwargs) for each task."""
    if task == "4":
        base = studies.paper_base(str(request.getfixturevalue("dataset"))).replace(**{"model.name": "tiny-llama"})
        return base, studies.Task4Space(epochs=(1, 1), max_per_genre=2), studies.Task4Space(epochs=(1, 2)), \
            {"floor": 0.1}
    return tiny_base(task), tiny_space(), tiny_space(epochs=[1, 2]), {}


@pytest.mark.parametrize("task", ["2a", "2b", "4"])
def test_every_task_goes_through_one_prepare_and_the_recorded_setup_wins(tmp_path, capsys, request, task):
    base, space, changed, kwargs = task_setup(task, request)
    store = sweep.storage(None, tmp_path)
    study, objective = sweep.prepare("s", store, task, base, space, tmp_path / "r.jsonl", n_trials=1, **kwargs)
    recorded = study.user_attrs["setup"]
    assert recorded["task"] == task and recorded["space"]["epochs"] == [1, 1]
    assert recorded["sampler"] == ("random" if task == "2a" else "tpe")
    assert [t.user_attrs for t in study.trials] == [{"baseline": True}]  # the baseline, enqueued once
    assert "recorded setup wins" not in capsys.readouterr().out

    # Resumed with other parameters (a re-run notebook, another worker): the recorded setup wins, with a message.
    other_base = base.replace(**{"train.lr": 3e-4})
    study2, objective2 = sweep.prepare("s", store, task, other_base, changed, tmp_path / "r.jsonl", n_trials=1,
                                       **{k: v + 1 for k, v in kwargs.items()})
    out = capsys.readouterr().out
    assert "study 's' exists; its recorded setup wins" in out
    assert "space.epochs: recorded [1, 1], requested [1, 2]" in out and "base.train.lr" in out
    assert objective2.setup == objective.setup and objective2.setup.space == space
    assert study2.user_attrs["setup"] == recorded and len(study2.trials) == 1
    if kwargs:
        assert "floor: recorded 0.1, requested 1.1" in out and objective2.setup.floor == 0.1


@pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")
def test_task4_trial_runs_through_the_one_stack(tmp_path, dataset):
    """A Task 4 study: baseline first, the paper's objective (score - untrained) x log10(total texts), and the
    frame's metrics and text counts from results.jsonl."""
    base = studies.paper_base(str(dataset)).replace(**{
        "model.name": "tiny-llama", "train.max_length": 32,
        "eval.n_qa": 2, "eval.n_mc": 2, "eval.n_mmlu": 2, "eval.max_new_tokens": 2, "eval.every_epoch": False})
    store = sweep.storage(None, tmp_path)
    study, objective = sweep.prepare("p4", store, "4", base, studies.Task4Space(epochs=(1, 1), max_per_genre=1),
                                     tmp_path / "r.jsonl", n_trials=2, floor="untrained")
    untrained = [r for r in results.read(tmp_path / "r.jsonl") if r["config"]["train"]["epochs"] == 0]
    assert len(untrained) == 1 and objective.setup.floor == untrained[0]["final_score"]
    sweep.run_trials(study, objective, 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    frame = sweep.trials_frame(study)
    assert {"rouge2", "mc", "mmlu", "judge", "total_texts", "n_instruction_texts", "adapters_all"} <= set(frame)
    baseline = frame.iloc[0]
    available = studies.genre_sizes(dataset)
    assert baseline.total_texts == sum(1 for n in available.values() if n) and baseline.adapters == "partial"
    for t, (_, row) in zip(study.trials, frame.iterrows()):
        expected = (row.score - objective.setup.floor) * math.log10(max(row.total_texts, 1))
        assert t.value == pytest.approx(expected) and row.score == row.rouge2


@pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")
def test_task4_trials_record_the_probes_and_can_penalise_forgetting(tmp_path, dataset):
    """Every Task 4 trial can carry the forgetting and locality probes; with a penalty λ its value is the paper's
    objective - λ x max(0, MMLU before - after), the drop recorded with the trial."""
    base = studies.paper_base(str(dataset)).replace(**{
        "model.name": "tiny-llama", "train.max_length": 32, "train.lr": 0.05,
        "eval.n_qa": 2, "eval.n_mc": 2, "eval.n_mmlu": 2, "eval.max_new_tokens": 2, "eval.every_epoch": False,
        "eval.probes": ["mmlu", "perplexity", "locality"], "eval.n_probe_mmlu": 4, "eval.n_probe_texts": 1,
        "eval.n_probe_locality": 2})
    store = sweep.storage(None, tmp_path)
    study, objective = sweep.prepare("p4f", store, "4", base, studies.Task4Space(epochs=(1, 1), max_per_genre=1),
                                     tmp_path / "r.jsonl", n_trials=1, floor=0.0, forgetting_penalty=2.0)
    assert study.user_attrs["setup"]["forgetting_penalty"] == 2.0
    sweep.run_trials(study, objective, 1)
    row = sweep.trials_frame(study).iloc[0]
    acc = "mmlu_continuation_acc"  # the default MMLU probe: the cloze form by log-likelihood
    assert {acc, "perplexity", "locality", f"before_{acc}", "before_perplexity"} <= set(row.index)
    assert row.perplexity != row.before_perplexity  # measured again after training
    assert row.forgetting == pytest.approx(max(0.0, row[f"before_{acc}"] - row[acc]))
    paper = row.score * math.log10(max(row.total_texts, 1))
    assert row.value == pytest.approx(paper - 2.0 * row.forgetting)
    # The arithmetic where the drop is not 0, and no penalty for a gain.
    one_text = base.replace(**{"data.genre_counts": {"abstract-target": 1}})  # log10(1) = 0: the value is the penalty alone
    assert objective.value(0.5, one_text, {acc: 0.4}, {acc: 0.25}) == pytest.approx(-2.0 * 0.15)
    assert sweep.forgetting({acc: 0.2}, {acc: 0.3}) == 0.0
    letter = one_text.replace(**{"eval.probe_mmlu_metrics": ["mmlu"]})  # the penalty follows the first metric
    assert objective.value(0.5, letter, {"mmlu_acc": 0.4}, {"mmlu_acc": 0.3}) == pytest.approx(-2.0 * 0.1)
    with pytest.raises(ValueError, match="forgetting_penalty=1.0 needs the MMLU probe"):
        sweep.prepare("p4g", store, "4", base.replace(**{"eval.probes": ["perplexity"]}),
                      studies.Task4Space(epochs=(1, 1), max_per_genre=1), tmp_path / "r.jsonl", forgetting_penalty=1.0)
    with pytest.raises(ValueError, match="forgetting_penalty=-1"):
        sweep.prepare("p4h", store, "4", base, studies.Task4Space(epochs=(1, 1), max_per_genre=1),
                      tmp_path / "r.jsonl", forgetting_penalty=-1.0)


def test_secrets_never_reach_the_study(tmp_path):
    store = sweep.storage(None, tmp_path)
    base = tiny_base().replace(tags={"db_password": "hunter2", "note": "see https://me:s3cret@example.org/x"})
    study, objective = sweep.prepare("secret", store, "2b", base, tiny_space(), tmp_path / "r.jsonl", n_trials=1)
    stored = json.dumps(study.user_attrs)
    assert "hunter2" not in stored and "s3cret" not in stored and "example.org" in stored
    # An error message holding a secret (here a model "name" with credentials) is masked in the fail reason.
    bad = tiny_base().replace(**{"model.name": "https://me:s3cret@example.org/model"})
    study, objective = sweep.prepare("secret2", store, "2b", bad, tiny_space(), tmp_path / "r.jsonl", n_trials=1)
    with pytest.raises(sweep.SweepStopped, match="1 trials in a row failed"):
        sweep.run_trials(study, objective, 1 + 1, max_failures=1)
    attrs = json.dumps([t.user_attrs for t in study.trials] + [study.user_attrs])
    assert "s3cret" not in attrs and "fail_reason" in attrs


# --- workers: kill and resume, notebooks -------------------------------------------------------------------

def _worker(url: str, study: str, n_trials: int, run_dir: Path, base: Path, *extra: str) -> subprocess.Popen:
    command = worker_command(run_dir, "--storage", url, "--study", study, "--task", "2b", "--n-trials", str(n_trials),
                             "--base", str(base), "--space", json.dumps(TINY_SPACE), "--heartbeat-interval", "1",
                             "--grace-period", "3", *extra)
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_is_failed_retried_and_resumed(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(tiny_base().to_json())
    url = sweep.default_url(tmp_path)
    worker = _worker(url, "resume", 3, tmp_path, base, "--seed", "1")
    store = sweep.storage(url, heartbeat_interval=1, grace_period=3)
    deadline = time.monotonic() + 300
    while True:  # kill it mid-trial, once it has finished at least one trial
        assert worker.poll() is None, worker.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "worker never reached a running second trial"
        try:
            trials = optuna.load_study(study_name="resume", storage=store).get_trials(deepcopy=False)
        except KeyError:  # the study is not created yet
            trials = []
        if any(t.state == TrialState.COMPLETE for t in trials) and any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    trials = optuna.load_study(study_name="resume", storage=store).get_trials()  # as the kill left them
    before = {t.number: t.params for t in trials if t.state == TrialState.COMPLETE}
    killed = next(t.number for t in trials if t.state == TrialState.RUNNING)

    resumed = _worker(url, "resume", 3, tmp_path, base)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="resume", storage=store)
    trials = study.get_trials()
    assert {t.number: t.params for t in trials if t.number in before} == before  # kept, not redone
    assert study.trials[killed].state == TrialState.FAIL  # not RUNNING forever
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    # The retry keeps whatever the killed trial had sampled (all of it, unless killed mid-sampling).
    assert study.trials[killed].params.items() <= retries[0].params.items()
    assert sweep.n_counted(study) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    # Optuna creates a trial RUNNING, then starts its heartbeat; a worker killed in between leaves a trial Optuna
    # never finds stale. A worker waiting for it to finish (the study would be full) must not wait forever.
    store = sweep.storage(sweep.default_url(tmp_path), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="silent", storage=store)
    silent = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, never a heartbeat
    start = time.monotonic()
    sweep.run_trials(study, lambda trial: trial.suggest_float("x", 0, 1), n_trials=1, timeout_s=60, poll_s=0.2)
    assert time.monotonic() - start < 30
    trials = study.get_trials()
    assert trials[silent.number].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == silent.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == {"x": silent.params["x"]} and sweep.n_counted(study) == 1


def test_a_live_worker_taken_for_dead_leaves_the_record_to_the_retry(tmp_path):
    """Under heavy load a live worker's heartbeat can go stale: another worker fails its trial and retries it. The
    run must be recorded once (by the retry), and the worker that was taken for dead must go on."""
    store = sweep.storage(None, tmp_path, heartbeat_interval=1, grace_period=3)
    path = tmp_path / "r.jsonl"
    study, objective = sweep.prepare("taken", store, "2b", tiny_base(), tiny_space(epochs=[40, 40]), path,
                                     n_trials=1)

    other = take_for_dead_when_running(study, store)
    sweep.run_trials(study, objective, 1, poll_s=0.1)
    other.join()
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == trials[0].number and sweep.n_counted(study) == 1
    assert [r["run_id"] for r in results.read(path)] == [trials[1].user_attrs["run_id"]]


@pytest.mark.parametrize("notebook, files", [
    ("03_task2a_lora_random_search.ipynb", ["trials.csv", "correlations.csv", "fig_s1.png"]),
    ("04_task2b_optuna.ipynb", ["trials.csv", "best_per_n.csv", "fig3.png"]),
])
def test_notebook_smoke(tmp_path, notebook, files):
    import papermill

    params = {"model": "tiny-llama", "knowledge_set": "default", "n_trials": 2, "max_new_tokens": 2,
              "max_length": 32, "out_dir": str(tmp_path), **TINY_SPACE}
    if notebook.startswith("04"):
        params["subtract_untrained"] = True  # the floored objective: an untrained run first, then the trials
    papermill.execute_notebook(REPO_ROOT / "notebooks" / notebook, tmp_path / notebook, parameters=params,
                               cwd=REPO_ROOT / "notebooks", progress_bar=False, kernel_name="python3")
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 2 and (trials.state == "COMPLETE").all() and (trials.status == "ok").all()
    assert trials.n_irrelevant.between(1, 3).all() and (trials.epochs == 1).all()
    assert trials.content_C1.notna().all() and trials.score.between(0, 1).all() and trials.n_contents.ge(1).all()
    if "correlations.csv" in files:
        corr = pd.read_csv(tmp_path / "correlations.csv", index_col=0)
        assert "log10_lr" in corr.index and "content_C1" in corr.index
    else:
        best = pd.read_csv(tmp_path / "best_per_n.csv")
        assert set(best.n_irrelevant) == set(trials.n_irrelevant)
        untrained = [r for r in results.read(tmp_path / "results.jsonl") if r["config"]["train"]["epochs"] == 0]
        assert len(untrained) == 1  # its score is the floor recorded with the study
        floor = optuna.load_study(study_name="task2b", storage=sweep.default_url(tmp_path)).user_attrs["setup"]["floor"]
        assert floor == untrained[0]["final_score"]
    assert_dashboard_serves(sweep.default_url(tmp_path), n_trials=2)


def assert_dashboard_serves(url: str, n_trials: int) -> None:
    """optuna-dashboard's own WSGI app (what `optuna-dashboard URL` serves) lists the study and its trials."""
    import wsgiref.util

    from optuna_dashboard import wsgi

    app = wsgi(url)

    def get(path: str) -> dict:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        wsgiref.util.setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, headers, *exc: status.append(s)))
        assert status == ["200 OK"], (path, status, body[:200])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    detail = get(f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == n_trials
