"""Scorers: turn a model's answer into a number.

Each scorer is a pure function of strings, so it can be tested on hand-computed cases and reused by
every task (keyword recall for the fictitious documents; ROUGE-2, multiple choice and the judge's prompt and
reply for Task 4). Whatever calls a model sits beside the suites (`suites.judge_score`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache


def keyword_score(answer: str, keywords: Sequence[str]) -> float:
    """Fraction of `keywords` found in `answer`, exactly as the original study scored it.

    Plain case-sensitive substring tests (no regex, so "99.5%" or "1-(2,5-dimethyl...)" match literally).
    A question with no keywords cannot be scored and is rejected rather than silently scored 0 or 1.
    """
    if not keywords:
        raise ValueError("keyword_score needs at least one keyword")
    return sum(keyword in answer for keyword in keywords) / len(keywords)


def mean_keyword_score(answers: Sequence[str], keyword_lists: Sequence[Sequence[str]]) -> float:
    """Run score: per-question keyword scores averaged over questions."""
    if len(answers) != len(keyword_lists):
        raise ValueError(f"{len(answers)} answers for {len(keyword_lists)} questions")
    return sum(map(keyword_score, answers, keyword_lists)) / len(answers)


# --- Task 4 scorers: ROUGE-2, multiple choice, the LLM judge's prompt and reply ---


@lru_cache(maxsize=1)
def _rouge2_scorer():
    from rouge_score import rouge_scorer  # lazy: pulls in nltk

    return rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)


def rouge2_f(prediction: str, reference: str) -> float:
    """ROUGE-2 F-measure (Porter-stemmed bigrams) of `prediction` against `reference`.

    The rouge_score tokenizer keeps only [a-z0-9] tokens, so it is meant for English answers.
    """
    return _rouge2_scorer().score(reference, prediction)["rouge2"].fmeasure


# A stand-alone digit 1-4: "3", "The answer is 2.", "5 then 1" -> 1; digits inside numbers ("12") are not choices.
_CHOICE = re.compile(r"(?<!\d)[1-4](?!\d)")


def mc_choice(answer: str) -> int | None:
    """The first choice number (1-4) in a model's answer, or None if there is none."""
    match = _CHOICE.search(answer)
    return int(match.group()) if match else None


def mc_correct(answer: str, gold: int) -> bool:
    """Whether the answer picks the gold choice; an answer without a choice number is wrong."""
    return mc_choice(answer) == gold


JUDGE_PROMPT = """You are grading an answer to a scientific question.

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{prediction}

On a scale from 0 to 10, how much of the information in the reference answer does the answer to grade contain? 0 means none of it, 10 means all of it; ignore style and length. Reply in the form "Score: N" followed by a one-sentence reason."""


def judge_prompt(question: str, reference: str, prediction: str) -> str:
    """The LLM-judge prompt for one answer."""
    return JUDGE_PROMPT.format(question=question.strip(), reference=reference.strip(), prediction=prediction.strip())


_NUMBER = r"(\d+(?:\.\d+)?)"
_JUDGE_PATTERNS = (
    re.compile(rf"score(?:\s+of)?\W{{0,5}}{_NUMBER}", re.IGNORECASE),  # "Score: 7", "**Score**: 7", "a score of 7"
    re.compile(rf"{_NUMBER}\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE),  # "7/10", "7 out of 10"
    re.compile(rf"^\W*{_NUMBER}\W*$"),  # a bare number
)


def parse_judge_score(reply: str) -> float | None:
    """The 0-10 grade in a judge's reply, scaled to 0-1; None if absent or out of range."""
    for pattern in _JUDGE_PATTERNS:
        match = pattern.search(reply)
        if match:
            value = float(match.group(1))
            return value / 10 if 0 <= value <= 10 else None
    return None
