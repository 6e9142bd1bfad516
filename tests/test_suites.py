"""Evaluation suites (suites.py): the keyword suite and the Task 4 "paper" suite behind one interface."""
from __future__ import annotations

import math

import pytest

from sciknow import experiment, models, suites
from sciknow.config import DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec
from sciknow.data import load_knowledge_set, training_texts
from sciknow.evaluate import answer_and_score
from sciknow.paper_datasets import DatasetError, load_tests
from sciknow.run_kinds import KnowledgeSetRun, run_kind
from sciknow.studies import PARTIAL_GROUPS
from test_paper_datasets import FILES, build_small

TINY = ModelSpec(name="tiny-llama")
needs_plos = pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if len(FILES) < 14:
        pytest.skip("shared PLOS corpus not available")
    out = tmp_path_factory.mktemp("suite_dataset")
    build_small(out)
    return out


@pytest.fixture(scope="module")
def tiny():
    return models.get(TINY)


def paper_config(dataset, **eval_changes) -> RunConfig:
    return RunConfig(task="4", model=TINY, data=DataSpec(dataset=str(dataset), genre_counts={"abstract-target": 1}),
                     train=TrainSpec(method="lora", epochs=1, max_length=32, lora_r=4, lora_alpha=8,
                                     layer_groups=list(PARTIAL_GROUPS)),
                     eval=EvalSpec(suite="paper", n_qa=2, n_mc=2, n_mmlu=3, max_new_tokens=4, **eval_changes))


def test_score_paper_answers_hand_computed():
    tests = {
        "qa": [{"id": "q0", "question": "?", "answer": "the cat sat"},
               {"id": "q1", "question": "?", "answer": "dogs bark loudly"}],
        "mc": [{"id": "m0", "question": "?", "gold": 3}, {"id": "m1", "question": "?", "gold": 2},
               {"id": "m2", "question": "?", "gold": 1}],
        "mmlu": [{"id": "u0", "question": "?", "gold": 4}],
    }
    answers = {"qa": ["the cat sat on the mat", "nothing here"],
               "mc": ["The answer is 3.", "no idea", "2, or maybe 1"], "mmlu": ["4. 393 Hz"]}
    metrics, predictions = suites.score_paper_answers(tests, answers)
    # ROUGE-2: 2 of 5 predicted bigrams match, both reference bigrams found -> F = 2PR/(P+R) = 4/7; second 0
    assert metrics["rouge2"] == pytest.approx((4 / 7 + 0) / 2)
    assert metrics["mc"] == pytest.approx(1 / 3)  # no digit = wrong; first digit counts
    assert metrics["mmlu"] == 1.0
    assert (metrics["n_qa"], metrics["n_mc"], metrics["n_mmlu"]) == (2, 3, 1)
    assert [p["choice"] for p in predictions if p["set"] == "mc"] == [3, None, 2]
    empty, _ = suites.score_paper_answers({"qa": [], "mc": [], "mmlu": []}, {})
    assert math.isnan(empty["rouge2"])
    with pytest.raises(ValueError, match="1 answers for 2 qa items"):
        suites.score_paper_answers({"qa": tests["qa"]}, {"qa": ["x"]})


def test_keyword_suite_is_answer_and_score(tiny):
    config = RunConfig(model=TINY, eval=EvalSpec(max_new_tokens=4))
    kset = load_knowledge_set(config.data.knowledge_set)
    suite = run_kind(config).suite
    assert isinstance(suite, suites.KeywordSuite)
    result = suite.evaluate(tiny.model, tiny.tokenizer)
    score, predictions = answer_and_score(tiny.model, tiny.tokenizer, kset.questions, 4)
    tagged = [{"document": kset.name, "variant": "original", "book": "closed", **p} for p in predictions]
    assert (result.score, result.predictions, result.metrics) == (score, tagged, None)
    assert len(result.predictions) == len(kset.questions)
    with pytest.raises(ValueError, match="needs at least one question"):
        suites.KeywordSuite([], config.eval)


def test_a_kind_of_run_owns_its_texts_and_its_suite_and_is_asked_by_its_own_suite():
    config = RunConfig(model=TINY, data=DataSpec(contents=["C2", "C1"], repeats=2))
    kind = run_kind(config)
    assert isinstance(kind, KnowledgeSetRun) and isinstance(kind.suite, suites.KeywordSuite)
    assert kind.training_texts() == training_texts(config.data) and len(kind.training_texts()) == 4
    with pytest.raises(ValueError, match=r"eval.suite='keywords' \(a paper dataset run \(data.dataset='d'\) is "
                                         r"asked by the 'paper' suite\)"):
        RunConfig(data=DataSpec(dataset="d", genre_counts={"abstract-target": 1}))


class FakeJudge:
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def complete(self, prompts, max_new_tokens):
        self.prompts += prompts
        return ["Score: 7" if i % 2 == 0 else "no idea" for i in range(len(prompts))]


@needs_plos
def test_paper_suite_subsets_metrics_and_judge(dataset, tiny):
    config = paper_config(dataset)
    suite = run_kind(config).suite
    assert isinstance(suite, suites.PaperSuite) and suite.judge is None  # no judge configured
    tests = load_tests(dataset)
    assert suite.tests["qa"] == tests["qa"][:2] and suite.tests["mmlu"] == tests["mmlu"][:3]
    result = suite.evaluate(tiny.model, tiny.tokenizer)
    assert result.score == result.metrics["rouge2"] and 0 <= result.score <= 1
    assert (result.metrics["n_qa"], result.metrics["n_mc"], result.metrics["n_mmlu"]) == (2, 2, 3)
    assert [p["set"] for p in result.predictions] == ["qa"] * 2 + ["mc"] * 2 + ["mmlu"] * 3
    assert "judge" not in result.metrics

    judge = FakeJudge()  # the optional judge through the Backend interface: 0-10 -> /10, unparseable excluded
    judged = suites.PaperSuite(dataset, config.eval, judge).evaluate(tiny.model, tiny.tokenizer)
    assert len(judge.prompts) == 2 and tests["qa"][0]["answer"] in judge.prompts[0]
    assert judged.metrics["judge"] == pytest.approx(0.7) and judged.metrics["judge_unparseable"] == 1
    assert [p.get("judge") for p in judged.predictions if p["set"] == "qa"] == [0.7, None]
    assert judged.score == result.score  # greedy answers: the same model answers the same


@needs_plos
def test_paper_suite_judge_is_made_once_from_the_config(dataset):
    config = paper_config(dataset, judge={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "NONE"})
    suite = run_kind(config).suite
    assert suite.judge.base_url == "http://127.0.0.1:9/v1" and suite.judge.model == "m"
    assert suites.make_judge(None) is None


def test_paper_suite_without_dataset_says_to_build_one(tmp_path):
    config = RunConfig(task="4", data=DataSpec(dataset=str(tmp_path), genre_counts={"abstract-target": 1}),
                       train=TrainSpec(method="lora"), eval=EvalSpec(suite="paper"))
    with pytest.raises(DatasetError, match="run notebook 06 first"):
        run_kind(config)


@needs_plos
def test_experiment_run_with_the_paper_suite(dataset, tmp_path):
    """The paper suite through the one path (experiment.run): untrained and trained runs record its metrics."""
    base = paper_config(dataset).replace(**{"data.genre_counts": {"abstract-target": 1, "instructions": 2}})
    results_path = tmp_path / "results.jsonl"
    untrained = experiment.run(base.replace(**{"train.epochs": 0}), results_path, progress=False)
    trained = experiment.run(base, results_path, progress=False)
    for record in (untrained, trained):
        assert record["status"] == "ok"
        metrics = record["per_epoch"][-1]["metrics"]
        assert set(metrics) >= {"rouge2", "mc", "mmlu", "n_qa", "n_mc", "n_mmlu"}
        assert (metrics["n_qa"], metrics["n_mc"], metrics["n_mmlu"]) == (2, 2, 3)
        assert record["per_epoch"][-1]["score"] == metrics["rouge2"] == record["final_metrics"]["rouge2"]
        assert {p["set"] for p in record["predictions"]} == {"qa", "mc", "mmlu"}
    assert trained["n_texts"] == 3 and untrained["per_epoch"][0]["epoch"] == 0
