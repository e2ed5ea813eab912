"""Send a benchmark's judge requests and write every output as it arrives.

Pairwise benchmarks (JudgeBench, RM-Bench, PPE) go through the pipeline's one judging loop,
`ste_core.stages.judge.judge_pairs`, in both orders with the pairwise judge template; the file
holds the judgement rows `pairs_io.read_judgements` reads. RewardBench 2 sends its own requests
(`rewardbench2.requests_for`): four-way rankings with a `judge_ranking` template and ratings
with a `judge_rating` template; the file holds `rewardbench2.output_row` rows. Either file is
what `ste score FILE OUTPUTS --benchmark NAME` reads back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ste_core.evaluation.benchmarks import Loaded, rewardbench2
from ste_core.evaluation.benchmarks.rewardbench2 import RB2Item, RB2Output, RB2Request
from ste_core.evaluation.pairs_io import judgement_row
from ste_core.records import ChatRequest, Message, SamplingParams
from ste_core.run.io import jsonl_line

if TYPE_CHECKING:
    from ste_prompts import Template

__all__ = ["TIES_CRITERIA", "judge_benchmark", "rb2_request"]

#: The Ties subset's rating criteria: depth and detail must not separate equally correct answers.
TIES_CRITERIA = "helpfulness, relevance and accuracy; its depth and level of detail do not count"


def rb2_request(
    item: RB2Item,
    req: RB2Request,
    *,
    model: str,
    ranking: Template,
    rating: Template,
    params: SamplingParams,
) -> ChatRequest:
    """The chat request for one RewardBench 2 judge call."""
    if req.kind == "ranking":
        shown = [item.completions[k] for k in req.shown]
        messages = ranking.render(
            instruction=item.prompt,
            response_a=shown[0],
            response_b=shown[1],
            response_c=shown[2],
            response_d=shown[3],
        )
    else:
        extra = (
            {"criteria": TIES_CRITERIA} if item.is_ties and "criteria" in rating.defaults else {}
        )
        messages = rating.render(
            instruction=item.prompt, response=item.completions[req.completion or 0], **extra
        )
    return ChatRequest(
        model=model,
        messages=tuple(Message(**m) for m in messages),
        params=params.model_copy(update={"n": 1}),
        metadata={
            "item_id": req.item_id,
            "kind": req.kind,
            "completion": req.completion,
            "correct": req.correct,
        },
    )


async def _judge_rb2(
    loaded: Loaded,
    scheduler: Any,
    *,
    model: str,
    ranking: Template,
    rating: Template,
    params: SamplingParams,
    mode: rewardbench2.Mode,
    seed: int,
) -> AsyncIterator[RB2Output]:
    items: list[RB2Item] = loaded.data

    def requests() -> Any:
        for item in items:
            for req in rewardbench2.requests_for(item, mode, seed):
                yield rb2_request(
                    item, req, model=model, ranking=ranking, rating=rating, params=params
                )

    async for outcome in scheduler.run(requests(), label=f"judge {model}"):
        meta = outcome.request.metadata
        base = {
            "item_id": meta["item_id"],
            "kind": meta["kind"],
            "completion": meta["completion"],
            "correct": meta["correct"],
            "judge_model": model,
        }
        if outcome.status != "ok" or outcome.completion is None or not outcome.completion.texts:
            error = f"{outcome.error_type or 'Error'}: {outcome.error or 'request failed'}"
            yield RB2Output(**base, error=error)
        else:
            yield RB2Output(**base, text=outcome.completion.texts[0])


def request_count(loaded: Loaded, mode: rewardbench2.Mode, seed: int) -> int:
    if loaded.benchmark.to_pairs is not None:
        return 2 * len(loaded.pairs)
    return sum(len(rewardbench2.requests_for(i, mode, seed)) for i in loaded.data)


async def judge_benchmark(
    loaded: Loaded,
    scheduler: Any,
    *,
    model: str,
    template: Template,
    ranking_template: Template,
    rating_template: Template,
    params: SamplingParams,
    mode: rewardbench2.Mode = "ranking",
    seed: int = 0,
    outputs_path: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """Judge every item of `loaded`; return the outputs (arrival order), also appended to
    `outputs_path` (overwritten first) one line each as they arrive."""
    from ste_core.stages.judge import judge_pairs

    total = request_count(loaded, mode, seed)
    stream: AsyncIterator[Any]
    if loaded.benchmark.to_pairs is not None:
        stream = judge_pairs(
            scheduler,
            loaded.pairs,
            model=model,
            template=template,
            params=params,
            orders="both",
            seed=seed,
            stage="evaluate",
        )
        to_row: Callable[[Any], dict[str, Any]] = judgement_row
    else:
        stream = _judge_rb2(
            loaded,
            scheduler,
            model=model,
            ranking=ranking_template,
            rating=rating_template,
            params=params,
            mode=mode,
            seed=seed,
        )
        to_row = rewardbench2.output_row
    out: list[Any] = []
    fh = None
    if outputs_path is not None:
        outputs_path.parent.mkdir(parents=True, exist_ok=True)
        fh = outputs_path.open("w", encoding="utf-8")
    try:
        async for rec in stream:
            out.append(rec)
            if fh is not None:
                fh.write(jsonl_line(to_row(rec)))
                fh.flush()  # a crash keeps every output so far: `ste score` reads a partial file
            if on_progress is not None:
                on_progress(len(out), total)
    finally:
        if fh is not None:
            fh.close()
    return out
