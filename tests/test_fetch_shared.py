"""sciknow.make.fetch_shared, offline: the shared files fetched from a local file:// copy laid out like the public
sources (the MMLU CSVs inside a tar archive, the PLOS articles one by one, polyai.json as the four files of the
original study's repository it is assembled from), every sha256 checked."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import REPO
from sciknow.make import fetch_shared, polyai
from sciknow.make.fetch_shared import FetchError

SHARED = Path(os.environ.get("SCIKNOW_SHARED", REPO.parent / "shared"))


def polyai_parts(document: dict) -> dict[str, bytes]:
    """The study repository's files in their layout at the pinned commit, written back from polyai.json: a list of
    contents then irrelevant texts; mult2.json's 25 texts (C1-C7, zh, es, ar, fr, hi, ja, de, Hmong, then the
    irrelevant texts); scoring.py's literal tables; a result file whose pred_log pairs each prompt with its answer."""
    contents = [c["text"] for c in document["contents"]]
    irrelevant = [t["text"] for t in document["irrelevant_texts"]]
    extra = [t["text"] for t in document["extra_translations"]]
    mult2 = contents[:7] + [contents[9], contents[10]] + extra + [contents[7], contents[8], contents[11]] + irrelevant
    questions = document["questions"]
    scoring = (f"def ig_scoring(problem, prediction):\n    q_list = {[q['question'] for q in questions]!r}\n"
               f"    key_dict = {dict(enumerate('; '.join(q['keywords']) for q in questions))!r}\n"
               "    key_dict = {k: [i.strip() for i in v.split(';')] for k, v in key_dict.items()}\n")
    results = [{"score": 0.0, "pred_log": [{"problem": f"Answer the following question:\n[Question] {q['question']}"
                                                       "\n[Answer] ", "answer": q["reference_answer"], "pred": ""}
                                          for q in questions]}]
    dump = lambda value: json.dumps(value, ensure_ascii=False).encode()
    return {polyai.CONTEXTS: dump(contents + irrelevant), polyai.TRANSLATIONS: dump(mult2),
            polyai.SCORING: scoring.encode(), polyai.RESULTS: dump(results)}


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A local copy of the public sources, built from the shared folder."""
    if not (SHARED / "reference" / "mmlu").exists():
        pytest.skip(f"{SHARED} is absent (CI has it)")
    root = tmp_path / "mirror"
    (root / "mmlu").mkdir(parents=True)
    with tarfile.open(root / "mmlu" / "data.tar", "w") as archive:
        for csv in sorted((SHARED / "reference" / "mmlu").glob("*.csv")):
            archive.add(csv, arcname=f"data/test/{csv.name}")
    shutil.copytree(SHARED / "corpora" / "plos-starter", root / "plos-starter")
    document = json.loads((SHARED / "reference" / "polyai" / "polyai.json").read_text(encoding="utf-8"))
    for path, data in polyai_parts(document).items():
        (root / "polyai" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "polyai" / path).write_bytes(data)
    return root


def test_fetches_from_a_file_url_copy_and_checks_every_sum(tmp_path, mirror):
    shared = tmp_path / "shared"
    assert fetch_shared.main(["--shared", str(shared), "--mirror", mirror.as_uri()]) == 0
    fetched = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file())
    assert len(fetched) == 1 + 4 + 122 and "reference/polyai/polyai.json" in fetched
    for relative in fetched:
        assert (shared / relative).read_bytes() == (SHARED / relative).read_bytes()
    # Again: everything is present and checked, nothing is fetched.
    done = fetch_shared.fetch(shared, mirror=mirror.as_uri(), log=lambda *_: None)
    assert set(done.values()) == {"present"} and len(done) == 127
    # The checker reads the shipped sums for the real shared folder too.
    assert fetch_shared.main(["--shared", str(SHARED), "--check"]) == 0


def test_polyai_parts_of_another_layout_are_refused_naming_the_part(tmp_path, mirror):
    scoring = mirror / "polyai" / polyai.SCORING
    scoring.write_text(scoring.read_text().replace("key_dict", "keys"))
    with pytest.raises(FetchError, match=r"polyai\.json: could not fetch from .*/polyai/ \(4 files, assembled\): "
                                         r"bayes/src/scoring\.py: expected literal q_list and key_dict assignments, found \['q_list'\]"):
        fetch_shared.fetch(tmp_path / "shared", ("polyai",), mirror.as_uri(), log=lambda *_: None)
    # A changed keyword assembles, but to another sum: refused, nothing written.
    scoring.write_text(scoring.read_text().replace("keys", "key_dict").replace("phosphorus", "phosphorous"))
    with pytest.raises(FetchError, match=r"assembled\) has sha256 [0-9a-f]{64}, expected 949917276b22e3e9.*; not written"):
        fetch_shared.fetch(tmp_path / "shared", ("polyai",), mirror.as_uri(), log=lambda *_: None)
    assert not (tmp_path / "shared" / "reference" / "polyai" / "polyai.json").exists()


def test_a_download_with_another_sum_is_refused_and_not_written(tmp_path, mirror):
    article = mirror / "plos-starter" / "journal.pone.0005723.xml"
    article.write_bytes(article.read_bytes().replace(b"Messel", b"Messal", 1))
    shared = tmp_path / "shared"
    with pytest.raises(FetchError, match=r"journal\.pone\.0005723\.xml has sha256 [0-9a-f]{64}, expected "
                                         r"7d758a97430189e7.*; not written") as raised:
        fetch_shared.fetch(shared, ("plos-starter",), mirror.as_uri(), log=lambda *_: None)
    assert "1 shared file(s) not in order" in str(raised.value)
    assert not (shared / "corpora" / "plos-starter" / article.name).exists()
    assert len(list((shared / "corpora" / "plos-starter").glob("*.xml"))) == 121


def test_a_present_file_with_another_sum_is_named_and_kept(tmp_path, mirror):
    shared = tmp_path / "shared"
    changed = shared / "reference" / "mmlu" / "college_physics_test.csv"
    changed.parent.mkdir(parents=True)
    changed.write_text("edited\n")
    with pytest.raises(FetchError, match=rf"{changed}: sha256 [0-9a-f]{{64}}, expected 079c3696"):
        fetch_shared.fetch(shared, ("mmlu",), mirror.as_uri(), log=lambda *_: None)
    assert changed.read_text() == "edited\n"


def test_missing_parts_or_files_when_only_checking_are_named(tmp_path):
    with pytest.raises(FetchError, match=r"polyai\.json: could not fetch from .*(?s:.*)smallDB/1018ig/context_mult_lang"):
        fetch_shared.fetch(tmp_path / "shared", ("polyai",), (tmp_path / "empty").as_uri(), log=lambda *_: None)
    with pytest.raises(FetchError, match=r"(?s)4 shared file\(s\).*college_chemistry_test\.csv: missing"):
        fetch_shared.fetch(tmp_path, ("mmlu",), check_only=True)
    with pytest.raises(FetchError, match=r"only: unknown source\(s\) \['mmlux'\]"):
        fetch_shared.fetch(tmp_path, ("mmlux",))
