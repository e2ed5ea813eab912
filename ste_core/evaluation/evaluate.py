"""Judge a model on labelled pairs and score it: the library behind `ste evaluate`.

The judging itself is the pipeline's `ste_core.stages.judge.judge_pairs` (one judging loop in
the code base); this module adds the evaluation defaults (greedy decoding), writes every
judgement to a JSONL file as it arrives (the format `pairs_io.read_judgements` reads back, so
`ste score` reproduces the numbers) and scores the result with `score_pairs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ste_core.evaluation.headline import DEFAULT_MAX_ERROR_RATE
from ste_core.evaluation.pairs_io import judgement_row
from ste_core.evaluation.rewardbench import WeightsVariant
from ste_core.evaluation.scoring import score_pairs
from ste_core.records import Drop, EvalScore, Judgement, ResponsePair, SamplingParams
from ste_core.run.io import jsonl_line


@dataclass
class EvaluationResult:
    score: EvalScore
    records: list[Judgement | Drop]  # in arrival order
    judgements_path: Path | None


async def evaluate_judge(
    pairs: Sequence[ResponsePair],
    *,
    scheduler: Any,
    model: str,
    template: Any,
    params: SamplingParams | None = None,
    samples_per_order: int = 1,
    orders: Literal["single", "both"] = "both",
    majority: bool = False,
    weights: WeightsVariant = "current",
    seed: int = 0,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    judgements_path: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Judge `pairs` with `model` through `scheduler` and score them.

    `params` defaults to greedy decoding (temperature 0). Judgements are appended to
    `judgements_path` (overwritten first) as they arrive. `on_progress(done, total)` is called
    after every judgement. Failed requests are errors, not scores: above `max_error_rate` of
    the items the score has no accuracy (`ste_core.evaluation.headline`).
    """
    from ste_core.stages.judge import judge_pairs

    if samples_per_order < 1:
        raise ValueError("samples_per_order must be >= 1")
    if majority and samples_per_order < 2:
        raise ValueError("majority vote needs samples_per_order >= 2")
    params = params or SamplingParams(temperature=0.0, top_p=1.0, max_tokens=4096)
    if samples_per_order > 1 and params.temperature == 0.0:
        raise ValueError(
            "samples_per_order > 1 needs temperature > 0 (greedy samples are all the same)"
        )
    total = len(pairs) * (2 if orders == "both" else 1) * samples_per_order
    records: list[Any] = []
    fh = None
    if judgements_path is not None:
        judgements_path.parent.mkdir(parents=True, exist_ok=True)
        fh = judgements_path.open("w", encoding="utf-8")
    try:
        async for rec in judge_pairs(
            scheduler,
            pairs,
            model=model,
            template=template,
            params=params,
            samples_per_order=samples_per_order,
            orders=orders,
            seed=seed,
            stage="evaluate",
        ):
            records.append(rec)
            if fh is not None:
                fh.write(jsonl_line(judgement_row(rec)))
                fh.flush()  # a crash keeps every judgement made so far
            if on_progress is not None:
                on_progress(len(records), total)
    finally:
        if fh is not None:
            fh.close()
    score = score_pairs(
        pairs,
        records,
        mode=orders,
        majority=majority,
        weights=weights,
        seed=seed,
        max_error_rate=max_error_rate,
    )
    return EvaluationResult(score=score, records=records, judgements_path=judgements_path)
