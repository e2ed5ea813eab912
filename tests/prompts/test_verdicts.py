"""Verdict rules (ste_prompts.verdicts): `final`, `meta`, `rewardbench`, each against cases from
the reference code and against ports of Meta's and reward-bench's parsers
(tests/prompts/reference_parsers.py) on generated text; templates declare their rule."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ste_prompts import (
    DEFAULT_VERDICT_RULE,
    VERDICT_RULES,
    TemplateError,
    VerdictResult,
    builtin_templates,
    get_template,
    loads_template,
    parse_verdict,
    verdict_rule,
)
from tests.prompts.reference_parsers import (
    META_TO_OURS,
    REWARDBENCH_TO_OURS,
    meta_extract_winner_pairv2,
    meta_parse_judgement,
    rewardbench_process_judgement,
)
from tests.prompts.strategies import HOSTILE, SETTINGS, hostile_text

# Meta's judge prompt states the format with both markers (utils.py, the system prompt of
# SELF_TAUGHT_WITH_SYSTEM_PROMPT); a judge that restates it quotes them before its verdict.
META_FORMAT = 'output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better.'  # noqa: E501

# text -> (final, meta, rewardbench)
CASES: list[tuple[str, tuple[str | None, str | None, str | None]]] = [
    ("Response A is more accurate.\n[[A]]", ("A", "A", "A")),
    ("B handles the edge case.\n\n[[B]]", ("B", "B", "B")),
    ("They are equally good. [[C]]", ("tie", "tie", None)),
    ("[[A]] ... on reflection, final verdict: [[A]]", ("A", "A", "A")),
    ("Assistant B is better.\n**[[B]]**", ("B", "B", "B")),
    ('Final verdict: "[[A]]"', ("A", "A", "A")),
    ("[[[A]]]", ("A", "A", "A")),
    # Meta's precedence: A, then B, then C; both A and B is no verdict for Meta only.
    ("A is slightly better [[A]]\nor is it a tie?\n[[C]]", ("tie", "A", "A")),
    ("[[B]]\nOn second thought: [[C]]", ("tie", "B", "B")),
    ("I first thought [[A]].\nBut B is right.\n[[B]]", ("B", None, "A")),
    # A judge restating Meta's instruction, then its verdict on its own line.
    (f"The format: {META_FORMAT}\nA has a factual error.\n[[B]]", ("B", None, "A")),
    (f"A is right.\n[[A]]\n(As asked: {META_FORMAT})", (None, None, "A")),
    ("I would say [[A]] or [[B]].", (None, None, "A")),
    # no marker: only exact, upper-case, unspaced markers count
    ("Response A is better.", (None, None, None)),
    ("", (None, None, None)),
    ("[[ A ]]", (None, None, None)),
    ("[[a]]", (None, None, None)),
    ("[[\tB ]]", (None, None, None)),
    ("[A]", (None, None, None)),
    ("[[AB]]", (None, None, None)),
    ("[[Assistant A]]", (None, None, None)),
    ("[[D]]", (None, None, None)),
    ("**A**", (None, None, None)),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_rule_on_cases_from_the_reference_code(text, expected):
    got = tuple(parse_verdict(text, rule=r).verdict for r in ("final", "meta", "rewardbench"))
    assert got == expected
    assert META_TO_OURS[meta_parse_judgement(text)] == expected[1]
    assert REWARDBENCH_TO_OURS[rewardbench_process_judgement(text)] == expected[2]


def test_the_default_rule_is_final_and_rules_are_named():
    assert DEFAULT_VERDICT_RULE == "final"
    assert set(VERDICT_RULES) == {"final", "meta", "rewardbench"}
    assert parse_verdict("[[A]]\n[[B]]") == parse_verdict("[[A]]\n[[B]]", rule="final")
    with pytest.raises(LookupError, match="known: final, meta, rewardbench"):
        verdict_rule("fastchat")
    with pytest.raises(TypeError):
        VERDICT_RULES["mine"] = VERDICT_RULES["final"]  # type: ignore[index]


def test_reasons_say_what_happened():
    assert parse_verdict("nothing").reason == "no verdict marker"
    assert parse_verdict("[[B]]").reason == "final marker [[B]]"
    assert parse_verdict("[[A]] x\n[[A]]\n[[B]]").reason == (
        "final marker [[B]] (2 earlier markers ignored)"
    )
    assert parse_verdict("x\n[[B]] vs [[A]]").reason == (
        "conflicting verdict markers on the last marker's line: [[A]] and [[B]]"
    )
    assert "Meta" in parse_verdict("[[A]] [[B]]", rule="meta").reason
    assert parse_verdict("[[C]]", rule="rewardbench").reason == (
        "no [[A]] or [[B]] marker (reward-bench's 'error')"
    )


@pytest.mark.parametrize("rule", sorted(VERDICT_RULES))
def test_rules_never_raise(rule):
    for text in ["", "[[", "]]", "[[A", "\u2028[[B]]", *HOSTILE]:
        assert parse_verdict(text, rule=rule).verdict in ("A", "B", "tie", None)


def test_final_line_is_the_line_a_reader_sees():
    # "\r" and U+2028 end lines as str.splitlines() does: the earlier marker is another line.
    assert parse_verdict("[[A]] if A\r[[B]]").verdict == "B"
    assert parse_verdict("[[A]] if A\u2028[[B]]").verdict == "B"
    assert parse_verdict("[[A]] if A, [[B]]").verdict is None


def test_meta_dpo_extractor_is_not_a_rule_and_differs():
    # prepare_dpo_data.py's extractor calls a repeated marker a tie; parse_judgement does not.
    text = "[[A]] ... final: [[A]]"
    assert meta_extract_winner_pairv2(text) == "tie"
    assert meta_parse_judgement(text) == "model_a"
    assert parse_verdict(text, rule="meta").verdict == "A"


# ------------------------------------------------------------------------------------------
# Property tests against the ports
# ------------------------------------------------------------------------------------------

markers = st.sampled_from(["[[A]]", "[[B]]", "[[C]]"])
with_markers = st.lists(st.one_of(hostile_text, markers), max_size=8).map("".join)


@SETTINGS
@given(text=st.one_of(with_markers, hostile_text, st.text(max_size=200)))
def test_meta_and_rewardbench_rules_equal_the_ports(text):
    assert parse_verdict(text, rule="meta").verdict == META_TO_OURS[meta_parse_judgement(text)]
    assert (
        parse_verdict(text, rule="rewardbench").verdict
        == REWARDBENCH_TO_OURS[rewardbench_process_judgement(text)]
    )


# Reasoning without any line break, so everything before the last "\n" is other lines.
no_breaks = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), max_size=200)


@SETTINGS
@given(earlier=with_markers, last=markers, before=no_breaks, after=no_breaks)
def test_final_reads_the_last_marker_whatever_came_before(earlier, last, before, after):
    assume("[[" not in before + after and "]]" not in before + after)
    tail = before + last + after
    assume(all(m not in tail.replace(last, "", 1) for m in ("[[A]]", "[[B]]", "[[C]]")))
    expected = {"[[A]]": "A", "[[B]]": "B", "[[C]]": "tie"}[last]
    assert parse_verdict(f"{earlier}\n{tail}").verdict == expected


@SETTINGS
@given(text=with_markers)
def test_final_agrees_with_meta_when_one_kind_of_marker_appears(text):
    kinds = {m for m in ("[[A]]", "[[B]]", "[[C]]") if m in text}
    assume(len(kinds) == 1)
    assert parse_verdict(text).verdict == META_TO_OURS[meta_parse_judgement(text)]


# ------------------------------------------------------------------------------------------
# Templates declare their rule
# ------------------------------------------------------------------------------------------


def test_builtin_judge_templates_declare_the_rule_they_were_written_for():
    judges = {n: t.verdict_rule for n, t in builtin_templates().items() if t.parser == "verdict"}
    assert judges == {
        "judge_eval_plan": "final",
        "judge_short": "final",
        "judge_meta_rewardbench": "meta",
    }
    others = [t for t in builtin_templates().values() if t.parser != "verdict"]
    assert others and all(t.verdict_rule is None for t in others)


def test_template_parse_output_uses_its_rule():
    quoted = f"{META_FORMAT}\nB is right.\n[[B]]"
    assert get_template("judge_short").parse_output(quoted) == VerdictResult(
        "B", "final marker [[B]] (2 earlier markers ignored)"
    )
    assert get_template("judge_meta_rewardbench").parse_output(quoted).verdict is None
    assert get_template("judge_meta_rewardbench").parse_output("[[A]] or [[C]]").verdict == "A"


_JUDGE = """
name = "j"
purpose = "judge"
version = 1
description = "d"
variables = ["instruction"]
parser = "{parser}"
user = "Q: {{instruction}}"
"""


def test_verdict_rule_in_a_template_file():
    t = loads_template(_JUDGE.format(parser="verdict"))
    assert t.verdict_rule == "final"  # the default for a verdict template
    t = loads_template(_JUDGE.format(parser="verdict") + 'verdict_rule = "rewardbench"\n')
    assert t.parse_output("[[A]] [[B]]").verdict == "A"
    with pytest.raises(TemplateError, match="'verdict_rule' 'fastchat' is not a verdict rule"):
        loads_template(_JUDGE.format(parser="verdict") + 'verdict_rule = "fastchat"\n')
    with pytest.raises(TemplateError, match='applies to parser = "verdict" only'):
        loads_template(_JUDGE.format(parser="category") + 'verdict_rule = "meta"\n')
    with pytest.raises(TemplateError, match="is not a verdict rule"):
        loads_template(_JUDGE.format(parser="verdict") + "verdict_rule = 3\n")
    assert loads_template(_JUDGE.format(parser="category")).parse_output("x").ok is False


def test_the_rule_does_not_change_the_prompt_fingerprint():
    a = loads_template(_JUDGE.format(parser="verdict"))
    b = loads_template(_JUDGE.format(parser="verdict") + 'verdict_rule = "meta"\n')
    assert a.fingerprint() == b.fingerprint()


def test_a_cut_off_answer_has_no_final_verdict_but_meta_and_rewardbench_read_on() -> None:
    text = 'Answer with "[[B]]" if B is better. B seems'
    assert parse_verdict(text).verdict == "B"
    cut = parse_verdict(text, truncated=True)
    assert cut.verdict is None and "cut off at max_tokens" in cut.reason
    assert parse_verdict(text, rule="meta", truncated=True).verdict == "B"
    assert parse_verdict(text, rule="rewardbench", truncated=True).verdict == "B"
