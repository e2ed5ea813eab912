"""pytest plugin `ste_cassettes` (entry point `pytest11`): cassette conventions for ste users.

Record a pipeline's provider traffic once, replay it in CI without keys or network:

    import pytest

    @pytest.mark.vcr
    async def test_my_judge(ste_cassette_backend):
        async with ste_cassette_backend("together", kind="inference") as backend:
            completion = await backend.complete(request)

    pytest --record-mode=once      # first run, with the real key: records the cassette
    pytest --record-mode=none --block-network   # CI: replays; fails on any unrecorded request

What the plugin provides (on top of pytest-recording):
- `vcr_config`: secret scrubbing of headers, URLs and bodies (before_record_request / response),
  the ste matchers (host/port-agnostic path, order-insensitive query, JSON- and multipart-aware
  body) and decoded compressed responses. Extend it in your conftest with
  `ste_core.testing.cassettes.vcr_config(**overrides)`.
- the matchers registered on every VCR instance (`pytest_recording_configure`), so
  `@pytest.mark.vcr(match_on=["method", "ste_path", "multipart"])` also works.
- `ste_cassette_backend(name, kind="inference"|"finetune", **options)`: builds any registered
  backend for the cassette; when replaying it sets placeholder API keys (TOGETHER_API_KEY,
  OPENAI_API_KEY, ... or `placeholder_env={...}`) so no real key is needed.
- `ste_recording`: True when this test will record (record mode all / new_episodes / rewrite, or
  once with no cassette yet), e.g. to start a local server only then.

It imports no provider SDK, and without pytest-recording installed it stays inert (the cassette
fixture then skips the test with a clear reason instead of crashing the session).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ste_core.testing import cassettes

#: env vars that hold provider keys; set to a placeholder when replaying (never when recording)
PLACEHOLDER_ENV = {
    "TOGETHER_API_KEY": "replay-placeholder-key",
    "OPENAI_API_KEY": "replay-placeholder-key",
    "ANTHROPIC_API_KEY": "replay-placeholder-key",
}
RECORDING_MODES = ("all", "new_episodes", "rewrite")


def _has_pytest_recording(config: pytest.Config) -> bool:
    """pytest-recording installed and active (not disabled with `-p no:recording`)."""
    if importlib.util.find_spec("pytest_recording") is None:
        return False
    pm = config.pluginmanager
    return pm.has_plugin("recording") or pm.has_plugin("pytest_recording.plugin")


@pytest.hookimpl(optionalhook=True)
def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    """Register the ste matchers on every VCR instance pytest-recording creates."""
    cassettes.register_matchers(vcr)


def pytest_configure(config: pytest.Config) -> None:
    # Registered late (after pytest-recording) so this `vcr_config` overrides its empty default.
    if not config.pluginmanager.has_plugin("ste_cassettes_fixtures"):
        config.pluginmanager.register(_Fixtures(), "ste_cassettes_fixtures")


def _record_mode(request: pytest.FixtureRequest) -> str:
    """The effective record mode for this test (CLI option, then the vcr mark, then 'none')."""
    cli = request.config.getoption("--record-mode", default=None)
    if cli:
        return str(cli)
    for mark in request.node.iter_markers(name="vcr"):
        if "record_mode" in mark.kwargs:
            return str(mark.kwargs["record_mode"])
    return "none"


def _cassette_path(request: pytest.FixtureRequest) -> Path | None:
    try:
        directory = request.getfixturevalue("vcr_cassette_dir")
        name = request.getfixturevalue("default_cassette_name")
    except pytest.FixtureLookupError:
        return None
    return Path(directory) / f"{name}.yaml"


class _Fixtures:
    """The plugin's fixtures, as a plugin object registered in pytest_configure."""

    @pytest.fixture
    def vcr_config(self) -> dict[str, Any]:
        """pytest-recording's per-test VCR config, with ste's scrubbing and matchers."""
        return cassettes.vcr_config()

    @pytest.fixture
    def ste_recording(self, request: pytest.FixtureRequest) -> bool:
        """Whether this test records new interactions (else it only replays)."""
        mode = _record_mode(request)
        if mode in RECORDING_MODES:
            return True
        if mode == "once":
            path = _cassette_path(request)
            return path is None or not path.exists()
        return False

    @pytest.fixture
    def ste_cassette_backend(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[Callable[..., Any]]:
        """Factory: `ste_cassette_backend(name, kind="inference", placeholder_env=None, **opts)`."""
        if not _has_pytest_recording(request.config):
            pytest.skip(
                "ste_cassette_backend needs pytest-recording (pip install pytest-recording)"
            )
        if request.node.get_closest_marker("vcr") is None:
            raise pytest.UsageError(
                f"{request.node.nodeid} uses ste_cassette_backend but is not marked "
                "@pytest.mark.vcr: without a cassette it would call the real provider."
            )
        recording = request.getfixturevalue("ste_recording")

        def make(
            name: str,
            *,
            kind: str = "inference",
            placeholder_env: dict[str, str] | None = None,
            **options: Any,
        ) -> Any:
            if not recording:
                for key, value in {**PLACEHOLDER_ENV, **(placeholder_env or {})}.items():
                    if not os.environ.get(key):
                        monkeypatch.setenv(key, value)
            from ste_core import get_finetune_backend, get_inference_backend

            if kind == "inference":
                return get_inference_backend(name, **options)
            if kind == "finetune":
                return get_finetune_backend(name, **options)
            raise ValueError(f"kind must be 'inference' or 'finetune', got {kind!r}")

        yield make
