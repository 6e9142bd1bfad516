"""The one path (`experiment.run`) on the random tiny model: per-epoch records, reset, divergence, resume."""
import json
import math

import torch

from sciknow import experiment, models, results
from sciknow.config import RunConfig

from conftest import tiny_config


def test_two_epochs_on_two_texts_write_two_epoch_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    record = experiment.run(tiny_config(), path, progress=False)
    assert record["status"] == "ok" and record["n_texts"] == 2
    table = results.epochs_table(path)
    assert list(table["epoch"]) == [1, 2]
    assert list(table["steps"]) == [2, 4]  # batch size 1: one step per text
    assert table["loss"].notna().all() and table["score"].between(0, 1).all()
    assert table.loc[0, "train.lr"] == 1e-3 and table.loc[0, "data.contents"] == "C1,C2"
    # The wall time split: loading, answering (two passes), and training the rest.
    assert record["load_s"] >= 0 and record["answer_s"] > 0 and record["load_s"] + record["answer_s"] < record["wall_s"]
    assert table.loc[0, "answer_s"] == record["answer_s"]
    predictions = results.predictions_table(path)
    assert len(predictions) == 2 * 5 and {"prompt", "answer", "score"} <= set(predictions.columns)
    # The record carries its full config: it re-creates the same run.
    stored = results.read(path)[0]
    assert RunConfig.from_dict(stored["config"]) == tiny_config()
    assert set(stored["versions"]) >= {"torch", "transformers", "peft"}


def test_runs_are_reproducible_and_leave_the_base_model_untouched(tmp_path):
    loaded = models.get(tiny_config().model)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    first = experiment.run(tiny_config(), progress=False)
    lora = experiment.run(tiny_config(**{"train.method": "lora", "train.lora_r": 4, "train.lora_alpha": 8}),
                          progress=False)
    second = experiment.run(tiny_config(), progress=False)
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in name for name, _ in loaded.model.named_modules())
    assert [e["loss"] for e in first["per_epoch"]] == [e["loss"] for e in second["per_epoch"]]
    assert lora["status"] == "ok" and lora["per_epoch"][0]["loss"] != first["per_epoch"][0]["loss"]


def test_untrained_baseline_is_epoch_zero():
    record = experiment.run(tiny_config(**{"train.epochs": 0}), progress=False)
    assert [e["epoch"] for e in record["per_epoch"]] == [0]
    assert record["per_epoch"][0]["loss"] is None  # NaN is stored as null: the file stays valid JSON


def test_divergence_is_recorded_with_last_good_epoch(tmp_path):
    path = tmp_path / "results.jsonl"
    # lr=1e12 makes the first step's update huge: epoch 1's loss is finite, epoch 2's is NaN (the MLP products
    # overflow). Much larger (1e30) is no good: x**2 overflows inside RMSNorm, activations collapse to 0 and the
    # loss stays a finite ln(vocab).
    config = tiny_config(**{"train.lr": 1e12, "train.max_grad_norm": 1e30, "data.contents": ["C1"]})
    record = experiment.run(config, path, progress=False)
    assert record["status"] == "diverged" and "loss is" in record["error"]
    assert [e["epoch"] for e in record["per_epoch"]] == [1]
    assert math.isfinite(record["per_epoch"][0]["loss"])
    assert results.runs_table(path).loc[0, "status"] == "diverged"
    # ...and the shared model is restored for the next run.
    assert experiment.run(tiny_config(), progress=False)["status"] == "ok"


def test_failed_run_is_recorded_then_raised(tmp_path):
    path = tmp_path / "results.jsonl"
    config = tiny_config(**{"data.contents": ["C99"]})
    try:
        experiment.run(config, path, progress=False)
    except KeyError:
        pass
    else:
        raise AssertionError("an unknown content id must raise")
    (record,) = results.read(path)
    assert record["status"] == "failed" and "C99" in record["error"]


def test_run_many_resumes(tmp_path):
    path = tmp_path / "results.jsonl"
    configs = [tiny_config(**{"train.epochs": 1, "train.seed": s}) for s in (0, 1)]
    experiment.run_many(configs[:1], path, progress=False)
    done = experiment.run_many(configs, path, progress=False)
    assert len(done) == 1 and done[0]["config"]["train"]["seed"] == 1
    assert len(results.read(path)) == 2
    assert json.loads(path.read_text().splitlines()[0])["config_id"] == experiment.config_id(configs[0])


def test_run_once_reads_the_recorded_run_instead_of_running_again(tmp_path):
    path = tmp_path / "results.jsonl"
    untrained = tiny_config(**{"train.epochs": 0})
    first = experiment.run_once(untrained, path, progress=False)
    again = experiment.run_once(untrained, path, progress=False)
    assert again["run_id"] == first["run_id"] and len(results.read(path)) == 1
    other = experiment.run_once(untrained.replace(**{"train.seed": 1}), path, progress=False)
    assert other["run_id"] != first["run_id"] and len(results.read(path)) == 2


def test_open_book_and_probes_are_recorded_per_epoch_and_read_back(tmp_path):
    """Any run can be scored closed- and open-book and report what training cost (probes before and after)."""
    path = tmp_path / "results.jsonl"
    config = tiny_config(**{"eval.book": "both", "eval.retrieval_k": 2, "eval.paraphrases": False,
                            "eval.probes": ["perplexity", "locality"], "eval.n_probe_texts": 2,
                            "eval.n_probe_locality": 4, "eval.probe_every_epoch": True})
    record = experiment.run(config, path, progress=False)
    assert record["status"] == "ok", record["error"]
    assert set(record["metrics_before"]) >= {"perplexity", "locality"} and record["metrics_before"]["locality"] == 1.0
    for epoch in record["per_epoch"]:
        assert {"open_score", "recall_at_k", "perplexity", "locality"} <= set(epoch["metrics"])
        books = {p["book"] for p in epoch["predictions"]}
        assert books == {"closed", "open"}
        assert all(p["recall"] == 1.0 for p in epoch["predictions"] if p["book"] == "open")  # one document
    table = results.epochs_table(path)
    assert {"open_score", "recall_at_k", "perplexity", "locality", "before.perplexity"} <= set(table.columns)
    assert table["before.perplexity"].iloc[0] > 1.0


def test_a_config_recorded_twice_counts_once(tmp_path):
    """Two processes sharing a results file may both run one config: tables keep its last finished run."""
    path = tmp_path / "results.jsonl"
    config = tiny_config(**{"train.epochs": 0})
    first = experiment.run(config, path, progress=False)
    second = experiment.run(config, path, progress=False)
    table = experiment.epochs_for([config], path)
    assert list(table["run_id"]) == [second["run_id"]] != [first["run_id"]]
    assert experiment.run_many([config], path, progress=False) == []  # finished: nothing to do
