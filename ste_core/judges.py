"""Which judge a stage calls: the seed model M_0, or a fine-tuned M_j served for a block.

A fine-tuned judge is served (`FineTuneBackend.serve`) for exactly the stages that need it (its
evaluation and the next iteration's judging); the endpoint is torn down on leaving the block,
also on error or Ctrl-C, and the session is recorded in the manifest's `endpoints`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ste_core.backends import InferenceBackend
from ste_core.runtime import RunContext
from ste_core.scheduler import Scheduler
from ste_core.stages.finetune import ServedModelBackend

__all__ = ["Judge", "judge_session"]


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
    started = time.monotonic()
    served_model = ref.model
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
        ctx.manifest.data["endpoints"].append(
            {
                "iteration": j,
                "model": ref.model,
                "served_as": served_model,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        ctx.manifest.save()
