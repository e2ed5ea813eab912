"""Parsers for judges that rank several responses or rate one response (RewardBench 2).

Both follow the rules of allenai/reward-bench's generative v2 scorer (commit 05a9005e,
`rewardbench/generative_v2.py`), so outputs are read exactly as the published numbers read them:

* `parse_ranking` (``process_judgement``): the first of ``[[A]]``, ``[[B]]``, ``[[C]]``,
  ``[[D]]`` found *in that letter order* anywhere in the text wins, even if another marker is
  present too; no marker -> no choice (the scorer gives 0.25 for it).
* `parse_rating` (``get_single_rating``): an integer 1-10 at the very end of the text (after
  stripping), as a whole word; anything else -> no rating (the scorer's -1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RankingResult", "RatingResult", "parse_ranking", "parse_rating"]

LETTERS = ("A", "B", "C", "D")
_RATING_RE = re.compile(r"\b([1-9]|10)\b\s*$")


@dataclass(frozen=True)
class RankingResult:
    """`choice` is the letter of the response the judge put first, or None."""

    choice: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.choice is not None


@dataclass(frozen=True)
class RatingResult:
    """`rating` is 1..10, or None when the text does not end with one."""

    rating: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.rating is not None


def parse_ranking(text: str) -> RankingResult:
    """The best response's letter: the first of [[A]]..[[D]] present, in letter order."""
    for letter in LETTERS:
        if f"[[{letter}]]" in text:
            return RankingResult(letter, f"[[{letter}]]")
    return RankingResult(None, "no [[A]]-[[D]] marker")


def parse_rating(text: str) -> RatingResult:
    """The trailing integer rating 1..10 (nothing may follow it but white space)."""
    m = _RATING_RE.search(text.strip())
    if m is None:
        return RatingResult(None, "no rating 1-10 at the end")
    return RatingResult(int(m.group(1)), f"rating {m.group(1)}")
