"""Fine-tune orchestration: submit, re-attach after a crash, failure, budget, capabilities."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ste_core import errors
from ste_core.backends import FineTuneBackend
from ste_core.engine.budget import Budget
from ste_core.engine.retry import POLL_MAX_DELAY_S, POLL_MAX_RETRIES
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded, ConfigurationError, FineTuneFailed
from ste_core.records import FineTuneJobState, FineTuneMethod, FineTuneSpec
from ste_core.resources import LedgerResources
from ste_core.stages import finetune as finetune_stage
from ste_core.stages.finetune import FineTuneTimeout, run_finetune
from tests.core.helpers import ScriptedFineTune


@pytest.fixture
def ft() -> ScriptedFineTune:
    ScriptedFineTune.jobs = {}
    ScriptedFineTune.submits = 0
    ScriptedFineTune.fail_jobs = False
    return ScriptedFineTune(polls_to_finish=3)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "store.sqlite")


@pytest.fixture
def train(tmp_path: Path) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_text('{"x": 1}\n')
    return p


SPEC = FineTuneSpec(base_model="judge-acc70", suffix="ste-t-it1")


async def test_submit_then_poll_to_success(ft, store, train) -> None:
    states = []
    res = await run_finetune(
        ft,
        SPEC,
        train,
        store=store,
        state_key="finetune/1",
        poll_interval_s=0,
        on_state=states.append,
    )
    assert res.model.model == "judge-acc70-ft1" and res.job_id == "job-1"
    assert not res.resumed and res.cost_usd == 0.25
    assert [s.status.value for s in states] == ["queued", "running", "running", "succeeded"]
    saved = store.get_state("finetune/1")
    assert saved["status"] == "succeeded" and saved["model"]["model"] == "judge-acc70-ft1"
    # Done: a second call returns the stored result without calling the provider.
    again = await run_finetune(
        ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0
    )
    assert again.resumed and again.model.model == "judge-acc70-ft1" and ft.submits == 1


async def test_a_killed_poll_loop_reattaches_instead_of_paying_twice(ft, store, train) -> None:
    seen: list[str] = []

    def stop_after_submit(job_id: str) -> None:
        seen.append(job_id)
        raise KeyboardInterrupt  # the process dies right after the job id is on disk

    with pytest.raises(KeyboardInterrupt):
        await run_finetune(
            ft,
            SPEC,
            train,
            store=store,
            state_key="finetune/1",
            poll_interval_s=0,
            on_submitted=stop_after_submit,
        )
    assert store.get_state("finetune/1")["job_id"] == "job-1"
    res = await run_finetune(
        ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0
    )
    assert res.resumed and res.job_id == "job-1" and ft.submits == 1


class DiesInsideSubmit(ScriptedFineTune):
    """The provider creates the job, then the process dies before `submit` returns its id."""

    def __init__(self) -> None:
        super().__init__(polls_to_finish=2)
        ScriptedFineTune.jobs = {}
        type(self).submits = 0  # counted per class (see ScriptedFineTune.submit)
        self.dying = True

    async def submit(self, spec, training_file):  # type: ignore[no-untyped-def]
        state = await super().submit(spec, training_file)
        if self.dying:
            self.dying = False
            raise KeyboardInterrupt
        return state


class CannotListJobs(DiesInsideSubmit):
    async def find_job(self, spec, *, created_after):  # type: ignore[no-untyped-def]
        return await FineTuneBackend.find_job(self, spec, created_after=created_after)


async def test_a_kill_inside_submit_reattaches_to_the_job_the_provider_created(
    store, train
) -> None:
    ft = DiesInsideSubmit()
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    marker = store.get_state("k")
    assert marker["status"] == "submitting" and "job_id" not in marker  # the id was lost
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-1" and res.resumed and ft.submits == 1


async def test_a_job_older_than_the_interrupted_submit_is_not_taken(store, train) -> None:
    ft = DiesInsideSubmit()
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    # job-1 now predates the marker by more than the allowed clock skew (an earlier run's job)
    marker = store.get_state("k")
    later = datetime.fromisoformat(marker["submitting_at"]) + timedelta(hours=1)
    store.set_state("k", {**marker, "submitting_at": later.isoformat()})
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2" and not res.resumed and ft.submits == 2


async def test_a_backend_that_cannot_list_jobs_submits_again_and_says_so(
    store, train, caplog: pytest.LogCaptureFixture
) -> None:
    ft = CannotListJobs()
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2" and ft.submits == 2
    assert "cancel it there" in caplog.text and SPEC.suffix in caplog.text


class FlakyLookup(DiesInsideSubmit):
    """find_job raises each of `errors` in turn before answering."""

    def __init__(self, *errors: errors.SteError) -> None:
        super().__init__()
        self.errors = list(errors)
        self.lookups = 0

    async def find_job(self, spec, *, created_after):  # type: ignore[no-untyped-def]
        self.lookups += 1
        if self.errors:
            raise self.errors.pop(0)
        return await super().find_job(spec, created_after=created_after)


async def test_a_failing_lookup_is_asked_again_then_reattaches(store, train, sleeps) -> None:
    ft = FlakyLookup(
        errors.TransientProviderError("503"), errors.RateLimitError("429", retry_after=45)
    )
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=10)
    sleeps.clear()
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=10)
    assert res.job_id == "job-1" and res.resumed and ft.submits == 1
    # backoff, then the provider's Retry-After (longer than the 20 s backoff)
    assert ft.lookups == 3 and sleeps[:2] == [10, 45]


async def test_a_lookup_that_keeps_failing_stops_the_run_without_submitting(
    store, train, sleeps
) -> None:
    ft = FlakyLookup(*[errors.TransientProviderError("503")] * 100)
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=1)
    with pytest.raises(errors.TransientProviderError):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=1)
    assert ft.submits == 1  # the job may exist: no second one on a guess
    assert store.get_state("k")["status"] == "submitting"  # the next run asks again


async def test_a_lookup_the_provider_refuses_submits_again_and_says_why(
    store, train, caplog: pytest.LogCaptureFixture
) -> None:
    ft = FlakyLookup(errors.PermanentProviderError("403: listing jobs is not allowed"))
    with pytest.raises(KeyboardInterrupt):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2" and ft.submits == 2
    assert "listing jobs is not allowed" in caplog.text


async def test_a_job_cancelled_between_sessions_is_submitted_again(ft, store, train) -> None:
    def die(job_id: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run_finetune(
            ft, SPEC, train, store=store, state_key="k", poll_interval_s=0, on_submitted=die
        )
    await ft.cancel("job-1")  # e.g. the Ctrl-C handler cancelled it as the session ended
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2" and ft.submits == 2 and not res.resumed
    assert store.get_state("k")["job_id"] == "job-2"


async def test_a_job_cancelled_while_watched_stops_the_run(ft, store, train) -> None:
    def cancel_on_first_state(state) -> None:  # type: ignore[no-untyped-def]
        if state.status.value == "running":
            ft.jobs[state.job_id]["cancelled"] = True

    with pytest.raises(FineTuneFailed, match="cancelled"):
        await run_finetune(
            ft,
            SPEC,
            train,
            store=store,
            state_key="k",
            poll_interval_s=0,
            on_state=cancel_on_first_state,
        )
    assert ft.submits == 1


async def test_cancelled_while_polling_then_resumed(ft, store, train) -> None:
    task = asyncio.ensure_future(
        run_finetune(ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0.05)
    )
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ft.jobs["job-1"].get("cancelled")  # by default the job keeps running
    res = await run_finetune(
        ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0
    )
    assert res.resumed and ft.submits == 1


async def test_cancel_on_interrupt_cancels_the_job_and_the_next_run_resubmits(
    ft, store, train
) -> None:
    task = asyncio.ensure_future(
        run_finetune(
            ft,
            SPEC,
            train,
            store=store,
            state_key="k",
            poll_interval_s=0.05,
            cancel_on_interrupt=True,
        )
    )
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ft.jobs["job-1"].get("cancelled") is True
    assert store.get_state("k")["status"] == "cancelled"
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2" and ft.submits == 2


async def test_failure_raises_with_provider_message_and_next_run_resubmits(
    ft, store, train
) -> None:
    ScriptedFineTune.fail_jobs = True
    with pytest.raises(FineTuneFailed, match="out of GPUs") as info:
        await run_finetune(ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0)
    assert info.value.job_id == "job-1" and "re-run the same command" in str(info.value)
    assert store.get_state("finetune/1")["status"] == "failed"
    ScriptedFineTune.fail_jobs = False
    res = await run_finetune(
        ft, SPEC, train, store=store, state_key="finetune/1", poll_interval_s=0
    )
    assert res.job_id == "job-2" and ft.submits == 2


async def test_changed_training_data_submits_a_new_job(ft, store, train) -> None:
    await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    train.write_text('{"x": 2}\n')
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert res.job_id == "job-2"


async def test_budget_is_checked_before_submit(ft, store, train) -> None:
    budget = Budget(max_cost_usd=0.4)  # the estimate is 0.5
    with pytest.raises(BudgetExceeded):
        await run_finetune(
            ft, SPEC, train, store=store, state_key="k", budget=budget, poll_interval_s=0
        )
    assert ft.submits == 0
    budget = Budget(max_cost_usd=1.0)
    await run_finetune(
        ft, SPEC, train, store=store, state_key="k", budget=budget, poll_interval_s=0
    )
    assert budget.spent_usd == pytest.approx(0.25)  # the provider's final cost


async def test_unsupported_requests_fail_before_any_cost(ft, store, train) -> None:
    class SFTOnly(ScriptedFineTune):
        capabilities = ScriptedFineTune.capabilities.model_copy(
            update={"methods": frozenset({FineTuneMethod.SFT}), "continue_from_previous": False}
        )

    with pytest.raises(ConfigurationError, match=r"finetune\.method"):
        await run_finetune(
            SFTOnly(),
            SPEC.model_copy(update={"method": FineTuneMethod.DPO}),
            train,
            store=store,
            state_key="k",
        )
    with pytest.raises(ConfigurationError, match="init_from"):
        await run_finetune(
            SFTOnly(),
            SPEC.model_copy(update={"from_model": "m-ft1"}),
            train,
            store=store,
            state_key="k",
        )
    assert ScriptedFineTune.submits == 0


async def test_max_wait_leaves_the_job_running(store, train) -> None:
    slow = ScriptedFineTune(polls_to_finish=1000)
    with pytest.raises(FineTuneTimeout, match="re-attach"):
        await run_finetune(
            slow, SPEC, train, store=store, state_key="k", poll_interval_s=0.01, max_wait_s=0.03
        )
    assert store.get_state("k")["status"] == "running"


class FlakyPolls(ScriptedFineTune):
    """Each poll first takes the next entry of `script`: an error to raise (the provider's API,
    not the job, is in trouble) or None for a real poll. Once the script is used up, every poll
    is real."""

    submits = 0  # its own count (ScriptedFineTune counts per class)

    def __init__(self, *script: errors.SteError | None, polls_to_finish: int = 2) -> None:
        super().__init__(polls_to_finish=polls_to_finish)
        self.script = list(script)

    async def poll(self, job_id: str):  # type: ignore[no-untyped-def]
        error = self.script.pop(0) if self.script else None
        if error is not None:
            raise error
        return await super().poll(job_id)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits of the poll loop instead of waiting."""
    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        waited.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(finetune_stage.asyncio, "sleep", fake_sleep)
    return waited


async def test_failed_polls_back_off_then_the_job_is_followed_to_the_end(
    store, train, sleeps
) -> None:
    ft = FlakyPolls(*[errors.TransientProviderError("502 from the API")] * 3)
    ScriptedFineTune.jobs = {}
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=10)
    assert res.job_id == "job-1" and not res.resumed and ft.submits == 1
    # three failures back off 10, 20, 40 s; after a good poll the plain interval is back
    assert sleeps[:3] == [10, 20, 40] and sleeps[3:] == [10]


async def test_too_many_failed_polls_stop_the_run_but_keep_the_job(store, train, sleeps) -> None:
    ft = FlakyPolls(*[errors.TransientProviderError("503")] * 100)
    ScriptedFineTune.jobs = {}
    with pytest.raises(errors.TransientProviderError):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=1)
    assert len(sleeps) == POLL_MAX_RETRIES and len(ft.script) == 100 - POLL_MAX_RETRIES - 1
    assert sleeps[-1] == POLL_MAX_DELAY_S  # 1, 2, 4, ... capped
    assert store.get_state("k")["job_id"] == "job-1"  # a re-run re-attaches to it


async def test_a_good_poll_gives_the_next_failures_a_fresh_budget(store, train, sleeps) -> None:
    burst = [errors.TransientProviderError("503")] * POLL_MAX_RETRIES
    ft = FlakyPolls(*burst, None, *burst, polls_to_finish=3)
    ScriptedFineTune.jobs = {}
    res = await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=1)
    assert res.job_id == "job-1" and not ft.script
    backoff = [min(2.0**k, POLL_MAX_DELAY_S) for k in range(POLL_MAX_RETRIES)]
    # a full burst backs off, the good poll waits the interval, the next burst starts over
    assert sleeps[: 2 * POLL_MAX_RETRIES + 1] == [*backoff, 1, *backoff]


async def test_a_permanent_poll_error_is_not_retried(store, train, sleeps) -> None:
    ft = FlakyPolls(errors.AuthenticationError("401: key revoked"))
    ScriptedFineTune.jobs = {}
    with pytest.raises(errors.AuthenticationError):
        await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=1)
    assert sleeps == []


async def test_a_job_holds_its_estimate_in_the_ledger_until_it_ends(ft, store, train) -> None:
    """The estimate (0.5) is reserved before the job exists and kept through every poll, so a
    session killed while the job trains still counts it; re-attaching settles it at the job's
    final cost (0.25)."""
    budget = Budget(max_cost_usd=10.0, ledger=store)
    task = asyncio.ensure_future(
        run_finetune(
            ScriptedFineTune(polls_to_finish=50),
            SPEC,
            train,
            store=store,
            state_key="finetune/1",
            budget=budget,
            poll_interval_s=0.01,
        )
    )
    await asyncio.sleep(0.1)
    task.cancel()  # the session dies while the job trains
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = store.get_state("finetune/1")
    assert saved["status"] == "running" and saved["estimate_usd"] == 0.5  # polls kept it
    assert store.ledger_totals() == (0, pytest.approx(0.5))
    resumed_budget = Budget(max_cost_usd=10.0, ledger=store, spent_usd=0.5)
    res = await run_finetune(
        ft,
        SPEC,
        train,
        store=store,
        state_key="finetune/1",
        budget=resumed_budget,
        poll_interval_s=0,
    )
    assert res.resumed and res.cost_usd == 0.25
    assert store.ledger_totals() == (0, pytest.approx(0.25))
    assert resumed_budget.spent_usd == pytest.approx(0.25)


async def test_a_job_without_a_final_price_costs_its_estimate(store, train) -> None:
    class NoPrice(ScriptedFineTune):
        async def poll(self, job_id):  # type: ignore[no-untyped-def]
            state = await super().poll(job_id)
            return state.model_copy(update={"cost_usd": None})

    ScriptedFineTune.jobs = {}
    budget = Budget(ledger=store)
    res = await run_finetune(
        NoPrice(polls_to_finish=1),
        SPEC,
        train,
        store=store,
        state_key="finetune/1",
        budget=budget,
        poll_interval_s=0,
    )
    assert res.cost_usd == 0.5 and store.ledger_totals() == (0, pytest.approx(0.5))


async def test_a_failed_job_gives_its_estimate_back(ft, store, train) -> None:
    ScriptedFineTune.fail_jobs = True
    budget = Budget(max_cost_usd=1.0, ledger=store)
    with pytest.raises(FineTuneFailed):
        await run_finetune(
            ft, SPEC, train, store=store, state_key="finetune/1", budget=budget, poll_interval_s=0
        )
    assert budget.spent_usd == 0 and store.ledger_totals() == (0, 0.0)


async def test_a_running_job_is_open_in_the_ledger_until_it_ends(ft, store, train) -> None:
    """So that `ste cleanup` finds a job a run left training; one entry per job, re-attaches
    included."""
    ft.resources = LedgerResources(store, None, "scripted", "finetune")
    task = asyncio.ensure_future(
        run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0.05)
    )
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [job] = store.resources(kind="finetune_job", open_only=True)
    assert (job.provider_id, job.key, job.state) == ("job-1", "ste-t-it1", "live")
    await run_finetune(ft, SPEC, train, store=store, state_key="k", poll_interval_s=0)
    assert [(r.provider_id, r.state) for r in store.resources(kind="finetune_job")] == [
        ("job-1", "ended")
    ]


async def test_the_cancel_on_interrupt_reaches_the_provider_through_a_second_ctrl_c(
    store, train
) -> None:
    class SlowCancel(ScriptedFineTune):
        async def cancel(self, job_id: str) -> FineTuneJobState:
            await asyncio.sleep(0.1)
            return await super().cancel(job_id)

    ScriptedFineTune.jobs = {}
    ft = SlowCancel(polls_to_finish=100)
    ft.resources = LedgerResources(store, None, "scripted", "finetune")
    task = asyncio.ensure_future(
        run_finetune(
            ft,
            SPEC,
            train,
            store=store,
            state_key="k",
            poll_interval_s=0.01,
            cancel_on_interrupt=True,
        )
    )
    await asyncio.sleep(0.03)
    task.cancel()
    await asyncio.sleep(0.02)
    task.cancel()  # the second Ctrl-C, while the cancel request is on its way
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ScriptedFineTune.jobs["job-1"].get("cancelled") is True
    assert store.resources(kind="finetune_job", open_only=True) == []


async def test_an_interrupt_says_what_happens_to_the_job(store, train, caplog) -> None:
    """A hosted job keeps running (re-attach later); a local worker stops with ste."""

    class LocalLike(ScriptedFineTune):
        capabilities = ScriptedFineTune.capabilities.model_copy(
            update={"outlives_interrupt": False}
        )

    for backend, expected in (
        (ScriptedFineTune(polls_to_finish=100), "keeps running at"),
        (LocalLike(polls_to_finish=100), "stops too; re-running the same command trains again"),
    ):
        ScriptedFineTune.jobs = {}
        caplog.clear()
        task = asyncio.ensure_future(
            run_finetune(
                backend,
                SPEC,
                train,
                store=store,
                state_key=str(id(backend)),
                poll_interval_s=0.01,
            )
        )
        await asyncio.sleep(0.03)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert expected in caplog.text


async def test_a_local_worker_stopped_by_ctrl_c_before_ste_is_reported(
    store, train, caplog
) -> None:
    """Ctrl-C reaches the local worker too; when its "cancelled" is polled before ste's own
    interrupt arrives, the user is still told the worker stopped (it was missing from a CI run)."""

    class LocalLike(ScriptedFineTune):
        capabilities = ScriptedFineTune.capabilities.model_copy(
            update={"outlives_interrupt": False}
        )

        async def poll(self, job_id: str) -> FineTuneJobState:
            ScriptedFineTune.jobs[job_id]["cancelled"] = True  # the signal got there first
            return await super().poll(job_id)

    ScriptedFineTune.jobs = {}
    with pytest.raises(FineTuneFailed, match="cancelled"):
        await run_finetune(
            LocalLike(polls_to_finish=100), SPEC, train, store=store, state_key="k",
            poll_interval_s=0.01,
        )  # fmt: skip
    assert "training worker of job job-1 stops too" in caplog.text
    # A hosted job cancelled by someone else is a plain failure: nothing of the kind is said.
    caplog.clear()
    ScriptedFineTune.jobs = {}

    class Hosted(ScriptedFineTune):
        async def poll(self, job_id: str) -> FineTuneJobState:
            ScriptedFineTune.jobs[job_id]["cancelled"] = True
            return await super().poll(job_id)

    with pytest.raises(FineTuneFailed, match="cancelled"):
        await run_finetune(
            Hosted(polls_to_finish=100), SPEC, train, store=store, state_key="k2",
            poll_interval_s=0.01,
        )  # fmt: skip
    assert "stops too" not in caplog.text
