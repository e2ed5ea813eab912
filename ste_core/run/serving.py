"""The judge a stage calls: the seed model M_0, or a fine-tuned M_j served for a block.

A fine-tuned judge is served (`FineTuneBackend.serve`) for exactly the stages that call it (the
pipeline opens one session for adjacent stages that call the same judge: its evaluation and the
next iteration's judging); the endpoint is torn down on leaving the block, also on error or
Ctrl-C, and the session is recorded in the manifest's `endpoints`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ste_core.backends import BatchItem, InferenceBackend
from ste_core.engine.scheduler import Scheduler
from ste_core.records import ChatRequest, Completion, EndpointRecord
from ste_core.run.context import RunContext

__all__ = ["Judge", "ServedModelBackend", "judge_session"]


@dataclass(frozen=True)
class Judge:
    """The judge of one stage: the scheduler to call it through and the model name to ask for."""

    iteration: int  # 0 = the seed judge M0
    model: str
    scheduler: Scheduler
    role: str


@contextlib.asynccontextmanager
async def judge_session(ctx: RunContext, j: int) -> AsyncIterator[Judge]:
    """The judge M_j: the seed judge (j = 0), or M_j served for the duration of the block."""
    cfg = ctx.config
    if j == 0:
        yield Judge(0, cfg.judge.model, ctx.scheduler("judge"), "judge_seed")
        return
    ref = ctx.model_ref(j)
    ft = ctx.finetune_backend()
    started, since = time.monotonic(), time.time()
    served_model = ref.model
    # Serving can take minutes (a dedicated endpoint) with no stage bar live: say what waits.
    ctx.reporter.info(f"judge M_{j}: serving {ref.model} through {ft.name}")
    try:
        async with ft.serve(ref) as served:
            served_model = served.model
            name = served.inference_backend or cfg.judge.backend
            # The judge's own options only make sense for the judge's own backend; a
            # fine-tune backend that serves through another one (Together serves its
            # fine-tunes itself) gets finetune.inference_options and the ModelRef's options.
            own = dict(cfg.judge.options) if name == cfg.judge.backend else {}
            options = {**own, **cfg.finetune.inference_options, **served.options}

            # Requests and records name the fine-tuned model itself, not the session's
            # (possibly temporary) endpoint: the cache stays valid across serving sessions.
            def stable_name(inner: InferenceBackend) -> InferenceBackend:
                return ServedModelBackend(inner, stable=ref.model, served=served.model)

            async with ctx.temporary_scheduler(
                name, options, cfg.judge.limits, stable_name
            ) as scheduler:
                yield Judge(j, ref.model, scheduler, f"judge_iter_{j}")
    finally:
        cost = _endpoint_cost(ctx, ref.model, since)
        ctx.manifest.endpoints.append(
            EndpointRecord(
                iteration=j,
                model=ref.model,
                served_as=served_model,
                seconds=round(time.monotonic() - started, 3),
                cost_usd=round(cost, 6) if cost is not None else None,
            )
        )
        if cost:
            ctx.manifest.add_cost("endpoints", cost)
        ctx.save_manifest()


def _endpoint_cost(ctx: RunContext, model: str, since: float) -> float | None:
    """What the endpoints that served `model` in a session begun at `since` cost: ended in it
    (one reused from a dead session counts whole, its earlier uptime included); None when no
    priced endpoint served it."""
    costs = [
        r.accrued_usd()
        for r in ctx.store.resources(kind="endpoint")
        if r.key == model and (r.ended is None or r.ended >= since)
    ]
    priced = [c for c in costs if c is not None]
    return sum(priced) if priced else None


class ServedModelBackend(InferenceBackend):
    """Calls a served fine-tuned model under a stable name.

    A serving session may expose the model under a temporary name (a dedicated endpoint created
    for this session, named differently each time). Requests, records and cache keys use the
    fine-tuned model's own name (`stable`); only the call to the provider uses the session's
    name (`served`). So a resumed run hits the cache for answers a previous session already got,
    and two iterations served under the same endpoint name never share cache entries.
    """

    def __init__(self, inner: InferenceBackend, *, stable: str, served: str) -> None:
        self.inner, self.stable, self.served = inner, stable, served
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.name = inner.name  # type: ignore[misc]

    def describe(self) -> dict[str, Any]:
        return dict(self.inner.describe())

    def expect_concurrency(self, requests_in_flight: int) -> None:
        self.inner.expect_concurrency(requests_in_flight)

    def _to_provider(self, request: ChatRequest) -> ChatRequest:
        if request.model != self.stable:
            return request
        return request.model_copy(update={"model": self.served})

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.inner.complete(self._to_provider(request))

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        async for item in self.inner.complete_many(
            [self._to_provider(r) for r in requests], concurrency=concurrency
        ):
            yield item

    async def aclose(self) -> None:
        await self.inner.aclose()
