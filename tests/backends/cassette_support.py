"""What the openai and litellm cassette tests share: the keys the fake demands while recording
and the check that none of them reached a cassette."""

from __future__ import annotations

from pathlib import Path

import yaml

from ste_core.testing.cassettes import audit_cassettes

#: What the fake demands while recording. It is sent as a Bearer token and must never appear in
#: a cassette (see `assert_cassettes_hold_no_secrets`).
RECORDING_KEY = "sk-ste-recording-secret-0000"
WRONG_KEY = "sk-ste-wrong-key-1111"


def assert_cassettes_hold_no_secrets(cassettes: Path, auth_cassette: str) -> None:
    """No key and no loopback host in any cassette under `cassettes`; `auth_cassette` (a test
    that sent a key the fake checked) shows the header redacted, not silently dropped."""
    files = sorted(cassettes.glob("*.yaml"))
    assert files, f"no cassettes under {cassettes}"
    assert audit_cassettes(files) == {}
    for path in files:
        text = path.read_text()
        assert RECORDING_KEY not in text and WRONG_KEY not in text, path.name
        assert "127.0.0.1" not in text, path.name  # loopback hosts normalised
    recorded = yaml.safe_load((cassettes / auth_cassette).read_text())
    (interaction,) = recorded["interactions"]
    assert interaction["request"]["headers"]["authorization"] == ["REDACTED"]
