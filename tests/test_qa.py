"""Q&A parsing and building, multiple-choice construction, MMLU loading."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sciknow.make.qa import (
    QAPair,
    build_multiple_choice,
    build_qa,
    group_by_context,
    needs_context,
    parse_qa,
    qa_instruction,
    qa_prompt,
)
from sciknow.multiple_choice import MCItem, load_mmlu, mmlu_as_instructions

WELL_FORMED = """Q1: What is the boiling point of water at 1 atm?
A1: Water boils when its vapour pressure equals 1 atm, which happens at 100 °C.
--
Q2: Why does ice float?
A2: Step 1: ice is less dense than liquid water.
Step 2: less dense solids float, so ice floats.
--
Q3: What is H2O?
A3: Water."""

MARKDOWN = """Here are the question-answer pairs:

**Q1:** What is a catalyst?
**A1:** A substance that speeds up a reaction without being consumed.

---

**Q2**: What is activation energy?
**A2**: The minimum energy needed for a reaction to occur.
--"""


def test_qa_prompt_follows_the_papers_spirit() -> None:
    prompt = qa_prompt("  Water boils at 100 C.  ", 3)
    assert "textbook" in prompt and "step by step" in prompt and "this study" in prompt
    assert "Q1:" in prompt and "A1:" in prompt and "--" in prompt and "write 3 question" in prompt
    assert prompt.endswith("Passage:\nWater boils at 100 C.")


def test_parse_well_formed() -> None:
    pairs = parse_qa(WELL_FORMED)
    assert [p.question for p in pairs] == ["What is the boiling point of water at 1 atm?", "Why does ice float?",
                                           "What is H2O?"]
    assert pairs[1].answer == "Step 1: ice is less dense than liquid water.\nStep 2: less dense solids float, so ice floats."
    assert pairs[2].answer == "Water."


def test_parse_markdown_and_whitespace() -> None:
    pairs = parse_qa(MARKDOWN)
    assert pairs == [QAPair("What is a catalyst?", "A substance that speeds up a reaction without being consumed."),
                     QAPair("What is activation energy?", "The minimum energy needed for a reaction to occur.")]
    assert parse_qa("\n\n   Q1 :   spaced?  \n\n  A1 :  yes  \n\n") == [QAPair("spaced?", "yes")]
    assert parse_qa("Question 1: Long label?\nAnswer 1: Works.") == [QAPair("Long label?", "Works.")]
    assert parse_qa("Q1: Same line? A1: Yes. -- Q2: Again? A2: Also yes.") == [
        QAPair("Same line?", "Yes."), QAPair("Again?", "Also yes.")]
    assert parse_qa("### 1. Q: Listed?\n- A: Yes.") == [QAPair("Listed?", "Yes.")]
    # A label that does not fit the Q/A sequence stays part of the text.
    assert parse_qa("Q1: Which vitamin?\nA1: Vitamin A1: retinol.\nAnswer: it is fat-soluble.") == [
        QAPair("Which vitamin?", "Vitamin A1: retinol.\nAnswer: it is fat-soluble.")]


def test_parse_numbering_mismatch_and_malformed() -> None:
    # Numbers are ignored: pairs are formed in order.
    assert parse_qa("Q1: a?\nA2: b\n--\nQ7: c?\nA3: d") == [QAPair("a?", "b"), QAPair("c?", "d")]
    # Empty answer, missing answer, empty question: dropped; an orphan answer is ignored.
    text = "A0: orphan\nQ1: no answer?\n--\nQ2: empty answer?\nA2:\n--\nQ3:\nA3: empty question\n--\nQ4: ok?\nA4: ok"
    assert parse_qa(text) == [QAPair("ok?", "ok")]
    for garbage in ["", "I cannot help with that.", "--\n--", "Q1:", "A1: only an answer", "Q: \nA: "]:
        assert parse_qa(garbage) == []


class ScriptedBackend:
    """Returns canned generations in turn; records prompts."""

    def __init__(self, outputs: list[object]) -> None:
        self.outputs = outputs
        self.prompts: list[str] = []

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        return [self.outputs[i % len(self.outputs)] for i in range(len(prompts))]


def test_build_qa_counts_and_never_crashes() -> None:
    backend = ScriptedBackend([WELL_FORMED, "garbage, no pairs", MARKDOWN, None,
                               "Q1: kept?\nA1: yes\n--\nQ2: dropped?\n"])
    passages = ["p1", "p2", "p3", "p4", "p5"]
    pairs, stats = build_qa(backend, passages, n_per_passage=3)
    assert len(backend.prompts) == 5 and "write 3 question" in backend.prompts[0] and backend.prompts[2].endswith("p3")
    assert (stats.passages, stats.generations, stats.pairs) == (5, 5, 3 + 2 + 1)
    assert stats.malformed_generations == 2 and stats.dropped_pairs == 1
    assert [p.context for p in pairs] == ["p1"] * 3 + ["p3"] * 2 + ["p5"]
    assert build_qa(backend, [], 3)[1].generations == 0


@pytest.mark.parametrize("question", [
    "What did this study find about graphene?",
    "Why are these polymers brittle?",
    "What yield did that reaction give?",
    "How were those samples prepared?",
    "What did the authors conclude?",
    "According to the study, what is the yield?",
    "Which of the above compounds is most stable?",
    "What is the role of the aforementioned catalyst?",
    "What does this mean?",
])
def test_needs_context_true(question: str) -> None:
    assert needs_context(question)


@pytest.mark.parametrize("question", [
    "What is the boiling point of water at 1 atm?",
    "Why is the reaction rate of a zero-order reaction independent of concentration?",
    "Which elements have more than two valence electrons?",
    "Explain why a catalyst that lowers the activation energy speeds up a reaction.",
    "What is thistle oil made of?",
])
def test_needs_context_false(question: str) -> None:
    assert not needs_context(question)


def test_qa_instruction_adds_passage_only_when_needed() -> None:
    assert qa_instruction(QAPair("What is water?", "H2O", "Passage.")) == "What is water?"
    assert qa_instruction(QAPair("What did this study find?", "X", "Passage.")) == "Passage.\n\nWhat did this study find?"
    assert qa_instruction(QAPair("What did this study find?", "X")) == "What did this study find?"


def make_pairs(n_contexts: int, per_context: int) -> dict[str, list[QAPair]]:
    pairs = [QAPair(f"q{c}.{i}?", f"answer {c}.{i}", f"context {c}") for c in range(n_contexts) for i in range(per_context)]
    return group_by_context(pairs)


def test_multiple_choice_items() -> None:
    groups = make_pairs(3, 5)
    groups["small"] = [QAPair(f"s{i}?", f"small {i}", "small") for i in range(3)]  # < 4 pairs: skipped
    items = build_multiple_choice(groups, seed=0)
    assert len(items) == 15
    for item in items:
        context = item.question[1:item.question.index(".")]
        answer = f"answer {context}.{item.question[item.question.index('.') + 1:-1]}"
        assert item.choices.count(answer) == 1 and item.choices[item.gold - 1] == answer
        assert len(set(item.choices)) == 4
        assert all(choice.startswith(f"answer {context}.") for choice in item.choices)  # same-context distractors
        assert item.context == ""  # these questions are self-contained
    assert items[0].instruction.startswith(f"Question: {items[0].question}\nChoices:\n1. ")
    assert items[0].instruction.endswith("Answer with the number.")
    assert build_multiple_choice(groups, seed=0) == items
    assert build_multiple_choice(groups, seed=1) != items


def test_multiple_choice_gold_position_uniform_and_duplicates() -> None:
    items = build_multiple_choice(make_pairs(200, 5), seed=123)
    counts = Counter(item.gold for item in items)
    assert set(counts) == {1, 2, 3, 4}
    assert all(200 < counts[g] < 300 for g in counts), counts  # 1000 items, expectation 250 each
    # A duplicated answer is used at most once and never as its own distractor.
    dup = [QAPair("a?", "same", "c"), QAPair("b?", "same", "c"), QAPair("d?", "x", "c"), QAPair("e?", "y", "c")]
    assert build_multiple_choice(group_by_context(dup), seed=0) == []  # only 2 distinct distractors each
    items = build_multiple_choice(group_by_context([*dup, QAPair("f?", "z", "c")]), seed=0)
    assert len(items) == 5
    assert all(len(set(i.choices)) == 4 and i.choices.count(i.choices[i.gold - 1]) == 1 for i in items)


def test_multiple_choice_keeps_context_for_dependent_questions() -> None:
    pairs = [QAPair("What did this study show?", "a", "P"), *(QAPair(f"q{i}?", f"b{i}", "P") for i in range(3))]
    items = build_multiple_choice(group_by_context(pairs), seed=0)
    assert items[0].context == "P" and items[0].instruction.startswith("Context: P\n\nQuestion: What did this study")
    assert all(i.context == "" for i in items[1:])
    assert build_multiple_choice(group_by_context(pairs), seed=0, include_context=False)[0].context == ""


def test_load_mmlu_csv(tmp_path: Path) -> None:
    path = tmp_path / "tiny_test.csv"
    path.write_text('"What is 2+2, roughly?",3,4,5,"6, or more",B\nSecond?,a,b,c,d,d\n', encoding="utf-8")
    items = load_mmlu(path)
    assert items == [MCItem("What is 2+2, roughly?", ("3", "4", "5", "6, or more"), 2),
                     MCItem("Second?", ("a", "b", "c", "d"), 4)]
    texts = mmlu_as_instructions(items)
    assert texts[0] == ("Question: What is 2+2, roughly?\nChoices:\n1. 3\n2. 4\n3. 5\n4. 6, or more\n"
                        "Answer with the number.\n2. 4")
    bad = tmp_path / "bad.csv"
    bad.write_text("q,a,b,c,d,E\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv:1"):
        load_mmlu(bad)


SHARED_MMLU = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mmlu" / "college_chemistry_test.csv"


@pytest.mark.skipif(not SHARED_MMLU.exists(), reason=f"{SHARED_MMLU} not present")
def test_load_real_mmlu_csv() -> None:
    items = load_mmlu(SHARED_MMLU)
    assert len(items) == 100  # MMLU college_chemistry test split
    assert items[0].question.startswith("The rate, r, of a zero-order chemical reaction")
    assert items[0].choices[3] == "r = k" and items[0].gold == 4
    assert all(len(i.choices) == 4 and 1 <= i.gold <= 4 for i in items)
