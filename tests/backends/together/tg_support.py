"""Constants shared by the Together backend tests (`from tests.backends.together.tg_support
import ...`). This folder is no package (no `__init__.py`, like every folder under tests/: pytest
imports test files in importlib mode), because a `together` test package would shadow the
`together` SDK."""

from __future__ import annotations

import os

from ste_core.testing.cassettes import FAKE_HOST

#: The key the tests send while recording against the fake. It must never reach a cassette
#: (tests/backends/test_cassette_audit.py checks every cassette in the repository).
RECORDING_KEY = "tgp_v1_ste-recording-secret-0000"
LIVE = os.environ.get("STE_TOGETHER_LIVE") == "1"
CHAT_MODEL = os.environ.get("STE_TOGETHER_CHAT_MODEL", "fake-acc70")
FT_MODEL = os.environ.get("STE_TOGETHER_FT_MODEL", "fake-llama-3.1-8b-acc70")
REPLAY_URL = f"http://{FAKE_HOST}"
