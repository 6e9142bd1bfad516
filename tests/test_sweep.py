"""Task 2a/2b sweeps: search space, objective, correlations, kill-and-resume, and the notebooks end to end.

The trial-running tests use the random 2-layer `tiny-llama` with tiny budgets: they test the plumbing, not
the science (its scores are 0).
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sciknow import results, sweep
from sciknow.config import LAYER_GROUPS, REPO_ROOT, EvalSpec, ModelSpec, RunConfig, TrainSpec

BASE = RunConfig(task="2b", train=TrainSpec(method="lora"))
CONTENTS = sweep.content_ids(BASE)
# Smallest useful trials for tiny-llama: a few seconds each.
TINY_SPACE = {"n_irrelevant": [1, 3], "lora_r": [1, 4], "lora_alpha": [1, 4], "epochs": [1, 1]}


def tiny_base(task: str = "2b") -> RunConfig:
    return RunConfig(task=task, model=ModelSpec(name="tiny-llama"), train=TrainSpec(method="lora", max_length=32),
                     eval=EvalSpec(max_new_tokens=2, every_epoch=False))


def test_search_space_bounds_types_and_at_least_one_rules():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = sweep.SearchSpace()
    # A trial switching everything off: C1 and v_proj are forced on, and the trial says so.
    study.enqueue_trial({**{f"content_{c}": False for c in CONTENTS}, **{f"layer_{g}": False for g in LAYER_GROUPS}})
    for i in range(300):
        trial = study.ask()
        config = sweep.suggest_config(trial, BASE, space, CONTENTS)
        d, t = config.data, config.train
        assert t.method == "lora"
        assert d.contents and set(d.contents) <= set(CONTENTS)
        assert d.contents == [c for c in CONTENTS if c in d.contents]  # file order = training order
        assert t.layer_groups and set(t.layer_groups) <= set(LAYER_GROUPS)
        assert isinstance(d.n_irrelevant, int) and 1 <= d.n_irrelevant <= 5000
        assert isinstance(t.lora_r, int) and 1 <= t.lora_r <= 1024
        assert isinstance(t.lora_alpha, int) and 1 <= t.lora_alpha <= 1024
        assert isinstance(t.lr, float) and 1e-5 <= t.lr <= 1e-2
        assert isinstance(t.epochs, int) and 1 <= t.epochs <= 30
        if i == 0:
            assert d.contents == ["C1"] and t.layer_groups == [sweep.FALLBACK_GROUP]
            assert trial.user_attrs["forced_content"] == "C1"
        study.tell(trial, 0.0)
    df = sweep.trials_frame(study)
    # log-scale sampling: about half the draws of N lie below sqrt(5000) ~ 71
    assert 0.35 < (df.n_irrelevant <= 71).mean() < 0.65
    assert df.content_C1.isin([0, 1]).all() and df.layer_lm_head.between(0, 1).all()


def test_space_capped_by_pool_and_narrowed():
    assert sweep.SearchSpace().capped(10).n_irrelevant == (1, 10)
    assert sweep.SearchSpace(n_irrelevant=(1, 5)).capped(10).n_irrelevant == (1, 5)
    with pytest.raises(ValueError):
        sweep.SearchSpace().capped(0)
    assert sweep.irrelevant_pool_size(BASE) == 10  # the default knowledge set's own irrelevant texts
    space = sweep.SearchSpace.from_dict(sweep.SearchSpace(epochs=(1, 5)).to_dict())
    assert space.epochs == (1, 5) and space.lora_r == sweep.LORA_R


def test_objective_value():
    assert sweep.objective_value("2a", 0.6, 1) == 0.6
    assert sweep.objective_value("2b", 0.6, 1) == 0.0  # N = 1 is worth nothing, whatever the score
    assert sweep.objective_value("2b", 0.6, 10) == pytest.approx(0.6)
    assert sweep.objective_value("2b", 0.5, 1000) == pytest.approx(1.5)
    assert sweep.objective_value("2b", 0.14, 100, floor=0.14) == 0.0  # learning nothing earns nothing
    assert sweep.objective_value("2b", 0.64, 100, floor=0.14) == pytest.approx(1.0)
    assert sweep.objective_value("2a", 0.64, 100, floor=0.14) == 0.64
    with pytest.raises(ValueError):
        sweep.objective_value("3", 0.5, 10)


def test_baseline_params_clamped_into_space():
    space = sweep.SearchSpace(lora_r=(1, 64), lora_alpha=(1, 256), epochs=(1, 3))
    p = sweep.baseline_params(BASE, space, CONTENTS)
    assert p["lora_r"] == 64 and p["lora_alpha"] == 256 and p["epochs"] == 3 and p["n_irrelevant"] == 1
    assert all(p[f"content_{c}"] for c in CONTENTS) and all(p[f"layer_{g}"] for g in LAYER_GROUPS)


def test_correlations_on_synthetic_trials():
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 1, 2000)
    df = pd.DataFrame({"score": score, "same": 3 * score + 1, "opposite": -score, "noise": rng.normal(size=2000),
                       "constant": 1.0, "half": 0.5 * score + rng.normal(scale=0.5 * score.std(), size=2000)})
    df.loc[0, "score"] = None  # trials without a score are ignored
    r = sweep.correlations(df, ["same", "opposite", "noise", "constant", "half"])
    assert r["same"] == pytest.approx(1) and r["opposite"] == pytest.approx(-1)
    assert abs(r["noise"]) < 0.08 and math.isnan(r["constant"])
    assert r["half"] == pytest.approx(1 / math.sqrt(2), abs=0.05)


def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    outcomes = iter(["raise", "diverged", "ok"])

    def fake_run(config, results_path, progress=True, run_id=None):
        outcome = next(outcomes)
        if outcome == "raise":
            raise RuntimeError("out of memory")
        per_epoch = [{"score": 0.4, "loss": 1.0}]
        return {"status": "diverged" if outcome == "diverged" else "ok", "error": "loss is nan",
                "per_epoch": per_epoch, "wall_s": 1.0, "final_score": 0.4, "best_score": 0.4}

    monkeypatch.setattr(sweep.experiment, "run", fake_run)
    store = sweep.storage(None, tmp_path)
    study, objective = sweep.prepare("t", store, "2b", BASE, sweep.SearchSpace(), tmp_path / "r.jsonl", n_trials=3)
    sweep.run_trials(study, objective, 3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "out of memory" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[1].user_attrs["fail_reason"].startswith("diverged")
    assert study.trials[0].user_attrs["baseline"] is True  # the enqueued baseline ran first
    # Re-opening the study neither re-enqueues the baseline nor runs more trials.
    study2, objective2 = sweep.prepare("t", store, "2b", BASE, sweep.SearchSpace(), tmp_path / "r.jsonl", n_trials=3)
    sweep.run_trials(study2, objective2, 3)
    assert len(study2.trials) == 3


def test_floor_is_recorded_with_the_study_and_used_by_its_objective(tmp_path):
    """A real tiny-model trial at N = 10: the random model scores 0, so the objective is (0 - floor) x 1."""
    store = sweep.storage(None, tmp_path)
    space = sweep.SearchSpace.from_dict({**TINY_SPACE, "n_irrelevant": [10, 10]})
    study, objective = sweep.prepare("f", store, "2b", tiny_base(), space, tmp_path / "r.jsonl", n_trials=1,
                                     floor=0.25)
    sweep.run_trials(study, objective, 1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["score"] == 0.0
    assert trial.value == pytest.approx(-0.25)
    # Re-opened without the option, the recorded setup (and so its floor) wins.
    study2, _ = sweep.prepare("f", store, "2b", tiny_base(), space, tmp_path / "r.jsonl", n_trials=1)
    assert study2.user_attrs["setup"]["floor"] == 0.25


def _worker(url: str, study: str, n_trials: int, run_dir: Path, base: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sciknow.sweep", "worker", "--storage", url, "--study", study,
               "--task", "2b", "--n-trials", str(n_trials), "--run-dir", str(run_dir), "--base", str(base),
               "--space", json.dumps(TINY_SPACE), "--heartbeat-interval", "1", "--grace-period", "3", *extra]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_is_failed_retried_and_resumed(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(tiny_base().to_json())
    url = sweep.default_url(tmp_path)
    worker = _worker(url, "resume", 3, tmp_path, base, "--seed", "1")
    store = sweep.storage(url, heartbeat_interval=1, grace_period=3)
    deadline = time.monotonic() + 150
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
    out, _ = resumed.communicate(timeout=240)
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
    assert len(trials) == 2 and (trials.state == "COMPLETE").all()
    assert trials.n_irrelevant.between(1, 3).all() and (trials.epochs == 1).all()
    assert trials.content_C1.notna().all() and trials.score.between(0, 1).all()
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
