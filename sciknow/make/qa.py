"""Task 4 datasets: Q&A pairs generated from passages, and multiple-choice items built from them.

An LLM, prompted as a textbook author, writes numbered Q&A pairs from each passage; `parse_qa` reads
them back tolerantly. Multiple-choice items reuse the answers of sibling questions (same passage) as
distractors, so the wrong choices are on-topic and plausible.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sciknow.generate import Backend
from sciknow.multiple_choice import MCItem

QA_PROMPT = """You are the author of a science textbook. Read the passage below and write {n} question-and-answer pairs that teach the knowledge in it.

Rules:
- Each answer explains its reasoning step by step and ends with a clear conclusion.
- Each question must be understandable on its own: supplement any background the passage takes for granted, and never use a term, abbreviation or symbol without defining it.
- Never refer to the source: do not write "this study", "this paper", "this work", "the authors", "the passage", "the text" or similar phrases.
- Follow the template exactly: number the pairs from 1 to {n} and separate consecutive pairs with a line containing only "--".

Template:
Q1: <question>
A1: <answer>
--
Q2: <question>
A2: <answer>
--
...

Passage:
{passage}"""


@dataclass(frozen=True)
class QAPair:
    """A question, its answer, and the passage it was generated from ("" if unknown)."""

    question: str
    answer: str
    context: str = ""


@dataclass
class QAStats:
    """What happened while building a Q&A set; malformed = a generation yielding no pair at all."""

    passages: int = 0
    generations: int = 0
    pairs: int = 0
    dropped_pairs: int = 0
    malformed_generations: int = 0


def qa_prompt(passage: str, n: int) -> str:
    """The generation prompt asking for `n` Q&A pairs about `passage`."""
    return QA_PROMPT.format(n=n, passage=passage.strip())


# A label such as "Q1:", "**Q1:**", "**A2**:", "1. Question 3.", "Answer:". Labels without a number
# must start a line; numbered ones may also follow whitespace ("Q1: ... A1: ..." on one line).
_EMPH = r"[*_]{0,3}"
_LABEL = re.compile(
    rf"(?:(?:^|\n)[ \t>#-]*(?:\d+[.)][ \t]*)?{_EMPH}[ \t]*(?P<kind>Q|A|Question|Answer)[ \t]*\d*"
    rf"|(?<=\s){_EMPH}(?P<inline>Q|A)\d+)"
    rf"[ \t]*{_EMPH}[ \t]*[:.)][ \t]*{_EMPH}",
    re.IGNORECASE,
)
_SEPARATOR_LINE = re.compile(r"^\s*(?:-{2,}|—+|\*{3,}|_{3,})\s*$", re.MULTILINE)


def _clean(text: str) -> str:
    text = _SEPARATOR_LINE.sub("", text)
    text = re.sub(r"\s*-{2,}\s*$", "", text.strip())  # a trailing inline "--"
    text = re.sub(r"^[*_]+|[*_]+$", "", text.strip())  # bold markers left around the content
    return text.strip()


def _parse(text: str) -> tuple[list[QAPair], int]:
    """Pairs in `text` and the number of incomplete pairs dropped.

    Numbers in labels are ignored (pairs form in order). A label that does not fit the Q, A, Q, A...
    sequence (a second answer, an inline "A1:" inside an answer) is kept as part of the text.
    """
    # Pass 1: pick the labels that fit the sequence. state: None (no question yet), "Q" or "A" (last accepted).
    accepted: list[tuple[str, re.Match[str]]] = []
    state: str | None = None
    for label in _LABEL.finditer(text):
        kind = (label["kind"] or label["inline"])[0].upper()
        if kind == "Q" and (label["kind"] or state != "Q"):
            accepted.append(("Q", label))
            state = "Q"
        elif kind == "A" and state == "Q":
            accepted.append(("A", label))
            state = "A"
    # Pass 2: the text between accepted labels is their content.
    pairs: list[QAPair] = []
    dropped = 0
    for i, (kind, label) in enumerate(accepted):
        if kind != "Q":
            continue
        end = accepted[i + 1][1].start() if i + 1 < len(accepted) else len(text)
        question = _clean(text[label.end():end])
        answer = ""
        if i + 1 < len(accepted) and accepted[i + 1][0] == "A":
            answer_end = accepted[i + 2][1].start() if i + 2 < len(accepted) else len(text)
            answer = _clean(text[accepted[i + 1][1].end():answer_end])
        if question and answer:
            pairs.append(QAPair(question, answer))
        else:
            dropped += 1
    return pairs, dropped


def parse_qa(text: str) -> list[QAPair]:
    """Q&A pairs in a generation; pairs with an empty question or answer are dropped."""
    return _parse(text)[0]


def build_qa(backend: Backend, passages: Sequence[str], n_per_passage: int, max_new_tokens: int = 1024,
             generations_per_passage: int = 1) -> tuple[list[QAPair], QAStats]:
    """Generate and parse Q&A pairs for every passage; each pair keeps its passage as context."""
    prompts = [qa_prompt(p, n_per_passage) for p in passages for _ in range(generations_per_passage)]
    sources = [p for p in passages for _ in range(generations_per_passage)]
    outputs = backend.complete(prompts, max_new_tokens) if prompts else []
    if len(outputs) != len(prompts):
        raise ValueError(f"backend returned {len(outputs)} texts for {len(prompts)} prompts")
    stats = QAStats(passages=len(passages), generations=len(outputs))
    pairs: list[QAPair] = []
    for passage, output in zip(sources, outputs):
        found, dropped = _parse(output if isinstance(output, str) else "")
        stats.dropped_pairs += dropped
        stats.malformed_generations += not found
        pairs.extend(replace(pair, context=passage) for pair in found)
    stats.pairs = len(pairs)
    return pairs, stats


_CONTEXT_NOUNS = (r"stud(?:y|ies)|papers?|works?|articles?|passages?|texts?|reports?|experiments?|research|"
                  r"methods?|approach(?:es)?|techniques?|models?|systems?|materials?|compounds?|samples?|"
                  r"molecules?|polymers?|reactions?|results?|findings?|data|values?|tables?|figures?|sections?|"
                  r"cases?|devices?|process(?:es)?|structures?|catalysts?|solutions?|investigations?|"
                  r"analys[ie]s|authors?|researchers?|measurements?|conditions?|observations?|equations?")
_NEEDS_CONTEXT = re.compile(
    # "this"/"these" in a stand-alone question nearly always point at something outside it.
    r"\b(?:this|these)\b"
    rf"|\b(?:that|those)\s+(?:{_CONTEXT_NOUNS})\b"
    rf"|\bthe\s+(?:present\s+|current\s+|above\s+|given\s+)?(?:study|paper|article|passage|text|authors?|researchers)\b"
    r"|\b(?:the\s+above|above[- ]mentioned|aforementioned|mentioned\s+above|described\s+above)\b",
    re.IGNORECASE,
)


def needs_context(question: str) -> bool:
    """True if the question refers to its source ("this method", "the study", "the above"...)."""
    return bool(_NEEDS_CONTEXT.search(question))


def qa_instruction(pair: QAPair) -> str:
    """The training instruction for a pair: the question, preceded by its passage when it needs one."""
    if pair.context and needs_context(pair.question):
        return f"{pair.context.strip()}\n\n{pair.question}"
    return pair.question


def group_by_context(pairs: Iterable[QAPair]) -> dict[str, list[QAPair]]:
    """Pairs grouped by their source passage, in first-seen order."""
    groups: dict[str, list[QAPair]] = {}
    for pair in pairs:
        groups.setdefault(pair.context, []).append(pair)
    return groups


# ---------------------------------------------------------------- multiple choice


def build_multiple_choice(pairs_by_context: Mapping[str, Sequence[QAPair]], seed: int,
                          include_context: bool = True) -> list[MCItem]:
    """For each pair: its answer + 3 answers of sibling pairs as distractors, shuffled with `seed`.

    Contexts with fewer than 4 pairs are skipped, as are pairs without 3 distractors differing from
    their answer (so the right answer appears exactly once). With `include_context`, questions that
    need their passage (see `needs_context`) carry it.
    """
    rng = random.Random(seed)
    items = []
    for context, pairs in pairs_by_context.items():
        if len(pairs) < 4:
            continue
        for i, pair in enumerate(pairs):
            others = list(dict.fromkeys(p.answer for j, p in enumerate(pairs) if j != i and p.answer != pair.answer))
            if len(others) < 3:
                continue
            choices = rng.sample(others, 3)
            gold = rng.randrange(4) + 1  # uniform over 1-4
            choices.insert(gold - 1, pair.answer)
            keep_context = include_context and needs_context(pair.question)
            items.append(MCItem(pair.question, tuple(choices), gold, context if keep_context else ""))
    return items
