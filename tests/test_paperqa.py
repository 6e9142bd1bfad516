"""Task 4 datasets (paperqa.build_datasets) and the "paper" evaluation suite."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from sciknow import experiment, paperqa, qa
from sciknow.config import LATER_DEFAULTS, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec
from sciknow.generate import CallableTranslator

PLOS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "plos-starter"
FILES = sorted(PLOS.glob("*.xml"))[:14]
SIZES = {"target": 2, "irrelevant-1": 3, "irrelevant-2": 2}
MAX_WORDS = 400

pytestmark = pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")


class FakeQABackend:
    """Well-formed Q&A with 5 distinct pairs per passage, one malformed generation every 4th prompt."""

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, prompts, max_new_tokens):
        out = []
        for prompt in prompts:
            self.calls += 1
            words = prompt.split("Passage:")[1].split()
            if self.calls % 4 == 0:
                out.append("I cannot do that.")
                continue
            subject = ["this study"] + [f"passage {self.calls}"] * 5  # Q1 points at its source passage
            out.append("\n--\n".join(
                f"Q{i}: What does {subject[i - 1]} say about {words[i]} ({self.calls}.{i})?\n"
                f"A{i}: It says {words[i]} {words[i + 1]} {words[i + 2]} in case {self.calls}.{i}."
                for i in range(1, 6)))
        return out

    def __repr__(self) -> str:
        return "FakeQABackend()"


def fake_translate(texts, lang):
    return [f"[{lang}] {t}" for t in texts]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("paperqa")
    backend = FakeQABackend()
    result = paperqa.build_datasets(FILES, out, sizes=SIZES, seed=3, backend=backend,
                                    translator=CallableTranslator(fake_translate), languages=("es", "ca", "it"),
                                    max_words=MAX_WORDS, qa_passage_words=150, max_qa_passages=8,
                                    mmlu_test_size=20, backend_name="fake-backend", progress=False)
    return out, result.manifest, backend


def test_groups_are_disjoint_and_sized(built):
    out, manifest, _ = built
    by_group = {}
    for p in manifest["papers"]:
        by_group.setdefault(p["group"], []).append(p["id"])
    assert {g: len(ids) for g, ids in by_group.items()} == SIZES
    all_ids = [i for ids in by_group.values() for i in ids]
    assert len(all_ids) == len(set(all_ids))
    # each genre only holds texts of its own group's papers
    for genre, group in [("abstract-target", "target"), ("introduction-irrelevant-1", "irrelevant-1"),
                         ("introduction-irrelevant-2", "irrelevant-2"), ("conclusion-target", "target")]:
        assert {r["paper_id"] for r in paperqa.load_genre(out, genre)} <= set(by_group[group])
    assert {r["paper_id"] for r in paperqa.load_genre(out, "introduction-target")} == set(by_group["target"])


def test_chunks_respect_word_limit(built):
    out, manifest, _ = built
    for genre in ("abstract-target", "introduction-target", "conclusion-target", "introduction-irrelevant-1",
                  "introduction-irrelevant-2"):
        rows = paperqa.load_genre(out, genre)
        assert all(len(r["text"].split()) <= MAX_WORDS for r in rows)
    assert manifest["max_words"] == MAX_WORDS


def test_translations_cover_target_and_irrelevant1(built):
    out, manifest, _ = built
    for group in ("target", "irrelevant-1"):
        intro = paperqa.load_genre(out, f"introduction-{group}")
        multi = paperqa.load_genre(out, f"introduction-multi-{group}")
        assert len(multi) == 3 * len(intro)
        assert {r["lang"] for r in multi} == {"es", "ca", "it"}
    assert manifest["translator"] == "CallableTranslator" and manifest["languages"] == ["es", "ca", "it"]


def test_no_test_item_in_training_data(built):
    out, manifest, _ = built
    tests = paperqa.load_tests(out)
    assert tests["qa"] and tests["mc"] and len(tests["mmlu"]) == 20
    genres = {g: paperqa.load_genre(out, g) for g in paperqa.GENRES}
    paperqa.check_no_leak(genres, tests)
    train = "\n".join(r["text"] for g in paperqa.GENRES for r in genres[g])
    instr = "\n".join(r["text"] for g in paperqa.INSTRUCTION_GENRES for r in genres[g])
    for t in tests["qa"]:
        assert t["question"] not in train and t["answer"] not in instr
    for name in ("mc", "mmlu"):
        for t in tests[name]:
            assert t["question"] not in train
    # questions that point at their passage ("this study ...") are trained on, with the passage, never tested
    assert not any(qa.needs_context(t["question"]) for t in tests["qa"])
    with_context = [r for r in genres["instructions"] if r.get("kind") == "qa" and "this study" in r["instruction"]]
    assert with_context and all(r["instruction"].index("this study") > 100 for r in with_context)
    # held-out MMLU items are not among the MMLU instructions; training items repeating a test stem are dropped
    m = manifest["mmlu"]
    assert m["test"] + m["train"] + m["dropped_same_question_as_test"] == m["items"] == 202
    # and the leak check does catch a leak
    leaked = dict(genres, instructions=genres["instructions"] + [{"text": "x " + tests["qa"][0]["question"]}])
    with pytest.raises(paperqa.LeakError):
        paperqa.check_no_leak(leaked, tests)


def test_manifest_contents(built):
    out, manifest, backend = built
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["seed"] == 3 and manifest["sizes"] == SIZES
    assert manifest["generation_backend"] == "fake-backend"
    assert all(p["doi"] and p["license"] for p in manifest["papers"])
    counts = manifest["counts"]["genres"]
    for genre in paperqa.GENRES:
        assert counts[genre] == len(paperqa.load_genre(out, genre))
    qa_stats = manifest["qa"]
    assert qa_stats["passages"] == 8 and qa_stats["generations"] == 8 == backend.calls
    assert qa_stats["malformed_generations"] == 2 and qa_stats["pairs"] == 30
    assert qa_stats["train_pairs"] + qa_stats["test_pairs"] == 30 - qa_stats["duplicate_questions"]
    assert counts["mmlu-instructions"] == manifest["mmlu"]["train"] > 170
    text = (out / "manifest.json").read_text().lower()
    assert "api_key" not in text and "bearer" not in text


def test_training_texts_selection(built):
    out, _, _ = built
    counts = {"abstract-target": 1, "instructions": 3, "mmlu-instructions": 2}
    texts = paperqa.training_texts(out, counts, seed=0)
    assert len(texts) == 6 and texts == paperqa.training_texts(out, counts, seed=0)
    assert len(paperqa.training_texts(out, {"introduction-target": -1})) == len(
        paperqa.load_genre(out, "introduction-target"))
    with pytest.raises(ValueError, match="unknown genre"):
        paperqa.training_texts(out, {"novels": 1})
    with pytest.raises(ValueError, match="requested"):
        paperqa.training_texts(out, {"abstract-target": 99})


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
    metrics, predictions = paperqa.score_paper_answers(tests, answers)
    # ROUGE-2: 2 of 5 predicted bigrams match, both reference bigrams found -> F = 2PR/(P+R) = 4/7; second 0
    assert metrics["rouge2"] == pytest.approx((4 / 7 + 0) / 2)
    assert metrics["mc"] == pytest.approx(1 / 3)  # no digit = wrong; first digit counts
    assert metrics["mmlu"] == 1.0
    assert (metrics["n_qa"], metrics["n_mc"], metrics["n_mmlu"]) == (2, 3, 1)
    assert [p["choice"] for p in predictions if p["set"] == "mc"] == [3, None, 2]
    empty, _ = paperqa.score_paper_answers({"qa": [], "mc": [], "mmlu": []}, {})
    assert math.isnan(empty["rouge2"])


def test_objective_value():
    assert paperqa.objective_value(0.5, 0.2, 1) == 0.0  # log10(1) = 0
    assert paperqa.objective_value(0.5, 0.2, 0) == 0.0  # clipped to 1
    assert paperqa.objective_value(0.3, 0.1, 100) == pytest.approx(0.4)
    assert paperqa.objective_value(0.1, 0.3, 10) == pytest.approx(-0.2)


def test_config_ids_unchanged_for_older_configs():
    config = RunConfig(train=TrainSpec(lr=3e-4), data=DataSpec(n_irrelevant=4))
    d = config.to_dict()
    for section, names in LATER_DEFAULTS.items():
        for name in names:
            del d[section][name]
    d["eval"]["batch_size"] = 8  # as older results recorded it; the batch changes speed, not answers
    assert experiment.config_id(config) == hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    # The evaluation batch never changes a run's id: re-running with another batch resumes, it does not redo.
    assert experiment.config_id(config.replace(**{"eval.batch_size": 3})) == experiment.config_id(config)
    with pytest.raises(ValueError, match="needs data.dataset"):
        RunConfig(eval=EvalSpec(suite="paper"))
    with pytest.raises(ValueError, match="eval.suite"):
        RunConfig(eval=EvalSpec(suite="vibes"))


class FakeJudge:
    def complete(self, prompts, max_new_tokens):
        return ["Score: 7" if i % 2 == 0 else "no idea" for i in range(len(prompts))]


def test_experiment_run_paper_suite_tiny_model(built, tmp_path):
    out, _, _ = built
    base = RunConfig(task="4", model=ModelSpec(name="tiny-llama"),
                     data=DataSpec(dataset=str(out), genre_counts={"abstract-target": 1, "instructions": 2}),
                     train=TrainSpec(method="lora", epochs=1, max_length=32, lora_r=4, lora_alpha=8,
                                     layer_groups=list(paperqa.PARTIAL_GROUPS)),
                     eval=EvalSpec(suite="paper", n_qa=2, n_mc=2, n_mmlu=3, max_new_tokens=4, every_epoch=True))
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

    # the optional judge through the Backend interface: 0-10 -> /10, unparseable replies excluded and counted
    from sciknow import models

    loaded = models.get(base.model)
    metrics, predictions = paperqa.evaluate_paper(loaded.model, loaded.tokenizer, out, n_qa=2, n_mc=1, n_mmlu=1,
                                                  max_new_tokens=4, judge=FakeJudge())
    assert metrics["judge"] == pytest.approx(0.7) and metrics["judge_unparseable"] == 1
    assert [p.get("judge") for p in predictions if p["set"] == "qa"] == [0.7, None]
