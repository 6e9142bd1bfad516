"""sciknow.make.fetch_shared, offline: the shared files fetched from a local file:// copy laid out like the public
sources (the MMLU CSVs inside a tar archive, the PLOS articles one by one), every sha256 checked."""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import REPO
from sciknow.make import fetch_shared
from sciknow.make.fetch_shared import FetchError

SHARED = Path(os.environ.get("SCIKNOW_SHARED", REPO.parent / "shared"))


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
    return root


def test_fetches_from_a_file_url_copy_and_checks_every_sum(tmp_path, mirror):
    shared = tmp_path / "shared"
    argv = ["--shared", str(shared), "--only", "mmlu", "--only", "plos-starter", "--mirror", mirror.as_uri()]
    assert fetch_shared.main(argv) == 0
    fetched = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file())
    assert len(fetched) == 4 + 122
    for relative in fetched:
        assert (shared / relative).read_bytes() == (SHARED / relative).read_bytes()
    # Again: everything is present and checked, nothing is fetched.
    done = fetch_shared.fetch(shared, ("mmlu", "plos-starter"), mirror.as_uri(), log=lambda *_: None)
    assert set(done.values()) == {"present"} and len(done) == 126
    # The checker reads the shipped sums for the real shared folder too.
    assert fetch_shared.main(["--shared", str(SHARED), "--check"]) == 0


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


def test_missing_files_without_a_public_download_or_when_only_checking(tmp_path):
    with pytest.raises(FetchError, match=r"polyai\.json: missing, and polyai has no public download \(assembled"):
        fetch_shared.fetch(tmp_path, ("polyai",), log=lambda *_: None)
    with pytest.raises(FetchError, match=r"(?s)4 shared file\(s\).*college_chemistry_test\.csv: missing"):
        fetch_shared.fetch(tmp_path, ("mmlu",), check_only=True)
    with pytest.raises(FetchError, match=r"only: unknown source\(s\) \['mmlux'\]"):
        fetch_shared.fetch(tmp_path, ("mmlux",))
