"""What several steps share: the budget pre-check of a model stage, reading pair files."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from ste_core.budget import estimate_request_tokens
from ste_core.errors import ConfigurationError
from ste_core.records import ChatRequest, ResponsePair
from ste_core.runtime import RunContext
from ste_core.scheduler import Scheduler
from ste_core.store import RunStore

__all__ = ["check_budget", "read_external_pairs"]

log = logging.getLogger(__name__)


def check_budget(
    ctx: RunContext, scheduler: Scheduler, requests: Iterable[ChatRequest], what: str
) -> None:
    """Estimate what the uncached requests of a stage would cost; stop before starting it if
    that would go over the budget (the scheduler still checks before every single call)."""
    b = ctx.budget
    if b.max_cost_usd is None and b.max_requests is None:
        return
    facts = scheduler.backend.describe()

    def uncached() -> Iterator[ChatRequest]:
        for req in requests:
            for sub in scheduler.split(req):
                if ctx.store.cache_get(RunStore.cache_key(facts, sub)) is None:
                    yield sub

    est = estimate_request_tokens(
        uncached(), expected_completion_tokens=ctx.config.budget.expected_completion_tokens
    )
    cost = 0.0
    if b.input_per_million is not None or b.output_per_million is not None:
        cost = est.cost_usd(b.input_per_million or 0.0, b.output_per_million or 0.0)
    elif b.max_cost_usd is not None and est.requests:
        ctx.reporter.warning(
            f"{what}: no prices in [budget] (input_per_million, output_per_million): the "
            "cost of this stage cannot be estimated in advance; charges still count."
        )
    log.info(
        "%s: %d uncached requests, ~%d tokens, ~$%.4f",
        what,
        est.requests,
        est.total_tokens,
        cost,
    )
    b.check(estimated_cost_usd=cost, estimated_requests=est.requests)


def read_external_pairs(ctx: RunContext, path: str, key: str) -> list[ResponsePair]:
    """Pairs from a user's file (reused eval pairs, a benchmark); bad rows are skipped with a
    warning that names the first one. `key` is the config key that named the file, for errors."""
    from ste_core.evaluation.pairs_io import DataFileError, read_pairs

    try:
        pf = read_pairs(path, on_error="skip")
    except DataFileError as exc:
        raise ConfigurationError(f"{key}: {exc}") from exc
    if pf.skipped:
        ctx.reporter.warning(
            f"{path}: {len(pf.skipped)} bad row(s) skipped (first: line "
            f"{pf.skipped[0].line}: {pf.skipped[0].reason})"
        )
    return pf.pairs
