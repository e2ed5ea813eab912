"""Fixtures shared by the backend tests that replay cassettes recorded against the fake provider.

The openai and litellm tests both talk to the fake OpenAI (`OpenAIFake`; litellm reaches it as
an OpenAI-compatible `api_base`), so they share the fake factory; the Together tests use their own
`together_fake` (tests/backends/together/conftest.py).

Recording: `pytest tests/backends/<backend> --record-mode=rewrite`; CI replays with
`--record-mode=none --block-network`. The fake listens on a new port each run; the project's
`ste_cassettes` pytest plugin (`vcr_config`, registered through the pytest11 entry point)
matches on method, path, query and body (JSON as data, multipart field by field), never on host
and port, rewrites loopback hosts to `fake-provider.invalid`, and redacts authorization headers
and keys before anything is written.
"""

from __future__ import annotations

import pytest

from ste_backends.openai.fake import OpenAIFake


@pytest.fixture
def make_fake():  # type: ignore[no-untyped-def]
    """Start fake OpenAI providers on 127.0.0.1 (reached only while recording: in replay the
    cassette answers and the fake sees no request); all are stopped at teardown."""
    started: list[OpenAIFake] = []

    def make(**kwargs):  # type: ignore[no-untyped-def]
        provider = OpenAIFake(**kwargs).start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.stop()


@pytest.fixture
def replaying(ste_recording: bool) -> bool:
    """True when the test's cassette is only replayed (CI)."""
    return not ste_recording
