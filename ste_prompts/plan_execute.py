"""The parser of the `judge_plan_execute` template: the plan, its execution and the verdict.

The template asks for three sections, in the EvalPlanner shape (the judge plans how to evaluate
an answer to this instruction, carries the plan out on both responses, then decides):

    ### Evaluation plan
    <steps>
    ### Execution
    <the steps carried out on response A and response B>
    ### Verdict
    [[A]] or [[B]]

`parse_plan_execute` returns a `PlanExecuteResult`: a `VerdictResult` (so the judge stage, the
evaluation and training read it like any verdict) that also carries the plan and the execution,
for reports and for people reading judgements. The verdict is read from the verdict section
only, so a plan that mentions a marker ("answer [[A]] if ...") cannot turn into a verdict; without
a verdict heading, from the last non-blank line. Missing plan or execution sections are None:
they do not cost the verdict (a judge that skipped its plan still judged), but `sections_ok`
says whether the shape was followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ste_prompts.parsers import VerdictResult, parse_verdict, register_parser

__all__ = ["PlanExecuteResult", "format_plan_execute", "parse_plan_execute"]

PLAN_HEADING = "### Evaluation plan"
EXECUTION_HEADING = "### Execution"
VERDICT_HEADING = "### Verdict"

# A heading line: any `#` level or bold, the label, an optional colon. Case-insensitive.
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)?(?P<label>evaluation plan|plan|execution|execution of the plan"
    r"|verdict|final verdict)[ \t]*:?[ \t]*(?:\*\*)?[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_KIND = {
    "evaluation plan": "plan",
    "plan": "plan",
    "execution": "execution",
    "execution of the plan": "execution",
    "verdict": "verdict",
    "final verdict": "verdict",
}


@dataclass(frozen=True)
class PlanExecuteResult(VerdictResult):
    """A verdict with the plan and execution sections it came with (None where missing)."""

    plan: str | None = None
    execution: str | None = None

    @property
    def sections_ok(self) -> bool:
        """Whether the output had a non-empty plan and execution section."""
        return bool(self.plan) and bool(self.execution)


def _sections(text: str) -> dict[str, str]:
    """The text under each heading kind; a kind seen twice keeps its last section (a judge that
    revises its plan revises it last)."""
    heads = [
        (m.start(), m.end(), _KIND[" ".join(m.group("label").lower().split())])
        for m in _HEADING.finditer(text)
    ]
    out: dict[str, str] = {}
    for n, (_, end, kind) in enumerate(heads):
        stop = heads[n + 1][0] if n + 1 < len(heads) else len(text)
        out[kind] = text[end:stop].strip()
    return out


def parse_plan_execute(text: str) -> PlanExecuteResult:
    """The verdict, plan and execution of a `judge_plan_execute` output (see the module
    docstring)."""
    sections = _sections(text)
    if "verdict" in sections:
        where, verdict = "verdict section", parse_verdict(sections["verdict"])
    else:
        last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
        where, verdict = "last line (no verdict section)", parse_verdict(last)
    return PlanExecuteResult(
        verdict=verdict.verdict,
        reason=f"{verdict.reason} in the {where}",
        plan=sections.get("plan") or None,
        execution=sections.get("execution") or None,
    )


def format_plan_execute(plan: str, execution: str, verdict: str) -> str:
    """The canonical output the `judge_plan_execute` template asks for (fakes, tests)."""
    return (
        f"{PLAN_HEADING}\n{plan.strip()}\n\n{EXECUTION_HEADING}\n{execution.strip()}\n\n"
        f"{VERDICT_HEADING}\n[[{verdict}]]\n"
    )


register_parser("plan_execute", parse_plan_execute)
