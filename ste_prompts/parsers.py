"""Parsers for what the templates ask a model to write.

Style: every parser takes the model's text as its first positional argument (other arguments are
keyword-only and optional) and never raises on bad model output. It returns a typed result:

* `parse_verdict` (in `ste_prompts.verdicts`, by a named rule) -> `VerdictResult` always; a
  missing or ambiguous verdict is a normal outcome of judging (it scores 0.5 and makes a DPO
  "rejected" sample), so it is `verdict=None` with a `reason`, not a failure object.
* `parse_worse_response` -> `WorseResponse | ParseFailure`.
* `parse_category` -> `CategoryResult | ParseFailure`.

Every result has `.ok` (False for ParseFailure and for a VerdictResult without a verdict) and a
human-readable reason for failures. Test with `isinstance(result, ParseFailure)` or `result.ok`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ste_prompts.categories import DEFAULT_CATEGORIES, DIFFICULTIES
from ste_prompts.verdicts import Verdict, VerdictResult, parse_verdict

__all__ = [
    "PARSERS",
    "CategoryResult",
    "ParseFailure",
    "UnknownParserError",
    "Verdict",
    "VerdictResult",
    "WorseResponse",
    "format_category",
    "format_worse_response",
    "get_parser",
    "parse_category",
    "parse_verdict",
    "parse_worse_response",
    "register_parser",
]


@dataclass(frozen=True)
class ParseFailure:
    """The model's text could not be read; `reason` says what was missing or wrong."""

    reason: str

    @property
    def ok(self) -> bool:
        return False


# --------------------------------------------------------------------------------------------
# Worse responses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorseResponse:
    """The generator's modified instruction and its answer to it (the "worse" response).

    `ended` tells whether the end line (`### End of response`) was present; without it the
    response runs to the end of the text (which can mean the output was cut off: check the
    completion's finish reason)."""

    modified_instruction: str
    response: str
    ended: bool = True

    @property
    def ok(self) -> bool:
        return True


MODIFIED_HEADING = "### Modified instruction"
RESPONSE_HEADING = "### Response to the modified instruction"
END_HEADING = "### End of response"

# Accepted heading labels (case-insensitive, flexible spacing). Meta's bracketed labels are
# accepted too, so a template in Meta's format can use this parser.
_LABELS: dict[str, tuple[str, ...]] = {
    "modified": (
        "modified instruction",
        "the modified instruction",
        "modified user question",
        "user question modified",
        "modified question",
    ),
    "response": (
        "response to the modified instruction",
        "response to modified instruction",
        "answer to the modified instruction",
        "answer to modified instruction",
        "the start of assistant's answer to the modified instruction",
    ),
    "end": (
        "end of response",
        "end of the response",
        "end of answer",
        "the end of assistant's answer to the modified instruction",
    ),
}
_LABEL_KIND = {label: kind for kind, labels in _LABELS.items() for label in labels}


def _label_regex(label: str) -> str:
    return r"\s+".join(re.escape(w).replace("'", "['\u2019]") for w in label.split())


_INLINE_RE = re.compile(
    r"^\s*#{0,6}[\s*_\[]*(?P<label>"
    + "|".join(
        _label_regex(lbl)
        for lbl in sorted(_LABEL_KIND, key=len, reverse=True)
        if _LABEL_KIND[lbl] != "end"
    )
    + r")[\s*_\]]*:(?:[ \t]*[*_]{1,3}(?=\s))?\s*(?P<rest>.*?)\s*$",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")


def _normalise_label(s: str) -> str:
    return " ".join(s.replace("\u2019", "'").split()).lower()


def _heading(line: str) -> tuple[str, str] | None:
    """(kind, inline text) if `line` is one of our section headings, else None.

    Accepts `### Label`, `## Label:`, `**Label**`, `**Label:**`, `[Label]`, `Label:` and a
    label followed by inline text after a colon (`**Modified instruction:** Write ...`)."""
    line = line.strip()
    core = re.sub(r"^#+", "", line).strip(" \t*_[]`")
    core = core.rstrip(":").strip(" \t*_[]`")
    kind = _LABEL_KIND.get(_normalise_label(core))
    if kind is not None:
        return kind, ""
    m = _INLINE_RE.match(line)
    if m is not None:
        return _LABEL_KIND[_normalise_label(m.group("label"))], m.group("rest")
    return None


def _unwrap_fence(lines: list[str]) -> list[str]:
    """Remove a code fence wrapped around the whole output (some models do that)."""
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    if len(idx) >= 2:
        first, last = lines[idx[0]].strip(), lines[idx[-1]].strip()
        if re.fullmatch(r"```(?:markdown|md|text)?", first) and last == "```":
            return lines[idx[0] + 1 : idx[-1]]
    return lines


def _find_headings(lines: list[str], *, fence_aware: bool) -> list[tuple[int, str, str]]:
    found = []
    fence: str | None = None
    for i, line in enumerate(lines):
        fm = _FENCE_RE.match(line)
        if fence_aware and fm is not None:
            marker = fm.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is not None:
            continue
        h = _heading(line)
        if h is not None:
            found.append((i, h[0], h[1]))
    return found


_PLACEHOLDER_RE = re.compile(r"<[^<>\n]{1,100}>")


def _line_end(line: str) -> str:
    return line[len(line.rstrip(_LINE_BREAKS)) :]


# The characters str.splitlines() breaks on; lines are kept with their ends so that sections
# come back byte for byte (a "\r\n" or "\r" inside a response is not rewritten).
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _section_text(heading_line: str, inline: str, lines: list[str]) -> str:
    head = inline + _line_end(heading_line) if inline else ""
    return (head + "".join(lines)).strip()


def parse_worse_response(
    text: str, *, instruction: str | None = None
) -> WorseResponse | ParseFailure:
    """Read the two sections the `worse_response` template asks for.

    The modified instruction is the text between its heading and the response heading; the
    response is the text after its heading, up to the end line if present, else to the end.
    Text before the first heading is ignored. Headings inside fenced code blocks do not count
    (so a `# Modified instruction` comment in code is safe). A missing, empty, repeated or
    out-of-order section is a ParseFailure -- never is the whole text taken as the response.
    If `instruction` is given, a modified instruction identical to it (ignoring case and
    spacing) is a failure too.
    """
    lines = _unwrap_fence(text.splitlines(keepends=True))
    headings = _find_headings(lines, fence_aware=True)
    if not any(k == "modified" for _, k, _ in headings):
        # An unbalanced fence can hide the headings; look again without fence tracking.
        headings = _find_headings(lines, fence_aware=False)
    mods = [h for h in headings if h[1] == "modified"]
    resps = [h for h in headings if h[1] == "response"]
    if not mods:
        return ParseFailure("no modified-instruction section")
    if not resps:
        return ParseFailure("no response section")
    if len(mods) > 1:
        return ParseFailure(f"modified-instruction heading appears {len(mods)} times")
    if len(resps) > 1:
        return ParseFailure(f"response heading appears {len(resps)} times")
    (mod_i, _, mod_inline), (resp_i, _, resp_inline) = mods[0], resps[0]
    if resp_i < mod_i:
        return ParseFailure("response section comes before the modified-instruction section")
    ends = [i for i, k, _ in headings if k == "end"]
    if any(i < resp_i for i in ends):
        return ParseFailure("end line comes before the response section")
    if not ends:
        # An end line hidden by an unclosed code fence in the response still ends it when it
        # is the last non-blank line.
        tail = [i for i in range(resp_i + 1, len(lines)) if lines[i].strip()]
        if tail and (_heading(lines[tail[-1]]) or ("", ""))[0] == "end":
            ends = [tail[-1]]
    end_i = ends[0] if ends else len(lines)

    modified = _section_text(lines[mod_i], mod_inline, lines[mod_i + 1 : resp_i])
    response = _section_text(lines[resp_i], resp_inline, lines[resp_i + 1 : end_i])
    for label, value in (("modified-instruction", modified), ("response", response)):
        if not value:
            return ParseFailure(f"empty {label} section")
        if _PLACEHOLDER_RE.fullmatch(value):
            return ParseFailure(f"{label} section holds only a placeholder: {value}")
    if instruction is not None and _normalise_label(modified) == _normalise_label(instruction):
        return ParseFailure("modified instruction is identical to the original instruction")
    return WorseResponse(modified, response, ended=bool(ends))


def format_worse_response(modified_instruction: str, response: str, *, end: bool = True) -> str:
    """The canonical output the `worse_response` template asks for (fakes, tests, examples)."""
    parts = [MODIFIED_HEADING, modified_instruction, "", RESPONSE_HEADING, response]
    if end:
        parts += ["", END_HEADING]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryResult:
    category: str
    difficulty: str

    @property
    def ok(self) -> bool:
        return True


def _field_re(name: str) -> re.Pattern[str]:
    # `Category: x`, `**Category:** x`, `- Category: x`, `### Category: x` at a line start.
    return re.compile(
        r"^[ \t>*_#-]*" + name + r"[ \t*_]*:(?:[ \t]*[*_]{1,3}(?=\s))?[ \t]*(?P<v>.*)$",
        re.IGNORECASE | re.MULTILINE,
    )


_CATEGORY_RE = _field_re("category")
_DIFFICULTY_RE = _field_re("difficulty")


def _clean_value(v: str) -> str:
    v = v.strip().strip("*_`\"'[]<>()").strip()
    return " ".join(v.rstrip(".").split()).casefold()


def _pick(
    field: str, pattern: re.Pattern[str], text: str, allowed: Iterable[str]
) -> str | ParseFailure:
    allowed = list(allowed)
    raw = [m.group("v") for m in pattern.finditer(text)]
    if not raw:
        return ParseFailure(f"no {field} line")
    picked: list[str] = []
    for value in raw:
        v = _clean_value(value)
        exact = [a for a in allowed if a.casefold() == v]
        # Lenient: "reasoning - because ..." -> the one allowed name that starts the value.
        prefix = [a for a in allowed if re.match(re.escape(a.casefold()) + r"(?!\w)", v)]
        choice = exact or (prefix if len(prefix) == 1 else [])
        if not choice:
            return ParseFailure(f"{field} {value.strip()!r} is not one of: {', '.join(allowed)}")
        if choice[0] not in picked:
            picked.append(choice[0])
    if len(picked) > 1:
        return ParseFailure(f"conflicting {field} lines: {', '.join(picked)}")
    return picked[0]


def parse_category(
    text: str,
    categories: Mapping[str, str] | Iterable[str] | None = None,
    *,
    difficulties: Iterable[str] = DIFFICULTIES,
) -> CategoryResult | ParseFailure:
    """Read `Category: <name>` and `Difficulty: <level>` lines (bold/bullets tolerated).

    `categories` defaults to DEFAULT_CATEGORIES (a mapping's keys are the names). Matching is
    case-insensitive and returns the name as spelled in `categories`; a value that merely starts
    with exactly one allowed name ("math, with some coding") is accepted. If the line appears
    more than once, all must agree.
    """
    names = list(DEFAULT_CATEGORIES if categories is None else categories)
    if not names:
        raise ValueError("parse_category needs at least one category")
    category = _pick("category", _CATEGORY_RE, text, names)
    if isinstance(category, ParseFailure):
        return category
    difficulty = _pick("difficulty", _DIFFICULTY_RE, text, difficulties)
    if isinstance(difficulty, ParseFailure):
        return difficulty
    return CategoryResult(category, difficulty)


def format_category(category: str, difficulty: str, *, rationale: str = "") -> str:
    """The canonical output the `classify_category` template asks for."""
    head = f"{rationale}\n" if rationale else ""
    return f"{head}Category: {category}\nDifficulty: {difficulty}\n"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


class UnknownParserError(LookupError):
    """No parser is registered under that name."""


PARSERS: dict[str, Callable[..., Any]] = {
    "verdict": parse_verdict,
    "worse_response": parse_worse_response,
    "category": parse_category,
}


def get_parser(name: str) -> Callable[..., Any]:
    """The parser registered as `name` (the `parser` key of a template)."""
    try:
        return PARSERS[name]
    except KeyError:
        raise UnknownParserError(
            f"no parser named {name!r}; registered: {', '.join(sorted(PARSERS))}"
        ) from None


def register_parser(name: str, parser: Callable[..., Any], *, replace: bool = False) -> None:
    """Add a parser (a plugin's own output format). Its first argument must be the model text."""
    if not callable(parser):
        raise TypeError(f"parser {name!r} must be callable")
    if name in PARSERS and not replace and PARSERS[name] is not parser:
        raise ValueError(f"a parser named {name!r} is already registered (pass replace=True)")
    PARSERS[name] = parser
