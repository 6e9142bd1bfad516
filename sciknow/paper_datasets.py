"""Reading a built Task 4 dataset folder: training genres, held-out test sets, the manifest.

A folder written by `sciknow.make.build_paper_datasets.build_datasets` (notebook 06) holds:

    manifest.json          what was built from what (papers, sizes, seeds, counts)
    genres/<genre>.jsonl   training texts, one {"id", "text", "paper_id", ...} per line
    tests/qa.jsonl         held-out descriptive Q&A   {"id", "question", "answer", "context", "paper_id"}
    tests/mc.jsonl         held-out multiple choice   {"id", "question", "choices", "gold", "instruction"}
    tests/mmlu.jsonl       held-out MMLU items        {"id", "subject", "question", "choices", "gold", "instruction"}

Training genres (`GENRES`): abstract / introduction / introduction-multi (translations) / conclusion of the
target papers and of irrelevant-1, introduction of irrelevant-2, instructions (generated Q&A and multiple-choice
items as instruction + answer texts) and mmlu-instructions. This module only reads; the core (data loading,
evaluation suites, sweeps) imports it, never the builder.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import corpus
from .config import SHARED_DIR, did_you_mean
from .io import read_jsonl

FORMAT = "sciknow-paperqa/1"  # manifest["format"] of the folders this module reads
GENRES: tuple[str, ...] = (
    "abstract-target", "introduction-target", "introduction-multi-target", "conclusion-target",
    "abstract-irrelevant-1", "introduction-irrelevant-1", "introduction-multi-irrelevant-1", "conclusion-irrelevant-1",
    "introduction-irrelevant-2", "instructions", "mmlu-instructions",
)
INSTRUCTION_GENRES: tuple[str, ...] = ("instructions", "mmlu-instructions")
TEST_SETS: tuple[str, ...] = ("qa", "mc", "mmlu")


class DatasetError(FileNotFoundError):
    """A Task 4 dataset folder is missing or incomplete; the message names the folder or file."""


def _missing(path: Path) -> DatasetError:
    return DatasetError(
        f"{path}: no built dataset here; run notebook 06 first (it needs `bash scripts/setup.sh --writers`, the PLOS "
        f"articles in {SHARED_DIR / 'corpora' / 'plos-starter'} and about 56 min, 18 min with quick=True), or set "
        "`dataset` (notebook 07's parameter; `--dataset` of sciknow.sweep) to a built dataset folder")


def load_manifest(dataset: str | Path) -> dict[str, Any]:
    """The folder's manifest.json; a folder without one is not a built dataset (`DatasetError`)."""
    path = Path(dataset) / "manifest.json"
    if not path.is_file():
        raise _missing(Path(dataset))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: invalid JSON ({err.msg} at line {err.lineno}); rebuild with notebook 06") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DatasetError(f"{path}: format {found!r}, expected {FORMAT!r}; rebuild with notebook 06")
    return manifest


def _rows(dataset: str | Path, relative: str) -> list[dict[str, Any]]:
    path = Path(dataset) / relative
    if not path.is_file():
        load_manifest(dataset)  # no manifest: say "no built dataset here" rather than name one file
        raise DatasetError(f"{path}: missing from the built dataset {dataset}; rebuild it with notebook 06")
    return read_jsonl(path, strict=True)


def load_genre(dataset: str | Path, genre: str) -> list[dict[str, Any]]:
    """The training texts of one genre, in file order."""
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}{did_you_mean(genre, GENRES, list_valid=True)}")
    return _rows(dataset, f"genres/{genre}.jsonl")


def load_tests(dataset: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The held-out test sets {"qa": [...], "mc": [...], "mmlu": [...]}."""
    return {name: _rows(dataset, f"tests/{name}.jsonl") for name in TEST_SETS}


def genre_sizes(dataset: str | Path) -> dict[str, int]:
    """How many texts each genre holds (from the manifest)."""
    return dict(load_manifest(dataset)["counts"]["genres"])


def training_texts(dataset: str | Path, genre_counts: Mapping[str, int], seed: int = 0) -> list[str]:
    """`genre_counts[g]` texts of each genre g drawn by `seed` (genres in `GENRES` order); -1 = all of them."""
    for genre in genre_counts:
        if genre not in GENRES:
            raise ValueError(f"unknown genre {genre!r}{did_you_mean(genre, GENRES, list_valid=True)}")
    texts: list[str] = []
    for i, genre in enumerate(GENRES):
        n = genre_counts.get(genre, 0)
        if n == 0:
            continue
        pool = [r["text"] for r in load_genre(dataset, genre)]
        n = len(pool) if n < 0 else n
        if n > len(pool):
            raise ValueError(f"{dataset}: genre {genre!r} has {len(pool)} texts, {n} requested")
        texts += corpus.sample_texts(pool, n, seed * 1000 + i)  # one stream per genre: counts vary independently
    return texts
