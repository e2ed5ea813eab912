"""The RewardBench 2 parsers follow allenai/reward-bench @ 05a9005e generative_v2.py:
`process_judgement` (first of [[A]]..[[D]] in letter order) and `get_single_rating` (a trailing
integer 1-10)."""

from __future__ import annotations

import re

import pytest

from ste_prompts import get_template, parse_ranking, parse_rating


def official_process_judgement(judgment: str) -> str:
    for letter in "ABCD":
        if f"[[{letter}]]" in judgment:
            return letter
    return "error"


def official_rating(raw: str) -> int:
    m = re.search(r"\b([1-9]|10)\b\s*$", raw.strip())
    return int(m.group(1)) if m and 1 <= int(m.group(1)) <= 10 else -1


@pytest.mark.parametrize(
    "text",
    ["[[C]]", "I pick [[B]] over [[A]]", "[[D]] then [[A]]", "no marker", "[[ C ]]", "[[E]]",
     "[C]", "[[c]]"],
)  # fmt: skip
def test_ranking_matches_the_official_parser(text: str) -> None:
    got = parse_ranking(text).choice
    assert (got or "error") == official_process_judgement(text)


@pytest.mark.parametrize(
    "text",
    ["Good.\n\n9", "Good. 10", "Rating: 10  \n", "7/10", "**8**", "0", "11", "8.5", "I give 3.",
     "3 apples", "1", ""],
)  # fmt: skip
def test_rating_matches_the_official_parser(text: str) -> None:
    got = parse_rating(text).rating
    assert (got if got is not None else -1) == official_rating(text)


def test_the_rating_template_asks_for_ties_criteria_on_request() -> None:
    t = get_template("judge_rate")
    plain = t.render(instruction="q", response="r")[-1]["content"]
    ties = t.render(instruction="q", response="r", criteria="accuracy only")[-1]["content"]
    assert "depth" in plain and "accuracy only" in ties and "depth" not in ties
