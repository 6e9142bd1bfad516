import json
from pathlib import Path

import pytest

from sciknow.config import DEFAULT_KNOWLEDGE_SET, DataSpec
from sciknow.data import KnowledgeSetError, load_knowledge_set, training_texts


def good_set() -> dict:
    return {
        "name": "toy",
        "contents": [{"id": "C1", "style": "original", "lang": "en", "text": "Zorblat was found in 2051."},
                     {"id": "C2", "style": "qa", "lang": "en", "text": "Q: When? A: 2051."}],
        "questions": [{"id": "Q1", "question": "When was Zorblat found?", "reference_answer": "In 2051.",
                       "keywords": ["2051"], "content_ids": ["C1"]}],
        "irrelevant_texts": [{"id": "I1", "text": "Unrelated."}, {"id": "I2", "text": "Also unrelated."}],
    }


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "set.json"
    path.write_text(json.dumps(data)) if not isinstance(data, bytes) else path.write_bytes(data)
    return path


def test_repo_set_loads_and_no_keyword_is_in_its_question():
    kset = load_knowledge_set(DEFAULT_KNOWLEDGE_SET)
    assert len(kset.questions) == 5
    assert kset.ids_by_style(["original", "qa", "article", "interview", "textbook"]) == ["C1", "C2", "C3", "C4", "C5"]
    assert len([c for c in kset.contents if c.style == "translation"]) >= 3
    assert kset.leaked_keywords() == {}
    original = kset.content("C1").text
    assert all(k in original for q in kset.questions for k in q.keywords)


def test_paper_set_loads_as_it_is(shared_dir):
    kset = load_knowledge_set(shared_dir / "reference/polyai/polyai.json")
    assert [c.id for c in kset.contents] == [f"C{i}" for i in range(1, 13)]
    assert len(kset.questions) == 5 and len(kset.irrelevant_texts) == 10
    # The paper's questions give some keywords away ("Kan Hatakeyama" in Q1): the loader reports it.
    assert "Kan Hatakeyama" in kset.leaked_keywords()["Q1"]


def test_good_file_and_training_texts(tmp_path):
    path = write(tmp_path, good_set())
    kset = load_knowledge_set(path)
    assert kset.content("C2").style == "qa"
    texts = training_texts(DataSpec(knowledge_set=str(path), contents=["C2", "C1"], n_irrelevant=1), kset)
    assert texts[:2] == ["Q: When? A: 2051.", "Zorblat was found in 2051."]
    assert texts[2] in ("Unrelated.", "Also unrelated.")
    again = training_texts(DataSpec(knowledge_set=str(path), contents=["C2", "C1"], n_irrelevant=1), kset)
    assert again == texts  # drawn by seed


def _broken(mutate):
    data = good_set()
    mutate(data)
    return data


@pytest.mark.parametrize("data, field", [
    (_broken(lambda d: d["contents"][0].pop("text")), "contents[0]: missing field 'text'"),
    (_broken(lambda d: d.pop("questions")), "missing field 'questions'"),
    (_broken(lambda d: d["contents"][1].update(text=7)), "contents[1].text: expected str, got int"),
    (_broken(lambda d: d["questions"][0].update(keywords="2051")), "questions[0].keywords: expected list"),
    (_broken(lambda d: d["contents"][0].update(text="  ")), "contents[0].text: empty text"),
    (_broken(lambda d: d["questions"][0].update(keywords=[])), "questions[0].keywords"),
    (_broken(lambda d: d["questions"][0].update(content_ids=["C9"])), "questions[0].content_ids: unknown content id 'C9'"),
    (_broken(lambda d: d["contents"].append(dict(d["contents"][0]))), "contents: duplicate id(s) ['C1']"),
    ("é".encode("latin-1") + b'{"name": 1}', "not UTF-8"),
    (b'{"name": ', "invalid JSON"),
])
def test_bad_files_name_file_and_field(tmp_path, data, field):
    path = write(tmp_path, data)
    with pytest.raises(KnowledgeSetError) as err:
        load_knowledge_set(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_unknown_content_id_in_a_run_is_an_error(tmp_path):
    kset = load_knowledge_set(write(tmp_path, good_set()))
    with pytest.raises(KeyError, match="C7"):
        training_texts(DataSpec(knowledge_set=kset.path, contents=["C7"]), kset)


def test_irrelevant_source_parameter():
    from sciknow.config import REPO_ROOT, SHARED_DIR
    from sciknow.data import irrelevant_source

    assert irrelevant_source("") == str(SHARED_DIR / "corpora" / "plos-starter")
    assert irrelevant_source("knowledge_set") == "knowledge_set"
    assert irrelevant_source("data/jats") == str(REPO_ROOT / "data" / "jats")
