"""What a session that died left running at a provider: found in the ledger, reused or reaped.

A dedicated endpoint bills by the hour whether or not anyone calls it. When a session starts,
every endpoint the ledger still holds open was left by a session that died (a live session
ends its own): the one serving the model the run needs next is kept, and its backend's
`serve()` reuses it; every other one is torn down by its backend (`reap`), with a warning that
names it and what it cost. A batch job left open is not touched here: the stage that submitted
it asks for the same requests again, and the backend re-attaches to it instead of paying twice.
At the end of a finished run, whatever is still open is reaped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection

from ste_core.backends import FineTuneBackend, InferenceBackend
from ste_core.records import Resource
from ste_core.run.cleanup import make_backend
from ste_core.run.context import RunContext

log = logging.getLogger(__name__)

__all__ = ["reap_left_open"]


async def reap_left_open(
    ctx: RunContext, *, keep: Collection[str] = (), kinds: Collection[str] = ("endpoint",)
) -> list[Resource]:
    """Reap the open resources of `kinds` in the run's ledger, except endpoints whose key (the
    model they serve) is in `keep`; return those reaped. A failure to reap is a warning naming
    `ste cleanup`, never a reason to stop the run."""
    reaped = []
    for resource in ctx.store.resources(open_only=True):
        if resource.kind not in kinds or resource.key in keep:
            continue
        cost = resource.accrued_usd()
        spent = f" (about ${cost:.2f} so far)" if cost is not None else ""
        try:
            async with _backend_for(ctx, resource) as backend:
                what = await backend.reap(resource)
        except Exception as exc:
            ctx.reporter.warning(
                f"{resource.label()} was left open by an earlier session{spent} and could not "
                f"be torn down: {exc}. Run `ste cleanup {ctx.rundir.root}` or remove it in "
                "the provider's console."
            )
            continue
        ctx.reporter.warning(
            f"{resource.label()} was left open by an earlier session{spent}: {what}"
        )
        final = ctx.store.resource(resource.entry)
        if resource.kind == "endpoint" and final.cost_usd:
            ctx.manifest.add_cost("endpoints", final.cost_usd)
            ctx.save_manifest()
        reaped.append(final)
    return reaped


@contextlib.asynccontextmanager
async def _backend_for(
    ctx: RunContext, resource: Resource
) -> AsyncIterator[InferenceBackend | FineTuneBackend]:
    """The run's backend of the kind that created `resource`: the role's inference backend for
    a batch job (a served judge's is made for the occasion, and closed after), else the
    fine-tune backend."""
    if resource.kind != "batch":
        yield ctx.finetune_backend()
    elif resource.section in ("generator", "judge"):
        yield ctx.scheduler(resource.section).backend  # type: ignore[arg-type]
    else:
        backend = make_backend(ctx.config, resource)
        backend.resources = ctx.resources_of(backend, resource.section)
        try:
            yield backend
        finally:
            with contextlib.suppress(Exception):
                await backend.aclose()
