"""Verdict rules: how a judge's text becomes a verdict (A, B, tie or none).

The same judgement can read differently under different conventions, and a judge prompt is
written for one of them, so each judge template names its rule (`verdict_rule = "..."` in its
TOML; `parse_verdict(text, rule=...)` here). Markers are exact substrings in every rule:
`[[A]]`, `[[B]]`, `[[C]]` (C is a tie); `[[ a ]]`, `[A]` or `**A**` are not markers.

* `final` (ste's templates; the default): the verdict is the *last* marker of the text, since
  those templates tell the judge to end with it. Markers earlier in the text (a quoted
  instruction, "[[A]] if A is better ...", a change of mind) are ignored. If the line holding
  that last marker also holds a different marker ("[[A]] or [[B]]"), there is no verdict.
* `meta`: Meta's `parse_judgement` (facebookresearch/RAM,
  projects/self_taught_evaluator/src/utils.py): both `[[A]]` and `[[B]]` anywhere -> none;
  otherwise the first of `[[A]]`, `[[B]]`, `[[C]]` (in that precedence) found anywhere.
  `[[A]] ... [[C]]` is A.
* `rewardbench`: reward-bench's generative scorer (allenai/reward-bench,
  rewardbench/generative.py, `process_judgement` without a model modifier): `[[A]]` anywhere
  -> A, else `[[B]]` anywhere -> B, else none ("error", which reward-bench scores 0.5).
  There is no tie: `[[C]]` alone is none; `[[A]] ... [[B]]` is A.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DEFAULT_VERDICT_RULE",
    "VERDICT_RULES",
    "Verdict",
    "VerdictResult",
    "VerdictRule",
    "parse_verdict",
    "verdict_rule",
]

Verdict = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class VerdictResult:
    """`verdict` is "A", "B", "tie" ([[C]], Meta's convention) or None (no usable verdict)."""

    verdict: Verdict | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.verdict is not None


VerdictRule = Callable[[str], VerdictResult]

_MARKERS: tuple[tuple[str, Verdict], ...] = (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie"))
_MARKER_RE = re.compile(r"\[\[([ABC])\]\]")
_VERDICT_OF: dict[str, Verdict] = {"A": "A", "B": "B", "C": "tie"}
# The characters str.splitlines() breaks on: "the line of the last marker" means the same
# line a reader sees.
_LINE_BREAK_RE = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NO_MARKER = VerdictResult(None, "no verdict marker")


def final_marker(text: str) -> VerdictResult:
    """The `final` rule: the last marker of the text, unless its line holds another kind."""
    found = list(_MARKER_RE.finditer(text))
    if not found:
        return _NO_MARKER
    last = found[-1]
    line_start = max((m.end() for m in _LINE_BREAK_RE.finditer(text, 0, last.start())), default=0)
    next_break = _LINE_BREAK_RE.search(text, last.end())
    line_end = len(text) if next_break is None else next_break.start()
    on_line = {m.group(1) for m in found if line_start <= m.start() and m.end() <= line_end}
    if len(on_line) > 1:
        return VerdictResult(
            None,
            "conflicting verdict markers on the last marker's line: "
            + " and ".join(f"[[{k}]]" for k in sorted(on_line)),
        )
    kind = last.group(1)
    earlier = len(found) - 1
    ignored = f" ({earlier} earlier marker{'s' if earlier > 1 else ''} ignored)" if earlier else ""
    return VerdictResult(_VERDICT_OF[kind], f"final marker [[{kind}]]{ignored}")


def meta_parse_judgement(text: str) -> VerdictResult:
    """The `meta` rule: Meta's precedence over exact substrings of the whole text."""
    if "[[A]]" in text and "[[B]]" in text:
        return VerdictResult(None, "both [[A]] and [[B]] (no verdict in Meta's rule)")
    for marker, verdict in _MARKERS:
        if marker in text:
            return VerdictResult(verdict, f"{marker} (Meta's rule)")
    return _NO_MARKER


def rewardbench_process_judgement(text: str) -> VerdictResult:
    """The `rewardbench` rule: [[A]] anywhere, else [[B]] anywhere; no tie."""
    for marker, verdict in _MARKERS[:2]:
        if marker in text:
            return VerdictResult(verdict, f"{marker} (reward-bench's rule)")
    return VerdictResult(None, "no [[A]] or [[B]] marker (reward-bench's 'error')")


VERDICT_RULES: Mapping[str, VerdictRule] = MappingProxyType(
    {
        "final": final_marker,
        "meta": meta_parse_judgement,
        "rewardbench": rewardbench_process_judgement,
    }
)
DEFAULT_VERDICT_RULE = "final"


def verdict_rule(name: str) -> VerdictRule:
    """The rule called `name`; a LookupError listing the known names otherwise."""
    try:
        return VERDICT_RULES[name]
    except KeyError:
        raise LookupError(
            f"no verdict rule named {name!r}; known: {', '.join(sorted(VERDICT_RULES))}"
        ) from None


def parse_verdict(
    text: str, *, rule: str = DEFAULT_VERDICT_RULE, truncated: bool = False
) -> VerdictResult:
    """Read the judge's verdict from `text` by the named rule (see the module docstring).

    `truncated`: the output was cut off at max_tokens. Under `final` it then has no verdict:
    the prompt asks for the verdict at the very end, which a cut-off answer never reached, so
    a marker in it is one quoted on the way. (`meta` and `rewardbench` read markers anywhere,
    as their reference code does, cut off or not.)

    Never raises on model output; an unknown `rule` is a LookupError (a configuration
    mistake, caught when a template naming it is loaded)."""
    read = verdict_rule(rule)
    if truncated and rule == "final":
        return VerdictResult(None, "cut off at max_tokens before its final verdict")
    return read(text)
