"""The one way ste calls a model: a Scheduler in front of an InferenceBackend.

For every request the scheduler, in order:

1. **Splits** it when `params.n` exceeds `backend.capabilities.max_n`: `ceil(n / max_n)`
   sub-requests, the k-th with `sample_index = request.sample_index * 1000 + k` (distinct cache
   keys; valid while a request's n stays below 1000 * max_n) and, if the request has a `seed`,
   `seed + k` (so a seeded provider does not return the same sample k times). The sub-completions
   are merged back into one Completion with n texts. This is how the core "repeats a request when
   n>1 is unsupported".
2. **Looks up the cache** (`RunStore`) for each (sub-)request: a hit makes no call and is not
   charged to the budget.
3. **Calls** the backend for the misses: at most `limits.concurrency` at once, paced by the
   requests-per-minute and tokens-per-minute token buckets, each attempt under
   `limits.timeout_s` (a timeout becomes TransientProviderError). Each attempt is reserved in the
   budget at the moment it is sent (`Budget.reserve`: checked and counted in one step, recorded
   in the run's ledger first) and settled with its cost, or released when it failed.
4. **Retries** errors whose type is `retryable` (RateLimitError, TransientProviderError) up to
   `limits.max_retries` times, by a `RetryPolicy` (`ste_core.engine.retry`) built from the limits:
   exponential backoff with full jitter
   (`uniform(0, min(backoff_max_s, backoff_initial_s * 2**(attempt-1)))`), and at least the
   error's `retry_after` (capped at `MAX_RETRY_AFTER_S`). After a RateLimitError with
   `retry_after` every other request of this scheduler pauses until then too (no thundering herd
   against a provider that just said "slow down").
5. **Stores** each successful answer in the cache immediately (a kill loses only in-flight calls)
   and updates `stats`.

`run()` yields a typed `Outcome` per request as they finish (ok / api_error; whether an answer
parses is for the stage to decide), so a transport failure is never mistaken for a model that
wrote something unparsable. A single request's failure never raises out of `run()`; these do:
BudgetExceeded, cancellation, a `fatal` error (a refused key, a wrong setting, a model the server
does not have: every other request would fail alike) at its first occurrence, and
TooManyFailures once at least 20 requests failed for good and they are more than
`limits.max_failure_share` (default half) of those finished.

Batching: with `use_batch` (default: the backend's `capabilities.batch`), uncached requests are
collected into chunks of `limits.batch_size` and handed to `backend.complete_many`; failed items are
retried (through `complete_many` again) with the same policy. Rate limiters and the per-attempt
timeout do not apply to batch chunks (a Batch API or a local GPU paces itself).

An exception that is not a `SteError` coming out of a backend is a backend bug: it is not retried,
it becomes an api_error outcome whose `error_type` is the exception's class name, it is counted in
`stats.errors_by_type` and logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sized
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ste_core.backends import InferenceBackend
from ste_core.engine.batching import Batcher
from ste_core.engine.budget import Budget, estimate_tokens
from ste_core.engine.gate import Gate
from ste_core.engine.limits import Limits, TokenBucket
from ste_core.engine.retry import RetryPolicy
from ste_core.engine.store import RunStore
from ste_core.errors import (
    BudgetExceeded,
    RateLimitError,
    SteError,
    TooManyFailures,
    TransientProviderError,
)
from ste_core.records import ChatRequest, Completion, Outcome, Usage

log = logging.getLogger(__name__)

#: sub-request k of a split request gets sample_index = original * SPLIT_STRIDE + k
SPLIT_STRIDE = 1000
#: a stage is stopped for failures only once this many requests failed (a few are noise)
MIN_FAILURES_TO_STOP = 20


class SchedulerStats(BaseModel):
    """Running totals of one Scheduler (across all its `run`/`complete` calls).

    `requests` counts provider attempts (sub-requests and retries included); `cache_hits` counts
    (sub-)requests answered from the cache; `errors_by_type` counts every failed attempt by error
    class (retried ones too); `api_errors` counts requests that finally failed.
    """

    requests: int = 0
    completed: int = 0
    ok: int = 0
    api_errors: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors_by_type: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Usage()
    cost_usd: float = 0.0
    seconds: float = 0.0


class SchedulerEvent(BaseModel):
    """Progress of one `run()` call, sent to `on_event` after every finished request."""

    model_config = ConfigDict(frozen=True)

    label: str
    done: int
    total: int | None = None
    ok: int = 0
    errors: int = 0
    cache_hits: int = 0
    retries: int = 0
    in_flight: int = 0
    elapsed_s: float = 0.0
    rate_per_s: float = 0.0
    finished: bool = False


class _Failure(Exception):
    """Internal: a sub-request failed for good (carries the error and attempts)."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


class Scheduler:
    """Calls one InferenceBackend under limits, with cache, retries, budget and statistics.

    `limits` defaults to `Limits(concurrency=backend.capabilities.suggested_concurrency)`.
    `use_batch` defaults to `backend.capabilities.batch` (True on a backend without batching is
    ignored). `rng`, `sleep` and `clock` exist for tests (jitter, virtual time).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        limits: Limits | None = None,
        store: RunStore | None = None,
        budget: Budget | None = None,
        gate: Gate | None = None,
        on_event: Callable[[SchedulerEvent], None] | None = None,
        use_batch: bool | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        # Without explicit limits, take the backend's own concurrency hint.
        self.limits = (
            limits
            if limits is not None
            else Limits(concurrency=backend.capabilities.suggested_concurrency)
        )
        backend.expect_concurrency(self.limits.concurrency)
        self.store = store
        self.budget = budget
        self.gate = gate
        self.on_event = on_event
        caps = backend.capabilities
        self.use_batch = caps.batch if use_batch is None else bool(use_batch and caps.batch)
        self.stats = SchedulerStats()
        self._retry = RetryPolicy(
            max_retries=self.limits.max_retries,
            initial_s=self.limits.backoff_initial_s,
            max_s=self.limits.backoff_max_s,
            jitter=True,
            rng=rng or random.Random(),
        )
        self._sleep, self._clock = sleep, clock
        self._describe = dict(backend.describe())
        # Created lazily inside the running loop (asyncio primitives bind to a loop on use).
        self._sem: asyncio.Semaphore | None = None
        self._rpm: TokenBucket | None = None
        self._tpm: TokenBucket | None = None
        self._pause_until = 0.0
        # Set when a run must stop (a fatal error, too many failures): no request is sent after.
        self._halted: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API ------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """One request through cache, limits and retries.

        Raises the typed SteError of the last attempt on failure (or, for a backend bug, the
        backend's own exception), and BudgetExceeded.
        """
        started = self._clock()
        self._ensure_loop_state()
        try:
            outcome = await self._process(0, request, batcher=None)
        finally:
            self.stats.seconds += self._clock() - started
        self._count_outcome(outcome)
        if outcome.completion is None:
            exc = outcome.exception
            if exc is not None:
                raise exc
            raise TransientProviderError(outcome.error or "request failed")
        return outcome.completion

    async def run(
        self,
        requests: Iterable[ChatRequest] | AsyncIterable[ChatRequest],
        *,
        label: str = "",
    ) -> AsyncIterator[Outcome]:
        """Run many requests; yield an Outcome per request as each finishes (any order).

        The input is pulled lazily: at most a window of `2 * concurrency` requests (or two batch
        chunks when batching) is in progress at once, whatever the input's size.
        """
        self._ensure_loop_state()
        self._halted = None
        total = len(requests) if isinstance(requests, Sized) else None
        window = 2 * self.limits.concurrency
        if self.use_batch:
            window = max(window, 2 * self.limits.batch_size)
        batcher = Batcher(self, window=window) if self.use_batch else None
        # A sync iterable is pulled directly (it cannot block the loop for long). An async one is
        # pulled in a task awaited together with the requests in flight, so a slow source (e.g.
        # a queue fed by another stage's outcomes) never holds back finished outcomes.
        sync_source = iter(requests) if not isinstance(requests, AsyncIterable) else None
        async_source = requests.__aiter__() if isinstance(requests, AsyncIterable) else None
        fetch: asyncio.Future[Any] | None = None
        pending: set[asyncio.Future[Any]] = set()
        if batcher is not None and async_source is not None:
            batcher.reading_input = lambda: fetch is not None and not fetch.done()
        exhausted = False
        index = done = ok = errors = hits = 0
        first_failure: Outcome | None = None
        retries_before = self.stats.retries
        started = self._clock()

        final = False

        def emit(finished: bool) -> None:
            assert self.on_event is not None
            elapsed = self._clock() - started
            self.on_event(
                SchedulerEvent(
                    label=label,
                    done=done,
                    total=total,
                    ok=ok,
                    errors=errors,
                    cache_hits=hits,
                    retries=self.stats.retries - retries_before,
                    in_flight=len(pending),
                    elapsed_s=elapsed,
                    rate_per_s=done / elapsed if elapsed > 0 else 0.0,
                    finished=finished,
                )
            )

        def submit(req: Any) -> None:
            nonlocal index
            if not isinstance(req, ChatRequest):
                raise TypeError(
                    f"Scheduler.run expects ChatRequest items, got {type(req).__name__} "
                    f"at index {index}"
                )
            if batcher is not None:
                batcher.started()
            pending.add(asyncio.ensure_future(self._process(index, req, batcher)))
            index += 1

        try:
            while True:
                if sync_source is not None:
                    while not exhausted and len(pending) < window:
                        try:
                            submit(next(sync_source))
                        except StopIteration:
                            exhausted = True
                            if batcher is not None:
                                batcher.input_done()
                elif fetch is None and not exhausted and len(pending) < window:
                    assert async_source is not None
                    fetch = asyncio.ensure_future(async_source.__anext__())
                waiting = pending | {fetch} if fetch is not None else pending
                if not waiting:
                    if self.on_event is not None and not final:
                        emit(True)  # the source ended after the last outcome was reported
                    break
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fetch is not None and fetch in finished:
                    finished.discard(fetch)
                    try:
                        submit(fetch.result())
                    except StopAsyncIteration:
                        exhausted = True
                        if batcher is not None:
                            batcher.input_done()
                    fetch = None
                last = len(finished) - 1
                for position, task in enumerate(finished):
                    # Left in `pending` until read: if one raises, the `finally` below still
                    # reads the others (several can hit the budget at once).
                    pending.discard(task)
                    outcome: Outcome = task.result()  # BudgetExceeded, a fatal error: raised
                    self._count_outcome(outcome)
                    done += 1
                    ok += outcome.status == "ok"
                    if outcome.status == "api_error":
                        errors += 1
                        first_failure = first_failure or outcome
                        self._stop_if_failing(label, done, errors, first_failure)
                    hits += outcome.cached
                    final = exhausted and not pending and position == last
                    if self.on_event is not None:
                        emit(final)
                    yield outcome
        finally:
            leftovers = set(pending)
            if fetch is not None:
                leftovers.add(fetch)
            for task in leftovers:
                task.cancel()
            if leftovers:
                await asyncio.gather(*leftovers, return_exceptions=True)
            if batcher is not None:
                await batcher.aclose()
            self.stats.seconds += self._clock() - started

    def _stop_if_failing(self, label: str, done: int, errors: int, first: Outcome) -> None:
        """Raise TooManyFailures once at least MIN_FAILURES_TO_STOP requests failed for good and
        they are more than `limits.max_failure_share` of those finished."""
        share = self.limits.max_failure_share
        if share is None or errors < MIN_FAILURES_TO_STOP or errors <= share * done:
            return
        what = f"{label}: " if label else ""
        self._halted = TooManyFailures(
            f"{what}{errors} of {done} requests failed after retries (more than {share:.0%}), "
            f"so the stage stops instead of writing a result made of failures. The first: "
            f"{first.error_type}: {first.error}. Fix the cause and run the same command again: "
            "the answers so far are cached."
        )
        raise self._halted

    # -- one request -------------------------------------------------------------------------

    def split(self, request: ChatRequest) -> list[ChatRequest]:
        """The sub-requests `request` is sent as (itself when the backend can do its n)."""
        max_n = self.backend.capabilities.max_n
        n = request.params.n
        if max_n is None or n <= max_n:
            return [request]
        subs = []
        for k in range(math.ceil(n / max_n)):
            changes: dict[str, Any] = {"n": min(max_n, n - k * max_n)}
            if request.params.seed is not None:
                changes["seed"] = request.params.seed + k
            sub = request.with_params(**changes)
            subs.append(
                sub.model_copy(update={"sample_index": request.sample_index * SPLIT_STRIDE + k})
            )
        return subs

    async def _process(self, index: int, request: ChatRequest, batcher: Batcher | None) -> Outcome:
        if batcher is None:
            return await self._answer(index, request, None)
        try:
            return await self._answer(index, request, batcher)
        finally:
            batcher.finished()

    async def _answer(self, index: int, request: ChatRequest, batcher: Batcher | None) -> Outcome:
        subs = self.split(request)
        keys = [RunStore.cache_key(self._describe, s) for s in subs] if self.store else []
        results: list[Completion | None] = [None] * len(subs)
        if self.store is not None:
            for i, key in enumerate(keys):
                results[i] = self.store.cache_get(key)
        hits = sum(r is not None for r in results)
        self.stats.cache_hits += hits
        missing = [i for i, r in enumerate(results) if r is None]
        if batcher is not None:
            batcher.looked_up(len(missing))
        attempts = 1
        failure: _Failure | None = None
        if missing:
            calls = [self._call(subs[i], keys[i] if keys else None, batcher) for i in missing]
            answers = await asyncio.gather(*calls, return_exceptions=True)
            for i, ans in zip(missing, answers, strict=True):
                if isinstance(ans, _Failure):
                    failure = failure or ans
                    attempts = max(attempts, ans.attempts)
                elif isinstance(ans, BaseException):
                    raise ans  # BudgetExceeded, cancellation, or a bug in this module
                else:
                    completion, tries = ans
                    results[i] = completion
                    attempts = max(attempts, tries)
        if failure is not None:
            err = failure.error
            if getattr(err, "fatal", False):
                raise err  # every other request would fail alike: the stage stops here
            outcome = Outcome(
                index=index,
                request=request,
                status="api_error",
                error=str(err) or repr(err),
                error_type=type(err).__name__,
                attempts=attempts,
            )
            outcome._exception = err
            return outcome
        done = [r for r in results if r is not None]
        completion = done[0] if len(done) == 1 else _merge(done)
        return Outcome(
            index=index,
            request=request,
            status="ok",
            completion=completion,
            attempts=attempts,
            cached=not missing,
        )

    async def _call(
        self, request: ChatRequest, key: str | None, batcher: Batcher | None
    ) -> tuple[Completion, int]:
        """Call the backend for one uncached (sub-)request with retries; raise _Failure."""
        if batcher is None:
            return await self._attempts(request, key, None)
        try:
            return await self._attempts(request, key, batcher)
        finally:
            batcher.busy(-1)

    async def _attempts(
        self, request: ChatRequest, key: str | None, batcher: Batcher | None
    ) -> tuple[Completion, int]:
        attempt = 0
        while True:
            attempt += 1
            await self._wait_pause()
            try:
                if batcher is not None:
                    completion = await self._sent(
                        request, key, lambda: batcher.submit(request), batched=True
                    )
                else:
                    completion = await self._attempt(request, key)
            except (BudgetExceeded, asyncio.CancelledError):
                raise
            except SteError as exc:
                error: BaseException = exc
                if exc.fatal:
                    # Said now, not when the outcome is read: no other request goes out meanwhile.
                    self._halted = self._halted or exc
            except Exception as exc:
                # Not a typed error: a bug in the backend. Never retried, never silent.
                self._count_error(exc)
                log.warning(
                    "backend %r raised %s (not a ste error; a backend bug): %s",
                    self.backend.name,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                raise _Failure(exc, attempt) from exc
            else:
                return completion, attempt
            self._count_error(error)
            if not self._retry.should_retry(attempt, error):
                raise _Failure(error, attempt)
            delay = self._retry.delay(attempt, error)
            retry_after = self._retry.retry_after(error)
            if isinstance(error, RateLimitError) and retry_after:
                self._pause_until = max(self._pause_until, self._clock() + retry_after)
            self.stats.retries += 1
            await self._sleep(delay)

    async def _attempt(self, request: ChatRequest, key: str | None) -> Completion:
        """One direct call: concurrency slot, rate limiters, timeout."""
        assert self._sem is not None
        async with self._sem:
            estimate = 0
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None:
                estimate = _estimate(request)
                await self._tpm.acquire(estimate)
            started = self._clock()

            async def call() -> Completion:
                try:
                    async with asyncio.timeout(self.limits.timeout_s):
                        return await self.backend.complete(request)
                except TimeoutError as exc:
                    raise TransientProviderError(
                        f"no answer within timeout_s={self.limits.timeout_s}s (raise "
                        f"limits.timeout_s if the model is slow)",
                        provider=self.backend.name,
                    ) from exc

            completion = await self._sent(request, key, call)
            if self._tpm is not None:
                self._tpm.adjust(completion.usage.total_tokens - estimate)
            if not completion.latency_s:
                completion = completion.model_copy(update={"latency_s": self._clock() - started})
            return completion

    async def _sent(
        self,
        request: ChatRequest,
        key: str | None,
        send: Callable[[], Awaitable[Completion]],
        *,
        batched: bool = False,
    ) -> Completion:
        """`send()` one provider attempt, reserved in the budget first (at the last moment,
        once a slot and the rate limiters let it go), then settled or released; an answer is
        cached before the attempt leaves the gate (a graceful stop keeps it)."""
        if self._halted is not None:
            raise self._halted
        if self.gate is not None:
            await self.gate.enter()  # after a graceful stop, nothing more goes out
        try:
            ticket = (
                self.budget.reserve(request, batch_key=key if batched else None)
                if self.budget is not None
                else None
            )
            self.stats.requests += 1
            try:
                completion = await send()
            except asyncio.CancelledError:
                raise  # the provider may have it (and bill it): the reservation stands
            except BaseException:
                if ticket is not None:
                    self.budget.release(ticket)  # type: ignore[union-attr]
                raise
            if self.store is not None and key is not None:
                self.store.cache_put(key, completion, request=request)
            self.stats.usage = self.stats.usage + completion.usage
            if ticket is not None:
                self.stats.cost_usd += self.budget.settle(ticket, completion)  # type: ignore[union-attr]
            elif completion.cost_usd is not None:
                self.stats.cost_usd += completion.cost_usd
            return completion
        finally:
            if self.gate is not None:
                self.gate.leave()

    # -- bookkeeping -------------------------------------------------------------------------

    def _ensure_loop_state(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._sem is not None:
            return
        self._loop = loop
        self._sem = asyncio.Semaphore(self.limits.concurrency)
        kw: dict[str, Any] = {"clock": self._clock, "sleep": self._sleep}
        if self.limits.requests_per_minute:
            self._rpm = TokenBucket.per_minute(self.limits.requests_per_minute, **kw)
        if self.limits.tokens_per_minute:
            self._tpm = TokenBucket.per_minute(self.limits.tokens_per_minute, **kw)

    async def _wait_pause(self) -> None:
        while True:
            wait = self._pause_until - self._clock()
            if wait <= 0:
                return
            await self._sleep(wait)

    def _count_error(self, error: BaseException) -> None:
        name = type(error).__name__
        self.stats.errors_by_type[name] = self.stats.errors_by_type.get(name, 0) + 1

    def _count_outcome(self, outcome: Outcome) -> None:
        self.stats.completed += 1
        if outcome.status == "ok":
            self.stats.ok += 1
        elif outcome.status == "api_error":
            self.stats.api_errors += 1


# -- helpers ------------------------------------------------------------------------------------


def _estimate(request: ChatRequest) -> int:
    prompt = sum(estimate_tokens(m.content) + 4 for m in request.messages)
    return prompt + request.params.max_tokens * request.params.n


def _merge(parts: list[Completion]) -> Completion:
    """One Completion from the sub-completions of a split request (texts in sub-request order)."""
    texts: list[str] = []
    reasons: list[str | None] = []
    usage = Usage()
    costs = [p.cost_usd for p in parts if p.cost_usd is not None]
    for p in parts:
        texts += p.texts
        reasons += p.finish_reasons or (None,) * len(p.texts)
        usage = usage + p.usage
    return Completion(
        texts=tuple(texts),
        finish_reasons=tuple(reasons),
        usage=usage,
        request_id=parts[0].request_id,
        model=parts[0].model,
        latency_s=max(p.latency_s for p in parts),
        cost_usd=sum(costs) if costs else None,
        cached=all(p.cached for p in parts),
    )
