"""Checkpoint selection: which iteration's judge is the run's result (`evaluation.select_on`).

Meta chose its released judge by pairwise accuracy on held-out validation pairs (HelpSteer2's
validation split), not by the benchmark it then reported. Here:

* ``select_on = "<pairs file>"``: every judge is scored on those validation pairs (the benchmark
  stage; pairs whose instruction is also an eval instruction are dropped, so no item is both
  selected on and scored on); the best judge's eval accuracy is then a held-out figure.
* ``select_on = "eval"``: the best judge on the frozen eval pairs. Its eval accuracy was used to
  pick it and is biased upwards; only its benchmark results are held out, and the selection
  says so.

Ties go to the earlier iteration (the cheaper judge).
"""

from __future__ import annotations

from collections.abc import Mapping

from ste_core.records import EvalScore, IterationMetrics, JudgeSelection

__all__ = ["select_judge"]


def _criterion(m: IterationMetrics, select_on: str) -> EvalScore | None:
    """The judge's score on the selection items; None when it has none, or no accuracy there
    (too many failed requests: such a judge is never selected)."""
    score = m.eval if select_on == "eval" else m.validation
    return score if score is not None and score.accuracy is not None else None


def select_judge(
    metrics: Mapping[int, IterationMetrics], select_on: str | None
) -> JudgeSelection | None:
    """The selected judge among those scored on the selection items (None without any)."""
    if select_on is None:
        return None
    scored = {j: s for j, m in metrics.items() if (s := _criterion(m, select_on)) is not None}
    if not scored:
        return None
    # max keeps the first of ties; every accuracy is set (see _criterion)
    best = max(sorted(scored), key=lambda j: scored[j].accuracy or 0.0)
    s, m = scored[best], metrics[best]
    on_eval = select_on == "eval"
    return JudgeSelection(
        iteration=best,
        judge_model=m.judge_model,
        criterion="eval" if on_eval else "validation",
        source="the frozen eval pairs" if on_eval else select_on,
        value=s.accuracy,
        ci=(s.ci_low, s.ci_high),
        candidates={j: x.accuracy for j, x in sorted(scored.items())},
        held_out_accuracy=None if on_eval else m.eval.accuracy,
        held_out_ci=None if on_eval else (m.eval.ci_low, m.eval.ci_high),
        note=(
            "selected on the eval pairs: its eval accuracy is biased upwards; report its "
            "benchmark results"
            if on_eval
            else "selected on validation pairs disjoint from the eval pairs: its eval accuracy "
            "is held out"
        ),
    )
