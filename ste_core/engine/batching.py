"""Collects single requests of one `Scheduler.run` into `complete_many` chunks (a provider Batch
API, or a local model's GPU batch)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ste_core.errors import TransientProviderError
from ste_core.records import ChatRequest, Completion

if TYPE_CHECKING:
    from ste_core.engine.scheduler import Scheduler

log = logging.getLogger(__name__)

__all__ = ["Batcher"]


class Batcher:
    """Collects single (sub-)requests into `complete_many` chunks for one `run()` call."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler
        self._pending: list[tuple[ChatRequest, asyncio.Future[Completion]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = asyncio.Semaphore(scheduler.limits.max_batches_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: ChatRequest) -> Completion:
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.append((request, fut))
        if len(self._pending) >= self._s.limits.batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._s.limits.batch_linger_s, self._flush
            )
        return await fut

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
