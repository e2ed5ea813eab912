"""to_the_end: a cleanup call that must reach the provider while the run is being cancelled."""

from __future__ import annotations

import asyncio

import pytest

from ste_core.engine.shield import to_the_end


async def test_the_call_finishes_through_repeated_cancellation() -> None:
    finished: list[str] = []

    async def cancel_at_provider() -> str:
        await asyncio.sleep(0.1)
        finished.append("cancelled at the provider")
        return "ok"

    task = asyncio.ensure_future(to_the_end(cancel_at_provider()))
    for _ in range(3):
        await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["cancelled at the provider"]


async def test_without_cancellation_it_returns_the_result_or_raises_the_error() -> None:
    async def ok() -> int:
        return 7

    async def refused() -> int:
        raise ValueError("refused")

    assert await to_the_end(ok()) == 7
    with pytest.raises(ValueError, match="refused"):
        await to_the_end(refused())


async def test_a_call_that_hangs_gives_up_after_the_bound() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    with pytest.raises(TimeoutError, match="gave up"):
        await to_the_end(hangs(), timeout_s=0.05)


async def test_a_failed_cleanup_while_cancelled_is_logged_and_the_cancellation_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def cancel_refused() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("409 conflict")

    task = asyncio.ensure_future(to_the_end(cancel_refused()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "cleanup failed while stopping" in caplog.text and "409 conflict" in caplog.text
