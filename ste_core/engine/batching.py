"""Collects single requests of one `Scheduler.run` into `complete_many` chunks (a provider Batch
API, or a local model's GPU batch).

Chunks are cut the same way in every session, whatever the timing: a chunk goes out when it is
full, or when nothing more can join it, that is when every request the run has started is
waiting on a chunk (none is still being looked up in the cache or waiting to retry) and the run
cannot start another: its input is used up, or its window is full with no chunk on its way to
make room. So a resumed run sends the
requests a killed session left unanswered in the same chunks, and a provider backend finds the
batch job it already paid for by the chunk's content (see `ste_core.resources`). Only when the
input itself is slow (a stream fed by another stage: the run is waiting on it) and everything
else waits does a partial chunk go after `limits.batch_linger_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ste_core.errors import TransientProviderError
from ste_core.records import ChatRequest, Completion

if TYPE_CHECKING:
    from ste_core.engine.scheduler import Scheduler

log = logging.getLogger(__name__)

__all__ = ["Batcher"]


class Batcher:
    """Collects single (sub-)requests into `complete_many` chunks for one `run()` call."""

    def __init__(self, scheduler: Scheduler, *, window: int) -> None:
        self._s = scheduler
        self._pending: list[tuple[ChatRequest, asyncio.Future[Completion]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = asyncio.Semaphore(scheduler.limits.max_batches_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        #: how many requests the run may have started at once
        self.window = window
        #: the run's input is used up: no request will be started any more
        self.exhausted = False
        #: whether the run is waiting for its (async) input to give the next request
        self.reading_input: Callable[[], bool] = lambda: False
        # Requests the run started and has not finished, and the activities (a request's cache
        # lookup, one of its calls) that may still submit something without a flush first.
        self._open = 0
        self._busy = 0

    # -- what the scheduler tells it -------------------------------------------------------------

    def started(self) -> None:
        """The run started a request."""
        self._open += 1
        self._busy += 1

    def looked_up(self, calls: int) -> None:
        """A started request needs `calls` provider calls (0: all cached)."""
        self.busy(calls - 1)

    def finished(self) -> None:
        """A started request is done (answered, failed, or cached)."""
        self._open -= 1
        self._check()

    def busy(self, change: int) -> None:
        """An activity that may submit began (+1) or ended (-1)."""
        self._busy += change
        self._check()

    def input_done(self) -> None:
        self.exhausted = True
        self._check()

    # -- chunks ----------------------------------------------------------------------------

    async def submit(self, request: ChatRequest) -> Completion:
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.append((request, fut))
        if len(self._pending) >= self._s.limits.batch_size:
            self._flush()
        self.busy(-1)  # parked until its chunk answers
        try:
            return await fut
        finally:
            self._busy += 1

    def _check(self) -> None:
        """Send the pending partial chunk once nothing more can join it (module docstring)."""
        if self._busy > 0 or not self._pending:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        # A full window with chunks on their way is not stuck: their answers make room.
        if self.exhausted or (self._open >= self.window and not self._tasks):
            self._flush()
        elif self.reading_input() and self._timer is None:  # a slow input may add more
            self._timer = asyncio.get_running_loop().call_later(
                self._s.limits.batch_linger_s, self._flush
            )
        # Otherwise the run is about to start more requests: they join this chunk.

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            chunk = self._pending[: self._s.limits.batch_size]
            self._pending = self._pending[self._s.limits.batch_size :]
            chunk = [(r, f) for r, f in chunk if not f.done()]  # drop cancelled waiters
            if chunk:
                task = asyncio.ensure_future(self._run_chunk(chunk))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run_chunk(self, chunk: list[tuple[ChatRequest, asyncio.Future[Completion]]]) -> None:
        backend = self._s.backend
        try:
            async with self._inflight:
                items = backend.complete_many(
                    [r for r, _ in chunk], concurrency=self._s.limits.concurrency
                )
                async for item in items:
                    if not 0 <= item.index < len(chunk):
                        log.warning(
                            "%s.complete_many yielded unknown index %s", backend.name, item.index
                        )
                        continue
                    fut = chunk[item.index][1]
                    if fut.done():
                        continue
                    if item.completion is not None:
                        fut.set_result(item.completion)
                    else:
                        fut.set_exception(
                            item.error
                            or TransientProviderError(
                                "batch item came back with neither completion nor error",
                                provider=backend.name,
                            )
                        )
        except asyncio.CancelledError:
            for _, fut in chunk:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as exc:  # the whole chunk failed: every waiter sees the same error
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(
                        TransientProviderError(
                            "complete_many returned no result for this request",
                            provider=backend.name,
                        )
                    )

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, fut in self._pending:
            fut.cancel()
        self._pending = []
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
