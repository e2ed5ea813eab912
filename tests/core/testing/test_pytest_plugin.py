"""The `ste_cassettes` pytest plugin, exercised the way a user would: an inner pytest session
records a cassette against a local server, then replays it with the server gone."""

from __future__ import annotations

import pytest

# Imported here so the in-process inner sessions reuse these modules: pytester drops modules
# first imported inside an inner run, and a re-imported yaml loader breaks vcr's deserializer.
import vcr.serializers.yamlserializer  # noqa: F401

from ste_backends.together.fake import TogetherFake

pytest_plugins = ["pytester"]

SECRET = "tgp_v1_plugin-test-secret-4242"

RECORDED_TEST = """
import asyncio, os
import pytest
from ste_core.records import ChatRequest

URL = os.environ.get("STE_TEST_URL", "http://fake-provider.invalid")

@pytest.mark.vcr
def test_judge(ste_cassette_backend, ste_recording):
    backend = ste_cassette_backend("together", base_url=URL, price_lookup=False)

    async def run():
        async with backend:
            return await backend.complete(
                ChatRequest.of("fake-acc80", [{"role": "user", "content": "What is rain?"}])
            )

    completion = asyncio.run(run())
    assert "rain" in completion.texts[0].lower()
    assert ste_recording == (os.environ.get("EXPECT_RECORDING") == "1")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider\nasyncio_default_fixture_loop_scope = function\n"
    )
    monkeypatch.setenv("STE_PLUGINS", "together")
    return pytester


# The inner recording talks to the fake on 127.0.0.1, also when CI runs with --block-network.
@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_record_then_replay_without_server_or_key(inner, monkeypatch):
    inner.makepyfile(test_user_pipeline=RECORDED_TEST)
    with TogetherFake(api_key=SECRET) as fake:
        monkeypatch.setenv("STE_TEST_URL", fake.url)
        monkeypatch.setenv("TOGETHER_API_KEY", SECRET)
        monkeypatch.setenv("EXPECT_RECORDING", "1")
        inner.runpytest("--record-mode=once").assert_outcomes(passed=1)
        assert fake.counter["chat"] == 1
    [cassette] = list(inner.path.rglob("cassettes/**/*.yaml"))
    text = cassette.read_text()
    assert SECRET not in text and "REDACTED" in text  # Authorization scrubbed
    assert "127.0.0.1" not in text and "fake-provider.invalid" in text
    # Replay: no server, no key in the environment, network blocked.
    monkeypatch.delenv("TOGETHER_API_KEY")
    monkeypatch.setenv("STE_TEST_URL", "http://10.255.255.1:9")
    monkeypatch.setenv("EXPECT_RECORDING", "0")
    inner.runpytest("--record-mode=none", "--block-network").assert_outcomes(passed=1)


def test_vcr_config_and_matchers_are_provided(inner):
    inner.makepyfile(
        test_config="""
import pytest
from ste_core.testing import cassettes

def test_cfg(vcr_config):
    assert vcr_config["before_record_request"] is cassettes.scrub_request
    assert vcr_config["before_record_response"] is cassettes.scrub_response
    assert tuple(vcr_config["match_on"]) == cassettes.MATCH_ON

@pytest.mark.vcr(match_on=["method", "ste_path", "ste_query", "multipart"])
def test_matchers_registered(vcr):
    names = {m.__name__ for m in vcr._match_on}
    assert {"match_path", "match_query", "match_multipart"} <= names
"""
    )
    inner.runpytest().assert_outcomes(passed=2)


def test_backend_fixture_refuses_a_test_without_a_cassette(inner):
    inner.makepyfile(
        test_unmarked="""
def test_forgot_the_mark(ste_cassette_backend):
    ste_cassette_backend("together")
"""
    )
    result = inner.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not marked @pytest.mark.vcr*"])


def test_without_pytest_recording_the_session_still_runs(inner):
    inner.makepyfile(
        test_plain="""
import pytest

def test_ordinary():
    assert True

@pytest.mark.vcr
def test_needs_cassettes(ste_cassette_backend):
    raise AssertionError("must be skipped, not run")
"""
    )
    result = inner.runpytest(
        "-rs", "-p", "no:recording", "-W", "ignore::pytest.PytestUnknownMarkWarning"
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs pytest-recording*"])
