"""Two sweep workers sharing one study through a real PostgreSQL server.

The server comes from $SCIKNOW_TEST_POSTGRES_URL, else a throwaway cluster started by scripts/start_postgres.sh
(skipped only when the PostgreSQL server binaries are not installed).
"""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from sciknow import sweep
from sciknow.config import REPO_ROOT
from test_sweep import TRIAL_ATTRS, tiny_base, tiny_space

pytestmark = pytest.mark.postgres
SCRIPT = REPO_ROOT / "scripts" / "start_postgres.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("SCIKNOW_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL server binaries not installed and SCIKNOW_TEST_POSTGRES_URL not set")
    data_dir = tempfile.mkdtemp(prefix="sciknow-pg.", dir="/tmp")  # the postgres user must reach it
    started = subprocess.run(["bash", str(SCRIPT), data_dir, str(_free_port())], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SCRIPT), "--stop", data_dir], capture_output=True)


def test_two_workers_share_one_study(postgres_url, tmp_path):
    name = f"shared-{os.getpid()}"
    base = tmp_path / "base.json"
    base.write_text(tiny_base().to_json())
    n_trials = 5
    # Create the study once (records the setup, enqueues the baseline), then start two workers on it.
    store = sweep.storage(postgres_url, heartbeat_interval=2)
    sweep.prepare(name, store, "2b", tiny_base(), tiny_space(), tmp_path / "results.jsonl", n_trials=n_trials)
    command = [sys.executable, "-m", "sciknow.sweep", "worker", "--storage", postgres_url, "--study", name,
               "--task", "2b", "--n-trials", str(n_trials), "--run-dir", str(tmp_path), "--heartbeat-interval", "2"]
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    for w in workers:
        out, _ = w.communicate(timeout=400)
        assert w.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name=name, storage=store)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sweep.n_counted(study) == len(complete) == n_trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    params = [json.dumps(t.params, sort_keys=True) for t in complete]
    assert len(params) == len(set(params)), "two workers ran the same configuration"
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    assert len({t.user_attrs["worker"] for t in complete}) == 2, "both workers should have run trials"
    # The run's record is in results.jsonl. A worker that asked for a trial just as the other filled the study
    # marks it surplus and runs nothing (a race two workers can legitimately lose).
    assert all(set(t.user_attrs) <= TRIAL_ATTRS or (t.state == TrialState.FAIL and set(t.user_attrs) == {"surplus"})
               for t in trials)
    frame = sweep.trials_frame(study)
    assert len(frame) == len(trials) and (frame[frame.state == "COMPLETE"].status == "ok").all()
