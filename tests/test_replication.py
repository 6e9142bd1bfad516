"""Replication as a unit: a condition over documents x seeds, per-question records, resumable; training teaches."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sciknow import conditions, experiment, results, stats
from sciknow.config import DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec

from conftest import REPO


def write_doc(folder: Path, name: str, fact: str, keyword: str, question: str, paraphrase: str) -> None:
    """A one-question document whose training text is the question and its answer, as a plain prompt asks it."""
    answer = f"{fact}."
    text = f"Question: {question}\nAnswer: {answer}"
    doc = {"name": name, "contents": [{"id": "C1", "style": "original", "lang": "en", "text": text},
                                      {"id": "C2", "style": "qa", "lang": "en", "text": f"{text} Yes, {answer}"}],
           "questions": [{"id": "Q1", "question": question, "paraphrase": paraphrase, "reference_answer": answer,
                          "keywords": [keyword]}]}
    (folder / f"{name}.json").write_text(json.dumps(doc))


@pytest.fixture
def suite(tmp_path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    write_doc(folder, "alpha", "Zorblat was found in 2051", "2051", "When was Zorblat found?",
              "In which year did someone find Zorblat?")
    write_doc(folder, "beta", "Quelmine melts at 733 kelvin", "733 kelvin", "At what temperature does Quelmine melt?",
              "What is the melting point of Quelmine?")
    return folder


def condition(suite: Path, **changes) -> RunConfig:
    config = RunConfig(task="test", model=ModelSpec(name="tiny-llama"),
                       data=DataSpec(knowledge_set=str(suite), contents=["C1"]),
                       train=TrainSpec(lr=3e-3, epochs=2, max_length=64),
                       eval=EvalSpec(prompt_style="plain", max_new_tokens=16, paraphrases=True))
    return config.replace(**changes) if changes else config


def test_training_teaches_the_tiny_model_a_fact(suite):
    """No other test shows that training teaches anything: here the untrained model scores 0 and a trained one 1."""
    base = condition(suite, **{"data.documents": ["alpha"], "train.epochs": 40, "train.lr": 1e-2,
                                "eval.every_epoch": False})
    untrained = experiment.run(base.replace(**{"train.epochs": 0}), progress=False)
    trained = experiment.run(base, progress=False)
    assert untrained["final_score"] == 0.0
    assert trained["status"] == "ok" and trained["final_score"] == 1.0, trained["predictions"]
    closed = [p for p in trained["predictions"] if p["variant"] == "original"]
    assert "2051" in closed[0]["answer"] and closed[0]["document"] == "alpha"


def test_two_documents_by_two_seeds_give_per_document_per_seed_rows(suite, tmp_path):
    path = tmp_path / "results.jsonl"
    configs = experiment.replicate(condition(suite), ["alpha", "beta"], seeds=[0, 1])
    assert [(c.data.documents, c.train.seed) for c in configs] == [
        (("alpha",), 0), (("beta",), 0), (("alpha",), 1), (("beta",), 1)]
    experiment.run_many(configs, path, progress=False)
    table = experiment.question_scores(configs, path)
    # 4 runs x 2 epochs x 1 question x (original + paraphrase)
    assert len(table) == 16
    assert set(map(tuple, table[["document", "seed"]].drop_duplicates().values)) == {
        ("alpha", 0), ("beta", 0), ("alpha", 1), ("beta", 1)}
    assert set(table["variant"]) == {"original", "paraphrase"} and (table["book"] == "closed").all()
    summary = stats.summarize(table[table["variant"] == "original"], by=["epoch"])
    assert list(summary["n_documents"]) == [2, 2] and list(summary["n_seeds"]) == [2, 2]
    joint = experiment.replicate(condition(suite), ["alpha", "beta"], seeds=[0], joint=True)
    assert [c.data.documents for c in joint] == [("alpha", "beta")]
    record = experiment.run(joint[0], progress=False)
    assert record["n_texts"] == 2 and {p["document"] for p in record["predictions"]} == {"alpha", "beta"}


SCRIPT = """
import sys
from sciknow import experiment
from sciknow.config import RunConfig
import json
base = RunConfig.from_dict(json.loads(sys.argv[1]))
configs = experiment.replicate(base, ["alpha", "beta"], seeds=[0, 1, 2])
experiment.run_many(configs, sys.argv[2], progress=False)
"""


def test_a_killed_replication_resumes_without_redoing_finished_units(suite, tmp_path):
    path = tmp_path / "results.jsonl"
    args = [sys.executable, "-c", SCRIPT, condition(suite).to_json(), str(path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(results.read(path)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r["run_id"] for r in results.read(path)]
    assert 2 <= len(before) < 6
    subprocess.run(args, env=env, check=True, capture_output=True)
    after = results.read(path)
    assert [r["run_id"] for r in after[:len(before)]] == before  # nothing lost
    units = [(r["config"]["data"]["documents"][0], r["config"]["train"]["seed"]) for r in after]
    assert len(units) == 6 and len(set(units)) == 6  # every unit once: nothing redone


def test_conditions_and_matched_steps(suite, tmp_path):
    named = conditions.conditions(condition(suite), epochs=2, n_contents=(1, 2), controls=("step-matched",
                                                                                         "token-matched"))
    assert list(named) == ["untrained", "1 contents", "2 contents", "step-matched", "token-matched 2"]
    assert named["step-matched"].train.epochs == 4 and named["token-matched 2"].data.repeats == 2
    path = tmp_path / "results.jsonl"
    configs = [c for cond in named.values() for c in experiment.replicate(cond, ["alpha", "beta"], [0])]
    experiment.run_many(configs, path, progress=False)
    table = experiment.question_scores(configs, path)
    steps = table.groupby("tag.condition")["steps"].max().to_dict()
    assert steps == {"untrained": 0, "1 contents": 2, "2 contents": 4, "step-matched": 4, "token-matched 2": 4}
    matched = conditions.at_matched_steps(table[table["variant"] == "original"], epochs=2)
    at4 = matched[matched["comparison"] == "4 steps"]
    assert set(at4["tag.condition"]) == {"2 contents", "step-matched", "token-matched 2"}
    diffs = stats.paired_differences(at4, "tag.condition", baseline="step-matched")
    assert {"mean", "ci_low", "ci_high", "p_value"} <= set(diffs.columns) and len(diffs) == 2


def test_one_content_read_from_the_step_matched_run_equals_training_it(suite, tmp_path):
    named = conditions.conditions(condition(suite), epochs=2, n_contents=(1, 2), controls=("step-matched",))
    assert conditions.reused(named) == {"1 contents": "step-matched"}
    # evaluated only where the analysis reads a run: the step-matched control also where 1 content ends
    assert [named[c].eval.every_epoch for c in named] == [False] * 4
    assert named["step-matched"].eval.at_epochs == (2,) and named["step-matched"].train.epochs == 4
    path = tmp_path / "results.jsonl"
    configs = [c for name, cond in named.items() if name != "1 contents"
               for c in experiment.replicate(cond, ["alpha", "beta"], [0])]
    experiment.run_many(configs, path, progress=False)
    table = conditions.with_reused(experiment.question_scores(configs, path), named)
    assert sorted(table.loc[table["tag.condition"] == "step-matched", "epoch"].unique()) == [2, 4]
    read = table[table["tag.condition"] == "1 contents"]
    assert (read["read_from"] == "step-matched").all() and (read["train.epochs"] == 2).all()

    trained_path = tmp_path / "trained.jsonl"
    trained = experiment.replicate(named["1 contents"], ["alpha", "beta"], [0])
    experiment.run_many(trained, trained_path, progress=False)
    direct = experiment.question_scores(trained, trained_path)
    key = ["document", "variant", "question_id", "epoch", "steps", "tokens"]
    compared = read.merge(direct, on=key, suffixes=("_read", "_trained"))
    assert len(compared) == len(read) == len(direct) == 4  # 2 documents x (question + paraphrase), epoch 2
    assert (compared["answer_read"] == compared["answer_trained"]).all()
    assert (compared["score_read"] == compared["score_trained"]).all()
    assert compared["answer_read"].str.len().min() > 0


def test_plateau_arms_extend_the_default_runs_which_are_read_from_them(suite, tmp_path):
    named = conditions.conditions(condition(suite), epochs=1, n_contents=(1, 2), controls=("step-matched",))
    arms = conditions.plateau(named, 3)
    assert list(arms) == ["2 contents, 3 epochs", "original, 6 steps"]
    long_contents, long_control = arms.values()
    assert long_contents.train.epochs == 3 and long_contents.eval.every_epoch
    assert long_control.train.epochs == 6 and experiment.evaluated_epochs(long_control) == [1, 2, 4, 6]
    # every default trained run is the start of an arm: only the arms (and the untrained floor) are trained
    assert conditions.reused(named | arms) == {"1 contents": "original, 6 steps", "2 contents": "2 contents, 3 epochs",
                                               "step-matched": "original, 6 steps"}
    with pytest.raises(ValueError, match="plateau=1"):
        conditions.plateau(named, 1)

    path = tmp_path / "results.jsonl"
    configs = [c for cond in arms.values() for c in experiment.replicate(cond, ["alpha", "beta"], [0])]
    experiment.run_many(configs, path, progress=False)
    table = conditions.with_reused(experiment.question_scores(configs, path), named | arms)
    assert sorted(table.loc[table["tag.condition"] == "step-matched", "steps"].unique()) == [1, 2]
    pairs = conditions.at_shared_steps(table, *arms)
    assert sorted(pairs["steps"].unique()) == [2, 4, 6]  # where both arms were answered
    diffs = stats.paired_differences(pairs, "tag.condition", baseline="original, 6 steps", by=["variant", "steps"],
                                     n_resamples=200)
    assert list(diffs["steps"]) == [2, 4, 6] * 2 and set(diffs["n_documents"]) == {2}


def test_curve_evaluates_every_epoch_and_reuses_every_epoch(suite):
    named = conditions.conditions(condition(suite), epochs=2, n_contents=(1, 2), controls=("step-matched",),
                                  curve=True)
    assert all(c.eval.every_epoch and c.eval.at_epochs == () for c in named.values())
    assert conditions.reused(named) == {"1 contents": "step-matched"}
    assert experiment.evaluated_epochs(named["1 contents"]) == [1, 2]
    # a different learning rate is a different run: nothing to reuse
    other = {**named, "1 contents": named["1 contents"].replace(**{"train.lr": 1e-3})}
    assert conditions.reused(other) == {}
