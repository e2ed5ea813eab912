"""Answer checkers: is a solution's final answer the problem's reference answer?

The verifiable-answer recipe (`data.recipe = "verifiable"`, stage `solve`) samples k solutions
per problem and asks a checker about each one. A checker is a function
`(solution, reference) -> AnswerCheck`; its status is one of

* `correct` / `incorrect`: the solution states a final answer, and it is / is not the reference;
* `unparseable`: the solution states no final answer the checker can read (never correct, and
  never used as the incorrect side of a pair either: "no answer" is not a wrong answer);
* `bad_reference`: the reference answer itself cannot be read (the problem is dropped).

Built-ins, by name (`data.checker`):

* `numeric`: the final answer (`Answer: ...` line, `\\boxed{}`, GSM8K `#### ...`, else the last
  number of the solution) and the reference are read as numbers, exactly (fractions, decimals),
  with thousands separators, signs, `$`, units and LaTeX (`\\frac{a}{b}`, `\\text{}`) tolerated,
  and compared with a relative tolerance of 1e-6; a percentage also matches its fraction
  (`25%` = `0.25`).
* `string`: the final answer (no last-number guess) and the reference are compared after
  normalising: case, Unicode form, LaTeX wrappers, punctuation, spacing and a leading article.

Plugins add checkers by name with the `register_answer_checkers` hook
(`ste_core.hookspecs`); `ste_core.plugins.get_answer_checker(name)` finds one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from ste_prompts import ParseFailure, parse_final_answer
from ste_prompts.answers import NUMBER_RE, boxed_contents

__all__ = [
    "BUILTIN_CHECKERS",
    "AnswerCheck",
    "AnswerChecker",
    "CheckStatus",
    "check_numeric",
    "check_string",
    "normalise_answer",
    "to_number",
]

CheckStatus = Literal["correct", "incorrect", "unparseable", "bad_reference"]

#: Relative tolerance of the numeric checker (exact fractions compare exactly).
REL_TOL = Fraction(1, 10**6)


@dataclass(frozen=True)
class AnswerCheck:
    """What a checker found: the status, and the final answer it read (None if none)."""

    status: CheckStatus
    answer: str | None = None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


#: (solution, reference answer) -> AnswerCheck
AnswerChecker = Callable[[str, str], AnswerCheck]


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,;:! ]|\\left|\\right|\\\(|\\\)|\\\[|\\\]|\$")
_PERCENT_AFTER = re.compile(r"\s*(?:\\?%|percent\b)", re.IGNORECASE)


def _plain(text: str) -> str:
    """`text` with LaTeX reduced to plain arithmetic notation."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("{,}", ",")
    text = _LATEX_FRAC.sub(r"\1/\2", text)
    text = _LATEX_TEXT.sub(r" \1", text)
    return _LATEX_NOISE.sub("", text)


def to_number(text: str) -> tuple[Fraction, bool] | None:
    """The number an answer states, exactly, and whether it is a percentage; None when it
    states none. In `x = 5` or `2 + 3 = 5` the number after the last `=` counts."""
    text = _plain(text)
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    m = NUMBER_RE.search(text)
    if m is None:
        return None
    raw = m.group(0).replace(",", "").replace(" ", "")
    try:
        if "/" in raw:
            top, bottom = raw.split("/")
            if Fraction(bottom) == 0:
                return None
            value = Fraction(top) / Fraction(bottom)
        else:
            value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None
    return value, _PERCENT_AFTER.match(text, m.end()) is not None


def _close(a: Fraction, b: Fraction) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _same_number(got: tuple[Fraction, bool], want: tuple[Fraction, bool]) -> bool:
    (a, a_percent), (b, b_percent) = got, want
    return _close(a, b) or (a_percent and _close(a / 100, b)) or (b_percent and _close(a, b / 100))


def _stated(reference: str) -> str:
    """The answer a reference states: its marked final answer (a GSM8K solution's `#### 72`),
    or the whole reference when it marks none (a bare `72`)."""
    found = parse_final_answer(reference)
    return reference if isinstance(found, ParseFailure) else found.answer


def check_numeric(solution: str, reference: str) -> AnswerCheck:
    """The `numeric` checker (see the module docstring)."""
    want = to_number(_stated(reference))
    if want is None:
        return AnswerCheck("bad_reference")
    found = parse_final_answer(solution, last_number=True)
    if isinstance(found, ParseFailure):
        return AnswerCheck("unparseable")
    got = to_number(found.answer)
    if got is None:
        return AnswerCheck("unparseable", found.answer)
    return AnswerCheck("correct" if _same_number(got, want) else "incorrect", found.answer)


# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+")


def normalise_answer(text: str) -> str:
    """`text` as the `string` checker compares it: plain LaTeX, case-folded, punctuation turned
    to spaces, spaces collapsed, no leading article."""
    boxed = boxed_contents(text)
    text = _plain(boxed[-1] if boxed else text).replace("\\", " ").casefold()
    text = " ".join(_PUNCTUATION.sub(" ", text).split())
    return _ARTICLE.sub("", text)


def check_string(solution: str, reference: str) -> AnswerCheck:
    """The `string` checker (see the module docstring)."""
    want = normalise_answer(_stated(reference))
    if not want:
        return AnswerCheck("bad_reference")
    found = parse_final_answer(solution)
    if isinstance(found, ParseFailure):
        return AnswerCheck("unparseable")
    got = normalise_answer(found.answer)
    if not got:
        return AnswerCheck("unparseable", found.answer)
    return AnswerCheck("correct" if got == want else "incorrect", found.answer)


#: The checkers every installation has, by name.
BUILTIN_CHECKERS: dict[str, AnswerChecker] = {"numeric": check_numeric, "string": check_string}
