"""Builders of synthetic run directories in the layout the pipeline writes, for the report tests
(`from tests.core.rundirs import make_run`)."""

from __future__ import annotations

import random
from pathlib import Path

from ste_core.engine.store import RunStore
from ste_core.evaluation import score_pairs
from ste_core.evaluation.paired import paired_tests
from ste_core.evaluation.pairs_io import write_judgements
from ste_core.evaluation.rewardbench import EXAMPLE_COUNTS
from ste_core.records import (
    EndpointRecord,
    EvalScore,
    FineTuneInfo,
    FineTuneJobRecord,
    Funnel,
    IterationMetrics,
    Judgement,
    Order,
    ResponsePair,
    RunManifest,
    StageUsage,
)
from ste_core.run.io import write_jsonl


def eval_pairs(n: int) -> list[ResponsePair]:
    return [
        ResponsePair(id=f"e{i}", instruction=f"q{i}", chosen=f"good {i}", rejected=f"bad {i}")
        for i in range(n)
    ]


def judge(pairs: list[ResponsePair], p_correct: float, seed: int, model: str) -> list[Judgement]:
    """Both orders; each order correct with probability p_correct (seeded)."""
    rng = random.Random(seed)
    out = []
    for p in pairs:
        for o in (Order.AB, Order.BA):
            right = rng.random() < p_correct
            verdict = o.correct_verdict if right else ("B" if o is Order.AB else "A")
            out.append(
                Judgement(
                    pair_id=p.id,
                    order=o,
                    sample_index=0,
                    text=f"[[{verdict}]]",
                    verdict=verdict,
                    judge_model=model,
                    template="judge_short",
                )
            )
    return out


def rewardbench_score(n_per_subset: int, p_correct: float, seed: int) -> dict:
    rng = random.Random(seed)
    pairs, judged = [], []
    for sub in list(EXAMPLE_COUNTS)[:-3]:  # three code subsets missing: still 4 sections
        for i in range(n_per_subset):
            pid = f"{sub}-{i}"
            pairs.append(
                ResponsePair(id=pid, instruction="q", chosen="g", rejected="b", subset=sub)
            )
            v = "A" if rng.random() < p_correct else "B"
            judged.append(
                Judgement(
                    pair_id=pid,
                    order=Order.AB,
                    sample_index=0,
                    text="",
                    verdict=v,
                    judge_model="m",
                    template="t",
                )
            )
    return score_pairs(pairs, judged, mode="single").model_dump(mode="json")


STAGE_USAGE = {
    "baseline": StageUsage(
        requests=200, prompt_tokens=30000, completion_tokens=90000, cost_usd=0.11, seconds=41.5
    ),
    "judge": StageUsage(
        requests=360,
        cache_hits=4,
        prompt_tokens=400000,
        completion_tokens=200000,
        cost_usd=0.52,
        seconds=120.0,
    ),
    "evaluate": StageUsage(
        requests=120, prompt_tokens=50000, completion_tokens=20000, cost_usd=0.07, seconds=12.0
    ),
}


def make_run(
    root: Path,
    name: str,
    accuracies: list[float],
    *,
    crash_last: bool = True,
    n_eval_pairs: int = 60,
) -> Path:
    """A run with iterations 0..len(accuracies)-1, its state in the run store as the pipeline
    keeps it; the last one 'crashed' (eval.jsonl and stage counts, no metrics).

    As in the pipeline, each finished stage's usage is in its stage row and in the manifest,
    while an iteration's metrics hold the snapshot taken while it evaluated (without the
    evaluate stage itself). Fine-tune job 1 cost $4.50 and its dedicated endpoint $1.23.
    """
    run = root / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text("[run]\nname = 'x'\n")
    pairs = eval_pairs(n_eval_pairs)
    write_jsonl(run / "eval_pairs.jsonl", pairs)
    store = RunStore(run / "store.sqlite")
    manifest = RunManifest(
        name=name,
        seed=0,
        versions={"ste": "0.1.0", "python": "3.11"},
        models={"generator": "gen-model", "judge": "seed-judge"},
        finetune_jobs=[
            FineTuneJobRecord(
                iteration=1,
                job_id="ft-111",
                status="succeeded",
                model="judge-it1",
                cost_usd=4.5,
            )
        ],
        endpoints=[
            EndpointRecord(
                iteration=1, model="judge-it1", served_as="ep-1", seconds=612.5, cost_usd=1.23
            )
        ],
    )
    manifest.add_cost("finetune", 4.5)
    manifest.add_cost("endpoints", 1.23)
    for it, acc in enumerate(accuracies):
        d = run / f"iter_{it}"
        d.mkdir()
        model = "seed-judge" if it == 0 else f"judge-it{it}"
        judged = judge(pairs, acc, seed=it, model=model)
        write_judgements(d / "eval.jsonl", judged)
        last = it == len(accuracies) - 1
        if crash_last and last and it > 0:
            store.mark_stage(
                it, "judge", {"pairs": 90, "judged": 88, "correct": 70}, STAGE_USAGE["judge"]
            )
            manifest.add_usage("judge", STAGE_USAGE["judge"])
            continue  # no metrics: the iteration crashed while evaluating
        score = score_pairs(pairs, judged, mode="both")
        earlier = {i: m.eval for i, m in store.metrics().items()}
        metrics = IterationMetrics(
            iteration=it,
            judge_model=model,
            eval=score,
            paired=paired_tests(it, score, earlier, seed=manifest.seed or 0),  # as the stage
            benchmarks={
                "rewardbench": EvalScore.model_validate(
                    rewardbench_score(6, 0.6 + 0.05 * it, seed=it)
                )
            },
        )
        if it > 0:
            metrics.funnel = Funnel(
                instructions=200,
                pairs=180 - it,
                judged=176,
                correct=120 + 5 * it,
                balanced_kept=110,
                drops={"parse_failure": 20 + it, "api_error": 1},
            )
            metrics.stages = {k: STAGE_USAGE[k] for k in ("baseline", "judge")}
            metrics.finetune = FineTuneInfo(
                job_id=f"ft-{it}{it}{it}", model=model, endpoint=f"ep-{it}", status="succeeded"
            )
        store.put_metrics(metrics)
        for stage in ("baseline", "judge", "evaluate") if it > 0 else ("evaluate",):
            store.mark_stage(it, stage, {}, STAGE_USAGE[stage])
            manifest.add_usage(stage, STAGE_USAGE[stage])
    store.save_manifest(manifest)
    store.close()
    return run
