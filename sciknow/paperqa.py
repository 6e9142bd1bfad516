"""Task 4 (the paper's Fig. 5 flow): training genres and held-out test sets built from real papers, and the
"paper" evaluation suite (ROUGE-2 on descriptive Q&A, multiple-choice accuracy, MMLU accuracy, optional judge).

`build_datasets` writes one JSONL file per genre plus `manifest.json` into a folder:

    genres/<genre>.jsonl   training texts, one {"id", "text", "paper_id", ...} per line
    tests/qa.jsonl         held-out descriptive Q&A   {"id", "question", "answer", "context", "paper_id"}
    tests/mc.jsonl         held-out multiple choice   {"id", "question", "choices", "gold", "instruction"}
    tests/mmlu.jsonl       held-out MMLU items        {"id", "subject", "question", "choices", "gold", "instruction"}

Training genres (`GENRES`): abstract / introduction / introduction-multi / conclusion of the target papers and
of irrelevant-1, introduction of irrelevant-2, instructions (generated Q&A and multiple-choice items as
instruction + answer texts) and mmlu-instructions. No test item is ever in an instruction genre: the build
removes overlaps and asserts it (`check_no_leak`).
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import corpus, qa
from .config import SHARED_DIR

GROUPS = ("target", "irrelevant-1", "irrelevant-2")
GENRES: tuple[str, ...] = (
    "abstract-target", "introduction-target", "introduction-multi-target", "conclusion-target",
    "abstract-irrelevant-1", "introduction-irrelevant-1", "introduction-multi-irrelevant-1", "conclusion-irrelevant-1",
    "introduction-irrelevant-2", "instructions", "mmlu-instructions",
)
INSTRUCTION_GENRES = ("instructions", "mmlu-instructions")
TEST_SETS = ("qa", "mc", "mmlu")
DEFAULT_SIZES = {"target": 10, "irrelevant-1": 30, "irrelevant-2": 60}
DEFAULT_MMLU = tuple(str(SHARED_DIR / "reference" / "mmlu" / f) for f in ("college_chemistry_test.csv", "college_physics_test.csv"))


class LeakError(AssertionError):
    """A held-out test item is part of the training data."""


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def instruction_text(instruction: str, output: str) -> str:
    """An instruction-format training text (same layout as `qa.mmlu_as_instructions`)."""
    return f"{instruction.strip()}\n{output.strip()}"


def check_no_leak(genres: Mapping[str, Sequence[Mapping[str, Any]]],
                  tests: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Raise `LeakError` if a test question (or a descriptive test answer) occurs in an instruction genre.

    The corpus genres legitimately contain the passages the questions were written from (that knowledge is
    what training should teach); the instruction genres must never contain a test item.
    """
    haystack = "\n\x00\n".join(_norm(r["text"]) for g in INSTRUCTION_GENRES for r in genres.get(g, ()))
    for name, items in tests.items():
        for item in items:
            probes = [item["question"]] + ([item["answer"]] if name == "qa" else [])
            for probe in probes:
                if _norm(probe) and _norm(probe) in haystack:
                    raise LeakError(f"test item {item['id']} ({name}) occurs in the training instructions: "
                                    f"{probe[:80]!r}")


def _passages(text: str, max_words: int) -> list[str]:
    return corpus.chunk_words(text, max_words) if text.strip() else []


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]


def build_datasets(
    corpus_dir_or_papers: str | Path | Sequence[corpus.Paper],
    out_dir: str | Path,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    backend: qa.Backend | None = None,
    translator: Any = None,
    languages: Sequence[str] = ("es", "ca", "it"),
    max_words: int = 2000,
    qa_passage_words: int = 300,
    max_qa_passages: int | None = 8,
    qa_per_passage: int = 5,
    qa_max_new_tokens: int = 384,
    qa_test_fraction: float = 0.3,
    mmlu_csvs: Sequence[str | Path] = DEFAULT_MMLU,
    mmlu_test_size: int = 50,
    backend_name: str | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build every training genre and the held-out test sets from a JATS folder (or parsed papers).

    Q&A is generated with `backend` from target-introduction passages (introduction chunks re-split to at most
    `qa_passage_words` words; the first `max_qa_passages` passages in seeded order, None = all). Q&A pairs are
    de-duplicated, then split by `seed` into train (-> "instructions") and held-out test (`qa_test_fraction`).
    Multiple-choice test items are built from all pairs of a passage and kept for held-out questions; training
    MC items are built from training pairs only, so no test answer appears in training. MMLU items are split by
    seed: `mmlu_test_size` held out, the rest become "mmlu-instructions". Without a backend the Q&A-derived
    sets are empty (counted in the manifest). Without a translator "introduction-multi-*" are empty.
    """
    t0 = time.perf_counter()
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    unknown = set(sizes) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)}; expected {GROUPS}")
    out = Path(out_dir)
    items = corpus_dir_or_papers if isinstance(corpus_dir_or_papers, (str, Path)) else list(corpus_dir_or_papers)
    if isinstance(items, list) and items and all(isinstance(p, corpus.Paper) for p in items):
        papers, errors, source = items, [], "papers"
    else:
        papers, errors = corpus.load_corpus(items, progress=progress)
        source = str(items) if isinstance(items, (str, Path)) else f"{len(items)} files"
    # Only papers with an introduction can serve (every group trains on introductions).
    usable = [p for p in papers if p.introduction.strip()]
    groups = corpus.split_groups(usable, {g: sizes.get(g, 0) for g in GROUPS}, seed)

    genres: dict[str, list[dict[str, Any]]] = {g: [] for g in GENRES}

    def add(genre: str, paper: corpus.Paper, texts: list[str], **extra: Any) -> None:
        for i, text in enumerate(texts):
            genres[genre].append({"id": f"{genre}/{paper.id}/{i}", "text": text, "paper_id": paper.id, **extra})

    for group in ("target", "irrelevant-1"):
        for p in groups[group]:
            add(f"abstract-{group}", p, _passages(p.abstract, max_words))
            add(f"introduction-{group}", p, _passages(p.introduction, max_words))
            add(f"conclusion-{group}", p, _passages(p.conclusion, max_words))
    for p in groups["irrelevant-2"]:
        add("introduction-irrelevant-2", p, _passages(p.introduction, max_words))

    translation_failures = 0
    if translator is not None:
        for group in ("target", "irrelevant-1"):
            rows = genres[f"introduction-{group}"]
            for lang in languages:
                try:
                    translated = translator.translate([r["text"] for r in rows], lang)
                except Exception:  # one missing language pair should not sink the whole build
                    translation_failures += 1
                    continue
                for r, text in zip(rows, translated):
                    if text.strip():
                        genres[f"introduction-multi-{group}"].append(
                            {"id": f"{r['id']}/{lang}", "text": text, "paper_id": r["paper_id"], "lang": lang})

    # ---- Q&A from target introductions
    paper_of: dict[str, str] = {}
    qa_passages: list[str] = []
    for r in genres["introduction-target"]:
        for passage in corpus.chunk_words(r["text"], qa_passage_words):
            paper_of.setdefault(passage, r["paper_id"])
            qa_passages.append(passage)
    random.Random(seed).shuffle(qa_passages)
    if max_qa_passages is not None:
        qa_passages = qa_passages[:max_qa_passages]
    stats = qa.QAStats()
    pairs: list[qa.QAPair] = []
    if backend is not None and qa_passages:
        pairs, stats = qa.build_qa(backend, qa_passages, qa_per_passage, qa_max_new_tokens)
    seen: set[str] = set()
    unique = []
    for pair in pairs:  # a question asked twice would be both trained on and tested
        key = _norm(pair.question)
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    duplicates = len(pairs) - len(unique)
    # Held-out questions must stand alone: one that points at its passage ("this method") is ill-posed without
    # it and, asked with it, tests reading rather than recall. Such pairs always go to training (with context).
    order = [i for i, p in enumerate(unique) if not qa.needs_context(p.question)]
    random.Random(seed + 1).shuffle(order)
    n_test = round(len(order) * qa_test_fraction)
    test_idx = set(order[:n_test])
    test_pairs = [p for i, p in enumerate(unique) if i in test_idx]
    train_pairs = [p for i, p in enumerate(unique) if i not in test_idx]
    test_questions = {_norm(p.question) for p in test_pairs}

    for i, pair in enumerate(train_pairs):
        genres["instructions"].append({"id": f"instructions/qa/{i}", "kind": "qa", "paper_id": paper_of.get(pair.context, ""),
                                       "instruction": qa.qa_instruction(pair), "output": pair.answer,
                                       "text": instruction_text(qa.qa_instruction(pair), pair.answer)})
    train_mc = qa.build_multiple_choice(qa.group_by_context(train_pairs), seed)
    for i, item in enumerate(train_mc):
        genres["instructions"].append({"id": f"instructions/mc/{i}", "kind": "mc", "paper_id": paper_of.get(item.context, ""),
                                       "instruction": item.instruction, "output": item.answer_text,
                                       "text": instruction_text(item.instruction, item.answer_text)})
    all_mc = qa.build_multiple_choice(qa.group_by_context(unique), seed, include_context=False)
    test_mc = [m for m in all_mc if _norm(m.question) in test_questions]

    # ---- MMLU: held-out test items vs instruction data
    mmlu: list[tuple[str, qa.MCItem]] = []
    for path in mmlu_csvs:
        subject = Path(path).stem.replace("_test", "")
        # Offline CSVs when present (../shared here), else the `cais/mmlu` hub dataset (needs internet or a cache).
        items = qa.load_mmlu(path) if Path(path).is_file() else qa.load_mmlu_hub(subject)
        mmlu += [(subject, item) for item in items]
    mmlu_order = list(range(len(mmlu)))
    random.Random(seed + 2).shuffle(mmlu_order)
    n_mmlu_test = min(mmlu_test_size, len(mmlu))
    mmlu_test = [mmlu[i] for i in mmlu_order[:n_mmlu_test]]
    test_mmlu_q = {_norm(item.question) for _, item in mmlu_test}
    mmlu_train = [mmlu[i] for i in sorted(mmlu_order[n_mmlu_test:]) if _norm(mmlu[i][1].question) not in test_mmlu_q]
    for i, (subject, item) in enumerate(mmlu_train):
        genres["mmlu-instructions"].append({"id": f"mmlu-instructions/{subject}/{i}", "subject": subject,
                                            "instruction": item.instruction, "output": item.answer_text,
                                            "text": qa.mmlu_as_instructions([item])[0]})

    tests: dict[str, list[dict[str, Any]]] = {
        "qa": [{"id": f"qa/{i}", "question": p.question, "answer": p.answer, "context": p.context,
                "paper_id": paper_of.get(p.context, "")} for i, p in enumerate(test_pairs)],
        "mc": [{"id": f"mc/{i}", "question": m.question, "choices": list(m.choices), "gold": m.gold,
                "instruction": m.instruction} for i, m in enumerate(test_mc)],
        "mmlu": [{"id": f"mmlu/{s}/{i}", "subject": s, "question": m.question, "choices": list(m.choices),
                  "gold": m.gold, "instruction": m.instruction} for i, (s, m) in enumerate(mmlu_test)],
    }
    # Drop a test item whose question happens to appear inside a training instruction (e.g. a short generic
    # question that is part of a training item's text), then assert that nothing leaks.
    haystack = "\n\x00\n".join(_norm(r["text"]) for g in INSTRUCTION_GENRES for r in genres[g])
    overlap_dropped = {}
    for name in TEST_SETS:
        keep = [t for t in tests[name] if _norm(t["question"]) not in haystack
                and (name != "qa" or _norm(t["answer"]) not in haystack)]
        overlap_dropped[name] = len(tests[name]) - len(keep)
        tests[name] = keep
    check_no_leak(genres, tests)

    for genre, rows in genres.items():
        _write_jsonl(out / "genres" / f"{genre}.jsonl", rows)
    for name, rows in tests.items():
        _write_jsonl(out / "tests" / f"{name}.jsonl", rows)

    def paper_entry(p: corpus.Paper, group: str) -> dict[str, Any]:
        return {"id": p.id, "group": group, "doi": p.doi, "title": p.title, "journal": p.journal,
                "license": p.license, "license_url": p.license_url, "file": p.source.name}

    manifest = {
        "format": "sciknow-paperqa/1",
        "source": source,
        "seed": seed,
        "sizes": {g: sizes.get(g, 0) for g in GROUPS},
        "papers_parsed": len(papers),
        "papers_unreadable": [str(e) for e in errors],
        "papers_with_introduction": len(usable),
        "papers": [paper_entry(p, g) for g in GROUPS for p in groups[g]],
        "max_words": max_words,
        "languages": list(languages) if translator is not None else [],
        "translator": type(translator).__name__ if translator is not None else None,
        "translation_failures": translation_failures,
        "generation_backend": backend_name or (repr(backend) if backend is not None else None),
        "qa": {"passage_words": qa_passage_words, "passages": len(qa_passages), "per_passage": qa_per_passage,
               "max_new_tokens": qa_max_new_tokens, "generations": stats.generations, "pairs": stats.pairs,
               "malformed_generations": stats.malformed_generations, "dropped_pairs": stats.dropped_pairs,
               "duplicate_questions": duplicates, "train_pairs": len(train_pairs), "test_pairs": len(test_pairs),
               "test_fraction": qa_test_fraction, "train_mc_items": len(train_mc), "all_mc_items": len(all_mc)},
        "mmlu": {"files": [Path(p).name for p in mmlu_csvs], "items": len(mmlu), "test": len(mmlu_test),
                 "train": len(mmlu_train),
                 # training items whose question text equals a held-out one (MMLU repeats a few stems)
                 "dropped_same_question_as_test": len(mmlu) - len(mmlu_test) - len(mmlu_train)},
        "test_overlap_dropped": overlap_dropped,
        "counts": {"genres": {g: len(rows) for g, rows in genres.items()},
                   "tests": {n: len(rows) for n, rows in tests.items()}},
        "words": {g: sum(len(r["text"].split()) for r in rows) for g, rows in genres.items()},
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return BuildResult(out, manifest)


# ---------------------------------------------------------------- loading


def load_manifest(dataset: str | Path) -> dict[str, Any]:
    return json.loads((Path(dataset) / "manifest.json").read_text())


def load_genre(dataset: str | Path, genre: str) -> list[dict[str, Any]]:
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; expected one of {GENRES}")
    return read_jsonl(Path(dataset) / "genres" / f"{genre}.jsonl")


def load_tests(dataset: str | Path) -> dict[str, list[dict[str, Any]]]:
    return {name: read_jsonl(Path(dataset) / "tests" / f"{name}.jsonl") for name in TEST_SETS}


def training_texts(dataset: str | Path, genre_counts: Mapping[str, int], seed: int = 0) -> list[str]:
    """`genre_counts[g]` texts of each genre g drawn by `seed` (genres in `GENRES` order); -1 = all of them."""
    unknown = set(genre_counts) - set(GENRES)
    if unknown:
        raise ValueError(f"unknown genre(s) {sorted(unknown)}; expected some of {GENRES}")
    texts: list[str] = []
    for i, genre in enumerate(GENRES):
        n = genre_counts.get(genre, 0)
        if n == 0:
            continue
        pool = [r["text"] for r in load_genre(dataset, genre)]
        n = len(pool) if n < 0 else n
        if n > len(pool):
            raise ValueError(f"{dataset}: genre {genre!r} has {len(pool)} texts, {n} requested")
        texts += corpus.sample_texts(pool, n, seed * 1000 + i)
    return texts


def genre_sizes(dataset: str | Path) -> dict[str, int]:
    return dict(load_manifest(dataset)["counts"]["genres"])


# ---------------------------------------------------------------- evaluation suite "paper"


def _subset(items: list[dict], n: int) -> list[dict]:
    return items if n <= 0 else items[:n]


def score_paper_answers(tests: Mapping[str, Sequence[Mapping[str, Any]]],
                        answers: Mapping[str, Sequence[str]]) -> tuple[dict[str, float], list[dict]]:
    """Pure scoring of the paper suite: ROUGE-2 F (descriptive), MC accuracy, MMLU accuracy (NaN when empty)."""
    from .scores import mc_choice, mc_correct, rouge2_f

    metrics: dict[str, float] = {}
    predictions: list[dict] = []
    for name, key in (("qa", "rouge2"), ("mc", "mc"), ("mmlu", "mmlu")):
        items, outs = list(tests.get(name, ())), list(answers.get(name, ()))
        if len(items) != len(outs):
            raise ValueError(f"{len(outs)} answers for {len(items)} {name} items")
        scores = []
        for item, answer in zip(items, outs):
            if name == "qa":
                s = rouge2_f(answer, item["answer"])
                pred = {"reference": item["answer"]}
            else:
                s = float(mc_correct(answer, int(item["gold"])))
                pred = {"reference": str(item["gold"]), "choice": mc_choice(answer)}
            scores.append(s)
            predictions.append({"set": name, "question_id": item["id"], "question": item["question"],
                                "answer": answer, "score": s, **pred})
        metrics[key] = sum(scores) / len(scores) if scores else math.nan
        metrics[f"n_{name}"] = len(scores)
    return metrics, predictions


def make_judge(spec: Mapping[str, Any] | None):
    """A judge `Backend` from an EvalSpec.judge dict ({"base_url", "model", "api_key_env"?, ...}) or None."""
    if not spec:
        return None
    from .generate import OpenAICompatibleBackend

    return OpenAICompatibleBackend(**dict(spec))


def evaluate_paper(model, tokenizer, dataset: str | Path, n_qa: int = 0, n_mc: int = 0, n_mmlu: int = 0,
                   max_new_tokens: int = 100, mc_max_new_tokens: int = 8, batch_size: int = 64,
                   prompt_style: str = "auto", judge=None, judge_max_new_tokens: int = 128
                   ) -> tuple[dict[str, float], list[dict]]:
    """The "paper" suite on a dataset's held-out test sets (first n of each; 0 = all).

    Returns metrics {"rouge2", "mc", "mmlu", ["judge"], "n_qa", "n_mc", "n_mmlu"} and every prediction.
    """
    from .evaluate import generate_answers

    all_tests = load_tests(dataset)
    tests = {"qa": _subset(all_tests["qa"], n_qa), "mc": _subset(all_tests["mc"], n_mc),
             "mmlu": _subset(all_tests["mmlu"], n_mmlu)}
    answers = {
        "qa": generate_answers(model, tokenizer, [t["question"] for t in tests["qa"]], max_new_tokens, batch_size,
                               prompt_style) if tests["qa"] else [],
        "mc": generate_answers(model, tokenizer, [t["instruction"] for t in tests["mc"]], mc_max_new_tokens,
                               batch_size, prompt_style) if tests["mc"] else [],
        "mmlu": generate_answers(model, tokenizer, [t["instruction"] for t in tests["mmlu"]], mc_max_new_tokens,
                                 batch_size, prompt_style) if tests["mmlu"] else [],
    }
    metrics, predictions = score_paper_answers(tests, answers)
    if judge is not None and tests["qa"]:
        from .scores import judge_score

        grades = judge_score(judge, [(t["question"], t["answer"], a) for t, a in zip(tests["qa"], answers["qa"])],
                             judge_max_new_tokens)
        for pred, grade in zip([p for p in predictions if p["set"] == "qa"], grades):
            pred["judge"] = None if math.isnan(grade) else grade
        valid = [g for g in grades if not math.isnan(g)]
        metrics["judge"] = sum(valid) / len(valid) if valid else math.nan
        metrics["judge_unparseable"] = len(grades) - len(valid)
    return metrics, predictions


# ---------------------------------------------------------------- Task 4 sweep helpers


def objective_value(score: float, untrained: float, total_texts: int) -> float:
    """(score - untrained score) x log10(total texts), the paper's Task 4 objective.

    log10(1) = 0, so a run on a single text (or none) scores 0 whatever it learned: the objective rewards
    improvements that hold up while many texts are trained at once. Total is clipped at 1 (no negative logs).
    """
    return (score - untrained) * math.log10(max(int(total_texts), 1))


# The paper's partial adapter set for Task 4 (Fig. 6) vs every layer group.
PARTIAL_GROUPS: tuple[str, ...] = ("lm_head", "v_proj", "o_proj", "gate_proj", "up_proj")
ADAPTER_SETS = {"partial": PARTIAL_GROUPS, "all": None}  # None = config.LAYER_GROUPS
TRAIN_GENRES = GENRES  # every genre can be searched over


@dataclass
class Task4Space:
    """Bounds (inclusive) of the Task 4 search; `max_per_genre` caps each genre count (and by availability)."""

    lora_r: tuple[int, int] = (4, 128)
    lora_alpha: tuple[int, int] = (4, 256)
    lr: tuple[float, float] = (1e-4, 3e-3)
    epochs: tuple[int, int] = (1, 3)
    max_per_genre: int = 10
    adapter_sets: tuple[str, ...] = ("partial", "all")
    genres: tuple[str, ...] = TRAIN_GENRES

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def suggest_task4_config(trial, base, space: Task4Space, available: Mapping[str, int]):
    """Sample adapters, r, alpha, lr, epochs and a count per genre; at least one text is always trained."""
    from .config import LAYER_GROUPS

    adapters = trial.suggest_categorical("adapters", list(space.adapter_sets))
    r = trial.suggest_int("lora_r", *space.lora_r, log=True)
    alpha = trial.suggest_int("lora_alpha", *space.lora_alpha, log=True)
    lr = trial.suggest_float("lr", *space.lr, log=True)
    epochs = trial.suggest_int("epochs", *space.epochs)
    counts = {}
    for genre in space.genres:
        high = min(space.max_per_genre, available.get(genre, 0))
        counts[genre] = trial.suggest_int(f"n_{genre}", 0, high) if high > 0 else 0
    if sum(counts.values()) == 0:  # nothing to train on: force one target introduction
        counts["introduction-target"] = 1
        trial.set_user_attr("forced_text", "introduction-target")
    counts = {g: n for g, n in counts.items() if n}
    groups = list(ADAPTER_SETS[adapters] or LAYER_GROUPS)
    return base.replace(**{
        "data.genre_counts": counts, "train.method": "lora", "train.layer_groups": groups, "train.lora_r": r,
        "train.lora_alpha": alpha, "train.lr": lr, "train.epochs": epochs,
        "tags": {**base.tags, "trial": trial.number, "total_texts": sum(counts.values())},
    })


def make_task4_objective(base, space: Task4Space, results_path: str | Path, untrained: float):
    """Objective: (generation score - untrained score) x log10(total texts); see `objective_value`.

    Each trial is one `sweep.run_trial` (eval suite "paper"); the raw ROUGE-2 score, MC and MMLU accuracy,
    total and instruction-format text counts are kept as trial user attrs.
    """
    from . import sweep

    if untrained is None or not math.isfinite(untrained):
        raise ValueError(f"untrained score is {untrained!r}: the dataset {base.data.dataset} has no held-out "
                         "descriptive Q&A to score (rebuild it with more target papers or a larger test fraction)")
    available = genre_sizes(base.data.dataset)

    def objective(trial) -> float:
        config = suggest_task4_config(trial, base, space, available)
        record = sweep.run_trial(trial, config, results_path)
        counts = config.data.genre_counts
        total = sum(counts.values())
        trial.set_user_attr("score", record["final_score"])
        trial.set_user_attr("metrics", record.get("final_metrics") or {})
        trial.set_user_attr("total_texts", total)
        trial.set_user_attr("n_instruction_texts", sum(counts.get(g, 0) for g in INSTRUCTION_GENRES))
        score = record["final_score"] if record["final_score"] is not None else math.nan
        return objective_value(score, untrained, total)

    return objective


def task4_trials_frame(study) -> "Any":
    """`sweep.trials_frame` (params, objective value, score, mc, mmlu, judge, text counts) plus `adapters_all`."""
    from . import sweep

    df = sweep.trials_frame(study)
    for col in ("mc", "mmlu", "judge", "total_texts", "n_instruction_texts"):  # even if no trial got that far
        if col not in df:
            df[col] = None
    if "adapters" in df:
        df["adapters_all"] = (df["adapters"] == "all").astype(int)
    return df


def task4_param_columns(df) -> list[str]:
    cols = ["adapters_all", "log10_lora_r", "log10_lora_alpha", "log10_lr", "epochs"]
    cols += [c for c in df.columns if c.startswith("n_") and c not in ("n_instruction_texts",)]
    return [c for c in cols if c in df]
