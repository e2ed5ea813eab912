"""Fixtures for the local backend: a tiny random chat model built offline, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-architecture chat model + ChatML tokenizer (no download)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ste_backends.local.testing import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-chat")


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model (different weights), to test switching models."""
    pytest.importorskip("torch")
    from ste_backends.local.testing import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-chat-2", seed=1)


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test starts and ends with no model loaded (the cache is process-wide)."""
    from ste_backends.local.models import release_models

    release_models()
    yield
    release_models()
