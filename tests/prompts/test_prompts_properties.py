"""Property tests (hypothesis): hostile content renders verbatim; parsers round-trip and never
crash or fall back to the whole text."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ste_prompts import (
    DEFAULT_CATEGORIES,
    DIFFICULTIES,
    CategoryResult,
    ParseFailure,
    VerdictResult,
    WorseResponse,
    builtin_templates,
    format_category,
    format_worse_response,
    loads_template,
    parse_category,
    parse_verdict,
    parse_worse_response,
)

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Fragments that break naive templating: format/Template/jinja syntax, regex replacement
# escapes, our own placeholders and escape, verdict markers and every section heading.
HOSTILE = [
    "{",
    "}",
    "{}",
    "{0}",
    "{instruction}",
    "{{instruction}}",
    "{response_a}",
    "{response_b}",
    "{baseline_response}",
    "{categories}",
    "{{",
    "}}",
    "$",
    "$instruction",
    "${instruction}",
    "{{ jinja }}",
    "{% if x %}",
    "{# c #}",
    "%s",
    "%(instruction)s",
    "\\",
    "\\1",
    "\\g<0>",
    "\\n",
    "[[A]]",
    "[[B]]",
    "[[C]]",
    "[User Question]",
    "[The End of Assistant A's Answer]",
    "### Modified instruction",
    "### Response to the modified instruction",
    "### End of response",
    "Category: math",
    "Difficulty: hard",
    "```",
    "\n",
    "\r\n",
    "\t",
    " ",
    "é",
    "😀",
    "\u2028",
]
hostile_text = (
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8)), max_size=12)
    .map("".join)
    .filter(lambda s: "\x00" not in s)
)

TEMPLATES = builtin_templates()


def _reference_render(text: str, values: dict[str, str]) -> str:
    """An independent renderer for the built-in texts (which use no escapes): split the text on
    the literal `{name}` strings and join the pieces with the values."""
    assert "{{" not in text
    pattern = "|".join(re.escape("{" + k + "}") for k in sorted(values, key=len, reverse=True))
    pieces = re.split("(" + pattern + ")", text)
    return "".join(values[p[1:-1]] if re.fullmatch(pattern, p) else p for p in pieces)


@SETTINGS
@given(name=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_hostile_values_render_verbatim_in_builtins(name, data):
    t = TEMPLATES[name]
    values = {v: data.draw(hostile_text, label=v) for v in t.all_variables}
    msgs = t.render(**values)
    expected = []
    if t.system is not None:
        expected.append({"role": "system", "content": _reference_render(t.system, values)})
    expected.append({"role": "user", "content": _reference_render(t.user, values)})
    assert msgs == expected
    joined = "".join(m["content"] for m in msgs)
    for v in values.values():
        assert v in joined


@SETTINGS
@given(name=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_fixed_text_is_intact_around_hostile_values(name, data):
    # Render with distinct sentinels, then with hostile values: cutting the values out of the
    # hostile rendering must give back exactly the fixed text around the sentinels.
    t = TEMPLATES[name]
    names = list(t.all_variables)
    sentinels = {v: f"\x00{i}\x00" for i, v in enumerate(names)}
    values = {v: data.draw(hostile_text, label=v) for v in names}
    for plain, hostile in zip(t.render(**sentinels), t.render(**values), strict=True):
        fixed = re.split("\x00\\d+\x00", plain["content"])
        order = [names[int(i)] for i in re.findall("\x00(\\d+)\x00", plain["content"])]
        rebuilt, pos = [], 0
        content = hostile["content"]
        for i, piece in enumerate(fixed):
            assert content.startswith(piece, pos)
            pos += len(piece)
            rebuilt.append(piece)
            if i < len(order):
                value = values[order[i]]
                assert content.startswith(value, pos)
                pos += len(value)
        assert pos == len(content)
        for piece in fixed:
            assert not re.search(r"\{[A-Za-z_]\w*\}", piece), "unrendered placeholder"


@SETTINGS
@given(value=hostile_text, default=hostile_text)
def test_hostile_values_and_defaults_in_user_template(value, default):
    t = loads_template(
        'name = "u"\npurpose = "judge"\nversion = 1\ndescription = ""\n'
        'variables = ["x"]\nparser = "verdict"\n'
        "user = 'Before {x} middle {{x}} {y} after.'\n"
        "[defaults]\ny = " + _toml_basic_string(default) + "\n"
    )
    assert t.defaults["y"] == default
    out = t.render(x=value)[0]["content"]
    assert out == f"Before {value} middle {{x}} {default} after."
    out2 = t.render(x=value, y=value)[0]["content"]
    assert out2 == f"Before {value} middle {{x}} {value} after."


def _toml_basic_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\' or ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------------------------------------
# Parser round trips
# ------------------------------------------------------------------------------------------

# Section text as a model might write it: prose, markdown, braces, markers, but no line that is
# one of our headings and no code fence line (those are what the format reserves).
section_text = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
        st.sampled_from(
            [
                "\n",
                "\n\n",
                "# Title\n",
                "**bold**",
                "- item\n",
                "[[A]]",
                "{x}",
                "$5",
                "Modified",
                "instruction",
                "Response:",
                "end",
            ]
        ),
    ),
    min_size=1,
    max_size=10,
).map("".join)

_RESERVED = re.compile(
    r"^\W*(modified|response to|answer to|end of|the end of|the start of|user question"
    r"|\[user question)",
    re.IGNORECASE,
)


def _usable_section(s: str) -> bool:
    if not s.strip():
        return False
    for line in s.splitlines():
        if line.lstrip().startswith(("```", "~~~")) or _RESERVED.match(line.strip()):
            return False
    return True


HEADING_STYLES = [
    ("### Modified instruction", "### Response to the modified instruction", "### End of response"),
    ("## Modified instruction:", "## Response to the modified instruction:", "## End of response"),
    ("**Modified instruction**", "**Response to the modified instruction**", "**End of response**"),
    ("# MODIFIED INSTRUCTION  ", "# Response To The Modified Instruction\t", "# end of response "),
    (
        "[User Question Modified]",
        "[The start of Assistant's answer to the modified instruction]",
        "[The end of Assistant's answer to the modified instruction]",
    ),
]


@SETTINGS
@given(
    mi=section_text,
    resp=section_text,
    style=st.sampled_from(HEADING_STYLES),
    end=st.booleans(),
    preamble=st.sampled_from(["", "Sure!\n\n", "Here it is:\n"]),
)
def test_worse_response_round_trip(mi, resp, style, end, preamble):
    assume(_usable_section(mi) and _usable_section(resp))
    mod_h, resp_h, end_h = style
    text = f"{preamble}{mod_h}\n{mi}\n\n{resp_h}\n{resp}\n"
    if end:
        text += f"\n{end_h}\ntrailing chatter\n"
    assert parse_worse_response(text) == WorseResponse(mi.strip(), resp.strip(), ended=end)


@SETTINGS
@given(mi=section_text, resp=section_text)
def test_format_worse_response_round_trip(mi, resp):
    assume(_usable_section(mi) and _usable_section(resp))
    parsed = parse_worse_response(format_worse_response(mi, resp))
    assert parsed == WorseResponse(mi.strip(), resp.strip(), ended=True)


@SETTINGS
@given(text=st.text(max_size=300))
def test_worse_response_without_heading_is_always_a_failure(text):
    assume("modified" not in text.lower() and "user question" not in text.lower())
    result = parse_worse_response(text)
    assert isinstance(result, ParseFailure)
    assert result.reason == "no modified-instruction section"


@SETTINGS
@given(text=st.one_of(st.text(max_size=300), hostile_text))
def test_parsers_never_raise_and_never_echo_the_whole_text(text):
    w = parse_worse_response(text)
    assert isinstance(w, WorseResponse | ParseFailure)
    if isinstance(w, WorseResponse):
        assert w.response != text and w.modified_instruction and w.response
    v = parse_verdict(text)
    assert isinstance(v, VerdictResult) and v.verdict in ("A", "B", "tie", None)
    assert isinstance(parse_category(text), CategoryResult | ParseFailure)


# Reasoning text without any `[[` so the only marker is the one we append.
reasoning = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="["), max_size=200
)


@SETTINGS
@given(
    body=reasoning,
    marker=st.sampled_from(["A", "B", "C"]),
    spaced=st.booleans(),
    repeat=st.integers(1, 3),
)
def test_judge_output_ending_in_a_marker_parses_to_it(body, marker, spaced, repeat):
    mark = f"[[ {marker} ]]" if spaced else f"[[{marker}]]"
    text = body + ("\n" + mark) * repeat
    expected = {"A": "A", "B": "B", "C": "tie"}[marker]
    assert parse_verdict(text).verdict == expected


@SETTINGS
@given(body=reasoning, first=st.sampled_from("ABC"), second=st.sampled_from("ABC"))
def test_two_different_markers_give_no_verdict(body, first, second):
    assume(first != second)
    result = parse_verdict(f"[[{first}]] {body}\n[[{second}]]")
    assert result.verdict is None and "conflicting" in result.reason


@SETTINGS
@given(body=reasoning)
def test_no_marker_no_verdict(body):
    assert parse_verdict(body) == VerdictResult(None, "no verdict marker")


rationale = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@SETTINGS
@given(
    why=rationale,
    cat=st.sampled_from(sorted(DEFAULT_CATEGORIES)),
    level=st.sampled_from(DIFFICULTIES),
    bold=st.booleans(),
)
def test_category_round_trip(why, cat, level, bold):
    assume(not re.search(r"(?im)^[\W_]*(category|difficulty)", why))
    text = format_category(cat, level, rationale=why)
    if bold:
        text = text.replace("Category:", "**Category:**").replace("Difficulty:", "**Difficulty:**")
    assert parse_category(text) == CategoryResult(cat, level)
