"""A graceful stop: no new request goes out, the ones on the wire finish and are kept.

Cancelling a run at once (a second Ctrl-C) throws away the answers of the requests in flight,
which the provider has already billed; the next session asks them again. On the first Ctrl-C or
SIGTERM the pipeline closes the run's `Gate` instead: every scheduler stops sending (a request
about to go out waits at the gate for good), the requests already sent finish and their answers
reach the cache, and once none is left in flight (or a grace period has passed) the run is
cancelled as usual: endpoints torn down, state saved.
"""

from __future__ import annotations

import asyncio

__all__ = ["Gate"]


class Gate:
    """Lets requests out until it is closed; counts those on the wire."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._closed = False
        self._drained: asyncio.Event | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Send nothing more; `drained()` returns once the requests on the wire are done."""
        self._closed = True
        self._settle()

    async def enter(self) -> None:
        """Wait to send one request: at once while open; for good once closed (the caller is
        cancelled with the run)."""
        if self._closed:
            await asyncio.Event().wait()
        self.in_flight += 1

    def leave(self) -> None:
        """The request that entered is done (answered, failed or cancelled)."""
        self.in_flight -= 1
        self._settle()

    async def drained(self) -> None:
        """Return once the gate is closed and nothing is on the wire."""
        if self._drained is None:
            self._drained = asyncio.Event()
            self._settle()
        await self._drained.wait()

    def _settle(self) -> None:
        if self._drained is not None and self._closed and self.in_flight == 0:
            self._drained.set()
