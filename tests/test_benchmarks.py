"""The benchmark suite runs end to end on the tiny model and its correctness checks pass: batched answers equal
the per-question pipeline's, and sciknow's training loss curve equals the original recipe's (one HF Trainer,
`train()` per epoch) step for step. A recipe or evaluator change that breaks either makes the run exit 1.
The benchmarks reach sciknow through its public names only."""
from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys

import pytest
from conftest import REPO

from benchmarks.common import Report, parse_args


def test_quick_benchmark_on_tiny_model(tmp_path, shared_dir):
    env = dict(os.environ, SCIKNOW_BENCH_RESULTS=str(tmp_path), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--model", "tiny-llama",
                          "--only", "eval,train,levers,sweep"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    checked = {r["metric"]: r["met"] for r in rows if r["met"] in ("yes", "NO")}
    assert checked and set(checked.values()) == {"yes"}, checked
    losses = {r["metric"]: float(r["sciknow"]) for r in rows if "epoch mean loss" in r["metric"]}
    assert set(losses) == {"lora: max |Δ epoch mean loss|", "full: max |Δ epoch mean loss|"}
    assert max(losses.values()) <= 1e-3
    assert (tmp_path / "bench.md").read_text().count("| eval |") >= 4
    assert {r["section"] for r in rows} >= {"eval", "train", "sweep"}


def test_suite_section_splits_units_and_bounds_the_answering_pass(tmp_path):
    env = dict(os.environ, SCIKNOW_BENCH_RESULTS=str(tmp_path), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--model", "tiny-llama",
                          "--only", "suite"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {r["metric"]: r for r in csv.DictReader(open(tmp_path / "bench.csv")) if r["section"] == "suite"}
    for kernel in ("packed weights (default)", "packed, sibling products apart", "torch's default kernel"):
        bound = rows[f"answering pass, {kernel}: time vs its bound"]
        assert 0 < float(bound["original"]) < float(bound["sciknow"])  # the bound is below the measured time
        assert float(rows[f"answering tokens/s, {kernel}, vs bound"]["sciknow"]) > 0
    for kernel in ("oneDNN packed, siblings as one (default)", "oneDNN packed, sibling products apart",
                   "torch's default kernel"):
        products = rows[f"decoding step's products, {kernel}"]
        assert 0 < float(products["original"]) < float(products["sciknow"])  # slower than the peak
    for n in (1, 10, 40, 80):
        output = rows[f"output layer at {n} row(s), packed: GFLOP/s vs the matmul peak"]
        assert float(output["sciknow"]) > 0 and float(output["original"]) > 0
    units = ["untrained", "1 contents", "3 contents", "5 contents", "step-matched", "translations"]
    for unit in units:
        wall, load, train, answer = (float(rows[f"unit {unit}: {part}"]["sciknow"])
                                     for part in ("wall time", "loading", "training", "answering"))
        assert answer > 0 and load >= 0 and abs(load + train + answer - wall) <= 0.001 * wall + 0.02, unit
    assert float(rows["unit untrained: training"]["sciknow"]) < float(rows["unit step-matched: training"]["sciknow"])
    cores = len(os.sched_getaffinity(0))
    layouts = {f"workers: 1 units, {w} x {cores // w} thread(s), wall time" for w in {1, cores}}
    assert layouts <= set(rows) and all(float(rows[m]["sciknow"]) > 0 for m in layouts)


def test_the_answering_bound_takes_each_step_as_the_slower_of_streaming_and_computing_its_live_rows():
    from benchmarks.suite import answering_bound
    from sciknow import models
    from sciknow.config import ModelSpec

    tiny = models.load(ModelSpec(name=models.TINY_MODEL))
    model = tiny.model
    weights = sum(p.numel() for p in model.parameters())  # the output layer is the embedding (tied)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    prompts, lengths = [[1] * 5, [1] * 7, [1] * 6], [4, 2, 1]  # decoding steps 1-3 have 2, 1 and 1 rows
    stream, steps, prefill = answering_bound(tiny, prompts, lengths, peak=1e9, bandwidth=1e18)
    assert stream == 3 * 4 * weights / 1e18
    assert steps == pytest.approx(2 * weights * (2 + 1 + 1) / 1e9)  # compute-bound: every weight is a product
    embedding = model.get_input_embeddings().weight.numel()
    assert prefill == pytest.approx((2 * (weights - embedding) * 18 + 2 * embedding * 3) / 1e9)
    stream, steps, _ = answering_bound(tiny, prompts, lengths, peak=1e18, bandwidth=1e9)
    assert steps == pytest.approx(stream) and stream == pytest.approx(3 * 4 * weights / 1e9)  # streaming-bound


def sciknow_private_uses(source: str) -> list[str]:
    """`_private` names a module takes from sciknow: imported by name, or read as an attribute of something
    imported from sciknow (`models._current`)."""
    tree = ast.parse(source)
    from_sciknow, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sciknow":
            for alias in node.names:
                from_sciknow.add(alias.asname or alias.name)
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            from_sciknow |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("sciknow")}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and isinstance(node.value, ast.Name)
                and node.value.id in from_sciknow):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_private_name_finder_finds_them():
    assert sciknow_private_uses("from sciknow import models\nmodels._current = None\n") == ["models._current"]
    assert sciknow_private_uses("from sciknow.models import _package_dir\n") == ["sciknow.models._package_dir"]
    assert sciknow_private_uses("import sciknow.models\nsciknow._x\n") == ["sciknow._x"]
    assert sciknow_private_uses("from transformers import Trainer\nTrainer._get_train_sampler\n") == []


def test_benchmarks_use_only_public_sciknow_names():
    modules = sorted((REPO / "benchmarks").glob("*.py"))
    assert len(modules) >= 8
    found = {p.name: uses for p in modules if (uses := sciknow_private_uses(p.read_text()))}
    assert not found, found


def test_presets_fill_only_the_sizes_not_given():
    args = parse_args(["--quick", "--max-new-tokens", "7", "--mmlu-repeats", "2"])
    assert (args.max_new_tokens, args.mmlu_repeats, args.n_mmlu, args.train_texts) == (7, 2, 16, 4)
    assert parse_args(["--standard"]).n_mmlu == 50 and parse_args([]).train_texts == 42


def test_unknown_section_is_refused_by_name():
    from benchmarks.run import main

    with pytest.raises(SystemExit, match="bogus"):
        main(["--only", "eval,bogus"])


def test_a_failed_check_reaches_the_report(tmp_path):
    report = Report()
    assert report.check(True, "fine") == "yes" and report.failures == []
    report.row("eval", "x: identical answers", 0.5, None, "fraction", met=report.check(False, "eval x: only 50%"))
    report.write(parse_args(["--quick"]), 0.0, tmp_path)
    assert report.failures == ["eval x: only 50%"]
    assert "## FAILED checks\n\n- eval x: only 50%" in (tmp_path / "bench.md").read_text()
    assert list(csv.DictReader(open(tmp_path / "bench.csv")))[0]["met"] == "NO"
