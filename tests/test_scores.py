"""Scorers on hand-computed cases."""
from __future__ import annotations

import logging
import math

import pytest

from sciknow.scores import (judge_prompt, keyword_score, mc_choice, mc_correct, mean_keyword_score,
                            parse_judge_score, rouge2_f)
from sciknow.suites import judge_score


def test_rouge2_identical_and_disjoint() -> None:
    assert rouge2_f("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge2_f("water boils at high temperature", "the cat sat on the mat") == 0.0
    assert rouge2_f("", "the cat sat") == 0.0


def test_rouge2_hand_computed() -> None:
    # Shared bigrams: "the cat", "cat sat", "sat on" -> P = R = 3/5, F = 0.6.
    assert rouge2_f("the cat sat on a rug", "the cat sat on the mat") == pytest.approx(0.6)
    # Prediction bigrams {the cat, cat sat} all in the 5 reference bigrams: P = 1, R = 2/5, F = 2PR/(P+R) = 4/7.
    assert rouge2_f("the cat sat", "the cat sat on the mat") == pytest.approx(4 / 7)
    # Stemming and case: "Cats" ~ "cat"; argument order matters only through P vs R.
    assert rouge2_f("The Cats sat", "the cat sat") == 1.0


@pytest.mark.parametrize("answer, choice", [
    ("3", 3), ("The answer is 2.", 2), ("none", None), ("5 then 1", 1), ("", None),
    ("4. Carbon dioxide", 4), ("Choice 12 or 7", None), ("(1)", 1),
])
def test_mc_choice(answer: str, choice: int | None) -> None:
    assert mc_choice(answer) == choice


def test_mc_correct() -> None:
    assert mc_correct("The answer is 2.", 2)
    assert not mc_correct("The answer is 2.", 3)
    assert not mc_correct("I do not know", 1)  # no number counts as wrong


@pytest.mark.parametrize("reply, score", [
    ("Score: 7\nThe answer covers most points.", 0.7),
    ("**Score**: 10", 1.0),
    ("Score: 8/10 because it misses the yield.", 0.8),
    ("I would give it a score of 3.", 0.3),
    ("6.5 out of 10", 0.65),
    ("0", 0.0),
    (" 9. ", 0.9),
    ("Score: 85", None),  # out of range
    ("The answer is good, it has 3 of the 4 points.", None),
    ("", None),
])
def test_judge_parse(reply: str, score: float | None) -> None:
    parsed = parse_judge_score(reply)
    assert parsed == (None if score is None else pytest.approx(score))


def test_judge_prompt_contains_everything() -> None:
    prompt = judge_prompt(" Q? ", "REF", "PRED")
    assert "Q?" in prompt and "REF" in prompt and "PRED" in prompt and "0 to 10" in prompt and "Score:" in prompt


class ScriptedBackend:
    def __init__(self, replies: list[str]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        return self.replies[:len(prompts)]


def test_judge_score_scales_and_counts_unparseable(caplog: pytest.LogCaptureFixture) -> None:
    backend = ScriptedBackend(["Score: 7", "no idea", "Score: 10/10"])
    items = [("q1", "r1", "p1"), ("q2", "r2", "p2"), ("q3", "r3", "p3")]
    with caplog.at_level(logging.WARNING):
        scores = judge_score(backend, items)
    assert scores[0] == pytest.approx(0.7) and math.isnan(scores[1]) and scores[2] == 1.0
    assert "1 of 3 judge replies" in caplog.text
    assert backend.prompts[1] == judge_prompt("q2", "r2", "p2")
    assert judge_score(backend, []) == []


# --- keyword score (the original study's scorer) ---

MONOMER = "1-(2,5-dimethylhex-3-yn-1-yl)-2-methylcycloprop-1-ene"


@pytest.mark.parametrize("answer, keywords, expected", [
    ("It is made of phosphorus with a catalyst giving 99.5% conversion.", ["phosphorus", "catalyst", "99.5%"], 1.0),
    ("It reached 99.5 percent.", ["99.5%"], 0.0),
    ("A conversion of 9905% is impossible.", ["99.5%"], 0.0),  # '.' is literal, not a regex wildcard
    (f"The repeating unit is {MONOMER}.", ["letter", "AI", "repeat", "unit", MONOMER], 3 / 5),
    ("1-(2,5-dimethylhex-3-yn-1-yl)-2-methylcycloprop-1-en", [MONOMER], 0.0),  # one char short
    ("Ether bonds.", ["ether", "bond"], 0.5),  # case-sensitive, as in the original
    ("", ["x"], 0.0),
])
def test_keyword_score_hand_computed(answer, keywords, expected):
    assert keyword_score(answer, keywords) == pytest.approx(expected)


def test_mean_keyword_score_averages_questions():
    assert mean_keyword_score(["a b", "c"], [["a", "b"], ["c", "d"]]) == pytest.approx((1 + 0.5) / 2)
    with pytest.raises(ValueError):
        keyword_score("anything", [])
