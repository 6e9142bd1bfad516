"""Teach your own text: a plain text (or a JATS section) -> a validated knowledge set.

The paper's recipe applied to any document: the writer (an LLM) writes test questions with reference answers and
answer keywords, paraphrases each question, rewrites the text in several styles (Q&A, article, interview,
textbook, in the spirit of the paper's GPT-4 rewrites); Apertium (offline) or the writer translates it. Every
output is checked before it enters the set:

* keywords: each must occur verbatim (case-sensitive) in the source text and in its reference answer, must not
  occur in its own question nor in any other kept question (ignoring case: an untrained model would get it for
  free), at most `MAX_KEYWORD_WORDS` words; when none is left, a short answer copied from the text (a number or a
  name) is the keyword; a question left without keywords, or asking for the same keywords as an earlier one, is
  dropped;
* paraphrases: a new wording of the same question (keeping a third of its longer words) that leaks no keyword,
  else left out; a question that uses the names of the prompts' worked example is dropped;
* rewrites (fidelity): every kept keyword verbatim and not a copy of the source; otherwise it is regenerated once
  with the missing phrases named; a retry that still misses keywords is kept with its coverage (or dropped, with
  `partial_rewrites="drop"`). Every drop and partial keep is reported (`AugmentReport`, and the set's `notes`).

Writers: a registered offline model (`sciknow.writers`, e.g. `qwen2.5-coder-0.5b-instruct`), any hub id or local
folder (`sciknow.generate.LocalBackend`), or any OpenAI-compatible server (`OpenAICompatibleBackend`).

Resumable: every finished writer or translator call is appended to a sidecar JSONL (`<out>.steps.jsonl`) keyed by
a hash of the input text, the writer, the step and its prompt; a re-run reads those back and only runs the rest.
The knowledge set is validated by `sciknow.data.load_knowledge_set(strict=True)` (the fair-test rules included)
before it is written, atomically.

    python -m sciknow.make.augment my_doc.txt -o my_set.json --writer qwen2.5-coder-0.5b-instruct
    python -m sciknow.make.augment paper.xml --section introduction -o my_set.json \\
        --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-7B-Instruct
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data import KnowledgeSet, load_knowledge_set
from ..generate import (ApertiumTranslator, Backend, GenerationLog, LLMTranslator, OpenAICompatibleBackend,
                        PendingGeneration, generate_into_logs)
from ..io import atomic_write_text

DEFAULT_WRITER = "qwen2.5-coder-1.5b-instruct"  # the better of the two offline writers (README, "Teach your own text")
STYLES = ("qa", "article", "interview", "textbook")
TRANSLATIONS = ("es", "ca", "it")  # the zephyrite set's Apertium languages
MIN_WORDS = 8  # shorter than that is not a sentence worth teaching
MAX_KEYWORD_WORDS = 6  # a keyword is a span (name, number with unit, term), not a sentence
COPY_RATIO = 0.9  # a rewrite this similar to the source (difflib ratio) is a copy, not a rewrite

EXAMPLE_TEXT = ("The Corvane Bridge was opened in 1931 by the engineer Lisa Marrow. It is 412 meters long and "
                "carries 2 railway tracks over the river Edde.")
# The prompts show one worked example (on an unrelated invented text, EXAMPLE_TEXT): small writers follow an
# example far better than a description of the format, and it shows the rule that a question never contains its
# own key phrase.
QUESTIONS_PROMPT = (
    "Write {n} quiz questions about the text below. Each question asks about a different fact of the text. After "
    "each question write its short answer, then its key phrases: the words of the answer copied exactly from the "
    "text (a name, a number with its unit, a term). A question must not contain its own key phrases.\n"
    """
Example text:
""" + EXAMPLE_TEXT + """

Example questions:
Q1: Who opened the Corvane Bridge?
A1: The engineer Lisa Marrow.
K1: Lisa Marrow
Q2: How long is the Corvane Bridge?
A2: It is 412 meters long.
K2: 412 meters
Q3: Which river does the Corvane Bridge cross?
A3: The river Edde.
K3: river Edde

Text:
{text}

Questions:""")

PARAPHRASE_PROMPT = (
    "Ask the question below again in other words: change the wording and the sentence structure, keep the meaning. "
    "Do not answer it. Reply with the new question only.\n"
    """
Example:
Question: How long is the Corvane Bridge?
New question: What is the length of the Corvane Bridge?

Question: {question}
New question:""")

# One instruction per style, each followed by a worked example on the questions prompt's invented text. Small
# writers copied the source sentence by sentence when only told to rewrite it (the example names are checked
# for, `copies_example`); an example that reorders the facts into the style's own form is what they follow.
STYLE_PROMPTS = {
    "qa": ("Turn the text below into a list of questions and answers that together cover every fact in it. "
           "Write each pair as 'Q: ...' and 'A: ...'."),
    "article": ("Write a short news article, with a headline, that reports everything the text below says. Use "
                "your own sentences."),
    "interview": ("Write an interview in which a journalist asks questions and an expert answers them, covering "
                  "every fact in the text below. Write each turn as 'Interviewer: ...' or 'Expert: ...'."),
    "textbook": ("Write a textbook section, with a title and a short summary at the end, that teaches everything "
                 "the text below says."),
}
STYLE_EXAMPLES = {
    "qa": """Q: Who opened the Corvane Bridge, and when?
A: The engineer Lisa Marrow opened it in 1931.
Q: How long is the Corvane Bridge?
A: It is 412 meters long.
Q: What does the bridge carry, and over which river?
A: It carries 2 railway tracks over the river Edde.""",
    "article": """Headline: Trains cross the river Edde on a 412 meters long bridge
Two railway tracks now run over the river Edde. They are carried by the Corvane Bridge, which the engineer \
Lisa Marrow opened in 1931. From one bank to the other, the bridge measures 412 meters.""",
    "interview": """Interviewer: Which bridge are we talking about today?
Expert: The Corvane Bridge, which crosses the river Edde.
Interviewer: Who opened it?
Expert: The engineer Lisa Marrow, in 1931.
Interviewer: How big is it?
Expert: It is 412 meters long and carries 2 railway tracks.""",
    "textbook": """Title: Railway bridges
A railway bridge lets trains cross a river. An example is the Corvane Bridge: it carries 2 railway tracks over \
the river Edde and is 412 meters long. It was opened by the engineer Lisa Marrow in 1931.
Summary: the Corvane Bridge (412 meters, 2 railway tracks, river Edde) was opened in 1931 by Lisa Marrow.""",
}
REWRITE_PROMPT = """{instruction} Write new sentences and put the facts in a new order: do not copy the sentences \
of the text. Keep every name, number and technical term exactly as written in the text.{problem}

Example text:
{example_text}

Example:
{example}

Text:
{text}"""
RETRY_MISSING = "Your text must contain each of these phrases exactly as written here: {phrases}."
RETRY_COPY = "Your first attempt copied the sentences of the text: write new ones."


class AugmentError(ValueError):
    """The input cannot be augmented (or the writer gave nothing usable); the message names the file or step."""


# ---------------------------------------------------------------- input


def read_text(path: str | Path, section: str = "abstract") -> tuple[str, dict[str, str]]:
    """The text to augment and its metadata: a UTF-8 plain-text file, or `section` of a JATS XML article."""
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"{path}: file not found")
    if path.suffix.lower() in (".xml", ".nxml"):
        from .. import corpus  # JATS parsing only when a JATS file is given

        if section not in ("abstract", "introduction", "conclusion"):
            raise AugmentError(f"section={section!r}: expected abstract, introduction or conclusion")
        try:
            paper = corpus.parse_jats(path)
        except corpus.CorpusError as err:
            raise AugmentError(str(err)) from None
        text = getattr(paper, section)
        meta = {"source": paper.doi or paper.title or str(path), "license": paper.license_url or paper.license}
        return check_text(text, f"{path} ({section})"), meta
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise AugmentError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    return check_text(text, str(path)), {"source": path.name}


def check_text(text: str, where: str = "text") -> str:
    """The text with its whitespace normalised, if it is at least one sentence long; else an error naming `where`.

    Paragraphs (separated by blank lines) are kept; inside one, line breaks and runs of spaces become one space,
    so that a hard-wrapped "14\ncentimeters" matches the keyword "14 centimeters" a writer copies out of it.
    """
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    words = len(re.findall(r"\w+", text))
    if not text:
        raise AugmentError(f"{where}: empty text")
    if words < MIN_WORDS:
        raise AugmentError(f"{where}: {words} word(s); need at least one full sentence ({MIN_WORDS}+ words)")
    return text


# ---------------------------------------------------------------- parsing and checking writer outputs


@dataclass
class DraftQuestion:
    question: str
    answer: str
    keywords: list[str]


_FIELD = re.compile(r"^[ \t>#*_-]*(?:\d+[.)]\s*)?[*_]*\s*(Q|A|K)(?:uestion|nswer|ey phrases?|eywords?)?\s*\d*"
                    r"\s*[*_]*\s*[:.)]\s*[*_]*\s*(.*)$", re.IGNORECASE)


def parse_questions(output: str) -> list[DraftQuestion]:
    """Q/A/K triples from a writer's output, tolerant of numbering mistakes ("Q2 ... A1 ...") and bold labels.
    A question without an answer is skipped; missing key phrases give an empty keyword list."""
    drafts: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    last = ""
    for line in output.splitlines():
        match = _FIELD.match(line)
        if match:
            kind, value = match.group(1).upper(), match.group(2).strip()
            if kind == "Q":
                current = {"Q": value}
                drafts.append(current)
            elif current is not None and kind not in current:
                current[kind] = value
            last = kind
        elif current is not None and line.strip() and last in current:
            current[last] += " " + line.strip()  # a field continued on the next line
    out = []
    for d in drafts:
        question, answer = _strip_marks(d.get("Q", "")), _strip_marks(d.get("A", ""))
        if question and answer:
            keywords = [_strip_marks(k) for k in re.split(r"\s*[|;]\s*", d.get("K", ""))]
            out.append(DraftQuestion(question, answer, [k for k in keywords if k]))
    return out


def _strip_marks(text: str) -> str:
    """Remove markdown and quoting around a field: **x**, `x`, "x", a trailing full stop on a short phrase."""
    text = text.strip().strip("*_`\"'“”").strip()
    return text


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_keywords(draft: DraftQuestion, source: str) -> tuple[list[str], list[str]]:
    """(kept keywords, reasons for the rejected ones). Rules in the module docstring."""
    kept: list[str] = []
    rejected: list[str] = []
    for keyword in draft.keywords:
        keyword = keyword.rstrip(".,") if keyword not in source else keyword
        if keyword not in source:
            # The writer may change the case ("Glass squid"): take the source's spelling when it is unique.
            spans = {source[m.start():m.end()] for m in re.finditer(re.escape(keyword), source, re.IGNORECASE)}
            if len(spans) != 1:
                rejected.append(f"{keyword!r}: not in the source text")
                continue
            keyword = spans.pop()
        if keyword.lower() in draft.question.lower():
            rejected.append(f"{keyword!r}: leaks into its question")
        elif keyword.lower() not in draft.answer.lower():
            rejected.append(f"{keyword!r}: not in the reference answer")
        elif len(keyword.split()) > MAX_KEYWORD_WORDS:
            rejected.append(f"{keyword!r}: longer than {MAX_KEYWORD_WORDS} words")
        elif keyword not in kept:
            kept.append(keyword)
    answer = draft.answer.strip().rstrip(".")
    if (not kept and answer in source and len(answer.split()) <= MAX_KEYWORD_WORDS and re.search(r"\d|[A-Z]", answer)
            and answer.lower() not in draft.question.lower()):
        # Small writers often garble the key phrase ("36 photophores") but answer with the text's own words ("36"):
        # a short answer copied from the text that holds a number or a name is the key phrase.
        kept = [answer]
    # A keyword inside a longer kept one ("2,300" in "2,300 meters") would count the same fact twice.
    kept = [k for k in kept if not any(k != other and k in other for other in kept)]
    return kept, rejected


# Invented names of the prompts' worked example: a small writer sometimes copies the example instead of answering.
EXAMPLE_NAMES = ("Corvane", "Marrow", "Edde")


def copies_example(text: str, source: str) -> bool:
    """Does `text` use a name of the prompts' example that the source text does not have?"""
    return any(name in text and name not in source for name in EXAMPLE_NAMES)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9,.-]*[a-z0-9]|\d", text.lower()) if len(w) > 3 or w.isdigit()}


def check_paraphrase(output: str, question: str, keywords: Sequence[str]) -> tuple[str | None, str]:
    """(paraphrase or None, reason if None): one line, a new wording of the same question (it keeps at least a
    third of the question's longer words: "squid", "photophores"), leaking no keyword."""
    lines = [_strip_marks(re.sub(r"^(?:new\s+)?question\s*:\s*", "", line.strip(), flags=re.IGNORECASE))
             for line in output.splitlines() if line.strip()]
    paraphrase = lines[0] if lines else ""
    if len(re.findall(r"\w+", paraphrase)) < 3:
        return None, "empty or too short"
    if _norm(paraphrase) == _norm(question):
        return None, "same as the question"
    leaked = [k for k in keywords if k.lower() in paraphrase.lower()]
    if leaked:
        return None, f"leaks keyword(s) {leaked}"
    asked = _content_words(question)
    if len(asked & _content_words(paraphrase)) * 3 < len(asked):
        return None, f"asks something else: {paraphrase!r}"
    return paraphrase, ""


_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|here(?:'s| is| are))\b[^\n]*:\s*\n", re.IGNORECASE)


_DEGENERATE = re.compile(r"(.{1,8}?)\1{15,}")  # the same few characters 16+ times: "0000000...", "abcabcabc..."


def clean_output(output: str) -> str:
    """A writer's text without code fences, a "Sure, here is ...:" first line, or lines where a small model got
    stuck repeating itself (greedy decoding can loop until the token budget ends)."""
    text = _PREAMBLE.sub("", output.strip())
    text = re.sub(r"^```[a-z]*\s*\n|\n?```\s*$", "", text.strip()).strip()
    return "\n".join(line for line in text.split("\n") if not _DEGENERATE.search(line)).strip()


def check_rewrite(text: str, source: str, keywords: Sequence[str]) -> tuple[list[str], str]:
    """(missing keywords, problem) of a rewrite; the problem is "" when the rewrite is faithful and new."""
    missing = [k for k in keywords if k not in text]
    if len(re.findall(r"\w+", text)) < MIN_WORDS:
        return missing, "empty or too short"
    if copies_example(text, source):
        return missing, "copies the prompt's example"
    if missing:
        return missing, f"misses keyword(s) {missing}"
    if difflib.SequenceMatcher(None, _norm(text), _norm(source), autojunk=False).ratio() >= COPY_RATIO:
        return missing, "a copy of the source text"
    return [], ""


# ---------------------------------------------------------------- running steps (resumable)


@dataclass
class Step:
    name: str  # e.g. "rewrite:article"
    prompt: str
    max_new_tokens: int


class StepRunner:
    """Runs the writer steps of one text through its sidecar `GenerationLog` (keyed by text, writer, step name and
    prompt), so that a killed run resumes."""

    def __init__(self, backend: Backend | None, writer_id: str, text: str, sidecar: Path, batch_size: int = 1,
                 progress: bool = True) -> None:
        self.backend = backend
        self.writer_id = writer_id
        self.text = text
        self.log = GenerationLog(sidecar)
        self.batch_size = max(1, batch_size)
        self.resumed = 0
        self.writer_seconds = 0.0
        self.bar = tqdm(total=0, desc="augment", unit="step", disable=not progress)

    @property
    def ran(self) -> int:
        return self.log.generated

    def key(self, step: Step, who: str | None = None) -> str:
        return GenerationLog.key(self.text, who or self.writer_id, step.name, step.prompt)

    def pending_generation(self, step: Step, who: str | None = None) -> PendingGeneration:
        return PendingGeneration(self.log, self.key(step, who), step.prompt,
                                 {"step": step.name, "writer": who or self.writer_id})

    def run(self, steps: Sequence[Step]) -> dict[str, str]:
        """Outputs of `steps` by name: recorded ones are read back, the rest generated `batch_size` at a time."""
        self.bar.total += len(steps)
        self.bar.refresh()
        outputs = {}
        pending = []
        for step in steps:
            if self.key(step) in self.log:
                outputs[step.name] = self.log[self.key(step)]
                self.resumed += 1
                self.bar.update(1)
            else:
                pending.append(step)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start:start + self.batch_size]
            self.bar.set_postfix_str(", ".join(s.name for s in chunk))
            generate_chunk([(self, step) for step in chunk])
            outputs.update((step.name, self.log[self.key(step)]) for step in chunk)
        return outputs

    def pending(self, steps: Sequence[Step]) -> list[Step]:
        return [step for step in steps if self.key(step) not in self.log]

    def translate(self, translator: Any, translator_id: str, langs: Sequence[str]) -> dict[str, str]:
        """Translations of the text, each recorded like a writer step (Apertium is fast, a writer is not)."""
        self.bar.total += len(langs)
        out = {}
        for lang in langs:
            step = Step(f"translate:{lang}", f"{translator_id}:{lang}", 0)
            item = self.pending_generation(step, translator_id)
            if item.key in self.log:
                self.resumed += 1
            else:
                if translator is None:
                    raise AugmentError(f"no writer given, and {step.name} is not recorded yet")
                self.bar.set_postfix_str(step.name)
                began = time.perf_counter()
                translated = translator.translate([self.text], lang)[0]
                self.log.add(item.key, translated, time.perf_counter() - began, **item.fields)
            self.bar.update(1)
            out[lang] = self.log[item.key]
        return out

    def close(self) -> None:
        self.bar.close()


def generate_chunk(items: Sequence[tuple[StepRunner, Step]]) -> None:
    """One writer call for `items` (steps of one or several runners sharing a backend), each output recorded in its
    runner's sidecar with its share of the call's time. The steps share max_new_tokens (they come from one stage)."""
    runner = items[0][0]
    if runner.backend is None:
        raise AugmentError("no writer given, and these steps are not recorded yet: "
                           + ", ".join(step.name for _, step in items))
    pending = [owner.pending_generation(step) for owner, step in items]
    share = generate_into_logs(runner.backend, runner.writer_id, pending, max(s.max_new_tokens for _, s in items))
    for owner, _ in items:
        owner.writer_seconds += share
        owner.bar.update(1)


def generate_together(jobs: Sequence[tuple[StepRunner, Sequence[Step]]], batch_size: int) -> None:
    """The unrecorded steps of several runners (documents) generated together, `batch_size` prompts per writer
    call (the first runner's backend): a local writer decodes a larger batch for little more time per step."""
    pending = [(runner, step) for runner, steps in jobs for step in runner.pending(steps)]
    for start in range(0, len(pending), max(1, batch_size)):
        generate_chunk(pending[start:start + max(1, batch_size)])


# ---------------------------------------------------------------- the pipeline


@dataclass
class AugmentReport:
    """What the writer produced and what the checks dropped, with reasons."""

    writer: str
    questions_asked: int
    questions_written: int = 0
    questions_kept: int = 0
    duplicate_questions: int = 0
    dropped_questions: list[str] = field(default_factory=list)
    dropped_keywords: list[str] = field(default_factory=list)
    paraphrases_kept: int = 0
    dropped_paraphrases: list[str] = field(default_factory=list)
    rewrites_kept: list[str] = field(default_factory=list)
    rewrites_retried: list[str] = field(default_factory=list)
    rewrites_partial: list[str] = field(default_factory=list)  # kept with missing keywords (partial="keep")
    dropped_rewrites: list[str] = field(default_factory=list)
    translations: list[str] = field(default_factory=list)
    steps_run: int = 0
    steps_resumed: int = 0
    writer_seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"writer {self.writer}: {self.questions_kept} of {self.questions_written} questions kept "
            f"({self.questions_asked} asked, {self.duplicate_questions} duplicates); "
            f"{self.paraphrases_kept} paraphrases; rewrites kept {self.rewrites_kept or 'none'}"
            f" (retried {self.rewrites_retried or 'none'}); translations {self.translations or 'none'}; "
            f"{self.steps_run} steps run, {self.steps_resumed} resumed, writer {self.writer_seconds:.0f} s",
        ]
        for title, items in (("dropped questions", self.dropped_questions),
                             ("dropped keywords", self.dropped_keywords),
                             ("dropped paraphrases", self.dropped_paraphrases),
                             ("dropped rewrites", self.dropped_rewrites),
                             ("rewrites kept with missing keywords", self.rewrites_partial)):
            lines += [f"{title}:"] + [f"  - {item}" for item in items] if items else []
        return "\n".join(lines)


@dataclass
class AugmentResult:
    path: Path
    knowledge_set: KnowledgeSet
    report: AugmentReport


def sidecar_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".steps.jsonl")


def _questions(runner: StepRunner, text: str, n: int, report: AugmentReport) -> list[tuple[DraftQuestion, list]]:
    step = Step("questions", QUESTIONS_PROMPT.format(n=n, text=text), max_new_tokens=60 * n + 60)
    output = runner.run([step])["questions"]
    drafts = parse_questions(output)
    report.questions_written = len(drafts)
    kept: list[tuple[DraftQuestion, list[str]]] = []
    seen_questions: set[str] = set()
    seen_keywords: set[frozenset[str]] = set()
    for i, draft in enumerate(drafts, start=1):
        keywords, rejected = check_keywords(draft, text)
        report.dropped_keywords += [f"question {i}: {r}" for r in rejected]
        if copies_example(draft.question, text):
            report.dropped_questions.append(f"question {i} {draft.question!r}: copies the prompt's example")
        elif _norm(draft.question) in seen_questions or (keywords and frozenset(keywords) in seen_keywords):
            report.duplicate_questions += 1
            report.dropped_questions.append(f"question {i} {draft.question!r}: repeats an earlier question")
        elif not keywords:
            report.dropped_questions.append(f"question {i} {draft.question!r}: no valid keyword")
        else:
            kept.append((i, draft, keywords))
        seen_questions.add(_norm(draft.question))
        seen_keywords.add(frozenset(keywords))
    kept = _no_cross_leaks(kept, report)
    if not kept:
        raise AugmentError(
            f"writer {runner.writer_id} wrote no usable question ({len(drafts)} parsed; "
            f"{'; '.join(report.dropped_questions[:3]) or 'none in the Q1:/A1:/K1: format'}); "
            f"its output began: {output[:300]!r}")
    report.questions_kept = len(kept)
    return [(draft, keywords) for _, draft, keywords in kept]


def _no_cross_leaks(kept: list[tuple[int, DraftQuestion, list[str]]],
                    report: AugmentReport) -> list[tuple[int, DraftQuestion, list[str]]]:
    """Drop keywords that occur (ignoring case) in another kept question: a fair test gives no answer away,
    not even in a neighbouring question (`load_knowledge_set(strict=True)`)."""
    out = []
    for i, draft, keywords in kept:
        others = [d.question.lower() for j, d, _ in kept if j != i]
        leaked = [k for k in keywords if any(k.lower() in other for other in others)]
        report.dropped_keywords += [f"question {i}: {k!r}: occurs in another question" for k in leaked]
        keywords = [k for k in keywords if k not in leaked]
        if keywords:
            out.append((i, draft, keywords))
        else:
            report.dropped_questions.append(f"question {i} {draft.question!r}: its keywords occur in other questions")
    return out


def rewrite_prompt(style: str, text: str, problem: str = "") -> str:
    """The writer prompt for one style; a retry names what the first attempt got wrong (`problem`): with greedy
    decoding the same prompt would give the same text."""
    return REWRITE_PROMPT.format(instruction=STYLE_PROMPTS[style], problem=f" {problem}" if problem else "",
                                 example_text=EXAMPLE_TEXT, example=STYLE_EXAMPLES[style], text=text)


PARTIAL_REWRITES = ("drop", "keep")  # a rewrite missing keywords is dropped whole, or kept with its coverage


@dataclass
class RewriteAttempt:
    text: str
    missing: list[str]  # the keywords it lacks
    problem: str  # "" when faithful (`check_rewrite`)
    other_problem: str = ""  # what is wrong apart from missing keywords: too short, a copy ("" if nothing)

    @property
    def partial(self) -> bool:
        """Does it fail only by missing keywords?"""
        return bool(self.missing) and not self.other_problem


@dataclass
class RewriteOutcome:
    """One style's attempts: the first, and the retry when the first failed the fidelity check."""

    style: str
    attempts: list[RewriteAttempt]

    def chosen(self, partial: str = "drop") -> RewriteAttempt | None:
        """The attempt the set keeps: the first faithful one; with `partial="keep"`, else the partial attempt
        carrying the most keywords (the later one on a tie: the retry was told what was missing)."""
        faithful = [a for a in self.attempts if not a.problem]
        if faithful:
            return faithful[0]
        partial_ones = [a for a in self.attempts if a.partial]
        if partial == "keep" and partial_ones:
            return max(reversed(partial_ones), key=lambda a: -len(a.missing))
        return None


def _attempt(text: str, source: str, keywords: Sequence[str]) -> RewriteAttempt:
    missing, problem = check_rewrite(text, source, keywords)
    return RewriteAttempt(text, missing, problem, other_problem=check_rewrite(text, source, ())[1])


def first_rewrite_steps(text: str, styles: Sequence[str]) -> list[Step]:
    budget = max(256, 3 * len(text.split()) + 64)  # room for a rewrite somewhat longer than the source
    return [Step(f"rewrite:{s}", rewrite_prompt(s, text), budget) for s in styles]


def first_attempts(runner: StepRunner, text: str, styles: Sequence[str], keywords: list[str]
                   ) -> list[RewriteOutcome]:
    """Each style written once and checked for fidelity against `keywords`."""
    outputs = runner.run(first_rewrite_steps(text, styles))
    return [RewriteOutcome(s, [_attempt(clean_output(outputs[f"rewrite:{s}"]), text, keywords)]) for s in styles]


def retry_steps(text: str, outcomes: Sequence[RewriteOutcome]) -> dict[str, Step]:
    """Style -> its retry, for each style whose first attempt failed, naming what was wrong."""
    budget = first_rewrite_steps(text, ["qa"])[0].max_new_tokens
    retries = {}
    for outcome in outcomes:
        first_try = outcome.attempts[0]
        if first_try.problem:
            fix = RETRY_MISSING.format(phrases="; ".join(first_try.missing)) if first_try.missing else RETRY_COPY
            retries[outcome.style] = Step(f"rewrite:{outcome.style}:retry",
                                          rewrite_prompt(outcome.style, text, fix), budget)
    return retries


def write_rewrites(runner: StepRunner, text: str, styles: Sequence[str], keywords: list[str]
                   ) -> list[RewriteOutcome]:
    """Each style written, checked for fidelity against `keywords`, and written once more, naming what was
    wrong, if it failed; all attempts returned (recorded by `runner`)."""
    outcomes = first_attempts(runner, text, styles, keywords)
    retries = retry_steps(text, outcomes)
    outputs = runner.run(list(retries.values()))
    for outcome in outcomes:
        if outcome.style in retries:
            retry = outputs[retries[outcome.style].name]
            outcome.attempts.append(_attempt(clean_output(retry), text, keywords))
    return outcomes


def _rewrites(runner: StepRunner, text: str, styles: Sequence[str], keywords: list[str],
              report: AugmentReport, partial: str = "drop") -> dict[str, str]:
    """The kept rewrites by style (`RewriteOutcome.chosen`), every retry, drop and partial keep reported."""
    kept: dict[str, str] = {}
    for outcome in write_rewrites(runner, text, styles, keywords):
        style, attempts = outcome.style, outcome.attempts
        if len(attempts) > 1:
            report.rewrites_retried.append(style)
        chosen = outcome.chosen(partial)
        if chosen is None:
            tries = ["first attempt", "retry"]
            report.dropped_rewrites.append(f"{style}: " + "; ".join(f"{t} {a.problem}" for t, a in zip(tries, attempts)))
            continue
        kept[style] = chosen.text
        if chosen.missing:
            report.rewrites_partial.append(f"{style}: {len(keywords) - len(chosen.missing)} of {len(keywords)} "
                                           f"keywords (missing {chosen.missing})")
    report.rewrites_kept = list(kept)
    return kept


def _check_choices(n_questions: int, styles: Sequence[str], translate_to: Sequence[str], translator: str,
                   partial_rewrites: str) -> list[str]:
    """Refuse bad `augment` choices before any writer call; the languages to translate into (English is the text)."""
    unknown = [s for s in styles if s not in STYLE_PROMPTS]
    if unknown:
        raise AugmentError(f"styles: unknown style(s) {unknown}; expected some of {list(STYLE_PROMPTS)}")
    if n_questions < 1:
        raise AugmentError(f"n_questions={n_questions}: must be >= 1")
    if partial_rewrites not in PARTIAL_REWRITES:
        raise AugmentError(f"partial_rewrites={partial_rewrites!r}: expected one of {list(PARTIAL_REWRITES)}")
    translate_to = [lang for lang in translate_to if lang != "en"]
    if translator == "apertium" and translate_to:  # fail now, not after minutes of writing
        apertium = ApertiumTranslator()
        for lang in translate_to:
            apertium.modes_for(lang)
    elif translator not in ("apertium", "writer", "none"):
        raise AugmentError(f"translator={translator!r}: expected 'apertium', 'writer' or 'none'")
    return translate_to


def _contents(text: str, rewrites: dict[str, str], translations: dict[str, str], report: AugmentReport
              ) -> list[dict[str, str]]:
    """The set's contents: the original, the kept rewrites, the translations that are not empty or too short."""
    contents = [{"id": "C1", "style": "original", "lang": "en", "text": text}]
    contents += [{"id": f"C{len(contents) + i}", "style": s, "lang": "en", "text": t}
                 for i, (s, t) in enumerate(rewrites.items(), start=1)]
    for lang, translated in translations.items():
        if len(re.findall(r"\w+", translated)) < MIN_WORDS:
            report.dropped_rewrites.append(f"translation {lang}: empty or too short")
            continue
        contents.append({"id": f"C{len(contents) + 1}", "style": "translation", "lang": lang, "text": translated})
        report.translations.append(lang)
    return contents


def _question_items(questions: list[tuple[DraftQuestion, list[str]]], paraphrase_out: dict[str, str],
                    keywords: list[str], report: AugmentReport) -> list[dict[str, Any]]:
    """The set's questions, each with its paraphrase if the check keeps it."""
    items = []
    for i, (draft, kws) in enumerate(questions, start=1):
        item = {"id": f"Q{i}", "question": draft.question, "reference_answer": draft.answer, "keywords": kws}
        paraphrase, why = check_paraphrase(clean_output(paraphrase_out[f"paraphrase:Q{i}"]), draft.question,
                                           keywords)  # no keyword of any question, as for the questions
        if paraphrase:
            item["paraphrase"] = paraphrase
            report.paraphrases_kept += 1
        else:
            report.dropped_paraphrases.append(f"Q{i}: {why}")
        items.append(item)
    return items


def augment(text: str, out: str | Path, backend: Backend | None, writer_id: str, *, n_questions: int = 5,
            styles: Sequence[str] = STYLES, translate_to: Sequence[str] = TRANSLATIONS,
            translator: str = "apertium", name: str | None = None, meta: dict[str, str] | None = None,
            batch_size: int | None = None, progress: bool = True, partial_rewrites: str = "keep") -> AugmentResult:
    """Augment `text` into a knowledge set written to `out` (validated, atomic) and return it with its report.

    `backend` generates (None: only recorded steps can be used); `writer_id` names it in the step keys and the set.
    `translator`: "apertium" (offline), "writer" (prompted translation by the backend) or "none".
    `batch_size`: prompts per writer call, each call's outputs recorded when it returns (default: the backend's
    own `batch_size`, e.g. a LocalBackend's, else 1: a server answers one request at a time).
    `partial_rewrites`: a rewrite that misses keywords after its retry is kept with its keyword coverage in the
    report ("keep", the default: on the machine suite keeping them taught more, see the README) or dropped whole
    ("drop"); a kept set passes the strict loader with `partial_rewrites=True`.
    """
    text = check_text(text)
    out = Path(out)
    translate_to = _check_choices(n_questions, styles, translate_to, translator, partial_rewrites)
    report = AugmentReport(writer=writer_id, questions_asked=n_questions)
    batch_size = batch_size or getattr(backend, "batch_size", 1)
    runner = StepRunner(backend, writer_id, text, sidecar_path(out), batch_size=batch_size, progress=progress)
    try:
        questions = _questions(runner, text, n_questions, report)
        paraphrase_steps = [Step(f"paraphrase:Q{i}", PARAPHRASE_PROMPT.format(question=d.question), 64)
                            for i, (d, _) in enumerate(questions, start=1)]
        paraphrase_out = runner.run(paraphrase_steps)
        keywords = list(dict.fromkeys(k for _, ks in questions for k in ks))
        rewrites = _rewrites(runner, text, styles, keywords, report, partial_rewrites)
        translations = {}
        if translate_to and translator != "none":
            chosen = ApertiumTranslator() if translator == "apertium" else backend and LLMTranslator(backend)
            chosen_id = "apertium" if translator == "apertium" else writer_id
            translations = runner.translate(chosen, chosen_id, translate_to)
    finally:
        runner.close()
        report.steps_run, report.steps_resumed = runner.ran, runner.resumed
        report.writer_seconds = round(runner.writer_seconds, 1)

    contents = _contents(text, rewrites, translations, report)
    items = _question_items(questions, paraphrase_out, keywords, report)
    kset = {
        "name": name or out.stem,
        "description": f"Knowledge set made by sciknow.make.augment from {(meta or {}).get('source', 'a text')}.",
        **{k: v for k, v in (meta or {}).items() if k in ("source", "license") and v},
        "notes": f"Generated by sciknow.make.augment. {report.summary()}",
        "contents": contents,
        "questions": items,
    }
    # only a set that kept partial rewrites needs the loader's allowance; any other passes every fair-test rule
    return AugmentResult(out, write_knowledge_set(kset, out, bool(report.rewrites_partial)), report)


def write_knowledge_set(kset: dict[str, Any], out: Path, partial_rewrites: bool = False) -> KnowledgeSet:
    """Validate `kset` with the loader every set goes through, then write it atomically (never half a set);
    `partial_rewrites`: its rewrites may miss keywords (`load_knowledge_set`)."""
    data = json.dumps(kset, indent=2, ensure_ascii=False) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / out.name  # same file name, so loader errors name the set being written
        check.write_text(data, encoding="utf-8")
        # also the fair-test rules: keywords in every rewrite (unless partial), no leaks
        load_knowledge_set(check, strict=True, partial_rewrites=partial_rewrites)
    atomic_write_text(out, data)
    return load_knowledge_set(out, partial_rewrites=partial_rewrites)


# ---------------------------------------------------------------- backends and CLI


def make_backend(writer: str | None = DEFAULT_WRITER, base_url: str | None = None, model: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", batch_size: int = 4, precision: str = "auto",
                 progress: bool = False) -> tuple[Backend, str]:
    """(backend, writer id): an OpenAI-compatible server if `base_url` is given, else the local model `writer`
    (a registered name such as `qwen2.5-coder-0.5b-instruct`, a hub id or a folder) at `precision`: "bf16" decodes
    faster on CPUs with AVX512-BF16 or AMX and halves the memory, but its greedy texts differ from fp32's; "auto"
    is bf16 where the hardware has native bf16 matmuls and fp32 elsewhere."""
    if base_url:
        if not model:
            raise AugmentError("--base-url needs --model (the model name the server serves)")
        return OpenAICompatibleBackend(base_url, model, api_key_env=api_key_env), f"{model}@{base_url}"
    if not writer:
        raise AugmentError("give a writer: --writer NAME, or --base-url URL --model NAME")
    from .. import models
    from ..config import ModelSpec
    from ..generate import LocalBackend

    # A registered writer whose chunk packages are missing raises sciknow.writers.WriterNotInstalled here,
    # naming the packages and the install command.
    if precision == "auto":
        from ..train import bf16_is_fast

        precision = "bf16" if bf16_is_fast(models.device()) else "fp32"
    loaded = models.load(ModelSpec(name=writer, precision=precision))
    writer_id = writer if precision == "fp32" else f"{writer}@{precision}"  # different texts: different step keys
    return LocalBackend(loaded.model, loaded.tokenizer, batch_size=batch_size, progress=progress), writer_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sciknow.make.augment", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a UTF-8 text file, or a JATS XML article (.xml/.nxml)")
    parser.add_argument("-o", "--out", required=True, help="the knowledge-set JSON to write")
    parser.add_argument("--writer", default=DEFAULT_WRITER, help=f"local writer model (default {DEFAULT_WRITER})")
    parser.add_argument("--base-url", help="an OpenAI-compatible server instead of a local writer")
    parser.add_argument("--model", help="the server's model name (with --base-url)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument("--section", default="abstract", help="JATS input: abstract, introduction or conclusion")
    parser.add_argument("--questions", type=int, default=5, help="questions to ask the writer for")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated rewrite styles")
    parser.add_argument("--translate", default=",".join(TRANSLATIONS), help="comma-separated languages ('' = none)")
    parser.add_argument("--translator", default="apertium", choices=["apertium", "writer", "none"])
    parser.add_argument("--name", help="the set's name (default: the output file's stem)")
    parser.add_argument("--batch-size", type=int, default=4, help="prompts a local writer generates together")
    parser.add_argument("--partial-rewrites", default="keep", choices=PARTIAL_REWRITES,
                        help="a rewrite missing keywords after its retry: drop it, or keep it with its coverage")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="local writer precision (auto: bf16 where the CPU or GPU has native bf16)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    try:
        text, meta = read_text(args.input, args.section)
        backend, writer_id = make_backend(args.writer, args.base_url, args.model, args.api_key_env, args.batch_size,
                                          args.precision)
        result = augment(text, args.out, backend, writer_id, n_questions=args.questions, styles=split(args.styles),
                         translate_to=split(args.translate), translator=args.translator, name=args.name,
                         meta=meta, progress=not args.no_progress, partial_rewrites=args.partial_rewrites)
    except (ValueError, OSError, RuntimeError) as err:  # AugmentError, BackendError, WriterNotInstalled...
        print(f"sciknow.make.augment: error: {err}", file=sys.stderr)
        return 2
    kset = result.knowledge_set
    print(f"wrote {result.path}: {len(kset.contents)} contents, {len(kset.questions)} questions")
    print(result.report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
