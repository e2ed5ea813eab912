"""Fixtures for the Together backend tests.

Cassettes (`cassettes/<test module>/<test>.yaml`) are recorded by running the REAL `together` SDK
against the fake provider's Together routes on 127.0.0.1:

    pytest tests/backends/together --record-mode=rewrite

and replayed in CI with `--record-mode=none --block-network`: then the fake server is never
started (the backends point at an unreachable placeholder host, so any request missing from a
cassette fails loudly). Scrubbing and matching come from the project's `ste_cassettes` plugin.

Re-recording against the real Together API (see docs/together.md): set STE_TOGETHER_LIVE=1,
TOGETHER_API_KEY and TOGETHER_PROJECT_ID, and the model names in STE_TOGETHER_CHAT_MODEL /
STE_TOGETHER_FT_MODEL; tests that need injected faults are skipped then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ste_backends.together.fake import TogetherFake
from tests.backends.together.tg_support import FT_MODEL, LIVE, RECORDING_KEY, REPLAY_URL


@pytest.fixture
def together_fake(ste_recording: bool) -> Any:
    """The fake Together provider: started only when this test records.

    Knobs (`fake.together.ft_failure = ...`) can be set either way; they only matter while
    recording, since a replayed test never reaches a server.
    """
    fake = TogetherFake()
    fake.add_model(FT_MODEL)
    if ste_recording and not LIVE:
        fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_only(ste_recording: bool) -> None:
    """Skip when re-recording against the real API (the test needs injected faults)."""
    if LIVE and ste_recording:
        pytest.skip("needs the fake provider's fault injection")


@pytest.fixture
def connection(together_fake: Any, ste_recording: bool) -> dict[str, Any]:
    """Backend options that point at the fake (recording), Together (live) or nowhere (replay)."""
    if LIVE and ste_recording:
        return {}
    if ste_recording:
        return {"base_url": together_fake.url, "api_key": RECORDING_KEY}
    return {"base_url": REPLAY_URL, "api_key": RECORDING_KEY}


@pytest.fixture
async def make_backend(connection: dict[str, Any]) -> AsyncIterator[Callable[..., Any]]:
    """Factory for TogetherInference / TogetherFineTune; clients are closed at teardown."""
    from ste_backends.together.finetune import TogetherFineTune
    from ste_backends.together.inference import TogetherInference

    made: list[Any] = []

    def make(kind: str = "inference", **options: Any) -> Any:
        cls = TogetherInference if kind == "inference" else TogetherFineTune
        backend = cls(**{**connection, **options})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
def interactions(vcr: Any) -> Callable[[], list[tuple[str, str, int]]]:
    """`interactions()`: (method, path, status) of every request in the cassette, in order.

    The same list whether the test just recorded or replayed, so assertions about the traffic
    (e.g. "the endpoint was deleted") hold in CI without the fake server.
    """
    from urllib.parse import urlsplit

    def listing() -> list[tuple[str, str, int]]:
        return [
            (req.method, urlsplit(req.uri).path, resp["status"]["code"])
            for req, resp in zip(vcr.requests, vcr.responses, strict=True)
        ]

    return listing
