"""The parser of the `solve` template's output: where a solution states its final answer.

A solution states its answer in one of the shapes models and data sets use; they are tried in
this order, and the last occurrence of the first shape found wins (a model that corrects itself
writes the corrected answer last):

1. an answer line, as the `solve` template asks: `Answer: 42`, `Final answer: 42`,
   `**Answer:** 42` (a `\\boxed{...}` on that line is unwrapped);
2. `\\boxed{...}` (or `\\fbox{...}`), the LaTeX habit of math models; nested braces are kept
   whole (`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`);
3. a GSM8K answer line: `#### 42`;
4. only with `last_number=True`: the last number in the text (a fraction `3/4` counts as one
   number). Checkers that compare numbers ask for it; a string checker must not (the last number
   of a solution is not its answer to "which planet ...?").

What comes back is the answer as written (surrounding emphasis `**`/`__` and blank space
removed); comparing it with a reference is a checker's job (`ste_core.answers`). Text with none of
these shapes is a `ParseFailure`: a solution without an answer is never read as any answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ste_prompts.parsers import ParseFailure, register_parser

__all__ = ["NUMBER_RE", "FinalAnswer", "boxed_contents", "format_solution", "parse_final_answer"]

#: How the final answer was found.
AnswerShape = Literal["answer_line", "boxed", "gsm8k", "last_number"]


@dataclass(frozen=True)
class FinalAnswer:
    """The final answer a solution states, and the shape it was found in."""

    answer: str
    shape: AnswerShape

    @property
    def ok(self) -> bool:
        return True


_ANSWER_LINE = re.compile(
    r"^[ \t>*_#-]*(?:the\s+)?(?:final\s+)?answer(?:\s+is)?[ \t*_]*[:：][ \t*_]*(?P<v>.*?)[ \t*_]*$",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K = re.compile(r"^[ \t]*####[ \t]*(?P<v>.+?)[ \t]*$", re.MULTILINE)
# A number as written in prose or LaTeX: sign, thousands separators, decimals, a fraction a/b.
NUMBER_RE = re.compile(
    r"(?<![\w.])(?:[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"|[-+\u2212]?\.\d+)(?![\w])"
)


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` in `text`, braces balanced; an unclosed one is
    skipped."""
    found = []
    for m in _BOXED_START.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append(text[m.end() : i - 1].strip())
    return found


def _clean(value: str) -> str:
    boxed = boxed_contents(value)
    if boxed:
        value = boxed[-1]
    return value.strip().strip("*_").strip()


def parse_final_answer(text: str, *, last_number: bool = False) -> FinalAnswer | ParseFailure:
    """The final answer `text` states (see the module docstring for the shapes and their order);
    `ParseFailure` when it states none."""
    lines = [_clean(m.group("v")) for m in _ANSWER_LINE.finditer(text)]
    lines = [v for v in lines if v]
    if lines:
        return FinalAnswer(lines[-1], "answer_line")
    boxed = [b for b in boxed_contents(text) if b]
    if boxed:
        return FinalAnswer(boxed[-1], "boxed")
    gsm8k = [_clean(m.group("v")) for m in _GSM8K.finditer(text)]
    gsm8k = [v for v in gsm8k if v]
    if gsm8k:
        return FinalAnswer(gsm8k[-1], "gsm8k")
    if last_number:
        numbers = NUMBER_RE.findall(text)
        if numbers:
            return FinalAnswer(numbers[-1].strip(), "last_number")
    return ParseFailure(
        "no final answer: no 'Answer: ...' line, \\boxed{...} or '#### ...' line"
        + (", and no number" if last_number else "")
    )


def format_solution(steps: str, answer: str) -> str:
    """The canonical output the `solve` template asks for (fakes, tests, examples)."""
    return f"{steps.rstrip()}\n\nAnswer: {answer}\n"


register_parser("final_answer", parse_final_answer)
