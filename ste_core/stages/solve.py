"""Stage `solve` (the verifiable-answer recipe): pairs of a right and a wrong solution.

For every training problem (an `Instruction` with a reference `answer`) the generator samples
`data.samples_per_problem` solutions in one request (`generator.solve_template`, sampled with
`generator.solve_params`), and the answer checker `data.checker` (`ste_core.answers`) reads each
one's final answer and compares it with the reference. A problem with at least one correct and
one incorrect solution makes a pair: chosen = its first correct solution, rejected = its first
incorrect one (by sample index: the samples are exchangeable, so the first is as good as a seeded
pick and needs no seed). Solutions without a readable answer and solutions cut off at max_tokens
are neither (a missing answer is not a wrong one). A problem without a pair is a `Drop`:
`api_error`, `no_correct_solution`, `no_incorrect_solution` (too easy for the generator: every
readable answer right) or `bad_reference`.

Files: data/train.jsonl (its problems) -> iter_i/pairs.jsonl (iter_i/verifiable_pairs.jsonl with
the mixed recipe) + iter_i/solve_drops.jsonl. Stage `eval_pairs` makes the eval pairs of the
held-out problems by the same pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ste_core.errors import SteError
from ste_core.records import (
    ChatRequest,
    Drop,
    DropReason,
    Funnel,
    Instruction,
    Message,
    ResponsePair,
    SamplingParams,
)
from ste_core.run.context import RunContext
from ste_core.run.io import read_rows
from ste_core.stages._streams import as_async, in_input_order, write_items_and_drops
from ste_core.stages.base import Counts, Stage, Step, flat_counts, uses_problems
from ste_core.stages.baseline import api_drop
from ste_core.stages.mix import recipe_pairs_name
from ste_core.stages.worse import pair_id

if TYPE_CHECKING:
    from ste_core.answers import AnswerCheck, AnswerChecker
    from ste_core.engine.scheduler import Scheduler
    from ste_core.run.preflight import Planner, Source, Work
    from ste_prompts import Template

__all__ = [
    "STAGE",
    "SolveCounts",
    "generate_solution_pairs",
    "solution_pair",
    "solutions_work",
    "solve_request",
    "write_solution_pairs",
]


class SolveCounts(Counts):
    """Problems, their sampled solutions by what the checker found, pairs, drops by reason."""

    labels: ClassVar[Mapping[str, str]] = {
        "solutions": "solutions sampled",
        "correct": "correct",
        "incorrect": "incorrect",
        "unparseable": "without a readable answer",
        "truncated": "cut off at max_tokens",
    }

    problems: int = 0
    solutions: int = 0
    correct: int = 0
    incorrect: int = 0
    unparseable: int = 0
    truncated: int = 0
    pairs: int = 0
    dropped: dict[str, int] = flat_counts("dropped_")

    def funnel(self) -> Funnel:
        return Funnel(pairs=self.pairs, drops=self.dropped)


def solve_request(
    problem: Instruction, *, model: str, template: Template, params: SamplingParams, samples: int
) -> ChatRequest:
    """One request for `samples` solutions of `problem` (n on the request)."""
    rendered = template.render(problem=problem.text)
    return ChatRequest(
        model=model,
        messages=tuple(Message(**m) for m in rendered),
        params=params.model_copy(update={"n": samples}),
        metadata={"problem": problem},
    )


def solution_pair(
    problem: Instruction,
    solutions: list[tuple[str, str | None]],
    checks: list[AnswerCheck | None],
    *,
    generator: str = "",
) -> ResponsePair | Drop:
    """The pair of `problem`'s first correct and first incorrect solution, or why there is none.

    `solutions` are (text, finish reason); `checks[k]` is the checker's finding on solution k,
    None for one cut off at max_tokens."""

    def drop(reason: DropReason, message: str) -> Drop:
        return Drop(instruction_id=problem.id, stage="solve", reason=reason, message=message)

    if any(c is not None and c.status == "bad_reference" for c in checks):
        return drop("bad_reference", f"the checker cannot read the reference {problem.answer!r}")
    correct = [k for k, c in enumerate(checks) if c is not None and c.status == "correct"]
    wrong = [k for k, c in enumerate(checks) if c is not None and c.status == "incorrect"]
    found = ", ".join(sorted({c.answer for c in checks if c is not None and c.answer}))
    if not correct:
        return drop(
            "no_correct_solution",
            f"no solution of {len(solutions)} states the reference {problem.answer!r} "
            f"(answers: {found or 'none readable'})",
        )
    if not wrong:
        return drop(
            "no_incorrect_solution",
            f"every readable solution of {len(solutions)} states the reference {problem.answer!r}",
        )
    chosen, rejected = solutions[correct[0]][0].strip(), solutions[wrong[0]][0].strip()
    right_check, wrong_check = checks[correct[0]], checks[wrong[0]]
    assert right_check is not None and wrong_check is not None
    return ResponsePair(
        id=pair_id(problem.id, chosen, rejected),
        instruction=problem.text,
        chosen=chosen,
        rejected=rejected,
        instruction_id=problem.id,
        recipe="verifiable",
        metadata={
            **({"generator": generator} if generator else {}),
            "reference": problem.answer,
            "chosen_answer": right_check.answer,
            "rejected_answer": wrong_check.answer,
        },
    )


async def generate_solution_pairs(
    scheduler: Scheduler,
    problems: Iterable[Instruction] | AsyncIterable[Instruction],
    *,
    model: str,
    template: Template,
    params: SamplingParams,
    samples: int,
    checker: AnswerChecker,
    tally: Counter[str] | None = None,
) -> AsyncIterator[ResponsePair | Drop]:
    """A pair or a drop for each problem, as requests finish; `tally` counts the solutions by
    what the checker found (correct, incorrect, unparseable, bad_reference) and `truncated`."""
    tally = Counter() if tally is None else tally
    reqs = (
        solve_request(p, model=model, template=template, params=params, samples=samples)
        async for p in as_async(problems)
    )
    async for outcome in scheduler.run(reqs, label="solve"):
        problem: Instruction = outcome.request.metadata["problem"]
        c = outcome.completion
        if not outcome.ok or c is None or not c.texts:
            yield api_drop(outcome, problem.id, "solve")
            continue
        assert problem.answer is not None
        solutions = [
            (text, c.finish_reasons[k] if k < len(c.finish_reasons) else None)
            for k, text in enumerate(c.texts)
        ]
        checks: list[AnswerCheck | None] = []
        for text, finish in solutions:
            check = None if finish == "length" else checker(text, problem.answer)
            tally["truncated" if check is None else check.status] += 1
            checks.append(check)
        yield solution_pair(problem, solutions, checks, generator=model)


def _problems(source: Path) -> Iterator[Instruction]:
    return (i for i in read_rows(source, Instruction) if i.answer is not None)


async def write_solution_pairs(
    ctx: RunContext,
    source: Path,
    out: Path,
    drops_out: Path,
    *,
    what: str,
    phase: str | None = None,
) -> SolveCounts:
    """A pair (or a drop) for every problem of `source`: pairs into `out`, drops into
    `drops_out`. `phase` names this pass on the progress bar when it is one of several."""
    from ste_core.plugins import get_answer_checker

    cfg = ctx.config
    gen = cfg.generator
    scheduler = ctx.scheduler("generator")
    params = gen.solve_params.to_params()
    template = ctx.template(gen.solve_template)
    checker = get_answer_checker(cfg.data.checker)
    k = cfg.data.samples_per_problem

    def requests() -> Iterator[ChatRequest]:
        return (
            solve_request(p, model=gen.model, template=template, params=params, samples=k)
            for p in _problems(source)
        )

    ctx.check_budget(scheduler, requests(), what)
    ctx.reporter.phase(phase, sum(1 for _ in _problems(source)))
    tally: Counter[str] = Counter()
    ordered = in_input_order(
        generate_solution_pairs(
            scheduler,
            _problems(source),
            model=gen.model,
            template=template,
            params=params,
            samples=k,
            checker=checker,
            tally=tally,
        ),
        (p.id for p in _problems(source)),
        lambda r: r.instruction_id,
    )
    seen, kept, dropped = await write_items_and_drops(ordered, out, drops_out)
    return SolveCounts(
        problems=seen,
        solutions=sum(tally.values()),
        correct=tally["correct"],
        incorrect=tally["incorrect"],
        unparseable=tally["unparseable"],
        truncated=tally["truncated"],
        pairs=kept,
        dropped=dropped,
    )


def solutions_work(plan: Planner, key: str, problems: Source[Instruction] | None) -> Work:
    """What the solutions of `problems` would still send (the preflight)."""
    from ste_core.run.preflight import Work

    if problems is None:
        return Work.unknown("problems unknown before `load` (a hub dataset: set data.limit)")
    gen = plan.config.generator
    params = gen.solve_params.to_params()
    template = plan.template(gen.solve_template)
    k = plan.config.data.samples_per_problem
    return plan.requests(
        key,
        "generator",
        lambda: (
            solve_request(p, model=gen.model, template=template, params=params, samples=k)
            for p in problems.read()
            if p.answer is not None
        ),
        upper_bound=not problems.exact,
    )


def estimate(plan: Planner, iteration: int) -> Work:
    # The same requests every iteration: after the first they come from the cache.
    return solutions_work(plan, "solve:train", plan.instructions("train"))


async def solve(step: Step) -> SolveCounts:
    ctx, i = step.ctx, step.iteration
    drops = ctx.rundir.iter_file(i, "solve_drops.jsonl")
    counts = await write_solution_pairs(
        ctx,
        ctx.rundir.data("train"),
        ctx.rundir.iter_file(i, recipe_pairs_name(ctx.config, "verifiable")),
        drops,
        what=f"iteration {i} solutions",
    )
    if counts.pairs == 0:
        raise SteError(
            f"iteration {i}: no problem gave a pair of a right and a wrong solution "
            f"({counts.describe()}); see {drops}. Too easy or too hard problems for the "
            "generator: raise data.samples_per_problem or generator.solve_params.temperature, "
            "or use problems of another difficulty"
        )
    return counts


STAGE = Stage(
    name="solve",
    scope="iteration",
    run=solve,
    counts=SolveCounts,
    needs=("split",),
    enabled=uses_problems,
    enabled_when='data.recipe is "verifiable" or "mixed"',
    summary="k sampled solutions per problem, checked against its answer: a right and a wrong "
    "one make a pair",
    estimate=estimate,
)
