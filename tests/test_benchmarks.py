"""The benchmark suite runs end to end on the tiny model and its correctness checks pass: batched answers equal
the per-question pipeline's, and sciknow's training loss curve equals the original recipe's (one HF Trainer,
`train()` per epoch) step for step. A recipe or evaluator change that breaks either makes the run exit 1."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

from conftest import REPO


def test_quick_benchmark_on_tiny_model(tmp_path, shared_dir):
    env = dict(os.environ, SCIKNOW_BENCH_RESULTS=str(tmp_path), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--model", "tiny-llama",
                          "--only", "eval,train,sweep"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    checked = {r["metric"]: r["met"] for r in rows if r["met"] in ("yes", "NO")}
    assert checked and set(checked.values()) == {"yes"}, checked
    losses = {r["metric"]: float(r["sciknow"]) for r in rows if "epoch mean loss" in r["metric"]}
    assert set(losses) == {"lora: max |Δ epoch mean loss|", "full: max |Δ epoch mean loss|"}
    assert max(losses.values()) <= 1e-3
    assert (tmp_path / "bench.md").read_text().count("| eval |") >= 4
