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
    # a new user's slips: a misspelt style, a language that is not a code, an irrelevant text reusing a content id
    (_broken(lambda d: d["contents"][1].update(style="orignal")),
     "contents[1].style: unknown style 'orignal' (did you mean 'original'?)"),
    (_broken(lambda d: d["contents"][1].update(style="poem")),
     "contents[1].style: unknown style 'poem' (expected one of"),
    (_broken(lambda d: d["contents"][1].update(lang="english!!")),
     "contents[1].lang: 'english!!' is not an ISO 639 code"),
    (_broken(lambda d: d["contents"][1].update(lang="EN")), "contents[1].lang: 'EN' is not an ISO 639 code"),
    (_broken(lambda d: d["irrelevant_texts"][0].update(style="original")),
     "irrelevant_texts[0].style: unknown style 'original' (expected one of irrelevant)"),
    (_broken(lambda d: d["irrelevant_texts"][0].update(id="C2")),
     "contents and irrelevant_texts: duplicate id(s) ['C2']"),
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


# --- hardening: nothing coerced, nothing ignored --------------------------------------------------------------

@pytest.mark.parametrize("data, field", [
    (_broken(lambda d: d.update(irelevant_texts=[])), "unknown field 'irelevant_texts' (did you mean 'irrelevant_texts'?)"),
    (_broken(lambda d: d["questions"][0].update(keyword=["x"])), "questions[0]: unknown field 'keyword'"),
    (_broken(lambda d: d["contents"][0].update(lang=None)), "contents[0].lang: expected str, got null"),
    (_broken(lambda d: d["questions"][0].update(reference_answer=None)), "questions[0].reference_answer: expected str, got null"),
    (_broken(lambda d: d["irrelevant_texts"][0].update(style={"a": 1})), "irrelevant_texts[0].style: expected str, got dict"),
    (_broken(lambda d: d["irrelevant_texts"][0].update(lang=["en"])), "irrelevant_texts[0].lang: expected str, got list"),
    (_broken(lambda d: d["questions"][0].update(keywords=[" 2051"])), "questions[0].keywords[0]: ' 2051' has surrounding spaces"),
    (_broken(lambda d: d["contents"][0].update(id="C1 ")), "contents[0].id: 'C1 ' has surrounding spaces"),
    (_broken(lambda d: d["questions"][0].update(content_ids="C1")), "questions[0].content_ids: expected list, got str"),
    (_broken(lambda d: d["questions"][0].update(question="When\x07?")), "questions[0].question: control character"),
    (_broken(lambda d: d["questions"][0].update(keywords=["20\n51"])), "questions[0].keywords[0]: control character"),
    (_broken(lambda d: d.update(contents={"C1": "x"})), "contents: expected list, got dict"),
    (["a list"], "expected an object, got list"),
    (b'{"name": "a", "name": "b", "contents": [], "questions": []}', "duplicate key(s) ['name']"),
    (b'{"name": NaN}', "NaN is not a JSON value"),
    (b'{"name": Infinity}', "Infinity is not a JSON value"),
    (b'{"name": "\\ud800x", "contents": [], "questions": []}', "name: lone surrogate"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
])
def test_bad_inputs_are_refused_naming_file_and_field(tmp_path, data, field):
    path = write(tmp_path, data)
    with pytest.raises(KnowledgeSetError) as err:
        load_knowledge_set(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_a_folder_a_fifo_and_a_symlink_loop_are_refused_naming_the_file(tmp_path):
    import os

    fifo, loop = tmp_path / "fifo.json", tmp_path / "loop.json"
    os.mkfifo(fifo)
    loop.symlink_to(loop)
    for path, message in ((tmp_path, "not a regular file"), (fifo, "not a regular file"), (loop, "cannot read")):
        with pytest.raises(KnowledgeSetError, match=message) as err:
            load_knowledge_set(path)
        assert str(path) in str(err.value)


def test_a_missing_shared_set_says_where_shared_data_is_read(tmp_path):
    from sciknow.config import SHARED_DIR
    from sciknow.data import resolve_knowledge_set

    with pytest.raises(KnowledgeSetError, match="SCIKNOW_SHARED"):
        load_knowledge_set(SHARED_DIR / "reference" / "nope.json")
    with pytest.raises(KnowledgeSetError, match="does not exist"):
        resolve_knowledge_set("data/knowledge/nope.json")
    assert resolve_knowledge_set("default").endswith("zephyrite.json")


def test_check_knowledge_script_uses_the_loader(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    ok = subprocess.run([sys.executable, str(REPO / "data/knowledge/check_knowledge.py")], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "PASS (24 document(s))" in ok.stdout, ok.stdout + ok.stderr
    bad = write(tmp_path, _broken(lambda d: d["questions"][0].update(content_ids="C1")))
    fail = subprocess.run([sys.executable, str(REPO / "data/knowledge/check_knowledge.py"), str(bad)],
                          capture_output=True, text=True)
    assert fail.returncode == 1 and "content_ids: expected list, got str" in fail.stdout


# --- the multi-document suite ----------------------------------------------------------------------------------

def test_suite_has_24_documents_in_9_fields_each_a_fair_test():
    from sciknow.config import SUITE_DIR
    from sciknow.data import load_suite

    suite = load_suite(SUITE_DIR)
    assert len(suite) >= 24 and len({k.field for k in suite}) >= 8
    for kset in suite:
        assert [c.style for c in kset.contents] == ["original", "qa", "article", "interview", "textbook",
                                                    "translation", "translation", "translation"]
        assert 120 <= len(kset.content("C1").text.split()) <= 180, kset.name
        assert len(kset.questions) == 5 and all(2 <= len(q.keywords) <= 3 and q.paraphrase for q in kset.questions)


def _doctored_suite(tmp_path, mutate) -> Path:
    """A copy of two suite documents with one rule broken by `mutate(first, second)`."""
    from sciknow.config import SUITE_DIR

    first, second = (json.loads(p.read_text()) for p in sorted(SUITE_DIR.glob("*.json"))[:2])
    mutate(first, second)
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(first))
    (folder / "b.json").write_text(json.dumps(second))
    return folder


def _kw(doc, q=0, k=0):
    return doc["questions"][q]["keywords"][k]


@pytest.mark.parametrize("mutate, message", [
    (lambda a, b: a["questions"][0].update(question=a["questions"][0]["question"] + " " + _kw(a).upper()),
     "occurs in questions[0].question (ignoring case)"),
    (lambda a, b: a["questions"][1].update(paraphrase=a["questions"][1]["paraphrase"] + " " + _kw(a)),
     "occurs in questions[1].paraphrase"),
    (lambda a, b: b["contents"][0].update(text=b["contents"][0]["text"] + " " + _kw(a)),
     "also occurs in document"),
    (lambda a, b: a["contents"][2].update(text=a["contents"][2]["text"].replace(_kw(a), "something")),
     "is missing from content C3 (article)"),
    (lambda a, b: [b["questions"][0]["keywords"].append(_kw(a, 1, 0))] + [
        c.update(text=c["text"] + " " + _kw(a, 1, 0)) for c in b["contents"] if c["lang"] == "en"],
     "is also a keyword of document"),
])
def test_doctored_suite_documents_fail_naming_file_and_field(tmp_path, mutate, message):
    from sciknow.data import load_suite

    folder = _doctored_suite(tmp_path, mutate)
    with pytest.raises(KnowledgeSetError) as err:
        load_suite(folder)
    assert message in str(err.value) and str(folder) in str(err.value) and "keywords" in str(err.value)


# --- machine-written rewrites (data/knowledge/suite_machine/) --------------------------------------------------

def _without_keyword(a, b):
    a["contents"][2]["text"] = a["contents"][2]["text"].replace(_kw(a), "something")  # the article misses one


def test_partial_rewrites_relax_only_the_every_rewrite_carries_every_keyword_rule(tmp_path):
    from sciknow.data import load_suite

    folder = _doctored_suite(tmp_path, _without_keyword)
    with pytest.raises(KnowledgeSetError, match=r"a.json.questions\[0\].keywords: keyword '.+' is missing from "
                                                r"content C3 \(article\): the rule that every rewrite carries every "
                                                r"keyword .*partial_rewrites=True"):
        load_suite(folder)
    first, second = load_suite(folder, partial_rewrites=True)
    assert first.partial_rewrites and not load_knowledge_set(folder / "b.json", strict=True).partial_rewrites
    n = len({k for q in first.questions for k in q.keywords})
    assert first.keyword_coverage() == {"C1": (n, n), "C2": (n, n), "C3": (n - 1, n), "C4": (n, n), "C5": (n, n)}
    # every other rule still holds: a keyword missing from the original, a leak into a question
    for i, (mutate, message) in enumerate((
            (lambda a, b: a["contents"][0].update(text=a["contents"][0]["text"].replace(_kw(a), "something")),
             "is missing from content C1 (original)"),
            (lambda a, b: a["questions"][1].update(question=a["questions"][1]["question"] + " " + _kw(a)),
             "occurs in questions[1].question"))):
        (tmp_path / str(i)).mkdir()
        broken = _doctored_suite(tmp_path / str(i), lambda a, b: (_without_keyword(a, b), mutate(a, b)))
        with pytest.raises(KnowledgeSetError) as err:
            load_suite(broken, partial_rewrites=True)
        assert message in str(err.value)


def test_stored_machine_sets_load_relaxed_with_the_suites_questions():
    """The committed machine-written twin (sciknow.make.machine_suite): each set loads through the one loader with
    only the keyword rule relaxed, asks the suite's own questions, and states its writer and licence."""
    from sciknow.config import SUITE_DIR
    from sciknow.data import load_suite
    from sciknow.make.machine_suite import OUT_DIR

    machine = load_suite(OUT_DIR, partial_rewrites=True)
    suite = {k.name: k for k in load_suite(SUITE_DIR)}
    assert len(machine) >= 1
    partial = []
    for kset in machine:
        assert kset.questions == suite[kset.name].questions and kset.field == suite[kset.name].field
        assert kset.content("C1").text == suite[kset.name].content("C1").text
        assert [c.style for c in kset.contents if c.lang != "en"] == ["translation"] * 3
        raw = json.loads(Path(kset.path).read_text())
        assert raw["license"] == "CC0-1.0" and "qwen2.5-coder-1.5b-instruct" in raw["source"]
        report = json.loads((OUT_DIR / "reports" / f"{kset.name}.json").read_text())
        coverage = kset.keyword_coverage()
        for style, cid in (("qa", "C2"), ("article", "C3"), ("interview", "C4"), ("textbook", "C5")):
            stored = report["rewrites"][style]
            assert stored["stored"] == (cid in coverage)
            if stored["stored"]:
                assert coverage[cid] == (stored["keywords_carried"], report["keywords"])
                assert stored["kept"] == (coverage[cid][0] == coverage[cid][1])
                if not stored["kept"]:
                    partial.append(kset.path)
    for path in partial:  # the strict loader refuses a set with a partial rewrite, naming the rule
        with pytest.raises(KnowledgeSetError, match="the rule that every rewrite carries every keyword"):
            load_knowledge_set(path, strict=True)
