"""Calls that must reach the provider even while the run is being cancelled.

Cancelling a fine-tune job or a batch, deleting an endpoint: these run *because* the run is
being interrupted, and a second Ctrl-C, or the event loop closing the backends, must not cut
them off half-way (the measured defect: a batch cancel that was itself cancelled, and the batch
paid for twice). `to_the_end` runs one to completion, waiting through further cancellations up
to a bound, and re-raises the cancellation afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["to_the_end"]

log = logging.getLogger(__name__)

#: how long a cleanup call may hold up a run that is being stopped
DEFAULT_TIMEOUT_S = 30.0


async def to_the_end(call: Awaitable[T], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> T:
    """Await `call` to its end even if the caller is cancelled meanwhile (at most `timeout_s`;
    then TimeoutError). A cancellation received while waiting is raised once it is done (an
    error of `call` is then logged, not raised)."""
    task = asyncio.ensure_future(call)
    cancelled = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        try:
            await asyncio.wait_for(asyncio.shield(task), remaining)
        except asyncio.CancelledError:
            cancelled = True  # asked to stop: finish this call first
        except TimeoutError:
            continue
        except Exception:
            break
    if cancelled:
        # The caller is being cancelled: that wins; a failed cleanup is said here.
        if not task.cancelled() and task.exception() is not None:
            log.error("cleanup failed while stopping: %r", task.exception())
        raise asyncio.CancelledError
    return task.result()
