"""Stage `finetune` (step 8 of the method): train M_i on iteration i's training file, with
crash-safe job tracking.

`run_finetune` submits a job (after checking the backend's cost estimate against the budget) or
re-attaches to one submitted by an earlier, interrupted process, and polls it to the end:

1. The store key (e.g. `finetune/1`) holds the job's last known state. If it names a job that has
   not failed, the job is polled again: a resumed run never pays for a second job.
2. Before `submit`, a `submitting` marker (with the time) is stored; right after, the job id. The
   id is therefore on disk *before* the first poll. A kill inside `submit` itself, after the
   provider created the job but before its id came back, leaves only the marker: the next run
   asks the backend for a job of this spec created since then (`FineTuneBackend.find_job`; the
   spec's suffix names the run and iteration) and re-attaches to it. A backend that cannot list
   jobs makes the next run warn and submit again.
3. Every poll stores the state; `succeeded` stores the model reference; `failed`/`cancelled`
   raise `FineTuneFailed` with the provider's message (the state stays in the store, and the next
   run submits a fresh job). A poll or lookup that fails with a retryable error is asked again
   under `RetryPolicy.polling(poll_interval_s)`; when its budget is spent the error stops the run
   and the job keeps running, to re-attach to.

The model M_i is stored under `model/<i>` for the stages that call it; the job is recorded in the
manifest as soon as its id is known.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ste_core.backends import FineTuneBackend
from ste_core.engine.budget import Budget
from ste_core.engine.retry import RetryPolicy
from ste_core.engine.shield import to_the_end
from ste_core.engine.store import RunStore
from ste_core.errors import ConfigurationError, FineTuneFailed, SteError
from ste_core.records import (
    FineTuneJobRecord,
    FineTuneJobState,
    FineTuneSpec,
    JobStatus,
    ModelRef,
    Resource,
)
from ste_core.run.io import count_lines
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.training_data import training_file

if TYPE_CHECKING:
    from ste_core.config import Config
    from ste_core.run.preflight import Planner, Work

#: the kind of ledger resource a fine-tune job is recorded as
JOB = "finetune_job"

log = logging.getLogger(__name__)

__all__ = [
    "STAGE",
    "FineTuneCounts",
    "FineTuneResult",
    "FineTuneTimeout",
    "check_supported",
    "file_digest",
    "run_finetune",
]


class FineTuneTimeout(SteError):
    """The job is still running after `finetune.max_wait_s`. It was not cancelled."""


class FineTuneResult:
    """What a finished job produced: the model, the job id, and the provider's cost if any."""

    def __init__(self, model: ModelRef, job_id: str, cost_usd: float | None, resumed: bool) -> None:
        self.model, self.job_id, self.cost_usd, self.resumed = model, job_id, cost_usd, resumed


_WORKER_STOPS = (
    "interrupted: the %s training worker of job %s stops too; re-running the same command "
    "trains again"
)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_supported(backend: FineTuneBackend, spec: FineTuneSpec) -> None:
    """Raise ConfigurationError if the backend cannot do what the spec asks (before any cost)."""
    caps = backend.capabilities
    if spec.method not in caps.methods:
        allowed = ", ".join(sorted(m.value for m in caps.methods))
        raise ConfigurationError(
            f"finetune.method: got {spec.method.value!r}; backend '{backend.name}' "
            f"supports {allowed}"
        )
    if spec.from_model is not None and not caps.continue_from_previous:
        raise ConfigurationError(
            f"finetune.init_from: got 'previous'; backend '{backend.name}' cannot start a job from "
            'an earlier fine-tuned model. Use init_from = "seed" (the paper\'s setting).'
        )
    if spec.lora is not None and not caps.lora:
        raise ConfigurationError(
            f"finetune.lora: backend '{backend.name}' does not do LoRA; set lora = false"
        )
    if spec.lora is None and not caps.full:
        raise ConfigurationError(
            f"finetune.lora: got false; backend '{backend.name}' only does LoRA fine-tuning"
        )


def _dump(state: FineTuneJobState, **extra: Any) -> dict[str, Any]:
    data = state.model_dump(mode="json")
    data["events"] = list(data.get("events", ()))[-20:]  # keep the store small
    data.update(extra)
    return data


#: how far the provider's clock may run behind ours when matching a job to a `submitting` marker
CLOCK_SKEW = timedelta(minutes=5)


async def _find_interrupted_submit(
    backend: FineTuneBackend, spec: FineTuneSpec, saved: dict[str, Any], retry: RetryPolicy
) -> str | None:
    """The job an interrupted `submit` may have created, or None (then the caller submits).

    A lookup that keeps failing with retryable errors raises: the job may exist, and guessing
    could pay for it twice; re-running later asks again. A lookup the provider refuses outright
    (no permission to list jobs, say) counts as "cannot tell".
    """
    started = saved.get("submitting_at")
    found = None
    if started:
        created_after = datetime.fromisoformat(started) - CLOCK_SKEW
        try:
            found = await retry.call(
                "looking up the interrupted fine-tune submit",
                lambda: backend.find_job(spec, created_after=created_after),
            )
        except SteError as exc:
            if exc.retryable:
                raise
            log.warning("backend '%s' could not look fine-tune jobs up: %s", backend.name, exc)
    if found:
        log.warning(
            "a previous run was interrupted while submitting; the provider had created job %s "
            "(suffix %r): re-attaching to it",
            found,
            spec.suffix,
        )
        return str(found)
    log.warning(
        "a previous run was interrupted while submitting a fine-tune job (suffix %r) and "
        "backend '%s' reports no such job (a backend that cannot list jobs never does); if the "
        "provider created it, cancel it there. Submitting again.",
        spec.suffix,
        backend.name,
    )
    return None


async def run_finetune(
    backend: FineTuneBackend,
    spec: FineTuneSpec,
    training_file: Path,
    *,
    store: RunStore,
    state_key: str,
    budget: Budget | None = None,
    poll_interval_s: float = 30.0,
    max_wait_s: float | None = None,
    cancel_on_interrupt: bool = False,
    on_state: Callable[[FineTuneJobState], None] | None = None,
    on_submitted: Callable[[str], None] | None = None,
    on_estimate: Callable[[float | None], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> FineTuneResult:
    """Submit (or re-attach to) the job for `training_file` and poll it until it ends.

    Callbacks, for the progress display: `on_estimate` gets the backend's price estimate
    before a submit, `on_phase` what happens before the job exists ("estimating the price",
    "uploading and submitting"), `on_state` every state polled (its `cost_usd` is the estimate
    until the provider gives a price), `on_submitted` the new job's id."""
    digest = file_digest(training_file)
    # A 5xx or a timeout from a poll says nothing about the job: ask again, backing off.
    retry = RetryPolicy.polling(poll_interval_s)
    saved: dict[str, Any] | None = store.get_state(state_key)
    resumed = False
    job_id: str | None = None
    # What the job costs: the backend's estimate and the budget's ledger entry holding it, kept
    # in every state stored (polls included) until the job ends.
    paid: dict[str, Any] = {}
    if saved is not None:
        status = saved.get("status")
        same_file = saved.get("training_file_sha256") == digest
        if same_file:
            paid = {k: saved[k] for k in ("estimate_usd", "ledger_entry") if k in saved}
        if saved.get("job_id") and status not in ("failed", "cancelled") and same_file:
            job_id = saved["job_id"]
            resumed = True
            if status == "succeeded" and saved.get("model"):
                model = ModelRef.model_validate(saved["model"])
                return FineTuneResult(model, job_id, saved.get("cost_usd"), resumed=True)
            log.info("re-attaching to fine-tune job %s (status %s)", job_id, status)
        elif status == "submitting":
            # Only a job for the same data may be re-attached to; any other is left alone.
            if same_file:
                job_id = await _find_interrupted_submit(backend, spec, saved, retry)
                resumed = job_id is not None
            else:
                log.warning(
                    "a previous run was interrupted while submitting a fine-tune job (suffix %r) "
                    "for other training data; if the provider created it, cancel it there",
                    spec.suffix,
                )
        elif saved.get("job_id") and not same_file:
            log.warning(
                "training data changed since job %s was submitted; submitting a new job",
                saved.get("job_id"),
            )

    # The job as a resource in the ledger (kind "finetune_job"), so `ste cleanup` finds a job
    # left running and cancels it. Its cost is the ledger entry in `paid`, not this one's.
    resources = backend.resources
    job: Resource | None = None

    def track(found_id: str) -> Resource:
        """The ledger entry of job `found_id` (an earlier session's, or a new one)."""
        left = resources.open(JOB)
        same = next((r for r in left if r.provider_id == found_id), None)
        begun = next((r for r in left if r.provider_id is None and r.key == spec.suffix), None)
        entry = same or begun or resources.begin(JOB, key=spec.suffix or "")
        return resources.update(
            entry, provider_id=found_id, state="live", detail={"name": found_id}
        )

    def ended() -> None:
        if job is not None:
            resources.end(job, cost_usd=0.0)

    def settle(cost_usd: float | None) -> None:
        """The job ended: its ledger entry gets its cost (nothing for a job that failed)."""
        entry = paid.pop("ledger_entry", None)
        if budget is None or entry is None:
            return
        if cost_usd is None:
            budget.release(entry)
        else:
            budget.settle_cost(entry, cost_usd)

    def shown(state: FineTuneJobState) -> None:
        if on_state is None:
            return
        if state.cost_usd is None and paid.get("estimate_usd") is not None:
            state = state.model_copy(update={"cost_usd": paid["estimate_usd"]})
        on_state(state)

    async def submit() -> str:
        check_supported(backend, spec)
        if on_phase is not None:
            on_phase("estimating the price")
        estimate = await backend.estimate_cost(spec, training_file)
        if on_estimate is not None:
            on_estimate(estimate)
        paid.clear()
        paid["estimate_usd"] = estimate
        if budget is not None:
            if estimate is None and budget.max_cost_usd is not None:
                log.warning(
                    "backend '%s' gives no cost estimate for fine-tuning; the budget cannot "
                    "cover this job in advance",
                    backend.name,
                )
            # Checked and held in one step, in the ledger before the job exists: a run killed
            # while the job trains still counts it.
            paid["ledger_entry"] = budget.reserve_cost("finetune", estimate or 0.0)
        store.set_state(
            state_key,
            {
                "status": "submitting",
                "training_file_sha256": digest,
                "submitting_at": datetime.now(UTC).isoformat(),
                **paid,
            },
        )
        # One an interrupted submit left without an id is this same submit, asked again.
        left = [r for r in resources.open(JOB) if r.provider_id is None and r.key == spec.suffix]
        begun = left[0] if left else resources.begin(JOB, key=spec.suffix or "")
        if on_phase is not None:
            on_phase("uploading and submitting")
        try:
            first = await backend.submit(spec, training_file)
        except SteError:
            settle(None)  # refused: no job, nothing to pay
            resources.end(begun, cost_usd=0.0)
            raise
        # The id is on disk before anything else can go wrong: a resumed run re-attaches to it.
        store.set_state(state_key, _dump(first, training_file_sha256=digest, **paid))
        nonlocal job
        job = track(first.job_id)
        if on_submitted is not None:
            on_submitted(first.job_id)
        shown(first)
        return first.job_id

    if job_id is None:
        job_id = await submit()
    elif job is None:
        job = track(job_id)

    try:
        started = time.monotonic()
        reattached = resumed
        while True:
            state = await retry.call(
                f"polling fine-tune job {job_id}", functools.partial(backend.poll, job_id)
            )
            if state.status is JobStatus.SUCCEEDED:
                # The provider's final price, else its estimate: the best known cost of the job.
                cost = state.cost_usd if state.cost_usd is not None else paid.get("estimate_usd")
                state = state.model_copy(update={"cost_usd": cost})
            store.set_state(state_key, _dump(state, training_file_sha256=digest, **paid))
            shown(state)
            if state.status.terminal:
                ended()
            if state.status is JobStatus.SUCCEEDED:
                if state.model is None:
                    raise FineTuneFailed(
                        job_id,
                        "the job succeeded but the provider returned no model",
                        provider=backend.name,
                    )
                settle(state.cost_usd or 0.0)
                return FineTuneResult(state.model, job_id, state.cost_usd, resumed)
            if reattached and state.status is JobStatus.CANCELLED:
                # Cancelled while no session watched it: typically by our own Ctrl-C handler just
                # before the previous session died. Re-running the command means "carry on".
                log.warning(
                    "fine-tune job %s was cancelled meanwhile; submitting a new job", job_id
                )
                settle(None)
                job_id, resumed, reattached = await submit(), False, False
                continue
            reattached = False  # only the first poll after re-attaching can find such a leftover
            if state.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                settle(None)
                if (
                    state.status is JobStatus.CANCELLED
                    and not backend.capabilities.outlives_interrupt
                ):
                    # Ctrl-C reaches a local worker too (the whole process group): it can record
                    # "cancelled" before ste's own interrupt arrives here, which then lands
                    # elsewhere; say it now.
                    log.warning(_WORKER_STOPS, backend.name, job_id)
                message = state.message or f"job {state.status.value}"
                if state.events:
                    message += f" (last event: {state.events[-1]})"
                raise FineTuneFailed(job_id, message, provider=backend.name)
            if max_wait_s is not None and time.monotonic() - started > max_wait_s:
                raise FineTuneTimeout(
                    f"fine-tune job {job_id} is still {state.status.value} after "
                    f"finetune.max_wait_s = {max_wait_s}s. It was not cancelled: re-run the same "
                    "command to re-attach to it."
                )
            await asyncio.sleep(poll_interval_s)
    except (asyncio.CancelledError, KeyboardInterrupt):
        if not backend.capabilities.outlives_interrupt:
            log.warning(_WORKER_STOPS, backend.name, job_id)
            raise
        if not cancel_on_interrupt:
            log.warning(
                "interrupted: fine-tune job %s keeps running at %s; re-run the same command to "
                "re-attach (finetune.cancel_on_interrupt = true cancels it instead)",
                job_id,
                backend.name,
            )
            raise

        async def cancel_and_record() -> None:
            state = await backend.cancel(job_id)
            ended()
            store.set_state(state_key, _dump(state, training_file_sha256=digest, **paid))
            log.warning("interrupted: asked %s to cancel fine-tune job %s", backend.name, job_id)

        # The cancellation that brought us here (or a second Ctrl-C) must not cut the cancel off.
        try:
            await to_the_end(cancel_and_record())
        except asyncio.CancelledError:
            pass  # the cancel went through; the interrupt is re-raised below
        except Exception as exc:  # the interrupt matters more; say what to clean up by hand
            log.error(
                "could not cancel fine-tune job %s (%r): cancel it at the provider", job_id, exc
            )
        raise


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


class FineTuneCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "training_rows": "training rows",
        "resumed": "job re-attached to",
    }

    training_rows: int = 0
    #: 1 when this session re-attached to a job an earlier session submitted
    resumed: int = 0


def estimate(plan: Planner, iteration: int) -> Work:
    from ste_core.run.preflight import Work

    saved = plan.state(f"finetune/{iteration}") or {}
    if saved.get("job_id") and saved.get("status") not in ("failed", "cancelled"):
        return Work(note=f"job {saved['job_id']} already submitted: re-attached to, not paid again")
    return Work(finetune_jobs=1, finetune_cost_usd=plan.outlook(iteration).job_cost_usd)


async def finetune(step: Step) -> FineTuneCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    from_model = None
    if cfg.finetune.init_from == "previous" and i > 1:
        from_model = ctx.model_ref(i - 1).model
    spec = cfg.finetune_spec(i, from_model)
    ft = ctx.finetune_backend()
    manifest = ctx.manifest

    def submitted(job_id: str) -> None:
        manifest.upsert_job(
            FineTuneJobRecord(
                iteration=i,
                job_id=job_id,
                status="submitted",
                base_model=spec.base_model,
                from_model=from_model,
            )
        )
        ctx.save_manifest()
        ctx.reporter.info(f"iteration {i}: fine-tune job {job_id} submitted")

    def estimated(usd: float | None) -> None:
        # Training on this machine costs nothing: no line for it.
        if usd is None:
            ctx.reporter.info(
                f"iteration {i}: {ft.name} gives no price estimate for this fine-tune; "
                "submitting it anyway"
            )
        elif usd > 0:
            ctx.reporter.info(
                f"iteration {i}: fine-tune estimated at ${usd:.2f} by {ft.name}; submitting"
            )

    result = await run_finetune(
        ft,
        spec,
        training_file(ctx, i),
        store=ctx.store,
        state_key=f"finetune/{i}",
        budget=ctx.budget,
        poll_interval_s=cfg.finetune.poll_interval_s,
        max_wait_s=cfg.finetune.max_wait_s,
        cancel_on_interrupt=cfg.finetune.cancel_on_interrupt,
        on_state=ctx.reporter.finetune_state,
        on_submitted=submitted,
        on_estimate=estimated,
        on_phase=lambda phase: ctx.reporter.phase(phase),
    )
    ctx.store.set_state(f"model/{i}", result.model.model_dump(mode="json"))
    known = next((j for j in manifest.finetune_jobs if j.job_id == result.job_id), None)
    if result.cost_usd and (known is None or known.cost_usd is None):
        manifest.add_cost("finetune", result.cost_usd)
    manifest.upsert_job(
        FineTuneJobRecord(
            iteration=i,
            job_id=result.job_id,
            status="succeeded",
            model=result.model.model,
            cost_usd=result.cost_usd,
        )
    )
    manifest.models[f"iter_{i}"] = result.model.model
    ctx.save_manifest()
    return FineTuneCounts(
        training_rows=count_lines(training_file(ctx, i)), resumed=int(result.resumed)
    )


def method_note(config: Config, iteration: int) -> str:
    """The plan's note: the method this iteration trains with."""
    return f"method {config.finetune.method_at(iteration).value}"


STAGE = Stage(
    name="finetune",
    scope="iteration",
    run=finetune,
    counts=FineTuneCounts,
    needs=("training_data",),
    summary="submit (or re-attach to) the fine-tune job and wait for M_i",
    note=method_note,
    estimate=estimate,
)
