"""The smallest config the config tests start from, and the error a changed one gives
(`from tests.core.config.configs import _error, _minimal`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ste_core.config import load_config
from ste_core.errors import ConfigurationError
from tests.core.helpers import write_config


def _minimal(tmp: Path) -> dict[str, Any]:
    return {
        "run": {"name": "r"},
        "data": {"path": "in.jsonl"},
        "generator": {"backend": "openai", "model": "g"},
        "judge": {"backend": "openai", "model": "j"},
        "finetune": {"backend": "together"},
    }


def _error(tmp: Path, data: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(write_config(tmp, data))
    return str(info.value)
