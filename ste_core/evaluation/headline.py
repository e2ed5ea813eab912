"""When a judge's accuracy may be reported at all: the rule on errors, in one place.

An item that could not be scored (a request failed after retries, a judgement is missing) is an
error, never a score: it is left out of the accuracy and counted beside it. When errors exceed
`evaluation.max_error_rate` of the items (default 10%) the accuracy over the rest would describe
a different set of items than the other judges', so no headline (accuracy, interval, RewardBench,
paired test) is computed, and a stage that measures a judge fails (`require_headline`).

A model that answered without a usable verdict is not an error: that is the judge's answer,
scored as the method says (0.5) and counted as `no_verdict_count`.
"""

from __future__ import annotations

from pathlib import Path

from ste_core.errors import EvaluationFailed
from ste_core.records import EvalScore

__all__ = ["DEFAULT_MAX_ERROR_RATE", "headline_allowed", "require_headline"]

DEFAULT_MAX_ERROR_RATE = 0.10


def headline_allowed(errors: int, n: int, max_error_rate: float) -> bool:
    """Whether `n` items of which `errors` could not be scored may give an accuracy: at least one
    was scored and errors are at most `max_error_rate` of them."""
    return errors < n and errors <= max_error_rate * n


def require_headline(score: EvalScore, *, what: str, judgements: Path) -> str | None:
    """Raise EvaluationFailed when `score` has no headline (too many errors); else the warning
    to show when some items are errors (None when there are none). `what` names the judge and
    the pairs set, `judgements` the file that holds the failures."""
    first = f" The first error: {score.first_error.rstrip('.')}." if score.first_error else ""
    if score.accuracy is not None:
        if not score.error_count:
            return None
        return (
            f"{what}: {score.errors_note()}, not scored and left out of its accuracy (over "
            f"the {score.scored} scored items).{first} The failed requests are in "
            f"{judgements.absolute()}"
        )
    rate = score.max_error_rate if score.max_error_rate is not None else DEFAULT_MAX_ERROR_RATE
    raise EvaluationFailed(
        f"{what}: {score.error_count} of {score.n_items} items could not be scored "
        f"({score.request_errors} failed requests, {score.missing_count} missing judgements), "
        f"more than evaluation.max_error_rate = {rate:.0%}; no accuracy or paired test was "
        f'computed.{first} The failed requests are the rows with "reason": "api_error" in '
        f"{judgements.absolute()}. Fix the cause (an HTTP 400 or 404 usually means the model "
        "cannot be called as configured, e.g. a fine-tuned model that must be served on a "
        'dedicated endpoint: see docs/evaluation.md, "Errors are not scores") and run the same '
        "command again: this stage "
        "was not marked done, so it is retried and the answers already received come from the "
        "cache."
    )
