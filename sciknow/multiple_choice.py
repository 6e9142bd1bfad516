"""Four-choice items (`MCItem`: Task 4's multiple choice and MMLU) and the MMLU CSV reader.

The core asks them (probes, the paper suite); the producers in `sciknow.make` write them.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = "ABCD"  # MMLU's answer letters; choice i (1-based) is LETTERS[i - 1]


@dataclass(frozen=True)
class MCItem:
    """A four-choice question; `gold` is the 1-based number of the right choice."""

    question: str
    choices: tuple[str, str, str, str]
    gold: int
    context: str = field(default="", compare=False)

    @property
    def instruction(self) -> str:
        """The prompt shown to the model (the context only if the item carries one)."""
        lines = [f"Context: {self.context.strip()}", ""] if self.context else []
        lines += [f"Question: {self.question}", "Choices:"]
        lines += [f"{i}. {choice}" for i, choice in enumerate(self.choices, 1)]
        lines.append("Answer with the number.")
        return "\n".join(lines)

    @property
    def answer_text(self) -> str:
        """The ideal reply: the gold number followed by the choice."""
        return f"{self.gold}. {self.choices[self.gold - 1]}"


def load_mmlu(csv_path: str | Path) -> list[MCItem]:
    """MMLU items from a header-less CSV with rows `question,A,B,C,D,answer` (answer a letter)."""
    items = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 6 or row[5].strip().upper() not in LETTERS:
                raise ValueError(f"{csv_path}:{line_no}: expected question,A,B,C,D,answer; got {row!r}")
            items.append(MCItem(row[0], tuple(row[1:5]), LETTERS.index(row[5].strip().upper()) + 1))
    return items


def mmlu_as_instructions(items: Iterable[MCItem]) -> list[str]:
    """Training texts: the multiple-choice instruction followed by the right answer."""
    return [f"{item.instruction}\n{item.answer_text}" for item in items]
