"""ste_prompts parsers (ste_prompts.parsers): worse responses, categories, the registry, and
property tests (hypothesis) that they round-trip and never crash or echo the whole text. The
verdict rules are tested in test_verdicts.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ste_prompts import (
    DEFAULT_CATEGORIES,
    DIFFICULTIES,
    PARSERS,
    CategoryResult,
    ParseFailure,
    TemplateError,
    UnknownParserError,
    VerdictResult,
    WorseResponse,
    format_category,
    format_worse_response,
    get_parser,
    loads_template,
    parse_category,
    parse_verdict,
    parse_worse_response,
    register_parser,
)
from tests.prompts.strategies import SETTINGS, hostile_text

# ------------------------------------------------------------------------------------------
# Worse responses
# ------------------------------------------------------------------------------------------

CANONICAL = """\
### Modified instruction
Write a limerick about a cat who loves the rain.

### Response to the modified instruction
There once was a cat named Lorraine,
Who danced every time it would rain.

### End of response
"""
EXPECTED = WorseResponse(
    "Write a limerick about a cat who loves the rain.",
    "There once was a cat named Lorraine,\nWho danced every time it would rain.",
    ended=True,
)


def test_worse_response_canonical():
    assert parse_worse_response(CANONICAL) == EXPECTED


def test_format_worse_response_matches_canonical():
    assert format_worse_response(EXPECTED.modified_instruction, EXPECTED.response) == CANONICAL


@pytest.mark.parametrize(
    ("mod", "resp", "end"),
    [
        (
            "## Modified instruction",
            "## Response to the modified instruction",
            "## End of response",
        ),
        ("# Modified Instruction:", "# RESPONSE TO THE MODIFIED INSTRUCTION:", "# End of Response"),
        (
            "**Modified instruction**",
            "**Response to the modified instruction**",
            "**End of response**",
        ),
        (
            "**Modified instruction:**",
            "**Response to the modified instruction:**",
            "### End of response:",
        ),
        (
            "### **Modified instruction**",
            "### **Response to the modified instruction**",
            "---\n### End of response",
        ),
        (
            "###Modified instruction   ",
            "###   Response  to the  modified instruction\t",
            "### End of response  ",
        ),
        ("Modified instruction:", "Response to the modified instruction:", "End of response"),
        (
            "[User Question Modified]",
            "[The start of Assistant's answer to the modified instruction]",
            "[The end of Assistant's answer to the modified instruction]",
        ),
        (
            "### Modified instruction",
            "### Answer to the modified instruction",
            "### End of the response",
        ),
    ],
)
def test_worse_response_heading_variations(mod, resp, end):
    text = (
        f"Sure, here you go.\n\n{mod}\n{EXPECTED.modified_instruction}\n\n{resp}\n"
        f"{EXPECTED.response}\n\n{end}\nHope this helps!\n"
    )
    result = parse_worse_response(text)
    if end.startswith("---"):  # a rule line before the end heading stays in the response
        assert isinstance(result, WorseResponse)
        assert result.response == EXPECTED.response + "\n\n---"
    else:
        assert result == EXPECTED


def test_worse_response_inline_content_after_bold_label():
    text = (
        "**Modified instruction:** Write a limerick about a dog.\n\n"
        "**Response to the modified instruction:** A dog with a very loud bark\n"
        "Would sing in the dark of the park."
    )
    assert parse_worse_response(text) == WorseResponse(
        "Write a limerick about a dog.",
        "A dog with a very loud bark\nWould sing in the dark of the park.",
        ended=False,
    )


def test_worse_response_crlf_and_curly_apostrophe():
    # Headings are found with any line ending; section text keeps its own line endings.
    text = CANONICAL.replace("\n", "\r\n")
    assert parse_worse_response(text) == WorseResponse(
        EXPECTED.modified_instruction, EXPECTED.response.replace("\n", "\r\n"), ended=True
    )
    meta = (
        "[User Question Modified]\nq2\n\n"
        "[The start of Assistant\u2019s answer to the modified instruction]\nr2\n"
        "[The end of Assistant\u2019s answer to the modified instruction]"
    )
    assert parse_worse_response(meta) == WorseResponse("q2", "r2", ended=True)


def test_worse_response_without_end_line_runs_to_the_end():
    text = CANONICAL.replace("### End of response\n", "")
    assert parse_worse_response(text) == WorseResponse(
        EXPECTED.modified_instruction, EXPECTED.response, ended=False
    )


def test_worse_response_text_after_end_line_is_ignored():
    result = parse_worse_response(CANONICAL + "\nNote: I changed the animal.\n")
    assert result == EXPECTED


def test_worse_response_multiline_sections_keep_inner_formatting():
    mi = "Explain recursion.\n\n- use an example\n- keep it short"
    resp = (
        "# Recursion\n\n```python\ndef f(n):\n    return 1 if n == 0 else n * f(n - 1)\n```"
        "\n\n**Done.**"
    )
    assert parse_worse_response(format_worse_response(mi, resp)) == WorseResponse(mi, resp)


def test_worse_response_headings_inside_code_fences_do_not_count():
    resp = (
        "Here is the script:\n```python\n# Modified instruction\nprint('hi')\n"
        "# Response to the modified instruction\n```\nThat's it."
    )
    assert parse_worse_response(format_worse_response("Write a script.", resp)) == WorseResponse(
        "Write a script.", resp
    )


def test_worse_response_unclosed_fence_in_response_still_ends_at_end_line():
    resp = "Run this:\n```bash\nls -la"
    result = parse_worse_response(format_worse_response("List files.", resp))
    assert result == WorseResponse("List files.", resp, ended=True)


def test_worse_response_whole_output_in_a_fence():
    text = "```markdown\n" + CANONICAL + "```\n"
    assert parse_worse_response(text) == EXPECTED


def test_worse_response_unbalanced_fence_before_headings():
    text = "```\n" + CANONICAL  # a stray opening fence; no closing one
    assert parse_worse_response(text) == EXPECTED


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Just a response with no headings at all.", "no modified-instruction section"),
        ("", "no modified-instruction section"),
        ("### Modified instruction\nDo X.\n\nHere is my answer to X.", "no response section"),
        (
            "### Response to the modified instruction\nAn answer.\n",
            "no modified-instruction section",
        ),
        (
            "### Modified instruction\n\n### Response to the modified instruction\nAn answer.",
            "empty modified-instruction section",
        ),
        (
            "### Modified instruction\nDo X.\n### Response to the modified instruction\n  \n",
            "empty response section",
        ),
        (
            "### Modified instruction\nDo X.\n### Response to the modified instruction\n"
            "### End of response\nAn answer after the end line.",
            "empty response section",
        ),
        (
            "### Response to the modified instruction\nAn answer.\n### Modified instruction\nDo X.",
            "response section comes before the modified-instruction section",
        ),
        (
            "### Modified instruction\nDo X.\n### End of response\n"
            "### Response to the modified instruction\nAn answer.",
            "end line comes before the response section",
        ),
        (
            "### Modified instruction\n<the modified instruction>\n"
            "### Response to the modified instruction\nAn answer.",
            "modified-instruction section holds only a placeholder",
        ),
        (
            "### Modified instruction\nDo X.\n### Response to the modified instruction\n"
            "<your response to the modified instruction>\n### End of response",
            "response section holds only a placeholder",
        ),
        (
            CANONICAL + "\n" + CANONICAL,
            "modified-instruction heading appears 2 times",
        ),
        (
            "### Modified instruction\nDo X.\n### Response to the modified instruction\nA.\n"
            "### Response to the modified instruction\nB.",
            "response heading appears 2 times",
        ),
    ],
)
def test_worse_response_failures(text, reason):
    result = parse_worse_response(text)
    assert isinstance(result, ParseFailure)
    assert not result.ok
    assert result.reason.startswith(reason), result.reason


def test_worse_response_identical_modified_instruction_is_a_failure():
    text = format_worse_response("Write  a Poem about cats.", "Cats, cats.")
    assert parse_worse_response(text).ok
    result = parse_worse_response(text, instruction="write a poem about cats.")
    assert result == ParseFailure("modified instruction is identical to the original instruction")
    assert parse_worse_response(text, instruction="Write a poem about dogs.").ok


def test_worse_response_never_returns_the_whole_text():
    text = "A perfectly fine response that ignored the requested format."
    result = parse_worse_response(text)
    assert isinstance(result, ParseFailure)


def test_plain_label_without_colon_is_not_inline_content():
    # "Modified instruction is harder" is prose, not a heading.
    text = (
        "Modified instruction is harder than it looks.\n"
        "### Modified instruction\nDo Y.\n### Response to the modified instruction\nY done."
    )
    assert parse_worse_response(text) == WorseResponse("Do Y.", "Y done.", ended=False)


# ------------------------------------------------------------------------------------------
# Categories
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It asks for a proof.\nCategory: math\nDifficulty: hard", ("math", "hard")),
        ("**Category:** Reasoning\n**Difficulty:** Medium", ("reasoning", "medium")),
        ("**Category**: coding\n**Difficulty**: easy.", ("coding", "easy")),
        ('- Category: `writing`\n- Difficulty: "easy"', ("writing", "easy")),
        ("category: [roleplay]\ndifficulty: <hard>", ("roleplay", "hard")),
        ("Category: knowledge\nDifficulty: easy\n\nCategory: knowledge", ("knowledge", "easy")),
        ("Category: math - with some coding\nDifficulty: medium", ("math", "medium")),
        ("Difficulty: easy\nCategory: other", ("other", "easy")),
        ("### Category: advice\n### Difficulty: medium", ("advice", "medium")),
    ],
)
def test_parse_category(text, expected):
    assert parse_category(text) == CategoryResult(*expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("This is a math question of medium difficulty.", "no category line"),
        ("Category: math", "no difficulty line"),
        ("Category: cooking\nDifficulty: easy", "category 'cooking' is not one of"),
        ("Category: math\nDifficulty: impossible", "difficulty 'impossible' is not one of"),
        ("Category: math\nDifficulty: easy\nCategory: coding", "conflicting category lines"),
        ("Category: <one category name from the list>\nDifficulty: easy", "category"),
        ("Category: mathematics\nDifficulty: easy", "category 'mathematics' is not one of"),
    ],
)
def test_parse_category_failures(text, reason):
    result = parse_category(text)
    assert isinstance(result, ParseFailure)
    assert result.reason.startswith(reason), result.reason


def test_parse_category_custom_list_and_canonical_spelling():
    cats = {"Creative Writing": "stories", "Math": "numbers"}
    assert parse_category("Category: creative writing\nDifficulty: HARD", cats) == CategoryResult(
        "Creative Writing", "hard"
    )
    assert not parse_category("Category: reasoning\nDifficulty: easy", cats).ok
    with pytest.raises(ValueError):
        parse_category("Category: x\nDifficulty: easy", [])


def test_parse_category_ambiguous_prefix_is_refused():
    cats = ["code", "code review"]
    assert parse_category("Category: code review\nDifficulty: easy", cats).category == "code review"
    result = parse_category("Category: code, code review\nDifficulty: easy", ["code", "code, code"])
    assert isinstance(result, ParseFailure)


def test_format_category_round_trip():
    text = format_category("coding", "hard", rationale="It asks for a parser.")
    assert text == "It asks for a parser.\nCategory: coding\nDifficulty: hard\n"
    assert parse_category(text) == CategoryResult("coding", "hard")


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------


def test_registry_contents():
    assert PARSERS["verdict"] is parse_verdict
    assert PARSERS["worse_response"] is parse_worse_response
    assert PARSERS["category"] is parse_category
    assert get_parser("verdict") is parse_verdict


def test_unknown_parser_lists_registered():
    with pytest.raises(UnknownParserError) as info:
        get_parser("verdikt")
    assert "verdikt" in str(info.value) and "verdict" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_register_parser_enables_templates_using_it():
    def parse_score(text: str) -> int:
        return int(text.strip())

    template = """\
name = "scorer"
purpose = "pointwise"
version = 1
description = "Scores one answer."
variables = ["answer"]
parser = "score"
user = "Score this: {answer}"
"""
    try:
        with pytest.raises(TemplateError, match="'score' is not a registered parser"):
            loads_template(template)
        register_parser("score", parse_score)
        assert loads_template(template).parser == "score"
        assert get_parser("score")("7") == 7
        register_parser("score", parse_score)  # same function again: fine
        with pytest.raises(ValueError, match="already registered"):
            register_parser("score", lambda t: 0)
        register_parser("score", lambda t: 0, replace=True)
        assert get_parser("score")("7") == 0
        with pytest.raises(TypeError):
            register_parser("bad", "not callable")  # type: ignore[arg-type]
    finally:
        PARSERS.pop("score", None)


# ------------------------------------------------------------------------------------------
# Property tests (hypothesis): parsers round-trip and never crash or fall back to the whole text
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
