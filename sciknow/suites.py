"""Evaluation suites: what a trained model is asked and how its answers are scored, behind one small interface.

    suite = run_kinds.run_kind(config).suite    # built once per run (test items loaded, judge made)
    result = suite.evaluate(model, tokenizer)   # after each epoch -> SuiteResult(score, predictions, metrics)

* "keywords" (Tasks 1-3, the suite study): the questions of the knowledge set(s), answered greedily, closed-book
  and/or open-book, optionally also in their paraphrases; score = mean keyword recall (`evaluate.answer_and_score`,
  `retrieval.answer_open_book`).
* "paper" (Task 4): the held-out test sets of a built dataset (`paper_datasets`); score = ROUGE-2 F on the
  descriptive Q&A; metrics = multiple-choice accuracy, MMLU accuracy and, with `eval.judge`, an LLM judge's
  0-1 grade of the descriptive answers. A test set with no items scores NaN (the record stores null).

Each kind of run (`run_kinds`) makes its suite; a new suite is a class with `evaluate(model, tokenizer) ->
SuiteResult`, made by the kind of run it asks.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import EvalSpec
from .data import KnowledgeSet, Question
from .evaluate import answer_and_score, generate_answers
from .generate import Backend, OpenAICompatibleBackend
from .paper_datasets import load_tests
from .scores import judge_prompt, mc_choice, mc_correct, parse_judge_score, rouge2_f

_log = logging.getLogger(__name__)


@dataclass
class SuiteResult:
    score: float
    predictions: list[dict]
    metrics: dict[str, float] | None = None


class Suite(Protocol):
    def evaluate(self, model, tokenizer) -> SuiteResult: ...


class KeywordSuite:
    """Keyword recall on the questions of one or more knowledge sets (a suite's documents), each question also
    in its paraphrase with `eval.paraphrases`, asked closed-book and/or open-book (`eval.book`; open book puts
    the top-k passages of the retrieval `index` in the prompt).

    score = mean keyword score of the original questions (closed book, or open book when only that is asked);
    metrics = paraphrase_score, open_score, open_paraphrase_score, recall_at_k (those that apply); one prediction
    per question, variant and book, tagged with its document.
    """

    def __init__(self, ksets: Sequence[KnowledgeSet], spec: EvalSpec, index=None) -> None:
        if not ksets or not any(k.questions for k in ksets):
            raise ValueError("the keyword suite needs at least one question")
        if spec.book != "closed" and index is None:
            raise ValueError(f"eval.book={spec.book!r} needs a retrieval index")
        self.items = _asked(ksets, spec.paraphrases)
        self.spec = spec
        self.index = index

    def evaluate(self, model, tokenizer) -> SuiteResult:
        s = self.spec
        questions = [q for _, _, q in self.items]
        predictions: list[dict] = []
        if s.book in ("closed", "both"):
            _, closed = answer_and_score(model, tokenizer, questions, s.max_new_tokens, s.batch_size,
                                         s.prompt_style)
            predictions += [{"document": doc, "variant": variant, "book": "closed", **p}
                            for (doc, variant, _), p in zip(self.items, closed)]
        if s.book in ("open", "both"):
            from .retrieval import answer_open_book

            # question ids repeat across documents (Q1..Q5 in each): ask with unique ids, record the own ones
            unique = [dataclasses.replace(q, id=f"{doc}/{variant}/{q.id}") for doc, variant, q in self.items]
            _, opened, _ = answer_open_book(model, tokenizer, unique, self.index, s.retrieval_k, s.max_new_tokens,
                                            s.batch_size, s.prompt_style,
                                            document_of={u.id: doc for u, (doc, _, _) in zip(unique, self.items)})
            predictions += [{"document": doc, "variant": variant, "book": "open", **p, "question_id": q.id}
                            for (doc, variant, q), p in zip(self.items, opened)]

        def mean(variant: str, book: str, key: str = "score") -> float | None:
            values = [p[key] for p in predictions if p["variant"] == variant and p["book"] == book]
            return sum(values) / len(values) if values else None

        metrics: dict[str, float | None] = {}
        if s.paraphrases and s.book != "open":
            metrics["paraphrase_score"] = mean("paraphrase", "closed")
        if s.book != "closed":
            metrics["open_score"] = mean("original", "open")
            metrics["recall_at_k"] = mean("original", "open", "recall")
            if s.paraphrases:
                metrics["open_paraphrase_score"] = mean("paraphrase", "open")
        score = mean("original", "closed" if s.book != "open" else "open")
        return SuiteResult(score, predictions, metrics or None)


def _asked(ksets: Sequence[KnowledgeSet], paraphrases: bool) -> list[tuple[str, str, Question]]:
    """(document, variant, question) for every question to ask; a paraphrase is asked as its own question."""
    items = []
    for kset in ksets:
        for q in kset.questions:
            items.append((kset.name, "original", q))
            if paraphrases:
                if q.paraphrase is None:
                    raise ValueError(f"eval.paraphrases=True but {kset.path} question {q.id} has no paraphrase")
                items.append((kset.name, "paraphrase", dataclasses.replace(q, question=q.paraphrase)))
    return items


def make_judge(spec: Mapping[str, Any] | None) -> Backend | None:
    """A judge backend from an `EvalSpec.judge` dict ({"base_url", "model", "api_key_env"?, ...}), or None."""
    return OpenAICompatibleBackend(**dict(spec)) if spec else None


def judge_score(backend: Backend, items: Sequence[tuple[str, str, str]], max_new_tokens: int = 128) -> list[float]:
    """Judge grades (0-1) of (question, reference, prediction) items; unparseable replies give NaN.

    The number of unparseable replies is logged; callers can count them with `math.isnan`.
    """
    prompts = [judge_prompt(q, ref, pred) for q, ref, pred in items]
    replies = backend.complete(prompts, max_new_tokens) if prompts else []
    scores = []
    for reply in replies:
        score = parse_judge_score(reply if isinstance(reply, str) else "")
        scores.append(math.nan if score is None else score)
    unparseable = sum(math.isnan(s) for s in scores)
    if unparseable:
        _log.warning("%d of %d judge replies had no parseable score", unparseable, len(scores))
    return scores


def _first(items: list[dict], n: int) -> list[dict]:
    return items if n <= 0 else items[:n]


def score_paper_answers(tests: Mapping[str, Sequence[Mapping[str, Any]]],
                        answers: Mapping[str, Sequence[str]]) -> tuple[dict[str, float], list[dict]]:
    """Pure scoring of the paper suite: ROUGE-2 F (descriptive), MC accuracy, MMLU accuracy (NaN when empty)."""
    metrics: dict[str, float] = {}
    predictions: list[dict] = []
    for name, key in (("qa", "rouge2"), ("mc", "mc"), ("mmlu", "mmlu")):
        items, outs = list(tests.get(name, ())), list(answers.get(name, ()))
        if len(items) != len(outs):
            raise ValueError(f"{len(outs)} answers for {len(items)} {name} items")
        scores = []
        for item, answer in zip(items, outs):
            if name == "qa":
                score = rouge2_f(answer, item["answer"])
                extra: dict[str, Any] = {"reference": item["answer"]}
            else:
                score = float(mc_correct(answer, int(item["gold"])))
                extra = {"reference": str(item["gold"]), "choice": mc_choice(answer)}
            scores.append(score)
            predictions.append({"set": name, "question_id": item["id"], "question": item["question"],
                                "answer": answer, "score": score, **extra})
        metrics[key] = sum(scores) / len(scores) if scores else math.nan
        metrics[f"n_{name}"] = len(scores)
    return metrics, predictions


class PaperSuite:
    """Task 4's held-out tests of a built dataset: the first `eval.n_qa` / `n_mc` / `n_mmlu` items (0 = all)."""

    def __init__(self, dataset: str | Path, spec: EvalSpec, judge: Backend | None = None) -> None:
        tests = load_tests(dataset)
        self.tests = {"qa": _first(tests["qa"], spec.n_qa), "mc": _first(tests["mc"], spec.n_mc),
                      "mmlu": _first(tests["mmlu"], spec.n_mmlu)}
        self.spec = spec
        self.judge = judge

    def _answers(self, model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
        s = self.spec
        return generate_answers(model, tokenizer, prompts, max_new_tokens, s.batch_size, s.prompt_style) \
            if prompts else []

    def evaluate(self, model, tokenizer) -> SuiteResult:
        s, tests = self.spec, self.tests
        answers = {
            "qa": self._answers(model, tokenizer, [t["question"] for t in tests["qa"]], s.max_new_tokens),
            "mc": self._answers(model, tokenizer, [t["instruction"] for t in tests["mc"]], s.mc_max_new_tokens),
            "mmlu": self._answers(model, tokenizer, [t["instruction"] for t in tests["mmlu"]], s.mc_max_new_tokens),
        }
        metrics, predictions = score_paper_answers(tests, answers)
        if self.judge is not None and tests["qa"]:
            grades = judge_score(self.judge, [(t["question"], t["answer"], a)
                                              for t, a in zip(tests["qa"], answers["qa"])])
            for prediction, grade in zip([p for p in predictions if p["set"] == "qa"], grades):
                prediction["judge"] = None if math.isnan(grade) else grade
            valid = [g for g in grades if not math.isnan(g)]
            metrics["judge"] = sum(valid) / len(valid) if valid else math.nan
            metrics["judge_unparseable"] = len(grades) - len(valid)
        return SuiteResult(metrics["rouge2"], predictions, metrics)
