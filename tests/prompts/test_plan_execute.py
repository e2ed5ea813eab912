"""The plan-then-execute judge (template `judge_plan_execute`, parser ste_prompts.plan_execute)."""

from __future__ import annotations

import pytest

from ste_prompts import (
    PlanExecuteResult,
    VerdictResult,
    format_plan_execute,
    get_parser,
    get_template,
    parse_plan_execute,
)


def test_the_template_is_a_judge_whose_parser_keeps_plan_and_execution() -> None:
    t = get_template("judge_plan_execute")
    assert t.purpose == "judge"
    assert t.variables == ("instruction", "response_a", "response_b")
    assert get_parser(t.parser) is parse_plan_execute
    (message,) = t.render(instruction="Q?", response_a="ra", response_b="rb")
    text = message["content"]
    for heading in ("### Evaluation plan", "### Execution", "### Verdict"):
        assert heading in text
    # plan before execution before verdict, and the inputs after the instructions
    assert text.index("### Evaluation plan") < text.index("### Execution") < text.index("[[A]]")
    assert text.index("Q?") > text.index("### Verdict")


def test_a_well_formed_judgement() -> None:
    out = format_plan_execute(
        "1. Solve it myself.\n2. Compare.", "A says 4, B says 5; 4 is right.", "A"
    )
    r = parse_plan_execute(out)
    assert isinstance(r, VerdictResult) and isinstance(r, PlanExecuteResult)
    assert (r.verdict, r.ok, r.sections_ok) == ("A", True, True)
    assert r.plan == "1. Solve it myself.\n2. Compare."
    assert r.execution == "A says 4, B says 5; 4 is right."
    assert r.reason == "final marker [[A]] in the verdict section"


def test_markers_in_the_plan_or_execution_do_not_count() -> None:
    out = format_plan_execute(
        "Write [[A]] if A is right and [[B]] if B is.", "A looks better than [[B]] would.", "B"
    )
    assert parse_plan_execute(out).verdict == "B"


@pytest.mark.parametrize(
    ("text", "verdict", "plan", "execution"),
    [
        # headings as bold labels, with colons
        (
            "**Evaluation plan:**\nstep\n**Execution:**\ndone\n**Verdict:**\n[[B]]",
            "B",
            "step",
            "done",
        ),
        # no verdict heading: the last line
        ("### Evaluation plan\nstep\n### Execution\ndone\n[[A]]", "A", "step", "done\n[[A]]"),
        # no sections at all (a judge that ignored the shape): the verdict still counts
        ("A is better.\n[[A]]", "A", None, None),
        # a verdict section without a marker
        ("### Plan\np\n### Execution\ne\n### Verdict\nboth are fine", None, "p", "e"),
        # conflicting markers in the verdict section
        ("### Verdict\n[[A]] or [[B]]", None, None, None),
        # a marker before the last line but no verdict section: not a verdict
        ("[[A]] is what I would say\nbut I am unsure", None, None, None),
    ],
)
def test_shapes_and_failures(
    text: str, verdict: str | None, plan: str | None, execution: str | None
) -> None:
    r = parse_plan_execute(text)
    assert (r.verdict, r.plan, r.execution) == (verdict, plan, execution)
    assert r.reason  # says why, also without a verdict
