"""An unreachable Hub costs one short probe, not huggingface_hub's minute of retries."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ste_backends.local.models import load_model
from ste_core.errors import ConfigurationError


def test_an_uncached_model_fails_at_once_with_what_to_do(unreachable_hub: str) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as err:
        load_model("ste-test/not-cached-model", device="cpu", dtype=None)
    # huggingface_hub's own retries took 51 s here; the probe fails in milliseconds.
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert unreachable_hub in message
    assert "hf download ste-test/not-cached-model" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_a_cached_model_loads_without_waiting_for_the_hub(
    unreachable_hub: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Hub cache's layout: models--org--name/{refs/main, snapshots/<revision>/files}.
    cache = tmp_path / "hf-cache"
    repo = cache / "models--ste-test--tiny"
    revision = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    start = time.monotonic()
    loaded = load_model("ste-test/tiny", device="cpu", dtype=None)
    assert time.monotonic() - start < 10
    assert loaded.base_model == "ste-test/tiny"
