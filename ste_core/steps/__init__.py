"""The pipeline's steps: one async function per stage, wiring a stage function to the run.

A step reads its inputs from the run directory, calls the pure/streaming stage functions of
`ste_core.stages`, writes its outputs atomically and returns its funnel counts. It gets
everything it uses from a `RunContext` (`ste_core.runtime`) and, for the two stages that call a
judge, the `Judge` being served (`ste_core.judges`); it never calls back into the `Pipeline`.

- `data`: load, classify (the optional category filter), split
- `generation`: eval_pairs, baseline, worse (baseline and worse responses -> pairs)
- `judging`: judge (annotate an iteration's pairs), and `judge_file`, shared with evaluation
- `training`: select, training_data, finetune
- `evaluation`: evaluate (score a judge on the frozen eval pairs and benchmarks -> metrics.json)
- `common`: the budget pre-check of model stages, reading reused/benchmark pair files

This module holds only the stage names and which stage needs which; it imports no step, so the
bookkeeping modules can use the names without an import cycle.
"""

from __future__ import annotations

__all__ = [
    "ALL_STAGES",
    "EVALUATE",
    "ITERATION_STAGES",
    "RUN_STAGES",
    "prerequisites",
]

RUN_STAGES = ("load", "classify", "split", "eval_pairs")
ITERATION_STAGES = ("baseline", "worse", "judge", "select", "training_data", "finetune")
EVALUATE = "evaluate"
ALL_STAGES = (*RUN_STAGES, *ITERATION_STAGES, EVALUATE)

# stage -> the stages whose files it reads, as (same iteration?, stage); run-level ones are at 0.
_NEEDS: dict[str, tuple[tuple[bool, str], ...]] = {
    "classify": ((False, "load"),),
    "split": ((False, "load"),),
    "eval_pairs": ((False, "split"),),
    "baseline": ((False, "split"),),
    "worse": ((True, "baseline"),),
    "judge": ((True, "worse"),),
    "select": ((True, "judge"),),
    "training_data": ((True, "select"),),
    "finetune": ((True, "training_data"),),
}


def prerequisites(name: str, iteration: int, *, filter_enabled: bool) -> list[tuple[int, str]]:
    """The (iteration, stage) pairs that must be done before stage `name` of `iteration` runs."""
    needs = list(_NEEDS.get(name, ()))
    if name == "split" and filter_enabled:
        needs.append((False, "classify"))
    if name == EVALUATE:
        # Every judge is scored on the frozen eval pairs; M_i exists once iteration i's
        # fine-tune is done (M_0 is the seed judge).
        needs = [(False, "eval_pairs")]
        if iteration > 0:
            needs.append((True, "finetune"))
    return [(iteration if same else 0, stage) for same, stage in needs]
