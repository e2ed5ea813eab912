"""Virtual time for the engine tests (`from tests.core.engine.fake_clock import FakeClock`)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Virtual time: sleep() advances it instantly, so waits can be measured exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)
